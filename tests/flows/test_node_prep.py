"""The node-prep flow against real sshd nodes and this session's Prefect server."""

import asyncio
import time


from flows.node_prep import artifact_key, node_prep
from helpers import nodes_block, read_table_artifact, save_nodes_block
from tasks.node_prep import NodeRequirements
from testbed import free_port

# The test machine's disk and memory are whatever they are: ask for little, except where a test
# is about asking for too much.
MODEST = NodeRequirements(min_cpus=1, min_memory_gib=1, min_available_memory_gib=0, min_disk_gib=0.1)


def run(block_name, **kwargs):
    kwargs.setdefault("requirements", MODEST)
    state = asyncio.run(node_prep(nodes_block=block_name, return_state=True, **kwargs))
    return state, state.result(raise_on_failure=False)


def by_check(report):
    return {f.name: f for f in report.findings}


def test_twenty_nodes_pass_and_the_table_has_a_row_each(prefect_server, node_bed, nodes):
    name = save_nodes_block(nodes_block(node_bed, nodes))
    state, reports = run(name)
    assert state.is_completed(), state.message
    assert [r.node for r in reports] == [n.name for n in nodes]
    for r in reports:
        checks = by_check(r)
        assert {k: c.level for k, c in checks.items() if k != "mysql-client"} == {
            "k3s": "ok", "cpu": "ok", "memory": "ok", "disk": "ok", "wireguard": "ok", "clock": "ok"}, r
        assert r.values["wireguard"] == "19/19 peers reachable"
        assert r.values["k3s"] == "v1.32.5+k3s1"
        assert checks["mysql-client"].level == "warn" and not r.changed
    rows = read_table_artifact(artifact_key(name))
    assert [row["node"] for row in rows] == [n.name for n in nodes]
    assert rows[0]["memory"].startswith("ok: ") and rows[0]["result"] == "warn"


def test_mysql_client_install_is_opt_in_and_idempotent(prefect_server, node_bed, nodes):
    three = nodes[:3]
    name = save_nodes_block(nodes_block(node_bed, three))
    _, reports = run(name)
    assert all(by_check(r)["mysql-client"].level == "warn" for r in reports)
    assert not any((n.state / "apt-log").exists() for n in three), "nothing may change unless asked"

    state, first = run(name, install_mysql_client=True)
    assert state.is_completed(), state.message
    assert all(r.changed and r.values["mysql-client"].endswith("/bin/mysql") for r in first)
    assert all(r.changed_checks == ["mysql-client"] and by_check(r)["mysql-client"].level == "ok" for r in first)
    rows = read_table_artifact(artifact_key(name))
    assert all(row["mysql-client"].startswith("ok: ") and row["mysql-client"].endswith("/bin/mysql (changed)")
               for row in rows)

    state, second = run(name, install_mysql_client=True)
    assert state.is_completed()
    assert not any(r.changed for r in second)
    assert all(by_check(r)["mysql-client"].level == "ok" for r in second)
    assert all((n.state / "apt-log").read_text().count("install") == 1 for n in three)


def test_install_without_sudo_fails_that_check_with_a_fix(prefect_server, node_bed, nodes):
    node_bed.nodes[0].set_state(no_sudo="")
    name = save_nodes_block(nodes_block(node_bed, nodes[:1]))
    state, _ = run(name, install_mysql_client=True)
    assert state.is_failed() and "checks failed on node1" in state.message
    rows = read_table_artifact(artifact_key(name))
    assert rows[0]["mysql-client"] == "fail: install failed"
    assert "sudo: a password is required" in rows[0]["problems"] and "passwordless sudo" in rows[0]["fixes"]
    assert "mysql-client: " in state.message and "sudo: a password is required" in state.message
    assert "Fix:" not in rows[0]["problems"]


def test_too_little_memory_fails_the_flow_and_names_the_fix(prefect_server, node_bed, nodes):
    name = save_nodes_block(nodes_block(node_bed, nodes[:2]))
    state, _ = run(name, requirements=NodeRequirements(min_cpus=1, min_memory_gib=4096, min_disk_gib=0.1,
                                                          min_available_memory_gib=0))
    assert state.is_failed()
    assert "checks failed on node1, node2" in state.message
    rows = read_table_artifact(artifact_key(name))
    assert all(row["memory"].startswith("fail: ") for row in rows)
    assert "< 4096 GiB required" in rows[0]["problems"] and "Add memory" in rows[0]["fixes"]
    assert "Add memory" not in rows[0]["problems"], "the fix has a column of its own"
    assert "node1 memory: " in state.message and "< 4096 GiB required" in state.message


