"""Worker processes killed or stopped mid-work; the oracle checks what the brokers and handlers did.

Each scenario sends acknowledged messages (unique id, key, per-key sequence), runs a worker of
:mod:`tests.faults.apps.recorder` that holds its handlers at the barrier (after the invocation is
recorded, before the effect), hits it with a signal at that known point, lets a second worker finish
the work, and checks the oracle: nothing acknowledged is lost, duplicates only where at-least-once
allows them, Kafka keys in order, no dead letters.

Kafka: 3 partitions, a key always on the same partition, ``ordering: partition``, so one worker runs
3 handlers at a time. RabbitMQ: ``ordering: none`` with ``prefetch: 10``, so 10.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

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
from tests.faults.workers import Worker, Workers
from tests.support.brokers import KafkaBroker
from tests.transports.kafka.helpers import create_topic

pytestmark = [pytest.mark.fault, pytest.mark.postgres]

APP = "tests.faults.apps.recorder"
PARTITIONS = 3
PREFETCH = 10
DONE_TIMEOUT = 60
STOP_TIMEOUT = 20
SHUTDOWN_MARGIN = 6.0
"""Seconds a worker may take beyond ``shutdown_timeout`` to stop (final commit, leaving the group,
closing connections); a hang fails the scenario."""


@dataclass
class Setup:
    """One scenario's transport: the app, the env of its workers, how to send and read dead letters."""

    transport: str
    target: str
    listener: str
    in_flight: int
    """Handlers one worker runs at once (one per partition, or the prefetch)."""
    messages: list[Sent]
    env: dict[str, str]
    send: Callable[[], Awaitable[None]]
    dead_letters: Callable[[], Awaitable[list[str]]]
    workers: Workers
    started: list[Worker] = field(default_factory=list)

    def ids_from(self, position: int) -> list[str]:
        """Ids of the messages sent from ``position`` on (to hold at the barrier: every partition, or
        the queue, runs up to its first held message, and no handled message waits behind one)."""
        return [message.id for message in self.messages[position:]]

    def start(self, **extra: str) -> Worker:
        worker = self.workers.start(self.target, {**self.env, **extra})
        self.started.append(worker)
        return worker


async def kafka_setup(
    kafka: KafkaBroker, oracle: Oracle, barrier: Barrier, workers: Workers, per_key: int, **env: str
) -> Setup:
    topic, group = unique("fault"), unique("fault-group")
    await create_topic(kafka, topic, PARTITIONS)
    messages = events(keys=3 * PARTITIONS, per_key=per_key)
    return Setup(
        transport="kafka",
        target=f"{APP}:kafka_container",
        listener="fault_kafka",
        in_flight=PARTITIONS,
        messages=messages,
        env={
            "LISTENERS__KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap,
            "LISTENERS__KAFKA__CONSUMER": json.dumps(kafka.consumer),
            "LISTENERS__KAFKA__COMMIT_INTERVAL": "100ms",
            "LISTENERS__LISTENER__FAULT_KAFKA__TOPICS": json.dumps([topic]),
            "LISTENERS__LISTENER__FAULT_KAFKA__GROUP_ID": group,
            **oracle.env(),
            **barrier.env(),
            **env,
        },
        send=lambda: oracle.send_kafka(kafka.bootstrap, topic, messages, PARTITIONS),
        dead_letters=lambda: kafka_dead_letters(kafka.bootstrap, topic),
        workers=workers,
    )


async def rabbit_setup(
    rabbit: str, queues: Queues, oracle: Oracle, barrier: Barrier, workers: Workers, per_key: int, **env: str
) -> Setup:
    queue = await fault_queue(rabbit, queues)
    messages = events(keys=6, per_key=per_key)
    return Setup(
        transport="rabbit",
        target=f"{APP}:rabbit_container",
        listener="fault_rabbit",
        in_flight=PREFETCH,
        messages=messages,
        env={
            "LISTENERS__RABBIT__URL": rabbit,
            "LISTENERS__LISTENER__FAULT_RABBIT__QUEUE": queue,
            "LISTENERS__LISTENER__FAULT_RABBIT__PREFETCH": str(PREFETCH),
            **oracle.env(),
            **barrier.env(),
            **env,
        },
        send=lambda: oracle.send_rabbit(rabbit, queue, messages),
        dead_letters=lambda: rabbit_dead_letters(rabbit, queue),
        workers=workers,
    )


