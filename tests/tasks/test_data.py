"""tasks/data.py: batching and counting are pure; loading runs against a real MariaDB (vtgate's
protocol), including a loader killed half-way, a connection killed mid-batch, and re-runs."""

import contextvars
import re
import signal
import subprocess
import sys
import time
import uuid
import zlib
from pathlib import Path

import pymysql
import pytest

from blocks.mysql import MySQLCredentials
from tasks.data import (CHECKPOINT_TABLE, PART_TABLE, coalesce, connector, csv_rows, expected_rows, load_csv, load_sql)
from tasks.datafile import csv_batches, csv_records
from tasks.sqlscript import split
from vtflow.errors import ConfigError, PermanentError, TransientError
from helpers import EXAMPLES
from testbed import free_port

REPO = Path(__file__).resolve().parents[2]
UPSTREAM_DATA = EXAMPLES / "insert_commerce_data.sql"


# --- pure: batches and counts ---------------------------------------------------------------

def test_upstream_inserts_become_one_batch_per_table():
    batches = coalesce(split(UPSTREAM_DATA.read_text(), "data.sql"))
    assert [(b.rows, b.sql.split("(")[0], b.where, b.table) for b in batches] == [
        (5, "insert into customer", "data.sql:1", "customer"), (2, "insert into product", "data.sql:6", "product"),
        (5, "insert into corder", "data.sql:8", "corder")]
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


def test_table_names_keep_their_case_and_quoting_does_not_split_a_table():
    # MySQL table names are case-sensitive on Linux: T and t are two tables, never one batch
    text = "insert into T(a) values (1);insert into t(a) values (2);insert into `t` (a) values (3);"
    batches = coalesce(split(text, "f.sql"))
    assert [(b.table, b.rows, b.sql) for b in batches] == [
        ("T", 1, "insert into T(a) values (1)"), ("t", 2, "insert into t(a) values (2), (3)")]


def test_large_inserts_pass_through_unscanned_grouped_per_table_up_to_max_bytes():
    big = [f"insert into t (v) values {','.join(f'({i * 100 + j + 10000})' for j in range(100))}" for i in range(5)]
    text = ";\n".join(big[:3] + ["insert into t (v) values (7)", big[3], "insert into u (v) values (1),(2)", big[4]]) + ";\n"
    size = len(big[0])
    batches = coalesce(split(text, "p.sql"), pass_through_bytes=size - 10, max_bytes=2 * size + 10)
    assert [(b.rows, b.table, b.wheres) for b in batches] == [
        (None, "t", ("p.sql:1", "p.sql:2")),   # rows counted by the server; two fit in max_bytes
        (None, "t", ("p.sql:3",)),
        (1, "t", ("p.sql:4",)),
        (None, "t", ("p.sql:5",)),
        (2, "u", ("p.sql:6",)),
        (None, "t", ("p.sql:7",)),
    ]
    assert batches[0].statements == (big[0], big[1])   # sent exactly as written


def test_expected_rows_of_the_upstream_file():
    assert expected_rows(UPSTREAM_DATA.read_text(), "insert_commerce_data.sql") == {"customer": 5, "product": 2, "corder": 5}


def test_expected_rows_counts_tuples_the_way_the_server_receives_them():
    text = ("insert into `Orders` (a, b) values ('x,(y)', 1), ('it''s', 2),\n('back\\'slash),(', 3);\n"
            "INSERT IGNORE INTO orders VALUES (concat('a', lower('B')), 1), (now(), 2);\n"
            "insert into shop.`line items` values (1);\n"
            "insert into orders values (9) on duplicate key update b = 1;\n"   # only the server knows
            "insert into orders select * from other;\n"
            "update orders set b = 2;\n"
            "insert into Orders (a, b) values " + ",".join(f"('v{i}', {i})" for i in range(5000)) + ";\n")
    assert expected_rows(text, "f.sql") == {"Orders": 5003, "orders": 2, "shop.line items": 1}


def test_csv_rows_and_batches_bind_values_with_null_and_quoting():
    text = 'id,name,note\n1,"Doe, Jane","line one\nline two"\n\n2,Zoë,\\N\n3,"say ""hi""",\n'
    assert csv_rows(text, "p.csv") == 3
    batches = list(csv_batches([text.encode()], "people", "p.csv", max_rows=2))
    assert [(b.rows, b.where) for b in batches] == [(2, "p.csv:2"), (1, "p.csv:6")]
    assert [p.decode() for p in batches[0].payloads()] == [
        "INSERT INTO `people` (`id`, `name`, `note`) VALUES ('1','Doe, Jane','line one\\nline two'),('2','Zoë',NULL)"]
    assert [p.decode() for p in batches[1].payloads()] == [
        "INSERT INTO `people` (`id`, `name`, `note`) VALUES ('3','say \"hi\"','')"]


