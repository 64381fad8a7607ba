"""Deploy step 6 (first part): data files loaded through vtgate, exactly once, as streams.

Two kinds of file: SQL in the mysql client's dialect (upstream's one row per INSERT, or a dump's
extended INSERTs) and CSV, one table per file; local or URL, plain or gzip. vtgate does not
accept LOAD DATA, so both become multi-row INSERTs (``tasks.datafile`` cuts them, in memory
bounded by a batch whatever the file's size).

Before step 1 each file is read once as a stream (``plan_file``): checked, hashed and cut, so
that its rows per table are known (verification expects them) and so are its ``Segment``s:
runs of batches into one table, between statements of other kinds.

The load (``load``) then sends the batches, each in one transaction with its checkpoint row:
table ``_vtflow_load`` holds one row per file (keyed by the SHA-256 of its text: a file loaded
whole is not loaded again), ``_vtflow_load_part`` one per segment (batches and rows done, and
where in the file the next batch begins). A run killed half-way and started again resumes every
segment after its last committed batch; every row ends up present exactly once. With
``parallel`` connections the segments of different tables between two other statements load
at once, each table's segments in the file's order (auto-increment ids come out as the file
ordered them); each connection reads the file at its own offset. A lost connection is retried
(``retries``): the checkpoint row, read again, says whether the batch in flight committed.

Client meta commands are interpreted (``use``) or logged (``\\!``), never run. Only
``vtflow.mysql`` knows the driver; this module reaches the server through the connection
factory it is given.
"""

from __future__ import annotations

import contextvars
import json
import queue
import sys
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from blocks.mysql import MySQLCredentials
from tasks import gateway
from tasks.common import retry_transient
from tasks.context import TargetContext
from tasks.datafile import (PASS_THROUGH_BYTES, Batch, Cursor, Cut, Segment, coalesce, csv_batches, cut_csv,  # noqa: F401
                            cut_sql, sql_batches)
from tasks.report import Finding, StepReport
from vtflow import mysql
from vtflow.errors import ConfigError, PermanentError, TransientError, VtflowError
from vtflow.forms import OptionalText
from vtflow.sources import DataSource, open_data

CHECKPOINT_TABLE = "_vtflow_load"
PART_TABLE = "_vtflow_load_part"
MAX_PARALLEL = 16


@dataclass(frozen=True)
class FilePlan:
    """One data file as the pre-flight read it: where it is, and its cut."""

    keyspace: str
    data: DataSource
    cut: Cut
    table: str | None = None        # CSV: the table (None: an SQL file)
    max_rows: int = 1000
    max_bytes: int = 1 << 20

    @property
    def source(self) -> str:
        return self.data.name

    def batches(self, at: Cursor, log: Callable[[str], None], backslash_escapes: bool = True,
                skip_rows: int = 0) -> Iterator[Batch]:
        """The file's batches from ``at`` on (CSV: from its start, ``skip_rows`` rows skipped)."""
        if self.table is not None:
            return csv_batches(self.data.chunks(), self.table, self.source, max_rows=self.max_rows,
                               backslash_escapes=backslash_escapes, skip_rows=skip_rows)
        return sql_batches(self.data.chunks(at.offset), self.source, self.keyspace, log, max_rows=self.max_rows,
                           max_bytes=self.max_bytes, at=at)


def plan_sql(data: DataSource, keyspace: str, max_rows: int = 1000, max_bytes: int = 1 << 20) -> FilePlan:
    return FilePlan(keyspace, data, cut_sql(data.chunks(), data.name, keyspace, max_rows=max_rows, max_bytes=max_bytes),
                    None, max_rows, max_bytes)


def plan_csv(data: DataSource, keyspace: str, table: str, max_rows: int = 1000) -> FilePlan:
    return FilePlan(keyspace, data, cut_csv(data.chunks(), table, data.name, max_rows=max_rows), table, max_rows)


def expected_rows(text: str, source: str) -> dict[str, int]:
    """Rows each table receives from an SQL file's ``INSERT ... VALUES`` statements (tuples
    counted, large statements included), without a server. Table names unquoted, case kept
    (MySQL's are case-sensitive on Linux). Statements whose rows only the server knows
    (INSERT ... SELECT, ON DUPLICATE KEY UPDATE) are not counted."""
    return dict(cut_sql(DataSource.from_text(text, source).chunks(), source, None).tables)


