"""The codec seam: bytes on the wire to the handler's declared type, and values back to bytes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

Decoder = Callable[[bytes], Any]


class Codec(Protocol):
    """Encodes outgoing values and builds decoders for handler parameter types.

    ``decoder_for`` is called once per handler at startup, so per-message decoding does no type
    inspection. A decoder raises any exception on bad input; the invoker reports it as a
    :class:`~listeners.exceptions.MessageDecodeError`.
    """

    def decoder_for(self, target: Any) -> Decoder:
        """A function decoding a message body into ``target`` (a type or annotation)."""
        ...

    def encode(self, value: Any) -> tuple[bytes, str]:
        """The body bytes and content type for ``value``."""
        ...
