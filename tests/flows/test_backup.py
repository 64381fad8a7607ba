"""The backup flow against a deployed three-shard cluster on the Kubernetes API double, and its
served deployment's concurrency limit on this session's Prefect server."""

import asyncio
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from kubernetes import client as k8s
from prefect.artifacts import Artifact

from flows.backup import backup
from helpers import deployed_cluster
from tasks.backup import Retention
from tasks.cluster import ClusterSpec, KeyspaceSpec
from vtflow import kube

NS = "example"
REPO = Path(__file__).resolve().parents[2]
SHARDS = ["commerce/-", "customer/-80", "customer/80-"]


@pytest.fixture(scope="module")
def cluster(prefect_server, tmp_path_factory):
    spec = ClusterSpec(keyspaces=[KeyspaceSpec(), KeyspaceSpec(name="customer", shards=2)])
    with deployed_cluster(tmp_path_factory.mktemp("backup"), spec=spec) as d:
        yield d


def run(d, **kw):
    state = asyncio.run(backup(target_block=f"tgt-{d.tag}", return_state=True, **kw))
    return state, state.result(raise_on_failure=False)


def names(d, shard):
    ks, sh = shard.split("/")
    return [b.name for b in d.vitess.list_backups(NS, "example", ks, sh)]


def test_every_shard_is_backed_up_and_reported(cluster):
    before = {s: names(cluster, s) for s in SHARDS}
    state, results = run(cluster, max_parallel=3, retention=Retention(keep_count=10, keep_days=None))
    assert state.is_completed(), state.message
    assert sorted(f"{r.keyspace}/{r.shard}" for r in results) == SHARDS
    for r in results:
        assert r.ok and r.name in names(cluster, f"{r.keyspace}/{r.shard}")
        assert r.name not in before[f"{r.keyspace}/{r.shard}"]
        # the operator's object for it (what the health check reads)
        assert any((o.get("status") or {}).get("storageName") == r.name
                   for o in cluster.list("planetscale.com/vitessbackups", NS))
    table = Artifact.get("backup-example").data
    assert all(s in table for s in SHARDS) and table.count('"result": "ok"') == 3


def test_one_shard_failing_does_not_stop_the_others_and_is_named(cluster):
    cluster.vitess.fail_backups_of("customer", "-80")
    before = {s: len(names(cluster, s)) for s in SHARDS}
    try:
        state, _ = run(cluster, prune=False)
    finally:
        cluster.vitess.fail_backups_of("customer", "-80", fail=False)
    assert state.is_failed()
    assert "backup failed for shard(s) customer/-80 (BackupShard exited 1:" in state.message
    assert "commerce/-" not in state.message.split("Fix:")[0].split("shard(s)")[1]
    after = {s: len(names(cluster, s)) for s in SHARDS}
    assert after == {"commerce/-": before["commerce/-"] + 1, "customer/-80": before["customer/-80"],
                     "customer/80-": before["customer/80-"] + 1}
    assert '"result": "failed: BackupShard exited 1' in Artifact.get("backup-example").data


def test_retention_prunes_by_count_and_age_and_keeps_the_newest(cluster):
    now = datetime.now(timezone.utc)
    for days in (30, 20, 3, 2, 1):
        cluster.vitess.add_backup(NS, "example", "commerce", "-", now - timedelta(days=days, minutes=5))
    state, results = run(cluster, retention=Retention(keep_count=4, keep_days=14))
    assert state.is_completed(), state.message
    kept = names(cluster, "commerce/-")
    assert len(kept) == 4
    newest = next(r for r in results if r.shard == "-").name
    assert newest in kept
    assert not any(n.startswith(((now - timedelta(days=d, minutes=5)).strftime("%Y-%m-%d"))) for d in (30, 20) for n in kept)
    pruned = next(r for r in results if r.shard == "-").pruned
    assert len(pruned) >= 2 and set(pruned).isdisjoint(kept)


def test_no_backup_location_is_refused_before_any_backup(cluster):
    api = k8s.CustomObjectsApi(kube.api_client(cluster.kubeconfig_text, None, "t"))
    vc = api.get_namespaced_custom_object("planetscale.com", "v2", NS, "vitessclusters", "example")
    saved = vc["spec"]["backup"]
    api.patch_namespaced_custom_object("planetscale.com", "v2", NS, "vitessclusters", "example",
                                       {"spec": {"backup": None}})
    runs = len(cluster.vitess.backup_runs(NS, "example"))
    try:
        state, _ = run(cluster)
    finally:
        api.patch_namespaced_custom_object("planetscale.com", "v2", NS, "vitessclusters", "example",
                                           {"spec": {"backup": saved}})
    assert state.is_failed()
    assert "VitessCluster example/example: has no backup location (spec.backup.locations is empty)" in state.message
    assert len(cluster.vitess.backup_runs(NS, "example")) == runs