async def setup_for(
    transport: str, request: pytest.FixtureRequest, queues: Queues, oracle: Oracle, barrier: Barrier,
    workers: Workers, per_key: int = 10, **env: str,
) -> Setup:  # fmt: skip
    if transport == "kafka":
        return await kafka_setup(request.getfixturevalue("kafka"), oracle, barrier, workers, per_key, **env)
    rabbit = request.getfixturevalue("rabbit")
    return await rabbit_setup(rabbit, queues, oracle, barrier, workers, per_key, **env)


TRANSPORTS = [
    pytest.param("kafka", marks=pytest.mark.kafka, id="kafka"),
    pytest.param("rabbit", marks=pytest.mark.rabbit, id="rabbit"),
]


async def finish_with_a_new_worker(setup: Setup, oracle: Oracle) -> tuple[Worker, OracleResult]:
    """Start a worker without holds, wait until every sent message had its effect, stop it gracefully,
    and check the oracle."""
    worker = setup.start()
    await until(oracle.all_effected, DONE_TIMEOUT, "every message handled", alive=worker.check_running)
    # Stopped once running (a SIGTERM before the app installed its handler ends it by the signal).
    await until(lambda: worker.logged("listener(s) running"), DONE_TIMEOUT, "the worker to run",
                alive=worker.check_running)  # fmt: skip
    worker.terminate()
    assert worker.wait(STOP_TIMEOUT) == 0, worker.tail()
    result = await oracle.check(dead_letters=await setup.dead_letters())
    print(result.describe())
    return worker, result


# a. Kafka: SIGKILL mid-batch --------------------------------------------------------------------------


@pytest.mark.kafka
async def test_kafka_sigkill_mid_batch_a_new_worker_resumes_without_loss(
    request: pytest.FixtureRequest, queues: Queues, oracle: Oracle, barrier: Barrier, workers: Workers
) -> None:
    # Nothing is committed while the first worker runs (the first poll fetches the whole batch), so the
    # kill lands in the middle of an uncommitted batch: the second worker must handle all of it again.
    setup = await setup_for("kafka", request, queues, oracle, barrier, workers, per_key=20,
                            LISTENERS__KAFKA__COMMIT_INTERVAL="60s")  # fmt: skip
    await setup.send()
    barrier.hold(ids=setup.ids_from(40))
    first = setup.start()
    held = await barrier.wait_held(setup.in_flight, pid=first.pid, alive=first.check_running)
    handled_before_kill = await oracle.count("effects")
    assert handled_before_kill == 40, "each partition handled up to its first held record"
    first.kill()
    assert first.wait(10) < 0, "killed by the signal"
    assert await oracle.count("effects", pid=first.pid) == handled_before_kill, "a killed worker does nothing"
    barrier.release()

    _second, result = await finish_with_a_new_worker(setup, oracle)

    assert_sound(result, setup.transport)
    counts = await oracle.effect_counts()
    assert all(counts[message_id] == 1 for message_id in held), (
        "held at the kill: handled once, by the second"
    )
    # At-least-once: what the first finished but had not committed runs again, nothing else does.
    assert result.duplicates <= handled_before_kill, result.describe()


# b. RabbitMQ: SIGKILL with unacknowledged messages ---------------------------------------------------