@pytest.mark.parametrize("text,where,problem", [
    ("id,full name\n1,a\n", "h.csv:1", "header column 'full name' is not a plain identifier"),
    ("id,`x`\n1,a\n", "h.csv:1", "header column '`x`' is not a plain identifier"),
    ("id,id\n1,2\n", "h.csv:1", "names a column twice"),
    ("", "h.csv:1", "the file is empty"),
    ('id,v\n1,"two\nlines"\n2,b,extra\n', "h.csv:4", "the row has 3 fields, the header 2"),
    ("id,v\n1,a\n2\n", "h.csv:3", "the row has 1 fields, the header 2"),
    ("id,v\n1,a\n2," + "x" * 200_000 + "\n", "h.csv:3", "field larger than field limit"),
    # the file ends inside a quoted field: named where the field opens, not swallowed as one value
    ('id,v\n1,"open\n2,b\n3,c\n', "h.csv:2", "a quoted field opens here and is never closed"),
    ('id,v,w\n1,a,b\n2,"x""\n3,c,d\n', "h.csv:3", "a quoted field opens here and is never closed"),
    ('id,v\r\n1,a\r\n2,"\r\n', "h.csv:3", "a quoted field opens here and is never closed"),
])
def test_bad_csv_names_file_line_and_the_fix(text, where, problem):
    with pytest.raises(ConfigError) as e:
        csv_rows(text, "h.csv")
    assert str(e.value).startswith(f"{where}: ") and problem in str(e.value) and "Fix:" in str(e.value)


def test_csv_with_an_unterminated_quote_is_refused_by_the_deploys_input_check(tmp_path):
    from tasks.data import DataFile, read_files
    bad = tmp_path / "t.csv"
    bad.write_text("id,v\n" + "".join(f"{i},x\n" for i in range(100)) + '100,"never closed\n' +
                   "".join(f"{i},x\n" for i in range(101, 150_000)))
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(bad))}:102: a quoted field opens here and is never closed"):
        read_files([DataFile(source=str(bad))])
    closed = tmp_path / "u.csv"
    closed.write_text('id,v\n1,""\n2,"a ""b"""\n3,"x\ny"\n')
    assert read_files([DataFile(source=str(closed))]).rows == {"commerce.u": 3}


# --- properties: generated CSV files read back as the rows that went in ---------------------

from hypothesis import given, settings, strategies as st  # noqa: E402

# any text but the two characters \N, which mean NULL however they are quoted (MySQL's convention)
_field = st.one_of(st.none(), st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=10)
                   .filter(lambda v: v != "\\N"))


def _csv_field(v):
    """RFC 4180 quoting: fields with a comma, quote or line break (and empty ones) quoted."""
    if v is None:
        return "\\N"
    if v == "" or any(c in v for c in ',"\r\n'):
        return '"' + v.replace('"', '""') + '"'
    return v


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 4).flatmap(lambda n: st.lists(st.lists(_field, min_size=n, max_size=n), max_size=8)),
       st.sampled_from(["\n", "\r\n"]))
def test_generated_csv_reads_back_as_its_rows(rows, eol):
    width = len(rows[0]) if rows else 1
    text = eol.join([",".join(f"c{i}" for i in range(width))] + [",".join(map(_csv_field, r)) for r in rows]) + eol
    # read in pieces of 3 bytes: records, quotes and UTF-8 characters cut anywhere
    data = text.encode()
    records = list(csv_records((data[i:i + 3] for i in range(0, len(data), 3)), "g.csv"))[1:]
    assert [tuple(None if f == "\\N" else f.encode("latin-1").decode() for f in r) for _, r in records] == \
        [tuple(r) for r in rows]
    assert csv_rows(text, "g.csv") == len(rows)


@settings(max_examples=150, deadline=None)
@given(st.text(st.sampled_from(list('ab,"\n\r\\')), max_size=30))
def test_any_csv_reads_or_fails_with_a_clear_error(text):
    try:
        rows = csv_rows("a,b\n" + text, "any.csv")
    except ConfigError as e:
        assert str(e).startswith("any.csv:") and "Fix:" in str(e)
        return
    assert rows >= 0


