"""Pure parts of tasks/node_prep: the probe script, its parser and the judging of facts (one function per check)."""

import subprocess

import pytest

from blocks.nodes import NodeSpec
from tasks.node_prep import (CHECKS, NodeRequirements, check_clock, check_cpu, check_disk, check_k3s, check_memory,
                             check_mysql_client, check_wireguard, clock_skew, disk_lines, evaluate, install_command,
                             parse_probe, probe_script, values)
from vtflow.errors import ConfigError

NODE = NodeSpec(name="node1", address="10.0.0.11", internal_address="10.10.0.1")
GOOD = {
    "k3s_active": "active", "k3s_version": "k3s version v1.32.5+k3s1 (abc)", "cpus": "4",
    "mem_total_kb": str(16 * 1024 * 1024), "mem_available_kb": str(12 * 1024 * 1024),
    "disk_avail_kb": str(100 * 1024 * 1024), "disk_path": "/var/lib/rancher", "ntp_synced": "yes",
    "peer": ["10.10.0.2,ok", "10.10.0.3,ok"], "wg_peer": ["wg0,KEYA,1000", "wg0,KEYB,1100"], "wg_ips": [], "wg": "present",
    "mysql_client": "/usr/bin/mysql",
}
PEERS = ["10.10.0.2", "10.10.0.3"]


def levels(facts, req=NodeRequirements(), skew=0.0, now=1150.0, node=NODE):
    return {c.name: c for c in evaluate(node, facts, req, skew, now, PEERS)}


def test_healthy_node_passes_every_check():
    got = levels(GOOD)
    assert {k: c.level for k, c in got.items()} == {
        "k3s": "ok", "cpu": "ok", "memory": "ok", "disk": "ok", "wireguard": "ok", "clock": "ok", "mysql-client": "ok"}
    measured = values(GOOD, 0.0, PEERS, "/var/lib/rancher")
    assert measured["k3s"] == "v1.32.5+k3s1"
    assert measured["wireguard"] == "2/2 peers reachable"
    assert measured["clock"] == "off by +0.00 s, NTP synced"
    assert measured["memory"] == "16.0 GiB total, 12.0 GiB free"
    assert set(measured) == set(CHECKS) == set(got)


def test_evaluate_is_the_list_of_the_per_check_functions():
    req = NodeRequirements()
    facts = {**GOOD, "cpus": "1", "ntp_synced": "no"}
    assert evaluate(NODE, facts, req, 0.5, 1150.0, PEERS) == [
        check_k3s(facts, "k3s", None), check_cpu(facts, 1), check_memory(facts, 1.5, 2.0),
        check_disk(facts, 20.0, "/var/lib/rancher"), check_wireguard(facts, PEERS, 1150.0), check_clock(facts, 0.5, 1.0),
        check_mysql_client(facts)]
    assert [f.name for f in evaluate(NODE, facts, req, 0.5, 1150.0, PEERS)] == list(CHECKS)


def test_a_finding_keeps_its_problem_and_fix_apart_and_shows_them_in_one_line():
    f = check_cpu({"cpus": "1"}, 2)
    assert (f.level, f.problem, f.fix) == ("fail", "1 CPUs < 2 required", "give the node more CPUs or lower min_cpus")
    assert f.line == "cpu: fail: 1 CPUs < 2 required. Fix: give the node more CPUs or lower min_cpus."
    assert f.short == "cpu: 1 CPUs < 2 required"
    assert "Fix:" not in f.problem
    assert values({}, None, PEERS, "/data") == {"k3s": "unknown", "cpu": "unknown", "memory": "unknown", "disk": "unknown",
                                                "wireguard": "0/2 peers reachable", "clock": "unknown",
                                                "mysql-client": "missing"}


def test_the_users_nodes_pass_and_a_node_too_small_for_k3s_fails_with_numbers_and_a_fix():
    # the user's 2 GiB node (MemTotal ~1.9 GiB on such a machine) runs K3s: the cluster step judges the fit
    assert levels({**GOOD, "cpus": "1", "mem_total_kb": str(int(1.9 * 1024 * 1024))})["memory"].level == "ok"
    c = levels({**GOOD, "mem_total_kb": str(int(1.2 * 1024 * 1024))})["memory"]
    assert c.level == "fail"
    assert "1.2 GiB < 1.5 GiB required" in c.problem and "Add memory" in c.fix


def test_low_free_memory_warns():
    c = levels({**GOOD, "mem_available_kb": str(512 * 1024)})["memory"]
    assert c.level == "warn" and "0.5 GiB free" in c.problem and "ps aux" in c.fix


