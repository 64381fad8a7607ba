"""The local sandbox: a SIMULATED cluster that every vtflow flow can run against, no cluster needed.

``up`` starts, detached so that they outlive the command and as the user who runs it (no root):
the Kubernetes API double (3 nodes), a throwaway MariaDB standing in for vtgate's MySQL, and 3
sshd nodes that log in that same user. It then saves the Prefect blocks named ``sandbox``
(target, nodes, MySQL credentials). The three nodes are described once (``SandboxState``): their
names, sizes and addresses drive both the double's Nodes and the sshd nodes, so that SSH and
Kubernetes tell the same machines. Each sandbox has a loopback network of its own (127.A.B.0,
picked where the deploy's NodePorts are free), so that two sandboxes, or a program on 30306,
never answer for each other. One Kubernetes version (a real K3s release per minor,
``cluster.K3S_RELEASES``) drives both the double's API (groups, schemas, gitVersion) and what
the nodes' ``k3s --version`` reports. Everything lives under ``<state dir>/sandbox/``: ``sandbox.json`` (ports, version
and sizes, no secrets; neither changes while the sandbox is up), ``run/*.pid``,
``logs/``, the kubeconfig, the MariaDB data and the node keys. Every step is safe to repeat: a
second ``up`` finds each process by its pid file and changes nothing, or starts only what is
missing; a failure stops what this run started. ``down`` stops every process (pid files, then
a sweep for anything still carrying the sandbox folder, e.g. SSH sessions), deletes the blocks
and the folder.

This module orders the steps and reports; MariaDB, the nodes, the double's command line, the
blocks and process handling each live in their own module. It must not hold flow logic.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import shlex
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from vtflow.errors import ConfigError, TransientError, VtflowError
from vtflow.sandbox import cluster, procs
from vtflow.sandbox.mariadb import MariaDB, user_sql
from vtflow.sandbox.nodes import SSHNodeBed, invoking_user
from vtflow.stack import port_is_free, state_dir

MYSQL_USER = "user"  # the upstream example's gateway user
SIMULATED = ("This is a SIMULATED cluster: no containers run. Kubernetes is an API double (kubedouble), "
             "MySQL is a local MariaDB, and the nodes are sshd servers on loopback with stand-in node tools.")
TOOLS = ("mariadbd", "mariadb-install-db", "mariadb", "sshd", "ssh-keygen", "ping")


def sandbox_dir() -> Path:
    return state_dir() / "sandbox"


@dataclass
class SandboxState:
    """What ``sandbox.json`` records: enough to find, repair and stop the sandbox. No secrets."""

    kube_port: int
    mysql_port: int
    node_ports: list[int]
    node_sizes: list[list[str]]           # [cpu, memory] of each node
    # a file written before the version was recorded ran the then default
    kubernetes_version: str = cluster.K3S_VERSION
    # the nodes are <network>.2, .3, .4; a file written before networks were picked used 127.0.0
    network: str = "127.0.0"
    created: float = field(default_factory=time.time)

    @classmethod
    def new(cls, node_sizes: list[tuple[str, str]], kubernetes_version: str) -> "SandboxState":
        kube_port = procs.free_port()
        mysql_port = procs.free_port()
        while mysql_port == kube_port:
            mysql_port = procs.free_port()
        network = pick_network()
        return cls(kube_port=kube_port, mysql_port=mysql_port, network=network,
                   node_ports=[procs.free_port(f"{network}.{i + 2}") for i in range(cluster.NODE_COUNT)],
                   node_sizes=[list(s) for s in node_sizes], kubernetes_version=kubernetes_version)

    @property
    def node_address(self) -> str:
        """Where the cluster's NodePorts answer (the first node, as on any node of a real cluster)."""
        return f"{self.network}.2"

    def addresses(self) -> list[str]:
        return [f"{self.network}.{i + 2}" for i in range(cluster.NODE_COUNT)]

    def sizes(self) -> list[tuple[str, str]]:
        return [(str(cpu), str(memory)) for cpu, memory in self.node_sizes]

    def sizes_text(self) -> str:
        """"3 nodes of 2 CPU / 4Gi", or each node's size when they differ."""
        sizes = self.sizes()
        if len(set(sizes)) == 1:
            return f"{len(sizes)} nodes of {sizes[0][0]} CPU / {sizes[0][1]}"
        return f"{len(sizes)} nodes: " + ", ".join(f"{cpu} CPU / {memory}" for cpu, memory in sizes)