def csv_rows(text: str, source: str) -> int:
    """Data rows of a CSV file (header and blank lines not counted), checked as ``load_csv`` checks it."""
    return sum(b.rows for b in csv_batches(DataSource.from_text(text, source).chunks(), "t", source, build=False))


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
    parallel: int = 1         # connections it had

    @property
    def changed(self) -> bool:
        return self.batches > self.skipped_batches


@dataclass(frozen=True)
class Progress:
    """A load's progress, as ``on_progress`` receives it."""

    source: str
    fraction: float           # of the file's bytes (CSV: of its rows)
    rows: int
    rows_per_s: float
    eta_s: float | None
    batches: int
    total_batches: int


def load_sql(connect: Callable[[str], object], keyspace: str, text: str, source: str,
             log: Callable[[str], None] = lambda m: None, max_rows: int = 1000, progress_every_s: float = 5.0,
             max_bytes: int = 1 << 20, parallel: int = 1, retries: int = 0) -> LoadResult:
    """``load`` of SQL text given in memory (tests, small scripts)."""
    return load(connect, plan_sql(DataSource.from_text(text, source), keyspace, max_rows, max_bytes), log,
                parallel=parallel, progress_every_s=progress_every_s, retries=retries)


def load_csv(connect: Callable[[str], object], keyspace: str, table: str, text: str, source: str,
             log: Callable[[str], None] = lambda m: None, max_rows: int = 1000, progress_every_s: float = 5.0,
             retries: int = 0) -> LoadResult:
    """``load`` of CSV text given in memory.

    The first line is the header: the table's column names. Quoting follows RFC 4180 (Python's
    ``csv`` module): fields with commas, quotes or line breaks are enclosed in double quotes and
    quotes inside are doubled. Every value is sent as a string (the server converts it to the
    column's type); a field that is exactly ``\\N`` is NULL, MySQL's convention (an empty field
    is the empty string). Blank lines are skipped."""
    return load(connect, plan_csv(DataSource.from_text(text, source), keyspace, table, max_rows), log,
                progress_every_s=progress_every_s, retries=retries)


def _failure(e: Exception, where: str) -> VtflowError:
    """The driver's error as vtflow's: a lost connection can be retried (the checkpoint resumes),
    a refused statement cannot."""
    if isinstance(e, VtflowError):
        return e
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


# ---------------------------------------------------------------- checkpoints

_UNKNOWN_COLUMN = 1054


@dataclass
class _Done:
    """A segment's checkpoint: batches and rows done, and where its next batch begins (None:
    not recorded, by an older vtflow: count batches from the segment's start)."""

    batches: int = 0
    rows: int = 0
    at: Cursor | None = None


def _execute(conn, sql: str, args=None, where: str = "checkpoint"):
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall()
    except Exception as e:  # noqa: BLE001 - classified by vtflow.mysql
        raise _failure(e, where) from e