@pytest.mark.parametrize("facts,check,level,field,text", [
    ({"k3s_active": "inactive"}, "k3s", "fail", "fix", "systemctl enable --now k3s"),
    ({"k3s_version": ""}, "k3s", "fail", "problem", "not on PATH"),
    ({"cpus": "0"}, "cpu", "fail", "problem", "0 CPUs < 1 required"),
    ({"disk_avail_kb": str(5 * 1024 * 1024)}, "disk", "fail", "problem", "5.0 GiB < 20 GiB"),
    ({"peer": ["10.10.0.2,ok", "10.10.0.3,fail"]}, "wireguard", "fail", "problem", "no answer from 10.10.0.3"),
    ({"peer": ["10.10.0.2,ok"]}, "wireguard", "fail", "problem", "no answer from 10.10.0.3"),
    ({"wg_peer": ["wg0,KEYA,1000", "wg0,KEYB,0"]}, "wireguard", "warn", "problem", "KEYB... never"),
    ({"ntp_synced": "no"}, "clock", "warn", "fix", "timedatectl set-ntp true"),
    ({"mysql_client": ""}, "mysql-client", "warn", "fix", "install_mysql_client=true"),
])
def test_each_failing_fact_gives_its_level_and_fix(facts, check, level, field, text):
    c = levels({**GOOD, **facts})[check]
    assert c.level == level
    assert text in getattr(c, field)
    assert c.fix, "every finding that is not ok says what to do"


def test_agent_nodes_check_the_agent_service():
    agent = NodeSpec(name="node4", address="10.0.0.14", role="agent")
    c = levels({**GOOD, "k3s_active": "failed"}, node=agent)["k3s"]
    assert c.level == "fail" and "k3s-agent" in c.problem and "systemctl enable --now k3s-agent" in c.fix


def test_k3s_min_version():
    c = levels(GOOD, NodeRequirements(k3s_min_version="v1.33.0"))["k3s"]
    assert c.level == "fail" and "older than v1.33.0" in c.problem
    assert levels(GOOD, NodeRequirements(k3s_min_version="v1.32.0"))["k3s"].level == "ok"


def test_clock_skew_outside_the_round_trip_fails():
    assert clock_skew("100.0", 99.0, 101.0) == 0.0
    assert clock_skew("95.0", 99.0, 101.0) == -4.0
    assert clock_skew("103.5", 99.0, 101.0) == 2.5
    assert clock_skew("garbage", 99.0, 101.0) is None
    c = levels(GOOD, skew=2.5)["clock"]
    assert c.level == "fail" and "+2.50 s" in c.problem and "set-ntp" in c.fix


def test_parse_probe_collects_lists_and_ignores_noise():
    facts = parse_probe("cpus=2\nnoise line\npeer=10.0.0.2,ok\npeer=10.0.0.3,fail\nwg_peer=wg0,K,12\nend=1\n")
    assert facts["cpus"] == "2" and facts["end"] == "1"
    assert facts["peer"] == ["10.0.0.2,ok", "10.0.0.3,fail"]
    assert facts["wg_peer"] == ["wg0,K,12"]


def test_probe_script_is_valid_posix_sh_and_read_only():
    script = probe_script(NODE, PEERS, "/var/lib/rancher")
    assert subprocess.run(["sh", "-n"], input=script, text=True).returncode == 0
    for verb in ("install", "rm ", "systemctl start", "> /"):
        assert verb not in script
    assert "systemctl is-active k3s" in script
    assert "ping -c 1 -i 0.2 -w 2 10.10.0.2" in script


def test_probe_script_runs_here_and_reports_real_facts():
    r = subprocess.run(["sh", "-s"], input=probe_script(NODE, ["127.0.0.1"], "/var/lib/rancher/k3s"),
                       capture_output=True, text=True, timeout=30)
    facts = parse_probe(r.stdout)
    assert facts["end"] == "1"
    assert int(facts["cpus"]) >= 1 and int(facts["mem_total_kb"]) > 0
    assert facts["disk_path"].startswith("/") and int(facts["disk_avail_kb"]) > 0
    assert facts["peer"] == ["127.0.0.1,ok"]


def test_probe_refuses_shell_metacharacters_in_addresses():
    with pytest.raises(ConfigError, match="is not an IP address"):
        probe_script(NODE, ["10.0.0.1; rm -rf /"], "/var/lib/rancher")
    with pytest.raises(ConfigError, match="disk_path"):
        probe_script(NODE, [], "/tmp/$(reboot)")
    with pytest.raises(ConfigError, match="disk_path"):
        disk_lines("relative/path")


def test_install_command_per_package_manager():
    assert install_command("apt-get", root=True).startswith("env DEBIAN_FRONTEND=noninteractive apt-get install")
    assert install_command("dnf", root=False) == "sudo -n dnf install -y mariadb"
    assert install_command(None, root=True) is None
