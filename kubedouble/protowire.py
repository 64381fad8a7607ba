"""The protobuf wire format, both ways, for the few messages the double reads or writes.

Reading: the review kinds kubectl sends as protobuf (``reviews.py``). Writing: the OpenAPI v2
document as kubectl asks for it (``application/com.github.proto-openapi.spec.v2@v1.0+protobuf``,
gnostic's openapi_v2.Document; ``openapi.py``). No message definitions live here: callers know
their field numbers.
"""

from __future__ import annotations

from typing import Iterator


def fields(buf: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) pairs of one message: varints as int, length-delimited and fixed as bytes."""
    i = 0
    while i < len(buf):
        key, i = varint(buf, i)
        no, wire = key >> 3, key & 7
        if wire == 0:
            value, i = varint(buf, i)
        elif wire == 2:
            size, i = varint(buf, i)
            if i + size > len(buf):
                raise ValueError("truncated message")
            value, i = buf[i:i + size], i + size
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            value, i = buf[i:i + width], i + width
        else:
            raise ValueError(f"unexpected wire type {wire}")
        yield no, value


def varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def _varint_bytes(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def message(no: int, payload: bytes) -> bytes:
    """A length-delimited field: a string, bytes or an embedded message."""
    return _varint_bytes(no << 3 | 2) + _varint_bytes(len(payload)) + payload


def string(no: int, value: str) -> bytes:
    return message(no, value.encode()) if value else b""


def boolean(no: int, value: bool) -> bytes:
    return _varint_bytes(no << 3) + b"\x01" if value else b""


def integer(no: int, value: int) -> bytes:
    return _varint_bytes(no << 3) + _varint_bytes(value & (1 << 64) - 1) if value else b""


def double(no: int, value: float) -> bytes:
    import struct
    return _varint_bytes(no << 3 | 1) + struct.pack("<d", float(value)) if value else b""
