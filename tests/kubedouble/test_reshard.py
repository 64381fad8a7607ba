"""Reshard customer ``-`` -> ``-80,80-`` after a MoveTables commerce -> customer, as upstream's
resharding guide runs it: vtctldclient in the vtctld pod, SQL through the vtgate proxy, each
shard's rows in a MariaDB database of its own (kubedouble/vitess/vreplication.py, state.py)."""

from __future__ import annotations

import json

import pymysql
import pytest

from kubedouble_helpers import OPERATOR_DIR
from vitess_helpers import (NS, cluster_ready, cluster_status, deploy_101, docs, fails, mariadb, ok, start_double,
                            table_names, vtgate, wait_for)
from vtflow.vindex import hash_keyspace_id, shard_of

GATEWAY = "example-vtgate-ae7df4b6"
WF = "cust2cust"
RS = ["Reshard", "--target-keyspace", "customer", "--workflow", WF]
MT = ["MoveTables", "--target-keyspace", "customer", "--workflow", "commerce2customer"]
CREATE = ["create", "--source-shards", "-", "--target-shards", "-80,80-"]
SHARDS = ["-80", "80-"]
DATABASES = ("commerce", "customer", "customer@-", "customer@-80", "customer@80-")
EXAMPLES = OPERATOR_DIR / "examples"


@pytest.fixture(scope="module")
def cluster(kd_mariadb, tmp_path_factory):
    """101 plus upstream 201's customer keyspace, with the commerce schema and data; ``dyn`` too,
    for the 302 step."""
    d, api = start_double(tmp_path_factory.mktemp("reshard"), nodes=3, node_cpu="8", node_memory="16Gi",
                          operators=True, mysql_backend=f"{kd_mariadb.host}:{kd_mariadb.port}",
                          mysql_user=kd_mariadb.user, mysql_password=kd_mariadb.password)
    try:
        dyn = deploy_101(api)
        customer = next(k for k in docs("201_customer_tablets.yaml")[0]["spec"]["keyspaces"] if k["name"] == "customer")
        _patch_keyspace(dyn, customer)
        with mariadb(kd_mariadb) as c, c.cursor() as cur:
            for db in DATABASES:
                cur.execute(f"DROP DATABASE IF EXISTS `{db}`")
            cur.execute("CREATE DATABASE commerce")
            cur.execute("CREATE DATABASE customer")
            cur.execute("USE commerce")
            for f in ("create_commerce_schema.sql", "insert_commerce_data.sql"):
                for stmt in (EXAMPLES / f).read_text().split(";"):
                    if stmt.strip():
                        cur.execute(stmt)
        wait_for(lambda: d.vtgate.address(NS, GATEWAY), what="vtgate proxy listening")
        yield d, api, dyn
    finally:
        d.vitess.vreplication.close()   # its thread would go on syncing the shared MariaDB
        d.stop()
        with mariadb(kd_mariadb) as c, c.cursor() as cur:
            for db in DATABASES[1:]:
                cur.execute(f"DROP DATABASE IF EXISTS `{db}`")


def _patch_keyspace(dyn, keyspace: dict) -> None:
    """Put ``keyspace`` (by name) into the VitessCluster, as applying upstream's 201/302 does."""
    rc = dyn.resources.get(api_version="planetscale.com/v2", kind="VitessCluster")
    vc = rc.get(name="example", namespace=NS).to_dict()
    others = [k for k in vc["spec"]["keyspaces"] if k["name"] != keyspace["name"]]
    rc.patch(name="example", namespace=NS, content_type="application/merge-patch+json",
             body={"spec": {"keyspaces": others + [keyspace]}})
    wait_for(lambda: keyspace["name"] in (cluster_status(dyn).get("keyspaces") or {})
             and cluster_ready(cluster_status(dyn)), timeout=30, what=f"keyspace {keyspace['name']} ready")


def ids(d, kd_mariadb, target: str, table: str = "customer", column: str = "customer_id") -> list[int]:
    """The ``column`` values of ``table`` that vtgate shows for ``USE <target>``."""
    with vtgate(d, kd_mariadb, GATEWAY, target) as c, c.cursor() as cur:
        cur.execute(f"SELECT {column} FROM {table} ORDER BY 1")
        return [r[0] for r in cur.fetchall()]


def owner(customer_id: int) -> str:
    return shard_of(hash_keyspace_id(customer_id), SHARDS)


def status(api, *base) -> dict:
    return json.loads(ok(api, *(base or RS), "status", "--format", "json"))


def states(api, *base) -> list[str]:
    return [s["status"] for v in status(api, *base)["shard_streams"].values() for s in v["streams"]]


