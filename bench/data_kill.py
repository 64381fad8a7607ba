"""Benchmark: the data loader's exactly-once guarantee under SIGKILL, through the user's path.

`vtflow deploy --until data --data commerce:FILE` runs as a subprocess (the CLI, on the Prefect
server named by PREFECT_API_URL) against a cluster deployed onto the Kubernetes API double,
whose vtgate proxies to a throwaway MariaDB. Each run is killed with SIGKILL at a random point
after it has started sending (a random batch, found in the checkpoint table; then either a
random delay or the moment the server is running one of its INSERTs, the window autocommit
loses), and the next run is the re-run, itself killed at a later point, until a last re-run
finishes. After every kill the table must hold exactly the first ``rows_done`` rows of the file
(the checkpoint's count: no row twice, none missing); at the end, COUNT(*) and a checksum over
all rows must equal the file's.

Prints one JSON line:
{"bench":"data_kill","kills":..,"reruns":..,"mismatches":..,"rows":..,"seconds":..,"details":[the first mismatches]}

``kill_loads`` is also what tests/flows/test_data_kill.py runs, shorter. It never imports
Prefect itself (the CLI does, in its own process), so a test session can call it.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

ROWS = 200_000
KILLS = 30          # split between the SQL file and the CSV file
TABLES = {"sql": "kill_sql", "csv": "kill_csv", "gz": "kill_gz"}


@dataclass
class DataFile:
    kind: str            # "sql", "csv" or "gz" (the SQL file gzip-compressed)
    path: Path
    table: str
    rows: int
    checksum: int        # SUM(CRC32(CONCAT_WS('|', seq, v, IFNULL(note, '\\N')))) of every row


def _value(i: int) -> tuple[int, str, str | None]:
    # quotes, commas and a backslash-free mix of lengths: the CSV path quotes, the SQL path escapes
    return i, f"row {i}, \"q\" {'x' * (i % 11)}", None if i % 7 == 0 else f"n{i % 1000}"


def _crc(i: int, v: str, note: str | None) -> int:
    return zlib.crc32(f"{i}|{v}|{note if note is not None else chr(92) + 'N'}".encode())


def write_files(folder: Path, rows: int) -> list[DataFile]:
    """An SQL file (one row per INSERT, the upstream style), a CSV file (RFC 4180, ``\\N``) and
    the SQL file gzip-compressed (into a table of its own)."""
    import gzip
    values = [_value(i) for i in range(rows)]
    checksum = sum(_crc(*r) for r in values)
    sql = folder / "kill_sql.sql"

    def lit(s: str | None) -> str:
        return "NULL" if s is None else "'" + s.replace("'", "''") + "'"
    sql.write_text("".join(f"insert into kill_sql(seq, v, note) values ({i}, {lit(v)}, {lit(n)});\n"
                           for i, v, n in values))
    csv = folder / "kill_csv.csv"
    csv.write_text("seq,v,note\n" + "".join(f'{i},"{v.replace(chr(34), chr(34) * 2)}",{n if n is not None else chr(92) + "N"}\n'
                                            for i, v, n in values))
    gz = folder / "kill_gz.sql.gz"
    gz.write_bytes(gzip.compress(sql.read_text().replace("into kill_sql(", "into kill_gz(").encode(), 1))
    return [DataFile("sql", sql, "kill_sql", rows, checksum), DataFile("csv", csv, "kill_csv", rows, checksum),
            DataFile("gz", gz, "kill_gz", rows, checksum)]


class Server:
    """The test's own view of the MariaDB behind vtgate (autocommit reads, never the loader's)."""

    def __init__(self, host: str, port: int, user: str, password: str, keyspace: str = "commerce"):
        import pymysql

        self.keyspace = keyspace
        self.conn = pymysql.connect(host=host, port=port, user=user, password=password, autocommit=True)
        self.user = user

    def q(self, sql: str, args=None):
        with self.conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall()

    def reset(self, f: DataFile) -> None:
        """An empty table for the file (no key on seq: a duplicate must be countable, not refused)."""
        ks = self.keyspace
        self.q(f"CREATE DATABASE IF NOT EXISTS `{ks}`")
        self.q(f"DROP TABLE IF EXISTS `{ks}`.`{f.table}`")
        self.q(f"CREATE TABLE `{ks}`.`{f.table}` (id BIGINT AUTO_INCREMENT PRIMARY KEY, seq INT NOT NULL, "
               "v VARCHAR(64) NOT NULL, note VARCHAR(16) NULL) CHARSET utf8mb4")
        if self.q(f"SHOW TABLES FROM `{ks}` LIKE '_vtflow_load'"):
            self.q(f"DELETE FROM `{ks}`.`_vtflow_load_part` WHERE digest IN (SELECT digest FROM `{ks}`.`_vtflow_load` "
                   "WHERE source LIKE %s)", (f"%{f.path.name}",))
            self.q(f"DELETE FROM `{ks}`.`_vtflow_load` WHERE source LIKE %s", (f"%{f.path.name}",))

    def done(self, f: DataFile) -> tuple[int, int]:
        """(batches_done, rows_done) of the file's checkpoints (its segments' while it loads, the
        file's once loaded whole), (0, 0) before its first commit."""
        if not self.q(f"SHOW TABLES FROM `{self.keyspace}` LIKE '_vtflow_load_part'"):
            return 0, 0
        rows = self.q(f"SELECT f.batches_done + COALESCE(SUM(p.batches_done), 0), f.rows_done + COALESCE(SUM(p.rows_done), 0) "
                      f"FROM `{self.keyspace}`.`_vtflow_load` f LEFT JOIN `{self.keyspace}`.`_vtflow_load_part` p "
                      "ON p.digest = f.digest WHERE f.source LIKE %s GROUP BY f.digest", (f"%{f.path.name}",))
        return (int(rows[0][0]), int(rows[0][1])) if rows else (0, 0)

    def contents(self, f: DataFile) -> tuple[int, int, int, int]:
        """COUNT(*), COUNT(DISTINCT seq), MAX(seq) + 1, checksum of the table."""
        count, distinct, top, crc = self.q(
            f"SELECT COUNT(*), COUNT(DISTINCT seq), IFNULL(MAX(seq), -1) + 1, "
            f"IFNULL(SUM(CRC32(CONCAT_WS('|', seq, v, IFNULL(note, '\\\\N')))), 0) FROM `{self.keyspace}`.`{f.table}`")[0]
        return int(count), int(distinct), int(top), int(crc)

    def busy(self, f: DataFile) -> bool:
        """The server is running an INSERT into the file's table right now."""
        return bool(self.q("SELECT 1 FROM information_schema.processlist WHERE command = 'Query' "
                           "AND info LIKE %s", (f"INSERT INTO%{f.table}%",)))

    def connections(self) -> set[int]:
        return {r[0] for r in self.q("SELECT id FROM information_schema.processlist WHERE id <> CONNECTION_ID()")}

    def settled(self, before: set[int], timeout: float = 60) -> None:
        """Wait until the connections opened since ``before`` (the killed loader's) are gone from
        the server: until then a statement it sent may still be running (and, with autocommit,
        committing)."""
        deadline = time.monotonic() + timeout
        while left := self.connections() - before:
            if time.monotonic() > deadline:
                rows = self.q("SELECT id, user, db, command, time, state, LEFT(info, 80) FROM "
                              "information_schema.processlist")
                raise AssertionError(f"the killed loader's connections {sorted(left)} are still open: {rows}")
            time.sleep(0.02)


