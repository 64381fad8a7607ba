"""The simulated VitessBackupSchedule controller, driven by upstream's own example of v2.17:
the VitessCluster's spec.backup.schedules become VitessBackupSchedules, whose Jobs run at the
cron time (the controller's clock moved on, not waited for) and leave backups; a failing shard
makes them fail; history limits hold. Everything is read through the official client."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from kubernetes import client

from kubedouble.vitess.backupschedule import (cron_from_frequency, job_name, join_with_constraints, next_runs,
                                              schedule_name)
from vitess_helpers import NS, apply, apply_file, cluster_ready, cluster_status, docs, make_namespace, start_double, wait_for
from vtflow.kube import discovery_client

SCHEDULE_LABEL = "planetscale.com/backup-schedule"


@pytest.fixture(scope="module")
def scheduled(kd_mariadb, tmp_path_factory):
    d, api = start_double(tmp_path_factory.mktemp("vbs"), nodes=3, node_cpu="8", node_memory="16Gi",
                          operators=True, mysql_backend=f"{kd_mariadb.host}:{kd_mariadb.port}",
                          mysql_user=kd_mariadb.user, mysql_password=kd_mariadb.password)
    try:
        # the release's full CRDs (operator-latest.yaml, as vtflow's deploy fetches it, with the
        # release's image): examples/operator.yaml is the manifest its upgrade test starts from
        dyn = discovery_client(api)
        make_namespace(api)
        for doc in docs("operator-latest.yaml"):
            for c in (doc.get("spec") or {}).get("template", {}).get("spec", {}).get("containers") or []:
                if c.get("image") == "vitess-operator-pr:latest":
                    c["image"] = "planetscale/vitess-operator:v2.17.0"
                    c.pop("imagePullPolicy", None)
            apply(dyn, doc)
        dyn.resources.invalidate_cache()
        apply_file(dyn, "101_initial_cluster_backup.yaml")
        wait_for(lambda: cluster_ready(cluster_status(dyn)), timeout=20, what="VitessCluster ready")
        apply_file(dyn, "103_initial_cluster_vtctldclient_backup_schedule.yaml")
        yield d, api, dyn
    finally:
        d.stop()


def schedules(dyn) -> dict[str, dict]:
    rc = dyn.resources.get(api_version="planetscale.com/v2", kind="VitessBackupSchedule")
    return {o["metadata"]["name"]: o for o in rc.get(namespace=NS).to_dict()["items"]}


def jobs(api, vbs: str) -> list:
    return client.BatchV1Api(api).list_namespaced_job(NS, label_selector=f"{SCHEDULE_LABEL}={vbs}").items


def finished(job) -> str | None:
    for c in (job.status.conditions if job.status else None) or []:
        if c.status == "True" and c.type in ("Complete", "Failed"):
            return c.type
    return None


def test_names_follow_the_operator_rules():
    # JoinWithConstraints: lower case, other characters to '-', the hash of the original parts
    assert schedule_name("example", "every-minute") == f"example-vbsc-every-minute-{_hash('example', 'vbsc', 'every-minute')}"
    assert join_with_constraints(63, True, "9Ab_c") == f"x9ab-c-{_hash('9Ab_c')}"
    long = job_name("x" * 70, "commerce", "x-x", datetime(2026, 1, 1, tzinfo=timezone.utc))
    assert len(long) == 63 and "---" in long
    # generateCronFromFrequency: a stable stagger inside the interval
    assert cron_from_frequency(1440, "example", "commerce", "-", "all") == cron_from_frequency(1440, "example", "commerce", "-", "all")
    assert cron_from_frequency(15, "c", "k", "-", "s").endswith("/15 * * * *")


def _hash(*parts):
    from kubedouble.vitess.names import name_hash
    return name_hash(*parts)


def test_next_runs_as_get_next_schedule():
    t0 = datetime(2026, 1, 1, 0, 0, 30, tzinfo=timezone.utc)
    assert next_runs("* * * * *", t0, None, t0 + timedelta(seconds=20), None, 100) == (
        None, datetime(2026, 1, 1, 0, 1, tzinfo=timezone.utc))
    missed, _ = next_runs("* * * * *", t0, None, t0 + timedelta(minutes=3), None, 100)
    assert missed == datetime(2026, 1, 1, 0, 3, tzinfo=timezone.utc)
    with pytest.raises(ValueError, match="too many missed runs"):
        next_runs("* * * * *", t0, None, t0 + timedelta(minutes=5), None, 3)
    with pytest.raises(ValueError, match="unable to parse schedule"):
        next_runs("61 * * * *", t0, None, t0, None, 100)


def test_schedules_become_objects_and_jobs_make_backups(scheduled, kd_mariadb):
    d, api, dyn = scheduled
    vbs = schedules(dyn)
    names_ = {schedule_name("example", "vtbackup-every-minute"), schedule_name("example", "vtctldclient-every-minute")}
    assert set(vbs) == names_
    ctl = vbs[schedule_name("example", "vtctldclient-every-minute")]
    vc = dyn.resources.get(api_version="planetscale.com/v2", kind="VitessCluster").get(name="example", namespace=NS)
    assert ctl["spec"]["cluster"] == "example" and ctl["spec"]["image"] == vc.spec.images.vtctld
    assert ctl["metadata"]["ownerReferences"][0]["kind"] == "VitessCluster"
    before = len(d.vitess.list_backups(NS, "example", "commerce", "-"))
    assert jobs(api, ctl["metadata"]["name"]) == []   # nothing before the first minute passed
    d.backup_schedules.advance(d, 61)
    for name in names_:
        job = wait_for(lambda: [j for j in jobs(api, name) if finished(j)], timeout=10, what=f"a finished Job of {name}")[0]
        assert finished(job) == "Complete", job.status
        labels = job.metadata.labels
        assert labels["planetscale.com/cluster"] == "example" and labels["planetscale.com/keyspace"] == "commerce"
        assert labels["planetscale.com/shard"] == "x-x"
        assert job.metadata.annotations["planetscale.com/backup-scheduled-at"].endswith("Z")
        assert job.metadata.owner_references[0].kind == "VitessBackupSchedule"
    vtctld_job = jobs(api, ctl["metadata"]["name"])[0]
    c = vtctld_job.spec.template.spec.containers[0]
    assert (c.name, c.command, c.args[1:]) == ("vtctldclient", ["/vt/bin/vtctldclient"], ["BackupShard", "commerce/-"])
    assert c.args[0].startswith("--server=example-vtctld-") and c.args[0].endswith(":15999")
    assert vtctld_job.metadata.labels["planetscale.com/backup-method"] == "vtctldclient"
    # the vtbackup Job has a claim of its own name
    vtb = jobs(api, schedule_name("example", "vtbackup-every-minute"))[0]
    assert client.CoreV1Api(api).read_namespaced_persistent_volume_claim(vtb.metadata.name, NS)
    after = d.vitess.list_backups(NS, "example", "commerce", "-")
    assert len(after) == before + 2
    objs = dyn.resources.get(api_version="planetscale.com/v2", kind="VitessBackup").get(namespace=NS).to_dict()["items"]
    assert {b.name for b in after} <= {(o.get("status") or {}).get("storageName") for o in objs}
    status = schedules(dyn)[ctl["metadata"]["name"]]["status"]
    assert set(status["lastScheduledTimes"]) == {"commerce-x"} and set(status["nextScheduledTimes"]) == {"commerce-x"}


def test_a_failing_shard_fails_the_jobs_and_history_limits_hold(scheduled):
    d, api, dyn = scheduled
    name = schedule_name("example", "vtctldclient-every-minute")
    d.vitess.fail_backups_of("commerce", "-")
    try:
        for minute in range(4):   # failedJobsHistoryLimit: 3 in the example
            seen = {j.metadata.name for j in jobs(api, name)}
            d.backup_schedules.advance(d, 60)
            wait_for(lambda: [j for j in jobs(api, name) if j.metadata.name not in seen and finished(j)],
                     timeout=15, what=f"run {minute} of {name} to finish")
    finally:
        d.vitess.fail_backups_of("commerce", "-", fail=False)
    d.backup_schedules.advance(d, 0)   # one more pass: the oldest failed Job goes
    failed = wait_for(lambda: (lambda f: f if len(f) == 3 else None)(
        [j for j in jobs(api, name) if finished(j) == "Failed"]), timeout=10, what="three failed Jobs kept")
    assert all(c.reason == "BackoffLimitExceeded" for j in failed for c in j.status.conditions if c.type == "Failed")
    pods = client.CoreV1Api(api).list_namespaced_pod(NS, label_selector=f"job-name={failed[0].metadata.name}").items
    assert pods and all(p.status.phase == "Failed" for p in pods)
    assert len([j for j in jobs(api, name) if finished(j) == "Complete"]) <= 2   # successfulJobsHistoryLimit: 2


def test_removing_the_schedule_removes_its_object(scheduled):
    d, api, dyn = scheduled
    rc = dyn.resources.get(api_version="planetscale.com/v2", kind="VitessCluster")
    vc = rc.get(name="example", namespace=NS).to_dict()
    kept = [s for s in vc["spec"]["backup"]["schedules"] if s["name"] == "vtctldclient-every-minute"]
    rc.patch(name="example", namespace=NS, body={"spec": {"backup": {"schedules": kept}}},
             content_type="application/merge-patch+json")
    wait_for(lambda: set(schedules(dyn)) == {schedule_name("example", "vtctldclient-every-minute")}, timeout=10,
             what="the vtbackup schedule to go")


def test_the_crd_refuses_what_the_operator_would_not_get(scheduled):
    _, _, dyn = scheduled
    rc = dyn.resources.get(api_version="planetscale.com/v2", kind="VitessCluster")
    bad = {"spec": {"backup": {"schedules": [{"name": "Bad_Name", "schedule": "* * * * *", "resources": {},
                                              "strategies": [{"name": "s", "keyspace": "commerce", "shard": "-"}],
                                              "concurrencyPolicy": "Sometimes"}]}}}
    with pytest.raises(client.ApiException) as e:
        rc.patch(name="example", namespace=NS, body=bad, content_type="application/merge-patch+json")
    assert e.value.status == 422 and "concurrencyPolicy" in e.value.body and "name" in e.value.body


@pytest.fixture(scope="module")
def scheduled_v2_13(kd_mariadb, tmp_path_factory):
    """v2.13.1 (its full CRDs, its image) running its own 101_initial_cluster_backup_schedule.yaml."""
    import yaml

    from kubedouble_helpers import UPSTREAM

    d, api = start_double(tmp_path_factory.mktemp("vbs13"), nodes=3, node_cpu="8", node_memory="16Gi",
                          operators=True, mysql_backend=f"{kd_mariadb.host}:{kd_mariadb.port}",
                          mysql_user=kd_mariadb.user, mysql_password=kd_mariadb.password)
    folder = UPSTREAM / "vitess-operator-v2.13.1" / "examples"
    if not folder.exists():
        pytest.skip(f"{folder} is not present (set VTFLOW_UPSTREAM_DIR)")
    try:
        dyn = discovery_client(api)
        make_namespace(api)
        for doc in yaml.safe_load_all((folder / "operator-latest.yaml").read_text()):
            for c in ((doc or {}).get("spec") or {}).get("template", {}).get("spec", {}).get("containers") or []:
                if c.get("image") == "vitess-operator-pr:latest":
                    c["image"] = "planetscale/vitess-operator:v2.13.1"
                    c.pop("imagePullPolicy", None)
            if doc:
                apply(dyn, doc)
        dyn.resources.invalidate_cache()
        for doc in yaml.safe_load_all((folder / "101_initial_cluster_backup_schedule.yaml").read_text()):
            if doc:
                apply(dyn, doc)
        wait_for(lambda: cluster_ready(cluster_status(dyn)), timeout=20, what="VitessCluster ready")
        yield d, api, dyn
    finally:
        d.stop()


def test_v2_13_runs_one_job_per_schedule_with_a_shell_chain(scheduled_v2_13):
    d, api, dyn = scheduled_v2_13
    name = schedule_name("example", "every-minute")
    assert name in schedules(dyn)
    d.backup_schedules.advance(d, 61)
    job = wait_for(lambda: [j for j in jobs(api, name) if finished(j)], timeout=10, what=f"a finished Job of {name}")[0]
    assert finished(job) == "Complete"
    assert job.metadata.name.startswith(f"{name}-") and job.metadata.name.rsplit("-", 1)[1].isdigit()
    assert "planetscale.com/shard" not in job.metadata.labels       # one Job for the whole schedule
    c = job.spec.template.spec.containers[0]
    assert c.name == job.metadata.name and c.args[:2] == ["/bin/sh", "-c"]
    assert c.args[2].startswith("/vt/bin/vtctldclient --server=example-vtctld-") and c.args[2].endswith(" BackupShard commerce/-")
    assert job.spec.template.spec.restart_policy == "OnFailure"
    status = schedules(dyn)[name]["status"]
    assert "lastScheduledTime" in status and "lastScheduledTimes" not in status   # v2.13's status fields only
