"""tasks/data.py: batching is pure; loading runs against a real MariaDB (vtgate's protocol),
including a loader killed half-way and started again."""

import signal
import subprocess
import sys
import time
import uuid
import zlib
from pathlib import Path

import pymysql
import pytest

from tasks.data import CHECKPOINT_TABLE, coalesce, load_sql
from tasks.sqlscript import split
from vtflow.errors import PermanentError
from helpers import EXAMPLES

REPO = Path(__file__).resolve().parents[2]


def test_upstream_inserts_become_one_batch_per_table():
    batches = coalesce(split((EXAMPLES / "insert_commerce_data.sql").read_text(), "data.sql"))
    assert [(b.rows, b.sql.split("(")[0], b.where) for b in batches] == [
        (5, "insert into customer", "data.sql:1"), (2, "insert into product", "data.sql:6"),
        (5, "insert into corder", "data.sql:8")]
    assert batches[0].sql.startswith("insert into customer(email) values ('alice@domain.com'), ('bob@domain.com')")


def test_batches_respect_limits_and_leave_other_statements_alone():
    text = ("insert into t(a) values (1);insert into t(a) values (2),(3);insert into t(a) values (4);"
            "update t set a=a+1;insert into t(a) values ('x),(y');"
            "insert into t(a) values (5) on duplicate key update a=5;insert into u(a) values (6);")
    batches = coalesce(split(text, "f.sql"), max_rows=3)
    assert [(b.rows, b.sql) for b in batches] == [
        (3, "insert into t(a) values (1), (2),(3)"),
        (1, "insert into t(a) values (4)"),
        (0, "update t set a=a+1"),
        (1, "insert into t(a) values ('x),(y')"),
        (0, "insert into t(a) values (5) on duplicate key update a=5"),
        (1, "insert into u(a) values (6)"),
    ]


@pytest.fixture
def database(mariadb):
    name = f"load{uuid.uuid4().hex[:8]}"
    conn = pymysql.connect(host=mariadb.host, port=mariadb.port, user=mariadb.user, password=mariadb.password, autocommit=True)
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    conn.close()

    def connect(db=name, autocommit=False):
        return pymysql.connect(host=mariadb.host, port=mariadb.port, user=mariadb.user, password=mariadb.password,
                               database=db, autocommit=autocommit)
    connect.name = name
    return connect


def query(connect, sql):
    conn = connect(autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall()
    finally:
        conn.close()


def test_upstream_data_loads_once(database):
    conn = database(autocommit=True)
    with conn.cursor() as cur:
        for st in split((EXAMPLES / "create_commerce_schema.sql").read_text(), "schema.sql"):
            cur.execute(st.sql)
    conn.close()
    text = (EXAMPLES / "insert_commerce_data.sql").read_text()
    first = load_sql(lambda ks: database(ks), database.name, text, "insert_commerce_data.sql")
    assert (first.rows, first.batches, first.skipped_batches, first.changed) == (12, 3, 0, True)
    again = load_sql(lambda ks: database(ks), database.name, text, "insert_commerce_data.sql")
    assert (again.skipped_batches, again.changed) == (3, False)
    assert query(database, "SELECT (SELECT COUNT(*) FROM customer), (SELECT COUNT(*) FROM product), "
                           "(SELECT COUNT(*) FROM corder)") == ((5, 2, 5),)


def test_a_bad_statement_names_its_place_and_keeps_what_came_before(database):
    query(database, "CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(20))")
    text = "insert into t(v) values ('a');\nupdate nope set x=1;\ninsert into t(v) values ('b');\n"
    with pytest.raises(PermanentError, match=r"data f.sql:2: the server refused the statement: .*nope"):
        load_sql(lambda ks: database(ks), database.name, text, "f.sql")
    assert query(database, "SELECT v FROM t") == (("a",),)


LOADER = r'''
import sys, pymysql
sys.path.insert(0, sys.argv[1])
from tasks.data import load_sql
host, port, user, pw, db, path = sys.argv[2:8]
connect = lambda ks: pymysql.connect(host=host, port=int(port), user=user, password=pw, database=ks, autocommit=False)
text = open(path).read()
load_sql(connect, db, text, path, max_rows=100)
'''


def test_killed_half_way_then_rerun_ends_with_every_row_exactly_once(database, mariadb, tmp_path):
    query(database, "CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(40))")
    n = 30000
    values = [f"row-{i}-{'x' * (i % 7)}" for i in range(n)]
    path = tmp_path / "big.sql"
    path.write_text("".join(f"insert into t(v) values ('{v}');\n" for v in values))
    child = subprocess.Popen([sys.executable, "-c", LOADER, str(REPO), mariadb.host, str(mariadb.port), mariadb.user,
                              mariadb.password, database.name, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    done = 0
    while time.monotonic() < deadline and child.poll() is None:
        rows = query(database, f"SELECT batches_done FROM `{CHECKPOINT_TABLE}`") if query(
            database, f"SHOW TABLES LIKE '{CHECKPOINT_TABLE}'") else ()
        done = rows[0][0] if rows else 0
        if done >= 50:
            break
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert 0 < done < n // 100, "the loader must be killed half-way"
    partial = query(database, "SELECT COUNT(*) FROM t")[0][0]
    assert 0 < partial < n

    result = load_sql(lambda ks: database(ks), database.name, path.read_text(), str(path), max_rows=100)
    assert result.skipped_batches * 100 == partial, "the re-run starts exactly where the commits stopped"
    count, checksum = query(database, "SELECT COUNT(*), SUM(CRC32(v)) FROM t")[0]
    assert count == n
    assert int(checksum) == sum(zlib.crc32(v.encode()) for v in values)
    assert query(database, "SELECT COUNT(DISTINCT v) FROM t")[0][0] == n
