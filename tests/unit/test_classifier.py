"""Exception classification: configured lists, base classes, cause chains and framework errors."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter, ValidationError

from listeners.exceptions import (
    BrokerUnavailableError,
    MessageDecodeError,
    PublishError,
    RejectMessage,
    RetryLater,
    TransportError,
    UnroutableError,
)
from listeners.retry.classifier import DefaultClassifier, ExceptionClassifier, cause_chain, class_names
from listeners.spec import exception_name


class PaymentDeclined(Exception):
    pass


class CardExpired(PaymentDeclined):
    pass


class Outer:
    class Nested(Exception):
        pass


def dotted(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def chained(outer: BaseException, inner: BaseException) -> BaseException:
    """``outer`` raised ``from inner``, as Python records it."""
    try:
        try:
            raise inner
        except BaseException as caught:
            raise outer from caught
    except BaseException as error:
        return error


def implicit(outer: BaseException, inner: BaseException) -> BaseException:
    """``outer`` raised while handling ``inner`` (implicit ``__context__``)."""
    try:
        try:
            raise inner
        except BaseException:
            raise outer  # noqa: B904 - the implicit context is what is under test
    except BaseException as error:
        return error


def validation_error() -> ValidationError:
    try:
        TypeAdapter(int).validate_python("not a number")
    except ValidationError as error:
        return error
    raise AssertionError("expected a ValidationError")


# class_names / cause_chain -----------------------------------------------------------------------------


def test_class_names_include_dotted_names_of_the_class_and_its_bases() -> None:
    names = class_names(CardExpired)

    assert dotted(CardExpired) in names
    assert dotted(PaymentDeclined) in names
    assert "builtins.Exception" in names


def test_class_names_of_builtins_include_the_bare_name() -> None:
    names = class_names(KeyError)

    assert {"KeyError", "LookupError", "Exception", "BaseException"} <= names
    assert "builtins.KeyError" in names


def test_class_names_of_user_classes_do_not_include_the_bare_name() -> None:
    assert "CardExpired" not in class_names(CardExpired)


def test_cause_chain_yields_the_error_then_its_causes_innermost_last() -> None:
    inner = KeyError("k")
    middle = chained(ValueError("v"), inner)
    outer = chained(RuntimeError("r"), middle)

    assert list(cause_chain(outer)) == [outer, middle, inner]


def test_cause_chain_stops_at_cycles() -> None:
    first, second = ValueError("a"), RuntimeError("b")
    first.__cause__ = second
    second.__cause__ = first

    assert list(cause_chain(first)) == [first, second]


def test_cause_chain_stops_at_a_self_reference() -> None:
    error = ValueError("me")
    error.__context__ = error

    assert list(cause_chain(error)) == [error]


# defaults ---------------------------------------------------------------------------------------------


def test_default_classifier_satisfies_the_protocol() -> None:
    classifier: ExceptionClassifier = DefaultClassifier()

    assert classifier.is_retryable(RuntimeError())


@pytest.mark.parametrize("error", [RuntimeError("x"), ValueError("x"), ConnectionError(), PaymentDeclined()])
def test_errors_are_retryable_by_default(error: Exception) -> None:
    assert DefaultClassifier().is_retryable(error)


# not_retryable ----------------------------------------------------------------------------------------


def test_not_retryable_by_dotted_name() -> None:
    classifier = DefaultClassifier(not_retryable=(dotted(PaymentDeclined),))

    assert not classifier.is_retryable(PaymentDeclined())
    assert classifier.is_retryable(RuntimeError())


def test_not_retryable_by_bare_builtin_name() -> None:
    classifier = DefaultClassifier(not_retryable=("ValueError",))

    assert not classifier.is_retryable(ValueError())
    assert classifier.is_retryable(TypeError())


def test_not_retryable_by_dotted_builtin_name() -> None:
    assert not DefaultClassifier(not_retryable=("builtins.KeyError",)).is_retryable(KeyError())


def test_a_bare_name_does_not_match_user_classes() -> None:
    assert DefaultClassifier(not_retryable=("PaymentDeclined",)).is_retryable(PaymentDeclined())


def test_not_retryable_matches_subclasses_through_the_mro() -> None:
    assert not DefaultClassifier(not_retryable=(dotted(PaymentDeclined),)).is_retryable(CardExpired())
    assert not DefaultClassifier(not_retryable=("LookupError",)).is_retryable(KeyError("k"))
    assert not DefaultClassifier(not_retryable=("OSError",)).is_retryable(ConnectionResetError())


def test_a_listed_subclass_does_not_match_its_base() -> None:
    assert DefaultClassifier(not_retryable=(dotted(CardExpired),)).is_retryable(PaymentDeclined())


def test_nested_classes_match_by_qualified_name() -> None:
    classifier = DefaultClassifier(not_retryable=(f"{__name__}.Outer.Nested",))

    assert not classifier.is_retryable(Outer.Nested())


def test_not_retryable_wins_over_retryable_for_the_same_exception() -> None:
    classifier = DefaultClassifier(retryable=("Exception",), not_retryable=("ValueError",))

    assert not classifier.is_retryable(ValueError())
    assert classifier.is_retryable(TypeError())


# retryable --------------------------------------------------------------------------------------------


def test_a_retryable_list_restricts_retries_to_listed_exceptions() -> None:
    classifier = DefaultClassifier(retryable=("TimeoutError", dotted(PaymentDeclined)))

    assert classifier.is_retryable(TimeoutError())
    assert classifier.is_retryable(CardExpired())
    assert not classifier.is_retryable(RuntimeError())
    assert not classifier.is_retryable(ValueError())


# cause chains -----------------------------------------------------------------------------------------


def test_a_not_retryable_cause_makes_the_wrapper_not_retryable() -> None:
    error = chained(RuntimeError("wrapped"), ValueError("bad"))

    assert not DefaultClassifier(not_retryable=("ValueError",)).is_retryable(error)


def test_implicit_context_is_traversed() -> None:
    error = implicit(RuntimeError("while handling"), KeyError("missing"))

    assert not DefaultClassifier(not_retryable=("KeyError",)).is_retryable(error)


def test_deep_chains_are_traversed_to_the_root() -> None:
    error = chained(RuntimeError("a"), chained(OSError("b"), PaymentDeclined("c")))

    assert not DefaultClassifier(not_retryable=(dotted(PaymentDeclined),)).is_retryable(error)


def test_the_outermost_exception_a_rule_speaks_for_decides() -> None:
    error = chained(TimeoutError("outer"), ValueError("inner"))
    classifier = DefaultClassifier(retryable=("TimeoutError",), not_retryable=("ValueError",))

    assert classifier.is_retryable(error)


def test_a_retryable_cause_allows_retries_under_a_retryable_list() -> None:
    error = chained(RuntimeError("wrapper"), TimeoutError("slow"))

    assert DefaultClassifier(retryable=("TimeoutError",)).is_retryable(error)


def test_suppressed_context_is_not_traversed() -> None:
    try:
        try:
            raise ValueError("hidden")
        except ValueError:
            raise RuntimeError("clean") from None
    except RuntimeError as caught:
        error = caught

    assert error.__context__ is not None  # Python still records it; the classifier must ignore it
    assert DefaultClassifier(not_retryable=("ValueError",)).is_retryable(error)


def test_a_cycle_in_the_cause_chain_terminates_with_the_default() -> None:
    first, second = RuntimeError("a"), OSError("b")
    first.__cause__ = second
    second.__context__ = first

    assert DefaultClassifier(not_retryable=("KeyError",)).is_retryable(first)
    assert not DefaultClassifier(retryable=("KeyError",)).is_retryable(first)


# framework errors and validation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (MessageDecodeError("bad payload"), False),
        (RejectMessage("no"), False),
        (RetryLater(delay=5.0), True),
        (TransportError("broker"), True),
        (BrokerUnavailableError("down"), True),
        (PublishError("not confirmed"), True),
        (UnroutableError("no queue"), False),
    ],
)
def test_framework_errors_are_classified_by_their_class(error: Exception, retryable: bool) -> None:
    assert DefaultClassifier().is_retryable(error) is retryable


def test_retry_later_is_retried_even_under_a_retryable_list() -> None:
    assert DefaultClassifier(retryable=("TimeoutError",)).is_retryable(RetryLater())


def test_configured_lists_override_framework_errors() -> None:
    assert not DefaultClassifier(not_retryable=(dotted(TransportError),)).is_retryable(
        BrokerUnavailableError()
    )
    assert DefaultClassifier(retryable=(dotted(RejectMessage),)).is_retryable(RejectMessage())


def test_a_framework_error_as_cause_decides() -> None:
    error = chained(RuntimeError("wrapped"), MessageDecodeError("bad"))

    assert not DefaultClassifier().is_retryable(error)


def test_pydantic_validation_error_is_not_retryable() -> None:
    assert not DefaultClassifier().is_retryable(validation_error())


def test_pydantic_validation_error_as_cause_is_not_retryable() -> None:
    assert not DefaultClassifier().is_retryable(chained(RuntimeError("wrapper"), validation_error()))


def test_a_retryable_listing_overrides_validation_error() -> None:
    assert DefaultClassifier(retryable=(exception_name(ValidationError),)).is_retryable(validation_error())


@pytest.mark.parametrize(
    "cls", [ValueError, KeyError, PaymentDeclined, Outer.Nested, ValidationError, RetryLater]
)
def test_names_stored_by_the_spec_for_a_class_match_that_class(cls: type) -> None:
    # Retry(not_retryable=(SomeError,)) stores exception_name(SomeError); the classifier must recognise it.
    assert exception_name(cls) in class_names(cls)
