"""The restore drill's pure parts: the spec change, the preflight, comparing tables, the health judgement."""

from datetime import datetime, timedelta, timezone

import pytest

from helpers import IMAGES
from tasks.cluster import ClusterSpec, KeyspaceSpec, NodeRoom, render
from tasks.report import Finding
from tasks.restore import (SHARD_MARK, DrillResult, differences, drill_finding, drill_record, drill_shards,
                           newest_complete, restored_backup_time, same_second, scratch_room, table_stats,
                           tablet_demand, with_scratch, without_scratch)
from tasks.verify import expected_tablets_of
from vtflow.errors import ConfigError

GIB = 1 << 30


def cluster(shards=2) -> dict:
    spec = ClusterSpec(keyspaces=[KeyspaceSpec(), KeyspaceSpec(name="customer", shards=shards)], **IMAGES)
    return next(o for o in render(spec, "example", "example", "127.0.0.1", "user", "pw") if o["kind"] == "VitessCluster")


def test_one_scratch_rdonly_tablet_in_one_shard_only_and_removed_again():
    vc = cluster()
    keyspaces, pool = with_scratch(vc["spec"]["keyspaces"], "customer", "80-")
    parts = keyspaces[1]["partitionings"]
    assert len(parts) == 2 and parts[0] == vc["spec"]["keyspaces"][1]["partitionings"][0]
    [shard] = parts[1]["custom"]["shards"]
    assert shard["keyRange"] == {"start": "80", "end": ""} and shard["annotations"] == {SHARD_MARK: "true"}
    assert [(p["type"], p["replicas"]) for p in shard["tabletPools"]] == [("replica", 3), ("rdonly", 1)]
    assert pool["dataVolumeClaimTemplate"] == shard["tabletPools"][0]["dataVolumeClaimTemplate"]
    assert shard["databaseInitScriptSecret"]["key"] == "init_db.sql"
    # the operator's union by key range: only 80- gains a tablet
    want = expected_tablets_of({"spec": {"keyspaces": keyspaces}})
    assert want[("customer", "80-")]["RDONLY"] == 1 and want[("customer", "-80")]["RDONLY"] == 0
    assert want[("commerce", "-")]["RDONLY"] == 0
    assert without_scratch(keyspaces) == vc["spec"]["keyspaces"]
    assert vc["spec"]["keyspaces"][1]["partitionings"][0]["equal"]["parts"] == 2   # the input is untouched


def test_an_unsharded_keyspace_gets_an_empty_key_range_and_an_existing_rdonly_pool_grows():
    vc = cluster()
    tpl = vc["spec"]["keyspaces"][0]["partitionings"][0]["equal"]["shardTemplate"]
    tpl["tabletPools"].append({**tpl["tabletPools"][0], "type": "rdonly", "replicas": 1})
    keyspaces, pool = with_scratch(vc["spec"]["keyspaces"], "commerce", "-")
    [shard] = keyspaces[0]["partitionings"][1]["custom"]["shards"]
    assert shard["keyRange"] == {"start": "", "end": ""}
    assert [(p["type"], p["replicas"]) for p in shard["tabletPools"]] == [("replica", 3), ("rdonly", 2)]


def test_refusals_name_the_keyspace_and_the_way_out():
    vc = cluster()
    keyspaces, _ = with_scratch(vc["spec"]["keyspaces"], "customer", "-80")
    with pytest.raises(ConfigError, match="scratch tablet of an earlier drill"):
        with_scratch(keyspaces, "customer", "80-")
    resharding = [dict(k) for k in vc["spec"]["keyspaces"]]
    resharding[1] = {**resharding[1], "partitionings": resharding[1]["partitionings"] * 2}
    with pytest.raises(ConfigError, match="2 partitionings .resharding is under way.") as e:
        with_scratch(resharding, "customer", "-80")
    assert "after the resharding is complete" in e.value.fix
    with pytest.raises(ConfigError, match="is not a shard of VitessCluster example/example") as e:
        drill_shards(vc, "example", "example", "customer/-40")
    assert "commerce/-, customer/-80, customer/80-" in e.value.fix
    assert drill_shards(vc, "example", "example") == [("commerce", "-"), ("customer", "-80"), ("customer", "80-")]
    del vc["spec"]["backup"]
    with pytest.raises(ConfigError, match="has no backup location"):
        drill_shards(vc, "example", "example")


def room(node, cpu, mem, used_cpu=0, used_mem=0):
    return NodeRoom(node=node, allocatable_cpu_millis=cpu, allocatable_memory_bytes=mem, reserved_cpu_millis=0,
                    reserved_memory_bytes=0, used_cpu_millis=used_cpu, used_memory_bytes=used_mem)


