"""Deploy step 6 (first part): data files loaded through vtgate, exactly once.

Two kinds of file: SQL scripts in the mysql client's dialect (``load_sql``) and CSV files, one
per table (``load_csv``). vtgate does not accept LOAD DATA, so both become multi-row INSERTs:

* SQL: consecutive single-table ``INSERT ... VALUES`` statements (the upstream files insert one
  row per statement) are joined into multi-row INSERTs (``coalesce``, pure). A statement that
  is already a large INSERT (a dump's extended INSERT, ``PASS_THROUGH_BYTES`` or more) is sent
  as it is, grouped with the next ones into the same table up to ``max_bytes`` per batch, and
  its rows are the count the server reports: scanning its tuples in Python would cost more
  than the server takes to insert them.
* CSV: rows are bound as parameters (the driver escapes them) in batches of ``max_rows``.

Both go through one batch loop (``_run``: ``_read_checkpoint``, then ``_send_batch`` per batch):
each batch commits in one transaction together with a checkpoint row (table ``_vtflow_load``
in the same keyspace, keyed by the file's SHA-256), so a run killed half-way and started again
skips what was committed and goes on, every row ends up present exactly once, and a file already loaded is not loaded again. A file is read and checked
whole before the first statement is sent. Client meta commands are interpreted (``use``) or
logged (``\\!``), never run. ``expected_rows`` and ``csv_rows`` say, without a server, how many
rows each table receives from a file (for verification). Only ``vtflow.mysql`` knows the driver;
this module reaches the server through the connection factory it is given.
"""

from __future__ import annotations

import contextvars
import csv
import hashlib
import io
import json
import re
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterator, Sequence

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from blocks.mysql import MySQLCredentials
from tasks import gateway, sqlscript
from tasks.common import retry_transient
from tasks.context import TargetContext
from tasks.report import Finding, StepReport
from vtflow import mysql
from vtflow.errors import ConfigError, PermanentError, TransientError, VtflowError
from vtflow.sources import read_source
from vtflow.forms import OptionalText

CHECKPOINT_TABLE = "_vtflow_load"
PASS_THROUGH_BYTES = 32 << 10   # an INSERT this long already fills a round trip: sent as it is
NULL = "\\N"                     # a CSV field meaning NULL, as in MySQL's LOAD DATA / SELECT ... INTO OUTFILE

_QUOTED = r"`(?:[^`]|``)+`"
_NAME = rf"(?:{_QUOTED}|[\w$]+)"
_INSERT = re.compile(
    rf"insert\s+(?P<ignore>ignore\s+)?into\s+(?P<table>{_NAME}(?:\s*\.\s*{_NAME})?)\s*"
    rf"(?P<cols>\((?:[^()`]|{_QUOTED})*\))?\s*values?\b\s*", re.I)
_STRING = re.compile(r"""'(?:[^'\\]++|\\[\s\S]|'')*+'|"(?:[^"\\]++|\\[\s\S]|"")*+"|`(?:[^`]++|``)*+`""")
_FLAT_TUPLES = re.compile(r"\s*+\([^()]*+\)(?:\s*+,\s*+\([^()]*+\))*+\s*+")
_TOKEN = re.compile(r"[(),]|[^\s(),]+")
_IDENTIFIER = re.compile(r"[A-Za-z0-9_$]+")


@dataclass(frozen=True)
class Batch:
    """Statements sent in one transaction, committed together with the checkpoint row."""

    statements: tuple[str, ...]
    rows: int | None          # rows it inserts: 0 for other statements, None when the server counts them
    wheres: tuple[str, ...]   # file:line of each statement (of the first row, for CSV)
    table: str | None = None                  # the table its INSERTs fill, unquoted
    params: Sequence[tuple] | None = None     # CSV rows bound to the one statement's %s placeholders

    @property
    def sql(self) -> str:
        return ";\n".join(self.statements)

    @property
    def where(self) -> str:
        return self.wheres[0]