def pick_network(attempts: int = 50) -> str:
    """A loopback network 127.A.B (Linux routes all of 127/8 to lo) whose first address has the
    deploy's default NodePorts free: a random one, so that sandboxes in other state folders (which
    know nothing of each other) do not share one. Refused when none is found."""
    rng = random.SystemRandom()
    for _ in range(attempts):
        network = f"127.{rng.randint(1, 254)}.{rng.randint(1, 254)}"
        if all(port_is_free(f"{network}.2", p) for p in cluster.DEFAULT_NODE_PORTS):
            return network
    raise ConfigError("vtflow sandbox up", f"found no loopback address with the NodePorts "
                      f"{', '.join(map(str, cluster.DEFAULT_NODE_PORTS))} free in {attempts} tries: a program listens "
                      "on them on every address (0.0.0.0).", "stop that program (`ss -ltnp | grep 30306`), then "
                      "run `vtflow sandbox up` again.")


class Sandbox:
    """Paths and parts of the sandbox under ``root``."""

    def __init__(self, root: Path | None = None):
        self.root = root or sandbox_dir()
        self.state_file = self.root / "sandbox.json"
        self.kubeconfig = self.root / "kubeconfig"
        self.run = self.root / "run"
        self.logs = self.root / "logs"

    def load(self) -> SandboxState | None:
        try:
            saved = json.loads(self.state_file.read_text())
            if "node_sizes" not in saved and "node_cpu" in saved:  # an older vtflow's uniform size
                saved["node_sizes"] = [[saved["node_cpu"], saved["node_memory"]]] * cluster.NODE_COUNT
            known = {f.name for f in fields(SandboxState)}  # an older vtflow's file may carry more
            return SandboxState(**{k: v for k, v in saved.items() if k in known})
        except (OSError, ValueError, TypeError):
            return None

    def save(self, state: SandboxState) -> None:
        self.state_file.write_text(json.dumps(asdict(state), indent=2) + "\n")

    def pid_file(self, name: str) -> Path:
        return self.run / f"{name}.pid"

    def mariadb(self, state: SandboxState) -> MariaDB:
        return MariaDB(root=self.root / "mariadb", port=state.mysql_port, user=MYSQL_USER)

    def nodes(self, state: SandboxState) -> SSHNodeBed:
        return SSHNodeBed(cluster.NODE_COUNT, root=self.root / "nodes", ports=state.node_ports,
                          k3s_version=state.kubernetes_version, network=state.network, names=cluster.NODE_NAMES,
                          sizes=state.sizes())

    def cluster(self, state: SandboxState) -> cluster.ClusterSpec:
        return cluster.ClusterSpec(port=state.kube_port, kubeconfig=self.kubeconfig, node_sizes=tuple(state.sizes()),
                                   k3s_version=state.kubernetes_version, network=state.network,
                                   mysql_backend=f"127.0.0.1:{state.mysql_port}")

    def pid_names(self) -> list[str]:
        return sorted(p.stem for p in self.run.glob("*.pid")) if self.run.is_dir() else []

    def running(self) -> dict[str, int]:
        """Name -> pid of each recorded process that is alive and ours."""
        found = {}
        for name in self.pid_names():
            if pid := procs.running(self.pid_file(name), self.root):
                found[name] = pid
        return found


# ---------------------------------------------------------------- up


@dataclass
class Part:
    """One process of the sandbox: how to start it and where it listens."""

    name: str
    argv: list[str]
    host: str
    port: int
    log: Path


def _parts(sb: Sandbox, state: SandboxState, db: MariaDB, bed: SSHNodeBed) -> list[Part]:
    # MariaDB first: the double's vtgate proxy connects to it
    parts = [Part("mariadb", db.command(), db.host, db.port, sb.logs / "mariadb.log")]
    parts.append(Part("kubedouble", cluster.command(sb.cluster(state)), "127.0.0.1",
                      state.kube_port, sb.logs / "kubedouble.log"))
    parts += [Part(n.name, n.command(), n.address, n.port, sb.logs / f"{n.name}-sshd.log") for n in bed.nodes]
    return parts


def _preflight() -> None:
    if module := cluster.missing_extra():
        raise ConfigError("vtflow sandbox up", f"needs the Kubernetes API double and its dependencies (the `sandbox` "
                          f"extra); this Python environment has no module {module!r}.",
                          "install them: `.venv/bin/pip install -e '.[sandbox]'` (`make test` does).")
    procs.require_tools(*TOOLS, fix="install them: apt-get install mariadb-server mariadb-client openssh-server "
                                    "openssh-client iputils-ping (or `make test` as root, which installs them).")