def _read_checkpoint(conn, plan: FilePlan) -> tuple[dict[int, _Done] | None, dict[str, int | None]]:
    """Every segment's checkpoint (None: the file was loaded whole before) and the rows per
    table before its first batch. Makes the tables, and the file's row on a first load (the
    tables' rows counted now, committed with it). A checkpoint of another cut of the file is
    refused unless that load had finished."""
    digest, source, total = plan.cut.digest, plan.source, plan.cut.batches
    _execute(conn, f"CREATE TABLE IF NOT EXISTS `{CHECKPOINT_TABLE}` (digest CHAR(64) PRIMARY KEY, "
                   "source VARCHAR(1024) NOT NULL, batches_done INT NOT NULL, rows_done BIGINT NOT NULL, "
                   "total_batches INT NOT NULL, tables_before TEXT NULL)", where=f"data {source}")
    _execute(conn, f"CREATE TABLE IF NOT EXISTS `{PART_TABLE}` (digest CHAR(64) NOT NULL, part INT NOT NULL, "
                   "batches_done INT NOT NULL, rows_done BIGINT NOT NULL, next_offset BIGINT NOT NULL, "
                   "next_line BIGINT NOT NULL, next_delimiter VARCHAR(255) NOT NULL, PRIMARY KEY (digest, part))",
             where=f"data {source}")
    select = (f"SELECT batches_done, rows_done, total_batches, tables_before FROM `{CHECKPOINT_TABLE}` "
              "WHERE digest = %s")
    try:
        rows = _execute(conn, select, (digest,), f"data {source}")
    except PermanentError as e:   # a checkpoint table of an older vtflow: add the column
        if not (e.__cause__ and getattr(e.__cause__, "args", None) and e.__cause__.args[0] == _UNKNOWN_COLUMN):
            raise
        _execute(conn, f"ALTER TABLE `{CHECKPOINT_TABLE}` ADD COLUMN tables_before TEXT NULL")
        rows = _execute(conn, select, (digest,), f"data {source}")
    if not rows:
        before = _count_before(conn, plan)
        _execute(conn, f"INSERT INTO `{CHECKPOINT_TABLE}` (digest, source, batches_done, rows_done, total_batches, "
                       "tables_before) VALUES (%s, %s, 0, 0, %s, %s)", (digest, source[-1024:], total, json.dumps(before)))
        _commit(conn, source)
        return {}, before
    done, rows_done, their_total, before_text = int(rows[0][0]), int(rows[0][1]), int(rows[0][2]), rows[0][3]
    before = json.loads(before_text) if before_text else {}
    if done and done == their_total:
        _commit(conn, source)
        return None, before
    parts = {int(p): _Done(int(b), int(r), Cursor(int(o), int(ln), d) if int(o) >= 0 else None)
             for p, b, r, o, ln, d in _execute(
                 conn, f"SELECT part, batches_done, rows_done, next_offset, next_line, next_delimiter FROM `{PART_TABLE}` "
                       "WHERE digest = %s", (digest,), f"data {source}")}
    if their_total != total and not done and not parts:   # nothing of it was loaded: cut it anew
        _execute(conn, f"UPDATE `{CHECKPOINT_TABLE}` SET total_batches = %s WHERE digest = %s", (total, digest))
    elif their_total != total:
        # the checkpoint counts batches: another max_rows or max_bytes cuts the file elsewhere
        raise ConfigError(f"data {source}", f"was partly loaded in {their_total} batches; this run cuts it into {total}.",
                          "re-run with the max_rows and max_bytes of the interrupted run, so that it resumes "
                          "where that one stopped.")
    if done and not parts:
        # an older vtflow's count, as segments' rows, before anything else commits: from here on
        # the segments' rows are the record (offset -1: where the next batch begins is not known)
        parts = _legacy(plan.cut.segments, done, rows_done)
        for index, d in parts.items():
            _execute(conn, f"INSERT INTO `{PART_TABLE}` (digest, part, batches_done, rows_done, next_offset, next_line, "
                           "next_delimiter) VALUES (%s, %s, %s, %s, -1, 0, '')", (digest, index, d.batches, d.rows))
    _commit(conn, source)
    return parts, before


def _legacy(segments: list[Segment], done: int, rows: int) -> dict[int, _Done]:
    """An older vtflow's checkpoint (batches done in the file's order, one count) as segments'."""
    out: dict[int, _Done] = {}
    for s in segments:
        n = min(done, s.batches)
        if n == 0:
            break
        whole = n == s.batches
        out[s.index] = _Done(n, s.rows if whole else max(rows, 0), None)
        rows -= s.rows
        done -= n
    return out


def _commit(conn, where: str) -> None:
    try:
        conn.commit()
    except Exception as e:  # noqa: BLE001 - classified by vtflow.mysql
        raise _failure(e, where) from e


def _quoted_table(name: str) -> str:
    return ".".join(f"`{p.replace('`', '``')}`" for p in name.split(".", 1))


def _count_before(conn, plan: FilePlan) -> dict[str, int | None]:
    """Rows each table of the file holds now. A table that cannot be read (the file creates it)
    is None: nothing is known about it."""
    out: dict[str, int | None] = {}
    with conn.cursor() as cur:
        for table in dict.fromkeys(s.table for s in plan.cut.segments if s.table is not None):
            try:
                cur.execute(f"SELECT COUNT(*) FROM {_quoted_table(table)}")
                out[table] = int(cur.fetchone()[0])
            except Exception as e:  # noqa: BLE001 - only a refused statement is "unknown"
                if mysql.classify(e) is TransientError:
                    raise _failure(e, plan.source) from e
                out[table] = None
    return out


