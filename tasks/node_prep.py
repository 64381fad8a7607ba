"""Node prep: check (and, when allowed, fix) what each K3s node needs before Vitess goes on it.

One SSH round trip per node gathers every fact (the probe script), one pure function per check
judges the facts into a ``Finding`` (``tasks.report``), and the only change vtflow makes
(installing a MySQL client) runs only when the caller allows it and only when the client is
missing. What each check measured is kept beside its finding (``NodeReport.values``), not in it.
The probe's building blocks (memory, disk) are shared with the health check's read-only probe.
Nothing here talks to Prefect's API beyond being a task; nothing here imports paramiko
(``vtflow.ssh`` does).
"""

from __future__ import annotations

import asyncio
import functools
import re
import shlex
from concurrent.futures import ThreadPoolExecutor

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from blocks.nodes import NodeSpec, SSHNodes
from tasks.common import retry_transient
from tasks.report import Finding, Level, worst
from vtflow.errors import CommandError, ConfigError
from vtflow.forms import OptionalText

GIB = 1024 * 1024  # kB per GiB
WG_HANDSHAKE_STALE_S = 180  # WireGuard re-keys every 2 min while traffic flows
K3S_DATA_PATH = "/var/lib/rancher"  # where K3s keeps images and volumes (local-path PVCs)
CHECKS = ("k3s", "cpu", "memory", "disk", "wireguard", "clock", "mysql-client")


class NodeRequirements(BaseModel):
    """What each node must have to run K3s itself. Whether the cluster fits is the cluster step's
    judgement (its preflight, and ``size: fit``), made from all the nodes' room together: a node
    prep that asked every node for the upstream 101 cluster's share refused the user's 1 CPU /
    2 GiB node, which runs K3s and part of a fitted cluster. The memory floor is K3s's measured
    need for a server with embedded etcd (docs.k3s.io, Resource Profiling: 1606 M), below a
    2 GiB machine's MemTotal (~1.9 GiB)."""

    min_cpus: int = Field(default=1, ge=1, description="CPUs each node must have (K3s runs a server on one).")
    min_memory_gib: float = Field(default=1.5, gt=0, description="Memory each node must have (GiB): K3s's own "
                                                                 "need; the cluster step judges the rest.")
    min_available_memory_gib: float = Field(
        default=2.0, ge=0, description="Memory that must be free right now (GiB); below it is a warning."
    )
    min_disk_gib: float = Field(default=20.0, ge=0, description="Free disk under disk_path (GiB).")
    disk_path: str = Field(default=K3S_DATA_PATH, description="Where K3s keeps images and volumes (local-path PVCs).")
    max_clock_skew_s: float = Field(default=1.0, gt=0, description="Largest clock difference from the machine running the flow (s).")
    k3s_min_version: OptionalText = Field(default=None, description="Lowest acceptable K3s version, e.g. v1.32.0; empty accepts any.")


class NodeReport(BaseModel):
    """One node's findings, and beside them what each check measured and which ones vtflow changed."""

    node: str
    address: str
    reachable: bool = True
    error: str | None = None
    findings: list[Finding] = Field(default_factory=list)
    values: dict[str, str] = Field(default_factory=dict, description="Check name -> what was measured, e.g. '4 CPUs'.")
    changed_checks: list[str] = Field(default_factory=list, description="Checks whose fix vtflow applied (mysql-client).")

    @property
    def changed(self) -> bool:
        return bool(self.changed_checks)

    @property
    def worst(self) -> Level:
        return "fail" if not self.reachable else worst(self.findings)

    def finding(self, name: str) -> Finding | None:
        return next((f for f in self.findings if f.name == name), None)


# ---------------------------------------------------------------- pure: the probe script

_SAFE_ADDR = re.compile(r"^[A-Za-z0-9.:\-]+$")
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9._/\-]*$")

# The building blocks of the probe, shared with the health check's probe (tasks/health.py).
# Every fork counts: 20 nodes probed at once share their CPUs with everything else, so the
# blocks use shell builtins where they can (parameter expansion, read) instead of helpers.
MEMINFO_LINES = """\
awk '/^MemTotal:/ {print "mem_total_kb=" $2} /^MemAvailable:/ {print "mem_available_kb=" $2}
     /^processor/ {n++} END {print "cpus=" n}' /proc/meminfo /proc/cpuinfo
"""


