"""The resharding steps' pure parts: reading vtctldclient's answers, the cluster change, the preflight."""

import pytest
import yaml

from helpers import EXAMPLES
from tasks import vreplication as vr
from vtflow.errors import ConfigError


def upstream(name: str) -> list[dict]:
    return list(yaml.safe_load_all((EXAMPLES / name).read_text()))


@pytest.mark.parametrize("text, replica, rdonly, writes", [
    ("Reads Not Switched. Writes Not Switched", False, False, False),
    ("All Reads Switched. Writes Not Switched", True, True, False),
    ("All Reads Switched. Writes Switched", True, True, True),
    ("Reads partially switched. All Replica Reads Switched. Rdonly not switched. Writes Not Switched", True, False, False),
    ("Reads partially switched. Replica not switched. Rdonly switched in cells: zone1. Writes Not Switched",
     False, True, False),
])
def test_traffic_states_read_back_as_state_go_writes_them(text, replica, rdonly, writes):
    t = vr.traffic_of(text)
    assert (t.replica, t.rdonly, t.writes, t.reads) == (replica, rdonly, writes, replica and rdonly)


def _status(tables: dict, state: str = "Running") -> dict:
    return {"table_copy_state": tables, "traffic_state": "Reads Not Switched. Writes Not Switched",
            "shard_streams": {"customer/-": {"streams": [{"id": 1, "status": state, "info": "VStream Lag: 0s"}]}}}


def test_the_copy_is_over_when_nothing_copies_or_every_phase_is_complete():
    # v24 (utils_test.go, Oct 2025) lists every table with a phase while any still copies
    copying = _status({"t1": {"rows_copied": "20", "rows_total": "20", "phase": "COMPLETE"},
                       "t2": {"rows_copied": "10", "rows_total": "50", "phase": "IN_PROGRESS"}}, "Copying")
    s = vr.copy_state_of(copying)
    assert not s.copied and s.percent == 42.9
    assert vr.copy_verdict(s, 0, 30) == "copy at 42.9%"
    # an older server lists only the tables still copying, without a phase
    assert not vr.copy_state_of(_status({"t2": {"rows_copied": "10", "rows_total": "50"}})).copied
    done = vr.copy_state_of(_status({}))
    assert done.copied and done.percent == 100.0
    assert vr.copy_verdict(done, 0, 30) is None
    assert vr.copy_verdict(done, 31, 30) == "replication lag 31 s above 30 s"
    assert vr.copy_verdict(vr.copy_state_of(_status({}, "Stopped")), 0, 30) == "streams not Running: customer/- Stopped"


def test_stream_errors_name_the_stream_and_its_message():
    show = {"shard_streams": {"-/zone1-0000000200": {"streams": [
        {"id": "2", "state": "Error", "message": "Duplicate entry '1' for key 'PRIMARY'"}]}}}
    assert vr.stream_errors(show, vr.copy_state_of(_status({}, "Error"))) == [
        "stream 2 on -/zone1-0000000200: Duplicate entry '1' for key 'PRIMARY'"]


def test_a_vdiff_summary_gives_each_differing_table_with_its_counts():
    assert vr.vdiff_of({}) is None   # `show last` before any VDiff
    summary = {"Workflow": "commerce2customer", "Keyspace": "customer", "State": "completed", "UUID": "u",
               "RowsCompared": 10, "HasMismatch": True, "Shards": "-",
               "TableSummary": {"corder": {"RowsCompared": 5, "MismatchedRows": 0},
                                "customer": {"RowsCompared": 5, "MismatchedRows": 1, "ExtraRowsTarget": 2}}}
    r = vr.vdiff_of(summary)
    assert (r.state, r.rows, r.mismatch) == ("completed", 10, True)
    assert r.differences() == ["customer: 1 rows differ, 2 only in the target (of 5 compared)"]


def test_the_target_keyspace_is_upstreams_201_entry():
    vc = upstream("101_initial_cluster.yaml")[0]
    want = next(k for k in upstream("201_customer_tablets.yaml")[0]["spec"]["keyspaces"] if k["name"] == "customer")
    assert vr.target_entry(vc, "commerce", "customer") == want
    assert len(vr.new_tablets(want)) == 3
    with pytest.raises(ConfigError, match="keyspace nope.*is not in VitessCluster example/example.*commerce"):
        vr.target_entry(vc, "nope", "customer")


def _node(name: str, cpu: str, memory: str) -> dict:
    return {"metadata": {"name": name, "labels": {}}, "status": {"allocatable": {"cpu": cpu, "memory": memory}}}