def _send(conn, batch: Batch, digest: str, part: int, done: _Done) -> int:
    """Send ``batch`` and its segment's checkpoint row (``done`` plus this batch) in one
    transaction; the rows it inserted. On any error the transaction is rolled back, so the
    checkpoint never counts a batch that is not in the tables."""
    where = batch.where
    try:
        with conn.cursor() as cur:
            counted = 0
            for sql, where in zip(batch.payloads(), batch.wheres):
                cur.execute(sql)
                counted += max(cur.rowcount, 0)
            where = batch.where   # the checkpoint and the commit are the batch's
            count = batch.rows if batch.rows is not None else counted
            end = batch.end
            cur.execute(f"INSERT INTO `{PART_TABLE}` (digest, part, batches_done, rows_done, next_offset, next_line, "
                        "next_delimiter) VALUES (%s, %s, %s, %s, %s, %s, %s) ON DUPLICATE KEY UPDATE "
                        "batches_done = VALUES(batches_done), rows_done = VALUES(rows_done), "
                        "next_offset = VALUES(next_offset), next_line = VALUES(next_line), "
                        "next_delimiter = VALUES(next_delimiter)",
                        (digest, part, done.batches + 1, done.rows + count, end.offset, end.line, end.delimiter))
        conn.commit()
    except Exception as e:  # noqa: BLE001 - the driver's error, named with its place
        _quietly(conn.rollback)
        raise _failure(e, where) from e
    return count


def _part_done(conn, digest: str, part: int) -> _Done:
    rows = _execute(conn, f"SELECT batches_done, rows_done, next_offset, next_line, next_delimiter FROM `{PART_TABLE}` "
                          "WHERE digest = %s AND part = %s", (digest, part))
    _quietly(conn.commit)
    if not rows:
        return _Done()
    b, r, o, ln, d = rows[0]
    return _Done(int(b), int(r), Cursor(int(o), int(ln), d) if int(o) >= 0 else None)


# ---------------------------------------------------------------- the load


class _Prefetch:
    """Batches of one reader made in a thread of their own, ``depth`` ahead: the file is read
    and cut while the server runs the batch before (pymysql waits without the GIL)."""

    _END = object()

    def __init__(self, batches: Iterator[Batch], depth: int = 2):
        self.q: queue.Queue = queue.Queue(depth)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._fill, args=(batches,), daemon=True, name="vtflow-data-read")
        self.thread.start()

    def _fill(self, batches: Iterator[Batch]) -> None:
        try:
            for b in batches:
                if not self._put(b):
                    return
            self._put(self._END)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, which raises it
            self._put(e)

    def _put(self, item) -> bool:
        while not self.stopped.is_set():
            try:
                self.q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def next(self) -> Batch | None:
        item = self.q.get()
        if item is self._END:
            self.q.put(item)   # later calls see the end too
            return None
        if isinstance(item, BaseException):
            raise item
        return item

    def stop(self) -> None:
        self.stopped.set()


class _Worker:
    """One connection and one reader of the file: loads segments, each from its checkpoint on."""

    def __init__(self, load: "_Load", conn=None):
        self.load, self.conn = load, conn
        self.reader: _Prefetch | None = None
        self.at: Cursor | None = None      # where the reader's next batch begins

    def connection(self):
        if self.conn is None:
            self.conn = self.load.open()
            self.used = True
        return self.conn

    used = False   # whether it ever had a connection

    def close(self) -> None:
        if self.reader is not None:
            self.reader.stop()
        if self.conn is not None:
            _quietly(self.conn.close)

    def _read_from(self, at: Cursor, skip_rows: int = 0) -> None:
        if self.reader is not None and self.at == at and not skip_rows:
            return
        if self.reader is not None:
            self.reader.stop()
        self.reader = _Prefetch(self.load.plan.batches(at, self.load.log, self.load.backslash, skip_rows))
        self.at = at

    def segment(self, seg: Segment) -> None:
        load, plan = self.load, self.load.plan
        done = load.done.get(seg.index, _Done())
        left = seg.batches - done.batches
        if left <= 0:
            return
        if plan.table is not None:
            self._read_from(seg.start, skip_rows=done.rows)
        elif done.batches and done.at is None:   # an older checkpoint: count the batches done from the start
            self._read_from(seg.start)
            for _ in range(done.batches):
                self._next(seg)
        else:
            self._read_from(done.at if done.batches else seg.start)
        for _ in range(left):
            if load.stopped.is_set():
                return
            batch = self._next(seg)
            done = self._send(batch, seg, done)
            load.sent(seg, batch, done)

    def _next(self, seg: Segment) -> Batch:
        batch = self.reader.next()
        if batch is None or batch.table != seg.table:
            raise ConfigError(f"data {self.load.plan.source}", "has changed since it was checked before step 1.",
                              "re-run the deploy, which checks the file again.")
        self.at = batch.end
        return batch

    def retrying(self, action: Callable[[object], object], committed: Callable[[object], object] | None = None):
        """``action(connection)``, again on a new connection after a lost one (up to the load's
        ``retries``). ``committed(connection)``: what the action did if it had committed before
        the connection was lost (None: it had not; do it again)."""
        load = self.load
        for attempt in range(load.retries + 1):
            try:
                return action(self.connection())
            except TransientError as e:
                if attempt == load.retries:
                    raise
                load.log(f"{e.subject}: {e.problem} Retrying ({attempt + 1} of {load.retries}).")
                if self.conn is not None:
                    _quietly(self.conn.close)
                self.conn = None
                time.sleep(min(2 ** attempt, 10))
                if committed is not None:
                    try:
                        done = committed(self.connection())
                    except TransientError:
                        continue
                    if done is not None:
                        return done
        raise AssertionError("unreachable")

    def _send(self, batch: Batch, seg: Segment, done: _Done) -> _Done:
        digest = self.load.plan.cut.digest

        def send(conn) -> _Done:
            return _Done(done.batches + 1, done.rows + _send(conn, batch, digest, seg.index, done), batch.end)

        def committed(conn) -> _Done | None:   # the answer was lost: the checkpoint row says whether it committed
            now = _part_done(conn, digest, seg.index)
            return now if now.batches == done.batches + 1 else None
        return self.retrying(send, committed)