def disk_lines(disk_path: str) -> str:
    """sh that prints ``disk_path`` (the nearest existing folder), ``disk_total_kb`` and ``disk_avail_kb``."""
    if not _SAFE_PATH.match(disk_path):
        raise ConfigError(f"disk_path {disk_path!r}", "must be an absolute path of plain characters.", "correct the requirements parameter.")
    return f"""\
p={shlex.quote(disk_path)}
while [ ! -e "$p" ]; do p=${{p%/*}}; p=${{p:-/}}; done
echo disk_path=$p
df -Pk "$p" | {{ read -r h; read -r fs total used avail rest; echo disk_total_kb=$total; echo disk_avail_kb=$avail; }}
"""


def probe_script(node: NodeSpec, peers: list[str], disk_path: str) -> str:
    """POSIX sh that prints ``key=value`` facts about the node, one per line. Read-only."""
    for addr in peers:
        if not _SAFE_ADDR.match(addr):
            raise ConfigError(f"node address {addr!r}", "is not an IP address or host name.", "correct it in the SSH nodes block.")
    disk = disk_lines(disk_path)
    service = k3s_service(node)
    # -w 2 with -c 1: keep asking every 0.2 s until one reply or 2 s; a first packet can be
    # lost while WireGuard completes a handshake
    pings = "\n".join(
        f"( if ping -c 1 -i 0.2 -w 2 {shlex.quote(a)} >/dev/null 2>&1; then echo peer={a},ok; else echo peer={a},fail; fi ) &"
        for a in peers
    )
    return f"""\
echo clock=$(date +%s.%N)
U=$(id -u)
echo uid=$U
{MEMINFO_LINES}{disk}if command -v systemctl >/dev/null 2>&1; then echo k3s_active=$(systemctl is-active {service} 2>/dev/null); else echo k3s_active=no-systemctl; fi
if command -v k3s >/dev/null 2>&1; then k3s --version 2>/dev/null | {{ read -r v; echo "k3s_version=$v"; }}; fi
if command -v timedatectl >/dev/null 2>&1; then echo ntp_synced=$(timedatectl show -p NTPSynchronized --value 2>/dev/null); fi
if command -v wg >/dev/null 2>&1; then
  echo wg=present
  if [ "$U" = 0 ]; then WG=wg; else WG="sudo -n wg"; fi
  # dump: interface lines have 5 fields (the 2nd is the private key: never echoed), peer lines 9
  $WG show all dump 2>/dev/null | while read -r i k psk ep ips hs rx tx ka; do
    [ -n "$ka" ] && echo "wg_peer=$i,$k,$hs" && echo "wg_ips=$k,$ips"
  done
fi
for c in mysql mariadb; do if command -v $c >/dev/null 2>&1; then printf mysql_client=; command -v $c; break; fi; done
for m in apt-get dnf yum zypper apk; do if command -v $m >/dev/null 2>&1; then echo pkg=$m; break; fi; done
{pings}
wait
echo end=1
"""


def parse_probe(output: str) -> dict:
    """The probe's lines as a dict; ``peer``/``wg_peer``/``wg_ips`` lines are gathered in lists."""
    facts: dict = {"peer": [], "wg_peer": [], "wg_ips": []}
    for line in output.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        key, value = key.strip(), value.strip()
        if key in ("peer", "wg_peer", "wg_ips"):
            facts[key].append(value)
        else:
            facts[key] = value
    return facts


def install_command(package_manager: str | None, root: bool) -> str | None:
    """Shell command that installs a MySQL client with the node's package manager."""
    sudo = "" if root else "sudo -n "
    commands = {
        "apt-get": f"{sudo}env DEBIAN_FRONTEND=noninteractive apt-get install -y -q default-mysql-client"
        f" || ({sudo}apt-get update -q && {sudo}env DEBIAN_FRONTEND=noninteractive apt-get install -y -q default-mysql-client)",
        "dnf": f"{sudo}dnf install -y mariadb",
        "yum": f"{sudo}yum install -y mariadb",
        "zypper": f"{sudo}zypper --non-interactive install mariadb-client",
        "apk": f"{sudo}apk add mariadb-client",
    }
    return commands.get(package_manager or "")


