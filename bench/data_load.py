"""Benchmark: vtflow's data loader against the mysql command-line client, same files, same server.

Prints one JSON line:
{"bench":"data_load","rows":..,"rows_per_s":{"vtflow_single":..,"mysql_single":..,"vtflow_extended":..,"mysql_extended":..,"vtflow_csv":..},"ratio_single":..,"ratio_extended":..,"ratio_csv":..}

(a) "single": one row per INSERT, the upstream commerce style, scaled to ROWS rows;
(b) "extended": the same rows as extended INSERTs of 1000 rows (mysqldump's style);
(c) "csv": the same rows as a CSV file for ``load_csv`` (the mysql client has no CSV path through
    vtgate: LOAD DATA is refused), so ratio_csv compares it with the client on the extended dump.
The server is a throwaway MariaDB (vtgate speaks its protocol; the loader sends only what vtgate
accepts). Each loader gets a fresh database with the same table; figures are rows per second of
wall time (reading the file included), the median of REPEAT runs. ratio_* = vtflow / mysql.
Each vtflow run also checks its per-table count against the server's.
"""

from __future__ import annotations

import json
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


def main() -> None:
    import pymysql

    from tasks.data import load_csv, load_sql

    db = MariaDB(root=Path(tempfile.mkdtemp(prefix="vtflow-bench-mariadb-")), port=free_port()).start()
    work = Path(tempfile.mkdtemp(prefix="vtflow-bench-data-"))
    try:
        single = work / "single.sql"
        extended = work / "extended.sql"
        table = work / "corder.csv"
        values = [f"('customer{i}@example.com', 'SKU-{i % 1000:04d}', {i % 997})" for i in range(ROWS)]
        single.write_text("".join(f"insert into corder(email, sku, price) values{v};\n" for v in values))
        extended.write_text("".join("insert into corder(email, sku, price) values" + ",".join(values[i:i + 1000]) + ";\n"
                                    for i in range(0, ROWS, 1000)))
        table.write_text("email,sku,price\n" + "".join(f"customer{i}@example.com,SKU-{i % 1000:04d},{i % 997}\n"
                                                         for i in range(ROWS)))

        def fresh() -> str:
            name = f"b{uuid.uuid4().hex[:8]}"
            conn = pymysql.connect(host=db.host, port=db.port, user=db.user, password=db.password, autocommit=True)
            with conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE {name}")
                cur.execute(f"CREATE TABLE {name}.corder (order_id BIGINT AUTO_INCREMENT PRIMARY KEY, "
                            "email VARBINARY(128), sku VARBINARY(128), price BIGINT)")
            conn.close()
            return name

        def count(name: str) -> int:
            conn = pymysql.connect(host=db.host, port=db.port, user=db.user, password=db.password, database=name)
            with conn.cursor() as cur:
                cur.execute("SELECT COUNT(*) FROM corder")
                n = cur.fetchone()[0]
            conn.close()
            return n

        def vtflow_rate(path: Path) -> float:
            name = fresh()
            connect = lambda ks: pymysql.connect(host=db.host, port=db.port, user=db.user,  # noqa: E731
                                                 password=db.password, database=ks, autocommit=False)
            t = time.perf_counter()
            if path.suffix == ".csv":
                result = load_csv(connect, name, "corder", path.read_text(), str(path))
            else:
                result = load_sql(connect, name, path.read_text(), str(path))
            wall = time.perf_counter() - t
            assert count(name) == ROWS and result.tables == {"corder": ROWS}, result
            return ROWS / wall

        def mysql_rate(path: Path) -> float:
            name = fresh()
            t = time.perf_counter()
            with open(path, "rb") as f:
                subprocess.run(["mariadb", "-h", db.host, "-P", str(db.port), "-u", db.user, f"-p{db.password}", name],
                               stdin=f, check=True, capture_output=True)
            wall = time.perf_counter() - t
            assert count(name) == ROWS
            return ROWS / wall

        rates = {
            "vtflow_single": statistics.median(vtflow_rate(single) for _ in range(REPEAT)),
            "mysql_single": statistics.median(mysql_rate(single) for _ in range(REPEAT)),
            "vtflow_extended": statistics.median(vtflow_rate(extended) for _ in range(REPEAT)),
            "mysql_extended": statistics.median(mysql_rate(extended) for _ in range(REPEAT)),
            "vtflow_csv": statistics.median(vtflow_rate(table) for _ in range(REPEAT)),
        }
    finally:
        db.stop()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(db.root, ignore_errors=True)
        shutil.rmtree(STATE, ignore_errors=True)
    print(json.dumps({"bench": "data_load", "rows": ROWS, "rows_per_s": {k: round(v) for k, v in rates.items()},
                      "ratio_single": round(rates["vtflow_single"] / rates["mysql_single"], 2),
                      "ratio_extended": round(rates["vtflow_extended"] / rates["mysql_extended"], 2),
                      "ratio_csv": round(rates["vtflow_csv"] / rates["mysql_extended"], 2)}))


if __name__ == "__main__":
    main()
