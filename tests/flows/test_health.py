"""The health-check flow against a deployed cluster on the Kubernetes API double (vtgate proxying
to a MariaDB of this module's own), on this session's Prefect server: healthy, then each fault
the issue names, each undone after its test."""

import asyncio
import time
from datetime import datetime, timedelta, timezone

import pytest
from prefect.artifacts import Artifact

from flows.health import health_check
from helpers import deployed_cluster
from tasks.health import HealthThresholds

NS = "example"


def wait_for(fn, what: str, timeout: float = 15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := fn():
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def cluster(prefect_server, tmp_path_factory):
    with deployed_cluster(tmp_path_factory.mktemp("health")) as d:
        yield d


def check(d, **thresholds):
    state = asyncio.run(health_check(target_block=f"tgt-{d.tag}", mysql_block=f"my-{d.tag}",
                                     thresholds=HealthThresholds(**thresholds), return_state=True))
    checks = state.result(raise_on_failure=False)
    return state, {c.name: c for c in checks} if isinstance(checks, list) else Artifact.get("health-example").data


def levels(artifact: str) -> dict[str, str]:
    """check name -> level, from the artifact's table (what a user reads in the UI)."""
    out = {}
    for line in artifact.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 3 and cells[1] in ("ok", "WARN", "FAIL"):
            out[cells[0]] = cells[1]
    return out


def tablet_pod(d, kind: str) -> tuple[str, str]:
    """(pod name, alias) of the shard's PRIMARY or of one REPLICA."""
    tablets = d.vitess.tablets(d, NS, "example")
    t = next(t for t in tablets if t.type == kind)
    return t.pod, t.alias


def healthy_again(d):
    wait_for(lambda: all(t.serving for t in d.vitess.tablets(d, NS, "example"))
             and all(c["status"] == "True" for p in d.list("pods", NS) for c in p["status"].get("conditions", [])
                     if c["type"] == "Ready"), what="cluster healthy again", timeout=30)


def test_a_healthy_cluster_passes_and_records_its_restart_baseline(cluster):
    state, checks = check(cluster)
    assert state.is_completed(), state.message
    assert {c.level for c in checks.values()} == {"ok"}, {n: c.message for n, c in checks.items() if c.level != "ok"}
    assert {"cluster status", "pods etcd", "pods vttablet", "pods vtadmin", "pods vtorc", "vtgate", "tablets commerce/-",
            "backup commerce/-", "restarts"} <= set(checks)
    assert sum(n.startswith("replication commerce/-") for n in checks) == 2
    assert checks["restarts"].message.startswith(("first check: baseline recorded", "no container restarted"))
    state, checks = check(cluster)
    assert checks["restarts"].message == "no container restarted since the last check"
    assert Artifact.get("health-example").data.startswith("# Health of example: ok")


def test_a_crash_looping_replica_warns_on_pods_and_restarts_and_fails_its_shard(cluster):
    pod, alias = tablet_pod(cluster, "REPLICA")
    check(cluster)  # baseline
    cluster.kubelet.crash_loop(cluster, NS, pod, "vttablet", on=True)
    try:
        wait_for(lambda: not next(t for t in cluster.vitess.tablets(cluster, NS, "example") if t.alias == alias).serving,
                 what="replica down")
        time.sleep(cluster.config.crash_interval * 1.5)  # a restart counted
        state, artifact = check(cluster)
    finally:
        cluster.kubelet.crash_loop(cluster, NS, pod, "vttablet", on=False)
        healthy_again(cluster)
    assert state.is_failed()
    assert f"tablets commerce/-: 1 of 2 REPLICA tablets serving; not serving: {alias} (REPLICA, NOT_SERVING)" in state.message
    got = levels(artifact)
    assert got["pods vttablet"] == "WARN" and got["tablets commerce/-"] == "FAIL" and got["restarts"] == "WARN"
    assert got["vtgate"] == "ok" and got["backup commerce/-"] == "ok"
    assert f"{pod}/vttablet +" in artifact


def test_a_lagging_replica_fails_past_the_threshold(cluster):
    _, alias = tablet_pod(cluster, "REPLICA")
    cluster.vitess.set_replication_lag(alias, 120)
    try:
        state, artifact = check(cluster, max_replication_lag_s=30)
    finally:
        cluster.vitess.set_replication_lag(alias, 0)
    assert state.is_failed()
    assert f"replication commerce/- {alias}: 120 s behind its primary (limit 30 s)" in state.message
    assert levels(artifact)[f"replication commerce/- {alias}"] == "FAIL"
    cluster.vitess.set_replication_lag(alias, 20)
    try:
        state, checks = check(cluster, max_replication_lag_s=30)
    finally:
        cluster.vitess.set_replication_lag(alias, 0)
    assert state.is_completed() and checks[f"replication commerce/- {alias}"].level == "warn"


def test_no_serving_primary_fails_the_shard_and_says_to_read_vtorc(cluster):
    # one primary down is repaired (the simulated vtorc promotes a replica, as the real one does):
    # with every tablet of the shard down, none can be
    pods = [t.pod for t in cluster.vitess.tablets(cluster, NS, "example")]
    for pod in pods:
        cluster.kubelet.set_ready(cluster, NS, pod, "vttablet", False)
    try:
        wait_for(lambda: not any(t.serving for t in cluster.vitess.tablets(cluster, NS, "example")), what="shard down")
        state, artifact = check(cluster)
    finally:
        for pod in pods:
            cluster.kubelet.set_ready(cluster, NS, pod, "vttablet", True)
        healthy_again(cluster)
    assert state.is_failed()
    assert "tablets commerce/-: no serving PRIMARY" in state.message
    assert "vtorc elects a PRIMARY" in artifact and levels(artifact)["tablets commerce/-"] == "FAIL"


def test_vtgate_down_is_reported_and_the_other_checks_still_run(cluster):
    pod = cluster.list("pods", NS, label_selector="planetscale.com/component=vtgate")[0]["metadata"]["name"]
    cluster.kubelet.set_ready(cluster, NS, pod, "vtgate", False)
    try:
        wait_for(lambda: not any(s.get("addresses") for s in
                                 (cluster.get("endpoints", NS, "example-vtgate-nodeport") or {}).get("subsets") or []),
                 what="no vtgate endpoints")
        state, artifact = check(cluster)
    finally:
        cluster.kubelet.set_ready(cluster, NS, pod, "vtgate", True)
        healthy_again(cluster)
    assert state.is_failed()
    got = levels(artifact)
    assert got["vtgate"] == "FAIL" and "vtgate: could not connect" in state.message
    assert got["pods vtgate"] == "FAIL" and got["pods vttablet"] == "ok" and got["backup commerce/-"] == "ok"


def test_an_old_backup_fails_against_the_age_limit(cluster):
    now = datetime.now(timezone.utc)
    old = cluster.vitess.add_backup(NS, "example", "commerce", "-", now - timedelta(hours=50))
    fresh = [b.name for b in cluster.vitess.list_backups(NS, "example", "commerce", "-") if b.name != old.name]
    pod = cluster.k.ready_pod(NS, "planetscale.com/component=vtctld", "vtctld")
    for name in fresh:
        rc, _, err = cluster.k.exec(NS, pod, "vtctld", ["vtctldclient", "--server", "localhost:15999", "RemoveBackup",
                                                        "commerce/-", name])
        assert rc == 0, err
    state, artifact = check(cluster, max_backup_age_h=26)
    assert state.is_failed()
    assert "backup commerce/-: the newest complete backup is 50.0 h old (limit 26 h)" in state.message
    assert levels(artifact)["backup commerce/-"] == "FAIL"
    state, checks = check(cluster, max_backup_age_h=72)
    assert checks["backup commerce/-"].level == "ok"
