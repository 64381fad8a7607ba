"""Node prep: check (and, when allowed, fix) what each K3s node needs before Vitess goes on it.

One SSH round trip per node gathers every fact (the probe script), pure functions turn the
facts into check results, and the only change vtflow makes (installing a MySQL client) runs
only when the caller allows it and only when the client is missing. Nothing here talks to
Prefect's API beyond being a task; nothing here imports paramiko (``vtflow.ssh`` does).
"""

from __future__ import annotations

import asyncio
import functools
import re
import shlex
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from blocks.nodes import NodeSpec, SSHNodes
from tasks.common import retry_transient
from vtflow.errors import CommandError, ConfigError

Level = Literal["ok", "warn", "fail"]
GIB = 1024 * 1024  # kB per GiB
WG_HANDSHAKE_STALE_S = 180  # WireGuard re-keys every 2 min while traffic flows


class NodeRequirements(BaseModel):
    """What each node must have. Defaults fit the upstream 101 cluster spread over three nodes
    with room for K3s itself; the user's 2 CPU / 4 GiB nodes ran out of memory."""

    min_cpus: int = Field(default=2, ge=1, description="CPUs each node must have.")
    min_memory_gib: float = Field(default=8.0, gt=0, description="Memory each node must have (GiB).")
    min_available_memory_gib: float = Field(
        default=2.0, ge=0, description="Memory that must be free right now (GiB); below it is a warning."
    )
    min_disk_gib: float = Field(default=20.0, ge=0, description="Free disk under disk_path (GiB).")
    disk_path: str = Field(default="/var/lib/rancher", description="Where K3s keeps images and volumes (local-path PVCs).")
    max_clock_skew_s: float = Field(default=1.0, gt=0, description="Largest clock difference from the machine running the flow (s).")
    k3s_min_version: str | None = Field(default=None, description="Lowest acceptable K3s version, e.g. v1.32.0; empty accepts any.")


class CheckResult(BaseModel):
    check: str
    level: Level
    value: str = ""
    message: str = ""
    changed: bool = False


class NodeReport(BaseModel):
    node: str
    address: str
    reachable: bool = True
    error: str | None = None
    checks: list[CheckResult] = Field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any(c.changed for c in self.checks)

    @property
    def worst(self) -> Level:
        if not self.reachable or any(c.level == "fail" for c in self.checks):
            return "fail"
        return "warn" if any(c.level == "warn" for c in self.checks) else "ok"


# ---------------------------------------------------------------- pure: the probe script

_SAFE_ADDR = re.compile(r"^[A-Za-z0-9.:\-]+$")
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9._/\-]*$")