def _finish(conn, plan: FilePlan, rows: int) -> None:
    """The file is loaded: its row says so, and its segments' rows go (safe to repeat)."""
    _execute(conn, f"UPDATE `{CHECKPOINT_TABLE}` SET batches_done = total_batches, rows_done = %s WHERE digest = %s",
             (rows, plan.cut.digest), f"data {plan.source}")
    _execute(conn, f"DELETE FROM `{PART_TABLE}` WHERE digest = %s", (plan.cut.digest,), f"data {plan.source}")
    _commit(conn, plan.source)


class _Load:
    """One file's load: its checkpoints, its workers, its progress."""

    def __init__(self, connect, plan: FilePlan, log, parallel: int, retries: int, progress_every_s: float,
                 on_progress: Callable[[Progress], None] | None):
        self.connect, self.plan, self.log = connect, plan, log
        self.parallel, self.retries = parallel, retries
        self.every_s, self.on_progress = progress_every_s, on_progress
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.done: dict[int, _Done] = {}
        self.rows = self.rows_before = self.batches = self.skipped_batches = 0
        self.bytes = 0
        self.tables: dict[str, int] = {}
        self.last_end: dict[int, int] = {}   # per segment: the offset after its last batch loaded
        self.start_fraction = 0.0
        self.last_report = time.monotonic()
        self.backslash = True
        self.started = time.monotonic()

    def open(self):
        try:
            conn = self.connect(self.plan.keyspace)
            # the guarantee needs a batch and its checkpoint row in one transaction: with
            # autocommit on, a batch the server was running when the loader died stays committed
            # without its checkpoint, and the re-run sends it again. Set here, whatever the factory did.
            return mysql.transactional_mode(conn)
        except Exception as e:  # noqa: BLE001 - classified by vtflow.mysql
            raise _failure(e, self.plan.source) from e

    def skipped(self, seg: Segment, done: _Done) -> None:
        """Account for what a segment's checkpoint says is loaded (before any worker starts)."""
        self.skipped_batches += done.batches
        self.batches += done.batches
        self.rows += done.rows
        self.rows_before += done.rows
        self.last_end[seg.index] = (seg.end if done.batches == seg.batches else
                                    done.at.offset if done.at is not None and done.batches else seg.start.offset)
        self.bytes += self.last_end[seg.index] - seg.start.offset
        if seg.table is not None and done.rows:
            self.tables[seg.table] = self.tables.get(seg.table, 0) + done.rows

    def sent(self, seg: Segment, batch: Batch, done: _Done) -> None:
        with self.lock:
            count = done.rows - self.done.get(seg.index, _Done()).rows
            self.done[seg.index] = done
            self.batches += 1
            self.rows += count
            if seg.table is not None:
                self.tables[seg.table] = self.tables.get(seg.table, 0) + count
            self.bytes += max(batch.end.offset - self.last_end[seg.index], 0)
            self.last_end[seg.index] = batch.end.offset
            due = time.monotonic() - self.last_report >= self.every_s
            if due:
                self.last_report = time.monotonic()
        if due:
            self.report()

    def progress(self) -> Progress:
        with self.lock:
            rows, batches = self.rows, self.batches
            total_rows = sum(self.plan.cut.tables.values()) or 1
            fraction = (rows / total_rows if self.plan.table is not None or not self.plan.cut.length
                        else self.bytes / self.plan.cut.length)
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = (rows - self.rows_before) / elapsed
        left = max(1.0 - fraction, 0.0)
        eta = elapsed * left / (fraction - self.start_fraction) if fraction > self.start_fraction else None
        return Progress(self.plan.source, min(fraction, 1.0), rows, rate, eta, batches, self.plan.cut.batches)

    def report(self) -> None:
        p = self.progress()
        self.log(f"{p.source}: {p.rows} rows, {p.batches}/{p.total_batches} batches, {p.fraction:.0%}, "
                 f"{p.rows_per_s:.0f} rows/s" + (f", about {p.eta_s:.0f} s left" if p.eta_s is not None and
                                                 p.fraction < 1 else ""))
        if self.on_progress is not None:
            self.on_progress(p)


