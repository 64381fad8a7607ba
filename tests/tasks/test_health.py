"""tasks/health.py: the judgements are pure and tested on hand-made inputs; the flow test
(tests/flows/test_health.py) runs them against the double."""

import subprocess
from datetime import datetime, timedelta, timezone

from tasks.cluster import ClusterSpec, render
from helpers import IMAGES
from tasks.health import (HealthThresholds, NodeHeadroom, backup_checks, disk_headroom_check, expected_components,
                          guarded, headroom_of, headroom_script, lag_checks, memory_headroom_check, node_checks,
                          pod_checks, restart_check, restart_counts, status_check)
from tasks.node_prep import parse_probe
from vtflow.errors import UnreachableError

VC = next(o for o in render(ClusterSpec(**IMAGES), "example", "example", "10.0.0.11", "user", "pw") if o["kind"] == "VitessCluster")


def _pod(name, component, ready=True, restarts=0, uid=None):
    return {"metadata": {"name": name, "uid": uid or f"{name}-uid-0000", "labels": {"planetscale.com/component": component}},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                       "containerStatuses": [{"name": "main", "restartCount": restarts}]}}


def test_expected_components_follow_the_spec():
    assert expected_components(VC) == ["etcd", "vtctld", "vtgate", "vttablet", "vtadmin", "vtorc"]
    bare = {"spec": {"keyspaces": [{"name": "k"}], "globalLockserver": {"external": {"address": "x"}}}}
    assert expected_components(bare) == ["vtctld", "vtgate", "vttablet"]


def test_pod_checks_levels():
    pods = [_pod(f"e{i}", "etcd") for i in range(3)] + [_pod("ctld", "vtctld"), _pod("gate", "vtgate", ready=False),
                                                         _pod("t1", "vttablet"), _pod("t2", "vttablet", ready=False),
                                                         _pod("adm", "vtadmin")]
    by = {c.name: c for c in pod_checks(VC, pods)}
    assert by["pods etcd"].level == "ok" and by["pods etcd"].problem == "3 of 3 ready"
    assert by["pods vtgate"].level == "fail" and "gate" in by["pods vtgate"].problem
    assert by["pods vttablet"].level == "warn" and "not ready: t2" in by["pods vttablet"].problem
    assert by["pods vtorc"].level == "fail" and "no vtorc pod exists" in by["pods vtorc"].problem
    assert "kubectl logs deploy/vitess-operator" in by["pods vtorc"].fix
    assert by["pods vtgate"].fix == "`kubectl describe pod` them and read their logs"


def test_restarts_are_counted_since_the_last_check_and_a_new_pod_starts_from_zero():
    first, names = restart_counts([_pod("t1", "vttablet", restarts=2, uid="aaaaaaaa-1"), _pod("t2", "vttablet")])
    assert first == {"aaaaaaaa/main": 2}  # containers that never restarted are not stored
    assert restart_check(first, None, names).problem == "first check: baseline recorded (2 restarts so far)"
    assert restart_check(first, first, names).level == "ok"
    later, names = restart_counts([_pod("t1", "vttablet", restarts=3, uid="aaaaaaaa-1"),
                                   _pod("t2", "vttablet", restarts=1, uid="bbbbbbbb-2")])
    c = restart_check(later, first, names)
    assert c.level == "warn" and "t1/main +1" in c.problem and "t2/main +1" in c.problem and "--previous" in c.fix
    replaced, names = restart_counts([_pod("t1", "vttablet", restarts=0, uid="cccccccc-3")])
    assert restart_check(replaced, later, names).level == "ok"


def test_status_check_uses_the_operators_status():
    assert status_check(None).level == "fail"
    vc = {**VC, "metadata": {**VC["metadata"], "generation": 1}, "status": {"observedGeneration": 1}}
    c = status_check(vc)
    assert c.level == "fail" and "etcd lockserver" in c.problem and "operator's log" in c.fix


def test_lag_checks_threshold_and_broken_replication():
    ok = '{"EventStreamRunning":"Yes","EventApplierRunning":"Yes","LastError":""}'
    rows = [{"Keyspace": "commerce", "Shard": "-", "Alias": "zone1-1", "ReplicationLag": "3", "ReplicationHealth": ok},
            {"Keyspace": "commerce", "Shard": "-", "Alias": "zone1-2", "ReplicationLag": "20", "ReplicationHealth": ok},
            {"Keyspace": "commerce", "Shard": "-", "Alias": "zone1-3", "ReplicationLag": "120", "ReplicationHealth": ok},
            {"Keyspace": "commerce", "Shard": "-", "Alias": "zone1-4", "ReplicationLag": "0",
             "ReplicationHealth": '{"EventStreamRunning":"No","EventApplierRunning":"No","LastError":"replication is not running"}'}]
    checks = lag_checks(rows, 30)
    assert [c.level for c in checks] == ["ok", "warn", "fail", "fail"]
    assert "120 s behind its primary (limit 30 s)" in checks[2].problem and "not running" in checks[3].problem
    assert "long transactions" in checks[2].fix and "vtorc" in checks[3].fix