def probe_script(node: NodeSpec, peers: list[str], disk_path: str) -> str:
    """POSIX sh that prints ``key=value`` facts about the node, one per line. Read-only."""
    for addr in peers:
        if not _SAFE_ADDR.match(addr):
            raise ConfigError(f"node address {addr!r}", "is not an IP address or host name.", "correct it in the SSH nodes block.")
    if not _SAFE_PATH.match(disk_path):
        raise ConfigError(f"disk_path {disk_path!r}", "must be an absolute path of plain characters.", "correct the requirements parameter.")
    service = "k3s" if node.role == "server" else "k3s-agent"
    # -w 2 with -c 1: keep asking every 0.2 s until one reply or 2 s; a first packet can be
    # lost while WireGuard completes a handshake
    pings = "\n".join(
        f"( if ping -c 1 -i 0.2 -w 2 {shlex.quote(a)} >/dev/null 2>&1; then echo peer={a},ok; else echo peer={a},fail; fi ) &"
        for a in peers
    )
    # Every fork counts: 20 nodes probed at once share their CPUs with everything else, so the
    # script uses shell builtins where it can (parameter expansion, read) instead of helpers.
    return f"""\
echo clock=$(date +%s.%N)
U=$(id -u)
echo uid=$U
awk '/^MemTotal:/ {{print "mem_total_kb=" $2}} /^MemAvailable:/ {{print "mem_available_kb=" $2}}
     /^processor/ {{n++}} END {{print "cpus=" n}}' /proc/meminfo /proc/cpuinfo
p={shlex.quote(disk_path)}
while [ ! -e "$p" ]; do p=${{p%/*}}; p=${{p:-/}}; done
echo disk_path=$p
df -Pk "$p" | {{ read -r h; read -r fs total used avail rest; echo disk_total_kb=$total; echo disk_avail_kb=$avail; }}
if command -v systemctl >/dev/null 2>&1; then echo k3s_active=$(systemctl is-active {service} 2>/dev/null); else echo k3s_active=no-systemctl; fi
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

def _version_tuple(v: str) -> tuple[int, ...]:
    m = re.search(r"v?(\d+)\.(\d+)\.(\d+)", v)
    return tuple(int(x) for x in m.groups()) if m else ()


def _gib(kb: str | None) -> float | None:
    try:
        return int(kb) / GIB if kb is not None else None
    except ValueError:
        return None


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


def evaluate(node: NodeSpec, facts: dict, req: NodeRequirements, skew: float | None, now: float,
             peers: list[str]) -> list[CheckResult]:
    """Turn a node's facts into check results, each with a level and a fix."""
    out: list[CheckResult] = []
    service = "k3s" if node.role == "server" else "k3s-agent"

    active = facts.get("k3s_active", "")
    version = facts.get("k3s_version", "")
    m = re.search(r"(v\d+\.\d+\.\d+\S*)", version)
    version = m.group(1) if m else ""
    if active != "active":
        out.append(CheckResult(check="k3s", level="fail", value=active or "unknown",
                               message=f"service {service} is {active or 'not found'}; start it "
                               f"(systemctl enable --now {service}) and read `journalctl -u {service}`."))
    elif not version:
        out.append(CheckResult(check="k3s", level="fail", value="active, no version",
                               message="k3s is not on PATH; reinstall K3s (curl -sfL https://get.k3s.io | sh -)."))
    elif req.k3s_min_version and _version_tuple(version) < _version_tuple(req.k3s_min_version):
        out.append(CheckResult(check="k3s", level="fail", value=version,
                               message=f"K3s {version} is older than {req.k3s_min_version}; upgrade K3s or lower k3s_min_version."))
    else:
        out.append(CheckResult(check="k3s", level="ok", value=version, message=f"{service} active"))

    try:
        cpus = int(facts.get("cpus", ""))
    except ValueError:
        cpus = None
    if cpus is None:
        out.append(CheckResult(check="cpu", level="fail", value="unknown", message="nproc printed nothing; is coreutils installed?"))
    elif cpus < req.min_cpus:
        out.append(CheckResult(check="cpu", level="fail", value=f"{cpus} CPUs",
                               message=f"{cpus} CPUs < {req.min_cpus} required; give the node more CPUs or lower min_cpus."))
    else:
        out.append(CheckResult(check="cpu", level="ok", value=f"{cpus} CPUs"))

    total, avail = _gib(facts.get("mem_total_kb")), _gib(facts.get("mem_available_kb"))
    if total is None:
        out.append(CheckResult(check="memory", level="fail", value="unknown", message="/proc/meminfo was not readable."))
    else:
        value = f"{total:.1f} GiB total, {avail if avail is not None else 0:.1f} GiB free"
        if total < req.min_memory_gib:
            out.append(CheckResult(check="memory", level="fail", value=value, message=(
                f"{total:.1f} GiB < {req.min_memory_gib:g} GiB required: the upstream 101 cluster alone requests "
                "about 3.2 GiB and K3s needs its share, so pods would stay Pending or be OOM-killed. "
                "Add memory to the node, add nodes, or lower min_memory_gib with a smaller cluster spec.")))
        elif avail is not None and avail < req.min_available_memory_gib:
            out.append(CheckResult(check="memory", level="warn", value=value, message=(
                f"only {avail:.1f} GiB free (< {req.min_available_memory_gib:g} GiB); "
                "find what uses it (ps aux --sort=-rss | head) before deploying.")))
        else:
            out.append(CheckResult(check="memory", level="ok", value=value))

    disk = _gib(facts.get("disk_avail_kb"))
    where = facts.get("disk_path", req.disk_path)
    if disk is None:
        out.append(CheckResult(check="disk", level="fail", value="unknown", message=f"df failed for {where}."))
    elif disk < req.min_disk_gib:
        out.append(CheckResult(check="disk", level="fail", value=f"{disk:.1f} GiB free on {where}", message=(
            f"{disk:.1f} GiB < {req.min_disk_gib:g} GiB; the 101 cluster's PVCs ask for about 23 GiB in all. "
            "Free space (k3s crictl rmi --prune) or grow the disk.")))
    else:
        out.append(CheckResult(check="disk", level="ok", value=f"{disk:.1f} GiB free on {where}"))

    out.append(_wireguard(facts, now, peers))

    synced = facts.get("ntp_synced")
    if skew is None:
        out.append(CheckResult(check="clock", level="fail", value="unknown", message="date printed nothing usable."))
    elif abs(skew) > req.max_clock_skew_s:
        out.append(CheckResult(check="clock", level="fail", value=f"off by {skew:+.2f} s", message=(
            f"clock differs by {skew:+.2f} s (> {req.max_clock_skew_s:g} s); etcd and TLS need synced clocks: "
            "enable NTP (timedatectl set-ntp true) or chrony.")))
    elif synced == "no":
        out.append(CheckResult(check="clock", level="warn", value=f"off by {skew:+.2f} s, NTP not synced",
                               message="NTP is not synchronised; run `timedatectl set-ntp true`."))
    elif synced is None or synced == "":
        out.append(CheckResult(check="clock", level="ok", value=f"off by {skew:+.2f} s",
                               message="no timedatectl; only the offset was checked"))
    else:
        out.append(CheckResult(check="clock", level="ok", value=f"off by {skew:+.2f} s, NTP synced"))

    if facts.get("mysql_client"):
        out.append(CheckResult(check="mysql-client", level="ok", value=facts["mysql_client"]))
    else:
        out.append(CheckResult(check="mysql-client", level="warn", value="missing", message=(
            "no mysql client on the node (vtflow itself does not need one); run node prep with "
            "install_mysql_client=true to install it.")))
    return out


