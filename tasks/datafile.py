"""Data files cut into the loader's batches as streams, in memory bounded by a batch.

An SQL file (the mysql client's dialect: one row per INSERT as upstream writes it, or a dump's
extended INSERTs) and a CSV file (one table, a header of column names) are read a chunk at a
time (``vtflow.sources.DataSource``: local or URL, plain or gzip) and cut into ``Batch``es:

* consecutive single-table ``INSERT ... VALUES`` statements are joined into one INSERT of up to
  ``max_rows`` rows and ``max_bytes``; a statement of ``pass_through_bytes`` or more (a dump's
  extended INSERT) is sent as it is, with the next ones into the same table, up to ``max_bytes``;
  anything else (DDL, SET, UPDATE) is a batch of its own;
* CSV rows become multi-row INSERTs of ``max_rows`` rows, the values quoted by ``vtflow.mysql``.

The bytes are viewed as latin-1 text: one character per byte, so every offset is a byte offset
(a batch's place in the file, where a reader seeks to resume), and a statement goes out as the
file's own bytes. SQL and CSV syntax is ASCII, and no byte of a UTF-8 multi-byte character is,
so the cut is the one the UTF-8 text would give; ``check_utf8`` proves the file is UTF-8.

Speed: a single-row INSERT (with plain strings, escapes included) is recognised by one regular
expression and joined without building a statement object; everything else goes through
``tasks.sqlscript.scan``, one statement at a time, so both paths cut alike. A file is cut the
same way whether it is read whole or from a batch's end on: the batcher holds nothing across
the end of a batch, which is what lets a load resume, or several readers share a file, at the
offsets the pre-flight's cut recorded (``Segment``).

Pure: no connection, no Prefect. ``tasks.data`` sends the batches.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import re
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import chain, islice
from typing import Callable, Iterable, Iterator

from tasks import sqlscript
from vtflow import mysql
from vtflow.errors import ConfigError

PASS_THROUGH_BYTES = 32 << 10   # an INSERT this long already fills a round trip: sent as it is
NULL = "\\N"                     # a CSV field meaning NULL, as in MySQL's LOAD DATA / SELECT ... INTO OUTFILE

_WS = r"[ \t\r\n]"
_QUOTED = r"`(?:[^`]|``)+`"
_NAME = rf"(?:{_QUOTED}|[\w$]+)"
_INSERT = re.compile(
    rf"insert\s+(?P<ignore>ignore\s+)?into\s+(?P<table>{_NAME}(?:\s*\.\s*{_NAME})?)\s*"
    rf"(?P<cols>\((?:[^()`]|{_QUOTED})*\))?\s*values?\b\s*", re.I)
# one single-row INSERT ... VALUES (...); whose tuple holds no comment, no double-quoted string
# and no nested parentheses: the upstream files' and a one-row-per-statement dump's statements
_SIMPLE = re.compile(
    rf"{_WS}*+(insert{_WS}++(?:ignore{_WS}++)?into{_WS}*+{_NAME}(?:{_WS}*+\.{_WS}*+{_NAME})?{_WS}*+"
    rf"(?:\((?:[^()`'\"\\;#]|{_QUOTED})*\))?{_WS}*+values?){_WS}*+"
    r"(\((?:[^()'\"`\\;#/\-]++|'(?:[^'\\]++|\\[\s\S]|'')*+'|-(?!-)|/(?!\*))*+\))" rf"{_WS}*+;", re.I)
_STRING = re.compile(r"""'(?:[^'\\]++|\\[\s\S]|'')*+'|"(?:[^"\\]++|\\[\s\S]|"")*+"|`(?:[^`]++|``)*+`""")
_FLAT_TUPLES = re.compile(r"\s*+\([^()]*+\)(?:\s*+,\s*+\([^()]*+\))*+\s*+")
_TOKEN = re.compile(r"[(),]|[^\s(),]+")
_IDENTIFIER = re.compile(r"[A-Za-z0-9_$]+")


@dataclass(frozen=True)
class Cursor:
    """Where a scan of a file (re)starts: an offset in its (decompressed) bytes, the line there
    and the delimiter in force."""

    offset: int = 0
    line: int = 1
    delimiter: str = ";"