def _drain(worker: _Worker, lanes: queue.SimpleQueue) -> None:
    """One worker's part of a phase: lanes taken from the phase's queue until it is empty."""
    run = worker.load
    if worker.conn is None:
        try:
            worker.connection()
        except TransientError as e:   # vtgate at its connection limit: the others go on
            run.log(f"{run.plan.source}: one connection fewer ({e.problem})")
            return
    while not run.stopped.is_set():
        try:
            lane = lanes.get_nowait()
        except queue.Empty:
            return
        for seg in lane:
            worker.segment(seg)


def _phases(segments: list[Segment]) -> list[list[list[Segment]]]:
    """The segments as phases (each runs after the one before has finished): a run of other
    statements alone, or the INSERT segments between two such runs as lanes, one per table,
    each lane's segments in the file's order."""
    phases: list[list[list[Segment]]] = []
    lanes: dict[str, list[Segment]] = {}
    for s in segments:
        if s.table is None:
            if lanes:
                phases.append(list(lanes.values()))
                lanes = {}
            phases.append([[s]])
        else:
            lanes.setdefault(s.table, []).append(s)
    if lanes:
        phases.append(list(lanes.values()))
    return phases


def load(connect: Callable[[str], object], plan: FilePlan, log: Callable[[str], None] = lambda m: None, *,
         parallel: int = 1, retries: int = 0, progress_every_s: float = 5.0,
         on_progress: Callable[[Progress], None] | None = None) -> LoadResult:
    """Load one planned file into its keyspace through ``connect(database)`` (a pymysql-like
    connection factory), batch by batch, each committed with its checkpoint, over up to
    ``parallel`` connections. Resume a load with the max_rows and max_bytes it started with.
    Progress goes to ``log`` and ``on_progress`` at most every ``progress_every_s`` seconds
    (from the thread that sent the batch, in the caller's context), and a last line per file."""
    if not isinstance(parallel, int) or not 1 <= parallel <= MAX_PARALLEL:
        raise ConfigError(f"data {plan.source}", f"parallel={parallel!r} is not a number of connections from 1 to "
                          f"{MAX_PARALLEL}.", "give parallel between 1 and 16 (or leave it empty: chosen from the cluster).")
    if not plan.data.unchanged():
        raise ConfigError(f"data {plan.source}", "has changed since it was checked before step 1.",
                          "re-run the deploy, which checks the file again.")
    run = _Load(connect, plan, log, parallel, retries, progress_every_s, on_progress)
    total = plan.cut.batches
    with _prompt_thread_switches():
        return _load(run, plan, log, parallel, on_progress, total)


