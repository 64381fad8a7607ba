"""tasks/verify.py: expectations and judgements are pure; the script runner is checked against
what the real mysql client prints for the same script on the same server."""

import subprocess
import uuid

import pytest

from blocks.mysql import MySQLCredentials
from tasks.cluster import ClusterSpec, KeyspaceSpec, TabletPool, render
from helpers import IMAGES
from tasks.report import Finding
from tasks.verify import (VerifyReport, batch_result, check_vtadmin, echo_line, expected_tablets_of, markdown,
                          output_check, row_checks, run_script, tablet_checks)
from vtflow import mysql
from vtflow.errors import PermanentError


def _tablet(ks, shard, kind, state="SERVING", alias="zone1-1"):
    return {"Cell": "zone1", "Keyspace": ks, "Shard": shard, "TabletType": kind, "State": state, "Alias": alias}


def expected_tablets(spec: ClusterSpec) -> dict:
    """What the verify step expects of the VitessCluster the deploy renders from ``spec``."""
    vc = next(o for o in render(spec.model_copy(update=IMAGES), "example", "example", "10.0.0.11", "user", "pw") if o["kind"] == "VitessCluster")
    return expected_tablets_of(vc)


def test_expected_tablets_of_the_default_and_of_a_sharded_rdonly_spec():
    assert expected_tablets(ClusterSpec()) == {("commerce", "-"): {"PRIMARY": 1, "REPLICA": 2, "RDONLY": 0}}
    spec = ClusterSpec(keyspaces=[KeyspaceSpec(name="customer", shards=2, tablets=TabletPool(type="rdonly", replicas=2))])
    assert expected_tablets(spec) == {("customer", "-80"): {"PRIMARY": 0, "REPLICA": 0, "RDONLY": 2},
                                      ("customer", "80-"): {"PRIMARY": 0, "REPLICA": 0, "RDONLY": 2}}
    spec = ClusterSpec(keyspaces=[KeyspaceSpec(), KeyspaceSpec(name="customer", shards=2)])
    assert set(expected_tablets(spec)) == {("commerce", "-"), ("customer", "-80"), ("customer", "80-")}


def test_tablet_checks_pass_a_healthy_shard_and_name_what_is_wrong_otherwise():
    want = expected_tablets(ClusterSpec())
    healthy = [_tablet("commerce", "-", "PRIMARY"), _tablet("commerce", "-", "REPLICA", alias="zone1-2"),
               _tablet("commerce", "-", "REPLICA", alias="zone1-3")]
    assert tablet_checks(healthy, want) == [Finding(name="tablets commerce/-", level="ok",
                                                    problem="1 PRIMARY, 2 REPLICA serving")]

    no_primary = [_tablet("commerce", "-", "REPLICA", alias=f"zone1-{i}") for i in (1, 2, 3)]
    [c] = tablet_checks(no_primary, want)
    assert c.level == "fail" and c.problem.startswith("no serving PRIMARY") and "vtorc" in c.fix
    assert c.line.startswith("tablets commerce/-: fail: no serving PRIMARY") and ". Fix: read the vttablet" in c.line

    one_down = healthy[:2] + [_tablet("commerce", "-", "REPLICA", "NOT_SERVING", "zone1-3")]
    [c] = tablet_checks(one_down, want)
    assert c.level == "fail" and "1 of 2 REPLICA tablets serving" in c.problem and "zone1-3 (REPLICA, NOT_SERVING)" in c.problem
    assert c.short == "tablets commerce/-: 1 of 2 REPLICA tablets serving; not serving: zone1-3 (REPLICA, NOT_SERVING)"

    two_primaries = healthy + [_tablet("commerce", "-", "PRIMARY", alias="zone1-4")]
    assert "2 PRIMARY tablets" in tablet_checks(two_primaries, want)[0].problem

    leftover = healthy + [_tablet("commerce", "-80", "PRIMARY", alias="zone1-9")]
    assert [c.level for c in tablet_checks(leftover, want)] == ["ok", "warn"]

    assert tablet_checks([], want)[0].level == "fail"


def test_row_checks():
    checks = row_checks([("commerce.customer", 5, 5), ("commerce.product", 2, 1), ("commerce.corder", 5, 7),
                         ("commerce.gone", 3, None)])
    assert [c.level for c in checks] == ["ok", "fail", "warn", "fail"]
    assert "1 rows, the data files hold 2" in checks[1].problem and "checkpoint" in checks[1].fix
    assert "schema and data steps" in checks[3].fix and "Fix:" not in checks[3].problem


def test_echo_line_is_word_split_without_a_shell():
    assert echo_line("echo 'Using commerce/0'") == "Using commerce/0"
    assert echo_line('echo "a  b" c') == "a  b c"
    assert echo_line("rm -rf /") is None
    assert echo_line("echo 'unterminated") is None


def test_batch_result_escapes_as_the_client_does():
    assert batch_result(["a", "b"], [("x\ty", None), ("1\\2\n", b"\x00z")]) == ["a\tb", "x\\ty\tNULL", "1\\\\2\\n\t\\0z"]
    assert batch_result(["a"], []) == [] and batch_result(None, []) == []


