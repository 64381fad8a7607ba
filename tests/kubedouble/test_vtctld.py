"""vtctldclient in the vtctld pod (exec through kubernetes.stream) against the double and MariaDB."""

from __future__ import annotations

import copy
import json
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from kubernetes import client
from kubernetes.stream import stream

from kubedouble_helpers import OPERATOR_DIR, api_client_for
from vitess_helpers import NS, cluster_ready, cluster_status, mariadb, vtctldclient, wait_for

@pytest.fixture(scope="module")
def fresh_schema(kd_mariadb):
    with mariadb(kd_mariadb) as c, c.cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS commerce")


def test_apply_schema_from_stdin_creates_tables(vitess_101, kd_mariadb, fresh_schema):
    _, api, _ = vitess_101
    sql = (OPERATOR_DIR / "examples" / "create_commerce_schema.sql").read_text()
    code, out, err = vtctldclient(api, "ApplySchema", "--sql-file=/dev/stdin", "commerce", stdin=sql)
    assert code == 0, err
    with mariadb(kd_mariadb, "commerce") as c, c.cursor() as cur:
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
    with mariadb(kd_mariadb, "commerce") as c, c.cursor() as cur:
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
        # vtctld gets backup storage flags only from a location: without, it has no storage at all
        for args in (["GetBackups", "commerce/-"], ["RemoveBackup", "commerce/-", "2020-01-01.000000.zone1-0000000100"]):
            code, _, err = vtctldclient(api, *args)
            assert code == 1 and "no registered implementation of BackupStorage" in err
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
    assert code == 1 and "invalid shard path: commerce" in err and "<keyspace/shard>" in err
    code, _, err = vtctldclient(api, "--server", "elsewhere:1", "GetTablets")
    assert code == 1 and "connection refused" in err


# -- backups: GetBackups' shape, RemoveBackup, backdated and slow backups ---------------------------
VC = "planetscale.com/v2"


def vitess_backups(dyn) -> dict[str, dict]:
    """VitessBackup objects in the namespace by storage name."""
    items = dyn.resources.get(api_version=VC, kind="VitessBackup").get(namespace=NS).to_dict()["items"]
    return {b["status"]["storageName"]: b for b in items}


def backup_names(api, shard="commerce/-") -> list[str]:
    code, out, err = vtctldclient(api, "GetBackups", shard)
    assert code == 0, err
    return out.split()


def test_get_backups_json_has_the_backupinfo_fields(vitess_101):
    _, api, _ = vitess_101
    code, out, err = vtctldclient(api, "GetBackups", "--json", "commerce/-")
    assert code == 0, err
    backups = json.loads(out)["backups"]
    assert backups and [b["name"] for b in backups] == backup_names(api)
    for b in backups:
        # BackupInfo's fields in proto order; no size (the proto has none)
        assert list(b) == ["name", "directory", "keyspace", "shard", "tablet_alias", "time", "engine", "status"]
        date, hms, alias = b["name"].split(".", 2)
        assert (b["directory"], b["keyspace"], b["shard"]) == ("commerce/-", "commerce", "-")
        assert b["tablet_alias"] == {"cell": alias.rsplit("-", 1)[0], "uid": int(alias.rsplit("-", 1)[1])}
        # vttime.Time through protojson: int64 seconds as a string, int32 nanoseconds as a number
        assert isinstance(b["time"]["seconds"], str) and b["time"]["nanoseconds"] == 0
        when = datetime.strptime(f"{date}.{hms}", "%Y-%m-%d.%H%M%S").replace(tzinfo=timezone.utc)
        assert int(b["time"]["seconds"]) == int(when.timestamp())
        # vtctld never fills these in (vitessio/vitess#8332)
        assert (b["engine"], b["status"]) == ("", "UNKNOWN")
    # the short flags and --limit (the newest N) as real vtctldclient takes them
    for args in (["-j", "-l", "1"], ["--json", "--limit=1"], ["-j", "-l1"]):
        code, out, err = vtctldclient(api, "GetBackups", *args, "commerce/-")
        assert code == 0, err
        assert [b["name"] for b in json.loads(out)["backups"]] == [backups[-1]["name"]]
    # a shard without backups: an empty list, and one empty line without --json
    assert json.loads(vtctldclient(api, "GetBackups", "--json", "commerce/80-")[1]) == {"backups": []}
    assert vtctldclient(api, "GetBackups", "commerce/80-")[1] == "\n"
    # flags real vtctldclient does not have, and bad values
    for args, msg in ((["--detailed"], "unknown flag: --detailed"), (["--limit", "x"], 'invalid argument "x"')):
        code, _, err = vtctldclient(api, "GetBackups", *args, "commerce/-")
        assert code == 1 and msg in err