@dataclass(frozen=True)
class Batch:
    """Statements sent in one transaction, committed together with their checkpoint row."""

    statements: tuple[str, ...]     # the file's bytes, viewed as latin-1 (CSV: built here)
    rows: int | None                # rows it inserts: 0 for other statements, None when the server counts them
    wheres: tuple[str, ...]         # file:line of each statement (of the first row, for CSV)
    table: str | None = None        # the table its INSERTs fill, unquoted; None for other statements
    end: Cursor = Cursor()          # where the cut goes on after it

    @property
    def sql(self) -> str:
        return ";\n".join(self.statements)

    @property
    def where(self) -> str:
        return self.wheres[0]

    def payloads(self) -> list[bytes]:
        return [s.encode("latin-1") for s in self.statements]


def unquote(name: str) -> str:
    """``db . `my``tbl``` -> ``db.my`tbl``: the table name as the server stores it."""
    parts = re.findall(rf"{_QUOTED}|[\w$]+", name)
    return ".".join(p[1:-1].replace("``", "`") if p.startswith("`") else p for p in parts)


def tuples(values: str) -> int | None:
    """How many ``(...)`` tuples ``values`` is made of, or None if it is anything else (an
    ON DUPLICATE KEY UPDATE clause, a SELECT). Linear, and in C for the usual dump: strings are
    blanked by one substitution, and a list without nested parentheses is counted by one match."""
    bare = _STRING.sub("0", values)
    if "'" in bare or '"' in bare or "`" in bare:
        return None  # a string that never closes
    if _FLAT_TUPLES.fullmatch(bare):
        return bare.count("(")
    count, depth, expect_tuple = 0, 0, True   # nested parentheses: function calls in values
    for m in _TOKEN.finditer(bare):
        tok = m.group()
        if depth == 0:
            if expect_tuple and tok == "(":
                depth, count, expect_tuple = 1, count + 1, False
            elif not expect_tuple and tok == ",":
                expect_tuple = True
            else:
                return None
        elif tok == "(":
            depth += 1
        elif tok == ")":
            depth -= 1
    return count if depth == 0 and not expect_tuple else None


@lru_cache(maxsize=1024)
def target(head: str) -> tuple[bool, str, str]:
    """(IGNORE?, table, column list without spacing) of an INSERT's head (up to VALUES):
    statements with the same target join. The table is unquoted and decoded from the file's
    UTF-8. Cached: a file repeats a handful of heads millions of times."""
    m = _INSERT.match(head)
    cols = m.group("cols")
    cols = re.sub(r"\s*([(),])\s*", r"\1", " ".join(cols.split())) if cols else ""
    return bool(m.group("ignore")), _decoded(unquote(m.group("table"))), cols


def _decoded(name: str) -> str:
    """A name read from the file's bytes viewed as latin-1, as the UTF-8 text it is."""
    try:
        return name.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return name   # already text (statements split from a str), or not UTF-8: as it is