def test_output_check_names_the_first_difference():
    assert output_check("a\nb\n", "a\nb", "exp.tsv").level == "ok"
    c = output_check("a\nc\n", "a\nb\n", "exp.tsv")
    assert c.level == "fail" and "line 2: got 'c', expected 'b'" in c.problem and "mysql -B < script" in c.fix
    assert "(end of output)" in output_check("a\n", "a\nb\n", "exp.tsv").problem


def test_vtadmin_problems_keep_the_fix_apart():
    assert check_vtadmin("10.0.0.11", None, "example") == []
    [c] = check_vtadmin(None, (30000, 30001), "example")
    assert (c.level, c.fix) == ("fail", "set node_address") and "Fix:" not in c.problem
    [c] = check_vtadmin("127.0.0.1", (1, 1), "example")  # nothing listens on port 1
    assert c.level == "fail" and c.problem and "Fix:" not in c.problem


def test_markdown_has_checks_tablets_rows_and_output():
    r = VerifyReport(gateway="127.0.0.1:30306", tablets=[["zone1", "commerce", "-", "PRIMARY", "SERVING", "zone1-1"]],
                     rows=[("commerce.customer", 5, 5)], script_output="Customer\nid\temail\n",
                     findings=[Finding(name="tablets commerce/-", level="ok", problem="1 PRIMARY serving"),
                               Finding(name="x", level="fail", problem="a|b", fix="do c|d")])
    text = markdown(r)
    assert "| tablets commerce/- | ok | 1 PRIMARY serving |" in text and "| x | FAIL | a/b |" in text
    assert "| check | result | problem | fix |" in text and "| x | FAIL | a/b | do c/d |" in text
    assert "| zone1 | commerce | - | PRIMARY | SERVING | zone1-1 |" in text
    assert "| commerce.customer | 5 | 5 |" in text and "Customer\nid\temail\n```" in text


class _Log:
    def __init__(self):
        self.lines = []

    def info(self, fmt, *args):
        self.lines.append(fmt % args)


@pytest.fixture
def db(mariadb):
    name = f"verify_{uuid.uuid4().hex[:8]}"
    creds = MySQLCredentials(user=mariadb.user, password=mariadb.password)
    conn = creds.connect(mariadb.host, mariadb.port)
    mysql.run(conn, f"CREATE DATABASE `{name}`")
    mysql.run(conn, f"CREATE TABLE `{name}`.c (id INT PRIMARY KEY, email VARCHAR(64), price DECIMAL(10,2), "
                    "f FLOAT, d DATETIME, n VARCHAR(8), b VARBINARY(8))")
    mysql.run(conn, f"INSERT INTO `{name}`.c VALUES (1, 'a\\tb\\nc\\\\d', 1.5, 0.1, '2024-01-02 03:04:05', NULL, 'x'), "
                    "(2, 'ünï', 100, 2.5, NULL, '', NULL)")
    conn.close()
    return mariadb, creds, name


def test_run_script_prints_what_mysql_batch_mode_prints(db):
    mariadb, creds, name = db
    script = (f"\\! echo 'Using {name}'\nuse {name};\n\\! echo 'Customer'\nselect * from c order by id;\n"
              "select * from c where id < 0;\n-- a comment\nselect count(*) as n from c;\n\\! ls /\n")
    client = subprocess.run(["mysql", "-h", mariadb.host, "-P", str(mariadb.port), "-u", mariadb.user,
                             f"-p{mariadb.password}", "--default-character-set=utf8mb4"],
                            input=script.replace("\\! ls /\n", ""), capture_output=True, text=True, timeout=60)
    assert client.returncode == 0, client.stderr
    conn = creds.connect(mariadb.host, mariadb.port, conv=mysql.TEXT_CONVERSIONS)
    log = _Log()
    try:
        ours = run_script(conn, script, "select.sql", log)
    finally:
        conn.close()
    assert ours == client.stdout
    assert "1.50\t0.1\t2024-01-02 03:04:05\tNULL\tx" in ours
    assert log.lines == ["select.sql:8: shell 'ls /' not run"]


def test_run_script_names_the_failing_statement(db):
    mariadb, creds, name = db
    conn = creds.connect(mariadb.host, mariadb.port, database=name, conv=mysql.TEXT_CONVERSIONS)
    try:
        with pytest.raises(PermanentError) as e:
            run_script(conn, "select 1;\nselect * from missing_table;\n", "select.sql", _Log())
    finally:
        conn.close()
    assert "verify script select.sql:2" in str(e.value) and "missing_table" in str(e.value)


def test_more_rows_than_the_files_fails_in_a_table_the_data_step_found_empty():
    rows = [("commerce.corder", 5, 7), ("commerce.customer", 5, 7), ("commerce.product", 2, 2)]
    checks = row_checks(rows, exact={"commerce.corder", "commerce.product"})
    assert [c.level for c in checks] == ["fail", "warn", "ok"]
    assert checks[0].line == ("rows commerce.corder: fail: 7 rows, more than the 5 the data files hold, in a table "
                              "that was empty before they were loaded: rows were loaded twice. Fix: empty "
                              "commerce.corder and re-run the data step, then report the duplicate load as a bug.")
    assert "rows written since" in checks[1].problem, "a table that held rows before keeps the warning"
