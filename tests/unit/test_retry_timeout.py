"""``retry.timeout``: counted from the first failure, carried in place and through the broker's headers."""

from __future__ import annotations

from listeners import ManualClock, RetryLater
from listeners.deadletter.envelopes import kafka_retry
from listeners.message import Headers, Message
from listeners.outcome import DeadLetter, Retry
from listeners.rabbit.retry import retry_headers as rabbit_retry_headers
from listeners.retry.interceptor import ErrorHandler
from listeners.retry.kafka_wire import ORIGINAL_TIMESTAMP, java_bigint
from listeners.retry.timeout import RETRY_STARTED, first_failure, retry_started_header
from listeners.spec import ListenerOptions

START = 1_700_000_000.0
FIXED_ONE_SECOND = {"delay": 1.0, "multiplier": 1.0, "jitter": 0.0}


def handler(clock: ManualClock, **retry: object) -> ErrorHandler:
    options = ListenerOptions.model_validate({"retry": {"backoff": FIXED_ONE_SECOND, **retry}})
    return ErrorHandler("payments", options, clock=clock)


def message(headers: tuple[tuple[str, bytes], ...] = (), attempt: int = 1) -> Message:
    return Message(b"{}", Headers(headers), "payments", "payments", "kafka", attempt=attempt)


async def test_blocking_retries_stop_when_the_next_attempt_would_start_past_the_timeout() -> None:
    clock = ManualClock(START)
    errors = handler(clock, attempts=10, timeout=2.5)
    current = message()
    outcomes = []
    for _ in range(3):
        outcome = errors.decide(current, ValueError("down"))
        outcomes.append(type(outcome))
        if isinstance(outcome, Retry):
            await clock.advance(outcome.delay)
            current = current.next_attempt()
    assert outcomes == [Retry, Retry, DeadLetter]  # next attempts at +1 s, +2 s; +3 s is past 2.5 s
    assert current.retry_started == START


async def test_without_a_timeout_only_the_attempts_limit_applies() -> None:
    clock = ManualClock(START)
    errors = handler(clock, attempts=3)
    await clock.advance(10_000)
    assert isinstance(errors.decide(message(attempt=2), ValueError("down")), Retry)
    assert isinstance(errors.decide(message(attempt=3), ValueError("down")), DeadLetter)


def test_the_first_failure_travels_in_the_listeners_header_across_the_broker() -> None:
    clock = ManualClock(START)
    errors = handler(clock, attempts=10, timeout=30)
    started = str(int((START - 29.5) * 1000)).encode()
    retried = message(((RETRY_STARTED, started),), attempt=4)
    assert isinstance(errors.decide(retried, ValueError("down")), DeadLetter)
    assert retried.retry_started == START - 29.5


def test_records_spring_retried_count_from_springs_original_timestamp() -> None:
    clock = ManualClock(START)
    errors = handler(clock, attempts=10, timeout=30)
    spring = message(((ORIGINAL_TIMESTAMP, java_bigint(int((START - 40) * 1000))),), attempt=2)
    assert isinstance(errors.decide(spring, ValueError("down")), DeadLetter)
    recent = message(((ORIGINAL_TIMESTAMP, java_bigint(int((START - 10) * 1000))),), attempt=2)
    assert isinstance(errors.decide(recent, ValueError("down")), Retry)


def test_a_handlers_own_retry_delay_is_bounded_by_the_timeout_too() -> None:
    errors = handler(ManualClock(START), attempts=10, timeout=5)
    assert isinstance(errors.decide(message(), RetryLater(delay=4.0)), Retry)
    assert isinstance(errors.decide(message(), RetryLater(delay=6.0)), DeadLetter)


def test_malformed_started_headers_count_as_a_first_failure_now() -> None:
    for value in (b"", b"soon", b"9" * 40, "\u00e9".encode()):
        assert first_failure(message(((RETRY_STARTED, value),)), START) == START


def test_the_started_header_is_written_on_the_first_retry_and_kept_after() -> None:
    first = message()
    assert retry_started_header(first) == ()  # not failed yet
    first.retry_started = START
    [header] = retry_started_header(first)
    assert header == (RETRY_STARTED, b"1700000000000")
    later = message((header,), attempt=2)
    later.retry_started = START + 5  # already carried: the header is not written twice
    assert retry_started_header(later) == ()


def test_both_transports_republish_retries_with_the_first_failure() -> None:
    failed = message()
    failed.retry_started = START
    retry = Retry(1.0, 2, ValueError("down"), blocking=False, tier=1.0)
    kafka = kafka_retry(failed, retry, topic="payments-retry-1000", due_ms=1, partitions=set())
    rabbit = rabbit_retry_headers(failed, retry)
    for headers in (kafka.headers, rabbit):
        assert [value for name, value in headers if name == RETRY_STARTED] == [b"1700000000000"]