class _Batcher:
    """Statements in, batches out (``coalesce``'s rules); holds at most one batch."""

    def __init__(self, max_rows: int, max_bytes: int, pass_through_bytes: int, count_rows: bool):
        self.max_rows, self.max_bytes, self.pass_through_bytes = max_rows, max_bytes, pass_through_bytes
        self.count_rows = count_rows       # count a passed-through INSERT's tuples (the pre-flight's plan)
        self.key: tuple | None = None      # ("join", IGNORE?, table, columns) or ("pass", table)
        self.head, self.parts, self.wheres = "", [], []
        self.rows = self.size = 0
        self.table = ""
        self.counted: int | None = 0
        self.end: tuple[int, int, str] = (0, 1, ";")   # offset, line and delimiter after the last statement
        self.end_in_buffer = False                      # end[1] is a place in the buffer, not yet a line

    place: Callable[[int], str] = staticmethod(lambda p: "")   # file:line of a place in the scanner's buffer
    line_of: Callable[[int], int] = staticmethod(lambda p: p)  # the line at a place in the scanner's buffer

    def resolve(self) -> None:
        """The line after the last statement, while its place in the buffer is valid."""
        if self.end_in_buffer:
            self.end = (self.end[0], self.line_of(self.end[1]), self.end[2])
            self.end_in_buffer = False

    def flush(self) -> Batch | None:
        key, out = self.key, None
        self.resolve()
        if key is not None and key[0] == "pass":
            out = Batch(tuple(self.parts), self.counted, tuple(self.wheres), self.table, Cursor(*self.end))
        elif key is not None:
            out = Batch((f"{self.head} {', '.join(self.parts)}",), self.rows, (self.wheres[0],), self.table,
                        Cursor(*self.end))
        self.key, self.parts, self.wheres, self.rows, self.size, self.counted = None, [], [], 0, 0, 0
        return out

    def join(self, head: str, values: str, count: int, where: str | int, end: tuple[int, int, str]) -> Batch | None:
        """A single-table INSERT of ``count`` rows whose VALUES list is ``values``, from ``where``
        (file:line, or the statement's place in the scanner's buffer: ``place`` names it). ``end``:
        offset, line (or place in the buffer) and delimiter after it."""
        key = ("join", *target(head))
        out = None
        if key != self.key or self.rows + count > self.max_rows or self.size + len(values) > self.max_bytes:
            out = self.flush()
            self.key, self.head, self.table = key, head.rstrip(), key[2]
            self.wheres.append(where if isinstance(where, str) else self.place(where))
        self.parts.append(values)
        self.rows += count
        self.size += len(values)
        self.end, self.end_in_buffer = end, not isinstance(where, str)
        return out

    def statement(self, st: sqlscript.Statement, end: tuple[int, int, str]) -> Iterator[Batch]:
        m = _INSERT.match(st.sql)
        if m is not None and len(st.sql) >= self.pass_through_bytes:
            key = ("pass", target(st.sql[:m.end()])[1])
            if key != self.key or self.size + len(st.sql) > self.max_bytes:
                out = self.flush()
                if out is not None:
                    yield out
                self.key, self.table = key, key[1]
            self.parts.append(st.sql)
            self.wheres.append(st.where)
            self.size += len(st.sql)
            if self.count_rows and self.counted is not None:
                n = tuples(st.sql[m.end():])
                self.counted = None if n is None else self.counted + n
            elif not self.count_rows:
                self.counted = None
            self.end, self.end_in_buffer = end, False
            return
        values = st.sql[m.end():] if m else ""
        count = tuples(values) if m else None
        if m is None or count is None:
            out = self.flush()
            if out is not None:
                yield out
            yield Batch((st.sql,), 0, (st.where,), None, Cursor(*end))
            return
        out = self.join(st.sql[:m.end()], values.strip(), count, st.where, end)
        if out is not None:
            yield out


