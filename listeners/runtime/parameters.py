"""What each handler parameter receives, worked out once from the signature.

Rules, in order: a parameter annotated :class:`~listeners.message.Message` gets the message,
:class:`~listeners.message.Headers` all headers, ``Annotated[T, Header("name")]`` one header,
:class:`~listeners.idempotency.store.StoreTransaction` the idempotency transaction; a
dependency-injector marker (``Provide[...]``) is left to wiring; the first remaining parameter is the
payload, decoded by its annotation (unannotated means JSON). Any further parameter must have a default.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, get_args, get_origin

from listeners.exceptions import DeclarationError
from listeners.idempotency.store import StoreTransaction
from listeners.message import Header, Headers, Message


@dataclass(frozen=True, slots=True)
class HeaderParameter:
    """A parameter bound to one header."""

    parameter: str
    header: str
    annotation: Any
    default: Any


@dataclass(frozen=True, slots=True)
class ParameterPlan:
    """How to build a handler's arguments from a message."""

    payload: str | None
    payload_type: Any
    message: tuple[str, ...]
    headers: tuple[str, ...]
    header_values: tuple[HeaderParameter, ...]
    is_async: bool
    batch: bool = False
    message_lists: tuple[str, ...] = ()
    payload_first: bool = False
    """The payload is the first parameter, so it can be passed positionally."""
    transactions: tuple[str, ...] = ()
    """Parameters that receive the idempotency transaction (transactional mode)."""


def plan_parameters(
    fn: Callable[..., Any], where: str, *, skip_first: bool = False, batch: bool = False
) -> ParameterPlan:
    """Analyse ``fn``'s signature; raise :class:`DeclarationError` naming ``where`` if it cannot be served."""
    if inspect.isasyncgenfunction(inspect.unwrap(fn)) or inspect.isgeneratorfunction(inspect.unwrap(fn)):
        raise DeclarationError(
            f"{where}: a handler cannot be a generator; return a value (with @send_to) instead"
        )
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError) as error:
        raise DeclarationError(f"{where}: cannot read the handler's signature: {error}") from None
    hints = _type_hints(fn, where)
    parameters = list(signature.parameters.values())
    if skip_first and parameters:
        parameters = parameters[1:]

    payload: str | None = None
    payload_type: Any = Any
    message: list[str] = []
    headers: list[str] = []
    header_values: list[HeaderParameter] = []
    message_lists: list[str] = []
    transactions: list[str] = []
    first = next((p.name for p in parameters if p.kind == p.POSITIONAL_OR_KEYWORD), None)
    for parameter in parameters:
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if parameter.kind == parameter.POSITIONAL_ONLY:
            raise DeclarationError(f"{where}: positional-only parameter {parameter.name!r} is not supported")
        annotation = hints.get(parameter.name, parameter.annotation)
        if annotation is inspect.Parameter.empty:
            annotation = Any
        base, metadata = _split_annotated(annotation)
        if _is_dependency(parameter, metadata):
            continue
        header = next((item for item in metadata if isinstance(item, Header)), None)
        if header is not None:
            header_values.append(HeaderParameter(parameter.name, header.name, base, parameter.default))
        elif _is_subclass(base, Message):
            message.append(parameter.name)
        elif _is_subclass(base, Headers):
            headers.append(parameter.name)
        elif _is_subclass(base, StoreTransaction):
            transactions.append(parameter.name)
        elif batch and _is_message_list(base):
            message_lists.append(parameter.name)
        elif payload is None:
            payload, payload_type = parameter.name, annotation
        elif parameter.default is inspect.Parameter.empty:
            raise DeclarationError(
                f"{where}: parameter {parameter.name!r} cannot be resolved: the payload is {payload!r}; "
                "annotate context parameters with Message, Headers or Annotated[T, Header(...)], "
                "inject services with Provide[...], or give it a default"
            )
    if payload is None and not message and not message_lists:
        raise DeclarationError(
            f"{where}: no payload parameter; declare one (e.g. 'order: OrderPlaced') or a Message parameter"
        )
    if batch and payload is not None:
        payload_type = _element_type(payload_type, payload, where)
    return ParameterPlan(
        payload=payload,
        payload_type=payload_type,
        message=tuple(message),
        headers=tuple(headers),
        header_values=tuple(header_values),
        is_async=is_async_callable(fn),
        batch=batch,
        message_lists=tuple(message_lists),
        payload_first=payload is not None and payload == first,
        transactions=tuple(transactions),
    )


def check_declaration(fn: Callable[..., Any], where: str, *, batch: bool = False) -> None:
    """Decoration-time check of a handler's signature.

    Methods are recognised by their qualified name (``Class.method``) and their ``self`` skipped.
    Annotations that cannot be resolved yet (forward references) are checked again at startup.
    """
    parts = fn.__qualname__.split(".")
    is_method = len(parts) > 1 and parts[-2] != "<locals>"
    try:
        plan_parameters(fn, where, skip_first=is_method, batch=batch)
    except _UnresolvedHints:
        return


def is_async_callable(fn: Callable[..., Any]) -> bool:
    """True for coroutine functions, bound async methods and objects with an async ``__call__``."""
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 - instances with async __call__
    return call is not None and inspect.iscoroutinefunction(call)


class _UnresolvedHints(DeclarationError):
    pass


def _type_hints(fn: Callable[..., Any], where: str) -> dict[str, Any]:
    target = inspect.unwrap(getattr(fn, "__func__", fn))
    try:
        return typing.get_type_hints(target, include_extras=True)
    except NameError as error:
        raise _UnresolvedHints(f"{where}: cannot resolve annotation: {error}") from None
    except Exception:
        return {}


def _is_message_list(annotation: Any) -> bool:
    return get_origin(annotation) is list and _is_subclass(next(iter(get_args(annotation)), None), Message)


def _element_type(annotation: Any, name: str, where: str) -> Any:
    """``T`` of a batch payload ``list[T]`` (bare ``list`` or no annotation: JSON values)."""
    base, _ = _split_annotated(annotation)
    if base is Any or base is list:
        return Any
    if get_origin(base) is list:
        return next(iter(get_args(base)), Any)
    raise DeclarationError(f"{where}: a batch listener's payload {name!r} must be a list, e.g. list[Order]")


def _split_annotated(annotation: Any) -> tuple[Any, tuple[Any, ...]]:
    if get_origin(annotation) is Annotated:
        base, *metadata = get_args(annotation)
        return base, tuple(metadata)
    return annotation, ()


def is_injection_marker(value: Any) -> bool:
    """A dependency-injector marker such as ``Provide[...]`` (recognised by its marker flag)."""
    return getattr(value, "__IS_MARKER__", False) is True


def uses_injection(function: Callable[..., Any]) -> bool:
    """Whether a handler declares dependency-injector markers for any parameter."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(
        _is_dependency(parameter, _split_annotated(parameter.annotation)[1]) for parameter in parameters
    )


def _is_dependency(parameter: inspect.Parameter, metadata: tuple[Any, ...]) -> bool:
    return is_injection_marker(parameter.default) or any(is_injection_marker(item) for item in metadata)


def _is_subclass(candidate: Any, cls: type) -> bool:
    return inspect.isclass(candidate) and issubclass(candidate, cls)