def test_two_runs_of_the_served_deployment_never_overlap(cluster, prefect_server):
    from prefect.deployments import run_deployment

    env = {**os.environ, "PREFECT_RUNNER_POLL_FREQUENCY": "1", "VTFLOW_BLOCKS": f"tgt-{cluster.tag}",
           "PYTHONPATH": str(REPO)}
    code = ("from prefect import serve; from deployments import all_deployments; "
            "serve(*[d for d in all_deployments() if d.name == 'backup'], print_starting_message=False)")
    server = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    cluster.vitess.slow_backups(1.5)
    cluster.vitess.reset_backup_runs(NS, "example")
    try:
        deadline = time.monotonic() + 60
        while True:  # wait until serve has registered the deployment
            try:
                first = run_deployment("backup/backup", timeout=0, parameters={"max_parallel": 1, "prune": False})
                break
            except Exception:
                assert time.monotonic() < deadline and server.poll() is None, server.stderr.read() if server.poll() else ""
                time.sleep(0.5)
        second = run_deployment("backup/backup", timeout=0, parameters={"max_parallel": 1, "prune": False})
        from prefect import get_client

        async def wait_final():
            async with get_client() as c:
                while True:
                    runs = [await c.read_flow_run(r.id) for r in (first, second)]
                    if all(r.state.is_final() for r in runs):
                        return runs
                    await asyncio.sleep(0.5)
        runs = asyncio.run(asyncio.wait_for(wait_final(), 120))
    finally:
        cluster.vitess.slow_backups(0)
        server.terminate()
        server.wait(timeout=30)
    assert [r.state.type.value for r in runs] == ["COMPLETED", "COMPLETED"], [r.state.message for r in runs]
    assert cluster.vitess.max_concurrent_backups(NS, "example") == 1
    spans = sorted((b.start, b.end) for b in cluster.vitess.backup_runs(NS, "example"))
    assert len(spans) == 6 and all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))


# ---------------------------------------------------------------- the schema with every backup


def test_every_run_records_the_schema_and_vschema(cluster):
    from tasks.backup import schema_from_markdown
    from vtflow.vtctld import Vtctld

    vt = Vtctld(cluster.k, NS, "example")
    vt.apply_schema("commerce", "create table if not exists product (sku varbinary(128), price bigint, primary key (sku))")
    vschema = {"tables": {"product": {}}}
    vt.apply_vschema("commerce", vschema)
    state, _ = run(cluster, prune=False)
    assert state.is_completed(), state.message
    record = schema_from_markdown(Artifact.get("backup-schema-example").data)
    assert set(record["keyspaces"]) == {"commerce", "customer"}
    commerce = record["keyspaces"]["commerce"]
    assert "CREATE TABLE `product`" in commerce["tables"]["product"] and commerce["vschema"] == vschema
    # read from a primary, as GetTablets lists it
    primaries = {f"{t['alias']['cell']}-{t['alias']['uid']:010d}" for t in vt.get_tablets("commerce")
                 if t["type"] == "PRIMARY"}
    assert commerce["tablet"] in primaries


# ---------------------------------------------------------------- method operator (native schedules)


def _advance_past_next(d, cron: str) -> None:
    """Move the double's schedule controller just past the cron's next run (a minute, not a day,
    behind: the schedule's jobTimeoutMinute judges a Job by its scheduled time)."""
    from cronsim import CronSim

    now = d.backup_schedules.now()
    d.backup_schedules.advance(d, (next(CronSim(cron, now)) - now).total_seconds() + 5)


def _jobs(d):
    return [j for j in d.list("batch/jobs", NS) if "planetscale.com/backup-schedule" in j["metadata"].get("labels", {})]


def _finished(job) -> str | None:
    for c in (job.get("status") or {}).get("conditions") or []:
        if c["status"] == "True" and c["type"] in ("Complete", "Failed"):
            return c["type"]
    return None