def _unquote(name: str) -> str:
    """``db . `my``tbl``` -> ``db.my`tbl``: the table name as the server stores it."""
    parts = re.findall(rf"{_QUOTED}|[\w$]+", name)
    return ".".join(p[1:-1].replace("``", "`") if p.startswith("`") else p for p in parts)


def _tuples(values: str) -> int | None:
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


@lru_cache(maxsize=256)
def _target(head: str) -> tuple[bool, str, str]:
    """(IGNORE?, table unquoted, column list without spacing) of an INSERT's head: statements
    with the same target join. Cached: a file repeats a handful of heads thousands of times."""
    m = _INSERT.match(head)
    cols = m.group("cols")
    cols = re.sub(r"\s*([(),])\s*", r"\1", " ".join(cols.split())) if cols else ""
    return bool(m.group("ignore")), _unquote(m.group("table")), cols


def coalesce(statements: list[sqlscript.Statement], max_rows: int = 1000, max_bytes: int = 1 << 20,
             pass_through_bytes: int = PASS_THROUGH_BYTES) -> list[Batch]:
    """Join consecutive INSERT ... VALUES statements into the same table and columns, up to
    ``max_rows`` rows and ``max_bytes``. An INSERT of ``pass_through_bytes`` or more is not
    rewritten: consecutive ones into the same table are sent as they are, up to ``max_bytes``
    in one batch (fewer commits than the file has statements), rows counted by the server."""
    out: list[Batch] = []
    key: tuple | None = None     # ("join", IGNORE?, table, columns) or ("pass", table)
    head, parts, wheres = "", [], []
    rows, size, table = 0, 0, ""

    def flush() -> None:
        nonlocal key, parts, wheres, rows, size
        if key is not None and key[0] == "pass":
            out.append(Batch(tuple(parts), None, tuple(wheres), table))
        elif key is not None:
            out.append(Batch((f"{head} {', '.join(parts)}",), rows, (wheres[0],), table))
        key, parts, wheres, rows, size = None, [], [], 0, 0

    for st in statements:
        m = _INSERT.match(st.sql)
        if m is not None and len(st.sql) >= pass_through_bytes:
            this = ("pass", _target(st.sql[:m.end()])[1])
            if this != key or size + len(st.sql) > max_bytes:
                flush()
                key, table = this, this[1]
            parts.append(st.sql)
            wheres.append(st.where)
            size += len(st.sql)
            continue
        values = st.sql[m.end():] if m else ""
        count = _tuples(values) if m else None
        if m is None or count is None:
            flush()
            out.append(Batch((st.sql,), 0, (st.where,)))
            continue
        this = ("join", *_target(st.sql[:m.end()]))
        if this != key or rows + count > max_rows or size + len(values) > max_bytes:
            flush()
            key, head, table = this, st.sql[:m.end()].rstrip(), this[2]
            wheres.append(st.where)
        parts.append(values.strip())
        rows += count
        size += len(values)
    flush()
    return out


def _statements(text: str, source: str, keyspace: str | None, log: Callable[[str], None]) -> list[sqlscript.Statement]:
    statements = []
    for part in sqlscript.split(text, source):
        if isinstance(part, sqlscript.Statement):
            statements.append(part)
        elif part.name == "use":
            if keyspace is not None and sqlscript.keyspace_of(part.arg) != keyspace:
                raise ConfigError(f"{part.source}:{part.line}", f"switches to keyspace {part.arg!r}, not {keyspace!r}.",
                                  "load each keyspace's data with its own file.")
        else:
            log(f"{part.source}:{part.line}: {part.name} {part.arg!r} not run")
    return statements