def test_add_backup_is_backdated_and_listed_oldest_first(vitess_101):
    d, api, dyn = vitess_101
    when = datetime.now(timezone.utc) - timedelta(days=3, microseconds=250)
    rec = d.vitess.add_backup(NS, "example", "commerce", "-", when, size=1234)
    try:
        assert rec.name.startswith(f"{when:%Y-%m-%d.%H%M%S}.zone1-")
        assert backup_names(api)[0] == rec.name   # storage lists by name: the backdated one first
        entry = json.loads(vtctldclient(api, "GetBackups", "--json", "commerce/-")[1])["backups"][0]
        assert entry["name"] == rec.name and int(entry["time"]["seconds"]) == int(when.timestamp())
        vb = vitess_backups(dyn)[rec.name]
        assert vb["status"]["startTime"] == f"{when:%Y-%m-%dT%H:%M:%SZ}" and vb["status"]["complete"] is True
        with pytest.raises(ValueError, match="exists already"):
            d.vitess.add_backup(NS, "example", "commerce", "-", when, tablet_alias=rec.tablet)
        with pytest.raises(ValueError, match="no tablets"):
            d.vitess.add_backup(NS, "example", "commerce", "80-", when)
        # an explicit tablet and a naive datetime (taken as UTC)
        other = d.vitess.add_backup(NS, "example", "commerce", "-", datetime(2020, 1, 2, 3, 4, 5),
                                    tablet_alias="zone1-0000000999")
        assert other.name == "2020-01-02.030405.zone1-0000000999" and backup_names(api)[0] == other.name
        assert vtctldclient(api, "RemoveBackup", "commerce/-", other.name)[0] == 0
    finally:
        vtctldclient(api, "RemoveBackup", "commerce/-", rec.name)


def test_remove_backup_drops_the_record_and_the_vitessbackup(vitess_101):
    d, api, dyn = vitess_101
    rec = d.vitess.add_backup(NS, "example", "commerce", "-", datetime.now(timezone.utc) - timedelta(days=10))
    before = backup_names(api)
    assert rec.name in before and rec.name in vitess_backups(dyn)
    code, out, err = vtctldclient(api, "RemoveBackup", "commerce/-", rec.name)
    assert (code, out, err) == (0, "", "")   # the real client prints nothing
    assert backup_names(api) == [n for n in before if n != rec.name]
    assert rec.name not in vitess_backups(dyn)
    assert all(n in vitess_backups(dyn) for n in backup_names(api))   # the others are kept
    # the volume location is vitess' file storage: os.RemoveAll of a missing directory succeeds
    code, out, err = vtctldclient(api, "RemoveBackup", "commerce/-", rec.name)
    assert (code, out, err) == (0, "", "")
    assert backup_names(api) == [n for n in before if n != rec.name]


def test_remove_backup_unknown_name_fails_on_s3(vitess_101):
    d, api, dyn = vitess_101
    rc = dyn.resources.get(api_version=VC, kind="VitessCluster")
    saved = rc.get(name="example", namespace=NS).to_dict()["spec"]["backup"]
    s3 = copy.deepcopy(saved)
    s3["locations"] = [{"s3": {"bucket": "backups", "region": "us-east-1", "authSecret": {"name": "s3", "key": "creds"}}}]
    rc.patch(name="example", namespace=NS, body={"spec": {"backup": s3}}, content_type="application/merge-patch+json")
    try:
        rec = d.vitess.add_backup(NS, "example", "commerce", "-", datetime.now(timezone.utc) - timedelta(days=5))
        assert vtctldclient(api, "RemoveBackup", "commerce/-", rec.name)[0] == 0
        assert rec.name not in backup_names(api) and rec.name not in vitess_backups(dyn)
        # S3 storage sends a DeleteObjects without keys for a name it has no objects for
        code, out, err = vtctldclient(api, "RemoveBackup", "commerce/-", rec.name)
        assert code == 1 and out == "" and "MalformedXML" in err and "rpc error: code = Unknown" in err
    finally:
        rc.patch(name="example", namespace=NS, body={"spec": {"backup": saved}},
                 content_type="application/merge-patch+json")