def sql_batches(chunks: Iterable[bytes], source: str, keyspace: str | None, log: Callable[[str], None] = lambda m: None,
                *, max_rows: int = 1000, max_bytes: int = 1 << 20, pass_through_bytes: int = PASS_THROUGH_BYTES,
                at: Cursor = Cursor(), count_rows: bool = False) -> Iterator[Batch]:
    """The batches of an SQL file read as ``chunks`` of its bytes from ``at`` on. ``keyspace``:
    a ``use`` of another one is refused (None: any). ``count_rows``: count the tuples of INSERTs
    passed through (otherwise their ``rows`` is None: the server counts them)."""
    batcher = _Batcher(max_rows, max_bytes, pass_through_bytes, count_rows)
    batcher.place = lambda p: f"{source}:{line_at(p)}"
    batcher.line_of = lambda p: line_at(p)
    it = iter(chunks)
    buf, base, pos = "", at.offset, 0          # buf[0] is byte ``base`` of the file
    line, line_pos = at.line, 0                # ``line`` is the line at buf[line_pos]
    delimiter = at.delimiter
    eof = False
    need = 0                                   # a scan found no whole statement in this many characters

    def line_at(p: int) -> int:
        nonlocal line, line_pos
        assert p >= line_pos, "lines are counted forward only"
        line += buf.count("\n", line_pos, p)
        line_pos = p
        return line

    again = ""          # whitespace and head of the last single-row INSERT: the next one is often the same
    head, lead = "", 0
    while True:
        if delimiter == ";":
            simple = _SIMPLE.match
            while True:
                if again:
                    # quickest: the same head again, then one tuple without parentheses, escapes,
                    # comments or other quotes in it, up to the first ';' (outside its strings: their
                    # quotes pair up), checked by str methods alone
                    j = buf.find(";", pos)
                    if j != -1 and buf.startswith(again, pos):
                        v = buf[pos + len(again):j]
                        if (v.count("(") == 1 and v.count(")") == 1 and not v.count("'") % 2 and "\\" not in v
                                and '"' not in v and "`" not in v and "#" not in v and "--" not in v and "/*" not in v):
                            v = v.strip(" \t\r\n")
                            if v[0] == "(" and v[-1] == ")":
                                b = batcher
                                if b.rows < max_rows and b.size + len(v) <= max_bytes:
                                    b.parts.append(v)
                                    b.rows += 1
                                    b.size += len(v)
                                    b.end, b.end_in_buffer = (base + j + 1, j + 1, ";"), True
                                    pos = j + 1
                                    continue
                                out = b.join(head, v, 1, pos + lead, (base + j + 1, j + 1, ";"))
                                pos = j + 1
                                if out is not None:
                                    yield out
                                continue
                m = simple(buf, pos)
                if m is None:
                    again = ""
                    break
                start, end = m.start(1), m.end()
                head, again, lead = m.group(1), buf[pos:m.end(1)], start - pos
                out = batcher.join(head, m.group(2), 1, start, (base + end, end, ";"))
                pos = end
                if out is not None:
                    yield out
        batcher.resolve()   # the last statement's end line, before the line count moves past it
        parts, nxt, new_delimiter, new_line = sqlscript.scan(buf, source, pos, delimiter, line_at(pos), final=eof,
                                                             max_parts=1)
        if parts:
            part = parts[0]
            pos, delimiter, line, line_pos = nxt, new_delimiter, new_line, nxt
            end = (base + nxt, new_line, new_delimiter)
            if isinstance(part, sqlscript.Statement):
                yield from batcher.statement(part, end)
            elif part.name == "use":
                if keyspace is not None and sqlscript.keyspace_of(part.arg) != keyspace:
                    raise ConfigError(f"{part.source}:{part.line}", f"switches to keyspace {part.arg!r}, not {keyspace!r}.",
                                      "load each keyspace's data with its own file.")
            elif part.name != "delimiter":
                log(f"{part.source}:{part.line}: {part.name} {part.arg!r} not run")
            need = 0
            continue
        if eof:
            break
        # no whole statement in buf[pos:]: drop what is done, read on (at least doubling what a
        # scan found incomplete, so that a statement of many chunks is not scanned again per chunk)
        batcher.resolve()
        line_at(pos)
        buf, base, pos, line_pos = buf[pos:], base + pos, 0, 0
        need = max(need * 2, len(buf) + 1)
        while len(buf) < need:
            chunk = next(it, None)
            if chunk is None:
                eof = True
                break
            buf += chunk.decode("latin-1")
    out = batcher.flush()
    if out is not None:
        yield out


def coalesce(statements: list[sqlscript.Statement], max_rows: int = 1000, max_bytes: int = 1 << 20,
             pass_through_bytes: int = PASS_THROUGH_BYTES) -> list[Batch]:
    """The batches of statements already split (``sql_batches``'s rules)."""
    batcher = _Batcher(max_rows, max_bytes, pass_through_bytes, count_rows=False)
    out = [b for st in statements for b in batcher.statement(st, (0, 1, ";"))]
    last = batcher.flush()
    return out + [last] if last is not None else out


# ---------------------------------------------------------------- CSV


def csv_table_sql(table: str, header: list[str], source: str) -> str:
    if not _IDENTIFIER.fullmatch(table):
        raise ConfigError(source, f"table name {table!r} is not a plain identifier (letters, digits, _ and $).",
                          "name the table as the schema creates it.")
    return f"INSERT INTO `{table}` ({', '.join(f'`{c}`' for c in header)}) VALUES "


class _Tail:
    """The last characters a CSV reader was given, with the line they start on: what the
    checks of an unclosed quote look at (a field is at most csv.field_size_limit() long)."""

    def __init__(self, keep: int):
        self.keep, self.text, self.line = keep, "", 1

    def add(self, chunk: str) -> None:
        text = self.text + chunk
        if len(text) > 2 * self.keep:
            cut = len(text) - self.keep
            self.line += len(_LINE_BREAK.findall(text, 0, cut)) - (text[cut - 1] == "\r" and text[cut] == "\n")
            text = text[cut:]
        self.text = text


def _csv_text(chunks: Iterable[bytes], tail: _Tail) -> Iterator[str]:
    """latin-1 text of the file, the BOM dropped, each piece kept in ``tail``."""
    first = True
    for chunk in chunks:
        text = chunk.decode("latin-1")
        if first:
            first = False
            if text.startswith("\xef\xbb\xbf"):
                text = text[3:]
        tail.add(text)
        yield text