def expected_rows(text: str, source: str) -> dict[str, int]:
    """Rows each table receives from an SQL file's ``INSERT ... VALUES`` statements (tuples
    counted, large statements included), without a server; linear in the file's size. Table
    names unquoted, case kept (MySQL's are case-sensitive on Linux). Statements whose rows only
    the server knows (INSERT ... SELECT, ON DUPLICATE KEY UPDATE) are not counted."""
    counts: dict[str, int] = {}
    for st in _statements(text, source, None, lambda m: None):
        m = _INSERT.match(st.sql)
        count = _tuples(st.sql[m.end():]) if m else None
        if count is not None:
            name = _target(st.sql[:m.end()])[1]
            counts[name] = counts.get(name, 0) + count
    return counts


def file_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class LoadResult:
    """What one file's load did. ``rows`` and ``tables`` count the whole file, batches skipped
    as already loaded included: ``tables`` is rows per table (unquoted name) the file holds, as
    ``expected_rows`` counts them; for a large INSERT passed through whole, the server's count."""

    source: str
    rows: int
    batches: int
    skipped_batches: int
    seconds: float
    tables: dict[str, int] = field(default_factory=dict)
    # rows each table held before the file's first batch (None: unreadable then, e.g. not created
    # yet; {} when the checkpoint predates this record): whether the load went into an empty table
    before: dict[str, int | None] = field(default_factory=dict)
    plain: bool = True        # only INSERT ... VALUES batches: ``tables`` is all the file adds

    @property
    def changed(self) -> bool:
        return self.batches > self.skipped_batches


def load_sql(connect: Callable[[str], object], keyspace: str, text: str, source: str,
             log: Callable[[str], None] = lambda m: None, max_rows: int = 1000, progress_every_s: float = 5.0,
             max_bytes: int = 1 << 20) -> LoadResult:
    """Load one SQL file into ``keyspace`` through ``connect(database)`` (a pymysql-like
    connection factory, called in a worker thread), batch by batch, each batch committed with
    its checkpoint. ``max_rows`` and ``max_bytes`` bound a batch (keep ``max_bytes`` under the
    server's max_allowed_packet); resume a load with the values it started with. Progress goes
    to ``log`` at most every ``progress_every_s`` seconds, and a last line per file."""
    started = time.monotonic()
    with _connecting(connect, keyspace) as opening:
        batches = coalesce(_statements(text, source, keyspace, log), max_rows=max_rows, max_bytes=max_bytes)
        digest = file_digest(text)
    return _run(opening, batches, digest, source, log, progress_every_s, started)


def _read_csv(text: str, source: str) -> tuple[list[str], list[tuple[int, tuple]]]:
    """The header's columns and every row with its line, checked whole: identifiers, field
    counts, quotes closed."""
    text = text[1:] if text.startswith("\ufeff") else text   # a BOM: not a name
    reader = csv.reader(io.StringIO(text, newline=""))
    rows: list[tuple[int, tuple]] = []
    header: list[str] | None = None
    line = 1
    record: list[str] = []
    try:
        for record in reader:
            start, line = line, reader.line_num + 1
            if not record:
                continue  # a blank line; write "" for a one-column row holding an empty string
            if header is None:
                header = record
                for name in header:
                    if not _IDENTIFIER.fullmatch(name):
                        raise ConfigError(f"{source}:{start}", f"header column {name!r} is not a plain identifier "
                                          "(letters, digits, _ and $).", "make the first line the table's column names.")
                if len(set(header)) != len(header):
                    raise ConfigError(f"{source}:{start}", "the header names a column twice.", "name each column once.")
                continue
            if len(record) != len(header):
                _check_closed(text, record[-1], source)   # the cause, when the row swallowed the file's end
                raise ConfigError(f"{source}:{start}", f"the row has {len(record)} fields, the header {len(header)}.",
                                  "quote fields that contain commas or line breaks, and give every row all the columns.")
            rows.append((start, tuple(None if f == NULL else f for f in record) if NULL in record else tuple(record)))
    except csv.Error as e:
        _check_record_closed(text, line, source)   # a "field too large" is most often a quote never closed
        raise ConfigError(f"{source}:{line}", f"not readable as CSV: {e}.",
                          f"write it as RFC 4180 CSV, fields up to {csv.field_size_limit()} characters "
                          "(load larger values with an SQL file).") from e
    if record:
        _check_closed(text, record[-1], source)
    if header is None:
        raise ConfigError(f"{source}:1", "the file is empty.", "begin the file with a header of column names.")
    return header, rows