def _wanted_sizes(base: list[tuple[str, str]], node_cpu: str | None, node_memory: str | None,
                  node_sizes: str | None) -> list[tuple[str, str]]:
    """The node sizes asked for, over ``base`` (--node-cpu alone keeps each node's memory, and so on)."""
    if node_sizes:
        sizes = cluster.parse_node_sizes(node_sizes)
        if len(sizes) != cluster.NODE_COUNT:
            raise ConfigError(f"--node-sizes {node_sizes}", f"gives {len(sizes)} sizes; the sandbox has "
                              f"{cluster.NODE_COUNT} nodes.",
                              f"give one CPU/MEMORY per node, e.g. {cluster.NODE_SIZES_EXAMPLE}.")
        return sizes
    return [(node_cpu or cpu, node_memory or memory) for cpu, memory in base]


def up(node_cpu: str | None = None, node_memory: str | None = None, out=print, *, node_sizes: str | None = None,
       kubernetes_version: str | None = None) -> int:
    """Start (or repair) the sandbox and save its blocks. Returns the exit status.

    ``kubernetes_version`` is a minor ("1.24"); ``node_sizes`` one CPU/MEMORY per node
    ("2/4Gi,1/2Gi,2/4Gi"), else ``node_cpu`` / ``node_memory`` for every node. A sandbox that is
    up keeps its version and sizes: asking for others is refused."""
    from vtflow.sandbox import prefect_blocks as pb

    release = cluster.k3s_release(kubernetes_version) if kubernetes_version else None
    if node_sizes:
        _wanted_sizes([], None, None, node_sizes)  # a bad value fails before anything else
    _preflight()
    sb = Sandbox()
    state = sb.load()
    fresh = state is None
    if fresh:
        default = [(cluster.DEFAULT_NODE_CPU, cluster.DEFAULT_NODE_MEMORY)] * cluster.NODE_COUNT
        state = SandboxState.new(_wanted_sizes(default, node_cpu, node_memory, node_sizes),
                                 release or cluster.K3S_VERSION)
    else:
        if _wanted_sizes(state.sizes(), node_cpu, node_memory, node_sizes) != state.sizes():
            raise ConfigError(f"sandbox {sb.root}", f"is up with {state.sizes_text()}; its node sizes cannot "
                              "change while it runs.", "run `vtflow sandbox down`, then `up` with the new sizes.")
        if release and release != state.kubernetes_version:
            raise ConfigError(f"sandbox {sb.root}", f"is up as Kubernetes {state.kubernetes_version}; its version "
                              "cannot change while it runs.", f"run `vtflow sandbox down`, then `up "
                              f"--kubernetes-version {kubernetes_version}`.")
    url = pb.api_url()
    with pb.prefect_api(url):
        pb.check_reachable(url)
        started: list[int] = []
        try:
            changes = _up(sb, state, started)
        except BaseException:
            if started or fresh:
                out("Stopping what this run started ...")
            procs.terminate(started, sb.root)
            if fresh:
                procs.terminate(procs.sweep(sb.root), sb.root, timeout=5)
                _remove(sb)
            raise
    _report(sb, state, url, changes, out)
    return 0