def _lines(pieces: Iterator[str]) -> Iterator[str]:
    """Lines (with their line break: \\n, \\r\\n or \\r) of text given in pieces, for csv.reader,
    which ends a record at the end of each string it is given: each piece up to its last line
    break, split by io.StringIO (in C)."""
    return chain.from_iterable(io.StringIO(block, newline="") for block in _whole_lines(pieces))


def _whole_lines(pieces: Iterator[str]) -> Iterator[str]:
    rest = ""
    for piece in pieces:
        text = rest + piece if rest else piece
        end = len(text) - 1 if text.endswith("\r") else len(text)   # a \r last: its \n may come next
        cut = max(text.rfind("\n", 0, end), text.rfind("\r", 0, end)) + 1
        if cut:
            yield text[:cut]
        rest = text[cut:]
    if rest:
        yield rest


def csv_records(chunks: Iterable[bytes], source: str) -> Iterator[tuple[int, list[str]]]:
    """(line, fields) of each record of a CSV file read as ``chunks``, the header first, checked
    as they come: identifiers, field counts, quotes closed. Fields are the file's bytes viewed
    as latin-1; blank lines are skipped."""
    tail = _Tail(4 * csv.field_size_limit() + 16)
    reader = csv.reader(_lines(_csv_text(chunks, tail)))
    width = 0
    line = 1
    record: list[str] = []
    try:
        for record in reader:
            start, line = line, reader.line_num + 1
            if not record:
                continue  # a blank line; write "" for a one-column row holding an empty string
            if not width:
                _check_header([c.encode("latin-1").decode("utf-8", "replace") for c in record], source, start)
                width = len(record)
            elif len(record) != width:
                _check_closed(tail, record[-1], source)   # the cause, when the row swallowed the file's end
                raise ConfigError(f"{source}:{start}", f"the row has {len(record)} fields, the header {width}.",
                                  "quote fields that contain commas or line breaks, and give every row all the columns.")
            yield start, record
    except csv.Error as e:
        _check_record_closed(tail, line, source)   # a "field too large" is most often a quote never closed
        raise ConfigError(f"{source}:{line}", f"not readable as CSV: {e}.",
                          f"write it as RFC 4180 CSV, fields up to {csv.field_size_limit()} characters "
                          "(load larger values with an SQL file).") from e
    if record:
        _check_closed(tail, record[-1], source)
    if not width:
        raise ConfigError(f"{source}:1", "the file is empty.", "begin the file with a header of column names.")


def csv_batches(chunks: Iterable[bytes], table: str, source: str, *, max_rows: int = 1000, build: bool = True,
                backslash_escapes: bool = True, skip_rows: int = 0) -> Iterator[Batch]:
    """The INSERT batches of a CSV file read as ``chunks``: every value a string literal (the
    server converts it to the column's type), a field that is exactly ``\\N`` NULL.
    ``build=False`` only counts, record by record with every check of ``csv_records`` (the
    pre-flight). With ``build`` a batch's rows are read and quoted together, and a record that
    does not fit the header means the file is not the one the pre-flight checked. ``skip_rows``:
    rows already loaded, skipped unread.

    While the file's lines hold no quote, backslash, carriage return, NUL, ^Z or blank line
    (most machine-written CSV), each line is a record and a batch is made by str methods over
    its lines at once (``_plain_lines``); from the first line that does, the csv module reads
    the rest, the records it already has carried over, so the batches are the same either way."""
    if not build:
        yield from _counted_batches(csv_records(chunks, source), table, source, max_rows)
        return
    tail = _Tail(4 * csv.field_size_limit() + 16)
    blocks = _whole_lines(_csv_text(chunks, tail))
    fast = _plain_lines(blocks)
    head = next(fast, None)
    if head is not None:
        header = head.split(",")
        head_sql = csv_table_sql(table, [c.encode("latin-1").decode("utf-8", "replace") for c in header], source)
        width, lines, line = len(header), [], 2
        for block_lines in fast:
            lines += block_lines
            if skip_rows:
                dropped = min(skip_rows, len(lines))
                del lines[:dropped]
                skip_rows -= dropped
                line += dropped
            sent = 0
            while len(lines) - sent >= max_rows:
                yield _plain_batch(head_sql, lines[sent:sent + max_rows], width, source, line, table)
                sent += max_rows
                line += max_rows
            del lines[:sent]
        carried = [record.split(",") for record in lines]
        rest = fast.rest
        if rest is None:   # the whole file was plain
            if lines:
                yield _plain_batch(head_sql, lines, width, source, line, table)
            return
        yield from _read_batches(csv.reader(_lines(chain([rest], blocks))), head_sql, width, source, table,
                                 max_rows, backslash_escapes, carried=carried, first_line=line, skip_rows=skip_rows,
                                 line_offset=fast.lines_read)
        return
    reader = csv.reader(_lines(chain([fast.rest], blocks) if fast.rest is not None else blocks))
    header = next((r for r in reader if r), None)
    if header is None:
        return
    head_sql = csv_table_sql(table, [c.encode("latin-1").decode("utf-8", "replace") for c in header], source)
    yield from _read_batches(reader, head_sql, len(header), source, table, max_rows, backslash_escapes,
                             skip_rows=skip_rows)