_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def _check_closed(text: str, last: str, source: str) -> None:
    """Refuse a file that ends inside a quoted field: the csv module (lenient) would return the
    rest of the file as that one field, and rows would vanish into it. Such a field is the last
    one read, and the file ends with its opening quote and its text, quotes doubled, right
    after a field separator; a closed field never does (it ends with its closing quote)."""
    raw = '"' + last.replace('"', '""')
    if not text.endswith(raw):
        return
    opened = len(text) - len(raw)
    if opened > 0 and text[opened - 1] not in ",\r\n":
        return   # the quote is inside a field (doubled, or after other text): not an opening one
    line = 1 + len(_LINE_BREAK.findall(text, 0, opened))
    raise ConfigError(f"{source}:{line}", "a quoted field opens here and is never closed, so the rest of the file "
                      "would be read as that one field.",
                      'close the quote; a quote inside a quoted field is written twice ("").')


_QUOTED_FIELD = re.compile(r'"(?:[^"]++|"")*+"')
_UNQUOTED = re.compile(r'[^,\r\n"]*+')


def _check_record_closed(text: str, line: int, source: str) -> None:
    """Refuse the record starting at ``line`` if one of its quoted fields never closes (the
    csv module then reports only a field over its size limit)."""
    breaks = [m.end() for m, _ in zip(_LINE_BREAK.finditer(text), range(line - 1))]
    pos = breaks[-1] if line > 1 and len(breaks) == line - 1 else 0
    while pos < len(text):
        if text[pos] == '"':
            m = _QUOTED_FIELD.match(text, pos)
            if m is None:
                raise ConfigError(f"{source}:{1 + len(_LINE_BREAK.findall(text, 0, pos))}",
                                  "a quoted field opens here and is never closed, so the rest of the file "
                                  "would be read as that one field.",
                                  'close the quote; a quote inside a quoted field is written twice ("").')
            pos = m.end()
        pos = _UNQUOTED.match(text, pos).end()
        if pos >= len(text) or text[pos] in "\r\n":
            return
        pos += 1   # a comma, or a quote inside an unquoted field (the lenient reader keeps it)


def csv_batches(table: str, text: str, source: str, max_rows: int = 1000) -> list[Batch]:
    """The INSERT batches of a CSV file (pure): placeholders, rows bound as parameters."""
    if not _IDENTIFIER.fullmatch(table):
        raise ConfigError(source, f"table name {table!r} is not a plain identifier (letters, digits, _ and $).",
                          "name the table as the schema creates it.")
    header, rows = _read_csv(text, source)
    sql = (f"INSERT INTO `{table}` ({', '.join(f'`{c}`' for c in header)}) "
           f"VALUES ({', '.join(['%s'] * len(header))})")
    return [Batch((sql,), len(chunk), (f"{source}:{chunk[0][0]}",), table, [r for _, r in chunk])
            for chunk in (rows[i:i + max_rows] for i in range(0, len(rows), max_rows))]


def csv_rows(text: str, source: str) -> int:
    """Data rows of a CSV file (header and blank lines not counted), checked as ``load_csv`` checks it."""
    return len(_read_csv(text, source)[1])


