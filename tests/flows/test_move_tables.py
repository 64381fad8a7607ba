"""The move-tables flow against a deployed commerce cluster on the Kubernetes API double, whose
vtctld answers MoveTables/VDiff/SwitchTraffic with the rows really copied in MariaDB and whose
vtgate routes by the workflow's switches (kubedouble/vitess/vreplication.py). Every run goes
through the flow as a user starts it; the faults are the double's."""

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pymysql
import pytest
from prefect.artifacts import Artifact

from flows.move_tables import move_tables
from helpers import EXAMPLES, deployed_cluster, sql, wait_until
from tasks import gateway
from tasks.restore import room_with_every_pod
from vtflow.vtctld import Vtctld

NS = "example"
REPO = Path(__file__).resolve().parents[2]
WF = "commerce2customer"


def tables_in(d, db: str) -> set[str]:
    return {r[0] for r in sql(d, f"SELECT table_name FROM information_schema.tables WHERE table_schema = '{db}' "
                                 "AND table_type = 'BASE TABLE'")[0]}


def status(d) -> dict | None:
    return Vtctld(d.k, NS, "example").workflow_status("MoveTables", "customer", WF)


def run(d, **kw):
    state = asyncio.run(move_tables(target_block=f"tgt-{d.tag}", mysql_block=f"my-{d.tag}", copy_timeout_s=60,
                                    tablets_timeout_s=60, vdiff_timeout_s=60, return_state=True, **kw))
    return state, state.result(raise_on_failure=False)


def report_text(d) -> str:
    artifact = Artifact.get("move-tables-example")
    assert artifact is not None
    return artifact.data


def stage_rows(text: str) -> list[tuple[str, str, str]]:
    """(stage, result, detail) of each row of the report's stage table."""
    out = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if len(cells) == 4 and cells[0] not in ("stage", "---|---|---|---") and not cells[0].startswith("-"):
            out.append((cells[0], cells[1], cells[3]))
    return out


@pytest.fixture(scope="module")
def cluster(prefect_server, tmp_path_factory):
    with deployed_cluster(tmp_path_factory.mktemp("movetables")) as d:
        for f in ("create_commerce_schema.sql", "insert_commerce_data.sql"):
            stmts = [s for s in (EXAMPLES / f).read_text().split(";") if s.strip()]
            sql(d, "CREATE DATABASE IF NOT EXISTS commerce")
            sql(d, *stmts, database="commerce")
        d.spec_before = d.get("planetscale.com/vitessclusters", NS, "example")["spec"]
        try:
            yield d
        finally:
            d.vitess.vreplication.close()


def test_a_dry_run_lists_every_step_and_changes_nothing(cluster):
    # through the CLI, as a user runs it
    r = subprocess.run([sys.executable, "-m", "vtflow.cli", "move-tables", "--target", f"tgt-{cluster.tag}",
                        "--mysql", f"my-{cluster.tag}", "--dry-run"], cwd=REPO, capture_output=True, text=True,
                       timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert "tablets: would: add the keyspace, then wait for its tablets" in lines
    assert "would: add keyspace customer to VitessCluster example/example (spec.keyspaces: 3 tablet pod(s), the " \
           "template of commerce)" in lines
    assert ("would: vtctldclient MoveTables --target-keyspace customer --workflow commerce2customer create "
            "--source-keyspace commerce --tables customer,corder") in lines
    assert "would: SwitchTraffic --tablet-types=primary (its --dry-run first)" in lines
    assert cluster.get("planetscale.com/vitessclusters", NS, "example")["spec"] == cluster.spec_before
    assert "# MoveTables customer.commerce2customer (dry run)" in report_text(cluster)


def test_the_preflight_refuses_tablets_the_nodes_cannot_hold_before_any_change(cluster):
    # someone else's pods take all but 50m CPU and 64 MiB of every node: no tablet of customer fits
    k = cluster.k
    k.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "filler"}})
    for room in room_with_every_pod(k.list("v1", "Node"), k.list("v1", "Pod")):
        k.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"fill-{room.node}", "namespace": "filler"},
                 "spec": {"nodeName": room.node, "containers": [{"name": "c", "image": "busybox", "resources": {
                     "requests": {"cpu": f"{room.free_cpu_millis - 50}m",
                                  "memory": str(room.free_memory_bytes - (64 << 20))}}}]}})
    try:
        state, _ = run(cluster)
        assert state.is_failed()
        assert "the nodes cannot hold its tablets (nothing was changed)" in state.message
        assert "3 tablet pod(s)" in state.message and "fits on no node" in state.message
        assert "free 50m CPU, 0.06 GiB" in state.message
        assert cluster.get("planetscale.com/vitessclusters", NS, "example")["spec"] == cluster.spec_before
    finally:
        for pod in k.list("v1", "Pod", "filler"):
            k.delete("v1", "Pod", pod["metadata"]["name"], "filler")
        k.delete("v1", "Namespace", "filler")
        wait_until(lambda: not k.list("v1", "Pod", "filler"), 60, "the filler pods to go")


