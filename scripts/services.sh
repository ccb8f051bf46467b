#!/usr/bin/env bash
# Make sure the local services the test suite uses are up: RabbitMQ, PostgreSQL, Redis.
# Starts an installed service that is down; fails loudly (never skips) when one cannot be had.
# Point tests elsewhere with LISTENERS_TEST_RABBIT_URL / _POSTGRES_DSN / _REDIS_URL and set
# LISTENERS_SKIP_SERVICE_START=1 to only check.
set -u

up() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

wait_up() {  # name host port seconds
  local deadline=$((SECONDS + $4))
  until up "$2" "$3"; do
    if ((SECONDS >= deadline)); then return 1; fi
    sleep 0.5
  done
}

ensure() {  # name host port start-command...
  local name=$1 host=$2 port=$3
  shift 3
  if up "$host" "$port"; then
    echo "services: $name is up on $host:$port"
    return 0
  fi
  if [ "${LISTENERS_SKIP_SERVICE_START:-0}" = 1 ]; then
    echo "services: ERROR: $name is not reachable on $host:$port (LISTENERS_SKIP_SERVICE_START=1)" >&2
    return 1
  fi
  if ! command -v "$1" >/dev/null 2>&1; then
    echo "services: ERROR: $name is down on $host:$port and '$1' is not installed; install $name or point the" \
      "tests at a running one (see README, Testing)" >&2
    return 1
  fi
  echo "services: starting $name: $*"
  "$@" >/dev/null 2>&1
  if wait_up "$name" "$host" "$port" 60; then
    echo "services: $name is up on $host:$port"
  else
    echo "services: ERROR: started '$*' but $name did not come up on $host:$port within 60s" >&2
    return 1
  fi
}

start_postgres() {
  if command -v pg_ctlcluster >/dev/null 2>&1 && command -v pg_lsclusters >/dev/null 2>&1; then
    local version cluster
    read -r version cluster _ < <(pg_lsclusters --no-header | head -n 1)
    pg_ctlcluster "$version" "$cluster" start
  else
    service postgresql start
  fi
}

status=0
ensure RabbitMQ 127.0.0.1 5672 rabbitmq-server -detached || status=1
ensure PostgreSQL 127.0.0.1 5432 start_postgres || status=1
ensure Redis 127.0.0.1 6379 redis-server --daemonize yes --bind 127.0.0.1 || status=1
exit $status
