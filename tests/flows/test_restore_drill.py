"""The restore-drill flow against a deployed cluster (an unsharded and a two-shard keyspace) on the
Kubernetes API double, whose tablets restore from the backups' copies in MariaDB."""

import asyncio
import json
import os
import signal
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from prefect.variables import Variable

from flows.backup import backup
from flows.restore_drill import restore_drill
from helpers import deployed_cluster, read_table_artifact, sql, wait_until
from tasks.cluster import ClusterSpec, KeyspaceSpec
from tasks.restore import ANNOTATION, drill_variable
from vtflow.vtctld import Vtctld

NS = "example"
REPO = Path(__file__).resolve().parents[2]
SHARDS = ["commerce/-", "customer/-80", "customer/80-"]


@pytest.fixture(scope="module")
def cluster(prefect_server, tmp_path_factory):
    spec = ClusterSpec(keyspaces=[KeyspaceSpec(), KeyspaceSpec(name="customer", shards=2)])
    with deployed_cluster(tmp_path_factory.mktemp("drill"), spec=spec) as d:
        sql(d, "CREATE DATABASE IF NOT EXISTS commerce", "CREATE DATABASE IF NOT EXISTS customer",
            "CREATE TABLE commerce.product (sku VARCHAR(32) PRIMARY KEY, price INT)",
            "CREATE TABLE commerce.customer (customer_id INT PRIMARY KEY, email VARCHAR(64))",
            # a shard other than the full range is a database of its own in the double (kubedouble/vitess/state.py)
            *(f"CREATE DATABASE IF NOT EXISTS `customer@{s}`" for s in ("-80", "80-")),
            *(f"CREATE TABLE `customer@{s}`.corder (order_id INT PRIMARY KEY, sku VARCHAR(32))" for s in ("-80", "80-")),
            "INSERT INTO commerce.product VALUES ('SKU-1001', 100), ('SKU-1002', 30)",
            "INSERT INTO commerce.customer VALUES (1, 'alice@domain'), (2, 'bob@domain')",
            "INSERT INTO `customer@-80`.corder VALUES (1, 'SKU-1001'), (2, 'SKU-1002')")   # the drill compares, never places
        # two backups of one second sort by tablet alias (as in real backup storage), so the initial
        # backups' second has to pass first: the flow's backups are then the newest, the ones to change
        initial = max(b.time for s in SHARDS for b in d.vitess.list_backups(NS, "example", *s.split("/")))
        wait_until(lambda: datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") > initial, 3,
                   "a second past the initial backups", interval=0.02)
        state = asyncio.run(backup(target_block=f"tgt-{d.tag}", prune=False, return_state=True))
        assert state.is_completed(), state.message
        d.spec_before = d.get("planetscale.com/vitessclusters", NS, "example")["spec"]["keyspaces"]
        yield d


def drill(d, **kw):
    state = asyncio.run(restore_drill(target_block=f"tgt-{d.tag}", return_state=True, **kw))
    return state, state.result(raise_on_failure=False)


def assert_no_scratch_left(d):
    vc = d.get("planetscale.com/vitessclusters", NS, "example")
    assert ANNOTATION not in (vc["metadata"].get("annotations") or {})
    assert vc["spec"]["keyspaces"] == d.spec_before
    rdonly = "planetscale.com/component=vttablet,planetscale.com/tablet-type=rdonly"
    assert d.list("pods", NS, rdonly) == [] and d.list("persistentvolumeclaims", NS, rdonly) == []