def test_csv_table_name_must_be_an_identifier():
    with pytest.raises(ConfigError, match=r"h.csv: table name 'x; drop table y' is not a plain identifier"):
        list(csv_batches([b"id\n1\n"], "x; drop table y", "h.csv"))


# --- against the session's MariaDB ----------------------------------------------------------

@pytest.fixture
def database(mariadb):
    name = f"load{uuid.uuid4().hex[:8]}"
    conn = pymysql.connect(host=mariadb.host, port=mariadb.port, user=mariadb.user, password=mariadb.password, autocommit=True)
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    conn.close()

    # the loader's connections are the product's own (what load_data opens), never the test's
    loader = connector(MySQLCredentials(user=mariadb.user, password=mariadb.password), mariadb.host, mariadb.port)

    def connect(db=name):
        return loader(db)
    connect.name = name
    connect.raw = lambda: pymysql.connect(host=mariadb.host, port=mariadb.port, user=mariadb.user,
                                          password=mariadb.password, database=name, autocommit=True, charset="utf8mb4")
    return connect


def query(connect, sql):
    """The test's own reads and DDL, on a connection of its own."""
    conn = connect.raw()
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall()
    finally:
        conn.close()


def has_checkpoint(database) -> bool:
    return bool(query(database, f"SHOW TABLES LIKE '{CHECKPOINT_TABLE}'"))


def batches_done(database) -> int:
    """Batches the checkpoints say are loaded: the segments' rows while a load runs, the file's after."""
    if not has_checkpoint(database) or not query(database, f"SHOW TABLES LIKE '{PART_TABLE}'"):
        return 0
    parts = query(database, f"SELECT COALESCE(SUM(batches_done), 0) FROM `{PART_TABLE}`")[0][0]
    files = query(database, f"SELECT COALESCE(SUM(batches_done), 0) FROM `{CHECKPOINT_TABLE}`")[0][0]
    return int(parts) + int(files)


def test_upstream_data_loads_once_with_its_rows_per_table(database):
    conn = database.raw()
    with conn.cursor() as cur:
        for st in split((EXAMPLES / "create_commerce_schema.sql").read_text(), "schema.sql"):
            cur.execute(st.sql)
    conn.close()
    text = UPSTREAM_DATA.read_text()
    first = load_sql(lambda ks: database(ks), database.name, text, "insert_commerce_data.sql")
    assert (first.rows, first.batches, first.skipped_batches, first.changed) == (12, 3, 0, True)
    assert first.tables == {"customer": 5, "product": 2, "corder": 5} == expected_rows(text, "x.sql")
    again = load_sql(lambda ks: database(ks), database.name, text, "insert_commerce_data.sql")
    assert (again.rows, again.skipped_batches, again.changed) == (12, 3, False)
    assert again.tables == first.tables, "skipped batches still count: the file holds them"
    assert query(database, "SELECT (SELECT COUNT(*) FROM customer), (SELECT COUNT(*) FROM product), "
                           "(SELECT COUNT(*) FROM corder)") == ((5, 2, 5),)


def test_a_bad_statement_names_its_place_and_keeps_what_came_before(database):
    query(database, "CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(20))")
    text = "insert into t(v) values ('a');\nupdate nope set x=1;\ninsert into t(v) values ('b');\n"
    with pytest.raises(PermanentError, match=r"data f.sql:2: the server refused the statement: .*nope") as e:
        load_sql(lambda ks: database(ks), database.name, text, "f.sql")
    assert not isinstance(e.value, TransientError)
    assert query(database, "SELECT v FROM t") == (("a",),)


def test_the_connection_opens_in_the_callers_context_even_for_a_file_without_rows(database):
    run = contextvars.ContextVar("run")   # Prefect keeps its run context in context variables
    run.set("run-1")
    seen = []

    def connect(ks):
        seen.append(run.get(None))
        return database(ks)
    result = load_sql(connect, database.name, "-- nothing to load\n", "empty.sql")
    assert seen == ["run-1"] and (result.rows, result.batches, result.changed, result.tables) == (0, 0, False, {})


def test_a_switch_to_another_keyspace_is_refused_before_anything_is_sent(database):
    query(database, "CREATE TABLE t (v INT)")
    with pytest.raises(ConfigError, match=r"f.sql:2: switches to keyspace 'other/0'"):
        load_sql(lambda ks: database(ks), database.name, "insert into t values (1);\nuse other/0\n", "f.sql")
    assert not has_checkpoint(database) and query(database, "SELECT COUNT(*) FROM t") == ((0,),)


