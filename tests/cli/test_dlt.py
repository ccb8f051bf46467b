"""``listeners dlt show`` and ``listeners dlt replay`` against the run's Kafka and RabbitMQ.

Dead letters are written the way the transports write them (the same header functions), straight
to the dead-letter topic or queue; the commands run as a user runs them, in a subprocess.
"""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import subprocess
import uuid

import aio_pika
import pytest
from aiokafka import AIOKafkaProducer

from listeners import Headers, Message
from listeners.deadletter.headers import kafka_dead_letter_headers, rabbit_dead_letter_headers
from listeners.rabbit.amqp import header_pairs_from_table, table_from_header_pairs
from tests.cli.apps.deadletters.handlers import PaymentDeclined
from tests.cli.helpers import CLI, REPO_ROOT, app_options, cli_env, run_cli
from tests.support.brokers import KafkaBroker
from tests.support.kafka_tools import read_topic
from tests.support.rabbit_tools import take_all
from tests.transports.rabbit.helpers import queue_state

APP = ("tests.cli.apps.deadletters.app:container", *app_options("deadletters"))
DECLINED = f"{PaymentDeclined.__module__}.PaymentDeclined"
RETRY_STATE = {
    "kafka": (
        ("retry_topic-attempts", (2).to_bytes(4, "big")),
        ("retry_topic-backoff-timestamp", b"\x01\x9a\xc0\x00\x00\x00"),
        ("kafka_original-topic", b"elsewhere"),
        ("kafka_exception-fqcn", b"ValueError"),
        ("listeners-retry-started", b"1764165000000"),
    ),
    "rabbit": (("listeners-retry-started", b"1764165000000"),),
}
STRIPPED = {
    "retry_topic-attempts",
    "retry_topic-backoff-timestamp",
    "kafka_original-topic",
    "kafka_exception-fqcn",
    "listeners-retry-started",
    "retry-count",
    "x-original-exchange",
    "x-original-routingKey",
}
ERRORS = (PaymentDeclined("card declined"), ValueError("bad amount"), PaymentDeclined("card expired"))


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def dlt(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_cli("dlt", *args, env=env, timeout=60)


def blocks(stdout: str) -> list[str]:
    """The first line of each dead letter ``dlt show`` printed."""
    return [line for line in stdout.splitlines() if re.match(r"^\S+(\[\d+\]@\d+|#\d+)  ", line)]


def error_of(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.startswith("listeners: error: ")]
    return line.removeprefix("listeners: error: ")


# Kafka --------------------------------------------------------------------------------------------


@pytest.fixture
def topic() -> str:
    return unique("dl-payments")


@pytest.fixture
def kafka_env(kafka: KafkaBroker, topic: str) -> dict[str, str]:
    return {
        "LISTENERS__KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap,
        "LISTENERS__LISTENER__PAYMENTS__TOPICS": json.dumps([topic]),
    }


async def write_kafka_dead_letters(
    bootstrap: str, topic: str, errors: tuple[BaseException, ...] = ERRORS
) -> None:
    """Dead letters of ``topic`` in ``<topic>-dlt`` (one per error), one record per batch, keys k-0..."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for index, error in enumerate(errors):
            original = Message(
                body=f"payment-{index}".encode(),
                headers=Headers((("x-trace", f"t-{index}".encode()), *RETRY_STATE["kafka"])),
                destination=topic,
                listener_id="payments",
                transport="kafka",
                key=f"k-{index}".encode(),
                partition=0,
                offset=10 + index,
                timestamp=1_764_165_600.0,
            )
            headers = kafka_dead_letter_headers(original, error, group_id="payments", max_stacktrace=200)
            await producer.send_and_wait(
                f"{topic}-dlt", original.body, key=original.key, headers=list(headers), partition=0
            )
    finally:
        await producer.stop()


@pytest.mark.kafka
async def test_show_lists_kafka_dead_letters_with_their_exceptions(
    kafka: KafkaBroker, topic: str, kafka_env: dict[str, str]
) -> None:
    await write_kafka_dead_letters(kafka.bootstrap, topic)

    result = dlt("show", *APP, "--listener", "payments", env=kafka_env)

    assert result.returncode == 0, result.stderr
    assert len(blocks(result.stdout)) == 3, result.stdout
    for index in range(3):
        line = rf"^{topic}-dlt\[0\]@{index}  \d{{4}}-\S+Z  key=k-{index}  attempts=2$"
        assert re.search(line, result.stdout, re.MULTILINE), result.stdout
    assert f"  {DECLINED}: card declined" in result.stdout
    assert "  ValueError: bad amount" in result.stdout
    assert f"  original: {topic}[0]@11" in result.stdout
    assert result.stdout.rstrip().endswith(f"total: 3 dead letters in {topic}-dlt, 3 shown")

    filtered = dlt("show", *APP, "--topic", f"{topic}-dlt", "--exception", "ValueError", env=kafka_env)
    assert filtered.returncode == 0, filtered.stderr
    assert [line.split()[0] for line in blocks(filtered.stdout)] == [f"{topic}-dlt[0]@1"]
    assert filtered.stdout.rstrip().endswith(
        "3 dead letters in " + f"{topic}-dlt, 1 shown, 2 did not match the filters"
    )

    by_key_and_time = dlt(
        "show", *APP, "--listener", "payments", "--key", "k-2", "--since", "1h", env=kafka_env
    )
    assert [line.split()[0] for line in blocks(by_key_and_time.stdout)] == [f"{topic}-dlt[0]@2"]
    too_old = dlt("show", *APP, "--listener", "payments", "--until", "2020-01-01T00:00:00Z", env=kafka_env)
    assert blocks(too_old.stdout) == [], too_old.stdout
    limited = dlt("show", *APP, "--listener", "payments", "--limit", "2", env=kafka_env)
    assert len(blocks(limited.stdout)) == 2
    assert "(stopped at --limit 2)" in limited.stdout


@pytest.mark.kafka
async def test_kafka_replay_dry_run_publishes_nothing(
    kafka: KafkaBroker, topic: str, kafka_env: dict[str, str]
) -> None:
    await write_kafka_dead_letters(kafka.bootstrap, topic)

    result = dlt("replay", *APP, "--listener", "payments", "--dry-run", env=kafka_env)

    assert result.returncode == 0, result.stderr
    assert result.stdout.count(f" to {topic}\n") == 3
    assert f"would replay {topic}-dlt[0]@0 ({DECLINED}) to {topic}" in result.stdout
    assert f"would replay 3 of 3 dead letters from {topic}-dlt to {topic} (dry run" in result.stdout
    assert await read_topic(kafka.bootstrap, topic) == []
    assert len(await read_topic(kafka.bootstrap, f"{topic}-dlt")) == 3


@pytest.mark.kafka
async def test_kafka_replay_republishes_matching_dead_letters_as_first_attempts(
    kafka: KafkaBroker, topic: str, kafka_env: dict[str, str]
) -> None:
    await write_kafka_dead_letters(kafka.bootstrap, topic)

    result = dlt(
        "replay", *APP, "--listener", "payments", "--exception", "PaymentDeclined", "--yes", env=kafka_env
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == (
        f"replayed 2 of 3 dead letters from {topic}-dlt to {topic}; 1 did not match the filters; "
        "Kafka dead letters are not removed"
    )
    replayed = await read_topic(kafka.bootstrap, topic)
    assert sorted((record.key, record.value) for record in replayed) == [
        (b"k-0", b"payment-0"),
        (b"k-2", b"payment-2"),
    ]
    for record in replayed:
        headers = Headers(tuple(record.headers))
        assert headers["listeners-replay-count"] == b"1"
        assert re.fullmatch(rb"\d{13}", headers["listeners-replayed-at"])
        assert STRIPPED.isdisjoint(headers)
        assert headers["x-trace"] in (b"t-0", b"t-2")
        assert headers["kafka_dlt-original-topic"] == topic.encode()
        assert headers["kafka_dlt-exception-fqcn"] == DECLINED.encode()
    assert len(await read_topic(kafka.bootstrap, f"{topic}-dlt")) == 3


@pytest.mark.kafka
async def test_kafka_replay_to_another_topic_with_a_limit(
    kafka: KafkaBroker, topic: str, kafka_env: dict[str, str]
) -> None:
    await write_kafka_dead_letters(kafka.bootstrap, topic)
    other = unique("dl-replayed")

    result = dlt(
        "replay", *APP, "--topic", f"{topic}-dlt", "--to", other, "--limit", "2", "-y", env=kafka_env
    )

    assert result.returncode == 0, result.stderr
    assert "replayed 2 of 3 dead letters" in result.stdout
    assert "stopped at --limit" in result.stdout
    assert sorted(record.key for record in await read_topic(kafka.bootstrap, other)) == [b"k-0", b"k-1"]
    assert await read_topic(kafka.bootstrap, topic) == []


@pytest.mark.kafka
async def test_a_listener_with_several_topics_shows_every_dead_letter_topic(kafka: KafkaBroker) -> None:
    left, right = unique("dl-left"), unique("dl-right")
    await write_kafka_dead_letters(kafka.bootstrap, left, (ValueError("left"),))
    await write_kafka_dead_letters(kafka.bootstrap, right, (ValueError("right"), ValueError("right")))
    env = {
        "LISTENERS__KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap,
        "LISTENERS__LISTENER__BOTH_SIDES__TOPICS": json.dumps([left, right]),
    }

    result = dlt("show", *APP, "--listener", "both_sides", env=env)

    assert result.returncode == 0, result.stderr
    assert [line.split()[0] for line in blocks(result.stdout)] == [
        f"{left}-dlt[0]@0",
        f"{right}-dlt[0]@0",
        f"{right}-dlt[0]@1",
    ]
    assert f"total: 1 dead letters in {left}-dlt, 1 shown" in result.stdout
    assert f"total: 2 dead letters in {right}-dlt, 2 shown" in result.stdout


@pytest.mark.kafka
def test_no_such_topic_is_an_error(kafka: KafkaBroker) -> None:
    missing = unique("dl-missing")

    result = dlt(
        "show",
        *APP,
        "--topic",
        f"{missing}-dlt",
        env={"LISTENERS__KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap},
    )

    assert error_of(result) == f"no topic '{missing}-dlt' on {kafka.bootstrap}"


# RabbitMQ -----------------------------------------------------------------------------------------


@pytest.fixture
def queue() -> str:
    return unique("dl-mails")


@pytest.fixture
def rabbit_env(rabbit: str, queue: str) -> dict[str, str]:
    return {"LISTENERS__RABBIT__URL": rabbit, "LISTENERS__LISTENER__MAILS__QUEUE": queue}


async def write_rabbit_dead_letters(url: str, queue: str, *also: str) -> None:
    """Three dead letters in ``<queue>.dlq`` (first published to ``queue``); declares ``also`` too."""
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        for name in (queue, f"{queue}.dlq", *also):
            await channel.declare_queue(name, durable=True)
        for index, error in enumerate(ERRORS):
            original = Message(
                body=f"mail-{index}".encode(),
                headers=Headers((("x-trace", f"t-{index}".encode()), *RETRY_STATE["rabbit"])),
                destination=queue,
                listener_id="mails",
                transport="rabbit",
                exchange="",
                routing_key=queue,
                attempt=3,
            )
            headers = rabbit_dead_letter_headers(original, error, max_stacktrace=200)
            message = aio_pika.Message(
                original.body, headers=table_from_header_pairs(headers), content_type="text/plain"
            )
            await channel.default_exchange.publish(message, routing_key=f"{queue}.dlq")
    finally:
        await connection.close()


@pytest.mark.rabbit
async def test_show_lists_rabbit_dead_letters_and_takes_none(
    rabbit: str, queue: str, rabbit_env: dict[str, str]
) -> None:
    await write_rabbit_dead_letters(rabbit, queue)

    result = dlt("show", *APP, "--listener", "mails", env=rabbit_env)

    assert result.returncode == 0, result.stderr
    assert [line.split()[0] for line in blocks(result.stdout)] == [
        f"{queue}.dlq#{index}" for index in range(3)
    ]
    assert all(line.endswith("key=-  attempts=3") for line in blocks(result.stdout))
    assert f"  {DECLINED}: card declined" in result.stdout
    assert f"  original: exchange '' routing key '{queue}'" in result.stdout
    assert result.stdout.rstrip().endswith(f"total: 3 dead letters in {queue}.dlq, 3 shown")
    assert await queue_state(rabbit, f"{queue}.dlq") == (3, 0)
    again = dlt("show", *APP, "--queue", f"{queue}.dlq", "--exception", f"{DECLINED}", env=rabbit_env)
    assert [line.split()[0] for line in blocks(again.stdout)] == [f"{queue}.dlq#0", f"{queue}.dlq#2"]
    untimed = dlt("show", *APP, "--listener", "mails", "--since", "1h", env=rabbit_env)
    assert untimed.returncode == 0, untimed.stderr
    assert f"3 dead letters in {queue}.dlq, 0 shown, 3 did not match the filters" in untimed.stdout
    assert "without a timestamp property (written by other publishers) never match" in untimed.stderr
    assert await queue_state(rabbit, f"{queue}.dlq") == (3, 0)


@pytest.mark.rabbit
async def test_rabbit_replay_dry_run_changes_nothing(
    rabbit: str, queue: str, rabbit_env: dict[str, str]
) -> None:
    await write_rabbit_dead_letters(rabbit, queue)

    result = dlt("replay", *APP, "--listener", "mails", "--dry-run", env=rabbit_env)

    assert result.returncode == 0, result.stderr
    assert (
        f"would replay 3 of 3 dead letters from {queue}.dlq to queue '{queue}' (default exchange)"
        in result.stdout
    )
    assert await queue_state(rabbit, queue) == (0, 0)
    assert [m.body for m in await take_all(rabbit, f"{queue}.dlq")] == [b"mail-0", b"mail-1", b"mail-2"]


@pytest.mark.rabbit
async def test_rabbit_replay_moves_matching_dead_letters_back_and_keeps_the_others(
    rabbit: str, queue: str, rabbit_env: dict[str, str]
) -> None:
    await write_rabbit_dead_letters(rabbit, queue)

    result = dlt(
        "replay", *APP, "--listener", "mails", "--exception", "PaymentDeclined", "--yes", env=rabbit_env
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == (
        f"replayed 2 of 3 dead letters from {queue}.dlq to queue '{queue}' (default exchange); "
        f"1 did not match the filters; the replayed ones were removed from {queue}.dlq"
    )
    replayed = await take_all(rabbit, queue)
    assert [message.body for message in replayed] == [b"mail-0", b"mail-2"]
    for message in replayed:
        headers = Headers(header_pairs_from_table(message.headers))
        assert headers["listeners-replay-count"] == b"1"
        assert re.fullmatch(rb"\d{13}", headers["listeners-replayed-at"])
        assert STRIPPED.isdisjoint(headers)
        assert headers["x-exception-fqcn"] == DECLINED.encode()
        assert message.content_type == "text/plain"
    [kept] = await take_all(rabbit, f"{queue}.dlq")
    assert (kept.body, kept.headers["x-exception-fqcn"]) == (b"mail-1", "ValueError")


@pytest.mark.rabbit
def test_on_a_terminal_replay_shows_the_progress_bar_without_per_letter_lines(
    rabbit: str, queue: str, rabbit_env: dict[str, str]
) -> None:
    asyncio.run(write_rabbit_dead_letters(rabbit, queue))
    controller, terminal = pty.openpty()
    command = [*CLI, "dlt", "replay", *APP, "--listener", "mails", "--yes"]
    try:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=cli_env(rabbit_env), stdin=subprocess.DEVNULL, stdout=terminal,
            stderr=terminal,
        )  # fmt: skip
        os.close(terminal)
        output = b""
        while chunk := _read_terminal(controller):
            output += chunk
        assert process.wait(60) == 0, output
    finally:
        os.close(controller)
    text = output.decode()
    assert f"replaying {queue}.dlq" in text, "the progress bar"
    assert f"replayed 3 of 3 dead letters from {queue}.dlq" in text, "the summary"
    assert f"replayed {queue}.dlq#" not in text, "no per-letter lines under the bar on a terminal"
    assert len(asyncio.run(take_all(rabbit, queue))) == 3


def _read_terminal(controller: int) -> bytes:
    try:
        return os.read(controller, 4096)
    except OSError:  # the terminal closed with the process
        return b""


@pytest.mark.rabbit
async def test_rabbit_replay_to_another_queue(rabbit: str, queue: str, rabbit_env: dict[str, str]) -> None:
    other = unique("dl-again")
    await write_rabbit_dead_letters(rabbit, queue, other)

    result = dlt(
        "replay", *APP, "--queue", f"{queue}.dlq", "--to", other, "--rate", "50", "-y", env=rabbit_env
    )

    assert result.returncode == 0, result.stderr
    assert [m.body for m in await take_all(rabbit, other)] == [b"mail-0", b"mail-1", b"mail-2"]
    assert await queue_state(rabbit, f"{queue}.dlq") == (0, 0)
    assert await queue_state(rabbit, queue) == (0, 0)


@pytest.mark.rabbit
async def test_a_failed_rabbit_republish_stops_and_leaves_the_dead_letter(
    rabbit: str, queue: str, rabbit_env: dict[str, str]
) -> None:
    await write_rabbit_dead_letters(rabbit, queue)
    nowhere = unique("dl-nowhere")

    result = dlt("replay", *APP, "--listener", "mails", "--to", nowhere, "--yes", env=rabbit_env)

    assert error_of(result).startswith(
        f"replaying {queue}.dlq#0 to queue '{nowhere}' (default exchange) failed: "
    )
    assert error_of(result).endswith(f"it stays in {queue}.dlq")
    assert f"replayed 0 of 3 dead letters from {queue}.dlq" in result.stdout
    assert [m.body for m in await take_all(rabbit, f"{queue}.dlq")] == [b"mail-0", b"mail-1", b"mail-2"]


@pytest.mark.rabbit
def test_no_such_queue_is_an_error(rabbit: str, rabbit_env: dict[str, str]) -> None:
    missing = unique("dl-missing")

    result = dlt("show", *APP, "--queue", f"{missing}.dlq", env=rabbit_env)

    assert error_of(result) == f"no queue '{missing}.dlq' on {rabbit.replace('guest:guest', 'guest:***')}"


# errors without a broker ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ("show", "--listener", "nope"),
            "no listener 'nope'; the listeners are: both_sides, discarding, mails, payments",
        ),
        (
            ("show", "--topic", "a-dlt", "--queue", "a.dlq"),
            "give only one of --listener ID, --topic DLT_TOPIC and --queue DLQ",
        ),
        (
            ("replay", "--yes"),
            "name the dead letters with one of --listener ID, --topic DLT_TOPIC and --queue DLQ",
        ),
        (
            ("show", "--listener", "discarding"),
            "listener discarding has dead letters disabled (dead_letter.enabled: false)",
        ),
        (("show", "--listener", "payments", "--since", "yesterday"), "--since: invalid time 'yesterday': "),
        (("replay", "--topic", "x-dlt"), "replay not confirmed; pass --yes to replay without asking"),
    ],
    ids=["unknown-listener", "topic-and-queue", "nothing-selected", "disabled", "bad-time", "not-confirmed"],
)
def test_bad_selections_exit_1_naming_what_is_wrong(args: tuple[str, ...], expected: str) -> None:
    command, *rest = args

    result = dlt(command, *APP, *rest, env={})

    assert error_of(result).startswith(expected)


def test_the_embedded_broker_has_no_dead_letters_to_show() -> None:
    result = dlt("show", *APP, "--listener", "payments", env={})

    assert error_of(result).startswith("listeners.kafka.bootstrap_servers is memory:// (the embedded broker)")


def test_an_unreachable_broker_is_an_error_naming_it() -> None:
    env = {"LISTENERS__RABBIT__URL": "amqp://guest:guest@127.0.0.1:9/"}

    result = dlt("show", *APP, "--listener", "mails", env=env)

    assert error_of(result).startswith("connecting to RabbitMQ at amqp://guest:***@127.0.0.1:9/ failed")
