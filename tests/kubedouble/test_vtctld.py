"""vtctldclient in the vtctld pod (exec through kubernetes.stream) against the double and MariaDB."""

from __future__ import annotations

import json

import pymysql
import pytest
from kubernetes import client
from kubernetes.stream import stream

from kubedouble_helpers import OPERATOR_DIR
from vitess_helpers import NS, cluster_status, wait_for

VTCTLD = "planetscale.com/component=vtctld,planetscale.com/cluster=example"


def vtctldclient(api, *args, stdin: str | None = None, server=True) -> tuple[int, str, str]:
    core = client.CoreV1Api(api)
    pod = core.list_namespaced_pod(NS, label_selector=VTCTLD).items[0].metadata.name
    argv = ["vtctldclient"] + (["--server", "localhost:15999"] if server else []) + list(args)
    resp = stream(core.connect_get_namespaced_pod_exec, pod, NS, container="vtctld", command=argv,
                  stderr=True, stdin=stdin is not None, stdout=True, tty=False, _preload_content=False)
    if stdin is not None:
        resp.write_stdin(stdin)
    resp.run_forever(timeout=10)
    return resp.returncode, resp.read_stdout(), resp.read_stderr()


def _db(kd_mariadb, database=None):
    return pymysql.connect(host=kd_mariadb.host, port=kd_mariadb.port, user=kd_mariadb.user,
                           password=kd_mariadb.password, database=database, autocommit=True)


@pytest.fixture(scope="module")
def fresh_schema(kd_mariadb):
    with _db(kd_mariadb) as c, c.cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS commerce")


def test_apply_schema_from_stdin_creates_tables(vitess_101, kd_mariadb, fresh_schema):
    _, api, _ = vitess_101
    sql = (OPERATOR_DIR / "examples" / "create_commerce_schema.sql").read_text()
    code, out, err = vtctldclient(api, "ApplySchema", "--sql-file=/dev/stdin", "commerce", stdin=sql)
    assert code == 0, err
    with _db(kd_mariadb, "commerce") as c, c.cursor() as cur:
        cur.execute("SHOW TABLES")
        assert sorted(r[0] for r in cur.fetchall()) == ["corder", "customer", "product"]


def test_apply_schema_sql_flag_forms_and_mysql_errors(vitess_101, kd_mariadb, fresh_schema):
    _, api, _ = vitess_101
    assert vtctldclient(api, "ApplySchema", "--sql", "create table t1 (id int primary key)", "commerce")[0] == 0
    assert vtctldclient(api, "ApplySchema", "--sql=create table t2 (id int primary key); "
                        "create table t3 (id int primary key)", "commerce")[0] == 0
    code, out, err = vtctldclient(api, "ApplySchema", "--sql=create table t4 (id int); create table t1 (id int); "
                                  "create table t5 (id int)", "commerce")
    assert code == 1
    assert "Table 't1' already exists" in err and '"CurSQLIndex": 1' in err
    with _db(kd_mariadb, "commerce") as c, c.cursor() as cur:
        cur.execute("SHOW TABLES LIKE 't5'")
        assert cur.fetchall() == ()   # stopped at the first error


def test_apply_schema_fails_until_tablets_serve(vitess_101):
    d, api, dyn = vitess_101
    tablets = client.CoreV1Api(api).list_namespaced_pod(NS, label_selector="planetscale.com/component=vttablet").items
    try:
        for p in tablets:
            d.kubelet.set_ready(d, NS, p.metadata.name, "vttablet", False)
        wait_for(lambda: cluster_status(dyn)["keyspaces"]["commerce"]["readyTablets"] == 0, what="tablets unready")
        code, out, err = vtctldclient(api, "ApplySchema", "--sql=create table never (id int)", "commerce")
        assert code == 1
        assert '"FailedShards": null' in err and "schema change failed" in err
    finally:
        for p in tablets:
            d.kubelet.set_ready(d, NS, p.metadata.name, "vttablet", True)
        wait_for(lambda: cluster_status(dyn)["keyspaces"]["commerce"]["readyTablets"] == 3, what="tablets ready")


def test_apply_and_get_vschema(vitess_101):
    _, api, _ = vitess_101
    vschema = (OPERATOR_DIR / "examples" / "vschema_commerce_initial.json").read_text()
    code, out, err = vtctldclient(api, "ApplyVSchema", "--vschema-file=/dev/stdin", "commerce", stdin=vschema)
    assert code == 0, err
    assert out.startswith("New VSchema object:\n")
    assert json.loads(out.split("\n", 1)[1].split("\nIf this is not")[0]) == json.loads(vschema)
    code, out, _ = vtctldclient(api, "GetVSchema", "commerce")
    assert code == 0 and json.loads(out) == json.loads(vschema)
    code, out, _ = vtctldclient(api, "ApplyVSchema", "--vschema", '{"sharded": false, "tables": {}}', "commerce")
    assert code == 0 and json.loads(vtctldclient(api, "GetVSchema", "commerce")[1]) == {"sharded": False, "tables": {}}