def test_progress_is_logged_at_most_every_interval_and_once_at_the_end(database):
    query(database, "CREATE TABLE t (v INT)")
    text = "".join(f"insert into t values ({i});\n" for i in range(10))
    lines = []
    load_sql(lambda ks: database(ks), database.name, text, "f.sql", log=lines.append, max_rows=4, progress_every_s=0)
    assert [re.sub(r"\d+ rows/s(, about \d+ s left)?", "R rows/s", m) for m in lines[:3]] == [
        "f.sql: 4 rows, 1/3 batches, 40%, R rows/s", "f.sql: 8 rows, 2/3 batches, 80%, R rows/s",
        "f.sql: 10 rows, 3/3 batches, 100%, R rows/s"]
    assert re.fullmatch(r"f\.sql: 10 rows loaded in \d+\.\d\d s \(\d+ rows/s\)", lines[3]) and len(lines) == 4
    quiet = []
    result = load_sql(lambda ks: database(ks), database.name, text + "insert into t values (10);", "g.sql",
                      log=quiet.append, max_rows=4, progress_every_s=3600)
    assert result.rows == 11 and len(quiet) == 1 and quiet[0].startswith("g.sql: 11 rows loaded in ")


def test_csv_loads_nulls_quoted_commas_newlines_and_unicode_once(database):
    query(database, "CREATE TABLE people (id INT PRIMARY KEY, name VARCHAR(40), note TEXT, score INT) CHARSET utf8mb4")
    text = ('id,name,note,score\n'
            '1,"Doe, Jane","first line\nsecond, line",10\n'
            '2,Zoë 🚀,\\N,\\N\n'
            '3,"say ""hi""",,30\n'
            '\n'
            '4,Łukasz,"ends with a quote """,40\n')
    result = load_csv(lambda ks: database(ks), database.name, "people", text, "people.csv", max_rows=2)
    assert (result.rows, result.batches, result.tables, result.changed) == (4, 2, {"people": 4}, True)
    assert query(database, "SELECT id, name, note, score FROM people ORDER BY id") == (
        (1, "Doe, Jane", "first line\nsecond, line", 10), (2, "Zoë 🚀", None, None),
        (3, 'say "hi"', "", 30), (4, "Łukasz", 'ends with a quote "', 40))
    again = load_csv(lambda ks: database(ks), database.name, "people", text, "people.csv", max_rows=2)
    assert (again.changed, again.skipped_batches, again.tables) == (False, 2, {"people": 4})
    assert query(database, "SELECT COUNT(*) FROM people") == ((4,),)


def test_the_same_csv_into_two_tables_is_two_loads(database):
    query(database, "CREATE TABLE a (v INT)")
    query(database, "CREATE TABLE b (v INT)")
    for table in ("a", "b"):
        assert load_csv(lambda ks: database(ks), database.name, table, "v\n1\n2\n", "v.csv").changed
    assert query(database, "SELECT (SELECT COUNT(*) FROM a), (SELECT COUNT(*) FROM b)") == ((2, 2),)


def test_csv_with_a_bad_row_loads_nothing(database):
    query(database, "CREATE TABLE t (id INT, v VARCHAR(10))")
    text = "id,v\n" + "".join(f"{i},x{i}\n" for i in range(50)) + "50,x,oops\n"
    with pytest.raises(ConfigError, match=r"^bad.csv:52: the row has 3 fields, the header 2\..* Fix: quote fields"):
        load_csv(lambda ks: database(ks), database.name, "t", text, "bad.csv", max_rows=10)
    assert query(database, "SELECT COUNT(*) FROM t") == ((0,),) and not has_checkpoint(database)


def test_csv_refused_by_the_server_names_the_batch_and_keeps_the_batches_before(database):
    query(database, "CREATE TABLE t (id INT PRIMARY KEY)")
    with pytest.raises(PermanentError, match=r"data dup.csv:4: the server refused the statement: .*Duplicate entry '1'"):
        load_csv(lambda ks: database(ks), database.name, "t", "id\n1\n2\n1\n", "dup.csv", max_rows=2)
    assert query(database, "SELECT id FROM t ORDER BY id") == ((1,), (2,))
    with pytest.raises(PermanentError, match=r"data col.csv:2: the server refused the statement: .*Unknown column 'nope'"):
        load_csv(lambda ks: database(ks), database.name, "t", "nope\n5\n", "col.csv")