# what a block of lines must not hold for a split on "," to read it as the csv module does, each
# field quoted as it is: checked with ``in``, which is many times faster here than a regex
_NOT_PLAIN = ("\\", "'", '"', "\0", "\r", "\x1a", "\n\n")


def _is_plain(block: str) -> bool:
    return not block.startswith("\n") and not any(s in block for s in _NOT_PLAIN)


class _plain_lines:
    """The lines of ``blocks`` (text cut at line ends) for as long as they are plain (see
    ``csv_batches``): the first line, then each block's lines as a list. ``rest`` is then the
    first block that was not (None: none), ``lines_read`` the lines before it."""

    def __init__(self, blocks: Iterator[str]):
        self.blocks, self.rest, self.lines_read = blocks, None, 0
        self.first, self.pending = True, None

    def __iter__(self):
        return self

    def __next__(self):
        if self.pending is not None:   # the records of the header's block
            lines, self.pending = self.pending, None
            return lines
        if self.rest is not None:
            raise StopIteration
        block = next(self.blocks)   # StopIteration: the end of the file
        if not _is_plain(block):
            self.rest = block
            raise StopIteration
        lines = block.split("\n")
        if lines[-1] == "":
            lines.pop()
        self.lines_read += len(lines)
        if self.first:
            self.first = False
            head = lines.pop(0)
            self.pending = lines or None
            return head
        return lines


def _plain_batch(head_sql: str, lines: list[str], width: int, source: str, line: int, table: str) -> Batch:
    if {record.count(",") for record in lines} != {width - 1}:
        raise ConfigError(f"data {source}", "has changed since it was checked before step 1.",
                          "re-run the deploy, which checks the file again.")
    values = "('" + "\n".join(lines).replace(",", "','").replace("\n", "'),('") + "')"
    return Batch((head_sql + values,), len(lines), (f"{source}:{line}",), table)


def _read_batches(reader, head_sql: str, width: int, source: str, table: str, max_rows: int,
                  backslash_escapes: bool, *, carried: list[list[str]] | None = None, first_line: int = 0,
                  skip_rows: int = 0, line_offset: int = 0) -> Iterator[Batch]:
    """The batches of the records ``reader`` (a csv.reader) gives, after those ``carried`` over
    from the plain lines before it (the first of them on ``first_line``); the reader's line numbers
    are counted from ``line_offset`` lines into the file."""
    quote = mysql.string_literal_quoter(backslash_escapes)
    plain = mysql.needs_no_quoting_pattern()
    carried = carried or []
    try:
        for _ in islice(filter(None, reader), skip_rows) if skip_rows else ():
            pass
        while True:
            start = first_line if carried else line_offset + reader.line_num + 1
            records = carried + [r for r in islice(reader, max_rows - len(carried)) if r]
            carried = []
            while len(records) < max_rows:   # blank lines were dropped: read on to a whole batch
                more = [r for r in islice(reader, max_rows - len(records)) if r]
                if not more:
                    break
                records += more
            if not records:
                return
            if any(len(r) != width for r in records):
                raise ConfigError(f"data {source}", "has changed since it was checked before step 1.",
                                  "re-run the deploy, which checks the file again.")
            joined = ["\x1f".join(r) for r in records]
            body = "\x1e".join(joined)
            if (plain(body) is None and body.count("\x1f") == len(records) * (width - 1)
                    and body.count("\x1e") == len(records) - 1):
                values = "('" + body.replace("\x1f", "','").replace("\x1e", "'),('") + "')"
            else:
                values = ",".join(["(" + ",".join(["NULL" if f == NULL else quote(f) for f in r]) + ")"
                                   for r in records])
            yield Batch((head_sql + values,), len(records), (f"{source}:{start}",), table)
    except csv.Error as e:
        raise ConfigError(f"data {source}", f"has changed since it was checked before step 1 ({e}).",
                          "re-run the deploy, which checks the file again.") from e


