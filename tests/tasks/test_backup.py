"""tasks/backup.py: the refusal and the retention decision are pure; the flow test runs BackupShard
against the double (tests/flows/test_backup.py)."""

from datetime import datetime, timedelta, timezone

import pytest

from tasks.backup import Retention, backup_time, backups_from_objects, is_complete, shards_to_back_up, to_prune
from tasks.cluster import BackupSpec, ClusterSpec, KeyspaceSpec, render
from helpers import IMAGES
from vtflow.errors import ConfigError

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)


def _vc(**spec):
    objs = render(ClusterSpec(**(IMAGES | spec)), "example", "example", "10.0.0.11", "user", "pw")
    return next(o for o in objs if o["kind"] == "VitessCluster")


def _b(days_ago: float, status="UNKNOWN"):
    when = NOW - timedelta(days=days_ago)
    return {"name": f"{when:%Y-%m-%d.%H%M%S}.zone1-0000000101", "status": status,
            "time": {"seconds": str(int(when.timestamp())), "nanoseconds": 0}}


def test_every_shard_of_the_cluster_is_backed_up():
    vc = _vc(keyspaces=[KeyspaceSpec(), KeyspaceSpec(name="customer", shards=2)])
    assert shards_to_back_up(vc, "example", "example") == [("commerce", "-"), ("customer", "-80"), ("customer", "80-")]


def test_no_backup_location_is_refused_with_the_fix():
    with pytest.raises(ConfigError) as e:
        shards_to_back_up(_vc(backup=BackupSpec(kind="none")), "example", "example")
    assert "VitessCluster example/example" in str(e.value) and "spec.backup.locations" in str(e.value)
    assert "cluster.backup.kind" in str(e.value)
    with pytest.raises(ConfigError, match="does not exist"):
        shards_to_back_up(None, "example", "example")


def test_retention_by_count_and_age():
    backups = [_b(d) for d in (0, 1, 2, 3, 20)]
    assert to_prune(backups, Retention(keep_count=3, keep_days=None), NOW) == [backups[3]["name"], backups[4]["name"]]
    assert to_prune(backups, Retention(keep_count=10, keep_days=14), NOW) == [backups[4]["name"]]
    assert to_prune(backups, Retention(keep_count=10, keep_days=None), NOW) == []


