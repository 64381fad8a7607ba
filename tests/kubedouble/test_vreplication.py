"""MoveTables, Workflow, VDiff and routing rules: vtctldclient in the vtctld pod (exec through
kubernetes.stream), SQL through the vtgate proxy, data in a real MariaDB (kubedouble/vitess/vreplication.py)."""

from __future__ import annotations

import json

import pytest

from kubedouble_helpers import OPERATOR_DIR
from vitess_helpers import (NS, cluster_ready, cluster_status, deploy_101, docs, fails, mariadb, ok, start_double,
                            table_names, vtctldclient, vtgate, wait_for)

GATEWAY = "example-vtgate-ae7df4b6"
WF = "commerce2customer"
MT = ["MoveTables", "--target-keyspace", "customer", "--workflow", WF]


def _rows(kd_mariadb, db: str, table: str) -> list[tuple]:
    with mariadb(kd_mariadb) as c, c.cursor() as cur:
        cur.execute(f"SELECT * FROM `{db}`.`{table}` ORDER BY 1")
        return list(cur.fetchall())


@pytest.fixture(scope="module")
def cluster(kd_mariadb, tmp_path_factory):
    """101 plus upstream 201's customer keyspace, with the commerce schema and data."""
    d, api = start_double(tmp_path_factory.mktemp("vrepl"), nodes=3, node_cpu="8", node_memory="16Gi",
                          operators=True, mysql_backend=f"{kd_mariadb.host}:{kd_mariadb.port}",
                          mysql_user=kd_mariadb.user, mysql_password=kd_mariadb.password)
    try:
        dyn = deploy_101(api)
        customer = next(k for k in docs("201_customer_tablets.yaml")[0]["spec"]["keyspaces"] if k["name"] == "customer")
        rc = dyn.resources.get(api_version="planetscale.com/v2", kind="VitessCluster")
        vc = rc.get(name="example", namespace=NS).to_dict()
        rc.patch(name="example", namespace=NS, content_type="application/merge-patch+json",
                 body={"spec": {"keyspaces": vc["spec"]["keyspaces"] + [customer]}})
        wait_for(lambda: "customer" in (cluster_status(dyn).get("keyspaces") or {})
                 and cluster_ready(cluster_status(dyn)), timeout=30, what="customer keyspace ready")
        with mariadb(kd_mariadb) as c, c.cursor() as cur:
            for db in ("commerce", "customer"):
                cur.execute(f"DROP DATABASE IF EXISTS {db}")
                cur.execute(f"CREATE DATABASE {db}")
            cur.execute("USE commerce")
            for f in ("create_commerce_schema.sql", "insert_commerce_data.sql"):
                for stmt in (OPERATOR_DIR / "examples" / f).read_text().split(";"):
                    if stmt.strip():
                        cur.execute(stmt)
        wait_for(lambda: d.vtgate.address(NS, GATEWAY), what="vtgate proxy listening")
        yield d, api
    finally:
        d.vitess.vreplication.close()   # its thread would go on syncing the shared MariaDB
        d.stop()
        with mariadb(kd_mariadb) as c, c.cursor() as cur:
            cur.execute("DROP DATABASE IF EXISTS customer")


def status(api, *extra) -> dict:
    return json.loads(ok(api, *MT, "status", "--format", "json", *extra))


def stream_state(api) -> str:
    return status(api)["shard_streams"]["customer/-"]["streams"][0]["status"]


