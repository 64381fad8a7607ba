"""vtflow/vtctld.py: what vtctldclient prints, parsed (pure); then every command the steps use,
through exec in the vtctld pod of a cluster on the API double whose tablets are a MariaDB."""

import pickle

import pytest

from vtflow.errors import PermanentError, TransientError
from vtflow.vtctld import (CommandFailed, CommandUnavailable, NotServing, Reply, Vtctld, failed_shards_null, sql_error,
                           tablet_alias)
from helpers import keyspace_cluster

NS = CLUSTER = "example"


def test_apply_schema_errors_are_told_apart():
    assert failed_shards_null('ExecuteResult: {\n  "FailedShards": null,\n  "SuccessShards": null}')
    err = '{"FailedShards": [{"Shard": "-", "Err": "You have an error in your SQL syntax (errno 1064)"}]}'
    assert not failed_shards_null(err) and sql_error(err) == "You have an error in your SQL syntax (errno 1064)"


def test_reply_and_alias():
    assert Reply(1, "out\n", "first\nrpc error: code = Unknown\n").said == "rpc error: code = Unknown"
    assert Reply(1, "only stdout\n", "").said == "only stdout" and Reply(1, "", "").said == "(no output)"
    assert tablet_alias({"alias": {"cell": "zone1", "uid": 100}}) == "zone1-0000000100"


def test_a_failed_command_keeps_its_parts_when_pickled():
    # Prefect may persist a failed task's exception
    e = CommandFailed("vtctldclient GetBackups commerce/- in VitessCluster a/b", "exited 1: no", "fix it.",
                      "GetBackups", 1, "no")
    back = pickle.loads(pickle.dumps(e))
    assert (type(back), str(back), back.command, back.rc, back.detail) == (CommandFailed, str(e), "GetBackups", 1, "no")
    assert isinstance(back, PermanentError)
    assert isinstance(CommandUnavailable("s", "p", None, "GetTablets", 1, ""), TransientError)


@pytest.fixture(scope="module")
def cluster(mariadb, tmp_path_factory):
    with keyspace_cluster(mariadb, tmp_path_factory.mktemp("k"), NS, CLUSTER) as (d, k, keyspace):
        yield Vtctld(k, NS, CLUSTER), keyspace, d


def test_tablets_and_tables_of_the_primary(cluster):
    vt, ks, _ = cluster
    tablets = vt.get_tablets(ks)
    assert len(tablets) == 3 and sum(1 for t in tablets if t["type"] == "PRIMARY" or t["type"] == 1) == 1
    assert vt.get_tablets("no_such_keyspace") == []
    primary = next(t for t in tablets if t["type"] in ("PRIMARY", 1))
    vt.apply_schema(ks, "create table vtctld_probe (id int primary key)")
    assert "vtctld_probe" in vt.table_names(tablet_alias(primary))


def test_a_refused_statement_is_permanent_and_says_mysqls_error(cluster):
    vt, ks, _ = cluster
    with pytest.raises(CommandFailed) as e:
        vt.apply_schema(ks, "create tabel oops (x int)")
    assert str(e.value).startswith(f"vtctldclient ApplySchema {ks} in VitessCluster example/example: exited 1:")
    assert e.value.command == "ApplySchema" and e.value.rc == 1 and "errno 1064" in e.value.detail


def test_vschema_round_trip_and_a_refusal_named_after_command_and_cluster(cluster):
    vt, ks, _ = cluster
    vt.apply_vschema(ks, {"sharded": False, "tables": {"vtctld_probe": {}}})
    assert vt.get_vschema(ks) == {"sharded": False, "tables": {"vtctld_probe": {}}}
    with pytest.raises(CommandFailed, match="vtctldclient ApplyVSchema nosuchks in VitessCluster example/example: "
                                            "exited 1: .*Fix: check that the keyspace exists in the VitessCluster spec"):
        vt.apply_vschema("nosuchks", {})


def test_backup_list_and_remove(cluster):
    vt, ks, _ = cluster
    before = {b["name"] for b in vt.get_backups(ks, "-")}
    vt.backup_shard(ks, "-")
    new = [b for b in vt.get_backups(ks, "-") if b["name"] not in before]
    assert len(new) == 1
    vt.remove_backup(ks, "-", new[0]["name"])
    assert {b["name"] for b in vt.get_backups(ks, "-")} == before


def test_a_failed_backup_is_a_command_failure_with_what_vtctld_said(cluster):
    vt, ks, d = cluster
    d.vitess.fail_backups_of(ks, "-")
    try:
        with pytest.raises(CommandFailed) as e:
            vt.backup_shard(ks, "-")
    finally:
        d.vitess.fail_backups_of(ks, "-", fail=False)
    assert e.value.command == "BackupShard" and e.value.rc == 1 and "exit status 1" in e.value.detail
    assert str(e.value).startswith(f"vtctldclient BackupShard {ks}/- in VitessCluster example/example: exited 1:")


def test_run_returns_a_failure_and_the_typed_reads_raise_it(cluster):
    vt, _, _ = cluster
    reply = vt.run(["NoSuchCommand"])
    assert not reply.ok and reply.rc != 0 and "unknown command" in reply.err.lower()
    # a read while a tablet is not there yet is worth a retry
    with pytest.raises(CommandUnavailable, match="vtctldclient GetSchema of tablet zone1-0000009999 in VitessCluster "
                                                 "example/example: exited 1: .*Fix: re-run when the tablet serves"):
        vt.table_names("zone1-0000009999")


def test_without_a_ready_vtctld_pod_the_error_names_the_cluster_and_selector(cluster):
    vt, ks, _ = cluster
    other = Vtctld(vt.k, NS, "nosuch")
    with pytest.raises(TransientError, match="vtctld of VitessCluster example/nosuch in namespace example: no Running "
                                             "and Ready pod matches planetscale.com/cluster=nosuch,"
                                             "planetscale.com/component=vtctld"):
        other.get_tablets(ks)


def test_not_serving_is_its_own_transient_error():
    assert issubclass(NotServing, TransientError)


def test_only_this_module_runs_vtctldclient():
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    runners = sorted(str(p.relative_to(root)) for d in ("flows", "tasks", "blocks", "deployments", "vtflow")
                     for p in (root / d).rglob("*.py")
                     if any(isinstance(n, ast.Constant) and n.value == "vtctldclient" for n in ast.walk(ast.parse(p.read_text()))))
    assert runners == ["vtflow/vtctld.py"]