def test_apply_vschema_errors(vitess_101):
    _, api, _ = vitess_101
    code, _, err = vtctldclient(api, "ApplyVSchema", "--vschema={not json", "commerce")
    assert code == 1 and "invalid VSchema JSON" in err
    code, _, err = vtctldclient(api, "ApplyVSchema", "--vschema={}", "nosuchks")
    assert code == 1 and "keyspaces/nosuchks" in err
    code, _, err = vtctldclient(api, "ApplyVSchema", "commerce")
    assert code == 1 and "--vschema" in err


def test_get_tablets_json_matches_pods(vitess_101):
    _, api, _ = vitess_101
    code, out, err = vtctldclient(api, "GetTablets", "--format", "json")
    assert code == 0, err
    tablets = json.loads(out)
    pods = client.CoreV1Api(api).list_namespaced_pod(NS, label_selector="planetscale.com/component=vttablet").items
    by_alias = {f"{p.metadata.labels['planetscale.com/cell']}-{int(p.metadata.labels['planetscale.com/tablet-uid']):010d}": p
                for p in pods}
    assert len(tablets) == 3
    assert sorted(t["type"] for t in tablets) == ["PRIMARY", "REPLICA", "REPLICA"]
    for t in tablets:
        alias = f"{t['alias']['cell']}-{t['alias']['uid']:010d}"
        assert t["hostname"] == by_alias[alias].status.pod_ip
        assert (t["keyspace"], t["shard"]) == ("commerce", "-")
        assert t["port_map"] == {"grpc": 15999, "vt": 15000}
    primary = next(t for t in tablets if t["type"] == "PRIMARY")
    assert "primary_term_start_time" in primary
    assert len(json.loads(vtctldclient(api, "GetTablets", "--format=json", "--keyspace", "commerce", "--shard", "-")[1])) == 3
    assert json.loads(vtctldclient(api, "GetTablets", "--format=json", "--keyspace", "other")[1]) == []


def test_get_tablets_default_format(vitess_101):
    _, api, _ = vitess_101
    code, out, _ = vtctldclient(api, "GetTablets", server=False)
    lines = out.strip().splitlines()
    assert code == 0 and len(lines) == 3
    assert sum(1 for ln in lines if ln.split()[3] == "primary") == 1
    assert all(ln.split()[1:3] == ["commerce", "-"] for ln in lines)


def test_backup_shard_records_a_vitessbackup(vitess_101, kd_mariadb):
    _, api, dyn = vitess_101
    before = vtctldclient(api, "GetBackups", "commerce/-")[1].split()
    assert len(before) == 1   # the operator's initial backup of the shard
    code, out, err = vtctldclient(api, "BackupShard", "commerce/-")
    assert code == 0, err
    assert "Starting backup of commerce/-" in out and "completed" in out
    names = wait_for(lambda: (lambda n: len(n) == 2 and n)(vtctldclient(api, "GetBackups", "commerce/-")[1].split()),
                     what="two backups")
    name = names[-1]
    date, time_, alias = name.split(".", 2)
    assert len(date) == 10 and len(time_) == 6 and alias.startswith("zone1-")
    backups = dyn.resources.get(api_version="planetscale.com/v2", kind="VitessBackup").get(namespace=NS).items
    assert name in {b.status.storageName for b in backups}
    assert all(b.metadata.labels["planetscale.com/keyspace"] == "commerce" for b in backups)
    code, out, _ = vtctldclient(api, "GetBackups", "--json", "commerce/-")
    assert code == 0 and [b["name"] for b in json.loads(out)["backups"]] == names


def test_backup_shard_can_be_made_to_fail(vitess_101):
    d, api, _ = vitess_101
    d.vitess.fail_backups_of("commerce", "-")
    try:
        code, out, err = vtctldclient(api, "BackupShard", "commerce/-")
        assert code == 1 and "failed" in err
    finally:
        d.vitess.fail_backups_of("commerce", "-", False)


def test_backup_shard_without_backup_locations_fails_clearly(vitess_101):
    _, api, dyn = vitess_101
    rc = dyn.resources.get(api_version="planetscale.com/v2", kind="VitessCluster")
    saved = rc.get(name="example", namespace=NS).to_dict()["spec"]["backup"]
    rc.patch(name="example", namespace=NS, body={"spec": {"backup": None}}, content_type="application/merge-patch+json")
    try:
        code, _, err = vtctldclient(api, "BackupShard", "commerce/-")
        assert code == 1 and "spec.backup.locations" in err
    finally:
        rc.patch(name="example", namespace=NS, body={"spec": {"backup": saved}},
                 content_type="application/merge-patch+json")


def test_unknown_command_and_flag_are_usage_errors(vitess_101):
    _, api, _ = vitess_101
    code, _, err = vtctldclient(api, "NoSuchCommand")
    assert code == 1 and 'unknown command "NoSuchCommand"' in err and "Usage:" in err
    code, _, err = vtctldclient(api, "GetTablets", "--bogus")
    assert code == 1 and "unknown flag: --bogus" in err
    code, _, err = vtctldclient(api, "BackupShard", "commerce")
    assert code == 1 and "<keyspace/shard>" in err
    code, _, err = vtctldclient(api, "--server", "elsewhere:1", "GetTablets")
    assert code == 1 and "connection refused" in err