# ---------------------------------------------------------------- pure: judging the facts
# One function per check, each returning one Finding; ``evaluate`` is the list of them.
# ``values`` says what each check measured, for the node table.


def k3s_service(node: NodeSpec) -> str:
    return "k3s" if node.role == "server" else "k3s-agent"


def _version_tuple(v: str) -> tuple[int, ...]:
    m = re.search(r"v?(\d+)\.(\d+)\.(\d+)", v)
    return tuple(int(x) for x in m.groups()) if m else ()


def gib(kb: str | None) -> float | None:
    """A ``*_kb`` fact in GiB; None when missing or not a number."""
    try:
        return int(kb) / GIB if kb is not None else None
    except ValueError:
        return None


def _cpus(facts: dict) -> int | None:
    try:
        return int(facts.get("cpus", ""))
    except ValueError:
        return None


def _k3s_version(facts: dict) -> str:
    m = re.search(r"(v\d+\.\d+\.\d+\S*)", facts.get("k3s_version", ""))
    return m.group(1) if m else ""


def _unreachable_peers(facts: dict, peers: list[str]) -> list[str]:
    results = dict(p.split(",", 1) for p in facts.get("peer", []) if "," in p)
    return [a for a in peers if results.get(a) != "ok"]


def clock_skew(remote_epoch: str | None, sent: float, received: float) -> float | None:
    """Seconds the node's clock is off, or 0 when within the round trip's uncertainty."""
    try:
        remote = float(remote_epoch) if remote_epoch else None
    except ValueError:
        return None
    if remote is None:
        return None
    if remote < sent:
        return remote - sent
    if remote > received:
        return remote - received
    return 0.0


def check_k3s(facts: dict, service: str, min_version: str | None) -> Finding:
    active, version = facts.get("k3s_active", ""), _k3s_version(facts)
    if active != "active":
        return Finding(name="k3s", level="fail", problem=f"service {service} is {active or 'not found'}",
                       fix=f"start it (systemctl enable --now {service}) and read `journalctl -u {service}`")
    if not version:
        return Finding(name="k3s", level="fail", problem="k3s is not on PATH",
                       fix="reinstall K3s (curl -sfL https://get.k3s.io | sh -)")
    if min_version and _version_tuple(version) < _version_tuple(min_version):
        return Finding(name="k3s", level="fail", problem=f"K3s {version} is older than {min_version}",
                       fix="upgrade K3s or lower k3s_min_version")
    return Finding(name="k3s", level="ok", problem=f"{service} active")


def check_cpu(facts: dict, min_cpus: int) -> Finding:
    cpus = _cpus(facts)
    if cpus is None:
        return Finding(name="cpu", level="fail", problem="nproc printed nothing", fix="check that coreutils is installed")
    if cpus < min_cpus:
        return Finding(name="cpu", level="fail", problem=f"{cpus} CPUs < {min_cpus} required",
                       fix="give the node more CPUs or lower min_cpus")
    return Finding(name="cpu", level="ok")


def check_memory(facts: dict, min_total_gib: float, min_available_gib: float) -> Finding:
    total, avail = gib(facts.get("mem_total_kb")), gib(facts.get("mem_available_kb"))
    if total is None:
        return Finding(name="memory", level="fail", problem="/proc/meminfo was not readable",
                       fix="check that /proc is mounted on the node")
    if total < min_total_gib:
        return Finding(name="memory", level="fail", problem=(
            f"{total:.1f} GiB < {min_total_gib:g} GiB required: the upstream 101 cluster alone requests "
            "about 3.2 GiB and K3s needs its share, so pods would stay Pending or be OOM-killed"),
            fix="Add memory to the node, add nodes, or lower min_memory_gib with a smaller cluster spec")
    if avail is not None and avail < min_available_gib:
        return Finding(name="memory", level="warn", problem=f"only {avail:.1f} GiB free (< {min_available_gib:g} GiB)",
                       fix="find what uses it (ps aux --sort=-rss | head) before deploying")
    return Finding(name="memory", level="ok")


