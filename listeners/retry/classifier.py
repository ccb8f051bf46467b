"""Which exceptions are worth retrying.

The cause chain is walked from the raised exception inward (``__cause__``, else ``__context__``); the
first exception that a rule speaks for decides, as Spring's classifier does with ``traverseCauses``:

1. its class (or a base class) is listed in ``not_retryable``: not retryable;
2. it is listed in ``retryable``: retryable;
3. it is a framework error: its class says (``MessageDecodeError``/``RejectMessage`` no, ``RetryLater`` yes);
4. it is a pydantic ``ValidationError``: not retryable (bad data stays bad).

If nothing decides, the error is retryable, unless a ``retryable`` list was given (then only listed
exceptions are retried).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from pydantic import ValidationError

from listeners.exceptions import ListenersError


class ExceptionClassifier(Protocol):
    """Decides whether a failed attempt may be retried."""

    def is_retryable(self, error: BaseException) -> bool: ...


def class_names(cls: type) -> set[str]:
    """Names a rule may use for ``cls``: ``module.QualName`` and, for builtins, the bare name."""
    names = set()
    for base in cls.__mro__:
        if base.__module__ == "builtins":
            names.add(base.__qualname__)
        names.add(f"{base.__module__}.{base.__qualname__}")
    return names


def cause_chain(error: BaseException) -> Iterator[BaseException]:
    """``error`` and its causes, innermost last, stopping at cycles."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)


class DefaultClassifier:
    """The rules above, for one listener's ``retryable`` / ``not_retryable`` lists."""

    def __init__(self, retryable: tuple[str, ...] = (), not_retryable: tuple[str, ...] = ()) -> None:
        self._retryable = frozenset(retryable)
        self._not_retryable = frozenset(not_retryable)

    def is_retryable(self, error: BaseException) -> bool:
        for current in cause_chain(error):
            names = class_names(type(current))
            if names & self._not_retryable:
                return False
            if names & self._retryable:
                return True
            if isinstance(current, ListenersError):
                return current.retryable
            if isinstance(current, ValidationError):
                return False
        return not self._retryable
