"""The sandbox's Kubernetes: the command line of the API double (``python -m kubedouble``).

The double is a package of its own beside vtflow (``kubedouble/``, with the ``sandbox`` extra's
dependencies) and runs as its own detached process; this module only builds its command line
from the Kubernetes version and node sizes asked for, and parses those two. The MySQL account's
password goes to the double in its environment (``PASSWORD_VAR``), never on its command line. It
must not import the double: the sandbox talks to it like any cluster, through the kubeconfig it
writes (the double imports ``parse_node_sizes`` from here, so both read ``--node-sizes`` alike).
"""

from __future__ import annotations

import importlib.util
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from vtflow.errors import ConfigError
from vtflow.quantity import parse_quantity

# One real K3s release per Kubernetes minor (the K3s release notes, docs.k3s.io/release-notes);
# the sandbox's API server and its nodes' k3s report it. 1.24.6+k3s1 is the user's cluster.
K3S_RELEASES = {
    "1.24": "v1.24.6+k3s1", "1.25": "v1.25.16+k3s4", "1.26": "v1.26.12+k3s1", "1.27": "v1.27.7+k3s2",
    "1.28": "v1.28.11+k3s2", "1.29": "v1.29.6+k3s1", "1.30": "v1.30.8+k3s1", "1.31": "v1.31.4+k3s1",
    "1.32": "v1.32.10+k3s1", "1.33": "v1.33.5+k3s1", "1.34": "v1.34.2+k3s1", "1.35": "v1.35.4+k3s1",
}
DEFAULT_KUBERNETES = "1.33"
K3S_VERSION = K3S_RELEASES[DEFAULT_KUBERNETES]
NODE_COUNT = 3
# One name per node, as the double names its Nodes (kubedouble's node_name_prefix "node-"): the
# sshd nodes and the Kubernetes nodes are the same three machines.
NODE_NAMES = [f"node-{i + 1}" for i in range(NODE_COUNT)]
# The NodePorts a deploy opens by default (tasks.cluster.ClusterSpec: vtgate's MySQL port, vtadmin's
# web and API; a test pins them equal): the sandbox's node address must have them free.
DEFAULT_NODE_PORTS = (30306, 30000, 30001)
# The upstream 101 cluster requests about 3.2 GiB; 4 GiB nodes ran out (README, node prep).
DEFAULT_NODE_CPU, DEFAULT_NODE_MEMORY = "4", "8Gi"
SMALL_NODE_CPU, SMALL_NODE_MEMORY = "2", "4Gi"
# The account the double's simulated tablets and vtctld use on MariaDB (Vitess's own name for it).
MYSQL_DBA_USER = "vt_dba"
PASSWORD_VAR = "KUBEDOUBLE_MYSQL_PASSWORD"
NODE_SIZES_EXAMPLE = "2/4Gi,1/2Gi,2/4Gi"


def k3s_release(kubernetes_version: str) -> str:
    """The K3s release the sandbox plays for "1.24" (or "v1.24", "1.24.6", "v1.24.6+k3s1")."""
    m = re.fullmatch(r"v?(1\.\d+)(?:\.\d+)?(?:\+k3s\d+)?", kubernetes_version.strip())
    if not m or m.group(1) not in K3S_RELEASES:
        raise ConfigError(f"Kubernetes version {kubernetes_version!r}", "is not one the sandbox plays.",
                          f"pick one of {', '.join(K3S_RELEASES)}.")
    return K3S_RELEASES[m.group(1)]


def parse_node_sizes(text: str) -> list[tuple[str, str]]:
    """``"2/4Gi,1/2Gi,2/4Gi"`` -> [("2", "4Gi"), ("1", "2Gi"), ("2", "4Gi")]: one CPU/MEMORY per node."""
    sizes = []
    for entry in text.split(","):
        cpu, sep, memory = entry.strip().partition("/")
        try:
            if not sep or parse_quantity(cpu) <= 0 or parse_quantity(memory) <= 0:
                raise ValueError("not positive")
        except ValueError:
            raise ConfigError(f"node size {entry.strip()!r} of {text!r}",
                              "is not CPU/MEMORY (two positive quantities).",
                              f"write one per node, e.g. {NODE_SIZES_EXAMPLE}.") from None
        sizes.append((cpu.strip(), memory.strip()))
    return sizes


def format_node_sizes(sizes: list[tuple[str, str]]) -> str:
    return ",".join(f"{cpu}/{memory}" for cpu, memory in sizes)


@dataclass(frozen=True)
class ClusterSpec:
    port: int
    kubeconfig: Path
    node_sizes: tuple[tuple[str, str], ...] = ((DEFAULT_NODE_CPU, DEFAULT_NODE_MEMORY),) * NODE_COUNT
    k3s_version: str = K3S_VERSION
    mysql_backend: str | None = None  # host:port of the MySQL server vtgate's Service proxies to
    network: str = "127.0.0"          # the nodes' addresses are <network>.2, .3, ...; NodePorts on .2

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"


def command(spec: ClusterSpec) -> list[str]:
    argv = [sys.executable, "-m", "kubedouble", "--host", "127.0.0.1", "--port", str(spec.port),
            "--kubeconfig", str(spec.kubeconfig), "--node-sizes", format_node_sizes(list(spec.node_sizes)),
            "--version", spec.k3s_version, "--node-network", spec.network, "--vtgate-host", f"{spec.network}.2"]
    if spec.mysql_backend:
        argv += ["--mysql-backend", spec.mysql_backend, "--mysql-user", MYSQL_DBA_USER]
    return argv


def schemas_command(k3s_version: str) -> list[str]:
    """Installs the schemas the double needs for that version when no installed package has them
    (1.24: an older kubernetes-validate release into the environment's share/ folder); a no-op
    otherwise. Prints what it installed."""
    return [sys.executable, "-m", "kubedouble", "--install-schemas", "--version", k3s_version]


def missing_extra() -> str | None:
    """The module the double needs that this environment lacks (the ``sandbox`` extra), or None."""
    for module in ("kubedouble", "kubernetes_validate"):
        if importlib.util.find_spec(module) is None:
            return module
    return None
