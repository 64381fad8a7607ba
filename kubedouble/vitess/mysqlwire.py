"""MySQL client/server protocol pieces the vtgate stand-in needs: packets and result sets.

Only framing (3-byte length + sequence id), the capability bits it inspects, and encoders
for a text result set (column count, column definitions, rows, EOF or OK-as-EOF when
CLIENT_DEPRECATE_EOF was negotiated) and ERR packets. No sockets here.
"""

from __future__ import annotations

import struct

CLIENT_LONG_PASSWORD = 0x1          # MariaDB clears it to announce its extended capabilities
CLIENT_CONNECT_WITH_DB = 0x8
CLIENT_COMPRESS = 0x20
CLIENT_PROTOCOL_41 = 0x200
CLIENT_SSL = 0x800
CLIENT_SECURE_CONNECTION = 0x8000
CLIENT_PLUGIN_AUTH = 0x80000
CLIENT_CONNECT_ATTRS = 0x100000
CLIENT_PLUGIN_AUTH_LENENC = 0x200000
CLIENT_DEPRECATE_EOF = 0x1000000
CLIENT_ZSTD = 0x4000000
CLIENT_QUERY_ATTRIBUTES = 0x8000000

COM_QUIT, COM_INIT_DB, COM_QUERY = 0x01, 0x02, 0x03
SERVER_STATUS_AUTOCOMMIT = 0x0002
MYSQL_TYPE_LONGLONG, MYSQL_TYPE_VAR_STRING = 0x08, 0xFD
UTF8MB4_GENERAL_CI, BINARY = 45, 63


def packet(seq: int, payload: bytes) -> bytes:
    return struct.pack("<I", len(payload))[:3] + bytes([seq & 0xFF]) + payload


def lenenc_int(n: int) -> bytes:
    if n < 251:
        return bytes([n])
    if n < 1 << 16:
        return b"\xfc" + struct.pack("<H", n)
    if n < 1 << 24:
        return b"\xfd" + struct.pack("<I", n)[:3]
    return b"\xfe" + struct.pack("<Q", n)


def lenenc_str(b: bytes) -> bytes:
    return lenenc_int(len(b)) + b


def read_lenenc_int(buf: bytes, pos: int) -> tuple[int, int]:
    first = buf[pos]
    if first < 251:
        return first, pos + 1
    if first == 0xFC:
        return struct.unpack_from("<H", buf, pos + 1)[0], pos + 3
    if first == 0xFD:
        return int.from_bytes(buf[pos + 1:pos + 4], "little"), pos + 4
    return struct.unpack_from("<Q", buf, pos + 1)[0], pos + 9


def _column(name: str, numeric: bool) -> bytes:
    return (lenenc_str(b"def") + lenenc_str(b"") + lenenc_str(b"") + lenenc_str(b"") +
            lenenc_str(name.encode()) + lenenc_str(name.encode()) + b"\x0c" +
            struct.pack("<HIBHB", BINARY if numeric else UTF8MB4_GENERAL_CI, 20 if numeric else 1024,
                        MYSQL_TYPE_LONGLONG if numeric else MYSQL_TYPE_VAR_STRING, 0x20 if numeric else 0, 0) + b"\x00\x00")


def _eof(deprecate_eof: bool) -> bytes:
    if deprecate_eof:   # OK packet with the EOF header byte
        return b"\xfe" + lenenc_int(0) + lenenc_int(0) + struct.pack("<HH", SERVER_STATUS_AUTOCOMMIT, 0)
    return b"\xfe" + struct.pack("<HH", 0, SERVER_STATUS_AUTOCOMMIT)


def result_set(columns: list[tuple[str, bool]], rows: list[list[object]], deprecate_eof: bool, seq: int = 1) -> bytes:
    """Packets of a text result set; ``columns`` are (name, numeric)."""
    out = [packet(seq, lenenc_int(len(columns)))]
    seq += 1
    for name, numeric in columns:
        out.append(packet(seq, _column(name, numeric)))
        seq += 1
    if not deprecate_eof:
        out.append(packet(seq, _eof(False)))
        seq += 1
    for row in rows:
        payload = b"".join(b"\xfb" if v is None else lenenc_str(str(v).encode()) for v in row)
        out.append(packet(seq, payload))
        seq += 1
    out.append(packet(seq, _eof(deprecate_eof)))
    return b"".join(out)


def ok_packet(seq: int = 1) -> bytes:
    return packet(seq, b"\x00" + lenenc_int(0) + lenenc_int(0) + struct.pack("<HH", SERVER_STATUS_AUTOCOMMIT, 0))


def err_packet(code: int, sqlstate: str, message: str, seq: int = 1) -> bytes:
    return packet(seq, b"\xff" + struct.pack("<H", code) + b"#" + sqlstate.encode()[:5] + message.encode())


def edit_greeting(payload: bytes) -> bytes:
    """The server greeting with TLS, compression and MariaDB's extended capabilities cleared.

    The proxy reads every command, so the session must stay plain and uncompressed; MariaDB's
    extended metadata would change the result-set format the proxy writes itself.
    """
    b = bytearray(payload)
    pos = b.index(0, 1) + 1 + 4 + 8 + 1      # version\0, connection id, scramble part 1, filler
    lower = struct.unpack_from("<H", b, pos)[0] & ~(CLIENT_SSL | CLIENT_COMPRESS)
    struct.pack_into("<H", b, pos, lower)
    if len(b) > pos + 2:
        upper_pos = pos + 2 + 1 + 2
        upper = struct.unpack_from("<H", b, upper_pos)[0] & ~((CLIENT_ZSTD | CLIENT_QUERY_ATTRIBUTES) >> 16)
        struct.pack_into("<H", b, upper_pos, upper)
        ext_pos = upper_pos + 2 + 1 + 6
        if not lower & CLIENT_LONG_PASSWORD and len(b) >= ext_pos + 4:
            struct.pack_into("<I", b, ext_pos, 0)
    return bytes(b)


def parse_handshake_response(payload: bytes) -> dict:
    """Fields of a HandshakeResponse41, with offsets so the database can be replaced."""
    caps = struct.unpack_from("<I", payload, 0)[0]
    out = {"caps": caps, "db": None}
    if not caps & CLIENT_PROTOCOL_41 or len(payload) < 32:
        return out
    pos = 32
    end = payload.index(0, pos)
    out["user"] = payload[pos:end].decode(errors="replace")
    pos = end + 1
    if caps & CLIENT_PLUGIN_AUTH_LENENC:
        n, pos = read_lenenc_int(payload, pos)
        pos += n
    elif caps & CLIENT_SECURE_CONNECTION:
        pos += 1 + payload[pos]
    else:
        pos = payload.index(0, pos) + 1
    if caps & CLIENT_CONNECT_WITH_DB and pos < len(payload):
        end = payload.index(0, pos)
        out["db"] = payload[pos:end].decode(errors="replace")
        out["db_span"] = (pos, end)
    return out


def replace_db(payload: bytes, span: tuple[int, int], db: str) -> bytes:
    return payload[:span[0]] + db.encode() + payload[span[1]:]
