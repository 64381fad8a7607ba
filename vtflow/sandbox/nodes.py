"""Simulated cluster nodes: real sshd servers on loopback addresses, one per node (sandbox and tests).

Each node is an sshd on its own loopback address (``<network>.2``, ``.3``, ...) with its own host
key, logging in one user with one client key: by default the user who runs it, so that no root
is needed (sshd run by an ordinary user serves that user alone; a root session may name another
user, as the tests do). Node tools that cannot run here (systemctl, k3s, wg, timedatectl,
apt-get, sudo) are the stand-ins in ``standins/``, first on the node's PATH; they read the node's
simulated state from ``<node>/state``. Given the nodes' sizes, the node also reports them: the
``awk`` stand-in reads ``state/proc-meminfo`` and ``state/proc-cpuinfo`` where the probe reads
``/proc``, so that SSH and Kubernetes tell the same CPUs and memory. Everything on the SSH path
is real. This module writes the nodes' files and builds sshd's command line; it starts sshd
only as a child of a test session (``start``): the sandbox starts it detached through
``procs``. It must not hold node-prep logic.
"""

from __future__ import annotations

import math
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from vtflow.errors import ConfigError
from vtflow.quantity import parse_quantity
from vtflow.sandbox.procs import free_port, require_tools, wait_port

STANDINS = Path(__file__).parent / "standins"
SSHD = "/usr/sbin/sshd"
# What a K3s server takes of a node's memory for itself (tasks.cluster.K3S_SERVER_RESERVE, the
# preflight's figure; a test pins them equal): a simulated node's MemAvailable is its size less this.
K3S_SERVER_MEMORY = 2 * 1024 ** 3
TOOLS_FIX = "install them: apt-get install openssh-server openssh-client iputils-ping (or run `make test` as root)."
# What a node's shell may use; mysql/mariadb are left out so that "client missing" is real.
SYSTEM_TOOLS = ["sh", "cat", "date", "id", "nproc", "getconf", "awk", "df", "dirname", "head", "ping",
                "sed", "tr", "sleep", "ln", "env", "grep", "uname", "rm", "mkdir", "ls", "true", "false"]


def invoking_user() -> str:
    """The user this process runs as: the one the nodes log in unless told otherwise."""
    return pwd.getpwuid(os.getuid()).pw_name


def unreachable_folder(path: Path) -> Path | None:
    """The first folder on the way to ``path`` that other users cannot enter, if any.

    When the nodes log in another user than the one who prepares them (root preparing the tests'
    node user), sshd reads the authorized keys, and the node's shell runs the stand-ins and writes
    its state, as that user: every folder above them must be searchable by others.
    """
    p = path.resolve()
    for folder in [*reversed(p.parents), p]:
        if folder.exists() and not folder.stat().st_mode & stat.S_IXOTH:
            return folder
    return None


def sshd_config(node: "SSHNodeEnv", authorized: Path, sysbin: Path, user: str) -> str:
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
AllowUsers {user}
PermitUserEnvironment no
MaxStartups 200
LogLevel ERROR
SetEnv PATH={d / 'bin'}:{sysbin} VTFLOW_NODE_DIR={d}
"""


def keygen(path: Path, comment: str = "") -> None:
    if not path.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment or path.name, "-f", str(path)],
                       check=True, capture_output=True)


# the wg stand-in prints the time of the read less 5 s in its place: handshakes never go stale by themselves
FRESH = "@NOW@"


def proc_files(cpu: str, memory: str) -> dict[str, str]:
    """``/proc/meminfo`` and ``/proc/cpuinfo`` lines of a node of that size (what the probe reads),
    as state values: MemTotal is the size, MemAvailable the size less K3s's own share."""
    cpus = max(1, math.floor(parse_quantity(cpu)))
    total = int(parse_quantity(memory))
    available = max(0, total - K3S_SERVER_MEMORY)
    return {"proc_meminfo": f"MemTotal: {total // 1024} kB\nMemAvailable: {available // 1024} kB",
            "proc_cpuinfo": "\n\n".join(f"processor\t: {i}" for i in range(cpus))}


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
        self.set_state(**self.defaults, wg_dump=self.wg_dump(FRESH))

    def wg_dump(self, handshake: int | str, stale: tuple[str, ...] = (), stale_at: int = 1000) -> str:
        """What `wg show all dump` prints: the interface line (with a private key), one line per peer.
        ``FRESH`` as the handshake: a few seconds before each read, as while traffic flows."""
        lines = [f"wg0 PRIVATE-{self.name}-MUST-NOT-LEAVE= PUB{self.name.upper()}KEY= 51820 off"]
        for peer in self.peers:
            hs = stale_at if peer in stale else handshake
            lines.append(f"wg0 PUB{peer.upper()}KEY= (none) 10.0.0.1:51820 10.10.0.0/32 {hs} 100 200 off")
        return "\n".join(lines)


