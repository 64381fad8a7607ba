"""Real services for the tests: a throwaway MariaDB, sshd nodes on 127.0.0.x, a Prefect server.

Nothing here is mocked. The machinery is the sandbox's (``vtflow/sandbox``): the same MariaDB,
the same sshd nodes with the node tools' stand-ins first on their PATH. Here the processes
are children of the test session and die with it; the sandbox starts them detached.
"""

from __future__ import annotations

import pwd
from dataclasses import dataclass

from vtflow.sandbox import mariadb as _mariadb
from vtflow.sandbox import nodes as _nodes
from vtflow.sandbox.nodes import STANDINS, SYSTEM_TOOLS, SSHNodeEnv, keygen
from vtflow.sandbox.procs import free_port, missing_tools
from vtflow.sandbox.procs import wait_port as _wait_port

__all__ = ["MariaDB", "NODE_USER", "SSHNodeBed", "SSHNodeEnv", "STANDINS", "SYSTEM_TOOLS", "free_port",
           "require_tools", "wait_port"]


def wait_port(host: str, port: int, timeout: float, proc=None, what: str = "") -> None:
    _wait_port(host, port, timeout, proc, what)


def require_tools(*names: str) -> None:
    if missing := missing_tools(*names):
        raise RuntimeError(f"test bed: {', '.join(missing)} not installed; run `make test` as root (it installs "
                           "them) or install: apt-get install mariadb-server openssh-server iputils-ping")


@dataclass
class MariaDB(_mariadb.MariaDB):
    """The session's MariaDB, with a fixed test user and password."""

    user: str = "vtflow"
    password: str = "mariadb-test-pw-5f1c"


# The tests run as root (`make test` installs their packages); their sshd nodes log in this
# user, created by scripts/node-user.sh, not root (whose shell reads root's start-up files).
NODE_USER = "vtflow-node"


def node_user_exists() -> bool:
    try:
        pwd.getpwnam(NODE_USER)
        return True
    except KeyError:
        return False


class SSHNodeBed(_nodes.SSHNodeBed):
    """The sandbox's sshd nodes, logging in the tests' node user, plus a second key that no node accepts."""

    def __init__(self, count: int):
        if not node_user_exists():
            raise RuntimeError(f"test bed: user {NODE_USER} missing; run `make test` as root (scripts/test-prereqs.sh creates it)")
        super().__init__(count, user=NODE_USER)
        self.wrong_key = self.root / "wrong_ed25519"

    def prepare(self) -> "SSHNodeBed":
        super().prepare()
        keygen(self.wrong_key)
        return self