def test_preflight_picks_a_node_with_room_or_refuses_with_the_numbers():
    _, pool = with_scratch(cluster()["spec"]["keyspaces"], "commerce", "-")
    cpu, mem = tablet_demand(pool)
    assert cpu > 10 and mem > 32 << 20          # vttablet + mysqld + the exporter's default
    node, lines = scratch_room([room("a", 4000, 4 * GIB, 3990, 0), room("b", 4000, 8 * GIB)], pool, [])
    assert node == "b"
    node, lines = scratch_room([room("a", 4000, 4 * GIB, 0, 4 * GIB - 1)], pool, [])
    assert node is None
    assert lines[0] == f"one scratch tablet requests {cpu}m CPU and {mem / GIB:.2f} GiB"
    assert lines[1].startswith("node a: free 4000m CPU, 0.00 GiB")


def test_preflight_honours_the_pools_node_affinity_and_tablet_spread():
    _, pool = with_scratch(cluster()["spec"]["keyspaces"], "commerce", "-")
    labels = {"planetscale.com/component": "vttablet", "planetscale.com/keyspace": "commerce"}
    pool["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [n]}]} for n in ("a", "b")]}}}
    pool["topologySpreadConstraints"] = [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                          "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": labels}}]
    pods = [{"metadata": {"labels": labels}, "spec": {"nodeName": "a"}}]
    rooms = [room(n, 8000, 16 * GIB) for n in ("a", "b", "c")]
    assert scratch_room(rooms, pool, pods)[0] == "b"        # c is excluded, a would skew the spread
    node, lines = scratch_room(rooms[:1] + rooms[2:], pool, pods + [{"metadata": {"labels": labels}, "spec": {"nodeName": "b"}}])
    assert node == "a" and "node c: free 8000m CPU, 16.00 GiB (the pool's scheduling rules exclude it)" in lines


def test_tables_compare_by_rows_and_checksum():
    tables = ["corder", "customer"]
    primary = table_stats(tables, [[3, 2]], [["vt_commerce.corder", 111], ["vt_commerce.customer", 222]])
    assert primary == {"corder": (3, "111"), "customer": (2, "222")}
    same = table_stats(tables, [[3, 2]], [["_vt_zone1_1.corder", 111], ["_vt_zone1_1.customer", 222]])
    assert differences(primary, same) == []
    changed = table_stats(tables, [[3, 2]], [["x.corder", 111], ["x.customer", 999]])
    assert differences(primary, changed) == ["customer (rows 2 vs the primary's 2, checksum 999 vs 222)"]


def test_backup_and_restore_signals():
    t = lambda s: {"seconds": str(s), "nanoseconds": 0}  # noqa: E731
    backups = [{"name": "a", "time": t(100)}, {"name": "b", "time": t(300), "status": "INCOMPLETE"},
               {"name": "c", "time": t(200)}]
    assert newest_complete(backups)["name"] == "c" and newest_complete([]) is None
    # one second, two tablets: backup storage lists by name and vttablet takes the last of the list
    tie = [{"name": "2026-12-03.095653.zone1-3258494659", "time": t(400)},
           {"name": "2026-12-03.095653.zone1-1504534839", "time": t(400)}]
    assert newest_complete(tie)["name"] == "2026-12-03.095653.zone1-3258494659"
    assert restored_backup_time('{"RestoredBackupTime": "2026-12-02T03:15:00Z"}') == "2026-12-02T03:15:00Z"
    assert restored_backup_time('{"RestoredBackupTime": ""}') == "" == restored_backup_time("wget: error")
    assert same_second("2026-12-02T03:15:00Z", datetime(2026, 12, 2, 3, 15, tzinfo=timezone.utc))
    assert not same_second("2026-12-02T03:15:01Z", datetime(2026, 12, 2, 3, 15, tzinfo=timezone.utc))


def test_the_health_checks_view_of_the_last_drill():
    now = datetime(2026, 12, 10, tzinfo=timezone.utc)
    assert drill_finding(None, now).level == "warn"
    ok = drill_record([DrillResult("commerce", "-", ok=True)], now - timedelta(days=2))
    assert drill_finding(ok, now).level == "ok" and "2.0 days ago on commerce/-" in drill_finding(ok, now).problem
    assert drill_finding(ok, now + timedelta(days=7)).level == "warn"
    bad = drill_record([DrillResult("commerce", "-", finding=Finding(name="x", level="fail", problem="differs in t"))],
                       now)
    f = drill_finding(bad, now)
    assert f.level == "fail" and "commerce/-: differs in t" in f.problem and "backup flow" in f.fix
    # no room for the scratch tablet: nothing proven, but no backup found wanting either
    refused = drill_record([DrillResult("commerce", "-", finding=Finding(name="x", level="warn",
                                                                         problem="no node can hold one more tablet"))],
                           now)
    f = drill_finding(refused, now)
    assert refused["result"] == "refused" and f.level == "warn" and "could not run" in f.problem
    both = drill_record([DrillResult("commerce", "-", finding=Finding(name="x", level="warn", problem="no room")),
                         DrillResult("customer", "-", finding=Finding(name="y", level="fail", problem="differs"))], now)
    assert drill_finding(both, now).level == "fail", "a shard that failed is a failure whatever the others did"