class SSHNodeBed:
    """N sshd nodes on ``<network>.2``, ``.3``, ... sharing one authorized client key.

    ``prepare`` writes (or, for an existing ``root``, re-reads) every file; it is safe to
    repeat and keeps existing keys and node state. ``ports`` pins the sshd ports, else free
    ones are picked. ``user`` is the user the nodes log in (default: the one running this);
    ``names`` their names (default node1, node2, ...); ``sizes`` one (cpu, memory) per node,
    which the nodes then report (default: the machine's own /proc).
    """

    def __init__(self, count: int, root: Path | None = None, ports: list[int] | None = None,
                 k3s_version: str = "v1.32.5+k3s1", *, user: str | None = None, network: str = "127.0.0",
                 names: list[str] | None = None, sizes: list[tuple[str, str]] | None = None):
        require_tools("sshd", "ssh-keygen", "ping", fix=TOOLS_FIX)
        self.user = user or invoking_user()
        try:
            self.uid = pwd.getpwnam(self.user).pw_uid
        except KeyError:
            raise ConfigError(f"user {self.user}", "does not exist; the sshd nodes log it in.",
                              "create it, or let the nodes log in the user who runs vtflow.") from None
        if self.uid != os.getuid() and os.getuid() != 0:
            raise ConfigError(f"user {self.user}", f"is not the one running this ({invoking_user()}): an sshd "
                              "started by an ordinary user logs in that user only.", "leave the node user unset.")
        if root is None:
            root = Path(tempfile.mkdtemp(prefix="vtflow-nodes-", dir=os.environ.get("VTFLOW_TEST_TMP", "/tmp")))
        self.root = root
        self.count = count
        self.ports = ports
        self.k3s_version = k3s_version
        self.network = network
        self.names = names or [f"node{i + 1}" for i in range(count)]
        self.sizes = sizes
        self.nodes: list[SSHNodeEnv] = []
        self.client_key = self.root / "client_ed25519"
        self.sysbin = self.root / "sysbin"
        self.authorized = self.root / "authorized_keys"

    def address(self, i: int) -> str:
        return f"{self.network}.{i + 2}"

    def prepare(self) -> "SSHNodeBed":
        other_user = self.uid != os.getuid()
        self.root.mkdir(parents=True, exist_ok=True)
        if other_user:
            self.root.chmod(0o755)
            for folder in (self.root, STANDINS):
                if blocked := unreachable_folder(folder):
                    raise ConfigError(f"folder {blocked}", f"cannot be entered by the node user {self.user}, "
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
        self.nodes = []
        fresh: list[SSHNodeEnv] = []
        for i in range(self.count):
            name, address = self.names[i], self.address(i)
            d = self.root / name
            is_new = not (d / "state").is_dir()
            for sub in ("bin", "state"):
                (d / sub).mkdir(parents=True, exist_ok=True)
                if other_user:
                    os.chown(d / sub, self.uid, -1)
            for tool in STANDINS.iterdir():
                if not (d / "bin" / tool.name).is_symlink():
                    (d / "bin" / tool.name).symlink_to(tool)
            keygen(d / "host_ed25519")
            port = self.ports[i] if self.ports else free_port(address)
            node = SSHNodeEnv(name, address, port, d)
            node.config.write_text(sshd_config(node, self.authorized, self.sysbin, self.user))
            pub = (d / "host_ed25519.pub").read_text().split()
            node.host_key_line = f"[{address}]:{port} {pub[0]} {pub[1]}"
            node.defaults = {"service_k3s": "active", "k3s_version": self.k3s_version, "ntp": "yes"}
            if self.sizes:
                node.defaults.update(proc_files(*self.sizes[i]))
            self.nodes.append(node)
            if is_new:
                fresh.append(node)
        for node in self.nodes:
            node.peers = [n.name for n in self.nodes if n is not node]
        for node in fresh:
            node.reset()
        if os.getuid() == 0:
            Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation: sshd started by root only
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
        return {"user": self.user, "nodes": [
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
