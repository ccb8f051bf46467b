"""Headers to and from AMQP tables: text as strings, other bytes as byte arrays, both encodable."""

from __future__ import annotations

from pamqp import decode, encode

from listeners.rabbit.amqp import header_pairs_from_table, table_from_header_pairs


def test_non_utf8_values_become_byte_arrays_that_encode_and_read_back_unchanged() -> None:
    pairs = (("x-text", b"plain"), ("x-binary", b"\xff\xfe\x00 not utf-8"))
    table = table_from_header_pairs(pairs)
    assert table == {"x-text": "plain", "x-binary": bytearray(b"\xff\xfe\x00 not utf-8")}
    _, decoded = decode.field_table(encode.field_table(table))  # a republish must not fail here
    assert sorted(header_pairs_from_table(decoded)) == sorted(pairs), "an AMQP table keeps no order"
