"""The one reader of what a parameter points at: a local file, an http(s) URL, or (where the
parameter allows it) the text itself.

Schemas, VSchemas, data files, verify scripts and the operator manifest are all given this
way; each caller says what the value is (``what``, for messages) and whether inline text is
allowed. Every failure is a ``ConfigError`` naming the value and what to do. It only reads:
parsing what was read (YAML, SQL, JSON) is the caller's.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from pathlib import Path

from vtflow.errors import ConfigError

_URL = re.compile(r"^https?://")


def looks_inline(value: str) -> bool:
    """Text rather than a path: several lines, a statement or a JSON object."""
    return "\n" in value or value.lstrip().startswith(("{", "create", "CREATE")) or ";" in value


def read_source(value: str, what: str, *, inline: bool = True, fix: str | None = None,
                timeout_s: float = 30.0) -> tuple[str, str]:
    """The text ``value`` points at, and where it came from (the URL, the file, or ``inline <what>``).

    ``inline``: whether the value may be the text itself. ``fix``: the caller's advice when the
    value cannot be read (the default says what may be given)."""
    if _URL.match(value):
        try:
            with urllib.request.urlopen(value, timeout=timeout_s) as r:
                return r.read().decode(), value
        except (OSError, urllib.error.URLError, UnicodeDecodeError) as e:
            raise ConfigError(f"{what} {value}", f"cannot be fetched ({e}).",
                              fix or "give a reachable URL or a local file.") from e
    if inline and looks_inline(value):
        return value, f"inline {what}"
    path = Path(value).expanduser()
    if inline and not path.is_file():
        # the value may have been meant as text: say what else it could be
        raise ConfigError(f"{what} {value}", "is not a file.", fix or "give an existing file, a URL, or the text itself.")
    try:
        return path.read_text(), str(path)
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{what} {value}", f"cannot be read ({e}).",
                          fix or "give a readable file or a reachable URL.") from e
