"""The foreground entry point: starts, writes a usable kubeconfig, stops on SIGTERM."""

import signal
import subprocess
import sys

from kubernetes import client, config

from testbed import free_port


def test_module_runs_until_sigterm(tmp_path):
    kc = tmp_path / "kubeconfig"
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "kubedouble", "--port", str(port), "--kubeconfig", str(kc),
                             "--nodes", "2", "--node-memory", "8Gi", "--version", "v1.32.1+k3s1"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert "kubedouble serving" in proc.stdout.readline()
        core = client.CoreV1Api(config.new_client_from_config(str(kc)))
        nodes = core.list_node().items
        assert len(nodes) == 2 and nodes[0].status.allocatable["memory"] == "8Gi"
        assert client.VersionApi(core.api_client).get_code().git_version == "v1.32.1+k3s1"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
