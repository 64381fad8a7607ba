"""Network addresses as users write them in blocks and parameters (``host:port``), checked once.

Pure: parses and names what is wrong; it never resolves or connects. The target block checks
``vtgate_address`` with it when the block is made, and the gateway step when it is used, so one
rule holds at both ends.
"""

from __future__ import annotations

from vtflow.errors import ConfigError


def parse_address(value: str, what: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` for IPv6) as (host, port), port 1-65535, no scheme or path."""
    fix = "write it as host:port, e.g. 10.0.0.11:30306 ([addr]:port for IPv6; no scheme, no path)."
    if "://" in value:
        raise ConfigError(what, f"{value!r} is not host:port: it has a scheme.", fix)
    host, sep, port = value.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    host = host[1:-1] if bracketed else host
    if not sep or not host or any(c.isspace() or c in "/[]@" for c in host) or (":" in host and not bracketed):
        raise ConfigError(what, f"{value!r} is not host:port.", fix)
    if not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise ConfigError(what, f"{value!r} is not host:port: the port must be 1-65535.", fix)
    return host, int(port)