def test_remove_backup_argument_errors(vitess_101):
    _, api, _ = vitess_101
    code, _, err = vtctldclient(api, "RemoveBackup", "commerce/-")
    assert code == 1 and "accepts 2 arg(s), received 1" in err and "RemoveBackup <keyspace/shard> <backup name>" in err
    code, _, err = vtctldclient(api, "RemoveBackup", "commerce", "2020-01-01.000000.zone1-0000000100")
    assert code == 1 and "invalid shard path: commerce" in err


@pytest.fixture
def two_keyspaces(vitess_101):
    """The 101 cluster plus a keyspace "customer" (one shard "-", tablets like commerce's), so
    that two shards can back up at once; removed again afterwards."""
    d, api, dyn = vitess_101
    rc = dyn.resources.get(api_version=VC, kind="VitessCluster")
    spec = rc.get(name="example", namespace=NS).to_dict()["spec"]
    customer = copy.deepcopy(spec["keyspaces"][0])
    customer["name"] = "customer"
    rc.patch(name="example", namespace=NS, body=[{"op": "add", "path": "/spec/keyspaces/-", "value": customer}],
             content_type="application/json-patch+json")
    try:
        wait_for(lambda: "customer" in cluster_status(dyn).get("keyspaces", {}) and cluster_ready(cluster_status(dyn)),
                 timeout=20, what="keyspace customer ready")
        wait_for(lambda: backup_names(api, "customer/-"), what="customer's initial backup")
        yield d, api, dyn
    finally:
        d.vitess.slow_backups(0)
        rc.patch(name="example", namespace=NS, body=[{"op": "remove", "path": f"/spec/keyspaces/{len(spec['keyspaces'])}"}],
                 content_type="application/json-patch+json")
        core = client.CoreV1Api(api)
        wait_for(lambda: not core.list_namespaced_pod(NS, label_selector="planetscale.com/keyspace=customer").items,
                 timeout=20, what="customer's pods gone")


def test_slow_backups_measure_overlap(two_keyspaces, tmp_path):
    d, api, _ = two_keyspaces
    delay = 2.0   # long enough that the list below answers while a backup still sleeps, even on a busy machine
    d.vitess.slow_backups(delay)
    d.vitess.reset_backup_runs(NS, "example")
    results: dict[str, tuple] = {}

    def backup(shard: str) -> None:
        # kubernetes.stream patches its ApiClient while connecting: one client per thread
        own = api_client_for(d, tmp_path)
        t0 = time.monotonic()
        code, _, err = vtctldclient(own, "BackupShard", shard)
        results[shard] = (code, err, time.monotonic() - t0)

    threads = [threading.Thread(target=backup, args=(s,)) for s in ("commerce/-", "customer/-")]
    for t in threads:
        t.start()
    # the sleep is in an exec's worker thread: the API answers meanwhile
    wait_for(lambda: d.vitess.running_backups(NS, "example") >= 1, timeout=5, interval=0.01, what="a backup running")
    client.CoreV1Api(api).list_namespaced_pod(NS)
    assert d.vitess.running_backups(NS, "example") >= 1   # answered before the backup ended, not after it
    for t in threads:
        t.join(timeout=15)
    assert all(r[0] == 0 for r in results.values()), results
    assert all(r[2] >= delay for r in results.values())
    assert d.vitess.max_concurrent_backups(NS, "example") == 2
    a, b = d.vitess.backup_runs(NS, "example")
    assert {(a.keyspace, a.shard), (b.keyspace, b.shard)} == {("commerce", "-"), ("customer", "-")}
    assert a.start < b.end and b.start < a.end   # they overlapped

    d.vitess.reset_backup_runs(NS, "example")
    d.vitess.slow_backups(0.2)   # one after the other: any length shows it
    assert d.vitess.max_concurrent_backups(NS, "example") == 0
    for shard in ("commerce/-", "customer/-"):
        backup(shard)
    assert all(r[0] == 0 for r in results.values()), results
    assert d.vitess.max_concurrent_backups(NS, "example") == 1
    a, b = d.vitess.backup_runs(NS, "example")
    assert a.end <= b.start and d.vitess.running_backups(NS, "example") == 0


