"""The test bed itself: the services are real and reachable."""

import subprocess

from testbed import NODE_USER


def test_sshd_nodes_run_commands_as_the_node_user(node_bed, nodes):
    node = nodes[0]
    r = subprocess.run(["ssh", "-i", str(node_bed.client_key), "-p", str(node.port), "-o", "BatchMode=yes",
                        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                        f"{NODE_USER}@{node.address}", "id -un; echo $PATH; k3s --version | head -n1"],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    user, path, version = r.stdout.splitlines()
    assert user == NODE_USER
    assert path.startswith(str(node.dir / "bin"))
    assert version.startswith("k3s version v1.32.5+k3s1")


def test_mariadb_accepts_the_test_user(mariadb):
    r = subprocess.run(["mariadb", "-h", mariadb.host, "-P", str(mariadb.port), "-u", mariadb.user,
                        f"-p{mariadb.password}", "-N", "-e", "SELECT 40+2"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "42"
