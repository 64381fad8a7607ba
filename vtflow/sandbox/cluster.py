"""The sandbox's Kubernetes: the command line of the API double (``python -m vtflow.kubedouble``).

The double runs as its own detached process; this module only builds its command line, from
the node size asked for and the options the installed double supports (``--mysql-backend`` and
``--mysql-user`` arrived later than the double itself, so they are detected, not assumed). The
MySQL account's password goes to the double in its environment (``PASSWORD_VAR``), never on
its command line. It must not import the double: the sandbox talks to it like any cluster,
through the kubeconfig it writes.
"""

from __future__ import annotations

import functools
import subprocess
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
        return f"http://127.0.0.1:{self.port}"


@functools.lru_cache(maxsize=1)
def double_options() -> frozenset[str]:
    """The long options ``python -m vtflow.kubedouble`` accepts (from its ``--help``)."""
    r = subprocess.run([sys.executable, "-m", "vtflow.kubedouble", "--help"], capture_output=True, text=True, timeout=60)
    return frozenset(w.strip("[],") for w in r.stdout.split() if w.startswith(("--", "[--")))


def command(spec: ClusterSpec, options: frozenset[str]) -> list[str]:
    argv = [sys.executable, "-m", "vtflow.kubedouble", "--host", "127.0.0.1", "--port", str(spec.port),
            "--kubeconfig", str(spec.kubeconfig), "--nodes", str(NODE_COUNT), "--node-cpu", spec.node_cpu,
            "--node-memory", spec.node_memory, "--version", K3S_VERSION]
    if spec.mysql_backend and "--mysql-backend" in options:
        argv += ["--mysql-backend", spec.mysql_backend]
        if "--mysql-user" in options:
            argv += ["--mysql-user", MYSQL_DBA_USER]
    return argv


def needs_dba_account(options: frozenset[str]) -> bool:
    return {"--mysql-backend", "--mysql-user"} <= options