def test_killed_while_copying_then_a_vdiff_difference_stops_before_any_switch(cluster, tmp_path):
    vr = cluster.vitess.vreplication
    vr.pause_copy(True)
    code = (f"import asyncio; from flows.move_tables import move_tables; asyncio.run(move_tables("
            f"target_block='tgt-{cluster.tag}', mysql_block='my-{cluster.tag}', copy_timeout_s=600))")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_until(lambda: status(cluster), 120, "the workflow to be created", detail=lambda: f"exit {proc.poll()}")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    st = status(cluster)
    assert st["shard_streams"]["customer/-"]["streams"][0]["status"] == "Copying"
    vr.pause_copy(False)
    wait_until(lambda: status(cluster)["shard_streams"]["customer/-"]["streams"][0]["status"] == "Running", 60,
               "the copy to finish")
    # nothing copied twice: the killed run's successor finds the workflow and copies nothing itself
    show = Vtctld(cluster.k, NS, "example").workflow_show("customer", WF)
    assert show["shard_streams"] and [s["rows_copied"] for sh in show["shard_streams"].values()
                                      for s in sh["streams"]] == ["10"]   # 5 customers + 5 orders, once
    # a stream in Error stops the run with its message, before any switch
    vr.fail_stream("customer", WF, "Duplicate entry '7' for key 'PRIMARY' (errno 1062)")
    try:
        state, _ = run(cluster)
    finally:
        vr.fail_stream("customer", WF, "")
    assert state.is_failed()
    assert "has a stream in Error: stream 1 on -/zone1-" in state.message
    assert "Duplicate entry '7' for key 'PRIMARY' (errno 1062)" in state.message
    assert status(cluster)["traffic_state"] == "Reads Not Switched. Writes Not Switched"

    assert vr.change_target_row("customer", "customer", "email = 'mallory@domain'", "customer_id = 2") == 1

    state, _ = run(cluster)
    assert state.is_failed()
    assert "found differences (nothing was switched): customer: 1 rows differ (of 5 compared)" in state.message
    assert status(cluster)["traffic_state"] == "Reads Not Switched. Writes Not Switched"
    rows = stage_rows(report_text(cluster))
    assert [(st, res) for st, res, _ in rows] == [("tablets", "done"), ("create", "skipped"), ("copy", "done"),
                                                  ("vdiff", "failed")]
    assert rows[3][2] == "customer: 1 rows differ (of 5 compared)"
    # the row put back as the source has it, the next run goes on from the copy
    src = sql(cluster, "SELECT email FROM commerce.customer WHERE customer_id = 2")[0][0][0].decode()   # varbinary
    vr.change_target_row("customer", "customer", f"email = '{src}'", "customer_id = 2")


def test_another_open_workflow_on_the_keyspace_is_refused_by_name(cluster):
    state, _ = run(cluster, workflow="other", tables=["product"])
    assert state.is_failed()
    assert "another workflow is open on keyspace commerce or customer: customer.commerce2customer" in state.message