def _up(sb: Sandbox, state: SandboxState, started: list[int]) -> list[str]:
    """Start what does not run, save what differs; appends each started pid to ``started`` at once."""
    from vtflow.sandbox import prefect_blocks as pb

    changes: list[str] = []
    sb.root.mkdir(parents=True, exist_ok=True)
    for sub in (sb.run, sb.logs):
        sub.mkdir(exist_ok=True)
    sb.save(state)
    db = sb.mariadb(state)
    bed = sb.nodes(state).prepare()
    db.install()
    running = sb.running()
    if "kubedouble" not in running and (installed := _ensure_schemas(state.kubernetes_version)):
        changes.append(installed)  # before anything starts: without schemas the double cannot
    for part in _parts(sb, state, db, bed):
        if part.name in running:
            continue
        if not port_is_free(part.host, part.port):
            raise ConfigError(f"{part.name} port {part.host}:{part.port}", "is taken by another program.",
                              "stop that program, or `vtflow sandbox down` and `up` again to pick new ports.")
        env = None
        if part.name == "kubedouble":
            sb.kubeconfig.unlink(missing_ok=True)  # the double writes a fresh one once it listens
            # a fresh password each start: kept nowhere but in the double's environment
            dba_password = secrets.token_urlsafe(18)
            db.run_sql(user_sql(cluster.MYSQL_DBA_USER, dba_password))
            env = {**os.environ, cluster.PASSWORD_VAR: dba_password}
        pid = procs.spawn(part.argv, sb.pid_file(part.name), part.log, sb.root, env=env)
        started.append(pid)
        procs.wait_port(part.host, part.port, 60, pid=pid, what=f"sandbox {part.name}", log=part.log)
        changes.append(f"started {part.name} (pid {pid})")
    _wait_file(sb.kubeconfig, 15, "sandbox kubedouble")
    # blocks: each saved only when missing or different
    kubeconfig = sb.kubeconfig.read_text()
    # no vtgate_address: flows find vtgate's NodePort on the node address, which the double proxies to MariaDB
    if pb.ensure(pb.target_block(kubeconfig, state.node_address, None)):
        changes.append("saved block vtflow-vitess-target/sandbox")
    if pb.ensure(pb.nodes_block(bed.inventory(), bed.client_key.read_text(), bed.known_hosts())):
        changes.append("saved block vtflow-ssh-nodes/sandbox")
    if not _mysql_block_works(db):
        db.password = secrets.token_urlsafe(18)
        db.create_user()
        pb.mysql_block(db.user, db.password).save(pb.BLOCK_NAME, overwrite=True)
        changes.append(f"set a new password for MariaDB user {db.user!r}; saved block vtflow-mysql-credentials/sandbox")
    return changes


def _ensure_schemas(k3s_version: str) -> str | None:
    """Have the double install the schemas its version needs (1.24: an older kubernetes-validate
    release, ~90 MB from PyPI, once per environment); says what it installed, None when nothing."""
    argv = cluster.schemas_command(k3s_version)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise ConfigError(f"sandbox kubedouble {k3s_version}", f"has no OpenAPI schemas for that version: {last}",
                          f"run `{shlex.join(argv)}` and read its error.")
    return done.stdout.strip() or None


def _mysql_block_works(db: MariaDB) -> bool:
    from vtflow.sandbox import prefect_blocks as pb
    from blocks import MySQLCredentials

    block = pb.load(MySQLCredentials)
    if block is None or block.user != db.user:
        return False
    try:
        block.connect(db.host, db.port, timeout=5).close()
    except VtflowError:
        return False
    return True


def _wait_file(path: Path, timeout: float, what: str) -> None:
    """Wait for a kubeconfig to be written whole (it is written once the double listens)."""
    deadline = time.monotonic() + timeout
    while not (path.exists() and "current-context" in path.read_text()):
        if time.monotonic() > deadline:
            raise TransientError(what, f"did not write {path} within {timeout:.0f} s.", "read its log under logs/.")
        time.sleep(0.05)


def _report(sb: Sandbox, state: SandboxState, url: str, changes: list[str], out) -> None:
    from vtflow.sandbox import prefect_blocks as pb

    if changes:
        out("vtflow sandbox is up:")
        for change in changes:
            out(f"  - {change}")
    else:
        out("vtflow sandbox is already up; nothing changed.")
    out(SIMULATED)
    bed_root = sb.root / "nodes"
    vtgate = (f"vtgate's MySQL port (a NodePort on {state.node_address} once the cluster is deployed) proxies to "
              f"it; the simulated tablets use its account {cluster.MYSQL_DBA_USER!r}")
    lines = [
        ("Kubernetes API", f"https://127.0.0.1:{state.kube_port}  (Kubernetes {state.kubernetes_version}, "
                           f"{state.sizes_text()}); kubeconfig {sb.kubeconfig} (its CA included)"),
        ("kubectl", f"export KUBECONFIG={shlex.quote(str(sb.kubeconfig))}   then: kubectl get pods -A -w"),
        ("MySQL", f"MariaDB on 127.0.0.1:{state.mysql_port}, user {MYSQL_USER!r}; {vtgate}"),
        ("Nodes", ", ".join(f"{name} {address}:{port} ({cpu} CPU / {memory})" for name, address, port, (cpu, memory)
                             in zip(cluster.NODE_NAMES, state.addresses(), state.node_ports, state.sizes()))
         + f"; SSH as {invoking_user()} (you), key {bed_root / 'client_ed25519'}"),
        ("Prefect blocks", ", ".join(pb.labels()) + f"  on {url}"),
        ("Logs", f"{sb.logs}/"),
        ("Stop it", "vtflow sandbox down"),
        ("Try", "vtflow node-prep --nodes sandbox"),
    ]
    for label, text in lines:
        out(f"  {label + ':':<16}{text}")
    from vtflow.schedules import offer_line

    if offer := offer_line(pb.BLOCK_NAME):
        out(offer)


