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

Speed: a statement that holds nothing but plain text and single-quoted strings without
escapes up to its delimiter is taken whole with string methods; otherwise its ordinary parts
(text without comment or command characters, complete strings) are consumed by one regular
expression per stretch (``_body``). Either way a dump's extended INSERT of thousands of quoted
values costs a few C-level scans rather than a Python step per value. The character-by-character
rules above handle whatever those stop at, so every path splits alike.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

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
_BLANK = re.compile(r"[ \t\r\n]*")
_WORD = re.compile(r"([A-Za-z]+)\b")
_DASHES = re.compile("--")   # a regex finds it faster than `in` where single dashes are frequent (SKU-1, dates)


@lru_cache(maxsize=16)
def _body(delimiter: str) -> re.Pattern | None:
    """The stretch of a statement that needs no character-by-character rule: text without
    quotes, backslashes, ``#`` or the delimiter's first character; a ``-`` or ``/`` that does
    not open a comment; whole strings (escapes and doubled quotes inside). Possessive
    quantifiers: an unclosed string is not taken at all, so the slow path reports it.
    None for a delimiter containing a quote or backslash (the slow path alone then)."""
    if set(delimiter) & set("'\"`\\"):
        return None
    not_delim = f"(?!{re.escape(delimiter)})"
    return re.compile(
        r"(?:[^'\"`\\#/\-" + re.escape(delimiter[0]) + r"]++"
        r"|'(?:[^'\\]++|\\[\s\S]|'')*+'"
        r'|"(?:[^"\\]++|\\[\s\S]|"")*+"'
        r"|`(?:[^`]++|``)*+`"
        + "|" + not_delim + r"-(?!-[ \t\r\n]|-\Z)"
        + "|" + not_delim + r"/(?!\*(?!!))"
        r")*+")


def split(text: str, source: str) -> list[Statement | MetaCommand]:
    """Statements and meta commands of a script, in order.

    Scans from one special character to the next (regular expressions find them), so that a
    200,000-row dump or a 1 MB extended INSERT splits in linear time."""
    return scan(text, source)[0]