def check_disk(facts: dict, min_gib: float, disk_path: str) -> Finding:
    disk, where = gib(facts.get("disk_avail_kb")), facts.get("disk_path", disk_path)
    if disk is None:
        return Finding(name="disk", level="fail", problem=f"df failed for {where}", fix=f"check that {where} is mounted")
    if disk < min_gib:
        return Finding(name="disk", level="fail", problem=(
            f"{disk:.1f} GiB < {min_gib:g} GiB free on {where}; the 101 cluster's PVCs ask for about 23 GiB in all"),
            fix="Free space (k3s crictl rmi --prune) or grow the disk")
    return Finding(name="disk", level="ok")


def check_wireguard(facts: dict, peers: list[str], now: float) -> Finding:
    down = _unreachable_peers(facts, peers)
    stale = []
    for entry in facts.get("wg_peer", []):
        parts = entry.split(",")
        if len(parts) == 3 and parts[2].isdigit():
            age = now - int(parts[2]) if int(parts[2]) else None
            if age is None or age > WG_HANDSHAKE_STALE_S:
                stale.append(f"{parts[0]} peer {parts[1][:8]}... " + ("never" if age is None else f"{age:.0f} s ago"))
    if down:
        return Finding(name="wireguard", level="fail", problem=f"no answer from {', '.join(down)} on the mesh",
                       fix="check `wg show` on both ends (endpoint, allowed-ips, UDP port open) and the firewall")
    if stale:
        return Finding(name="wireguard", level="warn", problem="stale handshake: " + "; ".join(stale),
                       fix="check `wg show` on both ends")
    if "wg" not in facts:
        return Finding(name="wireguard", level="ok" if peers else "warn",
                       problem="wg not installed; only reachability was checked")
    return Finding(name="wireguard", level="ok")


def check_clock(facts: dict, skew: float | None, max_skew_s: float) -> Finding:
    synced = facts.get("ntp_synced")
    if skew is None:
        return Finding(name="clock", level="fail", problem="date printed nothing usable",
                       fix="check that the node's date prints seconds (date +%s)")
    if abs(skew) > max_skew_s:
        return Finding(name="clock", level="fail", problem=(
            f"clock differs by {skew:+.2f} s (> {max_skew_s:g} s); etcd and TLS need synced clocks"),
            fix="enable NTP (timedatectl set-ntp true) or chrony")
    if synced == "no":
        return Finding(name="clock", level="warn", problem="NTP is not synchronised", fix="run `timedatectl set-ntp true`")
    if not synced:
        return Finding(name="clock", level="ok", problem="no timedatectl; only the offset was checked")
    return Finding(name="clock", level="ok")


def check_mysql_client(facts: dict) -> Finding:
    if facts.get("mysql_client"):
        return Finding(name="mysql-client", level="ok")
    return Finding(name="mysql-client", level="warn", problem="no mysql client on the node (vtflow itself does not need one)",
                   fix="run node prep with install_mysql_client=true to install it")


def evaluate(node: NodeSpec, facts: dict, req: NodeRequirements, skew: float | None, now: float,
             peers: list[str]) -> list[Finding]:
    """Every check of one node's facts, in the order of ``CHECKS``."""
    return [
        check_k3s(facts, k3s_service(node), req.k3s_min_version),
        check_cpu(facts, req.min_cpus),
        check_memory(facts, req.min_memory_gib, req.min_available_memory_gib),
        check_disk(facts, req.min_disk_gib, req.disk_path),
        check_wireguard(facts, peers, now),
        check_clock(facts, skew, req.max_clock_skew_s),
        check_mysql_client(facts),
    ]