def test_backup_checks():
    now = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
    fresh = {"time": (now - timedelta(hours=3)).isoformat(), "status": "COMPLETE"}
    old = {"time": {"seconds": int((now - timedelta(hours=50)).timestamp())}, "status": "COMPLETE"}
    incomplete = {"time": now.isoformat(), "status": "INCOMPLETE"}
    checks = backup_checks(True, {("c", "-"): [old, fresh], ("c", "-80"): [old], ("c", "80-"): [incomplete]}, now, 26)
    assert [(c.name, c.level) for c in checks] == [("backup c/-", "ok"), ("backup c/-80", "fail"), ("backup c/80-", "fail")]
    assert "50.0 h old (limit 26 h)" in checks[1].problem and "no complete backup" in checks[2].problem
    assert "schedule" in checks[1].fix and "backup flow" in checks[2].fix
    [c] = backup_checks(False, {}, now, 26)
    assert c.level == "warn" and "no backup location" in c.problem and "cluster.backup" in c.fix


def test_guarded_turns_an_error_into_a_failed_check_naming_it():
    def boom():
        raise UnreachableError("MySQL user@10.0.0.11:30306", "cannot connect.", "check vtgate.")
    [c] = guarded("vtgate", boom)
    assert c.level == "fail" and c.problem.startswith("could not check: MySQL user@10.0.0.11:30306: cannot connect.")
    assert c.fix == "check vtgate."
    [c] = guarded("x", lambda: 1 / 0)
    assert c.level == "fail" and "ZeroDivisionError" in c.problem


def test_node_headroom_is_judged_by_healths_own_thresholds():
    t = HealthThresholds(min_free_memory_gib=1, min_free_disk_gib=5)
    roomy = NodeHeadroom(node="n1", available_memory_gib=3.0, free_disk_gib=40.0)
    assert [(f.name, f.level, f.problem) for f in node_checks(roomy, t)] == [
        ("node n1 memory", "ok", "3.0 GiB available"), ("node n1 disk", "ok", "40.0 GiB free on /var/lib/rancher")]
    tight = NodeHeadroom(node="n1", available_memory_gib=0.4, free_disk_gib=2.0, disk_path="/var/lib")
    mem, disk = memory_headroom_check(tight, 1), disk_headroom_check(tight, 5)
    assert (mem.level, mem.problem) == ("warn", "only 0.4 GiB available (< 1 GiB)") and "ps aux" in mem.fix
    assert (disk.level, disk.problem) == ("fail", "2.0 GiB free on /var/lib (< 5 GiB)") and "crictl rmi" in disk.fix
    unknown = NodeHeadroom(node="n1")
    assert [f.level for f in node_checks(unknown, t)] == ["fail", "fail"]


def test_the_headroom_probe_is_read_only_and_reads_real_facts():
    script = headroom_script("/var/lib/rancher/k3s")
    for verb in ("install", "rm ", "systemctl", "sudo", "> /"):
        assert verb not in script
    r = subprocess.run(["sh", "-s"], input=script, capture_output=True, text=True, timeout=30)
    facts = parse_probe(r.stdout)
    assert facts["end"] == "1"
    h = headroom_of("here", facts)
    assert h.available_memory_gib > 0 and h.free_disk_gib > 0 and h.disk_path.startswith("/")


def test_schedule_checks_warn_on_a_failed_newest_job_per_shard():
    import copy

    from tasks.health import schedule_checks

    vc = copy.deepcopy(VC)
    vc["spec"]["backup"]["schedules"] = [{"name": "vtflow"}, {"name": "mine"}, {"name": "lost"}]
    vbs = [{"metadata": {"name": "example-vbsc-vtflow-1"}, "spec": {"name": "vtflow"}},
           {"metadata": {"name": "example-vbsc-mine-2"}, "spec": {"name": "mine"},
            "status": {"nextScheduledTimes": {"s": "2026-12-03T02:00:00Z"}}}]

    def job(name, at, failed, shard):
        return {"metadata": {"name": name, "labels": {"planetscale.com/backup-schedule": "example-vbsc-vtflow-1",
                                                      "planetscale.com/keyspace": "commerce", "planetscale.com/shard": shard},
                             "annotations": {"planetscale.com/backup-scheduled-at": at}},
                "status": {"conditions": [{"type": "Failed" if failed else "Complete", "status": "True",
                                           "reason": "BackoffLimitExceeded" if failed else ""}]}}
    jobs = [job("old-fail", "2026-12-01T02:00:00Z", True, "x-x"), job("new-ok", "2026-12-02T02:00:00Z", False, "x-x"),
            job("80-fail", "2026-12-02T02:00:00Z", True, "80-x")]
    checks = {f.name: f for f in schedule_checks(vc, vbs, jobs, "example")}
    assert checks["backup schedule vtflow"].level == "warn"
    assert checks["backup schedule vtflow"].problem == ("the newest Job failed for commerce/80-: Job 80-fail "
                                                         "(2026-12-02T02:00:00Z) BackoffLimitExceeded")
    assert "kubectl logs -n example job/80-fail" in checks["backup schedule vtflow"].fix
    assert (checks["backup schedule mine"].level, checks["backup schedule mine"].problem) == (
        "ok", "no Job yet; next run 2026-12-03T02:00:00Z")
    assert checks["backup schedule lost"].level == "warn" and "v2.13" in checks["backup schedule lost"].fix
    # the newer success of the x-x shard wins over its older failure
    ok = {f.name: f for f in schedule_checks(vc, vbs, jobs[:2], "example")}["backup schedule vtflow"]
    assert ok.level == "ok"