def test_create_copies_then_runs_and_replicates(cluster, kd_mariadb):
    d, api = cluster
    vr = d.vitess.vreplication
    vr.pause_copy(True)
    try:
        out = json.loads(ok(api, *MT, "create", "--source-keyspace", "commerce", "--tables", "customer,corder",
                            "--tablet-types", "primary,replica", "--format", "json"))
        assert out["traffic_state"] == "Reads Not Switched. Writes Not Switched"
        st = status(api)
        stream = st["shard_streams"]["customer/-"]["streams"][0]
        assert stream["status"] == "Copying" and stream["source_shard"] == "commerce/-"
        assert isinstance(stream["id"], int) and stream["tablet"]["cell"] == "zone1"
        assert st["table_copy_state"]["customer"]["rows_total"] == "5"
        assert st["table_copy_state"]["customer"]["rows_copied"] == "0"
        show = json.loads(ok(api, *MT, "show"))["workflows"][0]
        assert show["name"] == WF and show["workflow_type"] == "MoveTables"
        key, shard = next(iter(show["shard_streams"].items()))
        assert key.startswith("-/zone1-") and shard["streams"][0]["state"] == "Copying"
        assert isinstance(shard["streams"][0]["id"], str) and shard["streams"][0]["rows_copied"] == "0"
        assert table_names(kd_mariadb, "customer") == ["corder", "customer"]   # created from the source DDL
    finally:
        vr.pause_copy(False)
    wait_for(lambda: stream_state(api) == "Running", what="copy done")
    st = status(api)
    assert st["table_copy_state"] == {}
    assert st["shard_streams"]["customer/-"]["streams"][0]["info"] == "VStream Lag: 0s"
    assert _rows(kd_mariadb, "customer", "customer") == _rows(kd_mariadb, "commerce", "customer")
    assert _rows(kd_mariadb, "customer", "corder") == _rows(kd_mariadb, "commerce", "corder")
    text = ok(api, *MT, "status")
    assert text.startswith(f"The following vreplication streams exist for workflow customer.{WF}:\n\nid=")
    assert ": Status: Running. VStream Lag: 0s.\n" in text
    assert text.endswith("Traffic State: Reads Not Switched. Writes Not Switched\n")
    assert json.loads(ok(api, "Workflow", "--keyspace", "customer", "list")) == [WF]
    # a change on the source reaches the target
    with vtgate(d, kd_mariadb, GATEWAY, "commerce") as c, c.cursor() as cur:
        cur.execute("INSERT INTO customer (email) VALUES ('frank@domain.com')")
        cur.execute("UPDATE corder SET price = 31 WHERE order_id = 2")
        cur.execute("DELETE FROM corder WHERE order_id = 5")
    wait_for(lambda: _rows(kd_mariadb, "customer", "customer") == _rows(kd_mariadb, "commerce", "customer")
             and _rows(kd_mariadb, "customer", "corder") == _rows(kd_mariadb, "commerce", "corder"),
             what="source changes replicated")
    rules = json.loads(ok(api, "GetRoutingRules"))["rules"]
    assert {"from_table": "customer@replica", "to_tables": ["commerce.customer"]} in rules
    assert len(rules) == 18
    assert json.loads(ok(api, "GetShardRoutingRules")) == {"rules": []}


def test_refusals_before_the_switch(cluster):
    _, api = cluster
    err = fails(api, *MT, "create", "--source-keyspace", "commerce", "--tables", "product")
    assert f"workflow {WF} already exists in keyspace customer" in err
    err = fails(api, "MoveTables", "--target-keyspace", "customer", "--workflow", "other", "create",
                "--source-keyspace", "commerce", "--tables", "customer")
    assert "customer" in err and f"customer.{WF}" in err
    err = fails(api, "MoveTables", "--target-keyspace", "customer", "--workflow", "other", "create",
                "--source-keyspace", "commerce", "--tables", "nosuch")
    assert "table(s) not found in source keyspace commerce: nosuch" in err
    assert "cannot complete workflow because you have not yet switched all read and write traffic" in fails(
        api, *MT, "complete")
    assert f"no streams found in keyspace commerce for {WF}_reverse" in fails(api, *MT, "reversetraffic")
    assert "no streams found in keyspace customer for nope" in fails(
        api, "MoveTables", "--target-keyspace", "customer", "--workflow", "nope", "status")
    assert "invalid output format, got yaml" in fails(api, *MT, "status", "--format", "yaml")
    code, _, err = vtctldclient(api, *MT, "switchtraffic", "--no-such-flag")
    assert code == 1 and "unknown flag: --no-such-flag" in err
    code, _, err = vtctldclient(api, "MoveTables", "--workflow", WF, "status")
    assert code == 1 and 'required flag(s) "target-keyspace" not set' in err


def test_vdiff_clean_then_mismatch(cluster, kd_mariadb):
    d, api = cluster
    out = ok(api, "VDiff", "--target-keyspace", "customer", "--workflow", WF, "create")
    assert out.startswith("VDiff ") and out.endswith(" scheduled on target shards, use show to view progress\n")
    show = json.loads(ok(api, "VDiff", "--target-keyspace", "customer", "--workflow", WF, "show", "last",
                         "--format", "json"))
    assert show["State"] == "completed" and show["HasMismatch"] is False and show["Shards"] == "-"
    assert show["RowsCompared"] == len(_rows(kd_mariadb, "commerce", "customer")) + len(
        _rows(kd_mariadb, "commerce", "corder"))
    assert "TableSummary" not in show
    before = _rows(kd_mariadb, "customer", "customer")[0]
    d.vitess.vreplication.change_target_row("customer", "customer", "email = 'changed@x'", "customer_id = 1")
    uid = json.loads(ok(api, "VDiff", "--target-keyspace", "customer", "--workflow", WF, "create",
                        "--format", "json"))["UUID"]
    show = json.loads(ok(api, "VDiff", "--target-keyspace", "customer", "--workflow", WF, "show", uid,
                         "--format", "json"))
    assert show["HasMismatch"] is True and show["UUID"] == uid
    assert show["TableSummary"]["customer"]["MismatchedRows"] == 1
    assert show["TableSummary"]["corder"]["MismatchedRows"] == 0
    text = ok(api, "VDiff", "--target-keyspace", "customer", "--workflow", WF, "show", "last")
    assert text.startswith(f"VDiff Summary for customer.{WF} ({uid})\nState:        completed\n")
    assert "HasMismatch:  true\n" in text
    assert len(json.loads(ok(api, "VDiff", "--target-keyspace", "customer", "--workflow", WF, "show", "all",
                             "--format", "json"))) == 2
    d.vitess.vreplication.change_target_row("customer", "customer", f"email = '{before[1].decode()}'",
                                            "customer_id = 1")
    assert json.loads(ok(api, "VDiff", "--target-keyspace", "customer", "--workflow", WF, "delete", "all",
                         "--format", "json")) == {"Action": "delete", "Status": "completed"}