@pytest.mark.rabbit
async def test_rabbit_sigkill_with_unacked_messages_a_new_worker_resumes_without_loss(
    request: pytest.FixtureRequest, queues: Queues, oracle: Oracle, barrier: Barrier, workers: Workers
) -> None:
    setup = await setup_for("rabbit", request, queues, oracle, barrier, workers)
    await setup.send()
    barrier.hold(ids=setup.ids_from(20))
    first = setup.start()
    held = await barrier.wait_held(setup.in_flight, pid=first.pid, alive=first.check_running)
    handled_before_kill = await oracle.count("effects")
    assert handled_before_kill == 20
    assert set(held) == set(setup.ids_from(20)[:PREFETCH]), "the prefetch window, in queue order"
    first.kill()
    assert first.wait(10) < 0, "killed by the signal"
    barrier.release()

    _second, result = await finish_with_a_new_worker(setup, oracle)

    assert_sound(result, setup.transport)
    counts = await oracle.effect_counts()
    assert all(counts[message_id] == 1 for message_id in held), "unacked at the kill: handled by the second"
    assert result.duplicates <= handled_before_kill, result.describe()


# c. Graceful SIGTERM with handlers in flight --------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_sigterm_finishes_in_flight_handlers_once_and_leaves_the_rest_to_the_next_worker(
    transport: str,
    request: pytest.FixtureRequest,
    queues: Queues,
    oracle: Oracle,
    barrier: Barrier,
    workers: Workers,
) -> None:
    setup = await setup_for(
        transport, request, queues, oracle, barrier, workers, LISTENERS__SHUTDOWN_TIMEOUT="30s"
    )
    await setup.send()
    barrier.hold(ids=setup.ids_from(20))
    first = setup.start()
    held = await barrier.wait_held(setup.in_flight, pid=first.pid, alive=first.check_running)
    first.terminate()
    await until(lambda: first.logged("SIGTERM received"), 10, "the worker to start stopping",
                alive=first.check_running)  # fmt: skip
    barrier.release()  # the held handlers finish while the worker stops
    assert first.wait(STOP_TIMEOUT) == 0, first.tail()

    counts = await oracle.effect_counts()
    finished = sum(counts.values())
    assert all(counts[message_id] == 1 for message_id in held), "every in-flight handler completed"
    assert max(counts.values()) == 1
    assert finished == 20 + setup.in_flight, "what was handed out before the stop finished, nothing more"
    assert await oracle.count("invocations") == finished, "nothing started that did not finish"
    assert first.logged(f"listener {setup.listener} stopped: processed={finished} "), first.tail()
    assert not first.logged("released uncommitted"), first.tail()

    second, result = await finish_with_a_new_worker(setup, oracle)

    assert_sound(result, setup.transport)
    assert result.duplicates == 0, f"a graceful stop redid finished work: {result.describe()}"
    assert result.invocations == result.sent, f"every message handled exactly once: {result.describe()}"
    assert await oracle.count("invocations", pid=second.pid) == result.sent - finished


# d. SIGTERM with a handler that outlives shutdown_timeout --------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_sigterm_abandons_handlers_past_the_shutdown_timeout_and_they_run_again(
    transport: str,
    request: pytest.FixtureRequest,
    queues: Queues,
    oracle: Oracle,
    barrier: Barrier,
    workers: Workers,
) -> None:
    shutdown_timeout = 1.0
    setup = await setup_for(transport, request, queues, oracle, barrier, workers,
                            LISTENERS__SHUTDOWN_TIMEOUT=f"{shutdown_timeout}s")  # fmt: skip
    await setup.send()
    barrier.hold(ids=setup.ids_from(10))
    first = setup.start()
    held = await barrier.wait_held(setup.in_flight, pid=first.pid, alive=first.check_running)
    first.terminate()
    signalled = time.monotonic()
    code = first.wait(shutdown_timeout + SHUTDOWN_MARGIN)  # fails, with the log, on a hang
    print(f"{transport}: exited {code} {time.monotonic() - signalled:.2f}s after SIGTERM")
    assert code == 0, first.tail()
    assert first.logged("did not finish within the shutdown timeout; released uncommitted"), first.tail()
    counts = await oracle.effect_counts()
    assert not any(counts[message_id] for message_id in held), "the abandoned handlers were cancelled"
    finished = sum(counts.values())
    assert finished == 10, "the handlers before the held ones finished and nothing else"
    barrier.release()

    second, result = await finish_with_a_new_worker(setup, oracle)

    assert_sound(result, setup.transport)
    counts = await oracle.effect_counts()
    assert all(counts[message_id] == 1 for message_id in held), "abandoned, then handled by the next worker"
    held_again = await oracle.rows("invocations", pid=second.pid)
    assert set(held) <= {row["id"] for row in held_again}
    assert result.duplicates == 0, f"finished work was committed at the stop: {result.describe()}"
    assert result.effects - finished == len(await oracle.rows("effects", pid=second.pid))


