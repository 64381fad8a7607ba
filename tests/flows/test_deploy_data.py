"""The whole deploy flow (schema, data load, verification) against the Kubernetes API double,
whose vtgate proxies to a MariaDB of this module's own (the session's is shared, and these
tests use upstream's keyspace name, commerce), on this session's Prefect server."""

import asyncio
import socket
import tempfile
import uuid
from pathlib import Path

import pymysql
import pytest
from prefect.artifacts import Artifact

from blocks.mysql import MySQLCredentials
from blocks.target import VitessTarget
from flows.deploy import STEPS, DeployParameters, deploy
from helpers import EXAMPLES, OPERATOR_YAML
from testbed import MariaDB, free_port
from vtflow import kube
from kubedouble import DoubleConfig, KubeDouble

SCHEMA = {"keyspace": "commerce", "sql": str(EXAMPLES / "create_commerce_schema.sql"),
          "vschema": str(EXAMPLES / "vschema_commerce_initial.json")}
DATA = [{"keyspace": "commerce", "source": str(EXAMPLES / "insert_commerce_data.sql")}]
SELECT = str(EXAMPLES / "select_commerce_data.sql")

# what `mysql -B < select_commerce_data.sql` prints once insert_commerce_data.sql is loaded
EXPECTED = """\
Using commerce/0
Customer
customer_id\temail
1\talice@domain.com
2\tbob@domain.com
3\tcharlie@domain.com
4\tdan@domain.com
5\teve@domain.com
Product
sku\tdescription\tprice
SKU-1001\tMonitor\t100
SKU-1002\tKeyboard\t30
COrder
order_id\tcustomer_id\tsku\tprice
1\t1\tSKU-1001\t100
2\t2\tSKU-1002\t30
3\t3\tSKU-1002\t30
4\t4\tSKU-1002\t30
5\t5\tSKU-1002\t30
"""


@pytest.fixture(scope="module")
def own_mariadb():
    db = MariaDB(root=Path(tempfile.mkdtemp(prefix="vtflow-deploy-data-")), port=free_port()).start()
    yield db
    db.stop()


@pytest.fixture
def stack(prefect_server, own_mariadb, tmp_path):
    db = own_mariadb
    conn = pymysql.connect(host=db.host, port=db.port, user=db.user, password=db.password, autocommit=True)
    with conn.cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS commerce")
    conn.close()
    d = KubeDouble(DoubleConfig(nodes=3, node_cpu="8", node_memory="16Gi", git_version="v1.33.5+k3s1", operators=True,
                                pod_start_delay=0.02, mysql_backend=f"{db.host}:{db.port}", mysql_user=db.user,
                                mysql_password=db.password))
    d.start()
    tag = uuid.uuid4().hex[:6]
    kubeconfig = d.kubeconfig(tmp_path / "kubeconfig").read_text()
    VitessTarget(kubeconfig=kubeconfig, node_address="127.0.0.1").save(f"tgt-{tag}")
    MySQLCredentials(user=db.user, password=db.password).save(f"my-{tag}")
    d.tag, d.db = tag, db
    d.k = kube.Kube(kube.api_client(kubeconfig, None, "t"))
    yield d
    d.stop()


def params(d, **kw):
    kw.setdefault("schemas", [SCHEMA])
    kw.setdefault("data", DATA)
    return DeployParameters(target_block=kw.pop("target_block", f"tgt-{d.tag}"), mysql_block=kw.pop("mysql_block", f"my-{d.tag}"),
                            operator_manifest=OPERATOR_YAML, ready_timeout_s=60, **kw)


def run(p):
    state = asyncio.run(deploy(**p.flow_kwargs(), return_state=True))
    return state, state.result(raise_on_failure=False)


def rows(d, sql):
    conn = pymysql.connect(host=d.db.host, port=d.db.port, user=d.db.user, password=d.db.password, database="commerce")
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall()
    finally:
        conn.close()


def test_deploy_loads_verifies_and_reports_then_a_rerun_changes_nothing(stack, tmp_path):
    expected = tmp_path / "expected.tsv"
    expected.write_text(EXPECTED)
    state, reports = run(params(stack, verify={"script": SELECT, "expected_output": str(expected)}))
    assert state.is_completed(), state.message
    assert tuple(r.step for r in reports) == STEPS == ("node-prep", "etcd-operator", "vitess-operator", "cluster",
                                                       "schema", "data", "verify")
    data = reports[5]
    assert [o["action"] for o in data.objects] == ["created"]
    assert "insert_commerce_data.sql (12 rows)" in data.objects[0]["object"]
    assert rows(stack, "SELECT COUNT(*), SUM(price) FROM corder") == ((5, 220),)
    checks = {f.name: f.level for f in reports[6].findings}
    assert checks == {"tablets commerce/-": "ok", "rows commerce.corder": "ok", "rows commerce.customer": "ok",
                      "rows commerce.product": "ok", "verify script": "ok", "vtadmin": "ok"}

    report = Artifact.get("deploy-example").data
    assert "| zone1 | commerce | - | PRIMARY | SERVING |" in report and report.count("| REPLICA | SERVING |") == 2
    assert "| commerce.customer | 5 | 5 |" in report and "| commerce.corder | 5 | 5 |" in report
    assert "SKU-1002\tKeyboard\t30" in report
    assert "vtgate: 127.0.0.1:30306 (from Service example/example-vtgate-nodeport (NodePort))" in report
    assert "| verify script | ok |" in Artifact.get("verify-example").data

    state, again = run(params(stack, verify={"script": SELECT, "expected_output": str(expected)}))
    assert state.is_completed(), state.message
    assert not any(r.changed for r in again), [o for r in again for o in r.objects if o["action"] != "unchanged"]
    assert again[5].objects[0]["action"] == "unchanged"
    assert rows(stack, "SELECT COUNT(*) FROM customer") == ((5,),)  # nothing loaded twice