def values(facts: dict, skew: float | None, peers: list[str], disk_path: str) -> dict[str, str]:
    """What each check measured, whatever the judgement: the node table's cells."""
    active, version = facts.get("k3s_active", ""), _k3s_version(facts)
    cpus = _cpus(facts)
    total, avail = gib(facts.get("mem_total_kb")), gib(facts.get("mem_available_kb"))
    disk = gib(facts.get("disk_avail_kb"))
    n = len(peers)
    ntp = {"yes": ", NTP synced", "no": ", NTP not synced"}.get(facts.get("ntp_synced") or "", "")
    return {
        "k3s": (version or "active, no version") if active == "active" else (active or "unknown"),
        "cpu": "unknown" if cpus is None else f"{cpus} CPUs",
        "memory": "unknown" if total is None else f"{total:.1f} GiB total, {avail or 0:.1f} GiB free",
        "disk": "unknown" if disk is None else f"{disk:.1f} GiB free on {facts.get('disk_path', disk_path)}",
        "wireguard": f"{n - len(_unreachable_peers(facts, peers))}/{n} peers reachable",
        "clock": "unknown" if skew is None else f"off by {skew:+.2f} s{ntp}",
        "mysql-client": facts.get("mysql_client") or "missing",
    }


# ---------------------------------------------------------------- the task

# SSH is blocking I/O: each node's session runs in a thread of its own, so that nodes proceed
# at once (asyncio's default executor has only cpu+4 threads). The health check's node probe
# shares the pool.
SSH_THREADS = ThreadPoolExecutor(max_workers=64, thread_name_prefix="vtflow-ssh")


@task(name="prep-node", retries=2, retry_delay_seconds=[1, 3], retry_condition_fn=retry_transient,
      cache_policy=NO_CACHE, task_run_name="prep-node-{node_name}")
async def prep_node(nodes: SSHNodes, node_name: str, requirements: NodeRequirements,
                    install_mysql_client: bool = False, timeout_s: float = 10.0) -> NodeReport:
    """Connect, probe, judge, and install a MySQL client if allowed and missing."""
    return await asyncio.get_running_loop().run_in_executor(
        SSH_THREADS, functools.partial(check_node, nodes, node_name, requirements, install_mysql_client, timeout_s))


def check_node(nodes: SSHNodes, node_name: str, requirements: NodeRequirements,
               install_mysql_client: bool = False, timeout_s: float = 10.0) -> NodeReport:
    """The blocking body of ``prep_node``: one SSH session to one node."""
    node = nodes.node(node_name)
    peers = [n.mesh_address for n in nodes.nodes if n.name != node.name]
    script = probe_script(node, peers, requirements.disk_path)
    with nodes.connect(node_name, timeout=timeout_s) as session:
        result = session.run(script, timeout=60)
        facts = parse_probe(result.stdout)
        if facts.get("end") != "1":
            raise CommandError(node.endpoint.label, f"the probe stopped early (exit {result.exit_status}): "
                               f"{result.stderr.strip()[:300]}", "check that the user's shell is a POSIX sh.")
        skew = clock_skew(facts.get("clock"), result.started_at, result.ended_at)
        report = NodeReport(node=node.name, address=node.address,
                            findings=evaluate(node, facts, requirements, skew, result.ended_at, peers),
                            values=values(facts, skew, peers, requirements.disk_path))
        if install_mysql_client and not facts.get("mysql_client"):
            finding, value = _install_mysql_client(session, facts)
            report.findings = [f for f in report.findings if f.name != "mysql-client"] + [finding]
            report.values["mysql-client"] = value
            if finding.level == "ok":
                report.changed_checks.append("mysql-client")
    return report


def _install_mysql_client(session, facts: dict) -> tuple[Finding, str]:
    """The mysql-client finding after installing one, and what is there now."""
    command = install_command(facts.get("pkg"), facts.get("uid") == "0")
    if command is None:
        return Finding(name="mysql-client", level="fail",
                       problem="no known package manager (apt-get, dnf, yum, zypper, apk) on the node",
                       fix="install a mysql client by hand"), "missing"
    done = session.run(command, timeout=600)
    again = parse_probe(session.run("for c in mysql mariadb; do if command -v $c >/dev/null 2>&1; then "
                                    "echo mysql_client=$(command -v $c); break; fi; done", timeout=30).stdout)
    if done.exit_status != 0 or not again.get("mysql_client"):
        tail = (done.stderr.strip() or done.stdout.strip())[-300:]
        return Finding(name="mysql-client", level="fail", problem=f"`{command}` exited {done.exit_status}: {tail}",
                       fix="install a mysql client by hand, or give the SSH user passwordless sudo"), "install failed"
    return Finding(name="mysql-client", level="ok", problem="installed"), again["mysql_client"]
