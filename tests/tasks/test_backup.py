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