# e. Graceful SIGTERM under ordering: key, one key stuck behind a held record ------------------------


@pytest.mark.kafka
async def test_sigterm_with_key_ordering_runs_what_later_offsets_went_past_and_redoes_nothing(
    request: pytest.FixtureRequest, queues: Queues, oracle: Oracle, barrier: Barrier, workers: Workers
) -> None:
    # One key's third record is held; its later records wait in that key's lane while the other keys
    # of its partition finish at higher offsets. Releasing the waiting ones on the stop would hold the
    # commit below them, and the next worker would redo everything after: they must run instead.
    setup = await setup_for("kafka", request, queues, oracle, barrier, workers,
                            LISTENERS__LISTENER__FAULT_KAFKA__ORDERING="key",
                            LISTENERS__SHUTDOWN_TIMEOUT="30s")  # fmt: skip
    stuck = next(message for message in setup.messages if message.key == "k0" and message.seq == 2)
    behind = [m for m in setup.messages if m.key == stuck.key and m.seq >= stuck.seq]
    await setup.send()
    barrier.hold(ids=[stuck.id])
    first = setup.start()
    await barrier.wait_held(1, pid=first.pid, alive=first.check_running)

    async def others_done() -> bool:
        return await oracle.count("effects") == len(setup.messages) - len(behind)

    await until(others_done, DONE_TIMEOUT, "every other key handled", alive=first.check_running)
    first.terminate()
    await until(lambda: first.logged("SIGTERM received"), 10, "the worker to start stopping",
                alive=first.check_running)  # fmt: skip
    barrier.release()
    assert first.wait(STOP_TIMEOUT) == 0, first.tail()
    assert await oracle.all_effected(), "the stuck key's waiting records ran within the shutdown timeout"

    second, result = await finish_with_a_new_worker(setup, oracle)

    assert_sound(result, setup.transport)
    assert result.duplicates == 0, f"a graceful stop redid finished work: {result.describe()}"
    assert await oracle.count("invocations", pid=second.pid) == 0, "everything was committed at the stop"


# f. A stuck handler on RabbitMQ does not stall the rest of the prefetch window ------------------------


@pytest.mark.rabbit
async def test_a_stuck_rabbitmq_handler_does_not_stall_the_others(
    request: pytest.FixtureRequest, queues: Queues, oracle: Oracle, barrier: Barrier, workers: Workers
) -> None:
    setup = await setup_for("rabbit", request, queues, oracle, barrier, workers)
    stuck = setup.messages[0]
    await setup.send()
    barrier.hold(ids=[stuck.id])
    worker = setup.start()
    await barrier.wait_held(1, pid=worker.pid, alive=worker.check_running)

    async def others_done() -> bool:
        return await oracle.count("effects") == len(setup.messages) - 1

    # With acks only up to the first unfinished delivery, the window would fill with finished but
    # unacknowledged messages behind the stuck one and the broker would send nothing more.
    await until(others_done, DONE_TIMEOUT, "every other message handled", alive=worker.check_running)
    barrier.release()
    await until(oracle.all_effected, DONE_TIMEOUT, "the stuck one handled", alive=worker.check_running)
    worker.terminate()
    assert worker.wait(STOP_TIMEOUT) == 0, worker.tail()
    result = await oracle.check(dead_letters=await setup.dead_letters())
    assert_sound(result, setup.transport)
    assert result.duplicates == 0, result.describe()
