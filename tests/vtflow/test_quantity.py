"""vtflow/quantity.py: canonical quantities parse to their values; anything else is a ValueError."""

from decimal import Decimal

import pytest
from hypothesis import given, settings, strategies as st

from vtflow.quantity import cpu_millis, memory_bytes, parse_quantity

SUFFIXES = {"": 1, "m": Decimal("0.001"), "k": 10 ** 3, "M": 10 ** 6, "G": 10 ** 9, "T": 10 ** 12,
            "Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40, "Pi": 2 ** 50, "Ei": 2 ** 60}


def test_examples():
    assert (cpu_millis("500m"), cpu_millis("2"), cpu_millis(1.5), memory_bytes("256Mi"), memory_bytes("1e3")) == (
        500, 2000, 1500, 268435456, 1000)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10 ** 6), st.sampled_from(sorted(SUFFIXES)), st.sampled_from(["", "+"]))
def test_canonical_quantities_parse_to_their_values(n, suffix, sign):
    assert parse_quantity(f"{sign}{n}{suffix}") == n * Decimal(SUFFIXES[suffix])


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10 ** 6), st.integers(0, 999), st.sampled_from(sorted(SUFFIXES)))
def test_decimal_quantities_parse_exactly(whole, frac, suffix):
    assert parse_quantity(f"{whole}.{frac:03d}{suffix}") == Decimal(f"{whole}.{frac:03d}") * Decimal(SUFFIXES[suffix])


@pytest.mark.parametrize("value", [True, None, [1], float("nan"), float("inf"), "1e999999999999999999", "１", "1Gb",
                                   "", " ", "Gi", "1.2.3", "--1", "1 Gi", "0x10"])
def test_garbage_is_a_value_error_naming_it(value):
    with pytest.raises(ValueError) as e:
        cpu_millis(value)
    assert repr(value) in str(e.value)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=12), st.text(st.sampled_from(list("0123456789.eE+-kKMGTPEimun ")), max_size=12),
                 st.floats(), st.integers(-10 ** 30, 10 ** 30), st.booleans(), st.none()))
def test_anything_parses_or_raises_a_value_error(value):
    try:
        parse_quantity(value)
        cpu_millis(value)
        memory_bytes(value)
    except ValueError as e:
        assert repr(value) in str(e)
