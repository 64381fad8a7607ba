"""The sandbox's Kubernetes: the command line of the API double (``python -m kubedouble``).

The double is a package of its own beside vtflow (``kubedouble/``, with the ``sandbox`` extra's
dependencies) and runs as its own detached process; this module only builds its command line
from the node size asked for. The MySQL account's password goes to the double in its
environment (``PASSWORD_VAR``), never on its command line. It must not import the double: the
sandbox talks to it like any cluster, through the kubeconfig it writes.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

K3S_VERSION = "v1.33.5+k3s1"
NODE_COUNT = 3
# The upstream 101 cluster requests about 3.2 GiB; 4 GiB nodes ran out (README, node prep).
DEFAULT_NODE_CPU, DEFAULT_NODE_MEMORY = "4", "8Gi"
SMALL_NODE_CPU, SMALL_NODE_MEMORY = "2", "4Gi"
# The account the double's simulated tablets and vtctld use on MariaDB (Vitess's own name for it).
MYSQL_DBA_USER = "vt_dba"
PASSWORD_VAR = "KUBEDOUBLE_MYSQL_PASSWORD"


@dataclass(frozen=True)
class ClusterSpec:
    port: int
    kubeconfig: Path
    node_cpu: str = DEFAULT_NODE_CPU
    node_memory: str = DEFAULT_NODE_MEMORY
    mysql_backend: str | None = None  # host:port of the MySQL server vtgate's Service proxies to

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"


def command(spec: ClusterSpec) -> list[str]:
    argv = [sys.executable, "-m", "kubedouble", "--host", "127.0.0.1", "--port", str(spec.port),
            "--kubeconfig", str(spec.kubeconfig), "--nodes", str(NODE_COUNT), "--node-cpu", spec.node_cpu,
            "--node-memory", spec.node_memory, "--version", K3S_VERSION]
    if spec.mysql_backend:
        argv += ["--mysql-backend", spec.mysql_backend, "--mysql-user", MYSQL_DBA_USER]
    return argv


def missing_extra() -> str | None:
    """The module the double needs that this environment lacks (the ``sandbox`` extra), or None."""
    for module in ("kubedouble", "kubernetes_validate"):
        if importlib.util.find_spec(module) is None:
            return module
    return None