# ---------------------------------------------------------------- down


def _remove(sb: Sandbox) -> None:
    shutil.rmtree(sb.root, ignore_errors=True)


def down(out=print) -> int:
    """Stop every sandbox process, delete its blocks and its folder. Returns the exit status."""
    from vtflow.sandbox import prefect_blocks as pb

    sb = Sandbox()
    if not sb.root.exists():
        out(f"No sandbox is up (nothing at {sb.root}).")
        return 0
    recorded = [pid for name in sb.pid_names() if (pid := procs.running(sb.pid_file(name), sb.root))]
    stopped = procs.terminate(recorded, sb.root)
    # SSH sessions and the like outlive their sshd; they still carry the sandbox folder
    stragglers = procs.terminate(procs.sweep(sb.root), sb.root, timeout=5)
    # another user's process (a root sandbox of an older vtflow) cannot be signalled, nor its environment read
    left = sorted(set(procs.sweep(sb.root)) | {pid for pid in recorded if procs.is_ours(pid, sb.root)})
    url = pb.api_url()
    blocks_note = ""
    with pb.prefect_api(url):
        try:
            pb.check_reachable(url, timeout=3)
        except VtflowError:
            blocks_note = (f"The Prefect server {url} does not answer, so the blocks {', '.join(pb.labels())} were not "
                           "deleted. Fix: start it (`make up`), then delete them in the UI or with "
                           "`prefect block delete vtflow-ssh-nodes/sandbox` (and the other two).")
        else:
            deleted = pb.delete_all()
            blocks_note = f"Deleted blocks: {', '.join(deleted)}." if deleted else "No sandbox blocks were saved."
            from vtflow.schedules import pause_using

            # scheduled runs against blocks that are gone would fail every 5 minutes
            blocks_note = "\n".join([blocks_note, *pause_using(pb.BLOCK_NAME)])
    if left:
        owners = sorted({procs.owner(pid) for pid in left} - {invoking_user()})
        out(f"Processes {', '.join(map(str, left))} of the sandbox did not stop; kept {sb.root}. "
            + (f"They belong to {', '.join(owners)} (a sandbox an older vtflow started with sudo runs as root). "
               f"Fix: run `vtflow sandbox down` as {owners[0]}." if owners else
               "Fix: kill them, then run `vtflow sandbox down` again."))
        out(blocks_note)
        return 1
    _remove(sb)
    out(f"vtflow sandbox is down: stopped {len(stopped)} processes"
        + (f" and {len(stragglers)} leftover sessions" if stragglers else "") + f"; removed {sb.root}.")
    out(blocks_note)
    return 0


# ---------------------------------------------------------------- status


def status(out=print) -> int:
    """Say what runs. Returns 0 when the whole sandbox is up, 1 otherwise."""
    from vtflow.sandbox import prefect_blocks as pb

    sb = Sandbox()
    state = sb.load()
    if state is None:
        out(f"No sandbox is up (nothing at {sb.root}). Start one with `vtflow sandbox up`.")
        return 1
    running = sb.running()
    expected = ["mariadb", "kubedouble", *cluster.NODE_NAMES]
    ports = {"mariadb": ("127.0.0.1", state.mysql_port), "kubedouble": ("127.0.0.1", state.kube_port)}
    ports.update({name: (address, p) for name, address, p in zip(cluster.NODE_NAMES, state.addresses(), state.node_ports)})
    out(f"Sandbox at {sb.root} (SIMULATED cluster):")
    for name in expected:
        host, port = ports[name]
        pid = running.get(name)
        listening = procs.port_open(host, port)
        what = f"running (pid {pid})" if pid else "NOT running"
        out(f"  {name:<11} {host}:{port:<6} {what}{'' if listening or not pid else ', not listening'}")
    url = pb.api_url()
    with pb.prefect_api(url):
        try:
            pb.check_reachable(url, timeout=3)
            have = pb.existing()
            out(f"  blocks on {url}: {', '.join(have) if have else 'none'}")
        except VtflowError:
            have = None
            out(f"  blocks: unknown (the Prefect server {url} does not answer)")
    whole = all(n in running for n in expected) and (have is None or len(have) == 3)
    if not whole:
        out("Not everything is up: `vtflow sandbox up` starts what is missing.")
    return 0 if whole else 1
