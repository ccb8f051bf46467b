"""Payload encoding and decoding."""

from listeners.codec.base import Codec, Decoder
from listeners.codec.json import JsonCodec

__all__ = ["Codec", "Decoder", "JsonCodec"]
