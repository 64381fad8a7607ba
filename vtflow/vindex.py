"""Vitess's ``hash`` vindex and shard key ranges: which shard of a sharded keyspace owns a row.

Facts (../shared/VITESS-WORKFLOWS.md §2, read from vitessio/vitess
go/vt/vtgate/vindexes/hash.go and hash_test.go): the id becomes a uint64 (a signed value wraps,
-1 is 0xffffffffffffffff), its 8 big-endian bytes are encrypted with 3DES under an all-zero
24-byte key (three equal keys: single DES under a zero key), one ECB block; the ciphertext is
the keyspace id. A shard ``<start>-<end>`` (hex, either side empty) holds the keyspace ids with
start <= id < end, compared byte by byte (an empty start is the lowest, an empty end none);
``-`` and ``0`` are the whole range (an unsharded keyspace).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

from vtflow.errors import ConfigError

_ZERO_KEY = bytes(24)
_HEX = re.compile(r"(?:[0-9a-f]{2})*")


def _cipher() -> Cipher:
    return Cipher(TripleDES(_ZERO_KEY), modes.ECB())


def hash_keyspace_id(value: int) -> bytes:
    """The keyspace id the ``hash`` vindex gives an integer id (8 bytes)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"the hash vindex maps integers, not {type(value).__name__} {value!r}")
    if not -(1 << 63) <= value < (1 << 64):
        raise ValueError(f"{value} is outside the 64-bit range the hash vindex maps")
    enc = _cipher().encryptor()
    return enc.update((value & 0xFFFF_FFFF_FFFF_FFFF).to_bytes(8, "big")) + enc.finalize()


def hash_reverse(keyspace_id: bytes) -> int:
    """The id whose keyspace id this is (the vindex is reversible), as a uint64."""
    if len(keyspace_id) != 8:
        raise ValueError(f"invalid keyspace id: {keyspace_id.hex()}")
    dec = _cipher().decryptor()
    return int.from_bytes(dec.update(keyspace_id) + dec.finalize(), "big")


@dataclass(frozen=True)
class KeyRange:
    """The keyspace ids a shard holds: [start, end), end None for no upper bound."""

    start: bytes
    end: bytes | None

    @classmethod
    def of_shard(cls, shard: str) -> "KeyRange":
        if shard in ("-", "0", ""):
            return cls(b"", None)
        start, sep, end = shard.partition("-")
        if not sep or "-" in end or not _HEX.fullmatch(start.lower()) or not _HEX.fullmatch(end.lower()):
            raise ConfigError(f"shard {shard!r}", "is not a key range (hex start, '-', hex end, e.g. -80, 80-, 40-80).",
                              "name shards by their key ranges, as the VitessCluster's partitionings do.")
        kr = cls(bytes.fromhex(start), bytes.fromhex(end) if end else None)
        if kr.end is not None and kr.end <= kr.start:
            raise ConfigError(f"shard {shard!r}", "ends before it starts.", "give the lower bound first, e.g. 40-80.")
        return kr

    def contains(self, keyspace_id: bytes) -> bool:
        return self.start <= keyspace_id and (self.end is None or keyspace_id < self.end)


def shard_of(keyspace_id: bytes, shards: list[str]) -> str:
    """The one shard of ``shards`` whose range holds ``keyspace_id``."""
    owners = [s for s in shards if KeyRange.of_shard(s).contains(keyspace_id)]
    if len(owners) != 1:
        what = "no shard" if not owners else f"shards {', '.join(owners)}"
        raise ConfigError(f"shards {','.join(shards)}", f"{what} hold keyspace id {keyspace_id.hex()}: the ranges do "
                          "not cover the keyspace once.", "give shards whose ranges join end to end, from - to -.")
    return owners[0]
