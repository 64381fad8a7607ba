"""Parse Kubernetes resource quantities ("500m", "1.5Gi", "2", "1e3", "128M") into numbers.

Used by the scheduler to compare requests with node allocatable. Must stay a pure function
module: no store, no I/O.
"""

from __future__ import annotations

from decimal import Decimal

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