@dataclass
class Figures:
    kills: int = 0
    reruns: int = 0
    mismatches: list[str] = field(default_factory=list)
    rows: int = 0
    seconds: float = 0.0


def _prefix_sum(f: DataFile, n: int) -> int:
    return sum(_crc(*_value(i)) for i in range(n))


def kill_loads(server: Server, files: list[DataFile], kills: dict[str, int], deploy_args: list[str],
               rng: random.Random, in_batch_share: float = 0.5, batch_rows: int = 1000,
               timeout: float = 300) -> Figures:
    """For each file: ``kills[kind]`` runs of ``vtflow deploy ... --data commerce:FILE`` killed
    at random points, each followed by the next run (the re-run), then a last re-run that must
    finish. Consistency is checked after every kill and at the end; mismatches are counted."""
    fig = Figures()
    started = time.monotonic()
    for f in files:
        server.reset(f)
        batches = -(-f.rows // batch_rows)
        n = kills.get(f.kind, 0)
        targets = sorted(rng.sample(range(1, batches), n)) if n else []
        for target in targets:
            before = server.connections()
            child = _start(deploy_args, f)
            try:
                _wait_for(lambda: server.done(f)[0] >= target or child.poll() is not None, timeout,
                          f"{f.kind}: batch {target} committed")
                if child.poll() is not None:
                    raise AssertionError(f"{f.kind}: the deploy ended before it could be killed: {_tail(child)}")
                if rng.random() < in_batch_share:
                    # near the file's end the last INSERT may be gone before one is seen: the kill
                    # then lands after the load, still a point a user's kill can hit
                    _wait_for(lambda: server.busy(f) or child.poll() is not None, 10, "an INSERT running",
                              must=False)
                else:
                    time.sleep(rng.uniform(0, 0.05))
            finally:
                child.send_signal(signal.SIGKILL)
                child.wait()
                child.log.close()
            fig.kills += 1
            server.settled(before)
            _, rows_done = server.done(f)
            count, distinct, top, crc = server.contents(f)
            if (count, distinct, top) != (rows_done, rows_done, rows_done) or crc != _prefix_sum(f, rows_done):
                fig.mismatches.append(f"{f.kind} after kill {fig.kills} at batch >= {target}: {count} rows "
                                      f"({distinct} distinct, up to seq {top - 1}); the checkpoint says {rows_done}")
        child = _start(deploy_args, f)
        try:
            child.wait(timeout)
        finally:
            child.kill()
        out = _output(child)
        fig.reruns += len(targets)
        # a kill that landed after the last batch leaves this re-run nothing to load: either line
        # is the loader's word that it read the file's checkpoint; the contents below are the proof
        # (looked for in the whole output: the report after it can be longer than any tail)
        if child.returncode != 0 or not ("rows loaded in" in out or "batches already loaded" in out):
            raise AssertionError(f"{f.kind}: the last re-run failed ({child.returncode}): {out[-3000:]}")
        count, distinct, top, crc = server.contents(f)
        if (count, distinct, top, crc) != (f.rows, f.rows, f.rows, f.checksum):
            fig.mismatches.append(f"{f.kind} at the end: {count} rows ({distinct} distinct, up to seq {top - 1}), "
                                  f"checksum {crc}; the file holds {f.rows}, checksum {f.checksum}")
        fig.rows += count
    fig.seconds = round(time.monotonic() - started, 1)
    return fig


def _start(deploy_args: list[str], f: DataFile) -> subprocess.Popen:
    # output to a file, not a pipe: a pipe nobody reads until the kill could stall the loader
    log = open(f.path.with_suffix(".log"), "w+")
    child = subprocess.Popen([sys.executable, "-m", "vtflow.cli", *deploy_args, "--until", "data",
                              "--data", f"commerce:{f.path}", "--data-parallel", "2"], stdout=log, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, env=dict(os.environ))
    child.log = log
    return child


def _output(child: subprocess.Popen) -> str:
    child.wait()
    child.log.seek(0)
    return child.log.read()


def _tail(child: subprocess.Popen) -> str:
    return _output(child)[-3000:]


def _wait_for(predicate, timeout: float, what: str, must: bool = True) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            if not must:
                return False
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.005)
    return True