def test_the_preflight_places_each_tablet_and_refuses_with_the_numbers():
    entry = next(k for k in upstream("201_customer_tablets.yaml")[0]["spec"]["keyspaces"] if k["name"] == "customer")
    # the user's three nodes (2 CPU/4 GiB, 1 CPU/2 GiB, 2 CPU/4 GiB), empty: 201's three tablets fit
    nodes = [_node("a", "2", "4Gi"), _node("b", "1", "2Gi"), _node("c", "2", "4Gi")]
    fits, lines = vr.placement(nodes, [], entry)
    assert fits, lines
    # the deploy's plan gives the same figure for 201 ("needs 0.73 CPU / 2.47 GiB more", tasks/sizing.py)
    assert lines[0] == "keyspace customer adds 3 tablet pod(s), 1 vtorc pod(s): 730m CPU and 2.47 GiB requested in all"
    fits, lines = vr.placement(nodes, [], entry, backup=True)
    assert fits and "and 1 vtbackup-init pod(s) for the first backup" in lines[0]
    # with a running pod taking most of every node, the first tablet fits nowhere
    def pod(n: str, memory: str) -> dict:
        return {"metadata": {"name": f"p-{n}", "labels": {}}, "status": {"phase": "Running"},
                "spec": {"nodeName": n, "containers": [{"name": "c", "resources": {
                    "requests": {"cpu": "500m", "memory": memory}}}]}}

    busy = [pod("a", "3Gi"), pod("b", "1500Mi"), pod("c", "3Gi")]
    fits, lines = vr.placement(nodes, busy, entry)
    assert not fits
    assert lines[-1] == "tablet 1 of 3 (210m CPU, 0.78 GiB) fits on no node"   # the vtorc went on node a
    assert any(line.startswith("node b: free ") for line in lines)


def test_bad_names_are_refused_before_anything_is_read():
    with pytest.raises(ConfigError, match="parameter tables.*'cust omer' is not a plain name"):
        vr.MoveTablesRequest(tables=["cust omer"]).refusals("x")
    with pytest.raises(ConfigError, match="source and target keyspace are both 'commerce'"):
        vr.MoveTablesRequest(target_keyspace="commerce").refusals("x")
    assert vr.MoveTablesRequest().name == "commerce2customer"


def _customer(name: str) -> dict:
    return next(k for k in upstream(name)[0]["spec"]["keyspaces"] if k["name"] == "customer")


def test_the_new_shards_are_upstreams_302_and_the_old_ones_go_as_306():
    entry = _customer("201_customer_tablets.yaml")
    grown = vr.with_target_shards(entry, ["-"], ["-80", "80-"])
    want = _customer("302_new_shards.yaml")
    # upstream's 302 also names hexWidth 4 (four hex digits in the shard names' bounds); vtflow names the
    # shards as asked, -80,80-, which the default width gives
    want["partitionings"][1]["equal"].pop("hexWidth")
    assert grown == want
    assert vr.with_target_shards(grown, ["-"], ["-80", "80-"]) is None          # there already: no change
    assert [vr.partitioning_shards(p) for p in grown["partitionings"]] == [["-"], ["-80", "80-"]]
    shrunk = vr.without_source_shards(grown, ["0"])                              # "0" and "-" are the same shard
    assert shrunk["partitionings"] == grown["partitionings"][1:]
    assert vr.without_source_shards(shrunk, ["-"]) is None
    with pytest.raises(ConfigError, match="has no partitioning of the shards -40.*its partitionings: -"):
        vr.with_target_shards(entry, ["-40"], ["-80", "80-"])
    with pytest.raises(ConfigError, match="has two partitionings already"):
        vr.with_target_shards(grown, ["-80", "80-"], ["-40", "40-80", "80-c0", "c0-"])


def test_shard_counts_follow_the_hash_vindex_and_the_sharded_vschema_names_the_columns():
    import json

    # the resharding guide: customers 1, 2, 3 and 5 land in -80, 4 in 80-
    assert vr.shard_counts([1, 2, 3, 4, 5], ["-80", "80-"]) == {"-80": 4, "80-": 1}
    vs = json.loads((EXAMPLES / "vschema_customer_sharded.json").read_text())
    assert vr.primary_vindex_columns(vs) == {"customer": "customer_id", "corder": "customer_id"}
    assert vr.primary_vindex_columns({"tables": {"t": {}}}) == {}


def test_reshard_shards_must_be_an_equal_split():
    vr.ReshardRequest().refusals()
    with pytest.raises(ConfigError, match="-70,70- is not an equal split.*give -80,80-"):
        vr.ReshardRequest(target_shards=["-70", "70-"]).refusals()
    with pytest.raises(ConfigError, match="overlap"):
        vr.ReshardRequest(source_shards=["-80", "80-"], target_shards=["-80", "80-"]).refusals()


def test_a_rollout_held_for_an_external_release_is_named_and_an_immediate_one_waited_for():
    held = [{"kind": "VitessShard", "metadata": {"name": "example-customer-x-x-1a2b",
                                                 "annotations": {vr.ROLLOUT_SCHEDULED: "images changed"}}},
            {"kind": "VitessKeyspace", "metadata": {"name": "example-commerce-5c3d"}}]
    # no updateStrategy: the operator's default, External
    assert vr.held_rollout({"spec": {}}, held) == "VitessShard example-customer-x-x-1a2b (updateStrategy External)"
    assert vr.held_rollout({"spec": {"updateStrategy": {"type": "Immediate"}}}, held) is None
    assert vr.held_rollout({"spec": {}}, held[1:]) is None
