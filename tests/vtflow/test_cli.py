"""The vtflow command line, run as a user runs it (a subprocess) against this session's server."""

import os
import subprocess
import sys
import uuid

import yaml

from blocks.mysql import MySQLCredentials
from blocks.nodes import SSHNodes
from blocks.target import VitessTarget


def vtflow(*args, env=None, cwd=None):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "vtflow.cli", *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=120, stdin=subprocess.DEVNULL)


def write_inventory(tmp_path, bed, nodes):
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(bed.inventory(nodes)))
    return path


def test_block_create_nodes_from_files(prefect_server, node_bed, nodes, tmp_path):
    inv = write_inventory(tmp_path, node_bed, nodes[:3])
    kh = tmp_path / "known_hosts"
    kh.write_text(node_bed.known_hosts(nodes) + "[10.9.9.9]:22 ssh-ed25519 " + nodes[0].host_key_line.split()[2] + "\n")
    name = f"cli-{uuid.uuid4().hex[:6]}"
    r = vtflow("block", "create", "nodes", "--name", name, "--inventory", str(inv), "--key", str(node_bed.client_key),
               "--known-hosts", str(kh))
    assert r.returncode == 0, r.stderr
    assert "PRIVATE KEY" not in r.stdout + r.stderr
    block = SSHNodes.load(name)
    assert [n.name for n in block.nodes] == ["node1", "node2", "node3"]
    assert block.known_hosts.splitlines() == [n.host_key_line for n in nodes[:3]], "only the inventory's nodes are kept"
    assert block.private_key.get_secret_value() == node_bed.client_key.read_text()

    again = vtflow("block", "create", "nodes", "--name", name, "--inventory", str(inv), "--key", str(node_bed.client_key),
                   "--known-hosts", str(kh))
    assert again.returncode == 2 and "already exists" in again.stderr and "--overwrite" in again.stderr


def test_block_create_nodes_lists_everything_missing(prefect_server, node_bed, nodes, tmp_path):
    inv = write_inventory(tmp_path, node_bed, nodes[:3])
    kh = tmp_path / "known_hosts"
    kh.write_text(nodes[0].host_key_line + "\n")
    r = vtflow("block", "create", "nodes", "--name", "never-saved", "--inventory", str(inv), "--known-hosts", str(kh))
    assert r.returncode == 2
    assert "--key FILE" in r.stderr
    assert f"ssh-keyscan -p {nodes[1].port} {nodes[1].address}" in r.stderr
    assert f"ssh-keyscan -p {nodes[2].port} {nodes[2].address}" in r.stderr
    assert "node1" not in r.stderr.split("missing:")[1]


def test_block_create_nodes_can_scan_host_keys_on_request(prefect_server, node_bed, nodes, tmp_path):
    inv = write_inventory(tmp_path, node_bed, nodes[:2])
    name = f"cli-{uuid.uuid4().hex[:6]}"
    r = vtflow("block", "create", "nodes", "--name", name, "--inventory", str(inv), "--key", str(node_bed.client_key),
               "--scan-host-keys")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("SHA256:") == 2
    assert SSHNodes.load(name).known_hosts.splitlines() == [n.host_key_line for n in nodes[:2]]


def test_block_create_mysql_reads_the_password_from_the_environment(prefect_server):
    name = f"cli-{uuid.uuid4().hex[:6]}"
    r = vtflow("block", "create", "mysql", "--name", name, "--user", "app", "--password-env", "VT_PW",
               env={"VT_PW": "pw-from-env-7731"})
    assert r.returncode == 0, r.stderr
    assert MySQLCredentials.load(name).password.get_secret_value() == "pw-from-env-7731"
    missing = vtflow("block", "create", "mysql", "--name", name + "x", "--password-env", "VT_PW_UNSET")
    assert missing.returncode == 2 and "VT_PW_UNSET: is not set" in missing.stderr
    no_tty = vtflow("block", "create", "mysql", "--name", name + "y")
    assert no_tty.returncode == 2 and "--password-env" in no_tty.stderr


def test_block_create_target_inlines_certificate_files(prefect_server, tmp_path):
    (tmp_path / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    kc = tmp_path / "k3s.yaml"
    kc.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "default",
        "clusters": [{"name": "default", "cluster": {"server": "https://10.0.0.11:6443", "certificate-authority": "ca.crt"}}],
        "users": [{"name": "default", "user": {"token": "t0ken"}}],
        "contexts": [{"name": "default", "context": {"cluster": "default", "user": "default"}}],
    }))
    name = f"cli-{uuid.uuid4().hex[:6]}"
    r = vtflow("block", "create", "target", "--name", name, "--kubeconfig", str(kc), "--namespace", "vitess",
               "--registry-mirror", "harbor.lan/vitess")
    assert r.returncode == 0, r.stderr
    t = VitessTarget.load(name)
    assert (t.namespace, t.registry_mirror) == ("vitess", "harbor.lan/vitess")
    cluster = yaml.safe_load(t.kubeconfig.get_secret_value())["clusters"][0]["cluster"]
    assert "certificate-authority" not in cluster and cluster["certificate-authority-data"]

    bad = vtflow("block", "create", "target", "--name", name + "z", "--kubeconfig", str(kc), "--context", "nope")
    assert bad.returncode == 2 and "context 'nope' is not in the kubeconfig" in bad.stderr


