"""The health-check flow against a deployed cluster on the Kubernetes API double (vtgate proxying
to a MariaDB of this module's own), on this session's Prefect server: healthy, then each fault
the issue names, each undone after its test."""

import asyncio
from datetime import datetime, timedelta, timezone

import pytest
from prefect.artifacts import Artifact

from flows.health import health_check
from helpers import deployed_cluster, nodes_block, save_nodes_block, wait_until
from tasks.health import HealthThresholds
from testbed import free_port

NS = "example"


def wait_for(fn, what: str, timeout: float = 15):
    return wait_until(fn, timeout, what)


def restarts_of(cluster, pod: str, container: str) -> int:
    status = cluster.k.get("v1", "Pod", pod, NS)["status"]
    return next(c.get("restartCount", 0) for c in status["containerStatuses"] if c["name"] == container)


@pytest.fixture(scope="module")
def cluster(prefect_server, tmp_path_factory):
    with deployed_cluster(tmp_path_factory.mktemp("health")) as d:
        yield d


def check(d, nodes_block=None, **thresholds):
    state = asyncio.run(health_check(target_block=f"tgt-{d.tag}", mysql_block=f"my-{d.tag}", nodes_block=nodes_block,
                                     thresholds=HealthThresholds(**thresholds), return_state=True))
    checks = state.result(raise_on_failure=False)
    return state, {c.name: c for c in checks} if isinstance(checks, list) else Artifact.get("health-example").data


def levels(artifact: str) -> dict[str, str]:
    """check name -> level, from the artifact's table (what a user reads in the UI)."""
    return {name: level for name, (level, _, _) in rows(artifact).items()}


def rows(artifact: str) -> dict[str, tuple[str, str, str]]:
    """check name -> (level, problem, fix), from the artifact: the level in the history grid's newest
    column, the problem and fix from the findings listed below it."""
    out, details = {}, {}
    for line in artifact.splitlines():
        cells = [c.strip() for c in line.strip().removeprefix("|").removesuffix("|").split("|")]
        if line.startswith("|") and len(cells) >= 2 and cells[1] in ("ok", "WARN", "FAIL"):
            out[cells[0]] = cells[1]
        elif line.startswith("- "):
            for name in out:
                for level in ("ok", "warn", "fail"):
                    if line.startswith(f"- {name}: {level}"):
                        rest = line.removeprefix(f"- {name}: {level}").removeprefix(": ")
                        problem, _, fix = rest.partition(". Fix: ")
                        details[name] = (problem.rstrip("."), fix.rstrip("."))
    return {name: (level, *details.get(name, ("", ""))) for name, level in out.items()}


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
    # every check ok; no restore drill has run on this cluster, which the check says (a warning)
    drill = checks.pop("restore drill")
    assert drill.level == "warn" and "no restore drill has run" in drill.problem, drill.line
    assert {c.level for c in checks.values()} == {"ok"}, {n: c.line for n, c in checks.items() if c.level != "ok"}
    assert {"cluster status", "pods etcd", "pods vttablet", "pods vtadmin", "pods vtorc", "vtgate", "tablets commerce/-",
            "backup commerce/-", "restarts"} <= set(checks)
    assert sum(n.startswith("replication commerce/-") for n in checks) == 2
    assert checks["restarts"].problem.startswith(("first check: baseline recorded", "no container restarted"))
    state, checks = check(cluster)
    assert checks["restarts"].problem == "no container restarted since the last check"
    assert Artifact.get("health-example").data.startswith("# Health of example: WARN\n\n13 ok, 1 warnings, 0 failed")


def test_a_crash_looping_replica_warns_on_pods_and_restarts_and_fails_its_shard(cluster):
    pod, alias = tablet_pod(cluster, "REPLICA")
    check(cluster)  # baseline
    before = restarts_of(cluster, pod, "vttablet")
    cluster.kubelet.crash_loop(cluster, NS, pod, "vttablet", on=True)
    try:
        wait_for(lambda: not next(t for t in cluster.vitess.tablets(cluster, NS, "example") if t.alias == alias).serving,
                 what="replica down")
        wait_for(lambda: restarts_of(cluster, pod, "vttablet") > before, what="a restart counted")
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
    level, problem, fix = rows(artifact)["tablets commerce/-"]
    assert problem.startswith("no serving PRIMARY") and "vtorc elects a PRIMARY" in fix and "Fix:" not in problem
    assert "vtorc elects a PRIMARY" not in state.message, "the state message names problems (Finding.short), not fixes"


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


def test_nodes_are_probed_for_headroom_and_an_unreachable_one_is_named(cluster, node_bed, nodes):
    ghost = {"name": "ghost", "address": "127.0.0.99", "port": free_port("127.0.0.99")}
    name = save_nodes_block(nodes_block(node_bed, nodes[:2], extra_nodes=[ghost]))
    # a generous backup age: the test before this one leaves an old backup behind
    state, artifact = check(cluster, nodes_block=name, min_free_memory_gib=0, min_free_disk_gib=0.1,
                            max_backup_age_h=10 ** 4)
    assert state.is_failed()
    got = rows(artifact)
    assert {n: got[n][0] for n in ("node node1 memory", "node node1 disk", "node node2 memory", "node node2 disk")} == {
        "node node1 memory": "ok", "node node1 disk": "ok", "node node2 memory": "ok", "node node2 disk": "ok"}
    assert " GiB free on /" in got["node node1 disk"][1] and " GiB available" in got["node node1 memory"][1]
    level, problem, fix = got["node ghost"]
    assert level == "FAIL" and problem.startswith("could not check: node ghost (127.0.0.99:") and "sshd" in fix
    assert "1 health check(s) failed: node ghost: could not check: " in state.message
    assert got["vtgate"][0] == "ok" and got["tablets commerce/-"][0] == "ok"

    # the same nodes against health's own disk threshold: the disk fails with its fix, memory is untouched
    name = save_nodes_block(nodes_block(node_bed, nodes[:2]))
    state, artifact = check(cluster, nodes_block=name, min_free_memory_gib=0, min_free_disk_gib=4096,
                            max_backup_age_h=10 ** 4)
    assert state.is_failed()
    got = rows(artifact)
    assert got["node node1 disk"][0] == "FAIL" and "(< 4096 GiB)" in got["node node1 disk"][1]
    assert "crictl rmi --prune" in got["node node1 disk"][2] and got["node node1 memory"][0] == "ok"
    assert "node node1 disk: " in state.message and "node node2 disk: " in state.message


def test_the_artifact_shows_the_trend_of_recent_runs(cluster):
    from flows.health import HISTORY_RUNS
    from prefect.variables import Variable

    for _ in range(2):
        state, checks = check(cluster, max_backup_age_h=10 ** 4)
    artifact = Artifact.get("health-example").data
    header = next(line for line in artifact.splitlines() if line.startswith("| check |"))
    assert header.count("|") - 2 >= 2, header  # at least this run and the one before, newest first
    assert {n: lv for n, lv in levels(artifact).items() if n in checks} == {
        n: {"ok": "ok", "warn": "WARN", "fail": "FAIL"}[c.level] for n, c in checks.items()}
    assert max(len(line) for line in artifact.splitlines() if line.startswith("| ")) < 40 + 15 * HISTORY_RUNS
    history = Variable.get("vtflow-health-history-example")
    assert 2 <= len(history) <= HISTORY_RUNS