@contextmanager
def _prompt_thread_switches(interval_s: float = 0.0002):
    """While a load runs, a thread that waits for the GIL gets it within ``interval_s`` (Python's
    default: 5 ms): the connection's thread, woken by the server's answer, then sends the next
    batch at once instead of waiting out the reader thread's time slice, which is about as long
    as the server takes for a batch (it left the server idle up to half the time)."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(min(before, interval_s))
    try:
        yield
    finally:
        sys.setswitchinterval(before)


def _load(run: "_Load", plan: FilePlan, log, parallel: int, on_progress, total: int) -> LoadResult:
    first = _Worker(run, run.open())
    first.used = True
    workers = [first]
    try:
        try:
            run.backslash = mysql.backslash_escapes(first.conn)
            parts, before = _read_checkpoint(first.conn, plan)
        except BaseException:
            first.close()
            raise
        if parts is None:   # loaded whole before
            first.close()
            seconds = time.monotonic() - run.started
            rows = sum(plan.cut.tables.values())
            log(f"{plan.source}: {total} of {total} batches already loaded")
            log(f"{plan.source}: 0 rows loaded in {seconds:.2f} s (0 rows/s); {total} of {total} batches "
                f"({rows} rows) were already loaded")
            return LoadResult(plan.source, rows, total, total, seconds, dict(plan.cut.tables), before, plan.cut.plain, 1)
        run.done = parts
        for seg in plan.cut.segments:
            run.skipped(seg, parts.get(seg.index, _Done()))
        run.start_fraction = run.progress().fraction
        done = run.skipped_batches
        if done:
            log(f"{plan.source}: {done} of {total} batches already loaded; going on from there")
        workers += [_Worker(run) for _ in range(parallel - 1)]
        with ThreadPoolExecutor(parallel, thread_name_prefix="vtflow-data") as pool:
            for phase in _phases(plan.cut.segments):
                lanes: queue.SimpleQueue = queue.SimpleQueue()
                for lane in phase:
                    lanes.put(lane)

                n = min(len(phase), parallel)
                futures = [pool.submit(contextvars.copy_context().run, _drain, w, lanes) for w in workers[:n]]
                finished, pending = wait(futures, return_when=FIRST_EXCEPTION)
                failed = [f.exception() for f in finished if f.exception() is not None]
                if failed:
                    run.stopped.set()
                    wait(pending)
                    raise failed[0]
        first.retrying(lambda conn: _finish(conn, plan, run.rows))
    finally:
        run.stopped.set()
        for w in workers:
            w.close()
    seconds = time.monotonic() - run.started
    loaded = run.rows - run.rows_before
    run.bytes = plan.cut.length   # and whatever follows the last statement
    if on_progress is not None:
        on_progress(run.progress())
    log(f"{plan.source}: {loaded} rows loaded in {seconds:.2f} s ({loaded / max(seconds, 1e-9):.0f} rows/s"
        + (f", {sum(w.used for w in workers)} connections" if parallel > 1 else "") + ")"
        + (f"; {run.skipped_batches} of {total} batches ({run.rows_before} rows) were already loaded"
           if run.skipped_batches else ""))
    return LoadResult(plan.source, run.rows, total, run.skipped_batches, seconds, dict(run.tables), before,
                      plan.cut.plain, sum(w.used for w in workers))


# ---------------------------------------------------------------- the deploy step


class DataFile(BaseModel):
    """One data file of the deploy's data step."""

    keyspace: str = Field(default="commerce", description="Keyspace to load into.")
    source: str = Field(description="A file path or http(s) URL: .csv (one table, header line of column names) "
                                    "or SQL in the mysql client's dialect (e.g. insert_commerce_data.sql, or a "
                                    "mysqldump); either may be gzip-compressed (.gz).")
    table: OptionalText = Field(default=None, description="CSV only: the table; empty means the file's name "
                                                        "without .csv.")


def _bare(source: str) -> str:
    name = source.split("?")[0]
    return name[:-3] if name.lower().endswith(".gz") else name


def is_csv(f: DataFile) -> bool:
    return _bare(f.source).lower().endswith(".csv")


def csv_table(f: DataFile) -> str:
    return f.table or Path(_bare(f.source)).name.rsplit(".", 1)[0]


def plan_file(f: DataFile) -> FilePlan:
    """One data file read as a stream, checked and cut (the pre-flight's part of the load)."""
    data = open_data(f.source, "data file")
    return plan_csv(data, f.keyspace, csv_table(f)) if is_csv(f) else plan_sql(data, f.keyspace)


def file_rows(plan: FilePlan) -> dict[str, int]:
    """``keyspace.table`` -> rows one file holds (what verification expects to find)."""
    return {f"{plan.keyspace}.{table}": n for table, n in plan.cut.tables.items()}


