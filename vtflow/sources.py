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
from typing import Iterator

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


# ---------------------------------------------------------------- data files, as streams

CHUNK = 1 << 20   # bytes read at a time: what a stream holds in memory, beside one statement
_GZIP_MAGIC = b"\x1f\x8b"


class DataSource:
    """A data file that is read as a stream, as often as the caller needs, from any offset:
    a local file, an http(s) URL (downloaded once, as it comes, into a temporary file that is
    removed with this object), or text given in memory. Files starting with gzip's magic bytes
    are decompressed as they are read; offsets count the decompressed bytes."""

    def __init__(self, name: str, path: Path | None = None, data: bytes | None = None,
                 spooled: bool = False):
        self.name, self.path, self._data = name, path, data
        head = data[:2] if data is not None else _head(path)
        self.compressed = head == _GZIP_MAGIC
        self.size = len(data) if data is not None else path.stat().st_size   # bytes as stored
        self._stamp = None if data is not None else _stamp(path)
        if spooled:
            import weakref
            weakref.finalize(self, _unlink, path)

    @classmethod
    def from_text(cls, text: str, name: str) -> "DataSource":
        return cls(name, data=text.encode())

    def unchanged(self) -> bool:
        """Whether a local file is still the one that was read first (size and mtime)."""
        return self._stamp is None or _stamp(self.path) == self._stamp

    def chunks(self, start: int = 0, size: int = CHUNK) -> Iterator[bytes]:
        """The (decompressed) bytes from offset ``start`` on, ``size`` at a time. A plain file
        seeks there; a compressed one is decompressed from its beginning and the bytes before
        ``start`` dropped as they come."""
        if self._data is not None and not self.compressed:
            for i in range(start, len(self._data), size):
                yield self._data[i:i + size]
            return
        import gzip
        import io
        raw = io.BytesIO(self._data) if self._data is not None else open(self.path, "rb")
        with raw:
            stream = gzip.GzipFile(fileobj=raw) if self.compressed else raw
            try:
                if start and not self.compressed:
                    raw.seek(start)
                elif start:
                    left = start
                    while left:
                        skipped = stream.read(min(left, 4 * size))
                        if not skipped:
                            return
                        left -= len(skipped)
                while True:
                    chunk = stream.read(size)
                    if not chunk:
                        return
                    yield chunk
            except (OSError, EOFError) as e:   # gzip.BadGzipFile is an OSError
                raise ConfigError(f"data file {self.name}", f"cannot be read ({e}).",
                                  "give a complete file (a gzip file must not be cut short).") from e


def _head(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(2)


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def open_data(value: str, what: str = "data file", timeout_s: float = 30.0) -> DataSource:
    """The data file ``value`` names, ready to be streamed: a local path, or an http(s) URL
    downloaded as it comes (never held in memory whole) into a temporary file."""
    if _URL.match(value):
        import shutil
        import tempfile
        fd, tmp = tempfile.mkstemp(prefix="vtflow-data-")
        path = Path(tmp)
        try:
            with open(fd, "wb") as out, urllib.request.urlopen(value, timeout=timeout_s) as r:
                shutil.copyfileobj(r, out, CHUNK)
        except (OSError, urllib.error.URLError) as e:
            _unlink(path)
            raise ConfigError(f"{what} {value}", f"cannot be fetched ({e}).",
                              "give a reachable URL or a local file.") from e
        return DataSource(value, path, spooled=True)
    path = Path(value).expanduser()
    if not path.is_file():
        raise ConfigError(f"{what} {value}", "is not a file.", "give an existing file or an http(s) URL.")
    try:
        return DataSource(str(path), path)
    except OSError as e:
        raise ConfigError(f"{what} {value}", f"cannot be read ({e.strerror or e}).",
                          "give a readable file or a reachable URL.") from e