def test_a_frozen_movetables_blocks_the_reshard(cluster):
    _, api, _ = cluster
    ok(api, *MT, "create", "--source-keyspace", "commerce", "--tables", "customer,corder")
    wait_for(lambda: status(api, *MT)["shard_streams"]["customer/-"]["streams"][0]["status"] == "Running",
             what="MoveTables running")
    ok(api, *MT, "switchtraffic")
    err = fails(api, *RS, *CREATE)
    assert "validateWorkflowName.VReplicationExec: found previous frozen workflow on tablet " in err
    assert "please review and delete it first before creating a new workflow" in err
    ok(api, *MT, "complete")
    assert json.loads(ok(api, "Workflow", "--keyspace", "customer", "list")) == []


def test_refusals_then_the_new_shards(cluster, kd_mariadb):
    _, api, dyn = cluster
    sql = (EXAMPLES / "create_customer_sharded.sql").read_text()
    ok(api, "ApplySchema", "--sql", sql, "customer")   # schema first, as upstream (before 302)
    err = fails(api, *RS, *CREATE)
    assert "buildResharder: GetShard(-80) failed: node doesn't exist: keyspaces/customer/shards/-80/Shard" in err
    customer = next(k for k in docs("302_new_shards.yaml")[0]["spec"]["keyspaces"] if k["name"] == "customer")
    _patch_keyspace(dyn, customer)
    wait_for(lambda: {t.split()[2] for t in ok(api, "GetTablets", "--keyspace", "customer").splitlines()
                      if " primary " in t} == {"-", "-80", "80-"}, timeout=30, what="a primary in every shard")
    assert "table corder has no vindex" in fails(api, *RS, *CREATE)   # customer's VSchema is unsharded
    ok(api, "ApplyVSchema", "--vschema", (EXAMPLES / "vschema_customer_sharded.json").read_text(), "customer")
    assert "source and target keyranges don't match" in fails(
        api, *RS, "create", "--source-shards", "-", "--target-shards", "-80")
    assert "buildResharder: source shard -80 is not in serving state" in fails(
        api, *RS, "create", "--source-shards", "-80", "--target-shards", "80-")
    assert "--target-shards is required" in fails(api, *RS, "create", "--source-shards", "-")
    assert "invalid --target-shards value" in fails(api, *RS, "create", "--source-shards", "0", "--target-shards", "80")
    # a Reshard cancelled before any switch leaves the new shards as they were: empty
    cancelled = ["Reshard", "--target-keyspace", "customer", "--workflow", "tmp"]
    ok(api, *cancelled, *CREATE)
    wait_for(lambda: set(states(api, *cancelled)) == {"Running"}, what="tmp running")
    assert sorted(table_names(kd_mariadb, "customer@-80")) == ["corder", "customer"]
    out = json.loads(ok(api, *cancelled, "cancel", "--format", "json"))
    assert out["summary"] == "Successfully cancelled the tmp workflow in the customer keyspace"
    assert len(out["details"]) == 2
    assert table_names(kd_mariadb, "customer@-80") == [] and table_names(kd_mariadb, "customer@80-") == []