class KilledBeforeCommit:
    """A real connection that the server kills (KILL CONNECTION from another session) just
    before its n-th commit: the batch was sent and never committed, as when vtgate restarts."""

    def __init__(self, conn, kill, n):
        self._conn, self._kill, self._n, self.commits = conn, kill, n, 0

    def __getattr__(self, name):
        return getattr(self._conn, name)

    def commit(self):
        self.commits += 1
        if self.commits == self._n:
            self._kill(self._conn.thread_id())
        return self._conn.commit()


def kill_connection(database):
    def kill(thread_id):
        query(database, f"KILL CONNECTION {thread_id}")
        deadline = time.monotonic() + 10
        while query(database, f"SELECT COUNT(*) FROM information_schema.processlist WHERE id = {thread_id}")[0][0]:
            assert time.monotonic() < deadline, "the server did not end the connection"
            time.sleep(0.01)
    return kill


def test_large_inserts_pass_through_and_a_lost_connection_resumes_exactly_once(database):
    query(database, "CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY, a INT, b INT, v VARCHAR(40))")
    def values(s):
        return ",".join(f"({s}, {j}, 'value {s}-{j:04d}')" for j in range(2000))
    statements = [f"insert into t (a, b, v) values {values(s)}" for s in range(6)]
    assert all(len(s) > 32 << 10 for s in statements), "each is large enough to pass through"
    text = ";\n".join(statements) + ";\n"
    # three batches of two statements; the connection dies after the first batch's commit
    kill = kill_connection(database)
    with pytest.raises(TransientError, match=r"data big.sql:3: the connection to the server failed: .*(2013|2006)"):
        load_sql(lambda ks: KilledBeforeCommit(database(ks), kill, 3), database.name, text, "big.sql", max_bytes=150_000)
    assert query(database, "SELECT COUNT(*) FROM t") == ((4000,),), "the first batch only: the second never committed"
    assert query(database, f"SELECT batches_done, rows_done, total_batches FROM `{CHECKPOINT_TABLE}`") == ((0, 0, 3),)
    assert query(database, f"SELECT part, batches_done, rows_done FROM `{PART_TABLE}`") == ((0, 1, 4000),), \
        "the file is one segment, one batch of it done"

    result = load_sql(lambda ks: database(ks), database.name, text, "big.sql", max_bytes=150_000)
    assert (result.rows, result.batches, result.skipped_batches) == (12000, 3, 1)
    assert result.tables == {"t": 12000} == expected_rows(text, "big.sql")
    assert query(database, f"SELECT batches_done, rows_done FROM `{CHECKPOINT_TABLE}`") == ((3, 12000),), \
        "the server's count"
    assert query(database, f"SELECT COUNT(*) FROM `{PART_TABLE}`") == ((0,),), "a finished file keeps one row"
    assert query(database, "SELECT COUNT(*), COUNT(DISTINCT v) FROM t") == ((12000, 12000),)


def test_an_unreachable_server_is_transient():
    port = free_port()
    with pytest.raises(TransientError, match=r"data f.sql: the connection to the server failed: .*2003"):
        load_sql(lambda ks: pymysql.connect(host="127.0.0.1", port=port, user="u", password="p", database=ks),
                 "ks", "insert into t values (1);", "f.sql")


def test_another_batch_size_cannot_resume_a_partial_load(database):
    query(database, "CREATE TABLE t (v INT)")
    text = "".join(f"insert into t values ({i});\n" for i in range(10))
    kill = kill_connection(database)
    with pytest.raises(TransientError):
        load_sql(lambda ks: KilledBeforeCommit(database(ks), kill, 3), database.name, text, "f.sql", max_rows=3)
    with pytest.raises(ConfigError, match=r"data f.sql: was partly loaded in 4 batches; this run cuts it into 2\. "
                                          r"Fix: re-run with the max_rows and max_bytes"):
        load_sql(lambda ks: database(ks), database.name, text, "f.sql", max_rows=5)
    assert load_sql(lambda ks: database(ks), database.name, text, "f.sql", max_rows=3).skipped_batches == 1
    assert query(database, "SELECT COUNT(*), SUM(v) FROM t") == ((10, 45),)


LOADER = r'''
import sys
sys.path.insert(0, sys.argv[1])
from blocks.mysql import MySQLCredentials
from tasks.data import connector, load_csv, load_sql
kind, host, port, user, pw, db, path = sys.argv[2:9]
connect = connector(MySQLCredentials(user=user, password=pw), host, int(port))   # the product's connection
text = open(path).read()
if kind == "sql":
    load_sql(connect, db, text, path, max_rows=100)
else:
    load_csv(connect, db, "t", text, path, max_rows=100)
'''