def exec_in(api, pod: str, container: str, argv: list[str]) -> tuple[int, str, str]:
    core = client.CoreV1Api(api)
    resp = stream(core.connect_get_namespaced_pod_exec, pod, NS, container=container, command=argv,
                  stderr=True, stdin=False, stdout=True, tty=False, _preload_content=False)
    resp.run_forever(timeout=10)
    return resp.returncode, resp.read_stdout(), resp.read_stderr()


def tablets_of(api, shard="commerce/-") -> dict[str, dict]:
    code, out, err = vtctldclient(api, "GetTablets", "--format", "json", "--keyspace", shard.split("/")[0])
    assert code == 0, err
    return {f"{t['alias']['cell']}-{t['alias']['uid']:010d}": t for t in json.loads(out)}


def pod_of(api, alias: str) -> str:
    """The Ready pod of tablet ``alias`` (by the operator's tablet-uid label)."""
    uid = str(int(alias.rsplit("-", 1)[1]))
    core = client.CoreV1Api(api)

    def ready():
        for p in core.list_namespaced_pod(NS, label_selector=f"planetscale.com/tablet-uid={uid}").items:
            if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or []):
                return p.metadata.name
    return wait_for(ready, timeout=20, what=f"tablet {alias}'s pod Ready")


def primary_of(api) -> str:
    return next(a for a, t in tablets_of(api).items() if t["type"] == "PRIMARY")


def test_execute_fetch_as_dba_json_is_a_sqltypes_result(vitess_101, kd_mariadb):
    _, api, _ = vitess_101
    with mariadb(kd_mariadb) as c, c.cursor() as cur:
        cur.execute("CREATE DATABASE IF NOT EXISTS commerce")
        cur.execute("CREATE TABLE IF NOT EXISTS commerce.fetched (id INT PRIMARY KEY, v VARCHAR(8))")
        cur.execute("REPLACE INTO commerce.fetched VALUES (1, 'a'), (2, NULL)")
    primary = primary_of(api)
    code, out, err = vtctldclient(api, "ExecuteFetchAsDBA", "--json", primary, "SELECT id, v FROM fetched ORDER BY id")
    assert code == 0, err
    result = json.loads(out)
    assert [f["name"] for f in result["fields"]] == ["id", "v"] and result["rows"] == [[1, "a"], [2, None]]
    assert {"rows_affected", "insert_id", "session_state_changes", "status_flags"} <= set(result)
    code, out, _ = vtctldclient(api, "ExecuteFetchAsDBA", primary, "CHECKSUM TABLE fetched")
    assert code == 0 and "| Table" in out and "commerce.fetched" in out
    code, _, err = vtctldclient(api, "ExecuteFetchAsDBA", "--max-rows", "1", primary, "SELECT id FROM fetched")
    assert code == 1 and "Row count exceeded 1" in err
    code, _, err = vtctldclient(api, "ExecuteFetchAsDBA", primary)
    assert code == 1 and "accepts 2 arg(s), received 1" in err
    code, _, err = vtctldclient(api, "ExecuteFetchAsDBA", "zone1-0000000999", "SELECT 1")
    assert code == 1 and "node doesn't exist: tablets/zone1-0000000999/Tablet" in err
    code, _, err = vtctldclient(api, "ExecuteFetchAsDBA", primary, "SELECT * FROM no_such_table")
    assert code == 1 and "doesn't exist (errno 1146)" in err


