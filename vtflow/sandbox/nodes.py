"""Simulated cluster nodes: real sshd servers on 127.0.0.x, one per node (sandbox and tests).

Each node is an sshd on its own loopback address with its own host key, logging in the one
node user (``vtflow-node``) with one client key. Node tools that cannot run here (systemctl,
k3s, wg, timedatectl, apt-get, sudo) are the stand-ins in ``standins/``, first on the node's
PATH; they read the node's simulated state from ``<node>/state``. Everything on the SSH path
is real. This module writes the nodes' files and builds sshd's command line; it starts sshd
only as a child of a test session (``start``): the sandbox starts it detached through
``procs``. It must not hold node-prep logic.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from vtflow.errors import CommandError, ConfigError
from vtflow.sandbox.procs import free_port, require_tools, wait_port

STANDINS = Path(__file__).parent / "standins"
NODE_USER_SCRIPT = Path(__file__).parent / "node-user.sh"
NODE_USER = "vtflow-node"
SSHD = "/usr/sbin/sshd"
TOOLS_FIX = "install them: apt-get install openssh-server openssh-client iputils-ping (or run `make test` as root)."
# What a node's shell may use; mysql/mariadb are left out so that "client missing" is real.
SYSTEM_TOOLS = ["sh", "cat", "date", "id", "nproc", "getconf", "awk", "df", "dirname", "head", "ping",
                "sed", "tr", "sleep", "ln", "env", "grep", "uname", "rm", "mkdir", "ls", "true", "false"]


def node_user_exists() -> bool:
    try:
        pwd.getpwnam(NODE_USER)
        return True
    except KeyError:
        return False


def ensure_node_user() -> bool:
    """Create the node user (root only) with ``node-user.sh``, which ``make test`` uses too; True if created."""
    if node_user_exists():
        return False
    if os.getuid() != 0:
        raise ConfigError(f"user {NODE_USER}", "does not exist, and only root can create it.",
                          f"run as root, or: sudo sh {NODE_USER_SCRIPT}")
    r = subprocess.run(["sh", str(NODE_USER_SCRIPT)], capture_output=True, text=True)
    if r.returncode != 0:
        raise CommandError(f"user {NODE_USER}", f"could not be created: {r.stderr.strip()}", f"run sh {NODE_USER_SCRIPT} as root.")
    return True


def unreachable_folder(path: Path) -> Path | None:
    """The first folder on the way to ``path`` that other users cannot enter, if any.

    sshd reads the authorized keys, and the node's shell runs the stand-ins and writes its
    state, as the node user: every folder above them must be searchable by others.
    """
    p = path.resolve()
    for folder in [*reversed(p.parents), p]:
        if folder.exists() and not folder.stat().st_mode & stat.S_IXOTH:
            return folder
    return None


def sshd_config(node: "SSHNodeEnv", authorized: Path, sysbin: Path) -> str:
    d = node.dir
    return f"""\