def load_csv(connect: Callable[[str], object], keyspace: str, table: str, text: str, source: str,
             log: Callable[[str], None] = lambda m: None, max_rows: int = 1000, progress_every_s: float = 5.0) -> LoadResult:
    """Load a CSV file into ``keyspace``.``table``, exactly once, as ``load_sql`` does.

    The first line is the header: the table's column names. Quoting follows RFC 4180 (Python's
    ``csv`` module): fields with commas, quotes or line breaks are enclosed in double quotes and
    quotes inside are doubled. Every value is sent as a string (the server converts it to the
    column's type); a field that is exactly ``\\N`` is NULL, MySQL's convention (an empty field
    is the empty string). Blank lines are skipped. The whole file is checked (header names,
    field counts) before anything is sent. ``connect``, ``log`` and ``progress_every_s`` as for
    ``load_sql``; ``max_rows`` rows per batch."""
    started = time.monotonic()
    with _connecting(connect, keyspace) as opening:
        batches = csv_batches(table, text, source, max_rows=max_rows)
        digest = file_digest(f"csv {table}\n{text}")
    return _run(opening, batches, digest, source, log, progress_every_s, started)


def _failure(e: Exception, where: str) -> VtflowError:
    """The driver's error as vtflow's: a lost connection can be retried (the checkpoint resumes),
    a refused statement cannot."""
    if mysql.classify(e) is TransientError:
        return TransientError(f"data {where}", f"the connection to the server failed: {e}",
                              "re-run: the batches committed so far are skipped and the load goes on from here.")
    return PermanentError(f"data {where}", f"the server refused the statement: {e}",
                          "correct the file; the batches before this one stay loaded and are skipped on the next run.")


def _quietly(action: Callable[[], object]) -> None:
    try:
        action()
    except Exception:  # noqa: BLE001 - the connection is already broken; the first error is the one to report
        pass


def _close_if_opened(opening: Future) -> None:
    if not opening.cancelled() and opening.exception() is None:
        _quietly(opening.result().close)


@contextmanager
def _connecting(connect: Callable[[str], object], keyspace: str) -> Iterator[Future]:
    """Open the connection in a thread while the body reads and checks the file: parsing a
    large file and a TLS handshake each take tens of milliseconds. Only the handshake happens
    meanwhile; nothing of the file is sent before the body has returned. If the body fails,
    the connection is closed as soon as it is open."""
    pool = ThreadPoolExecutor(1, thread_name_prefix="vtflow-connect")
    opening = pool.submit(contextvars.copy_context().run, connect, keyspace)  # the caller's Prefect run context
    pool.shutdown(wait=False)
    try:
        yield opening
    except BaseException:
        opening.add_done_callback(_close_if_opened)
        raise


def _run(opening: Future, batches: list[Batch], digest: str, source: str,
         log: Callable[[str], None], progress_every_s: float, started: float) -> LoadResult:
    """Send ``batches`` in order, each committed in one transaction with the checkpoint row
    that says how many batches are done; resume after the last committed one."""
    total = len(batches)
    conn = _opened(opening, source)
    try:
        # the guarantee below needs a batch and its checkpoint row in one transaction: with
        # autocommit on, a batch the server was running when the loader died stays committed
        # without its checkpoint, and the re-run sends it again. Set here, whatever the factory did.
        mysql.transactional_mode(conn)
        done, rows, before = _read_checkpoint(conn, digest, source, total)
        tables = _table_rows(batches[:done])
        if done:
            log(f"{source}: {done} of {total} batches already loaded" + ("" if done == total else "; going on from there"))
        rows_before = rows
        progress = _Progress(source, total, rows, log, progress_every_s)
        for index in range(done, total):
            batch = batches[index]
            if index == 0:
                before = _count_before(conn, batches)   # committed with batch 0's checkpoint row
            count = _send_batch(conn, batch, digest, source, index, rows, total, before if index == 0 else None)
            rows += count
            if batch.table is not None:
                tables[batch.table] = tables.get(batch.table, 0) + count
            progress.sent(index, rows)
    finally:
        _quietly(conn.close)
    seconds = time.monotonic() - started
    loaded = rows - rows_before
    log(f"{source}: {loaded} rows loaded in {seconds:.2f} s ({loaded / max(seconds, 1e-9):.0f} rows/s)"
        + (f"; {done} of {total} batches ({rows_before} rows) were already loaded" if done else ""))
    return LoadResult(source, rows, total, done, seconds, tables, before,
                      plain=all(b.table is not None for b in batches))