def test_switch_refused_on_error_and_lag(cluster):
    d, api = cluster
    vr = d.vitess.vreplication
    vr.fail_stream("customer", WF, "Duplicate entry '1' for key 'PRIMARY'")
    try:
        st = status(api)["shard_streams"]["customer/-"]["streams"][0]
        assert st["status"] == "Error" and st["info"] == "Duplicate entry '1' for key 'PRIMARY'"
        assert json.loads(ok(api, *MT, "show"))["workflows"][0]["shard_streams"].popitem()[1]["streams"][0][
            "message"] == "Duplicate entry '1' for key 'PRIMARY'"
        err = fails(api, *MT, "switchtraffic", "--tablet-types", "rdonly,replica")
        assert f"cannot switch traffic for workflow {WF} at this time: workflow has errors" in err
    finally:
        vr.fail_stream("customer", WF, "")
    vr.set_lag("customer", WF, 100)
    try:
        err = fails(api, *MT, "switchtraffic", "--tablet-types", "rdonly,replica",
                    "--max-replication-lag-allowed", "30s")
        assert "replication lag 100s is higher than allowed lag 30s" in err
    finally:
        vr.set_lag("customer", WF, 0)
    wait_for(lambda: stream_state(api) == "Running", what="stream running again")


def test_switch_reads_then_writes_routes_through_vtgate(cluster, kd_mariadb):
    d, api = cluster
    out = ok(api, *MT, "switchtraffic", "--tablet-types", "rdonly,replica", "--dry-run")
    assert out.startswith(f"SwitchTraffic dry run results for workflow customer.{WF} at ")
    assert "Switch reads for tables [corder,customer] to keyspace customer for tablet types [REPLICA,RDONLY]" in out
    assert status(api)["traffic_state"] == "Reads Not Switched. Writes Not Switched"   # the dry run changed nothing
    out = ok(api, *MT, "SwitchTraffic", "--tablet-types", "rdonly,replica")
    assert out == (f"SwitchTraffic was successful for workflow customer.{WF}\n\n"
                   "Start State: Reads Not Switched. Writes Not Switched\n"
                   "Current State: All Reads Switched. Writes Not Switched\n")
    rules = {r["from_table"]: r["to_tables"] for r in json.loads(ok(api, "GetRoutingRules"))["rules"]}
    assert rules["customer@replica"] == ["customer.customer"] and rules["commerce.corder@rdonly"] == ["customer.corder"]
    assert rules["customer"] == ["commerce.customer"]
    d.vitess.vreplication.time_out_switch("customer", WF)
    try:
        err = fails(api, *MT, "switchtraffic", "--tablet-types", "primary")
        assert "failed to sync up replication between the source and target" in err
    finally:
        d.vitess.vreplication.time_out_switch("customer", WF, False)
    assert status(api)["traffic_state"] == "All Reads Switched. Writes Not Switched"
    dry = json.loads(ok(api, *MT, "switchtraffic", "--tablet-types", "primary", "--dry-run", "--format", "json"))
    assert "Create reverse vreplication workflow commerce2customer_reverse" in dry["dry_run_results"]
    out = json.loads(ok(api, *MT, "switchtraffic", "--tablet-types", "primary", "--format", "json"))
    assert out["current_state"] == "All Reads Switched. Writes Switched"
    assert json.loads(ok(api, "Workflow", "--keyspace", "commerce", "list")) == [f"{WF}_reverse"]
    rev = json.loads(ok(api, "Workflow", "--keyspace", "commerce", "show", "--workflow", f"{WF}_reverse"))
    controls = rev["workflows"][0]["shard_streams"].popitem()[1]["tablet_controls"]
    assert controls[0]["denied_tables"] == ["corder", "customer"]
    fwd = json.loads(ok(api, *MT, "show"))["workflows"][0]["shard_streams"].popitem()[1]["streams"][0]
    assert fwd["message"] == "FROZEN"
    # queries to commerce's moved tables now reach customer's
    with vtgate(d, kd_mariadb, GATEWAY, "commerce") as c, c.cursor() as cur:
        cur.execute("INSERT INTO customer (email) VALUES ('grace@domain.com')")
        cur.execute("SELECT count(*) FROM customer")
        seen = cur.fetchone()[0]
    assert ("grace@domain.com".encode(),) in [(r[1],) for r in _rows(kd_mariadb, "customer", "customer")]
    assert seen == len(_rows(kd_mariadb, "customer", "customer"))
    assert "writes have been already been switched" in fails(
        api, "VDiff", "--target-keyspace", "customer", "--workflow", WF, "create")
    again = ok(api, *MT, "switchtraffic")   # not refused after a full switch (fact sheet 1.4)
    assert "Current State: All Reads Switched. Writes Switched" in again