def _summed(per_file: list[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for counts in per_file:
        for key, n in counts.items():
            out[key] = out.get(key, 0) + n
    return out


@dataclass(frozen=True)
class DataInputs:
    """The data files as read and checked before step 1: each file's plan, and the rows they
    hold per ``keyspace.table`` (what verification expects to find)."""

    files: list[FilePlan]
    rows: dict[str, int]
    per_file: list[dict[str, int]] = field(default_factory=list)   # ``file_rows`` of each file, in order
    parallel: int | None = None                                     # connections per file (None: from the cluster)


def read_files(files: list[DataFile], parallel: int | None = None) -> DataInputs:
    """Every file read once as a stream and cut (the cut is the check: the deploy does it before
    step 1, and the step loads the files along these cuts)."""
    if parallel is not None and not 1 <= parallel <= MAX_PARALLEL:
        raise ConfigError("data parallel", f"{parallel} is not a number of connections from 1 to {MAX_PARALLEL}.",
                          "give parallel between 1 and 16, or leave it empty (chosen from the cluster).")
    plans = [plan_file(f) for f in files]
    per_file = [file_rows(p) for p in plans]
    return DataInputs(plans, _summed(per_file), per_file, parallel)


def default_parallel(shards: int) -> int:
    """Connections per file when the deploy does not say: two per shard of the keyspace (one
    batch runs on each primary while the next is sent), at most four."""
    return max(1, min(4, 2 * shards))


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


def exact_tables(plans: list[FilePlan], per_file: list[dict[str, int]], results: list[LoadResult]) -> list[str]:
    """``keyspace.table`` that this run loaded into and whose rows are all from these files
    (pure): the first file into it found it empty, each later one found exactly the rows of the
    files before, every file into it holds only INSERT ... VALUES whose rows the plan counted as
    the load did, and at least one of them was (partly) loaded by this run. A table whose files
    were all loaded whole before is left out: rows the application wrote since are expected."""
    exact: dict[str, bool] = {}
    held: dict[str, int] = {}
    loaded_now: dict[str, bool] = {}
    for plan, planned, result in zip(plans, per_file, results):
        for table, n in result.tables.items():
            key = f"{plan.keyspace}.{table}"
            ok = (result.plain and planned.get(key) == n and result.before.get(table, -1) == held.get(key, 0))
            exact[key] = exact.get(key, True) and ok
            held[key] = held.get(key, 0) + n
            loaded_now[key] = loaded_now.get(key, False) or result.changed
    return sorted(k for k, ok in exact.items() if ok and loaded_now[k])


def _keyspace_shards(target: TargetContext, keyspace: str) -> int:
    """Shards of ``keyspace`` in the VitessCluster (1 when it cannot be read)."""
    try:
        vc = target.k.get("planetscale.com/v2", "VitessCluster", target.namespace, target.cluster) or {}
    except VtflowError:
        return 1
    for ks in vc.get("spec", {}).get("keyspaces", []):
        if ks.get("name") == keyspace:
            parts = [p.get("parts") or len(p.get("shards", [])) for p in ks.get("partitionings", [])]
            return max([1, *(n for n in parts if n)])
    return 1


class _ProgressArtifact:
    """A Prefect progress artifact per file, updated in place (at most every few seconds)."""

    def __init__(self, key: str):
        self.key, self.id = key, None

    def __call__(self, p: Progress) -> None:
        from prefect.artifacts import create_progress_artifact, update_progress_artifact
        text = (f"{p.source}: {p.rows} rows, {p.batches}/{p.total_batches} batches, {p.rows_per_s:.0f} rows/s"
                + (f", about {p.eta_s:.0f} s left" if p.eta_s is not None and p.fraction < 1 else ""))
        try:
            if self.id is None:
                self.id = create_progress_artifact(100 * p.fraction, key=self.key, description=text)
            else:
                update_progress_artifact(self.id, 100 * p.fraction, description=text)
        except Exception as e:  # noqa: BLE001 - progress is for people; the load goes on without it
            get_run_logger().warning("progress artifact %s: %s", self.key, e)


def _artifact_key(cluster: str, index: int) -> str:
    """``data-<cluster>-<n>``: Prefect's artifact keys are lowercase letters, digits and dashes."""
    return "".join(c if c.isalnum() or c == "-" else "-" for c in f"data-{cluster}-{index + 1}".lower())


@task(name="data", task_run_name="data", retries=2, retry_delay_seconds=5,
      retry_condition_fn=retry_transient, cache_policy=NO_CACHE)
def load_data(target: TargetContext, credentials: MySQLCredentials, inputs: DataInputs) -> DataReport:
    """Step 6: the files ``read_files`` cut, loaded through vtgate, each exactly once (a retry
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
    for i, plan in enumerate(inputs.files):
        parallel = inputs.parallel or default_parallel(_keyspace_shards(target, plan.keyspace))
        result = load(connect, plan, lambda m: log.info("%s", m), parallel=parallel, retries=3,
                      on_progress=_ProgressArtifact(_artifact_key(target.cluster, i)))
        results.append(result)
        report.objects.append({"object": f"data {plan.keyspace}: {plan.source} ({result.rows} rows)",
                               "action": "created" if result.changed else "unchanged"})
    report.exact_tables = exact_tables(inputs.files, inputs.per_file or [file_rows(p) for p in inputs.files], results)
    return report