def test_every_shard_restores_its_newest_backup_and_catches_up(cluster):
    # written after the backup: only replication brings it to the restored tablet
    sql(cluster, "INSERT INTO commerce.customer VALUES (3, 'carol@domain')")
    newest = {s: cluster.vitess.list_backups(NS, "example", *s.split("/"))[-1].name for s in SHARDS}
    state, results = drill(cluster, catchup_timeout_s=30)
    assert state.is_completed(), state.message
    assert [r.name for r in results] == SHARDS
    for r in results:
        assert r.ok and r.backup == newest[r.name] and r.restore_seconds > 0 and r.catchup_seconds is not None
    assert results[0].tables == ["customer", "product"] and results[1].tables == ["corder"]
    rows = read_table_artifact("restore-drill-example")
    assert [(row["shard"], row["backup"], row["tables compared"], row["result"]) for row in rows] == [
        (s, newest[s], 2 if s == "commerce/-" else 1, "ok") for s in SHARDS]
    assert all(isinstance(row["restore seconds"], float) for row in rows)
    record = asyncio.run(Variable.aget(drill_variable("example")))
    assert record["result"] == "ok" and record["shards"] == SHARDS
    assert_no_scratch_left(cluster)


def test_a_row_changed_only_in_the_backup_fails_naming_the_shard_and_table(cluster):
    name = cluster.vitess.change_backup_row(NS, "example", "commerce", "-", "customer", "email = 'mallory@domain'",
                                            "customer_id = 2")
    state, results = drill(cluster, shard="commerce/-", catchup_timeout_s=2)
    assert state.is_failed()
    assert "restore drill failed for shard(s) commerce/- (" in state.message
    assert f"restored from backup {name} differs from the primary" in state.message
    assert "table(s) customer (rows 3 vs the primary's 3, checksum" in state.message
    assert "product" not in state.message.split("Fix:")[0]
    assert "take a new backup (backup flow)" in state.message
    assert read_table_artifact("restore-drill-example")[0]["result"].startswith("failed: the tablet restored")
    assert asyncio.run(Variable.aget(drill_variable("example")))["result"] == "failed"
    assert_no_scratch_left(cluster)


def test_a_shard_without_a_backup_fails_naming_the_fix_and_adds_no_tablet(cluster):
    vt = Vtctld(cluster.k, NS, "example")
    for b in vt.get_backups("customer", "80-"):
        vt.remove_backup("customer", "80-", b["name"])
    generation = cluster.get("planetscale.com/vitessclusters", NS, "example")["metadata"]["generation"]
    state, _ = drill(cluster, shard="customer/80-")
    assert state.is_failed()
    assert "shard customer/80- has no complete backup to restore" in state.message
    assert "run the backup flow (deployment backup), then the drill again" in state.message
    assert cluster.get("planetscale.com/vitessclusters", NS, "example")["metadata"]["generation"] == generation
    assert_no_scratch_left(cluster)


def test_a_drill_killed_half_way_leaves_a_tablet_the_next_run_removes(cluster, tmp_path):
    asyncio.run(backup(target_block=f"tgt-{cluster.tag}", prune=False))   # every shard has one again
    sql(cluster, "INSERT INTO commerce.product VALUES ('SKU-1003', 7)")     # differs until caught up
    cluster.vitess.set_catchup_delay(3600)                                   # so the run waits in its compare
    code = (f"import asyncio; from flows.restore_drill import restore_drill; "
            f"asyncio.run(restore_drill(target_block='tgt-{cluster.tag}', shard='commerce/-', catchup_timeout_s=600))")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    rdonly = "planetscale.com/component=vttablet,planetscale.com/tablet-type=rdonly"
    try:
        pod = wait_until(lambda: next((p for p in cluster.list("pods", NS, rdonly)
                                       if cluster.vitess.restored(cluster, p)), None), 120,
                         "the scratch tablet to restore", detail=lambda: f"exit {proc.poll()}")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert cluster.get("pods", NS, pod["metadata"]["name"]) is not None
    assert json.loads(cluster.get("planetscale.com/vitessclusters", NS, "example")["metadata"]["annotations"][ANNOTATION])[
        "shard"] == "-"
    cluster.vitess.set_catchup_delay(0.3)
    state, results = drill(cluster, shard="commerce/-", catchup_timeout_s=30)
    assert state.is_completed(), state.message
    assert results[0].ok
    assert_no_scratch_left(cluster)