def test_the_newest_complete_backup_is_never_pruned():
    old_only = [_b(30), _b(40)]
    assert to_prune(old_only, Retention(keep_count=1, keep_days=1), NOW) == [old_only[1]["name"]]
    # the newest is incomplete: the newest complete one stays, the incomplete one counts as a slot
    mixed = [_b(0, "INCOMPLETE"), _b(1), _b(2)]
    assert to_prune(mixed, Retention(keep_count=1, keep_days=None), NOW) == [mixed[2]["name"]]
    # two of one second, listed by name: the one vttablet restores (the last by name) stays
    when = (NOW - timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    tie = [{"name": "2026-10-26.000000.zone1-1", "time": when}, {"name": "2026-10-26.000000.zone1-2", "time": when}]
    assert to_prune(tie, Retention(keep_count=1, keep_days=1), NOW) == ["2026-10-26.000000.zone1-1"]


def test_backup_time_reads_both_protojson_forms():
    # moved from tests/tasks/test_health.py with the helpers (tasks/health.py imports them from here)
    assert backup_time({"time": "2026-11-25T10:00:00Z"}) == datetime(2026, 11, 25, 10, tzinfo=timezone.utc)
    assert backup_time(_b(1)) == NOW - timedelta(days=1)
    assert backup_time({}) is None


def test_only_an_explicit_incomplete_or_invalid_counts_against_a_backup():
    assert is_complete(_b(0)) and is_complete(_b(0, "COMPLETE"))
    assert not is_complete(_b(0, "INCOMPLETE")) and not is_complete(_b(0, "invalid"))


def test_vitessbackup_objects_as_backups_per_shard():
    def obj(name, shard, complete, finished):
        return {"metadata": {"name": name, "labels": {"planetscale.com/keyspace": "commerce", "planetscale.com/shard": shard}},
                "status": {"storageName": f"store-{name}", "complete": complete, "finishedTime": finished}}
    got = backups_from_objects([obj("a", "x-x", True, "2026-11-25T10:00:00Z"), obj("b", "x-80", False, None),
                                obj("c", "x-x", False, "2026-11-25T11:00:00Z")])
    assert got == {("commerce", "-"): [{"name": "store-a", "time": "2026-11-25T10:00:00Z", "status": "COMPLETE"},
                                       {"name": "store-c", "time": "2026-11-25T11:00:00Z", "status": "INCOMPLETE"}],
                   ("commerce", "-80"): [{"name": "store-b", "time": None, "status": "INCOMPLETE"}]}


# ---------------------------------------------------------------- method operator: pure parts, real CRDs

import yaml  # noqa: E402

from helpers import UPSTREAM  # noqa: E402
from tasks.backup import (OperatorSchedule, check_against_crd, newest_jobs, schedule_entry,  # noqa: E402
                          schedule_patch, schedule_support, schedules_with, schema_digest, schema_from_markdown,
                          schema_markdown, schema_of, schema_tablet)
from vtflow import crdschema  # noqa: E402

SHARDS = [("commerce", "-"), ("customer", "-80"), ("customer", "80-")]


def _served_schema(release: str, manifest: str) -> dict:
    """The VitessCluster schema a cluster serves after applying a release's manifest as the deploy does."""
    path = UPSTREAM / f"vitess-operator-{release}" / "examples" / manifest
    if not path.exists():
        pytest.skip(f"upstream file {path} is not present (set VTFLOW_UPSTREAM_DIR)")
    crd = next(d for d in yaml.safe_load_all(path.read_text())
               if d and d.get("kind") == "CustomResourceDefinition" and d["metadata"]["name"] == "vitessclusters.planetscale.com")
    return crdschema.crd_schema(crd, "v2")


def _vc_with_location():
    vc = _vc(keyspaces=[KeyspaceSpec(), KeyspaceSpec(name="customer", shards=2)])
    vc["metadata"]["resourceVersion"] = "42"
    return vc


def test_operator_method_is_refused_before_v2_13_naming_the_release_and_the_fix():
    with pytest.raises(ConfigError) as e:
        schedule_support("VitessCluster example/example", "v2.10.4", _served_schema("v2.17.0", "operator-latest.yaml"))
    assert "runs vitess-operator v2.10.4, which has no VitessBackupSchedule" in str(e.value) and "method flow" in e.value.fix
    # v2.13.1's own operator.yaml runs v2.12.0, whose CRD already has schedules: the release decides
    with pytest.raises(ConfigError, match="v2.12.0"):
        schedule_support("VitessCluster example/example", "v2.12.0", _served_schema("v2.13.1", "operator.yaml"))
    # a release by digest names no version: the served CRD decides
    with pytest.raises(ConfigError, match="without spec.backup.schedules"):
        schedule_support("VitessCluster example/example", None, _served_schema("v2.10.4", "operator-latest.yaml"))


@pytest.mark.parametrize("release,manifest,fixed,method", [
    ("v2.13.1", "operator-latest.yaml", True, False),
    ("v2.15.1", "operator-latest.yaml", False, False),
    ("v2.17.0", "operator.yaml", False, False),          # the e2e upgrade manifest: v2.17.0-rc1's older CRDs
    ("v2.17.0", "operator-latest.yaml", False, True),
])
def test_the_entry_fits_each_release_crd(release, manifest, fixed, method):
    schema = _served_schema(release, manifest)
    support = schedule_support("VitessCluster example/example", release, schema)
    assert (support.fixed_strategy_name, support.backup_method) == (fixed, method)
    entry = schedule_entry(SHARDS, OperatorSchedule(), support)
    assert [s["name"] for s in entry["strategies"]] == (["BackupShard"] * 3 if fixed else
                                                        ["commerce-x-x", "customer-x-80", "customer-80-x"])
    assert ("backupMethod" in entry) == method
    check_against_crd(_vc_with_location(), schedules_with(_vc_with_location(), entry), support)   # accepted
    # and what that CRD refuses is refused here before anything is written
    bad = {**entry, "strategies": [{**entry["strategies"][0], "name": "nightly"}]} if fixed else {**entry, "name": "Not_A_Name"}
    with pytest.raises(ConfigError, match="does not fit this cluster's VitessCluster CRD"):
        check_against_crd(_vc_with_location(), [bad], support)


def test_the_schedule_settings_are_checked_in_the_form():
    with pytest.raises(ValueError, match="is not a cron schedule"):
        OperatorSchedule(cron="0 25 * * *")
    with pytest.raises(ValueError):
        OperatorSchedule(memory="lots")


def test_the_users_own_schedules_are_kept_and_the_patch_is_guarded():
    vc = _vc_with_location()
    vc["spec"]["backup"]["schedules"] = [{"name": "mine"}, {"name": "vtflow", "schedule": "old"}, {"name": "theirs"}]
    new = schedules_with(vc, {"name": "vtflow", "schedule": "new"})
    assert new == [{"name": "mine"}, {"name": "vtflow", "schedule": "new"}, {"name": "theirs"}]
    assert schedules_with(vc, None) == [{"name": "mine"}, {"name": "theirs"}]
    patch = schedule_patch(vc, [])
    assert patch == {"metadata": {"resourceVersion": "42"}, "spec": {"backup": {"schedules": None}}}


def _job(name, scheduled, outcome, labels=None):
    conds = {"failed": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}],
             "complete": [{"type": "Complete", "status": "True"}], "active": []}[outcome]
    return {"metadata": {"name": name, "labels": {"planetscale.com/backup-schedule": "vbs", **(labels or {})},
                         "annotations": {"planetscale.com/backup-scheduled-at": scheduled}},
            "status": {"conditions": conds}}