def test_a_stopped_k3s_and_a_stale_wireguard_peer_are_reported(prefect_server, node_bed, nodes):
    a, b = nodes[0], nodes[1]
    a.set_state(service_k3s="failed")
    b.set_state(wg_dump=b.wg_dump(int(time.time()), stale=("node1",)))
    name = save_nodes_block(nodes_block(node_bed, [a, b]))
    state, reports = run(name, fail_on_check=False)
    assert state.is_completed()
    assert by_check(reports[0])["k3s"].level == "fail"
    wg = by_check(reports[1])["wireguard"]
    assert wg.level == "warn" and "PUBNODE1" in wg.problem and "wg show" in wg.fix


def test_unreachable_node_is_named_and_the_others_are_kept(prefect_server, node_bed, nodes):
    ghost = {"name": "ghost", "address": "127.0.0.99", "port": free_port("127.0.0.99")}
    name = save_nodes_block(nodes_block(node_bed, nodes[:3], extra_nodes=[ghost]))
    state, _ = run(name)
    assert state.is_failed()
    assert "not checked (unreachable or refused): ghost." in state.message
    rows = {row["node"]: row for row in read_table_artifact(artifact_key(name))}
    assert rows["ghost"]["result"] == "fail" and "cannot connect" in rows["ghost"]["problems"]
    assert rows["ghost"]["probe"] == "fail: unreachable" and rows["ghost"]["fixes"].startswith("probe: ")
    assert all(rows[n.name]["k3s"] == "ok: v1.32.5+k3s1" for n in nodes[:3])

    state, reports = run(name, fail_on_unreachable=False)
    assert state.is_completed()
    assert [r.reachable for r in reports] == [True, True, True, False]


def test_unknown_host_key_is_refused_with_the_line_to_add(prefect_server, node_bed, nodes):
    trusted = node_bed.known_hosts(nodes[:2])  # node3's key is missing
    name = save_nodes_block(nodes_block(node_bed, nodes[:3], known_hosts=trusted))
    state, reports = run(name, fail_on_unreachable=False)
    assert state.is_completed()
    bad = reports[2]
    assert not bad.reachable and nodes[2].host_key_line in bad.error
    assert "is not in the nodes block's known_hosts" in bad.error
    assert all(r.reachable for r in reports[:2])


def test_wrong_key_is_refused_for_every_node(prefect_server, node_bed, nodes):
    name = save_nodes_block(nodes_block(node_bed, nodes[:2], key=node_bed.wrong_key))
    state, reports = run(name, fail_on_unreachable=False)
    assert [r.reachable for r in reports] == [False, False]
    assert all("was refused with the nodes block's private key" in r.error for r in reports)


def test_missing_block_names_the_command_that_creates_it(prefect_server):
    state = asyncio.run(node_prep(nodes_block="no-such-block", return_state=True))
    assert state.is_failed()
    assert "vtflow block create nodes --name no-such-block" in state.message


def test_a_revoked_host_key_fails_that_node_as_revoked_and_nothing_runs_there(prefect_server, node_bed, nodes):
    """The known_hosts both trusts node2's key and marks it `@revoked` (OpenSSH refuses such a key);
    a `@cert-authority` line is skipped and the other nodes' lines still work."""
    a, b = nodes[0], nodes[1]
    ca = "@cert-authority * " + " ".join(a.host_key_line.split()[1:])
    trusted = "\n".join([ca, a.host_key_line, b.host_key_line, f"@revoked {b.host_key_line}"]) + "\n"
    name = save_nodes_block(nodes_block(node_bed, [a, b], known_hosts=trusted))
    state, _ = run(name)
    assert state.is_failed() and "not checked (unreachable or refused): node2." in state.message
    state, reports = run(name, fail_on_unreachable=False)
    assert state.is_completed(), state.message
    good, bad = reports
    assert good.reachable and by_check(good)["k3s"].level == "ok"
    assert not bad.reachable and "is revoked" in bad.error and "@revoked" in bad.error
    assert "refused before logging in" in bad.error
    assert [f.name for f in bad.findings] == ["probe"] and "k3s" not in bad.values, "nothing may run on a revoked node"
    rows = {row["node"]: row for row in read_table_artifact(artifact_key(name))}
    assert rows["node2"]["probe"] == "fail: unreachable" and "is revoked" in rows["node2"]["problems"]