def _opened(opening: Future, source: str):
    """The connection the opener thread made, or its failure as vtflow's error."""
    try:
        return opening.result()
    except VtflowError:
        raise
    except Exception as e:  # noqa: BLE001 - classified by vtflow.mysql
        raise _failure(e, source) from e


def _table_rows(batches: list[Batch]) -> dict[str, int]:
    """Rows per table of batches already committed (a resumed load counts what it skips)."""
    tables: dict[str, int] = {}
    for batch in batches:
        if batch.table is not None:
            count = batch.rows if batch.rows is not None else sum(
                _tuples(sql[_INSERT.match(sql).end():]) or 0 for sql in batch.statements)
            tables[batch.table] = tables.get(batch.table, 0) + count
    return tables


class _Progress:
    """Logs rows and rows/s every ``every_s`` seconds while batches go out."""

    def __init__(self, source: str, total: int, rows: int, log: Callable[[str], None], every_s: float):
        self.source, self.total, self.first_rows, self.log, self.every_s = source, total, rows, log, every_s
        self.started = self.last = time.monotonic()

    def sent(self, index: int, rows: int) -> None:
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.log(f"{self.source}: {rows} rows, {index + 1}/{self.total} batches, "
                     f"{(rows - self.first_rows) / max(now - self.started, 1e-9):.0f} rows/s")
            self.last = now


_UNKNOWN_COLUMN = 1054


def _read_checkpoint(conn, digest: str, source: str, total: int) -> tuple[int, int, dict[str, int | None]]:
    """(batches done, rows done, rows per table before the load) of the file with ``digest``,
    from its checkpoint row (made here, with its table, when absent). A checkpoint of another
    cut of the file is refused unless that load had finished."""
    select = (f"SELECT batches_done, rows_done, total_batches, tables_before FROM `{CHECKPOINT_TABLE}` "
              "WHERE digest = %s")
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE TABLE IF NOT EXISTS `{CHECKPOINT_TABLE}` (digest CHAR(64) PRIMARY KEY, "
                        "source VARCHAR(1024) NOT NULL, batches_done INT NOT NULL, rows_done BIGINT NOT NULL, "
                        "total_batches INT NOT NULL, tables_before TEXT NULL)")
            try:
                cur.execute(select, (digest,))
            except Exception as e:  # noqa: BLE001 - a checkpoint table of an older vtflow: add the column
                if not (getattr(e, "args", None) and e.args[0] == _UNKNOWN_COLUMN):
                    raise
                cur.execute(f"ALTER TABLE `{CHECKPOINT_TABLE}` ADD COLUMN tables_before TEXT NULL")
                cur.execute(select, (digest,))
            row = cur.fetchone()
        conn.commit()
    except Exception as e:  # noqa: BLE001 - classified by vtflow.mysql
        raise _failure(e, source) from e
    done, rows = (int(row[0]), int(row[1])) if row else (0, 0)
    before = json.loads(row[3]) if row and row[3] else {}
    if row and int(row[2]) != total:
        # the checkpoint counts batches: another max_rows or max_bytes cuts the file elsewhere
        if done < int(row[2]):
            raise ConfigError(f"data {source}", f"was partly loaded in {row[2]} batches; this run cuts it into {total}.",
                              "re-run with the max_rows and max_bytes of the interrupted run, so that it resumes "
                              "where that one stopped.")
        done = total  # loaded whole before
    return done, rows, before


def _quoted_table(name: str) -> str:
    return ".".join(f"`{p.replace('`', '``')}`" for p in name.split(".", 1))