def test_a_new_tablet_restores_the_newest_backup_and_catches_up_but_keeps_a_backup_only_change(vitess_101, kd_mariadb):
    d, api, dyn = vitess_101
    with mariadb(kd_mariadb) as c, c.cursor() as cur:
        cur.execute("CREATE DATABASE IF NOT EXISTS commerce")
        cur.execute("CREATE TABLE IF NOT EXISTS commerce.kept (id INT PRIMARY KEY, v VARCHAR(8))")
        cur.execute("REPLACE INTO commerce.kept VALUES (1, 'one'), (2, 'two')")
    assert vtctldclient(api, "BackupShard", "commerce/-")[0] == 0
    newest = d.vitess.list_backups(NS, "example", "commerce", "-")[-1]
    d.vitess.change_backup_row(NS, "example", "commerce", "-", "kept", "v = 'TWO'", "id = 2")
    with mariadb(kd_mariadb) as c, c.cursor() as cur:
        cur.execute("INSERT INTO commerce.kept VALUES (3, 'three')")   # after the backup
    d.vitess.set_catchup_delay(3600)
    rc = dyn.resources.get(api_version=VC, kind="VitessCluster")
    spec = rc.get(name="example", namespace=NS).to_dict()["spec"]
    pools = spec["keyspaces"][0]["partitionings"][0]["equal"]["shardTemplate"]["tabletPools"]
    grown = copy.deepcopy(spec["keyspaces"])
    grown[0]["partitionings"][0]["equal"]["shardTemplate"]["tabletPools"][0]["replicas"] = pools[0]["replicas"] + 1
    before = set(tablets_of(api))
    rc.patch(name="example", namespace=NS, body={"spec": {"keyspaces": grown}}, content_type="application/merge-patch+json")
    try:
        new = wait_for(lambda: next(iter(set(tablets_of(api)) - before), None), timeout=20, what="the new tablet")
        pod = pod_of(api, new)
        code, out, err = exec_in(api, pod, "vttablet", ["wget", "-qO-", "http://localhost:15000/debug/vars"])
        assert code == 0, err
        assert json.loads(out)["RestoredBackupTime"] == newest.time and json.loads(out)["RestoreCount"] == {"-.-.Restore": 1}
        log = client.CoreV1Api(api).read_namespaced_pod_log(pod, NS, container="vttablet")
        assert f"Restore: found backup commerce/- {newest.name} to restore" in log
        primary_pod = pod_of(api, primary_of(api))
        code, out, _ = exec_in(api, primary_pod, "vttablet", ["wget", "-qO-", "http://localhost:15000/debug/vars"])
        assert code == 0 and json.loads(out)["RestoredBackupTime"] == ""   # it started before any backup
        with pytest.raises(Exception, match="failed to exec in container"):   # curl is not in the image
            exec_in(api, primary_pod, "vttablet", ["curl", "-s", "http://localhost:15000/debug/vars"])
        assert exec_in(api, pod, "vttablet", ["wget", "-qO-", "http://localhost:15000/nope"])[0] == 8

        def rows(alias):
            code, out, err = vtctldclient(api, "ExecuteFetchAsDBA", "--json", alias, "SELECT id, v FROM kept ORDER BY id")
            assert code == 0, err
            return json.loads(out)["rows"]
        assert rows(new) == [[1, "one"], [2, "TWO"]]          # the backup's copy only: not caught up yet
        d.vitess.set_catchup_delay(0)
        assert rows(new) == [[1, "one"], [2, "TWO"], [3, "three"]]   # replicated since, the changed row kept
        assert rows(primary_of(api)) == [[1, "one"], [2, "two"], [3, "three"]]
    finally:
        d.vitess.set_catchup_delay(0.3)
        rc.patch(name="example", namespace=NS, body={"spec": {"keyspaces": spec["keyspaces"]}},
                 content_type="application/merge-patch+json")
        wait_for(lambda: set(tablets_of(api)) == before, timeout=20, what="the new tablet gone")


def test_no_new_initial_backup_once_the_shard_has_had_a_primary(vitess_101):
    d, api, _ = vitess_101
    for name in backup_names(api, "commerce/-"):
        assert vtctldclient(api, "RemoveBackup", "commerce/-", name)[0] == 0
    # the operator's next passes (it watches VitessBackups, and resyncs every 2 s) add none
    # a status pass counting 0 backups proves a pass ran after the removal (it backs up before status)
    wait_for(lambda: cluster_status_shard(d) == 0, timeout=10, what="the shard's status to count 0 complete backups")
    assert backup_names(api, "commerce/-") == [] and d.vitess.list_backups(NS, "example", "commerce", "-") == []


def cluster_status_shard(d) -> int | None:
    shard = next(s for s in d.list("planetscale.com/vitessshards", NS)
                 if s["metadata"]["labels"].get("planetscale.com/keyspace") == "commerce")
    locs = (shard.get("status") or {}).get("backupLocations") or [{}]
    return locs[0].get("completeBackups")