def test_a_failed_write_switch_leaves_writes_on_the_source_and_names_both_states(cluster):
    vr = cluster.vitess.vreplication
    vr.time_out_switch("customer", WF, True)
    try:
        state, _ = run(cluster)
    finally:
        vr.time_out_switch("customer", WF, False)
    assert state.is_failed()
    assert "failed after a switch: vtctldclient MoveTables switchtraffic customer.commerce2customer" in state.message
    assert "failed to sync up replication between the source and target" in state.message
    assert ("Traffic was 'All Reads Switched. Writes Not Switched', and is now 'All Reads Switched. Writes Not "
            "Switched (reads not reversible before the write switch)'") in state.message
    assert status(cluster)["traffic_state"] == "All Reads Switched. Writes Not Switched"
    rows = {st: (res, detail) for st, res, detail in stage_rows(report_text(cluster))}
    assert rows["switch-reads"][0] == "done" and rows["switch-reads"][1].startswith("All Reads Switched. Writes Not")
    assert "switch-writes" not in rows and rows["reverse"][0] == "skipped"


def test_a_failed_verification_after_the_switch_reverses_it(cluster):
    # a target block whose vtgate address is wrong: every stage but the verification goes through vtctld
    from blocks.target import VitessTarget

    VitessTarget(kubeconfig=cluster.kubeconfig_text, node_address="127.0.0.1",
                 vtgate_address="127.0.0.1:1").save(f"badgw-{cluster.tag}")
    state = asyncio.run(move_tables(target_block=f"badgw-{cluster.tag}", mysql_block=f"my-{cluster.tag}",
                                    return_state=True))
    assert state.is_failed()
    assert ("Traffic was 'All Reads Switched. Writes Switched', and is now 'Reads Not Switched. Writes Not "
            "Switched'") in state.message
    assert "127.0.0.1:1" in state.message
    assert status(cluster)["traffic_state"] == "Reads Not Switched. Writes Not Switched"
    rows = {st: (res, detail) for st, res, detail in stage_rows(report_text(cluster))}
    assert rows["switch-reads"][0] == "skipped" and rows["switch-writes"][0] == "done"
    assert rows["reverse"] == ("done", "after the failure: All Reads Switched. Writes Switched -> Reads Not Switched. "
                                       "Writes Not Switched")


def test_a_move_left_open_then_completed_by_a_later_run(cluster):
    # complete off: everything switched and verified, the workflow open (ReverseTraffic could undo it)
    state, report = run(cluster)
    assert state.is_completed(), state.message
    assert [(s.stage, s.result) for s in report.stages][-3:] == [("switch-writes", "done"), ("verify", "done"),
                                                                 ("complete", "skipped")]
    assert status(cluster)["traffic_state"] == "All Reads Switched. Writes Switched"
    assert {"customer", "corder"} <= tables_in(cluster, "customer")


def test_the_move_completes_from_where_it_was_left_and_a_rerun_changes_nothing(cluster):
    # a write through vtgate by the source's name, after the switch: it lands in the target keyspace
    gw = gateway.discover(cluster.k, NS, "example", "127.0.0.1", None)
    with pymysql.connect(host=gw.host, port=gw.port, user=cluster.db.user, password=cluster.db.password,
                         database="commerce", autocommit=True) as c, c.cursor() as cur:
        cur.execute("INSERT INTO customer (email) VALUES ('dave@domain')")
    state, report = run(cluster, complete=True)
    assert state.is_completed(), state.message
    assert [(s.stage, s.result) for s in report.stages] == [
        ("tablets", "done"), ("create", "skipped"), ("copy", "skipped"), ("vdiff", "skipped"), ("switch-reads", "skipped"),
        ("switch-writes", "skipped"), ("verify", "done"), ("complete", "done"), ("verify", "done")]
    assert report.rows == {"customer": 6, "corder": 5}   # dave's row is in customer
    assert status(cluster) is None                                    # completed: no workflow any more
    assert {"customer", "corder"} <= tables_in(cluster, "customer")
    assert not {"customer", "corder"} & tables_in(cluster, "commerce") and "product" in tables_in(cluster, "commerce")
    assert json.loads(Vtctld(cluster.k, NS, "example").run(["GetRoutingRules"]).out) == {"rules": []}
    progress = Artifact.get("move-tables-copy-example")
    assert progress is not None and progress.type == "progress" and float(progress.data) == 100.0
    assert ("complete", "done", "workflow removed, customer, corder dropped from commerce") in \
        stage_rows(report_text(cluster))

    state, report = run(cluster, complete=True)
    assert state.is_completed(), state.message
    assert [(s.stage, s.result) for s in report.stages] == [("tablets", "done"), ("create", "skipped"),
                                                            ("verify", "done")]
    assert "moved and completed by an earlier run" in report.stages[1].detail
