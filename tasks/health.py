"""The health check's checks: Kubernetes, Vitess through vtgate, backups, and (optionally) nodes.

Each check is a ``Finding`` (tasks/report.py): a level, the problem and its fix kept apart.
Pure functions judge what was read (pods, the VitessCluster, SHOW VITESS_* rows, VitessBackup
objects, a node's memory and disk); the tasks read it, each check guarded so that one that
cannot run (vtgate unreachable, say) becomes a ``fail`` naming why while the others still run.
The node probe is health's own: read-only facts over SSH (available memory, free disk under the
K3s data path), built from node prep's probe blocks and judged here, with health's thresholds.
Backups: the newest complete one per shard (VitessBackup objects: the operator's view of backup
storage, whoever took them), and, for each ``spec.backup.schedules`` entry, whether the newest
Job of the operator's VitessBackupSchedule failed. Nothing here changes the cluster or a node.
The backup-age and schedule-Job helpers live in tasks/backup.py.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import NamedTuple

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from blocks.mysql import MySQLCredentials
from blocks.nodes import SSHNodes
from tasks import gateway
from tasks.backup import (BACKUP_SCHEDULE_LABEL, VBS, backup_time, backups_from_objects, is_complete, job_failure,
                          job_outcome, job_time, schedule_jobs)
from tasks.cluster import not_ready, pod_ready
from tasks.common import retry_transient
from tasks.node_prep import K3S_DATA_PATH, MEMINFO_LINES, SSH_THREADS, disk_lines, gib, parse_probe
from tasks.report import Finding, error_finding
from tasks.verify import expected_tablets_of, show_tablets, tablet_checks
from vtflow import kube, mysql, names
from vtflow.errors import CommandError, VtflowError
from vtflow.names import COMPONENT, cluster_selector



class HealthThresholds(BaseModel):
    max_replication_lag_s: float = Field(default=30, gt=0, description="A replica further behind fails; half of it warns.")
    max_backup_age_h: float = Field(default=26, gt=0, description="The newest complete backup of a shard must be younger "
                                    "(the backup flow runs daily).")
    min_free_memory_gib: float = Field(default=0.5, ge=0, description="Nodes: memory that must be available (GiB).")
    min_free_disk_gib: float = Field(default=5, ge=0, description="Nodes: free disk under the K3s data path (GiB).")
    max_drill_age_days: float = Field(default=8, gt=0, description="The last restore drill must be younger (it runs "
                                      "weekly when its schedule is on); none or older warns, a failed one fails.")


# ---------------------------------------------------------------- pure: Kubernetes


def expected_components(vc: dict) -> list[str]:
    spec = vc.get("spec") or {}
    out = ["vtctld", "vtgate", "vttablet"]
    if not (spec.get("globalLockserver") or {}).get("external"):
        out.insert(0, "etcd")
    if spec.get("vtadmin"):
        out.append("vtadmin")
    if any(ks.get("vitessOrchestrator") is not None for ks in spec.get("keyspaces") or []):
        out.append("vtorc")
    return out


def pod_checks(vc: dict, pods: list[dict]) -> list[Finding]:
    """One check per component: every pod Ready."""
    checks = []
    for comp in expected_components(vc):
        mine = [p for p in pods if (p["metadata"].get("labels") or {}).get(COMPONENT) == comp]
        not_ready_pods = sorted(p["metadata"]["name"] for p in mine if not pod_ready(p))
        name = f"pods {comp}"
        if not mine:
            checks.append(Finding(name=name, level="fail", problem=f"no {comp} pod exists",
                                  fix="check the vitess-operator's log (`kubectl logs deploy/vitess-operator`)"))
        elif len(not_ready_pods) == len(mine):
            checks.append(Finding(name=name, level="fail", problem=f"none of {len(mine)} ready: {', '.join(not_ready_pods)}",
                                  fix="`kubectl describe pod` them and read their logs"))
        elif not_ready_pods:
            checks.append(Finding(name=name, level="warn", problem=f"{len(mine) - len(not_ready_pods)} of {len(mine)} "
                                  f"ready; not ready: {', '.join(not_ready_pods)}", fix="`kubectl describe pod` them"))
        else:
            checks.append(Finding(name=name, level="ok", problem=f"{len(mine)} of {len(mine)} ready"))
    return checks


def restart_counts(pods: list[dict]) -> tuple[dict[str, int], dict[str, str]]:
    """Containers that restarted: ``uid8/container`` -> restartCount (kept small: it is stored in a
    Prefect Variable, at most 5,000 characters; a new pod has a new uid and starts from zero), and
    uid8 -> pod name for messages."""
    counts, names = {}, {}
    for p in pods:
        uid = (p["metadata"].get("uid") or p["metadata"]["name"])[:8]
        names[uid] = p["metadata"]["name"]
        for cs in (p.get("status") or {}).get("containerStatuses") or []:
            if int(cs.get("restartCount", 0)):
                counts[f"{uid}/{cs['name']}"] = int(cs["restartCount"])
    return counts, names


def restart_check(current: dict[str, int], previous: dict[str, int] | None, names: dict[str, str]) -> Finding:
    if previous is None:
        return Finding(name="restarts", level="ok",
                       problem=f"first check: baseline recorded ({sum(current.values())} restarts so far)")
    grew = {k: v - previous.get(k, 0) for k, v in current.items() if v > previous.get(k, 0)}
    if not grew:
        return Finding(name="restarts", level="ok", problem="no container restarted since the last check")
    listed = ", ".join(f"{names.get(k.split('/')[0], k.split('/')[0])}/{k.split('/', 1)[1]} +{n}"
                       for k, n in sorted(grew.items()))
    return Finding(name="restarts", level="warn", problem=f"restarted since the last check: {listed}",
                   fix="read the previous logs (`kubectl logs POD -c CONTAINER --previous`); "
                   "OOMKilled means the memory limit is too low")


def status_check(vc: dict | None) -> Finding:
    missing = not_ready(vc)
    if missing:
        return Finding(name="cluster status", level="fail", problem=missing,
                       fix="look at the pods' checks and the operator's log")
    return Finding(name="cluster status", level="ok", problem="the operator reports every part available")


# ---------------------------------------------------------------- pure: Vitess


def lag_checks(rows: list[dict], max_lag_s: float) -> list[Finding]:
    """SHOW VITESS_REPLICATION_STATUS rows -> one check per replica."""
    checks = []
    for r in sorted(rows, key=lambda r: r.get("Alias", "")):
        name = f"replication {r.get('Keyspace')}/{r.get('Shard')} {r.get('Alias')}"
        try:
            lag = float(r.get("ReplicationLag") or 0)
        except ValueError:
            lag = float("inf")
        health = str(r.get("ReplicationHealth") or "")
        if '"LastError":""' not in health.replace(" ", "") and "Running\":\"Yes" not in health:
            checks.append(Finding(name=name, level="fail", problem=f"replication is not running ({health})",
                                  fix="read the tablet's vttablet log; vtorc normally repairs replication within a minute"))
        elif lag > max_lag_s:
            checks.append(Finding(name=name, level="fail", problem=f"{lag:.0f} s behind its primary (limit {max_lag_s:.0f} s)",
                                  fix="look for long transactions or an overloaded node (CPU, disk) under this tablet"))
        elif lag > max_lag_s / 2:
            checks.append(Finding(name=name, level="warn", problem=f"{lag:.0f} s behind its primary (limit {max_lag_s:.0f} s)"))
        else:
            checks.append(Finding(name=name, level="ok", problem=f"{lag:.0f} s behind its primary"))
    return checks


# ---------------------------------------------------------------- pure: backups (their ages: tasks/backup.py)


def backup_checks(has_location: bool, backups: dict[tuple[str, str], list[dict]], now: datetime,
                  max_age_h: float) -> list[Finding]:
    if not has_location:
        return [Finding(name="backups", level="warn",
                        problem="the VitessCluster has no backup location, so nothing can be restored",
                        fix="set the deploy's cluster.backup (a volume or s3 location) and re-deploy")]
    checks = []
    for (ks, shard), items in sorted(backups.items()):
        name = f"backup {ks}/{shard}"
        times = [t for b in items if is_complete(b) and (t := backup_time(b))]
        if not times:
            checks.append(Finding(name=name, level="fail", problem="no complete backup",
                                  fix="run the backup flow (deployment backup/backup)"))
            continue
        age_h = (now - max(times)).total_seconds() / 3600
        if age_h > max_age_h:
            checks.append(Finding(name=name, level="fail",
                                  problem=f"the newest complete backup is {age_h:.1f} h old (limit {max_age_h:g} h)",
                                  fix="check the backup flow's last runs and its schedule"))
        else:
            checks.append(Finding(name=name, level="ok",
                                  problem=f"newest complete backup {age_h:.1f} h old ({len(times)} kept)"))
    return checks


def schedule_checks(vc: dict, schedules: list[dict], jobs: list[dict], namespace: str) -> list[Finding]:
    """One check per ``spec.backup.schedules`` entry (vtflow's or the user's): warn when the
    newest Job of a shard failed (condition Failed: the operator retries only at the next run),
    or when the operator has made no VitessBackupSchedule of the entry."""
    entries = [s.get("name", "") for s in (((vc.get("spec") or {}).get("backup") or {}).get("schedules") or [])]
    by_name = {(o.get("spec") or {}).get("name"): o for o in schedules}
    checks = []
    for entry in entries:
        name = f"backup schedule {entry}"
        vbs = by_name.get(entry)
        if vbs is None:
            checks.append(Finding(name=name, level="warn", problem="the operator has made no VitessBackupSchedule of it",
                                  fix="check that the vitess-operator is v2.13 or later and read its log "
                                  "(`kubectl logs deploy/vitess-operator`)"))
            continue
        mine = [j for j in jobs if (j["metadata"].get("labels") or {}).get(BACKUP_SCHEDULE_LABEL) == vbs["metadata"]["name"]]
        newest: dict[str, dict] = {}
        for job in sorted(mine, key=job_time):
            labels = job["metadata"].get("labels") or {}
            newest[f"{labels.get(names.KEYSPACE, '')}/{names.shard_from_label(labels[names.SHARD])}"
                   if names.SHARD in labels else "every shard"] = job
        failed = {shard: j for shard, j in newest.items() if job_outcome(j) == "failed"}
        if failed:
            listed = "; ".join(f"{shard}: Job {j['metadata']['name']} ({job_time(j)}) {job_failure(j)}"
                               for shard, j in sorted(failed.items()))
            first = next(iter(sorted(failed.items())))[1]["metadata"]["name"]
            checks.append(Finding(name=name, level="warn", problem=f"the newest Job failed for {listed}",
                                  fix=f"read its log (`kubectl logs -n {namespace} job/{first}`) and the backup "
                                  "location; the operator tries again at the next scheduled run"))
        elif not newest:
            nxt = sorted(((vbs.get("status") or {}).get("nextScheduledTimes") or {}).values())
            checks.append(Finding(name=name, level="ok", problem="no Job yet" + (f"; next run {nxt[0]}" if nxt else "")))
        else:
            latest = max(job_time(j) for j in newest.values())
            checks.append(Finding(name=name, level="ok", problem=f"newest Jobs of {len(newest)} shard(s) did not fail "
                                  f"(latest scheduled {latest})"))
    return checks


# ---------------------------------------------------------------- I/O


def guarded(name: str, fn: Callable[[], list[Finding]]) -> list[Finding]:
    """Run one group of checks; if it cannot run, say so as a failed check and go on."""
    try:
        return fn()
    except Exception as e:  # noqa: BLE001 - a health check must report, not crash the others
        return [error_finding(name, e, "could not check: ")]


class KubernetesHealth(NamedTuple):
    findings: list[Finding]
    restarts: dict[str, int] | None  # the counts to keep for the next check; None: not read


def kubernetes_checks(k: kube.Kube, namespace: str, cluster: str,
                      previous_restarts: dict[str, int] | None) -> KubernetesHealth:
    vc = None
    restarts: dict[str, int] | None = None

    def read_vc():
        nonlocal vc
        vc = k.get("planetscale.com/v2", "VitessCluster", cluster, namespace)
        if vc is None:
            return [Finding(name="cluster status", level="fail",
                            problem=f"VitessCluster {namespace}/{cluster} does not exist", fix="run the deploy flow")]
        return [status_check(vc)]

    checks = guarded("cluster status", read_vc)
    if vc is None:
        return KubernetesHealth(checks, None)

    def pods():
        nonlocal restarts
        items = k.list("v1", "Pod", namespace, label_selector=cluster_selector(cluster))
        restarts, names = restart_counts(items)
        return pod_checks(vc, items) + [restart_check(restarts, previous_restarts, names)]

    checks += guarded("pods", pods)
    return KubernetesHealth(checks, restarts)


def vitess_checks(k: kube.Kube, namespace: str, cluster: str, node_address: str | None, vtgate_address: str | None,
                  credentials: MySQLCredentials, max_lag_s: float) -> list[Finding]:
    try:
        vc = k.get("planetscale.com/v2", "VitessCluster", cluster, namespace) or {}
        gw = gateway.discover(k, namespace, cluster, node_address, vtgate_address)
        started = time.monotonic()
        conn = credentials.connect(gw.host, gw.port, timeout=5, read_timeout=30, conv=mysql.TEXT_CONVERSIONS)
    except VtflowError as e:
        return [error_finding("vtgate", e, "could not connect: ")]
    try:
        checks = guarded("vtgate", lambda: _query_check(conn, gw, started))
        checks += guarded("tablets", lambda: tablet_checks(show_tablets(conn)[1], expected_tablets_of(vc)))

        def lag():
            columns, rows = mysql.run(conn, "SHOW VITESS_REPLICATION_STATUS", where="vtgate: SHOW VITESS_REPLICATION_STATUS")
            return lag_checks([dict(zip(columns or [], r)) for r in rows], max_lag_s)

        checks += guarded("replication", lag)
    finally:
        conn.close()
    return checks


def _query_check(conn, gw: gateway.Gateway, started: float) -> list[Finding]:
    _, rows = mysql.run(conn, "SELECT 1", where=f"vtgate {gw.address}: SELECT 1")
    ms = (time.monotonic() - started) * 1000
    if not rows or str(rows[0][0]) != "1":
        return [Finding(name="vtgate", level="fail", problem=f"SELECT 1 through {gw.address} returned {rows!r}",
                        fix="read the vtgate pod's log")]
    return [Finding(name="vtgate", level="ok",
                    problem=f"SELECT 1 through {gw.address} answered ({ms:.0f} ms with the connection)")]


def backup_age_checks(k: kube.Kube, namespace: str, cluster: str, max_age_h: float,
                      now: datetime | None = None) -> list[Finding]:
    def run():
        vc = k.get("planetscale.com/v2", "VitessCluster", cluster, namespace) or {}
        has_location = bool(((vc.get("spec") or {}).get("backup") or {}).get("locations"))
        backups = {shard: [] for shard in expected_tablets_of(vc)}
        if has_location:
            found = backups_from_objects(k.list("planetscale.com/v2", "VitessBackup", namespace,
                                                label_selector=cluster_selector(cluster)))
            backups.update({key: found[key] for key in backups if key in found})
        checks = backup_checks(has_location, backups, now or datetime.now(timezone.utc), max_age_h)
        if has_location and ((vc.get("spec") or {}).get("backup") or {}).get("schedules"):
            checks += guarded("backup schedules", lambda: schedule_checks(
                vc, k.list(*VBS, namespace, label_selector=cluster_selector(cluster)),
                schedule_jobs(k, namespace, cluster), namespace))
        return checks

    return guarded("backups", run)


# ---------------------------------------------------------------- nodes: health's own probe


class NodeHeadroom(BaseModel):
    """What the health check reads of a node: facts only, judged by the functions below."""

    node: str
    available_memory_gib: float | None = None
    free_disk_gib: float | None = None
    disk_path: str = K3S_DATA_PATH


def headroom_script(disk_path: str = K3S_DATA_PATH) -> str:
    """POSIX sh printing the node's memory and the free disk under ``disk_path``: node prep's probe
    blocks, nothing else. Read-only."""
    return MEMINFO_LINES + disk_lines(disk_path) + "echo end=1\n"


def headroom_of(node: str, facts: dict, disk_path: str = K3S_DATA_PATH) -> NodeHeadroom:
    return NodeHeadroom(node=node, available_memory_gib=gib(facts.get("mem_available_kb")),
                        free_disk_gib=gib(facts.get("disk_avail_kb")), disk_path=facts.get("disk_path", disk_path))


def memory_headroom_check(h: NodeHeadroom, min_gib: float) -> Finding:
    """Little available memory warns: the kernel reclaims caches first, so it is a trend to watch."""
    name = f"node {h.node} memory"
    if h.available_memory_gib is None:
        return Finding(name=name, level="fail", problem="/proc/meminfo has no MemAvailable",
                       fix="check that /proc is mounted on the node (Linux 3.14 or later)")
    if h.available_memory_gib < min_gib:
        return Finding(name=name, level="warn", problem=f"only {h.available_memory_gib:.1f} GiB available "
                       f"(< {min_gib:g} GiB)", fix="find what uses it (ps aux --sort=-rss | head)")
    return Finding(name=name, level="ok", problem=f"{h.available_memory_gib:.1f} GiB available")


def disk_headroom_check(h: NodeHeadroom, min_gib: float) -> Finding:
    """Too little free disk fails: a full disk stops MySQL and makes the kubelet evict pods."""
    name = f"node {h.node} disk"
    if h.free_disk_gib is None:
        return Finding(name=name, level="fail", problem=f"df failed for {h.disk_path}", fix=f"check that {h.disk_path} is mounted")
    if h.free_disk_gib < min_gib:
        return Finding(name=name, level="fail", problem=f"{h.free_disk_gib:.1f} GiB free on {h.disk_path} (< {min_gib:g} GiB)",
                       fix="free space (k3s crictl rmi --prune) or grow the disk")
    return Finding(name=name, level="ok", problem=f"{h.free_disk_gib:.1f} GiB free on {h.disk_path}")


def node_checks(h: NodeHeadroom, thresholds: HealthThresholds) -> list[Finding]:
    return [memory_headroom_check(h, thresholds.min_free_memory_gib), disk_headroom_check(h, thresholds.min_free_disk_gib)]


def probe_headroom(nodes: SSHNodes, node_name: str, timeout_s: float = 10.0) -> NodeHeadroom:
    """One SSH session to one node: the headroom script, parsed."""
    node = nodes.node(node_name)
    with nodes.connect(node_name, timeout=timeout_s) as session:
        result = session.run(headroom_script(), timeout=30)
    facts = parse_probe(result.stdout)
    if facts.get("end") != "1":
        raise CommandError(node.endpoint.label, f"the health probe stopped early (exit {result.exit_status}): "
                           f"{result.stderr.strip()[:300]}", "check that the user's shell is a POSIX sh.")
    return headroom_of(node.name, facts)


@task(name="health-kubernetes", task_run_name="health-kubernetes", cache_policy=NO_CACHE)
async def check_kubernetes(k: kube.Kube, namespace: str, cluster: str,
                           previous_restarts: dict[str, int] | None) -> KubernetesHealth:
    return await asyncio.to_thread(kubernetes_checks, k, namespace, cluster, previous_restarts)


@task(name="health-vitess", task_run_name="health-vitess", cache_policy=NO_CACHE)
async def check_vitess(k: kube.Kube, namespace: str, cluster: str, node_address: str | None,
                       vtgate_address: str | None, credentials: MySQLCredentials, max_lag_s: float) -> list[Finding]:
    return await asyncio.to_thread(vitess_checks, k, namespace, cluster, node_address, vtgate_address,
                                   credentials, max_lag_s)


@task(name="health-backups", task_run_name="health-backups", cache_policy=NO_CACHE)
async def check_backups(k: kube.Kube, namespace: str, cluster: str, max_age_h: float) -> list[Finding]:
    return await asyncio.to_thread(backup_age_checks, k, namespace, cluster, max_age_h)


@task(name="health-restore-drill", task_run_name="health-restore-drill", cache_policy=NO_CACHE)
async def check_restore_drill(cluster: str, max_age_days: float) -> list[Finding]:
    """The last restore drill's age and result (the Variable the restore-drill flow writes)."""
    from tasks.restore import drill_finding, last_drill
    return [drill_finding(await last_drill(cluster), datetime.now(timezone.utc), max_age_days)]


@task(name="health-node", retries=2, retry_delay_seconds=[1, 3], retry_condition_fn=retry_transient,
      cache_policy=NO_CACHE, task_run_name="health-node-{node_name}")
async def check_node(nodes: SSHNodes, node_name: str, thresholds: HealthThresholds) -> list[Finding]:
    """Probe one node's headroom (retried while it is unreachable) and judge it."""
    headroom = await asyncio.get_running_loop().run_in_executor(
        SSH_THREADS, functools.partial(probe_headroom, nodes, node_name))
    return node_checks(headroom, thresholds)