def test_reverse_switch_again_and_complete(cluster, kd_mariadb):
    d, api = cluster
    out = ok(api, *MT, "reversetraffic")
    assert out.startswith(f"ReverseTraffic was successful for workflow customer.{WF}\n")
    assert out.endswith("Current State: Reads Not Switched. Writes Not Switched\n")
    # the row written to the target while switched came back to the source
    assert any(r[1] == b"grace@domain.com" for r in _rows(kd_mariadb, "commerce", "customer"))
    assert json.loads(ok(api, "Workflow", "--keyspace", "commerce", "list")) == []
    wait_for(lambda: stream_state(api) == "Running", what="forward stream running")
    with vtgate(d, kd_mariadb, GATEWAY, "commerce") as c, c.cursor() as cur:
        cur.execute("INSERT INTO customer (email) VALUES ('heidi@domain.com')")
    wait_for(lambda: any(r[1] == b"heidi@domain.com" for r in _rows(kd_mariadb, "customer", "customer")),
             what="forward replication after the reverse")
    ok(api, *MT, "switchtraffic", "--tablet-types", "rdonly,replica")
    ok(api, *MT, "switchtraffic", "--tablet-types", "primary")
    dry = ok(api, *MT, "complete", "--dry-run")
    assert dry.startswith(f"Complete dry run results for workflow customer.{WF} at ")
    assert table_names(kd_mariadb, "commerce") != ["product"]   # the dry run dropped nothing
    assert ok(api, *MT, "complete") == f"Successfully completed the {WF} workflow in the customer keyspace\n"
    assert json.loads(ok(api, "Workflow", "--keyspace", "customer", "list")) == []
    assert json.loads(ok(api, "Workflow", "--keyspace", "commerce", "list")) == []
    assert json.loads(ok(api, "GetRoutingRules")) == {"rules": []}
    assert table_names(kd_mariadb, "commerce") == ["product"]
    assert table_names(kd_mariadb, "customer") == ["corder", "customer"]
    assert f"no streams found in keyspace customer for {WF}" in fails(api, *MT, "status")


def test_cancel_drops_the_target_tables(cluster, kd_mariadb):
    _, api = cluster
    mt = ["MoveTables", "--target-keyspace", "customer", "--workflow", "p2c"]
    ok(api, *mt, "create", "--source-keyspace", "commerce", "--tables", "product")
    wait_for(lambda: json.loads(ok(api, *mt, "status", "--format", "json"))["shard_streams"]["customer/-"][
        "streams"][0]["status"] == "Running", what="p2c running")
    assert _rows(kd_mariadb, "customer", "product") == _rows(kd_mariadb, "commerce", "product")
    out = json.loads(ok(api, *mt, "cancel", "--format", "json"))
    assert out["summary"] == "Successfully cancelled the p2c workflow in the customer keyspace"
    assert out["details"][0]["deleted"] is True
    assert "product" not in table_names(kd_mariadb, "customer")
    assert table_names(kd_mariadb, "commerce") == ["product"]
    assert json.loads(ok(api, "Workflow", "--keyspace", "customer", "list")) == []
    assert json.loads(ok(api, "GetRoutingRules")) == {"rules": []}


def test_pure_state_strings():
    from kubedouble.vitess.vreplication import routing_rules, traffic_state

    assert traffic_state(False, False, False) == "Reads Not Switched. Writes Not Switched"
    assert traffic_state(True, True, True) == "All Reads Switched. Writes Switched"
    assert traffic_state(False, True, False) == ("Reads partially switched. Replica not switched. "
                                                 "All Rdonly Reads Switched. Writes Not Switched")
    rules = routing_rules("commerce", "customer", ["customer"], False, False, False)
    assert [r["from_table"] for r in rules] == [
        "customer", "commerce.customer", "customer.customer", "customer@replica", "commerce.customer@replica",
        "customer.customer@replica", "customer@rdonly", "commerce.customer@rdonly", "customer.customer@rdonly"]
