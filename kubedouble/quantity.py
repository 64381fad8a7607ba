"""Parse Kubernetes resource quantities ("500m", "1.5Gi", "2", "1e3", "128M") into numbers.

Used by the scheduler to compare requests with node allocatable, and by validation to store
quantities in the canonical form the API server writes. Must stay a pure function
module: no store, no I/O.
"""

from __future__ import annotations

import re
from decimal import ROUND_UP, Decimal, DecimalException, localcontext

from vtflow.quantity import parse_quantity  # noqa: F401 - the double parses as vtflow does


def format_cpu(cores: Decimal) -> str:
    millis = int(cores * 1000)
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"


def format_memory(bytes_: Decimal) -> str:
    b = int(bytes_)
    for suffix, mult in (("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if b and b % mult == 0:
            return f"{b // mult}{suffix}"
    return str(b)


# -- canonical form, as the API server stores a quantity --------------------------------------
# staging/src/k8s.io/apimachinery/pkg/api/resource/quantity.go: ParseQuantity keeps the format
# of the suffix (BinarySI, DecimalSI, DecimalExponent); CanonicalizeBytes prints the value with
# the largest suffix that keeps the number an integer ("1024Mi" -> "1Gi", "0.5" -> "500m").
QUANTITY_FORMAT_ERROR = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
_FORMAT_RE = re.compile(r"([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)\Z")
_DECIMAL_EXP = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_DECIMAL_SUFFIX = {v: k for k, v in _DECIMAL_EXP.items()}
_BINARY_EXP = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_BINARY_SUFFIX = {v: k for k, v in _BINARY_EXP.items()} | {0: ""}


def canonical_quantity(value: str | float) -> str:
    """The string the server stores for ``value``; ValueError with the server's message otherwise."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(QUANTITY_FORMAT_ERROR)  # noqa: TRY004 - the server's decode error, one type for callers
    text = value.strip() if isinstance(value, str) else repr(value)
    m = _FORMAT_RE.match(text)
    if not m:
        raise ValueError(QUANTITY_FORMAT_ERROR)
    number, suffix = m.group(1), m.group(2)
    if suffix in _BINARY_EXP:
        fmt, scale = "BinarySI", Decimal(1024) ** _BINARY_EXP[suffix]
    elif suffix in _DECIMAL_EXP:
        fmt, scale = "DecimalSI", Decimal(10) ** _DECIMAL_EXP[suffix]
    elif re.fullmatch(r"[eE][+-]?[0-9]+", suffix):
        fmt, scale = "DecimalExponent", Decimal(10) ** int(suffix[1:])
    else:
        raise ValueError("unable to parse quantity's suffix")
    try:
        with localcontext() as ctx:
            ctx.prec = 80
            amount = Decimal(number) * scale
            # the server keeps nano precision, rounding away from zero
            amount = amount.quantize(Decimal("1e-9"), rounding=ROUND_UP) if amount.as_tuple().exponent < -9 else amount
    except (DecimalException, ValueError):
        raise ValueError("unable to parse numeric part of quantity") from None
    if amount == 0:
        return "0"
    if fmt == "BinarySI" and (abs(amount) < 1024 or amount != amount.to_integral_value()):
        fmt = "DecimalSI"
    sign = "-" if amount < 0 else ""
    if fmt == "BinarySI":
        whole, exp = abs(int(amount)), 0
        while whole % 1024 == 0 and exp < 6:
            whole, exp = whole // 1024, exp + 1
        return f"{sign}{whole}{_BINARY_SUFFIX[exp]}"
    _, digits, exp = abs(amount).normalize().as_tuple()
    mantissa = int("".join(map(str, digits)))
    if exp % 3:
        mantissa, exp = mantissa * 10 ** (exp % 3), exp - exp % 3
    if fmt == "DecimalSI" and exp in _DECIMAL_SUFFIX:
        return f"{sign}{mantissa}{_DECIMAL_SUFFIX[exp]}"
    return f"{sign}{mantissa}" + (f"e{exp}" if exp else "")
