"""The reshard flow after a move-tables on the Kubernetes API double: upstream's schema files first,
the new shards, Reshard with the rows really split in MariaDB by Vitess's hash vindex, the old
shard removed only after complete. Every run goes through the flow as a user starts it."""

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pymysql
import pytest

from flows.move_tables import move_tables
from flows.reshard import reshard
from helpers import EXAMPLES, deployed_cluster, sql, wait_until
from tasks.schema import KeyspaceSchema
from tasks.vreplication import partitioning_shards
from vtflow import names
from vtflow.vtctld import Vtctld

NS = "example"
REPO = Path(__file__).resolve().parents[2]
PREPARE = [KeyspaceSchema(keyspace="commerce", sql=str(EXAMPLES / "create_commerce_seq.sql"),
                          vschema=str(EXAMPLES / "vschema_commerce_seq.json")),
           KeyspaceSchema(keyspace="customer", sql=str(EXAMPLES / "create_customer_sharded.sql"),
                          vschema=str(EXAMPLES / "vschema_customer_sharded.json"))]


def through_vtgate(d, target: str, query: str) -> list[tuple]:
    from tasks import gateway

    gw = gateway.discover(d.k, NS, "example", "127.0.0.1", None)
    with pymysql.connect(host=gw.host, port=gw.port, user=d.db.user, password=d.db.password, autocommit=True) as c:
        c.select_db(target)
        with c.cursor() as cur:
            cur.execute(query)
            return list(cur.fetchall())


def run(d, **kw):
    state = asyncio.run(reshard(target_block=f"tgt-{d.tag}", mysql_block=f"my-{d.tag}", copy_timeout_s=60,
                                tablets_timeout_s=60, vdiff_timeout_s=60, removal_timeout_s=60, return_state=True,
                                **kw))
    return state, state.result(raise_on_failure=False)


def partitionings(d) -> list[list[str]]:
    """The shards of each of customer's partitionings, as the VitessCluster has them."""
    vc = d.get("planetscale.com/vitessclusters", NS, "example")
    entry = next(k for k in vc["spec"]["keyspaces"] if k["name"] == "customer")
    return [partitioning_shards(p) for p in entry["partitionings"]]


@pytest.fixture(scope="module")
def cluster(prefect_server, tmp_path_factory):
    with deployed_cluster(tmp_path_factory.mktemp("reshard")) as d:
        for f in ("create_commerce_schema.sql", "insert_commerce_data.sql"):
            sql(d, "CREATE DATABASE IF NOT EXISTS commerce")
            sql(d, *[s for s in (EXAMPLES / f).read_text().split(";") if s.strip()], database="commerce")
        state = asyncio.run(move_tables(target_block=f"tgt-{d.tag}", mysql_block=f"my-{d.tag}", complete=True,
                                        copy_timeout_s=60, tablets_timeout_s=60, return_state=True))
        assert state.is_completed(), state.message
        try:
            yield d
        finally:
            d.vitess.vreplication.close()


def test_a_dry_run_lists_every_step_and_changes_nothing(cluster):
    before = partitionings(cluster)
    assert before == [["-"]]
    state, report = run(cluster, prepare=PREPARE, complete=True, dry_run=True)
    assert state.is_completed(), state.message
    planned = "\n".join(report.planned)
    assert "apply the schema and VSchema of keyspace commerce (4 statement(s), VSchema)" in planned
    assert "add shards -80,80- to keyspace customer of VitessCluster example/example" in planned
    assert "vtctldclient Reshard --target-keyspace customer --workflow customer2customer create --source-shards - " \
           "--target-shards -80,80-" in planned
    assert partitionings(cluster) == before
    assert Vtctld(cluster.k, NS, "example").get_vschema("customer").get("sharded") is not True


def test_killed_while_copying_then_resharded_every_row_in_its_vindex_shard_and_the_old_shard_gone(cluster):
    vr = cluster.vitess.vreplication
    vr.pause_copy(True)
    prepare = [p.model_dump() for p in PREPARE]
    code = (f"import asyncio; from flows.reshard import reshard; from tasks.schema import KeyspaceSchema; "
            f"asyncio.run(reshard(target_block='tgt-{cluster.tag}', mysql_block='my-{cluster.tag}', "
            f"prepare=[KeyspaceSchema(**p) for p in {prepare!r}], complete=True, copy_timeout_s=600))")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    vt = Vtctld(cluster.k, NS, "example")
    try:
        wait_until(lambda: vt.workflow_status("Reshard", "customer", "customer2customer"), 180,
                   "the Reshard workflow to be created", detail=lambda: f"exit {proc.poll()}")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    vr.pause_copy(False)

    state, report = run(cluster, prepare=PREPARE, complete=True)
    assert state.is_completed(), state.message
    assert [(s.stage, s.result) for s in report.stages] == [
        ("prepare", "skipped"), ("shards", "done"), ("create", "skipped"), ("copy", "done"), ("vdiff", "done"),
        ("switch-reads", "done"), ("switch-writes", "done"), ("verify", "done"), ("complete", "done"),
        ("cleanup", "done")]
    assert report.vdiff and not report.vdiff.mismatch
    # upstream's resharding guide: customers 1, 2, 3 and 5 in -80, 4 in 80-
    assert sorted(r[0] for r in through_vtgate(cluster, "customer/-80", "SELECT customer_id FROM customer")) == [1, 2, 3, 5]
    assert [r[0] for r in through_vtgate(cluster, "customer/80-", "SELECT customer_id FROM customer")] == [4]
    assert through_vtgate(cluster, "customer", "SELECT COUNT(*) FROM corder") == [(5,)]
    assert partitionings(cluster) == [["-80", "80-"]]
    old = names.selector({**names.cluster_labels("example", names.VTTABLET), names.KEYSPACE: "customer",
                          names.SHARD: names.shard_label("-")})
    assert cluster.list("pods", NS, old) == []

    state, report = run(cluster, prepare=PREPARE, complete=True)
    assert state.is_completed(), state.message
    assert [(s.stage, s.result) for s in report.stages] == [("shards", "done"), ("create", "skipped"),
                                                            ("verify", "done"), ("cleanup", "skipped")]