def test_copy_places_rows_by_the_hash_vindex_and_replicates(cluster, kd_mariadb):
    d, api, _ = cluster
    vr = d.vitess.vreplication
    vr.pause_copy(True)
    try:
        ok(api, *RS, *CREATE)
        st = status(api)
        assert list(st["shard_streams"]) == ["customer/-80", "customer/80-"]
        for v in st["shard_streams"].values():
            assert [(s["source_shard"], s["status"]) for s in v["streams"]] == [("customer/-", "Copying")]
        copy = st["table_copy_state"]
        assert sorted(copy) == ["corder", "customer"]
        assert copy["customer"]["rows_total"] == "5" and copy["customer"]["rows_copied"] == "0"
        assert copy["customer"]["phase"] == "NOT_STARTED" and copy["customer"]["rows_percentage"] == 0
        text = ok(api, *RS, "status")
        assert "Status: Copying. VStream Lag: 0s.\n\nTable Copy Status:\n\tcorder: RowsCopied:0, RowsTotal:5, " \
               "RowsPercentage:0.00, BytesCopied:" in text
        assert ", Phase:NOT_STARTED\n\tcustomer: RowsCopied:0, RowsTotal:5," in text
        assert text.endswith("Phase:NOT_STARTED\n\nTraffic State: Reads Not Switched. Writes Not Switched\n")
        show = json.loads(ok(api, "Workflow", "--keyspace", "customer", "show", "--workflow", WF))["workflows"][0]
        assert show["workflow_type"] == "Reshard"
        assert show["source"] == {"keyspace": "customer", "shards": ["-"]}
        assert show["target"] == {"keyspace": "customer", "shards": ["-80", "80-"]}
        keys = sorted(show["shard_streams"])
        assert [k.split("/")[0] for k in keys] == ["-80", "80-"]
        first = show["shard_streams"][keys[0]]
        assert first["is_primary_serving"] is False
        assert first["streams"][0]["binlog_source"]["filter"]["rules"] == [{"match": "/.*", "filter": "-80"}]
    finally:
        vr.pause_copy(False)
    wait_for(lambda: set(states(api)) == {"Running"}, what="copy done")
    assert status(api)["table_copy_state"] == {}
    # per-shard rows are the hash vindex's (upstream's guide: 1,2,3,5 in -80, 4 in 80-)
    assert ids(d, kd_mariadb, "customer/-80") == [1, 2, 3, 5]
    assert ids(d, kd_mariadb, "customer:80-") == [4]
    for shard in SHARDS:
        assert all(owner(i) == shard for i in ids(d, kd_mariadb, f"customer/{shard}", "corder"))
    assert sorted(ids(d, kd_mariadb, "customer/-80", "corder") + ids(d, kd_mariadb, "customer/80-", "corder")) == \
        ids(d, kd_mariadb, "customer", "corder")
    # changes on the source shard while Running reach the shard owning the row
    with vtgate(d, kd_mariadb, GATEWAY, "customer") as c, c.cursor() as cur:
        cur.execute("INSERT INTO customer (customer_id, email) VALUES (6, 'frank@domain.com')")
        cur.execute("INSERT INTO corder (order_id, customer_id, sku, price) VALUES (6, 6, 'SKU-1001', 100)")
        cur.execute("DELETE FROM corder WHERE order_id = 5")
    assert owner(6) == "80-"
    wait_for(lambda: ids(d, kd_mariadb, "customer/80-") == [4, 6]
             and ids(d, kd_mariadb, "customer/-80", "corder", "order_id") == [1, 2, 3], what="changes replicated")
    assert ids(d, kd_mariadb, "customer/-80") == [1, 2, 3, 5]
    out = ok(api, "VDiff", "--target-keyspace", "customer", "--workflow", WF, "create")
    assert out.endswith(" scheduled on target shards, use show to view progress\n")
    show = json.loads(ok(api, "VDiff", "--target-keyspace", "customer", "--workflow", WF, "show", "last",
                         "--format", "json", "--verbose"))
    assert show["State"] == "completed" and show["HasMismatch"] is False and show["Shards"] == "-80,80-"
    assert show["RowsCompared"] == 6 + 5
    assert show["Reports"]["customer"]["80-"]["MatchingRows"] == 2
    # a row changed on one target shard only: that shard's report says so
    d.vitess.vreplication.change_target_row("customer/80-", "customer", "email = 'changed@x'", "customer_id = 4")
    ok(api, "VDiff", "--target-keyspace", "customer", "--workflow", WF, "create")
    show = json.loads(ok(api, "VDiff", "--target-keyspace", "customer", "--workflow", WF, "show", "last",
                         "--format", "json"))
    assert show["HasMismatch"] is True and show["Reports"]["customer"]["80-"]["MismatchedRows"] == 1
    assert show["Reports"]["customer"]["-80"]["MismatchedRows"] == 0
    d.vitess.vreplication.change_target_row("customer/80-", "customer", "email = 'dan@domain.com'", "customer_id = 4")
    # the tablets of a shard read its database: ExecuteFetchAsDBA, GetSchema, a handshake database K/S
    primary = ok(api, "GetTablets", "--keyspace", "customer", "--shard", "-80", "--tablet-type", "primary").split()[0]
    out = json.loads(ok(api, "ExecuteFetchAsDBA", "--json", primary, "SELECT COUNT(*) FROM customer"))
    assert out["rows"] == [[4]]
    assert ok(api, "GetSchema", "--table-names-only", primary) == "corder\ncustomer\n"
    host, port = d.vtgate.address(NS, GATEWAY)
    with pymysql.connect(host=host, port=port, user=kd_mariadb.user, password=kd_mariadb.password,
                         database="customer/80-") as c, c.cursor() as cur:
        cur.execute("SELECT customer_id FROM customer ORDER BY 1")
        assert [r[0] for r in cur.fetchall()] == [4, 6]