def _wireguard(facts: dict, now: float, peers: list[str]) -> CheckResult:
    results = dict(p.split(",", 1) for p in facts.get("peer", []) if "," in p)
    down = [a for a in peers if results.get(a) != "ok"]
    stale = []
    for entry in facts.get("wg_peer", []):
        parts = entry.split(",")
        if len(parts) == 3 and parts[2].isdigit():
            age = now - int(parts[2]) if int(parts[2]) else None
            if age is None or age > WG_HANDSHAKE_STALE_S:
                stale.append(f"{parts[0]} peer {parts[1][:8]}... " + ("never" if age is None else f"{age:.0f} s ago"))
    n = len(peers)
    if down:
        return CheckResult(check="wireguard", level="fail", value=f"{n - len(down)}/{n} peers reachable", message=(
            f"no answer from {', '.join(down)} on the mesh; check `wg show` on both ends "
            "(endpoint, allowed-ips, UDP port open) and the firewall."))
    if stale:
        return CheckResult(check="wireguard", level="warn", value=f"{n}/{n} peers reachable", message=(
            "stale handshake: " + "; ".join(stale) + "; check `wg show` on both ends."))
    if "wg" not in facts:
        return CheckResult(check="wireguard", level="ok" if n else "warn", value=f"{n}/{n} peers reachable",
                           message="wg not installed; only reachability was checked")
    return CheckResult(check="wireguard", level="ok", value=f"{n}/{n} peers reachable")


# ---------------------------------------------------------------- the task

# SSH is blocking I/O: each node's session runs in a thread of its own, so that nodes proceed
# at once (asyncio's default executor has only cpu+4 threads).
_SSH_THREADS = ThreadPoolExecutor(max_workers=64, thread_name_prefix="vtflow-ssh")


@task(name="prep-node", retries=2, retry_delay_seconds=[1, 3], retry_condition_fn=retry_transient,
      cache_policy=NO_CACHE, task_run_name="prep-node-{node_name}")
async def prep_node(nodes: SSHNodes, node_name: str, requirements: NodeRequirements,
                    install_mysql_client: bool = False, timeout_s: float = 10.0) -> NodeReport:
    """Connect, probe, judge, and install a MySQL client if allowed and missing."""
    return await asyncio.get_running_loop().run_in_executor(
        _SSH_THREADS, functools.partial(check_node, nodes, node_name, requirements, install_mysql_client, timeout_s))


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
        checks = evaluate(node, facts, requirements, skew, result.ended_at, peers)
        if install_mysql_client and not facts.get("mysql_client"):
            checks = [c for c in checks if c.check != "mysql-client"]
            checks.append(_install_mysql_client(session, node, facts))
    return NodeReport(node=node.name, address=node.address, checks=checks)


def _install_mysql_client(session, node: NodeSpec, facts: dict) -> CheckResult:
    command = install_command(facts.get("pkg"), facts.get("uid") == "0")
    if command is None:
        return CheckResult(check="mysql-client", level="fail", value="missing", message=(
            "no known package manager (apt-get, dnf, yum, zypper, apk) on the node; install a mysql client by hand."))
    done = session.run(command, timeout=600)
    again = parse_probe(session.run("for c in mysql mariadb; do if command -v $c >/dev/null 2>&1; then "
                                    "echo mysql_client=$(command -v $c); break; fi; done", timeout=30).stdout)
    if done.exit_status != 0 or not again.get("mysql_client"):
        tail = (done.stderr.strip() or done.stdout.strip())[-300:]
        return CheckResult(check="mysql-client", level="fail", value="install failed", message=(
            f"`{command}` exited {done.exit_status}: {tail}. Install a mysql client by hand, or give the "
            "SSH user passwordless sudo."))
    return CheckResult(check="mysql-client", level="ok", value=again["mysql_client"], message="installed", changed=True)