def _count_before(conn, batches: list[Batch]) -> dict[str, int | None]:
    """Rows each table of the file holds now, in the transaction of its first batch (so they
    are recorded with that batch's checkpoint row, or not at all). A table that cannot be read
    (the file creates it) is None: nothing is known about it."""
    out: dict[str, int | None] = {}
    with conn.cursor() as cur:
        for table in dict.fromkeys(b.table for b in batches if b.table is not None):
            try:
                cur.execute(f"SELECT COUNT(*) FROM {_quoted_table(table)}")
                out[table] = int(cur.fetchone()[0])
            except Exception as e:  # noqa: BLE001 - only a refused statement is "unknown"
                if mysql.classify(e) is TransientError:
                    raise _failure(e, batches[0].where) from e
                out[table] = None
    return out


def _send_batch(conn, batch: Batch, digest: str, source: str, index: int, rows_before: int, total: int,
                before: dict[str, int | None] | None = None) -> int:
    """Send batch number ``index`` and its checkpoint row (``index + 1`` batches done) in one
    transaction; the rows it inserted. On any error the transaction is rolled back, so the
    checkpoint never counts a batch that is not in the tables."""
    where = batch.where
    try:
        with conn.cursor() as cur:
            counted = 0
            for sql, where in zip(batch.statements, batch.wheres):
                if batch.params is not None:
                    cur.executemany(sql, batch.params)
                else:
                    cur.execute(sql)
                counted += max(cur.rowcount, 0)
            where = batch.where   # the checkpoint and the commit are the batch's
            count = batch.rows if batch.rows is not None else counted
            cur.execute(f"INSERT INTO `{CHECKPOINT_TABLE}` (digest, source, batches_done, rows_done, total_batches, "
                        "tables_before) VALUES (%s, %s, %s, %s, %s, %s) ON DUPLICATE KEY UPDATE "
                        "batches_done = VALUES(batches_done), rows_done = VALUES(rows_done)",
                        (digest, source[-1024:], index + 1, rows_before + count, total,
                         None if before is None else json.dumps(before)))
        conn.commit()
    except Exception as e:  # noqa: BLE001 - the driver's error, named with its place
        _quietly(conn.rollback)
        raise _failure(e, where) from e
    return count


# ---------------------------------------------------------------- the deploy step


class DataFile(BaseModel):
    """One data file of the deploy's data step."""

    keyspace: str = Field(default="commerce", description="Keyspace to load into.")
    source: str = Field(description="A file path or http(s) URL: .csv (one table, header line of column names) "
                                    "or SQL in the mysql client's dialect (e.g. insert_commerce_data.sql).")
    table: OptionalText = Field(default=None, description="CSV only: the table; empty means the file's name "
                                                        "without .csv.")


def is_csv(f: DataFile) -> bool:
    return f.source.lower().split("?")[0].endswith(".csv")


def file_rows(f: DataFile, text: str, source: str) -> dict[str, int]:
    """``keyspace.table`` -> rows one file holds (pure; the parse is the file's check)."""
    if is_csv(f):
        table = f.table or Path(source).name.rsplit(".", 1)[0]
        counts = {table: csv_rows(text, source)}
    else:
        counts = expected_rows(text, source)
    return {f"{f.keyspace}.{table}": n for table, n in counts.items()}