def test_a_gzipped_csv_file_loads_into_its_table_with_a_progress_artifact_per_file(stack, tmp_path):
    import gzip
    csv_file = tmp_path / "customer.csv.gz"
    csv_file.write_bytes(gzip.compress(b'customer_id,email\n10,"x,y@domain.com"\n11,\\N\n'))
    state, reports = run(params(stack, data=[*DATA, {"keyspace": "commerce", "source": str(csv_file)}], data_parallel=2))
    assert state.is_completed(), state.message
    assert rows(stack, "SELECT customer_id, email FROM customer WHERE customer_id >= 10") == (
        (10, b"x,y@domain.com"), (11, None))
    assert "rows commerce.customer: ok: 7 rows, as loaded." in [f.line for f in reports[6].findings]
    # what a person watches in the UI while it loads: a progress artifact per file, updated in place
    for key, text in [("data-example-1", "insert_commerce_data.sql: 12 rows, 3/3 batches"),
                      ("data-example-2", "customer.csv.gz: 2 rows, 1/1 batches")]:
        artifact = Artifact.get(key)
        assert artifact.type == "progress" and artifact.data == 100.0, (key, artifact)
        assert text in artifact.description and "rows/s" in artifact.description


def test_verification_failure_fails_the_run_and_says_what_failed(stack, tmp_path):
    state, _ = run(params(stack, verify={"enabled": False}))
    assert state.is_completed(), state.message
    conn = pymysql.connect(host=stack.db.host, port=stack.db.port, user=stack.db.user, password=stack.db.password,
                           database="commerce", autocommit=True)
    with conn.cursor() as cur:
        cur.execute("DELETE FROM corder WHERE order_id = 5")
    conn.close()
    expected = tmp_path / "expected.tsv"
    expected.write_text(EXPECTED)
    state, _ = run(params(stack, verify={"script": SELECT, "expected_output": str(expected)}))
    assert state.is_failed()
    assert "2 verification check(s) failed" in state.message
    assert "rows commerce.corder: 4 rows, the data files hold 5" in state.message
    assert "verify script: output differs from" in state.message and "line 19" in state.message
    report = Artifact.get("deploy-example").data
    assert report.startswith("# Deploy report: FAILED") and "step verify" in report
    assert "| rows commerce.corder | FAIL |" in Artifact.get("verify-example").data


def test_bad_inputs_fail_before_anything_is_applied(stack, tmp_path):
    missing = params(stack, data=[{"keyspace": "commerce", "source": str(tmp_path / "nope.sql")}])
    state, _ = run(missing)
    assert state.is_failed() and "data file" in state.message and "nope.sql" in state.message
    assert "is not a file" in state.message
    assert Artifact.get("deploy-example").data.startswith("# Deploy report: FAILED\n\n**Failed:** input check")

    bad_csv = tmp_path / "customer.csv"
    bad_csv.write_text("customer_id,email\n1,a@b,extra\n")
    state, _ = run(params(stack, data=[{"keyspace": "commerce", "source": str(bad_csv)}]))
    assert state.is_failed() and f"{bad_csv}:2: the row has 3 fields, the header 2." in state.message

    state, _ = run(params(stack, verify={"expected_output": EXPECTED}))
    assert state.is_failed() and "without a verify script" in state.message
    assert stack.k.list("apiextensions.k8s.io/v1", "CustomResourceDefinition") == []


def test_a_wrong_mysql_password_is_named_with_its_fix(stack):
    MySQLCredentials(user=stack.db.user, password="not-the-password").save(f"bad-{stack.tag}")
    state, _ = run(params(stack, mysql_block=f"bad-{stack.tag}"))
    assert state.is_failed()
    assert f"MySQL {stack.db.user}@127.0.0.1:30306: the server refused the user and password." in state.message
    assert "not-the-password" not in state.message


def test_vtgate_unreachable_says_where_it_looked_and_what_to_do(stack, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    kubeconfig = stack.kubeconfig(tmp_path / "kc").read_text()
    VitessTarget(kubeconfig=kubeconfig, node_address="127.0.0.1",
                 vtgate_address=f"127.0.0.1:{closed}").save(f"far-{stack.tag}")
    state, _ = run(params(stack, target_block=f"far-{stack.tag}"))
    assert state.is_failed()
    assert f"127.0.0.1:{closed}: cannot connect." in state.message
    assert "vtgate_node_port" in state.message and "vtgate_address" in state.message


def test_more_rows_than_the_files_after_loading_an_empty_table_fails_then_warns_once_loaded(stack):
    state, _ = run(params(stack, until="schema"))
    assert state.is_completed(), state.message
    conn = pymysql.connect(host=stack.db.host, port=stack.db.port, user=stack.db.user, password=stack.db.password,
                           database="commerce", autocommit=True)
    with conn.cursor() as cur:   # each order adds a customer: rows the files do not hold, during the load
        cur.execute("CREATE TRIGGER order_adds_customer AFTER INSERT ON corder FOR EACH ROW "
                    "INSERT INTO customer(email) VALUES (CONCAT('extra-', NEW.order_id))")
    conn.close()
    state, _ = run(params(stack))
    assert state.is_failed()
    assert ("rows commerce.customer: 10 rows, more than the 5 the data files hold, in a table that was empty "
            "before they were loaded: rows were loaded twice") in state.message
    assert "rows commerce.corder" not in state.message
    # loaded whole before: the extra rows may be the application's since, so a warning only
    state, reports = run(params(stack))
    assert state.is_completed(), state.message
    assert {f.name: f.level for f in reports[6].findings}["rows commerce.customer"] == "warn"