def test_the_newest_job_per_shard():
    shard = {"planetscale.com/keyspace": "customer", "planetscale.com/shard": "x-80"}
    jobs = [_job("b", "2026-01-02T02:00:00Z", "failed", shard), _job("a", "2026-01-01T02:00:00Z", "complete", shard),
            _job("other", "2026-01-03T02:00:00Z", "failed", {**shard, "planetscale.com/backup-schedule": "x"})]
    assert {k: j["metadata"]["name"] for k, j in newest_jobs(jobs, "vbs", SHARDS).items()} == {("customer", "-80"): "b"}
    # v2.13/v2.14: one Job for the whole schedule, no shard labels
    legacy = newest_jobs([_job("whole", "2026-01-01T02:00:00Z", "complete")], "vbs", SHARDS)
    assert set(legacy) == set(SHARDS)


def test_the_schema_record_reads_back_from_its_artifact():
    get_schema = '{"database_schema": "x", "table_definitions": [{"name": "t", "schema": "CREATE TABLE `t` (id int)"}]}'
    record = {"cluster": "example", "namespace": "example", "taken_at": "2026-12-02T00:00:00Z",
              "keyspaces": {"commerce": {"tablet": "zone1-0000000100", "tables": schema_of(get_schema),
                                         "vschema": {"tables": {"t": {}}}}}}
    md = schema_markdown("example", "example", record)
    assert schema_from_markdown(md) == record
    assert f"| commerce | 1 | 1 | zone1-0000000100 | {schema_digest(record['keyspaces']['commerce'])} |" in md
    changed = {**record["keyspaces"]["commerce"], "tables": {"t": "CREATE TABLE `t` (id bigint)"}}
    assert schema_digest(changed) != schema_digest(record["keyspaces"]["commerce"])
    with pytest.raises(ValueError):
        schema_from_markdown("# no record")


def test_the_schema_is_read_from_the_first_shards_primary():
    tablets = [{"alias": {"cell": "zone1", "uid": 3}, "shard": "80-", "type": "PRIMARY"},
               {"alias": {"cell": "zone1", "uid": 2}, "shard": "-80", "type": "REPLICA"},
               {"alias": {"cell": "zone1", "uid": 1}, "shard": "-80", "type": "PRIMARY"}]
    assert schema_tablet(tablets)["alias"]["uid"] == 1
    assert schema_tablet([]) is None
