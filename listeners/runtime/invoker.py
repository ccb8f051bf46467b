"""The innermost pipeline step: decode, build arguments, call the handler, forward its result."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from typing import Any

from pydantic import TypeAdapter

from listeners.codec import Codec
from listeners.exceptions import MessageDecodeError
from listeners.idempotency.guard import IdempotencyGuard
from listeners.idempotency.store import StoreTransaction
from listeners.message import Message
from listeners.outcome import ACK, Outcome
from listeners.runtime.parameters import HeaderParameter, ParameterPlan
from listeners.runtime.pipeline import DirectCall

Forward = Callable[[Any, Message], Awaitable[None]]
ArgumentBuilder = Callable[[Message], Any]


class Invoker:
    """Calls one handler for one message.

    Async handlers run on the event loop; sync handlers run in the bounded ``executor`` with the
    caller's context variables. A payload or header that cannot be converted raises
    :class:`~listeners.exceptions.MessageDecodeError` (fatal: no retries). With an idempotency
    ``guard`` the handler runs only for a business key claimed in the store (after decoding, since
    the key may come from the payload).
    """

    def __init__(
        self,
        *,
        listener_id: str,
        handler: Callable[..., Any],
        plan: ParameterPlan,
        codec: Codec,
        executor: Executor,
        forward: Forward | None = None,
        guard: IdempotencyGuard | None = None,
        key_needs_payload: bool = True,
    ) -> None:
        self._listener_id = listener_id
        self._handler = handler
        self._is_async = plan.is_async
        self._executor = executor
        self._forward = forward
        self._guard = guard
        self._builders = self._argument_builders(plan, codec)
        # The common handler is async and takes just its payload: decode inline, call it positionally.
        only_payload = plan.payload_first and len(self._builders) == 1 and plan.is_async and not plan.batch
        self._decode_only = codec.decoder_for(plan.payload_type) if only_payload and guard is None else None
        self._payload_type = plan.payload_type
        self._payload_name = plan.payload
        self._transactions = plan.transactions
        # A key read from the payload of a handler that takes none: decode the body as plain JSON.
        self._key_payload = (
            self._payload_builder(codec, Any) if key_needs_payload and plan.payload is None else None
        )
        payload_builder = dict(self._builders).get(plan.payload) if plan.payload is not None else None
        self._payload_reader = payload_builder or self._key_payload
        self._other_builders = [(name, build) for name, build in self._builders if name != plan.payload]
        # A key claimed ahead: an async handler that needs no transaction is called inline (see __call__).
        self._claimed_call = plan.is_async and not plan.transactions
        self._payload_only = only_payload

    async def __call__(self, message: Message) -> Outcome:
        decode = self._decode_only
        if decode is not None:
            try:
                payload = decode(message.body)
            except Exception as error:
                raise _decode_error(self._listener_id, self._payload_type, message, error) from error
            result = await self._handler(payload)
            if result is not None and self._forward is not None:
                await self._forward(result, message)
            return ACK
        guard = self._guard
        early = guard.take(message) if guard is not None else None
        if guard is not None and early is not None:  # decoded when accepted
            if not early.ready.done():
                await guard.claimed_ahead(early)
            if self._claimed_call and guard.held_ahead(early):
                # The common case inline (no coroutines of the guard's around the handler's).
                try:
                    if self._payload_only:
                        result = await self._handler(early.payload)
                    else:
                        result = await self._handler(**self._arguments_around(message, early.payload))
                    if result is not None and self._forward is not None:
                        await self._forward(result, message)
                except BaseException:
                    await guard.failed(early)
                    raise
                return guard.handled(early)
            arguments = self._arguments_around(message, early.payload)
            return await guard.run(
                message, early.payload, functools.partial(self._call, message, arguments), early
            )
        arguments = {name: build(message) for name, build in self._builders}
        if guard is None:  # _call inlined: one coroutine frame less on every message
            if self._is_async:
                result = await self._handler(**arguments)
            else:
                call = functools.partial(contextvars.copy_context().run, self._handler, **arguments)
                result = await asyncio.get_running_loop().run_in_executor(self._executor, call)
            if result is not None and self._forward is not None:
                await self._forward(result, message)
            return ACK
        if self._payload_name is not None:
            payload = arguments[self._payload_name]
        else:
            payload = self._key_payload(message) if self._key_payload is not None else None
        return await guard.run(message, payload, functools.partial(self._call, message, arguments))

    def _arguments_around(self, message: Message, payload: Any) -> dict[str, Any]:
        """The handler's arguments for ``message`` whose payload was decoded already."""
        arguments = {name: build(message) for name, build in self._other_builders}
        if self._payload_name is not None:
            arguments[self._payload_name] = payload
        return arguments

    @property
    def direct(self) -> DirectCall | None:
        """The handler call in parts when handling a message is nothing more than awaiting the async
        handler with its decoded payload (no other parameters, no forward, no guard): the listener
        container then calls them itself, one coroutine less per message. None otherwise."""
        if self._decode_only is None or self._forward is not None:
            return None
        decode_failed = functools.partial(_decode_error, self._listener_id, self._payload_type)
        return DirectCall(self._decode_only, self._handler, decode_failed)

    @property
    def lookahead(self) -> Invoker | None:
        """This invoker as the container's look-ahead when its guard claims keys ahead, else None."""
        guard = self._guard
        return self if guard is not None and guard.claims_ahead else None

    def expect(self, message: Message) -> None:
        """The container accepted ``message``: decode what its key needs and let the guard claim it
        ahead. A body that cannot be decoded is left for its turn, which raises the error."""
        guard = self._guard
        if guard is None:
            return
        read = self._payload_reader
        try:
            payload = read(message) if read is not None else None
        except Exception:
            return
        guard.expect(message, payload)

    def forget(self, message: Message) -> None:
        """The container released ``message`` before its turn."""
        if self._guard is not None:
            self._guard.forget(message)

    async def _call(
        self, message: Message, arguments: dict[str, Any], transaction: StoreTransaction | None
    ) -> Outcome:
        for name in self._transactions:
            arguments[name] = transaction
        if self._is_async:
            result = await self._handler(**arguments)
        else:
            call = functools.partial(contextvars.copy_context().run, self._handler, **arguments)
            result = await asyncio.get_running_loop().run_in_executor(self._executor, call)
        if result is not None and self._forward is not None:
            await self._forward(result, message)
        return ACK

    def _argument_builders(self, plan: ParameterPlan, codec: Codec) -> list[tuple[str, ArgumentBuilder]]:
        builders: list[tuple[str, ArgumentBuilder]] = []
        if plan.payload is not None:
            payload = self._payload_builder(codec, plan.payload_type)
            builders.append((plan.payload, _each(payload) if plan.batch else payload))
        builders.extend((name, _message) for name in plan.message)
        builders.extend((name, _records) for name in plan.message_lists)
        builders.extend((name, _headers) for name in plan.headers)
        builders.extend((name, _no_transaction) for name in plan.transactions)
        builders.extend((header.parameter, self._header_builder(header)) for header in plan.header_values)
        return builders

    def _payload_builder(self, codec: Codec, payload_type: Any) -> ArgumentBuilder:
        decode = codec.decoder_for(payload_type)
        listener_id = self._listener_id

        def payload(message: Message) -> Any:
            try:
                return decode(message.body)
            except Exception as error:
                raise _decode_error(listener_id, payload_type, message, error) from error

        return payload

    def _header_builder(self, header: HeaderParameter) -> ArgumentBuilder:
        convert = _header_converter(header.annotation)
        listener_id = self._listener_id
        missing = header.default is inspect.Parameter.empty

        def value(message: Message) -> Any:
            raw = message.headers.get(header.header)
            if raw is None:
                if missing:
                    raise MessageDecodeError(
                        f"listener {listener_id}: {message.describe()} has no header {header.header!r} "
                        f"required by parameter {header.parameter!r}"
                    )
                return header.default
            try:
                return convert(raw)
            except Exception as error:
                raise MessageDecodeError(
                    f"listener {listener_id}: header {header.header!r} of {message.describe()} does not fit "
                    f"parameter {header.parameter!r}: {error}"
                ) from error

        return value


def _decode_error(
    listener_id: str, payload_type: Any, message: Message, error: Exception
) -> MessageDecodeError:
    type_name = getattr(payload_type, "__name__", repr(payload_type))
    return MessageDecodeError(
        f"listener {listener_id}: cannot decode the payload of {message.describe()} as {type_name}: {error}"
    )


def _no_transaction(message: Message) -> None:
    """Until the guard opens one: the transaction parameter is set just before the call."""
    return None


def _message(message: Message) -> Message:
    return message


def _headers(message: Message) -> Any:
    return message.headers


def _records(message: Message) -> Any:
    return list(message.records)


def _each(build: ArgumentBuilder) -> ArgumentBuilder:
    """A batch argument: ``build`` applied to every record; one bad record fails the whole batch."""

    def build_all(message: Message) -> Any:
        return [build(record) for record in message.records]

    return build_all


def _header_converter(annotation: Any) -> Callable[[bytes], Any]:
    if annotation is bytes:
        return bytes
    if annotation is str or annotation is Any:
        return lambda raw: raw.decode("utf-8")
    adapter: TypeAdapter[Any] = TypeAdapter(annotation)
    return lambda raw: adapter.validate_python(raw.decode("utf-8"))