def _summed(per_file: list[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for counts in per_file:
        for key, n in counts.items():
            out[key] = out.get(key, 0) + n
    return out


def planned_rows(files: list[tuple[DataFile, str, str]]) -> dict[str, int]:
    """``keyspace.table`` -> rows the files hold (pure; what verification expects to find)."""
    return _summed([file_rows(*t) for t in files])


@dataclass(frozen=True)
class DataInputs:
    """The data files as read and checked before step 1: each file's text and name, and the
    rows they hold per ``keyspace.table`` (what verification expects to find)."""

    files: list[tuple[DataFile, str, str]]
    rows: dict[str, int]
    per_file: list[dict[str, int]] = field(default_factory=list)   # ``file_rows`` of each file, in order


def read_files(files: list[DataFile]) -> DataInputs:
    """Every file read once and parsed whole (the parse is the check: the deploy does it before
    step 1, and the step loads these texts)."""
    texts = [(f, *read_source(f.source, "data file")) for f in files]
    per_file = [file_rows(*t) for t in texts]
    return DataInputs(texts, _summed(per_file), per_file)


def connector(credentials: MySQLCredentials, host: str, port: int) -> Callable[[str], object]:
    """The loader's connection factory: ``connect(keyspace)``, transactional (a batch and its
    checkpoint row commit together, or neither does)."""
    def connect(database: str):
        try:
            return credentials.connect(host, port, database=database, transactional=True)
        except TransientError as e:
            raise TransientError(e.subject, e.problem, gateway.UNREACHABLE_FIX) from e
    return connect


class DataReport(StepReport):
    """The data step's report, and which tables hold nothing but what the files loaded."""

    exact_tables: list[str] = Field(
        default_factory=list, description="keyspace.table that were empty before the files loaded them: "
        "verification fails, not warns, when they hold more rows than the files")


def exact_tables(files: list[tuple[DataFile, str, str]], per_file: list[dict[str, int]],
                 results: list[LoadResult]) -> list[str]:
    """``keyspace.table`` that this run loaded into and whose rows are all from these files
    (pure): the first file into it found it empty, each later one found exactly the rows of the
    files before, every file into it holds only INSERT ... VALUES whose rows the plan counted as
    the load did, and at least one of them was (partly) loaded by this run. A table whose files
    were all loaded whole before is left out: rows the application wrote since are expected."""
    exact: dict[str, bool] = {}
    held: dict[str, int] = {}
    loaded_now: dict[str, bool] = {}
    for (f, _, _), planned, result in zip(files, per_file, results):
        for table, n in result.tables.items():
            key = f"{f.keyspace}.{table}"
            ok = (result.plain and planned.get(key) == n and result.before.get(table, -1) == held.get(key, 0))
            exact[key] = exact.get(key, True) and ok
            held[key] = held.get(key, 0) + n
            loaded_now[key] = loaded_now.get(key, False) or result.changed
    return sorted(k for k, ok in exact.items() if ok and loaded_now[k])


@task(name="data", task_run_name="data", retries=2, retry_delay_seconds=5,
      retry_condition_fn=retry_transient, cache_policy=NO_CACHE)
def load_data(target: TargetContext, credentials: MySQLCredentials, inputs: DataInputs) -> DataReport:
    """Step 6: the files ``read_files`` read, loaded through vtgate, each exactly once (a retry
    or a re-run resumes from the checkpoints)."""
    log = get_run_logger()
    report = DataReport(step="data")
    report.findings = [Finding(name=table, level="ok", problem=f"{n} rows in the data files")
                       for table, n in sorted(inputs.rows.items())]
    if target.k.dry_run:
        report.findings.insert(0, Finding(name="data files", level="ok",
                                           problem=f"{len(inputs.files)} file(s) checked; a dry run loads nothing"))
        return report
    gw = gateway.discover(target.k, target.namespace, target.cluster, target.node_address, target.vtgate_address)
    log.info("loading %d file(s) through vtgate at %s (from %s)", len(inputs.files), gw.address, gw.how)

    connect = connector(credentials, gw.host, gw.port)
    results = []
    for f, text, source in inputs.files:
        say = (lambda m: log.info("%s", m))
        if is_csv(f):
            table = f.table or Path(source).name.rsplit(".", 1)[0]
            result = load_csv(connect, f.keyspace, table, text, source, log=say)
        else:
            result = load_sql(connect, f.keyspace, text, source, log=say)
        results.append(result)
        report.objects.append({"object": f"data {f.keyspace}: {source} ({result.rows} rows)",
                               "action": "created" if result.changed else "unchanged"})
    report.exact_tables = exact_tables(inputs.files, inputs.per_file or [file_rows(*t) for t in inputs.files], results)
    return report