def test_node_prep_command_runs_the_flow(prefect_server, node_bed, nodes, tmp_path):
    from helpers import nodes_block, save_nodes_block

    name = save_nodes_block(nodes_block(node_bed, nodes[:2]))
    r = vtflow("node-prep", "--nodes", name, "--min-memory-gib", "1", "--min-disk-gib", "0.1", "--min-cpus", "1")
    assert r.returncode == 0, r.stderr[-2000:]
    lines = [l for l in r.stdout.splitlines() if l.startswith("node")]
    assert len(lines) == 2 and all("k3s=ok" in l and "memory=ok" in l for l in lines)
    r = vtflow("node-prep", "--nodes", name, "--min-memory-gib", "100000")
    assert r.returncode == 1 and "checks failed on node1, node2" in r.stderr


def test_sandbox_commands_parse_to_the_sandbox_module():
    from vtflow.cli import build_parser, cmd_sandbox_down, cmd_sandbox_status, cmd_sandbox_up

    p = build_parser()
    up = p.parse_args(["sandbox", "up", "--small"])
    assert up.func is cmd_sandbox_up and up.small and up.node_memory is None
    assert p.parse_args(["sandbox", "up", "--node-memory", "4Gi"]).node_memory == "4Gi"
    assert p.parse_args(["sandbox", "down"]).func is cmd_sandbox_down
    assert p.parse_args(["sandbox", "status"]).func is cmd_sandbox_status


def test_commands_use_make_ups_server_when_no_api_url_is_set(prefect_server):
    """Without PREFECT_API_URL, blocks go to the server `make up` runs (VTFLOW_HOST/PORT), not to
    a throwaway in-process one."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(VT_PW="pw-via-make-up-default", PREFECT_PROFILES_PATH=os.devnull)
    name = f"cli-{uuid.uuid4().hex[:6]}"
    r = subprocess.run([sys.executable, "-m", "vtflow.cli", "block", "create", "mysql", "--name", name,
                        "--password-env", "VT_PW"], capture_output=True, text=True, env=env, timeout=120,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr[-2000:]
    assert MySQLCredentials.load(name).password.get_secret_value() == "pw-via-make-up-default"


def test_deploy_until_choices_are_the_flows_steps():
    from flows.deploy import STEPS
    from vtflow.cli import build_parser

    until = next(a for a in build_parser()._subparsers._group_actions[0].choices["deploy"]._actions
                 if a.dest == "until")
    assert tuple(until.choices) == STEPS


def test_deploy_takes_over_a_conflicting_field_only_with_force_conflicts(prefect_server, tmp_path):
    """A field another manager set (here the operator image, as the redeploy flow writes it) fails
    `vtflow deploy` naming the manager and the flag; `--force-conflicts` takes it back."""
    from helpers import OPERATOR_YAML
    from kubedouble import DoubleConfig, KubeDouble
    from vtflow import kube

    with KubeDouble(DoubleConfig(nodes=1, git_version="v1.33.5+k3s1")) as d:
        kubeconfig = d.kubeconfig(tmp_path / "kubeconfig").read_text()
        name = f"cli-{uuid.uuid4().hex[:6]}"
        VitessTarget(kubeconfig=kubeconfig).save(name)
        MySQLCredentials(user="user", password="pw-cli-1").save(name)
        args = ("deploy", "--target", name, "--no-node-prep", "--until", "vitess-operator",
                "--operator-manifest", OPERATOR_YAML)
        first = vtflow(*args)
        assert first.returncode == 0, first.stderr[-3000:]
        k = kube.Kube(kube.api_client(kubeconfig, None, "t"))
        image = "harbor.lan/vitess/vitess-operator@sha256:" + "c" * 64
        spec_image = k.get("apps/v1", "Deployment", "vitess-operator", "example")["spec"]["template"]["spec"][
            "containers"][0]["image"]
        k.patch("apps/v1", "Deployment", "vitess-operator", "example",
                {"spec": {"template": {"spec": {"containers": [{"name": "vitess-operator", "image": image}]}}}},
                manager="vtflow-redeploy")

        def running() -> str:
            dep = k.get("apps/v1", "Deployment", "vitess-operator", "example")
            return dep["spec"]["template"]["spec"]["containers"][0]["image"]
        assert running() == image

        refused = vtflow(*args)
        assert refused.returncode == 1
        last = refused.stderr.strip().splitlines()[-1]
        assert "Deployment example/vitess-operator: conflict" in refused.stderr
        assert "field manager 'vtflow-redeploy' owns" in refused.stderr
        assert "--force-conflicts" in last and "(parameter force_conflicts)" in last
        assert running() == image

        forced = vtflow(*args, "--force-conflicts")
        assert forced.returncode == 0, forced.stderr[-3000:]
        assert running() == spec_image != image
