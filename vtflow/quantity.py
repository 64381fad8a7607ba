"""Kubernetes resource quantities ("500m", "1.5Gi", "2", "128M") as numbers.

Pure functions, shared by the deploy steps (preflight) and the API double (scheduler).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_SUFFIX = {
    "": Decimal(1),
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"),
    "k": Decimal(10) ** 3, "M": Decimal(10) ** 6, "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12, "P": Decimal(10) ** 15, "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40, "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60,
}
_RE = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$")


def parse_quantity(value: str | int | float) -> Decimal:
    """The quantity's value in base units (cores for cpu, bytes for memory)."""
    if isinstance(value, (int, float)):
        return Decimal(str(value))
    text = str(value).strip()
    m = _RE.match(text)
    if not m:
        raise ValueError(f"quantities must match the regular expression "
                         f"'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {value!r}")
    try:
        number = Decimal(m.group(1))
    except InvalidOperation as e:  # pragma: no cover - the regex already checked it
        raise ValueError(f"bad quantity {value!r}") from e
    return number * _SUFFIX[m.group(2) or ""]


def cpu_millis(value: str | int | float) -> int:
    """CPU in millicores (``"100m"`` -> 100, ``"2"`` -> 2000)."""
    return int(parse_quantity(value) * 1000)


def memory_bytes(value: str | int | float) -> int:
    """Memory in bytes (``"256Mi"`` -> 268435456)."""
    return int(parse_quantity(value))