def deploy_args(cluster) -> list[str]:
    """The CLI's arguments for a cluster from tests/helpers.deployed_cluster."""
    from helpers import OPERATOR_YAML

    # -v: the loader's log lines (its word that it read the checkpoint), which the CLI shows only then
    return ["deploy", "-v", "--target", f"tgt-{cluster.tag}", "--mysql", f"my-{cluster.tag}", "--no-node-prep",
            "--operator-manifest", OPERATOR_YAML]


def main() -> None:
    import json
    import shutil
    import tempfile

    sys.path.insert(0, str(Path(__file__).parent))
    from benchenv import STATE  # noqa: F401  (first: it prepares the environment for Prefect)

    from helpers import deployed_cluster
    from vtflow.stack import PrefectServer, StackSettings, register_blocks

    rows = int(os.environ.get("BENCH_ROWS", ROWS))
    kills = int(os.environ.get("BENCH_KILLS", KILLS))
    server = PrefectServer(StackSettings.from_env()).start()
    work = Path(tempfile.mkdtemp(prefix="vtflow-bench-kill-"))
    try:
        register_blocks()
        files = write_files(work, rows)
        with deployed_cluster(work) as cluster:
            db = Server(cluster.db.host, cluster.db.port, cluster.db.user, cluster.db.password)
            fig = kill_loads(db, files, {"sql": kills // 3, "gz": kills // 3, "csv": kills - 2 * (kills // 3)},
                             deploy_args(cluster),
                             random.Random(int(os.environ.get("BENCH_SEED", "1"))))
        print(json.dumps({"bench": "data_kill", "kills": fig.kills, "reruns": fig.reruns,
                          "mismatches": len(fig.mismatches), "rows": fig.rows, "seconds": fig.seconds,
                          "details": fig.mismatches[:5]}))
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