def _counted_batches(records: Iterator[tuple[int, list[str]]], table: str, source: str,
                     max_rows: int) -> Iterator[Batch]:
    count = first_line = 0
    header = True
    for start, record in records:
        if header:
            csv_table_sql(table, [c.encode("latin-1").decode("utf-8", "replace") for c in record], source)
            header = False
            continue
        if not count:
            first_line = start
        count += 1
        if count == max_rows:
            yield Batch((), count, (f"{source}:{first_line}",), table)
            count = 0
    if count:
        yield Batch((), count, (f"{source}:{first_line}",), table)


def _check_header(header: list[str], source: str, line: int) -> None:
    for name in header:
        if not _IDENTIFIER.fullmatch(name):
            raise ConfigError(f"{source}:{line}", f"header column {name!r} is not a plain identifier "
                              "(letters, digits, _ and $).", "make the first line the table's column names.")
    if len(set(header)) != len(header):
        raise ConfigError(f"{source}:{line}", "the header names a column twice.", "name each column once.")


_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_QUOTED_FIELD = re.compile(r'"(?:[^"]|"")*"')
_UNQUOTED = re.compile(r'[^,"\r\n]*')


def _check_closed(tail: _Tail, last: str, source: str) -> None:
    """Refuse a file that ends inside a quoted field: the csv module (lenient) would return the
    rest of the file as that one field, and rows would vanish into it. Such a field is the last
    one read, and the file ends with its opening quote and its text, quotes doubled, right
    after a field separator; a closed field never does (it ends with its closing quote)."""
    text = tail.text
    raw = '"' + last.replace('"', '""')
    if not text.endswith(raw) or len(raw) >= len(text) and tail.line > 1:
        return
    opened = len(text) - len(raw)
    if opened > 0 and text[opened - 1] not in ",\r\n":
        return   # the quote is inside a field (doubled, or after other text): not an opening one
    line = tail.line + len(_LINE_BREAK.findall(text, 0, opened))
    raise ConfigError(f"{source}:{line}", "a quoted field opens here and is never closed, so the rest of the file "
                      "would be read as that one field.", 'close the quote; a quote inside a quoted field is written '
                      'twice ("").')


def _check_record_closed(tail: _Tail, line: int, source: str) -> None:
    """Refuse the record starting at ``line`` if one of its quoted fields never closes (the
    csv module then reports only a field over its size limit)."""
    text = tail.text
    if line < tail.line:
        return
    breaks = [m.end() for m, _ in zip(_LINE_BREAK.finditer(text), range(line - tail.line))]
    if len(breaks) != line - tail.line:
        return
    pos = breaks[-1] if breaks else 0
    while pos < len(text):
        if text[pos] == '"':
            m = _QUOTED_FIELD.match(text, pos)
            if m is None:
                raise ConfigError(f"{source}:{tail.line + len(_LINE_BREAK.findall(text, 0, pos))}",
                                  "a quoted field opens here and is never closed, so the rest of the file "
                                  "would be read as that one field.",
                                  'close the quote; a quote inside a quoted field is written twice ("").')
            pos = m.end()
        pos = _UNQUOTED.match(text, pos).end()
        if pos >= len(text) or text[pos] in "\r\n":
            return
        pos += 1   # a comma, or a quote inside an unquoted field (the lenient reader keeps it)


# ---------------------------------------------------------------- the pre-flight's plan


@dataclass(frozen=True)
class Segment:
    """Consecutive batches into one table (or of other statements: ``table`` None), from
    ``start`` on: what one reader loads in order, and what one checkpoint row counts."""

    index: int
    table: str | None
    start: Cursor
    batches: int
    rows: int
    end: int          # offset after its last batch