def test_switch_serves_the_new_shards(cluster, kd_mariadb):
    d, api, _ = cluster
    dry = ok(api, *RS, "switchtraffic", "--tablet-types", "rdonly,replica", "--dry-run")
    assert "Switch reads from keyspace customer to keyspace customer for shards [-] to shards [-80,80-]" in dry
    out = ok(api, *RS, "switchtraffic", "--tablet-types", "rdonly,replica")
    assert out.endswith("Current State: All Reads Switched. Writes Not Switched\n")
    dry = json.loads(ok(api, *RS, "switchtraffic", "--tablet-types", "primary", "--dry-run", "--format", "json"))
    assert "IsPrimaryServing will be set to true for: [shard:" in "\n".join(dry["dry_run_results"])
    assert f"Create reverse vreplication workflow {WF}_reverse" in dry["dry_run_results"]
    out = ok(api, *RS, "switchtraffic", "--tablet-types", "primary")
    assert out == (f"SwitchTraffic was successful for workflow customer.{WF}\n\n"
                   "Start State: All Reads Switched. Writes Not Switched\n"
                   "Current State: All Reads Switched. Writes Switched\n")
    assert json.loads(ok(api, "Workflow", "--keyspace", "customer", "list")) == [WF, f"{WF}_reverse"]
    rev = json.loads(ok(api, "Workflow", "--keyspace", "customer", "show", "--workflow", f"{WF}_reverse"))
    (key, old), = rev["workflows"][0]["shard_streams"].items()
    assert key.startswith("-/") and old["is_primary_serving"] is False
    assert sorted(s["binlog_source"]["shard"] for s in old["streams"]) == ["-80", "80-"]
    assert json.loads(ok(api, "GetShard", "customer/-"))["shard"]["is_primary_serving"] is False
    shard = json.loads(ok(api, "GetShard", "customer/-80"))
    assert shard["name"] == "-80" and shard["shard"]["is_primary_serving"] is True
    assert shard["shard"]["key_range"] == {"start": "", "end": "gA=="}   # bytes, as protojson prints them
    assert "node doesn't exist: keyspaces/customer/shards/-40/Shard" in fails(api, "GetShard", "customer/-40")
    tablet = json.loads(ok(api, "GetTablets", "--format", "json", "--keyspace", "customer", "--shard", "80-"))[0]
    assert tablet["key_range"] == {"start": "gA==", "end": ""}
    fwd = json.loads(ok(api, *RS, "show"))["workflows"][0]["shard_streams"]
    assert all(v["is_primary_serving"] and v["streams"][0]["message"] == "FROZEN" for v in fwd.values())
    # keyspace-level reads see every shard; the old shard keeps its rows
    assert ids(d, kd_mariadb, "customer") == [1, 2, 3, 4, 5, 6]
    assert ids(d, kd_mariadb, "customer/-") == [1, 2, 3, 4, 5, 6]
    with vtgate(d, kd_mariadb, GATEWAY, "customer") as c, c.cursor() as cur:
        with pytest.raises(pymysql.MySQLError) as e:
            cur.execute("INSERT INTO customer (customer_id, email) VALUES (7, 'grace@domain.com')")
        assert e.value.args[0] == 1471   # ER_NON_INSERTABLE_TABLE: the UNION ALL view (stricter than vtgate)
    with vtgate(d, kd_mariadb, GATEWAY, "customer/80-") as c, c.cursor() as cur:
        cur.execute("INSERT INTO customer (customer_id, email) VALUES (7, 'grace@domain.com')")
    assert ids(d, kd_mariadb, "customer") == [1, 2, 3, 4, 5, 6, 7]
    wait_for(lambda: 7 in ids(d, kd_mariadb, "customer/-"), what="reverse replication to the old shard")
    assert "writes have been already been switched" in fails(
        api, "VDiff", "--target-keyspace", "customer", "--workflow", WF, "create")


