"""Durations: parsing config values, rendering them back, and the pydantic ``Duration`` type."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import BaseModel, ValidationError

from listeners.durations import Duration, format_duration, parse_duration


class Timeouts(BaseModel):
    timeout: Duration = 30.0


# parse_duration ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (0, 0.0),
        (3, 3.0),
        (1.5, 1.5),
        ("30", 30.0),
        ("2.5", 2.5),
        ("250ms", 0.25),
        ("1.5s", 1.5),
        ("30s", 30.0),
        ("5m", 300.0),
        ("2h", 7200.0),
        ("7d", 7 * 24 * 3600.0),
        ("0ms", 0.0),
        ("  5m  ", 300.0),
        ("10 s", 10.0),
    ],
)
def test_parse_duration_converts_numbers_and_unit_strings_to_seconds(value: object, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", [0, 7, 2.25])
def test_parse_duration_returns_a_float_for_numbers(value: float) -> None:
    parsed = parse_duration(value)

    assert type(parsed) is float
    assert parsed == value


def test_parse_duration_accepts_a_timedelta() -> None:
    assert parse_duration(timedelta(minutes=1, milliseconds=500)) == 60.5


@pytest.mark.parametrize("text", ["", "abc", "5 minutes", "5x", "ms", "1.5.5s", "-5s", "5s5", "1e3s", "s5"])
def test_parse_duration_rejects_invalid_strings_with_a_helpful_message(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration") as raised:
        parse_duration(text)

    message = str(raised.value)
    assert repr(text) in message
    # The message shows the accepted forms so the user can fix the value.
    for example in ("250ms", "30s", "5m"):
        assert example in message


@pytest.mark.parametrize("flag", [True, False])
def test_parse_duration_rejects_booleans(flag: bool) -> None:
    # bool is an int subclass; `timeout: true` must not silently mean one second.
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(flag)


@pytest.mark.parametrize("value", [None, [1], {"seconds": 1}])
def test_parse_duration_passes_other_types_through_for_pydantic_to_report(value: object) -> None:
    assert parse_duration(value) is value


# format_duration --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.25, "250ms"),
        (0.001, "1ms"),
        (1.0, "1s"),
        (1.5, "1.5s"),
        (30.0, "30s"),
        (90.0, "90s"),
        (300.0, "5m"),
        (5400.0, "90m"),
        (7200.0, "2h"),
        (86400.0, "1d"),
        (7 * 86400.0, "7d"),
        (36 * 3600.0, "36h"),
    ],
)
def test_format_duration_uses_the_largest_whole_unit(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("text", ["250ms", "1ms", "1.5s", "30s", "5m", "90m", "2h", "7d", "36h"])
def test_format_of_a_parsed_canonical_string_gives_the_same_string(text: str) -> None:
    assert format_duration(parse_duration(text)) == text


@pytest.mark.parametrize(
    "seconds", [0.0, 0.007, 0.009, 0.0015, 0.25, 1.0, 1.5, 59.0, 61.0, 3599.0, 86400.5, 604800.0, 0.123]
)
def test_format_duration_round_trips_through_parse_duration(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds, rel=1e-12, abs=0.0)


def test_every_whole_millisecond_value_round_trips() -> None:
    # Some render as "0.009s" rather than "9ms" (float noise in seconds * 1000), but the value survives.
    wrong = {}
    for ms in range(1, 1000):
        rendered = format_duration(parse_duration(f"{ms}ms"))
        if parse_duration(rendered) != pytest.approx(ms / 1000, rel=1e-12, abs=0.0):
            wrong[ms] = rendered

    assert wrong == {}


@pytest.mark.parametrize("seconds", [1234567.5, 123456.7, 1e-05, 1.2345678])
def test_format_duration_round_trips_values_with_many_significant_digits(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


def test_format_duration_accepts_an_int_zero() -> None:
    assert parse_duration(format_duration(0)) == 0.0


# Duration (pydantic) ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("250ms", 0.25), ("5m", 300.0), (2, 2.0), (0.5, 0.5), (timedelta(hours=1), 3600.0), (0, 0.0)],
)
def test_duration_field_accepts_numbers_strings_and_timedeltas(value: object, seconds: float) -> None:
    assert Timeouts(timeout=value).timeout == seconds  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [-1, -0.001, timedelta(seconds=-5)])
def test_duration_field_rejects_negative_values(value: object) -> None:
    with pytest.raises(ValidationError) as raised:
        Timeouts(timeout=value)  # type: ignore[arg-type]

    (error,) = raised.value.errors()
    assert error["loc"] == ("timeout",)
    assert error["type"] == "greater_than_equal"


def test_duration_field_reports_invalid_strings_with_the_field_name() -> None:
    with pytest.raises(ValidationError) as raised:
        Timeouts(timeout="soon")  # type: ignore[arg-type]

    (error,) = raised.value.errors()
    assert error["loc"] == ("timeout",)
    assert "invalid duration 'soon'" in error["msg"]


def test_duration_field_rejects_none_and_lists() -> None:
    for value in (None, [1]):
        with pytest.raises(ValidationError):
            Timeouts(timeout=value)  # type: ignore[arg-type]


def test_duration_field_rejects_booleans() -> None:
    with pytest.raises(ValidationError):
        Timeouts(timeout=True)  # type: ignore[arg-type]


def test_duration_serialises_as_a_readable_string_in_json_and_as_seconds_in_python() -> None:
    model = Timeouts(timeout="250ms")

    assert model.model_dump() == {"timeout": 0.25}
    assert model.model_dump_json() == '{"timeout":"250ms"}'


@pytest.mark.parametrize("value", ["250ms", "7d", 1.5, "90m", 0])
def test_duration_json_dump_reloads_to_the_same_value(value: object) -> None:
    model = Timeouts(timeout=value)  # type: ignore[arg-type]

    assert Timeouts.model_validate_json(model.model_dump_json()) == model
