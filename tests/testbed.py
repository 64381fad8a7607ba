"""Real services for the tests: a throwaway MariaDB, sshd nodes on 127.0.0.x, a Prefect server.

Nothing here is mocked. Where a node tool (systemctl, k3s, wg, timedatectl, apt-get, sudo) does
not exist on this machine, a stand-in from ``tests/standins`` sits first on the node's PATH
and reads the node's simulated state from its folder; the SSH path stays real.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

STANDINS = Path(__file__).parent / "standins"
NODE_USER = "vtflow-node"
# What a node's shell may use; mysql/mariadb are left out so that "client missing" is real.
SYSTEM_TOOLS = ["sh", "cat", "date", "id", "nproc", "getconf", "awk", "df", "dirname", "head", "ping",
                "sed", "tr", "sleep", "ln", "env", "grep", "uname", "rm", "mkdir", "ls", "true", "false"]
SHARED_TMP = Path(os.environ.get("VTFLOW_TEST_TMP", "/tmp"))


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_port(host: str, port: int, timeout: float, proc: subprocess.Popen | None = None, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening on {host}:{port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {host}:{port} within {timeout} s")


def require_tools(*names: str) -> None:
    missing = [n for n in names if not shutil.which(n) and not Path("/usr/sbin", n).exists()]
    if missing:
        raise RuntimeError(f"test bed: {', '.join(missing)} not installed; run `make test` as root (it installs "
                           "them) or install: apt-get install mariadb-server openssh-server iputils-ping")


# ---------------------------------------------------------------- MariaDB

@dataclass
class MariaDB:
    root: Path
    port: int
    host: str = "127.0.0.1"
    user: str = "vtflow"
    password: str = "mariadb-test-pw-5f1c"
    proc: subprocess.Popen | None = None

    def start(self) -> "MariaDB":
        require_tools("mariadbd", "mariadb-install-db")
        data = self.root / "data"
        data.mkdir(parents=True)
        shutil.chown(self.root, "mysql", "mysql") if _has_user("mysql") else None
        shutil.chown(data, "mysql", "mysql") if _has_user("mysql") else None
        subprocess.run(["mariadb-install-db", f"--datadir={data}", "--auth-root-authentication-method=socket",
                        "--skip-test-db", "--user=mysql" if _has_user("mysql") else f"--user={pwd.getpwuid(os.getuid()).pw_name}"],
                       check=True, capture_output=True)
        sock = self.root / "mysqld.sock"
        args = ["mariadbd", "--no-defaults", f"--datadir={data}", f"--socket={sock}", f"--port={self.port}",
                f"--bind-address={self.host}", f"--pid-file={self.root / 'mysqld.pid'}", "--skip-log-bin",
                "--innodb-buffer-pool-size=64M", "--innodb-log-file-size=16M", "--max-connections=200",
                "--innodb-flush-log-at-trx-commit=2", f"--log-error={self.root / 'error.log'}"]
        if os.getuid() == 0:
            args.append("--user=mysql" if _has_user("mysql") else "--user=root")
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.host, self.port, 30, self.proc, "mariadbd")
        sql = (f"CREATE USER '{self.user}'@'%' IDENTIFIED BY '{self.password}';"
               f"GRANT ALL ON *.* TO '{self.user}'@'%' WITH GRANT OPTION; FLUSH PRIVILEGES;")
        for _ in range(50):
            r = subprocess.run(["mariadb", f"--socket={sock}", "-uroot", "-e", sql], capture_output=True, text=True)
            if r.returncode == 0:
                break
            time.sleep(0.1)
        else:
            raise RuntimeError(f"mariadb setup failed: {r.stderr}")
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


# ---------------------------------------------------------------- sshd nodes

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
    """N sshd nodes on 127.0.0.2, .3, ... sharing one authorized client key."""

    def __init__(self, count: int):
        require_tools("sshd", "ssh-keygen", "ping")
        if not _has_user(NODE_USER):
            raise RuntimeError(f"test bed: user {NODE_USER} missing; run `make test` as root (scripts/test-prereqs.sh creates it)")
        self.root = Path(tempfile.mkdtemp(prefix="vtflow-nodes-", dir=SHARED_TMP))
        self.root.chmod(0o755)
        self.count = count
        self.nodes: list[SSHNodeEnv] = []
        self.client_key = self.root / "client_ed25519"
        self.wrong_key = self.root / "wrong_ed25519"
        self.sysbin = self.root / "sysbin"

    def start(self) -> "SSHNodeBed":
        Path("/run/sshd").mkdir(exist_ok=True)
        for key in (self.client_key, self.wrong_key):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", key.name, "-f", str(key)], check=True)
        self.sysbin.mkdir()
        for tool in SYSTEM_TOOLS:
            path = shutil.which(tool, path="/usr/bin:/bin:/usr/sbin:/sbin")
            if path:
                (self.sysbin / tool).symlink_to(path)
        authorized = self.root / "authorized_keys"
        authorized.write_text((self.client_key.with_suffix(".pub")).read_text())
        authorized.chmod(0o644)
        uid = pwd.getpwnam(NODE_USER).pw_uid
        for i in range(self.count):
            name = f"node{i + 1}"
            address = f"127.0.0.{i + 2}"
            d = self.root / name
            for sub in ("bin", "state"):
                (d / sub).mkdir(parents=True)
            for tool in STANDINS.iterdir():
                (d / "bin" / tool.name).symlink_to(tool)
            os.chown(d / "bin", uid, -1)
            os.chown(d / "state", uid, -1)
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "host_ed25519")], check=True)
            port = free_port(address)
            (d / "sshd_config").write_text(f"""\
Port {port}
ListenAddress {address}
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
SetEnv PATH={d / 'bin'}:{self.sysbin} VTFLOW_NODE_DIR={d}
""")
            node = SSHNodeEnv(name, address, port, d)
            pub = (d / "host_ed25519.pub").read_text().split()
            node.host_key_line = f"[{address}]:{port} {pub[0]} {pub[1]}"
            self.nodes.append(node)
        for node in self.nodes:
            node.proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(node.dir / "sshd_config")],
                                         stdout=subprocess.DEVNULL, stderr=open(node.dir / "sshd.log", "ab"))
        for node in self.nodes:
            others = [n for n in self.nodes if n is not node]
            node.defaults = {"service_k3s": "active", "k3s_version": "v1.32.5+k3s1", "ntp": "yes"}
            node.peers = [n.name for n in others]
            node.reset()
            wait_port(node.address, node.port, 10, node.proc, f"sshd {node.name}")
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