def test_reverse_switch_again_and_complete(cluster, kd_mariadb):
    d, api, _ = cluster
    out = ok(api, *RS, "reversetraffic")
    assert out.endswith("Current State: Reads Not Switched. Writes Not Switched\n")
    assert json.loads(ok(api, "Workflow", "--keyspace", "customer", "list")) == [WF]
    wait_for(lambda: set(states(api)) == {"Running"}, what="forward streams running")
    with vtgate(d, kd_mariadb, GATEWAY, "customer") as c, c.cursor() as cur:   # the full-range shard again
        cur.execute("INSERT INTO customer (customer_id, email) VALUES (9, 'heidi@domain.com')")
    assert owner(9) == "-80"
    wait_for(lambda: 9 in ids(d, kd_mariadb, "customer/-80"), what="forward replication after the reverse")
    ok(api, *RS, "switchtraffic", "--tablet-types", "rdonly,replica")
    ok(api, *RS, "switchtraffic", "--tablet-types", "primary")
    dry = ok(api, *RS, "complete", "--dry-run")
    assert f"Complete dry run results for workflow customer.{WF} at " in dry
    assert "Delete vreplication streams on targets: [keyspace:customer;shard:" in dry
    assert ok(api, *RS, "complete") == f"Successfully completed the {WF} workflow in the customer keyspace\n"
    assert json.loads(ok(api, "Workflow", "--keyspace", "customer", "list")) == []
    assert ids(d, kd_mariadb, "customer") == [1, 2, 3, 4, 5, 6, 7, 9]
    assert ids(d, kd_mariadb, "customer/-") == [1, 2, 3, 4, 5, 6, 7, 9]   # left as it is, for 306
    assert f"no streams found in keyspace customer for {WF}" in fails(api, *RS, "status")


def test_status_text_is_upstreams():
    """utils_test.go TestOutputStatusResponse (vitess @03acfeaa), the plain-text case."""
    from kubedouble.vitess.vreplication import go_float32, status_text

    resp = {"table_copy_state": {
        "table2": {"rows_copied": "10", "rows_total": "50", "rows_percentage": 20, "bytes_copied": "1000",
                   "bytes_total": "5000", "bytes_percentage": 20, "phase": "IN_PROGRESS"},
        "table1": {"rows_copied": "20", "rows_total": "20", "rows_percentage": 100, "bytes_copied": "1000",
                   "bytes_total": "1000", "bytes_percentage": 100, "phase": "COMPLETE"},
        "table3": {"rows_copied": "0", "rows_total": "2000", "rows_percentage": 0, "bytes_copied": "0",
                   "bytes_total": "200000", "bytes_percentage": 0, "phase": "NOT_STARTED"}},
        "shard_streams": {"customer/0": {"streams": [{
            "id": 1, "tablet": {"cell": "zone1", "uid": 1}, "source_shard": "commerce/0",
            "position": "f3918180-b58f-11f0-9085-360472309971:1-29655", "status": "Copying",
            "info": "VStream Lag: -1s; ; Tx time: Thu Oct 30 13:05:02 2025"}]}},
        "traffic_state": "Reads Not Switched. Writes Not Switched"}
    assert status_text("customer", "commerce2customer", resp) == """\
The following vreplication streams exist for workflow customer.commerce2customer:

id=1 on customer/zone1-1: Status: Copying. VStream Lag: -1s; ; Tx time: Thu Oct 30 13:05:02 2025.

Table Copy Status:
\ttable1: RowsCopied:20, RowsTotal:20, RowsPercentage:100.00, BytesCopied:1000, BytesTotal:1000, \
BytesPercentage:100.00, Phase:COMPLETE
\ttable2: RowsCopied:10, RowsTotal:50, RowsPercentage:20.00, BytesCopied:1000, BytesTotal:5000, \
BytesPercentage:20.00, Phase:IN_PROGRESS
\ttable3: RowsCopied:0, RowsTotal:2000, RowsPercentage:0.00, BytesCopied:0, BytesTotal:200000, \
BytesPercentage:0.00, Phase:NOT_STARTED

Traffic State: Reads Not Switched. Writes Not Switched
"""
    assert json.dumps([go_float32(100.0), go_float32(20.0), go_float32(100 / 3), go_float32(0.5)]) == \
        "[100, 20, 33.333332, 0.5]"


def test_vschema_refusals_name_the_table():
    from kubedouble.vitess.vreplication import VReplicationError, reshard_vindexes

    sharded = json.loads((EXAMPLES / "vschema_customer_sharded.json").read_text())
    assert reshard_vindexes("customer", sharded, ["corder", "customer"]) == (
        ["corder", "customer"], {"corder": "customer_id", "customer": "customer_id"})
    cases = [({"tables": {"corder": {}}}, "table corder has no vindex"),
             ({**sharded, "tables": {"corder": {}}}, "missing primary col vindex for table: corder"),
             ({**sharded, "vindexes": {"hash": {"type": "lookup_unique"}}},
              "Reshard by a lookup_unique vindex (table corder) is not simulated")]
    for vschema, message in cases:
        with pytest.raises(VReplicationError) as e:
            reshard_vindexes("customer", vschema, ["corder"])
        assert message in str(e.value)
    with pytest.raises(VReplicationError) as e:
        reshard_vindexes("customer", {**sharded, "vindexes": {"hash": {"type": "xxhash"}}}, ["corder"])
    assert e.value.code == "Unimplemented"
