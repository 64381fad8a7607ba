"""Benchmark: vtflow's data loader against the mysql command-line client, same files, same server.

Prints one JSON line:
{"bench":"data_load","rows":..,"rows_per_s":{"vtflow_single":..,"mysql_single":..,"vtflow_extended":..,
 "mysql_extended":..,"vtflow_csv":..,"vtflow_cut":..},"ratio_single":..,"ratio_extended":..,"ratio_csv":..,
 "limit_rows_per_s":..,"ratio_to_limit":{"single":..,"extended":..,"csv":..},
 "peak_rss_mb":{"100MB":..,"1GB":..},"rss_ratio_1GB_vs_100MB":..,
 "parallel":{"tables":..,"rows":..,"vtflow_1":..,"vtflow_4":..,"clients_4":..},"parallel_ratio_vs_clients":..}

(a) "single": one row per INSERT, the upstream commerce style, ROWS rows;
(b) "extended": the same rows as extended INSERTs of 1000 rows (mysqldump's style). The mysql
    client on it is the limit: what this server takes, for any loader;
(c) "csv": the same rows as a CSV file (the mysql client has no CSV path through vtgate: LOAD
    DATA is refused), compared with the limit.
vtflow's figures are its load step (``tasks.data.load``, what deploy step 6 runs) on a file the
pre-flight has cut before step 1; "vtflow_cut" is that pre-flight's own rate on the single-row
file (read, UTF-8 check, hash, cut), which happens before anything is changed. The mysql
client's include reading the file. Figures are rows per second of wall time, the median of
REPEAT rounds (each round runs every figure once, so that the machine's other work falls on all
alike), each run into a fresh database with the same table; ratio_* = vtflow / mysql, and
ratio_to_limit = vtflow / mysql on the extended file.

Memory: a mysqldump-style file (extended INSERTs of 1000 rows) of about 100 MB and one of about
1 GB, each planned and loaded by a child process as the deploy does (``plan_file``, then ``load``
with 2 connections), peak RSS of that process (``wait4``; Python and Prefect's imports included).

Parallel: a dump of PARALLEL_TABLES tables (extended INSERTs, each table's rows together, as
mysqldump writes them) loaded by vtflow with 1 and with 4 connections, beside four mysql
clients run at once, each on a quarter of the tables (the parallel limit here).

The server is a throwaway MariaDB (vtgate speaks its protocol; the loader sends only what vtgate
accepts). Every vtflow run checks its per-table counts against the server's.
BENCH_QUICK=1 skips the 1 GB file (it takes a few minutes and about 2 GB of disk).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from benchenv import REPEAT, STATE  # noqa: E402  (first: it prepares the environment)
from testbed import MariaDB, free_port  # noqa: E402

ROWS = 200_000
PARALLEL_TABLES = 8
PARALLEL_ROWS = 50_000          # per table
TABLE_DDL = "(order_id BIGINT AUTO_INCREMENT PRIMARY KEY, email VARBINARY(128), sku VARBINARY(128), price BIGINT)"

RSS_CHILD = r'''
import os, sys
sys.path[:0] = [sys.argv[1]]
from blocks.mysql import MySQLCredentials
from tasks.data import DataFile, connector, load, plan_file
host, port, user, pw, db, path, rows = sys.argv[2:9]
connect = connector(MySQLCredentials(user=user, password=pw), host, int(port))   # the product's connection
plan = plan_file(DataFile(keyspace=db, source=path))
result = load(connect, plan, parallel=2)
assert result.rows == int(rows), result
'''


def _values(start: int, n: int) -> list[str]:
    return [f"('customer{i}@example.com', 'SKU-{i % 1000:04d}', {i % 997})" for i in range(start, start + n)]


def _extended(table: str, values: list[str]) -> str:
    return "".join(f"insert into {table}(email, sku, price) values" + ",".join(values[i:i + 1000]) + ";\n"
                   for i in range(0, len(values), 1000))


def _dump_of_size(path: Path, target_bytes: int) -> int:
    """A mysqldump-style file of about ``target_bytes``; its rows."""
    rows = 0
    with open(path, "w") as f:
        while f.tell() < target_bytes:
            f.write(_extended("corder", _values(rows, 10_000)))
            rows += 10_000
    return rows


def main() -> None:
    import pymysql

    from tasks.data import DataFile, load, plan_file
    from tasks.datafile import cut_sql
    from vtflow.sources import open_data

    db = MariaDB(root=Path(tempfile.mkdtemp(prefix="vtflow-bench-mariadb-")), port=free_port()).start()
    work = Path(tempfile.mkdtemp(prefix="vtflow-bench-data-"))
    quick = os.environ.get("BENCH_QUICK") == "1"
    try:
        single = work / "single.sql"
        extended = work / "extended.sql"
        table = work / "corder.csv"
        values = _values(0, ROWS)
        single.write_text("".join(f"insert into corder(email, sku, price) values{v};\n" for v in values))
        extended.write_text(_extended("corder", values))
        table.write_text("email,sku,price\n" + "".join(f"customer{i}@example.com,SKU-{i % 1000:04d},{i % 997}\n"
                                                         for i in range(ROWS)))

        def sql(statements: list[str], database: str | None = None):
            conn = pymysql.connect(host=db.host, port=db.port, user=db.user, password=db.password, autocommit=True,
                                   database=database)
            with conn.cursor() as cur:
                out = [cur.execute(s) and cur.fetchall() for s in statements]
            conn.close()
            return out

        def fresh(tables: list[str] = ["corder"]) -> str:  # noqa: B006
            name = f"b{uuid.uuid4().hex[:8]}"
            sql([f"CREATE DATABASE {name}"] + [f"CREATE TABLE {name}.{t} {TABLE_DDL}" for t in tables])
            return name

        def count(name: str, tables: list[str] = ["corder"]) -> int:  # noqa: B006
            return sum(r[0][0] for r in sql([f"SELECT COUNT(*) FROM {t}" for t in tables], name))

        def connector(name: str):
            return lambda ks: pymysql.connect(host=db.host, port=db.port, user=db.user, password=db.password,
                                              database=ks, autocommit=False)

        def vtflow_rate(path: Path, tables: list[str] = ["corder"], rows: int = ROWS,  # noqa: B006
                        parallel: int = 1) -> float:
            name = fresh(tables)
            plan = plan_file(DataFile(keyspace=name, source=str(path), table="corder" if path.suffix == ".csv" else None))
            t = time.perf_counter()
            result = load(connector(name), plan, parallel=parallel)
            wall = time.perf_counter() - t
            assert count(name, tables) == rows and sum(result.tables.values()) == rows, result
            sql([f"DROP DATABASE {name}"])
            return rows / wall

        def mysql_rate(paths: list[Path], tables: list[str] = ["corder"], rows: int = ROWS) -> float:  # noqa: B006
            name = fresh(tables)
            t = time.perf_counter()
            clients = [subprocess.Popen(["mariadb", "-h", db.host, "-P", str(db.port), "-u", db.user,
                                         f"-p{db.password}", name], stdin=open(p, "rb"), stdout=subprocess.DEVNULL)
                       for p in paths]
            assert all(c.wait() == 0 for c in clients)
            wall = time.perf_counter() - t
            assert count(name, tables) == rows
            sql([f"DROP DATABASE {name}"])
            return rows / wall

        def cut_rate(path: Path) -> float:
            t = time.perf_counter()
            cut = cut_sql(open_data(str(path)).chunks(), str(path), "ks")
            assert cut.tables == {"corder": ROWS}
            return ROWS / (time.perf_counter() - t)

        def medians(runs: dict) -> dict[str, float]:
            """Each figure's median; the runs interleaved (one of each per round), so that whatever
            else the machine does falls on every figure alike."""
            got: dict[str, list[float]] = {k: [] for k in runs}
            for _ in range(REPEAT):
                for k, run in runs.items():
                    got[k].append(run())
            return {k: statistics.median(v) for k, v in got.items()}

        rates = medians({
            "vtflow_single": lambda: vtflow_rate(single),
            "mysql_single": lambda: mysql_rate([single]),
            "vtflow_extended": lambda: vtflow_rate(extended),
            "mysql_extended": lambda: mysql_rate([extended]),
            "vtflow_csv": lambda: vtflow_rate(table),
            "vtflow_cut": lambda: cut_rate(single),
        })
        limit = rates["mysql_extended"]

        # memory: a child process plans and loads each dump as the deploy does
        rss: dict[str, float] = {}
        for label, size in [("100MB", 100 << 20)] + ([] if quick else [("1GB", 1 << 30)]):
            dump = work / f"dump-{label}.sql"
            rows = _dump_of_size(dump, size)
            name = fresh()
            child = subprocess.Popen([sys.executable, "-c", RSS_CHILD, str(Path(__file__).resolve().parents[1]),
                                      db.host, str(db.port), db.user, db.password, name, str(dump), str(rows)])
            _, status, usage = os.wait4(child.pid, 0)
            assert status == 0, f"the loader of the {label} dump failed"
            assert count(name) == rows
            rss[label] = usage.ru_maxrss / 1024   # kB on Linux
            sql([f"DROP DATABASE {name}"])
            dump.unlink()

        # parallel: one dump of many tables, and the same rows as four files for four clients
        tables = [f"t{i}" for i in range(PARALLEL_TABLES)]
        many = work / "many.sql"
        many.write_text("".join(_extended(t, _values(0, PARALLEL_ROWS)) for t in tables))
        quarters = []
        for q in range(4):
            part = work / f"quarter{q}.sql"
            part.write_text("".join(_extended(t, _values(0, PARALLEL_ROWS)) for t in tables[q::4]))
            quarters.append(part)
        total = PARALLEL_TABLES * PARALLEL_ROWS
        par = {"tables": PARALLEL_TABLES, "rows": total, **medians({
            "vtflow_1": lambda: vtflow_rate(many, tables, total, 1),
            "vtflow_4": lambda: vtflow_rate(many, tables, total, 4),
            "clients_4": lambda: mysql_rate(quarters, tables, total)})}
    finally:
        db.stop()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(db.root, ignore_errors=True)
        shutil.rmtree(STATE, ignore_errors=True)
    print(json.dumps({
        "bench": "data_load", "rows": ROWS, "rows_per_s": {k: round(v) for k, v in rates.items()},
        "ratio_single": round(rates["vtflow_single"] / rates["mysql_single"], 2),
        "ratio_extended": round(rates["vtflow_extended"] / rates["mysql_extended"], 2),
        "ratio_csv": round(rates["vtflow_csv"] / limit, 2),
        "limit_rows_per_s": round(limit),
        "ratio_to_limit": {k: round(rates[f"vtflow_{k}"] / limit, 2) for k in ("single", "extended", "csv")},
        "peak_rss_mb": {k: round(v, 1) for k, v in rss.items()},
        "rss_ratio_1GB_vs_100MB": round(rss["1GB"] / rss["100MB"], 2) if "1GB" in rss else None,
        "parallel": {k: round(v) for k, v in par.items()},
        "parallel_ratio_vs_clients": round(par["vtflow_4"] / par["clients_4"], 2),
    }))


if __name__ == "__main__":
    main()
