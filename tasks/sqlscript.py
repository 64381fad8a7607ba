"""SQL scripts in the mysql command-line client's dialect, split into statements and meta commands.

The upstream example files are written for the ``mysql`` client: ``\\! echo ...`` lines,
``use commerce/0``, comments, ``;`` inside strings. This module reads such a file the way the
client does and returns what to send (statements, each with the file and line it starts on)
and what the client would have done itself (meta commands). It never runs anything: a
``\\!`` shell escape becomes a ``MetaCommand("shell", ...)`` that callers log, never execute.
Pure functions only; schema apply and data load (``tasks/``) use it.

Rules followed (as the mysql client): a statement ends at the delimiter (``;``, or what a
``delimiter`` command sets) outside quotes ('', "", ``) and comments; ``--`` followed by a
space, tab or end of line and ``#`` comment to the end of the line; ``/* ... */`` comments are
dropped but ``/*! ... */`` executable comments are kept; backslash escapes and doubled quotes
keep a string open; ``\\g`` and ``\\G`` end a statement; ``use``, ``delimiter``, ``source``,
``system`` and backslash commands are recognised at the start of a statement.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from vtflow.errors import ConfigError


@dataclass(frozen=True)
class Statement:
    sql: str
    source: str
    line: int

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}"


@dataclass(frozen=True)
class MetaCommand:
    """A client command: ``use`` (argument: the database/keyspace target), ``shell`` (never
    run), ``source`` (another file), ``delimiter``, or ``ignored`` (other client commands)."""

    name: str
    arg: str
    source: str
    line: int


_NAMED = {"use": "use", "delimiter": "delimiter", "source": "source", "system": "shell"}
_BACKSLASH = {"!": "shell", "u": "use", ".": "source", "d": "delimiter"}


def split(text: str, source: str) -> list[Statement | MetaCommand]:
    """Statements and meta commands of a script, in order."""
    out: list[Statement | MetaCommand] = []
    delimiter = ";"
    buf: list[str] = []
    start_line = 1
    line = 1
    i, n = 0, len(text)
    quote: str | None = None

    def at_statement_start() -> bool:
        return not "".join(buf).strip()

    def flush(end_line: int) -> None:
        nonlocal buf
        sql = "".join(buf).strip()
        if sql:
            out.append(Statement(sql, source, start_line))
        buf = []

    while i < n:
        ch = text[i]
        if quote:
            buf.append(ch)
            if ch == "\\" and quote != "`" and i + 1 < n:
                buf.append(text[i + 1])
                if text[i + 1] == "\n":
                    line += 1
                i += 2
                continue
            if ch == quote:
                if i + 1 < n and text[i + 1] == quote:  # doubled quote stays inside
                    buf.append(text[i + 1])
                    i += 2
                    continue
                quote = None
            elif ch == "\n":
                line += 1
            i += 1
            continue

        if at_statement_start():
            # client commands are recognised only where a statement would begin
            if ch in " \t\r":
                i += 1
                continue
            if ch == "\n":
                line += 1
                i += 1
                continue
            start_line = line
            eol = text.find("\n", i)
            eol = n if eol == -1 else eol
            rest = text[i:eol]
            word = re.match(r"([A-Za-z]+)\b", rest)
            if ch == "\\" and i + 1 < n:
                name = _BACKSLASH.get(text[i + 1], "ignored")
                arg = rest[2:].strip()
                if name == "delimiter":
                    delimiter = arg or delimiter
                out.append(MetaCommand(name, _strip_delim(arg, delimiter) if name == "use" else arg, source, line))
                i = eol
                continue
            if word and word.group(1).lower() in _NAMED:
                name = _NAMED[word.group(1).lower()]
                arg = rest[len(word.group(1)):].strip()
                if name == "delimiter":
                    if not arg:
                        raise ConfigError(f"{source}:{line}", "`delimiter` needs an argument.", "write e.g. `delimiter //`.")
                    delimiter = arg.split()[0]
                    out.append(MetaCommand(name, delimiter, source, line))
                else:
                    out.append(MetaCommand(name, _strip_delim(arg, delimiter), source, line))
                i = eol
                continue

        if ch in ("'", '"', "`"):
            quote = ch
            buf.append(ch)
            i += 1
            continue
        if ch == "#" or (ch == "-" and text.startswith("--", i) and (i + 2 >= n or text[i + 2] in " \t\r\n")):
            eol = text.find("\n", i)
            i = n if eol == -1 else eol
            continue
        if ch == "/" and text.startswith("/*", i) and not text.startswith("/*!", i):
            end = text.find("*/", i + 2)
            if end == -1:
                raise ConfigError(f"{source}:{line}", "a /* comment is never closed.", "close it with */.")
            line += text.count("\n", i, end)
            buf.append(" ")
            i = end + 2
            continue
        if text.startswith(delimiter, i):
            flush(line)
            i += len(delimiter)
            continue
        if ch == "\\" and i + 1 < n and text[i + 1] in "gG":
            flush(line)
            i += 2
            continue
        if ch == "\n":
            line += 1
        buf.append(ch)
        i += 1

    if quote:
        raise ConfigError(f"{source}:{start_line}", f"a {quote} string is never closed.", f"close the string that starts in the statement at line {start_line}.")
    flush(line)
    return out


def _strip_delim(arg: str, delimiter: str) -> str:
    arg = arg.strip()
    if arg.endswith(delimiter):
        arg = arg[: -len(delimiter)].rstrip()
    return arg.strip("`")


def keyspace_of(target: str) -> str:
    """The keyspace of a vtgate target: ``commerce/0``, ``commerce@primary``, ``commerce:-80`` -> ``commerce``."""
    return re.split(r"[/@:]", target, maxsplit=1)[0]
