"""vtflow/vindex.py against Vitess's own vectors (hash_test.go, ids 1-6; ids 7-100 as the fact
sheet computed them) and the resharding guide's outcome (ids 1, 2, 3, 5 in -80, 4 in 80-)."""

import pytest

from vtflow.errors import ConfigError
from vtflow.vindex import KeyRange, hash_keyspace_id, hash_reverse, shard_of

VECTORS = {1: "166b40b44aba4bd6", 2: "06e7ea22ce92708f", 3: "4eb190c9a2fa169c", 4: "d2fd8867d50d2dfe",
           5: "70bb023c810ca87a", 6: "f098480ac4c4be71", 7: "fb8baaad918119b8", 8: "cc083f1e6d9e85f6",
           9: "692bb9bf752b0f58", 10: "594764e1a2b2d98e", 100: "83aab1569cbe1b08"}
FOUR = ["-40", "40-80", "80-c0", "c0-"]
IN_FOUR = {1: "-40", 2: "-40", 3: "40-80", 4: "c0-", 5: "40-80", 6: "c0-", 7: "c0-", 8: "c0-", 9: "40-80",
           10: "40-80", 100: "80-c0"}


@pytest.mark.parametrize("value, hexid", VECTORS.items())
def test_hash_gives_vitess_keyspace_ids_and_reverses(value, hexid):
    kid = hash_keyspace_id(value)
    assert kid.hex() == hexid and hash_reverse(kid) == value
    assert shard_of(kid, ["-80", "80-"]) == ("80-" if kid[0] >= 0x80 else "-80")
    assert shard_of(kid, FOUR) == IN_FOUR[value] and shard_of(kid, ["-"]) == "-"


def test_the_resharding_guides_customers_land_where_it_shows():
    assert {i: shard_of(hash_keyspace_id(i), ["-80", "80-"]) for i in range(1, 6)} == \
        {1: "-80", 2: "-80", 3: "-80", 4: "80-", 5: "-80"}


def test_signed_ids_wrap_and_bad_input_is_named():
    assert hash_keyspace_id(-1) == hash_keyspace_id(0xFFFF_FFFF_FFFF_FFFF)
    with pytest.raises(TypeError, match="integers, not str 'aa'"):
        hash_keyspace_id("aa")
    with pytest.raises(ValueError, match="invalid keyspace id: 0102"):
        hash_reverse(b"\x01\x02")


def test_key_ranges_compare_bytes_with_open_ends():
    assert KeyRange.of_shard("-80") == KeyRange(b"", b"\x80") and KeyRange.of_shard("80-") == KeyRange(b"\x80", None)
    assert KeyRange.of_shard("0") == KeyRange.of_shard("-") == KeyRange(b"", None)
    assert KeyRange.of_shard("-80").contains(b"\x7f" + b"\xff" * 7)
    assert not KeyRange.of_shard("-80").contains(b"\x80" + bytes(7))
    assert KeyRange.of_shard("40-80").contains(b"\x40" + bytes(7)) and not KeyRange.of_shard("40-80").contains(b"\x3f")
    for bad in ("x-80", "80", "8-", "80-40", "-80-c0"):
        with pytest.raises(ConfigError, match=f"^shard '{bad}'"):
            KeyRange.of_shard(bad)
    with pytest.raises(ConfigError, match="no shard hold keyspace id"):
        shard_of(hash_keyspace_id(4), ["-80"])
    with pytest.raises(ConfigError, match="shards -, -80 hold"):
        shard_of(hash_keyspace_id(1), ["-", "-80"])