def test_method_operator_writes_a_schedule_the_operator_runs_and_reports_it(cluster):
    from helpers import wait_until
    from tasks.backup import OperatorSchedule
    from tasks.health import backup_age_checks

    state, results = run(cluster, method="operator", prune=False)
    assert state.is_completed(), state.message
    vc = cluster.get("planetscale.com/vitessclusters", NS, "example")
    entry = next(s for s in vc["spec"]["backup"]["schedules"] if s["name"] == "vtflow")
    assert entry["schedule"] == OperatorSchedule().cron and entry["concurrencyPolicy"] == "Forbid"
    assert sorted((s["keyspace"], s["shard"]) for s in entry["strategies"]) == [tuple(s.split("/")) for s in SHARDS]
    assert all("Job" not in r.note or "no Job" in r.note for r in results)
    # a second run changes nothing
    before = vc
    state, _ = run(cluster, method="operator", prune=False)
    assert state.is_completed(), state.message
    after = cluster.get("planetscale.com/vitessclusters", NS, "example")   # its status moves on; the spec does not
    assert after["metadata"]["generation"] == before["metadata"]["generation"] and after["spec"] == before["spec"]
    vbs = wait_until(lambda: [o for o in cluster.list("planetscale.com/vitessbackupschedules", NS)
                              if o["spec"].get("name") == "vtflow"], 10, "the operator's VitessBackupSchedule")[0]
    before = {s: set(names(cluster, s)) for s in SHARDS}
    _advance_past_next(cluster, entry["schedule"])
    done = wait_until(lambda: (lambda j: j if len(j) == 3 and all(_finished(x) for x in j) else None)(_jobs(cluster)),
                      30, "one finished Job per shard")
    assert {_finished(j) for j in done} == {"Complete"}
    assert all(j["metadata"]["labels"]["planetscale.com/backup-schedule"] == vbs["metadata"]["name"] for j in done)
    state, results = run(cluster, method="operator", prune=False)
    assert state.is_completed(), state.message
    for r in results:
        shard = f"{r.keyspace}/{r.shard}"
        assert r.name in set(names(cluster, shard)) - before[shard], "the newest backup is the one the Job took"
        assert ": complete" in r.note
    # the health check reads those backups, and the schedule's Jobs
    checks = {f.name: f for f in backup_age_checks(cluster.k, NS, "example", 26)}
    assert all(checks[f"backup {s}"].level == "ok" for s in SHARDS)
    assert checks["backup schedule vtflow"].level == "ok", checks["backup schedule vtflow"].line


def test_a_failed_schedule_job_fails_the_run_and_warns_in_health(cluster):
    from helpers import wait_until
    from tasks.health import backup_age_checks

    seen = {j["metadata"]["name"] for j in _jobs(cluster)}
    cluster.vitess.fail_backups_of("customer", "-80")
    try:
        _advance_past_next(cluster, "0 2 * * *")
        wait_until(lambda: (lambda j: j if len(j) == 3 and all(_finished(x) for x in j) else None)(
            [x for x in _jobs(cluster) if x["metadata"]["name"] not in seen]), 30, "the next run's Jobs to finish")
    finally:
        cluster.vitess.fail_backups_of("customer", "-80", fail=False)
    state, _ = run(cluster, method="operator", prune=False)
    assert state.is_failed()
    assert "backup failed for shard(s) customer/-80 (the schedule's newest Job" in state.message
    assert "kubectl logs -n example job/" in state.message
    check = next(f for f in backup_age_checks(cluster.k, NS, "example", 26) if f.name == "backup schedule vtflow")
    assert check.level == "warn" and "customer/-80: Job" in check.problem and "BackoffLimitExceeded" in check.problem


def test_method_flow_takes_the_schedule_out_again(cluster):
    from helpers import wait_until

    # suspended: the double's schedule clock is days ahead by now, so it would run at once
    user_entry = {"name": "mine", "schedule": "30 4 * * *", "resources": {}, "suspend": True,
                  "strategies": [{"name": "commerce-x-x", "keyspace": "commerce", "shard": "-"}]}
    vc = cluster.get("planetscale.com/vitessclusters", NS, "example")
    cluster.k.patch("planetscale.com/v2", "VitessCluster", "example", NS,
                    {"spec": {"backup": {"schedules": vc["spec"]["backup"]["schedules"] + [user_entry]}}}, manager="t")
    state, _ = run(cluster, prune=False)
    assert state.is_completed(), state.message
    left = cluster.get("planetscale.com/vitessclusters", NS, "example")["spec"]["backup"]["schedules"]
    assert [s["name"] for s in left] == ["mine"], "the user's own schedule is kept"
    wait_until(lambda: [o["spec"]["name"] for o in cluster.list("planetscale.com/vitessbackupschedules", NS)] == ["mine"],
               10, "vtflow's VitessBackupSchedule to go")


def test_method_operator_is_refused_before_v2_13_before_any_change(cluster):
    # last in the module: the operator Deployment is set to an older release
    dep = cluster.get("apps/deployments", NS, "vitess-operator")
    image = dep["spec"]["template"]["spec"]["containers"][0]["image"]
    cluster.k.patch("apps/v1", "Deployment", "vitess-operator", NS, {"spec": {"template": {"spec": {"containers": [
        {"name": dep["spec"]["template"]["spec"]["containers"][0]["name"],
         "image": image.rsplit(":", 1)[0] + ":v2.10.4"}]}}}}, strategic=True)
    before = cluster.get("planetscale.com/vitessclusters", NS, "example")
    state, _ = run(cluster, method="operator")
    assert state.is_failed()
    assert "runs vitess-operator v2.10.4, which has no VitessBackupSchedule (native backup schedules came with v2.13)" \
        in state.message and "method flow" in state.message
    after = cluster.get("planetscale.com/vitessclusters", NS, "example")   # its status moves on: the operator runs
    assert after["metadata"]["generation"] == before["metadata"]["generation"] and after["spec"] == before["spec"]