@dataclass
class Cut:
    """What the pre-flight learnt of a file by cutting it: its digest (of its text, newlines
    as ``str.splitlines`` reads them: earlier vtflow's checkpoints stay valid), rows per table,
    its segments, and its length (decompressed)."""

    digest: str
    tables: dict[str, int] = field(default_factory=dict)
    segments: list[Segment] = field(default_factory=list)
    length: int = 0
    plain: bool = True      # only INSERT ... VALUES whose rows are counted: ``tables`` is all it adds

    @property
    def batches(self) -> int:
        return sum(s.batches for s in self.segments)


class _Digest:
    """SHA-256 of the text with every line break written ``\\n`` (how earlier vtflow read files,
    with Python's universal newlines), as the bytes come; and the check that they are UTF-8."""

    def __init__(self, prefix: bytes, source: str):
        self.h = hashlib.sha256(prefix)
        self.cr = False              # the last chunk ended with \r: a \n first in the next is the same break
        self.utf8 = codecs.getincrementaldecoder("utf-8")()
        self.source, self.length, self.lines = source, 0, 1

    def add(self, chunk: bytes) -> bytes:
        try:
            self.utf8.decode(chunk)
        except UnicodeDecodeError as e:
            self._not_utf8(chunk, e.start)
        self.length += len(chunk)
        if b"\r" in chunk or self.cr:
            if self.cr and chunk.startswith(b"\n"):
                chunk = chunk[1:]
            self.cr = chunk.endswith(b"\r")
            norm = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        else:
            norm = chunk
        self.h.update(norm)
        self.lines += norm.count(b"\n")
        return chunk

    def done(self) -> str:
        try:
            self.utf8.decode(b"", final=True)
        except UnicodeDecodeError:
            self._not_utf8(b"", 0)
        return self.h.hexdigest()

    def _not_utf8(self, chunk: bytes, at: int):
        line = self.lines + chunk.count(b"\n", 0, at)
        raise ConfigError(f"{self.source}:{line}", f"is not UTF-8 text (byte {self.length + at} of the file).",
                          "write the file in UTF-8 (e.g. `iconv -t utf-8`), as mysqldump does by default.")


def cut_sql(chunks: Iterable[bytes], source: str, keyspace: str, log: Callable[[str], None] = lambda m: None,
            max_rows: int = 1000, max_bytes: int = 1 << 20) -> Cut:
    """The pre-flight's pass over an SQL file: checked (the parse, the keyspace, UTF-8), hashed
    and cut, holding one batch at a time."""
    digest = _Digest(b"", source)
    return _plan((digest.add(c) for c in chunks), digest, lambda stream: sql_batches(
        stream, source, keyspace, log, max_rows=max_rows, max_bytes=max_bytes, count_rows=True))


def cut_csv(chunks: Iterable[bytes], table: str, source: str, max_rows: int = 1000) -> Cut:
    """The pre-flight's pass over a CSV file for ``table`` (one segment)."""
    digest = _Digest(f"csv {table}\n".encode(), source)
    return _plan((digest.add(c) for c in chunks), digest,
                 lambda stream: csv_batches(stream, table, source, max_rows=max_rows, build=False))


def _plan(stream: Iterator[bytes], digest: _Digest, batches: Callable[[Iterator[bytes]], Iterator[Batch]]) -> Cut:
    cut = Cut(digest="")
    seg: list = []          # [table, start, batches, rows, end] of the segment being counted
    start = Cursor()
    for b in batches(stream):
        if seg and seg[0] == b.table:
            seg[2] += 1
        else:
            if seg:
                cut.segments.append(Segment(len(cut.segments), seg[0], seg[1], seg[2], seg[3], seg[4]))
            seg = [b.table, start, 1, 0, 0]
        if b.table is not None:
            if b.rows is None:
                cut.plain = False
            else:
                cut.tables[b.table] = cut.tables.get(b.table, 0) + b.rows
                seg[3] += b.rows
        else:
            cut.plain = False
        seg[4] = b.end.offset
        start = b.end
    if seg:
        cut.segments.append(Segment(len(cut.segments), seg[0], seg[1], seg[2], seg[3], seg[4]))
    for _ in stream:   # whatever follows the last statement is hashed too
        pass
    cut.digest, cut.length = digest.done(), digest.length
    return cut