def kill_half_way_then_rerun(database, mariadb, kind, path, load):
    child = subprocess.Popen([sys.executable, "-c", LOADER, str(REPO), kind, mariadb.host, str(mariadb.port), mariadb.user,
                              mariadb.password, database.name, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    done = 0
    while time.monotonic() < deadline and child.poll() is None:
        done = batches_done(database)
        if done >= 30:
            break
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert 0 < done < 1000, "the loader must be killed half-way"
    partial = query(database, "SELECT COUNT(*) FROM t")[0][0]
    assert 0 < partial < 100000
    result = load(path.read_text(), str(path))
    assert result.skipped_batches * 100 == partial, "the re-run starts exactly where the commits stopped"
    return result


def test_killed_half_way_then_rerun_ends_with_every_row_exactly_once(database, mariadb, tmp_path):
    query(database, "CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(40))")
    n = 100000
    values = [f"row-{i}-{'x' * (i % 7)}" for i in range(n)]
    path = tmp_path / "big.sql"
    path.write_text("".join(f"insert into t(v) values ('{v}');\n" for v in values))
    result = kill_half_way_then_rerun(database, mariadb, "sql", path, lambda text, source: load_sql(
        lambda ks: database(ks), database.name, text, source, max_rows=100))
    assert result.tables == {"t": n}
    count, checksum = query(database, "SELECT COUNT(*), SUM(CRC32(v)) FROM t")[0]
    assert count == n
    assert int(checksum) == sum(zlib.crc32(v.encode()) for v in values)
    assert query(database, "SELECT COUNT(DISTINCT v) FROM t")[0][0] == n


def test_csv_killed_half_way_then_rerun_ends_with_every_row_exactly_once(database, mariadb, tmp_path):
    query(database, "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(40), note VARCHAR(20))")
    n = 100000
    rows = [(i, f"row {i}, \"q\" {'x' * (i % 7)}", None if i % 5 == 0 else f"n{i}") for i in range(n)]
    path = tmp_path / "big.csv"
    path.write_text("id,v,note\n" + "".join(f'{i},"{v.replace(chr(34), chr(34) * 2)}",{note or chr(92) + "N"}\n'
                                             for i, v, note in rows))
    result = kill_half_way_then_rerun(database, mariadb, "csv", path, lambda text, source: load_csv(
        lambda ks: database(ks), database.name, "t", text, source, max_rows=100))
    assert result.tables == {"t": n} and result.rows == n == csv_rows(path.read_text(), "big.csv")
    count, distinct, nulls, checksum = query(database, "SELECT COUNT(*), COUNT(DISTINCT id), SUM(note IS NULL), "
                                                       "SUM(CRC32(v)) FROM t")[0]
    assert (count, distinct, int(nulls)) == (n, n, n // 5)
    assert int(checksum) == sum(zlib.crc32(v.encode()) for _, v, _ in rows)


# --- streams: files, gzip, URLs, several connections ------------------------------------------

from tasks.data import DataFile, load, plan_file  # noqa: E402


def many_tables(path: Path, tables: int, rows: int, barrier_after: int | None = None, gz: bool = False) -> Path:
    """A dump in mysqldump's order (each table's rows together), a statement of another kind
    between two tables, and seq values that say the file's order."""
    import gzip
    parts = []
    for t in range(tables):
        parts += [f"insert into t{t}(seq, v) values ({i}, 'v{t}-{i}');\n" for i in range(rows)]
        if barrier_after is not None and t == barrier_after:
            parts.append("insert into marks(note) select 'between' from dual;\n")
    text = "".join(parts).encode()
    path.write_bytes(gzip.compress(text) if gz else text)
    return path


def make_tables(database, tables: int) -> None:
    for t in range(tables):
        query(database, f"CREATE TABLE t{t} (id INT AUTO_INCREMENT PRIMARY KEY, seq INT NOT NULL, v VARCHAR(20))")
    query(database, "CREATE TABLE marks (id INT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(10), at_rows INT)")


def check_tables(database, tables: int, rows: int) -> None:
    for t in range(tables):
        count, distinct, ordered = query(database, f"SELECT COUNT(*), COUNT(DISTINCT seq), SUM(seq = n - 1) FROM "
                                                   f"(SELECT seq, ROW_NUMBER() OVER (ORDER BY id) n FROM t{t}) x")[0]
        assert (count, distinct, int(ordered)) == (rows, rows, rows), f"t{t}: every row once, ids in the file's order"


def test_a_gzip_dump_of_many_tables_loads_over_four_connections_exactly_once(database, tmp_path):
    make_tables(database, 6)
    path = many_tables(tmp_path / "dump.sql.gz", 6, 700, barrier_after=3, gz=True)   # 4 tables, then 2
    plan = plan_file(DataFile(keyspace=database.name, source=str(path)))
    assert plan.cut.tables == {f"t{t}": 700 for t in range(6)}
    connections = set()

    def connect(ks):
        conn = database(ks)
        connections.add(conn.thread_id())
        return conn
    lines = []
    result = load(connect, plan, lines.append, parallel=4)
    assert (result.rows, result.tables, result.changed) == (4200, {f"t{t}": 700 for t in range(6)}, True)
    assert len(connections) == 4 and "4 connections" in lines[-1]
    check_tables(database, 6, 700)
    assert query(database, "SELECT COUNT(*) FROM marks") == ((1,),)
    again = load(connect, plan, parallel=4)
    assert (again.changed, again.skipped_batches, again.rows) == (False, again.batches, 4200)


def test_a_lost_connection_is_retried_and_the_checkpoint_says_whether_the_batch_committed(database, tmp_path):
    make_tables(database, 2)
    path = many_tables(tmp_path / "d.sql", 2, 3000)
    plan = plan_file(DataFile(keyspace=database.name, source=str(path)))
    kill = kill_connection(database)
    lines = []
    # every connection is killed before its third commit: the batch in flight is rolled back
    result = load(lambda ks: KilledBeforeCommit(database(ks), kill, 3), plan, lines.append, parallel=2, retries=5,
                  progress_every_s=3600)
    assert result.rows == 6000 and any("Retrying (1 of 5)" in m for m in lines)
    check_tables(database, 2, 3000)


def test_a_load_killed_with_sigkill_over_several_connections_resumes_exactly_once(database, mariadb, tmp_path):
    make_tables(database, 4)
    path = many_tables(tmp_path / "p.sql.gz", 4, 25000, gz=True)
    child = subprocess.Popen([sys.executable, "-c", PARALLEL_LOADER, str(REPO), mariadb.host, str(mariadb.port),
                              mariadb.user, mariadb.password, database.name, str(path)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and child.poll() is None and batches_done(database) < 50:
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    child.wait()
    done = batches_done(database)
    assert 0 < done < 1000, "killed half-way"
    partial = query(database, "SELECT " + " + ".join(f"(SELECT COUNT(*) FROM t{t})" for t in range(4)))[0][0]
    assert partial == done * 100, "every committed batch, and nothing else"
    plan = plan_file(DataFile(keyspace=database.name, source=str(path)))
    plan = type(plan)(plan.keyspace, plan.data, plan_with_rows(plan, 100).cut, None, 100)
    result = load(lambda ks: database(ks), plan, parallel=3)
    assert result.skipped_batches == done and result.rows == 100000
    check_tables(database, 4, 25000)


def plan_with_rows(plan, max_rows):
    from tasks.data import plan_sql
    return plan_sql(plan.data, plan.keyspace, max_rows=max_rows)


PARALLEL_LOADER = r'''
import sys
sys.path.insert(0, sys.argv[1])
from blocks.mysql import MySQLCredentials
from tasks.data import connector, load, plan_sql
from vtflow.sources import open_data
host, port, user, pw, db, path = sys.argv[2:8]
connect = connector(MySQLCredentials(user=user, password=pw), host, int(port))   # the product's connection
load(connect, plan_sql(open_data(path), db, max_rows=100), parallel=4)
'''


def test_a_checkpoint_of_an_older_vtflow_resumes_where_it_stopped(database):
    """Before segments, one row counted the batches done in the file's order."""
    query(database, "CREATE TABLE t (v INT)")
    query(database, "CREATE TABLE u (v INT)")
    text = "".join(f"insert into t values ({i});\n" for i in range(10)) + "".join(
        f"insert into u values ({i});\n" for i in range(10))
    from tasks.datafile import cut_sql
    digest = cut_sql([text.encode()], "f.sql", None).digest
    query(database, f"CREATE TABLE `{CHECKPOINT_TABLE}` (digest CHAR(64) PRIMARY KEY, source VARCHAR(1024) NOT NULL, "
                    "batches_done INT NOT NULL, rows_done BIGINT NOT NULL, total_batches INT NOT NULL)")
    # the older loader had committed 3 of 4 batches of 5 rows: t whole, u's first half
    query(database, f"INSERT INTO `{CHECKPOINT_TABLE}` VALUES ('{digest}', 'f.sql', 3, 15, 4)")
    query(database, "INSERT INTO t VALUES " + ",".join(f"({i})" for i in range(10)))
    query(database, "INSERT INTO u VALUES " + ",".join(f"({i})" for i in range(5)))
    # this vtflow is killed too, after the last batch, before it marks the file loaded: the
    # older count (t whole) must still hold beside the newer one (u)
    kill = kill_connection(database)
    with pytest.raises(TransientError):
        load_sql(lambda ks: KilledBeforeCommit(database(ks), kill, 3), database.name, text, "f.sql", max_rows=5)
    result = load_sql(lambda ks: database(ks), database.name, text, "f.sql", max_rows=5)
    assert (result.skipped_batches, result.rows, result.tables) == (4, 20, {"t": 10, "u": 10})
    assert query(database, "SELECT COUNT(*), SUM(v) FROM u") == ((10, 45),)
    assert query(database, "SELECT COUNT(*), SUM(v) FROM t") == ((10, 45),)


def test_a_url_is_downloaded_once_as_a_stream_and_a_changed_file_is_refused(database, tmp_path):
    import functools
    import http.server
    import threading
    query(database, "CREATE TABLE t (v INT)")
    (tmp_path / "d.csv.gz").write_bytes(__import__("gzip").compress(b"v\n" + b"".join(b"%d\n" % i for i in range(5000))))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/d.csv.gz"
        plan = plan_file(DataFile(keyspace=database.name, source=url, table="t"))
    finally:
        server.shutdown()
    spooled = plan.data.path
    assert plan.cut.tables == {"t": 5000} and spooled.exists()
    assert load(lambda ks: database(ks), plan).rows == 5000, "loaded from the download, the server gone"
    local = many_tables(tmp_path / "c.sql", 1, 10)
    plan = plan_file(DataFile(keyspace=database.name, source=str(local)))
    local.write_text(local.read_text() + "insert into t0(seq, v) values (99, 'late');\n")
    with pytest.raises(ConfigError, match=r"c.sql: has changed since it was checked before step 1"):
        load(lambda ks: database(ks), plan)


@pytest.mark.parametrize("mode", ["", "NO_BACKSLASH_ESCAPES"])
def test_csv_values_come_back_as_written_in_either_quoting_mode(database, mode):
    query(database, "CREATE TABLE q (id INT PRIMARY KEY, v VARCHAR(40)) CHARSET utf8mb4")
    values = ["plain", "back\\slash", "it's", 'dq "x"', "unit\x1fsep", "nul\x00z", "ctrl-z\x1a", "é 🚀", "\\n"]
    text = "id,v\n" + "".join(f'{i},"{v.replace(chr(34), chr(34) * 2)}"\n' for i, v in enumerate(values))

    def connect(ks):
        conn = database(ks)
        with conn.cursor() as cur:
            cur.execute(f"SET SESSION sql_mode = '{mode}'")
        return conn
    load_csv(connect, database.name, "q", text, "q.csv")
    assert [v for _, v in query(database, "SELECT id, v FROM q ORDER BY id")] == values


def test_a_server_at_its_connection_limit_loads_over_the_connections_it_gives(database, mariadb, tmp_path):
    user = f"lim{uuid.uuid4().hex[:6]}"
    query(database, f"CREATE USER '{user}'@'%' IDENTIFIED BY 'pw' WITH MAX_USER_CONNECTIONS 2")
    query(database, f"GRANT ALL ON `{database.name}`.* TO '{user}'@'%'")
    try:
        make_tables(database, 4)
        plan = plan_file(DataFile(keyspace=database.name, source=str(many_tables(tmp_path / "d.sql", 4, 500))))
        limited = connector(MySQLCredentials(user=user, password="pw"), mariadb.host, mariadb.port)
        lines = []
        result = load(limited, plan, lines.append, parallel=4)
        assert result.rows == 2000
        fewer = [m for m in lines if re.search(r"one connection fewer \(connection failed \(MySQL error 1226\)", m)]
        assert len(fewer) == 2 and lines[-1].endswith(", 2 connections)"), lines
        check_tables(database, 4, 500)
    finally:
        query(database, f"DROP USER '{user}'@'%'")
