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