def scan(text: str, source: str, pos: int = 0, delimiter: str = ";", line: int = 1, final: bool = True,
         max_parts: int | None = None) -> tuple[list[Statement | MetaCommand], int, str, int]:
    """``split`` of ``text[pos:]`` as one piece of a longer stream: the parts found (at most
    ``max_parts``), then the offset, delimiter and line where scanning goes on. Unless ``final``
    (the stream ends with ``text``), a part is returned only once what ends it is in ``text``
    (its delimiter, or the line break of a client command): the rest is scanned again with the
    stream's next piece appended, from the returned offset."""
    out: list[Statement | MetaCommand] = []
    buf: list[str] = []
    has_content = False          # anything but whitespace in the current statement
    start_line = line
    i, n = pos, len(text)
    resume = (pos, delimiter, line)   # where the part being scanned began

    def plain(delim: str) -> re.Pattern:
        return re.compile(r"[\n'\"`#/\\-]|" + re.escape(delim))

    special = plain(delimiter)
    body = _body(delimiter)
    quick_from = 0               # the quick case is not tried before this: an attempt scanned up to it
    in_quote = {q: re.compile(r"[\\\n" + re.escape(q) + "]") for q in ("'", '"')}
    in_quote["`"] = re.compile(r"[`\n]")

    def flush() -> None:
        nonlocal buf, has_content
        sql = "".join(buf).strip()
        if sql:
            out.append(Statement(sql, source, start_line))
        buf, has_content = [], False

    while i < n:
        if not has_content:
            if max_parts is not None and len(out) >= max_parts:
                return out, i, delimiter, line
            # client commands are recognised only where a statement would begin
            m = _BLANK.match(text, i)
            line += text.count("\n", i, m.end())
            i = m.end()
            if i >= n:
                break
            start_line = line
            resume = (i, delimiter, line)
            word = _WORD.match(text, i)
            if text[i] == "\\" and (i + 1 < n or not final):
                eol = text.find("\n", i)
                if eol == -1 and not final:
                    return out, i, delimiter, line
                eol = n if eol == -1 else eol
                name = _BACKSLASH.get(text[i + 1], "ignored")
                arg = text[i + 2:eol].strip()
                if name == "delimiter":
                    delimiter = arg or delimiter
                    special, body, quick_from = plain(delimiter), _body(delimiter), 0
                out.append(MetaCommand(name, _strip_delim(arg, delimiter) if name == "use" else arg, source, line))
                i = eol
                continue
            if word and word.group(1).lower() in _NAMED:
                eol = text.find("\n", i)
                if eol == -1 and not final:
                    return out, i, delimiter, line
                eol = n if eol == -1 else eol
                name = _NAMED[word.group(1).lower()]
                arg = text[word.end():eol].strip()
                if name == "delimiter":
                    if not arg:
                        raise ConfigError(f"{source}:{line}", "`delimiter` needs an argument.", "write e.g. `delimiter //`.")
                    delimiter = arg.split()[0]
                    special, body, quick_from = plain(delimiter), _body(delimiter), 0
                    out.append(MetaCommand(name, delimiter, source, line))
                else:
                    out.append(MetaCommand(name, _strip_delim(arg, delimiter), source, line))
                i = eol
                continue
            has_content = True

        if body is not None and i >= quick_from:
            # quickest case: up to the next delimiter nothing but single-quoted strings without
            # escapes (an even count of quotes: the delimiter is outside them, a doubled quote
            # counts twice) and no comment; only str methods, in C. A failed attempt is not
            # repeated inside the stretch it scanned, so every character is scanned once.
            j = text.find(delimiter, i)
            quick_from = n if j == -1 else j
            if j != -1:
                seg = text[i:j]
                if (not seg.count("'") % 2 and "\\" not in seg and '"' not in seg and "`" not in seg
                        and "#" not in seg and ("/" not in seg or "/*" not in seg) and not _DASHES.search(seg)):
                    line += seg.count("\n")
                    buf.append(seg)
                    flush()
                    i = j + len(delimiter)
                    continue
        if body is not None:
            k = body.match(text, i).end()
            if k > i:
                line += text.count("\n", i, k)
                buf.append(text[i:k])
                i = k
        m = special.search(text, i)
        j = m.start() if m else n
        if j > i:
            buf.append(text[i:j])
            i = j
        if not m:
            break
        ch = text[i]
        if text.startswith(delimiter, i):
            flush()
            i += len(delimiter)
        elif ch in "'\"`":
            q, pat = ch, in_quote[ch]
            k = i + 1
            while True:
                mq = pat.search(text, k)
                if mq is None:
                    if not final:
                        return (out, *resume)
                    raise ConfigError(f"{source}:{start_line}", f"a {q} string is never closed.",
                                      f"close the string that starts in the statement at line {start_line}.")
                c = text[mq.start()]
                if c == "\n":
                    line += 1
                    k = mq.start() + 1
                elif c == "\\":
                    line += text.count("\n", mq.start() + 1, mq.start() + 2)
                    k = mq.start() + 2
                elif mq.start() + 1 < n and text[mq.start() + 1] == q:  # doubled quote stays inside
                    k = mq.start() + 2
                else:
                    k = mq.start() + 1
                    break
            buf.append(text[i:k])
            i = k
        elif ch == "#" or (ch == "-" and text.startswith("--", i) and (i + 2 >= n or text[i + 2] in " \t\r\n")):
            eol = text.find("\n", i)
            i = n if eol == -1 else eol
        elif ch == "/" and text.startswith("/*", i) and not text.startswith("/*!", i):
            close = text.find("*/", i + 2)
            if close == -1:
                if not final:
                    return (out, *resume)
                raise ConfigError(f"{source}:{line}", "a /* comment is never closed.", "close it with */.")
            line += text.count("\n", i, close)
            buf.append(" ")
            i = close + 2
        elif ch == "\\" and i + 1 < n and text[i + 1] in "gG":
            flush()
            i += 2
        else:
            if ch == "\n":
                line += 1
            buf.append(ch)
            i += 1
    if not final:
        return (out, *resume) if has_content else (out, i, delimiter, line)
    flush()
    return out, i, delimiter, line


def _strip_delim(arg: str, delimiter: str) -> str:
    arg = arg.strip()
    if arg.endswith(delimiter):
        arg = arg[: -len(delimiter)].rstrip()
    return arg.strip("`")


def keyspace_of(target: str) -> str:
    """The keyspace of a vtgate target: ``commerce/0``, ``commerce@primary``, ``commerce:-80`` -> ``commerce``."""
    return re.split(r"[/@:]", target, maxsplit=1)[0]