Port {node.port}
ListenAddress {node.address}
HostKey {d / 'host_ed25519'}
PidFile {d / 'sshd.pid'}
AuthorizedKeysFile {authorized}
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
AllowUsers {NODE_USER}
PermitUserEnvironment no
MaxStartups 200
LogLevel ERROR
SetEnv PATH={d / 'bin'}:{sysbin} VTFLOW_NODE_DIR={d}
"""


def keygen(path: Path, comment: str = "") -> None:
    if not path.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment or path.name, "-f", str(path)],
                       check=True, capture_output=True)


@dataclass
class SSHNodeEnv:
    """One node: an sshd on its own 127.0.0.x address with its own host key and state folder."""

    name: str
    address: str
    port: int
    dir: Path
    proc: subprocess.Popen | None = None
    host_key_line: str = ""
    defaults: dict = field(default_factory=dict)
    peers: list = field(default_factory=list)

    @property
    def state(self) -> Path:
        return self.dir / "state"

    @property
    def config(self) -> Path:
        return self.dir / "sshd_config"

    @property
    def log(self) -> Path:
        return self.dir / "sshd.log"

    def command(self) -> list[str]:
        return [SSHD, "-D", "-e", "-f", str(self.config)]

    def set_state(self, **values: str) -> None:
        for key, value in values.items():
            path = self.state / key.replace("_", "-")
            if value is None:
                path.unlink(missing_ok=True)
            else:
                path.write_text(value + "\n")

    def reset(self) -> None:
        """Back to a healthy K3s server node without a mysql client, WireGuard handshakes fresh."""
        for f in self.state.iterdir():
            f.unlink()
        (self.dir / "bin" / "mysql").unlink(missing_ok=True)
        self.set_state(**self.defaults, wg_dump=self.wg_dump(int(time.time())))

    def wg_dump(self, handshake: int, stale: tuple[str, ...] = (), stale_at: int = 1000) -> str:
        """What `wg show all dump` prints: the interface line (with a private key), one line per peer."""
        lines = [f"wg0 PRIVATE-{self.name}-MUST-NOT-LEAVE= PUB{self.name.upper()}KEY= 51820 off"]
        for peer in self.peers:
            hs = stale_at if peer in stale else handshake
            lines.append(f"wg0 PUB{peer.upper()}KEY= (none) 10.0.0.1:51820 10.10.0.0/32 {hs} 100 200 off")
        return "\n".join(lines)


class SSHNodeBed:
    """N sshd nodes on 127.0.0.2, .3, ... sharing one authorized client key.

    ``prepare`` writes (or, for an existing ``root``, re-reads) every file; it is safe to
    repeat and keeps existing keys and node state. ``ports`` pins the sshd ports, else free
    ones are picked.
    """

    def __init__(self, count: int, root: Path | None = None, ports: list[int] | None = None,
                 k3s_version: str = "v1.32.5+k3s1"):
        require_tools("sshd", "ssh-keygen", "ping", fix=TOOLS_FIX)
        if not node_user_exists():
            raise ConfigError(f"user {NODE_USER}", "is missing; sshd nodes log it in.",
                              f"run `make test` as root, or as root: sh {NODE_USER_SCRIPT}")
        if root is None:
            root = Path(tempfile.mkdtemp(prefix="vtflow-nodes-", dir=os.environ.get("VTFLOW_TEST_TMP", "/tmp")))
        self.root = root
        self.count = count
        self.ports = ports
        self.k3s_version = k3s_version
        self.nodes: list[SSHNodeEnv] = []
        self.client_key = self.root / "client_ed25519"
        self.sysbin = self.root / "sysbin"
        self.authorized = self.root / "authorized_keys"

    def prepare(self) -> "SSHNodeBed":
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        for folder in (self.root, STANDINS):
            if blocked := unreachable_folder(folder):
                raise ConfigError(f"folder {blocked}", f"cannot be entered by the node user {NODE_USER}, "
                                  f"so sshd cannot read the keys under {folder} or run the node tools.",
                                  f"chmod o+x {blocked}, or put the state elsewhere (VTFLOW_STATE_DIR=/var/tmp/vtflow).")
        keygen(self.client_key)
        self.sysbin.mkdir(exist_ok=True)
        for tool in SYSTEM_TOOLS:
            path = shutil.which(tool, path="/usr/bin:/bin:/usr/sbin:/sbin")
            if path and not (self.sysbin / tool).is_symlink():
                (self.sysbin / tool).symlink_to(path)
        self.authorized.write_text(self.client_key.with_suffix(".pub").read_text())
        self.authorized.chmod(0o644)
        uid = pwd.getpwnam(NODE_USER).pw_uid
        self.nodes = []
        fresh: list[SSHNodeEnv] = []
        for i in range(self.count):
            name, address = f"node{i + 1}", f"127.0.0.{i + 2}"
            d = self.root / name
            is_new = not (d / "state").is_dir()
            for sub in ("bin", "state"):
                (d / sub).mkdir(parents=True, exist_ok=True)
                os.chown(d / sub, uid, -1)
            for tool in STANDINS.iterdir():
                if not (d / "bin" / tool.name).is_symlink():
                    (d / "bin" / tool.name).symlink_to(tool)
            keygen(d / "host_ed25519")
            port = self.ports[i] if self.ports else free_port(address)
            node = SSHNodeEnv(name, address, port, d)
            node.config.write_text(sshd_config(node, self.authorized, self.sysbin))
            pub = (d / "host_ed25519.pub").read_text().split()
            node.host_key_line = f"[{address}]:{port} {pub[0]} {pub[1]}"
            node.defaults = {"service_k3s": "active", "k3s_version": self.k3s_version, "ntp": "yes"}
            self.nodes.append(node)
            if is_new:
                fresh.append(node)
        for node in self.nodes:
            node.peers = [n.name for n in self.nodes if n is not node]
        for node in fresh:
            node.reset()
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation folder
        return self

    def start(self) -> "SSHNodeBed":
        """Prepare and start every sshd as a child of this process (the test session)."""
        self.prepare()
        for node in self.nodes:
            node.proc = subprocess.Popen(node.command(), stdout=subprocess.DEVNULL, stderr=open(node.log, "ab"))
        for node in self.nodes:
            wait_port(node.address, node.port, 10, node.proc, f"sshd {node.name}", log=node.log)
        return self

    def known_hosts(self, nodes=None) -> str:
        return "\n".join(n.host_key_line for n in (nodes or self.nodes)) + "\n"

    def inventory(self, nodes=None) -> dict:
        return {"user": NODE_USER, "nodes": [
            {"name": n.name, "address": n.address, "port": n.port, "role": "server", "internal_address": n.address}
            for n in (nodes or self.nodes)]}

    def stop(self) -> None:
        for node in self.nodes:
            if node.proc and node.proc.poll() is None:
                node.proc.terminate()
        for node in self.nodes:
            if node.proc:
                try:
                    node.proc.wait(5)
                except subprocess.TimeoutExpired:
                    node.proc.kill()
        shutil.rmtree(self.root, ignore_errors=True)
