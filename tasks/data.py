"""Deploy step 6 (first part): SQL data files loaded through vtgate, exactly once.

vtgate does not accept LOAD DATA, and the upstream files insert one row per statement, so
consecutive single-table ``INSERT ... VALUES`` statements are joined into multi-row INSERTs
(``coalesce``, pure). Each batch commits in one transaction together with a checkpoint row
(table ``_vtflow_load`` in the same keyspace, keyed by the file's SHA-256): a run killed
half-way and started again skips what was committed and goes on, so every row ends up present
exactly once, and a file already loaded is not loaded again. Client meta commands are
interpreted (``use``) or logged (``\\!``), never run. Only ``vtflow.mysql`` talks to the server.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from typing import Callable

from tasks import sqlscript
from vtflow.errors import ConfigError, PermanentError

CHECKPOINT_TABLE = "_vtflow_load"
_INSERT = re.compile(r"^(insert\s+(?:ignore\s+)?into\s+[`\w.$]+\s*(?:\([^)]*\))?\s*values)\s*(.*)$", re.I | re.S)


@dataclass(frozen=True)
class Batch:
    sql: str
    rows: int        # rows it inserts (0 for other statements)
    where: str       # file:line of its first statement


def _tuples(values: str) -> int | None:
    """How many ``(...)`` tuples ``values`` is made of, or None if it is anything else."""
    count, depth, i, n = 0, 0, 0, len(values)
    expect_tuple = True
    while i < n:
        ch = values[i]
        if ch in " \t\r\n":
            i += 1
            continue
        if depth == 0:
            if expect_tuple and ch == "(":
                depth, count, expect_tuple = 1, count + 1, False
            elif not expect_tuple and ch == ",":
                expect_tuple = True
            else:
                return None  # e.g. ON DUPLICATE KEY UPDATE, or a SELECT
            i += 1
            continue
        if ch in ("'", '"', "`"):
            j = i + 1
            while j < n:
                if values[j] == "\\" and ch != "`":
                    j += 2
                    continue
                if values[j] == ch:
                    if j + 1 < n and values[j + 1] == ch:
                        j += 2
                        continue
                    break
                j += 1
            i = j + 1
            continue
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        i += 1
    return count if depth == 0 and not expect_tuple else None


def coalesce(statements: list[sqlscript.Statement], max_rows: int = 1000, max_bytes: int = 1 << 20) -> list[Batch]:
    """Join consecutive INSERT ... VALUES statements into the same table and columns."""
    out: list[Batch] = []
    prefix: str | None = None
    parts: list[str] = []
    rows, size, where = 0, 0, ""

    def flush() -> None:
        nonlocal prefix, parts, rows, size
        if prefix is not None:
            out.append(Batch(f"{prefix} {', '.join(parts)}", rows, where))
        prefix, parts, rows, size = None, [], 0, 0

    for st in statements:
        m = _INSERT.match(st.sql)
        count = _tuples(m.group(2)) if m else None
        if m is None or count is None:
            flush()
            out.append(Batch(st.sql, 0, st.where))
            continue
        head = re.sub(r"\s+", " ", m.group(1)).lower()
        if head != prefix or rows + count > max_rows or size + len(m.group(2)) > max_bytes:
            flush()
            prefix, where = head, st.where
        parts.append(m.group(2).strip())
        rows += count
        size += len(m.group(2))
    flush()
    return out


def file_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class LoadResult:
    source: str
    rows: int
    batches: int
    skipped_batches: int
    seconds: float

    @property
    def changed(self) -> bool:
        return self.batches > self.skipped_batches


def load_sql(connect: Callable[[str], object], keyspace: str, text: str, source: str,
             log: Callable[[str], None] = lambda m: None, max_rows: int = 1000, progress_every_s: float = 5.0) -> LoadResult:
    """Load one SQL file into ``keyspace`` through ``connect(database)`` (a pymysql-like
    connection factory), batch by batch, each batch committed with its checkpoint."""
    statements = []
    for part in sqlscript.split(text, source):
        if isinstance(part, sqlscript.Statement):
            statements.append(part)
        elif part.name == "use" and sqlscript.keyspace_of(part.arg) != keyspace:
            raise ConfigError(f"{part.source}:{part.line}", f"switches to keyspace {part.arg!r}, not {keyspace!r}.",
                              "load each keyspace's data with its own file.")
        elif part.name != "use":
            log(f"{part.source}:{part.line}: {part.name} {part.arg!r} not run")
    batches = coalesce(statements, max_rows=max_rows)
    digest = file_digest(text)
    started = time.monotonic()
    conn = connect(keyspace)
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE TABLE IF NOT EXISTS `{CHECKPOINT_TABLE}` (digest CHAR(64) PRIMARY KEY, "
                        "source VARCHAR(1024) NOT NULL, batches_done INT NOT NULL, rows_done BIGINT NOT NULL, "
                        "total_batches INT NOT NULL)")
            cur.execute(f"SELECT batches_done, rows_done FROM `{CHECKPOINT_TABLE}` WHERE digest = %s", (digest,))
            row = cur.fetchone()
        conn.commit()
        done, rows = (int(row[0]), int(row[1])) if row else (0, 0)
        if done:
            log(f"{source}: {done} of {len(batches)} batches already loaded; going on from there")
        last_report = time.monotonic()
        for index in range(done, len(batches)):
            batch = batches[index]
            with conn.cursor() as cur:
                try:
                    cur.execute(batch.sql)
                except Exception as e:  # noqa: BLE001 - the driver's error, named with its place
                    conn.rollback()
                    raise PermanentError(f"data {batch.where}", f"the server refused the statement: {e}",
                                         "correct the file; the batches before this one stay loaded and are "
                                         "skipped on the next run.") from e
                rows += batch.rows
                cur.execute(f"INSERT INTO `{CHECKPOINT_TABLE}` (digest, source, batches_done, rows_done, total_batches) "
                            "VALUES (%s, %s, %s, %s, %s) ON DUPLICATE KEY UPDATE batches_done = VALUES(batches_done), "
                            "rows_done = VALUES(rows_done)", (digest, source[-1024:], index + 1, rows, len(batches)))
            conn.commit()
            if time.monotonic() - last_report >= progress_every_s:
                spent = time.monotonic() - started
                log(f"{source}: {rows} rows, {index + 1}/{len(batches)} batches, {rows / max(spent, 1e-9):.0f} rows/s")
                last_report = time.monotonic()
    finally:
        conn.close()
    return LoadResult(source, rows, len(batches), done, time.monotonic() - started)
