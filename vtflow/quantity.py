"""Kubernetes resource quantities ("500m", "1.5Gi", "2", "128M") as numbers.

Pure functions, shared by the deploy steps (preflight) and the API double (scheduler). Anything
that is not a quantity raises ValueError naming the value, never another exception type.
"""

from __future__ import annotations

import re
from decimal import Decimal, DecimalException, localcontext

_SUFFIX = {
    "": Decimal(1),
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"),
    "k": Decimal(10) ** 3, "M": Decimal(10) ** 6, "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12, "P": Decimal(10) ** 15, "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40, "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60,
}
# ASCII digits only ("１" is a digit to \d, not to Kubernetes); \Z, not $: no trailing newline
_RE = re.compile(r"([+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?\Z")
_MAX_EXPONENT = 30   # Kubernetes keeps quantities within int64 (about 9.2e18); beyond that is a typo


def parse_quantity(value: str | int | float) -> Decimal:
    """The quantity's value in base units (cores for cpu, bytes for memory)."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"a quantity is a string or a number, not {type(value).__name__}: {value!r}")
    text = str(value).strip() if isinstance(value, str) else repr(value)
    m = _RE.match(text)
    if not m:
        raise ValueError(f"quantities must match the regular expression "
                         f"'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {value!r}")
    try:
        number = Decimal(m.group(1))
        if abs(number.adjusted()) > _MAX_EXPONENT:
            raise ValueError(f"quantity {value!r} is out of range (Kubernetes keeps quantities within int64)")
        with localcontext() as ctx:
            ctx.prec = 60   # exact for every suffix: 2**60 and 1e-9 times a number of up to 30 digits
            return number * _SUFFIX[m.group(2) or ""]
    except DecimalException as e:  # pragma: no cover - the regex and the range check leave none
        raise ValueError(f"bad quantity {value!r}") from e


def cpu_millis(value: str | int | float) -> int:
    """CPU in millicores (``"100m"`` -> 100, ``"2"`` -> 2000)."""
    return int(parse_quantity(value) * 1000)


def memory_bytes(value: str | int | float) -> int:
    """Memory in bytes (``"256Mi"`` -> 268435456)."""
    return int(parse_quantity(value))
