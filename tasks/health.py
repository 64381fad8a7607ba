"""The health check's checks: Kubernetes, Vitess through vtgate, backups, and (optionally) nodes.

Each check is a ``Check`` (tasks/verify.py) with a level and a message that says what to do.
Pure functions judge what was read (pods, the VitessCluster, SHOW VITESS_* rows, GetBackups);
the tasks read it, each check guarded so that one that cannot run (vtgate unreachable, say)
becomes a ``fail`` naming why while the others still run. Nothing here changes the cluster.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime, timezone

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from blocks.mysql import MySQLCredentials
from tasks import gateway
from tasks.cluster import not_ready, shard_from_label
from tasks.verify import Check, expected_tablets_of, show_tablets, tablet_checks
from vtflow import kube, mysql
from vtflow.errors import VtflowError

COMPONENT = "planetscale.com/component"


class HealthThresholds(BaseModel):
    max_replication_lag_s: float = Field(default=30, gt=0, description="A replica further behind fails; half of it warns.")
    max_backup_age_h: float = Field(default=26, gt=0, description="The newest complete backup of a shard must be younger "
                                    "(the backup flow runs daily).")
    min_free_memory_gib: float = Field(default=0.5, ge=0, description="Nodes: memory that must be available (GiB).")
    min_free_disk_gib: float = Field(default=5, ge=0, description="Nodes: free disk under the K3s data path (GiB).")


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


def _ready(pod: dict) -> bool:
    conds = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


def pod_checks(vc: dict, pods: list[dict]) -> list[Check]:
    """One check per component: every pod Ready."""
    checks = []
    for comp in expected_components(vc):
        mine = [p for p in pods if (p["metadata"].get("labels") or {}).get(COMPONENT) == comp]
        not_ready_pods = sorted(p["metadata"]["name"] for p in mine if not _ready(p))
        name = f"pods {comp}"
        if not mine:
            checks.append(Check(name, "fail", f"no {comp} pod exists. Fix: check the vitess-operator's log "
                                "(`kubectl logs deploy/vitess-operator`)."))
        elif len(not_ready_pods) == len(mine):
            checks.append(Check(name, "fail", f"none of {len(mine)} ready: {', '.join(not_ready_pods)}. "
                                "Fix: `kubectl describe pod` them and read their logs."))
        elif not_ready_pods:
            checks.append(Check(name, "warn", f"{len(mine) - len(not_ready_pods)} of {len(mine)} ready; not ready: "
                                f"{', '.join(not_ready_pods)}. Fix: `kubectl describe pod` them."))
        else:
            checks.append(Check(name, "ok", f"{len(mine)} of {len(mine)} ready"))
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


def restart_check(current: dict[str, int], previous: dict[str, int] | None, names: dict[str, str]) -> Check:
    if previous is None:
        return Check("restarts", "ok", f"first check: baseline recorded ({sum(current.values())} restarts so far)")
    grew = {k: v - previous.get(k, 0) for k, v in current.items() if v > previous.get(k, 0)}
    if not grew:
        return Check("restarts", "ok", "no container restarted since the last check")
    listed = ", ".join(f"{names.get(k.split('/')[0], k.split('/')[0])}/{k.split('/', 1)[1]} +{n}"
                       for k, n in sorted(grew.items()))
    return Check("restarts", "warn", f"restarted since the last check: {listed}. Fix: read the previous logs "
                 "(`kubectl logs POD -c CONTAINER --previous`); OOMKilled means the memory limit is too low.")


def status_check(vc: dict | None) -> Check:
    missing = not_ready(vc)
    if missing:
        return Check("cluster status", "fail", f"{missing}. Fix: look at the pods named above and the operator's log.")
    return Check("cluster status", "ok", "the operator reports every part available")


# ---------------------------------------------------------------- pure: Vitess


def lag_checks(rows: list[dict], max_lag_s: float) -> list[Check]:
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
            checks.append(Check(name, "fail", f"replication is not running ({health}). Fix: read the tablet's vttablet "
                                "log; vtorc normally repairs replication within a minute."))
        elif lag > max_lag_s:
            checks.append(Check(name, "fail", f"{lag:.0f} s behind its primary (limit {max_lag_s:.0f} s). Fix: look for "
                                "long transactions or an overloaded node (CPU, disk) under this tablet."))
        elif lag > max_lag_s / 2:
            checks.append(Check(name, "warn", f"{lag:.0f} s behind its primary (limit {max_lag_s:.0f} s)."))
        else:
            checks.append(Check(name, "ok", f"{lag:.0f} s behind its primary"))
    return checks


# ---------------------------------------------------------------- pure: backups


def backup_time(b: dict) -> datetime | None:
    """A GetBackups --json entry's time (protojson Timestamp: RFC 3339 text or {seconds, nanoseconds})."""
    t = b.get("time")
    if isinstance(t, dict) and "seconds" in t:
        return datetime.fromtimestamp(int(t["seconds"]) + int(t.get("nanoseconds", 0)) / 1e9, timezone.utc)
    if isinstance(t, str) and t:
        return datetime.fromisoformat(t.replace("Z", "+00:00"))
    return None


def is_complete(b: dict) -> bool:
    """vtctld's GetBackups leaves ``status`` UNKNOWN (vitessio/vitess#8332): only an explicit
    INCOMPLETE or INVALID counts against a backup there. VitessBackup objects say ``complete``."""
    return str(b.get("status", "UNKNOWN")).upper() not in ("INCOMPLETE", "INVALID")


def backups_from_objects(objects: list[dict]) -> dict[tuple[str, str], list[dict]]:
    """VitessBackup objects (the operator's view of backup storage, ``status.complete`` read from
    each backup's MANIFEST) as GetBackups-like entries, per (keyspace, shard)."""
    out: dict[tuple[str, str], list[dict]] = {}
    for o in objects:
        labels, st = o["metadata"].get("labels") or {}, o.get("status") or {}
        key = (labels.get("planetscale.com/keyspace", ""), shard_from_label(labels.get("planetscale.com/shard", "x-x")))
        out.setdefault(key, []).append({"name": st.get("storageName") or o["metadata"]["name"],
                                        "time": st.get("finishedTime") or st.get("startTime"),
                                        "status": "COMPLETE" if st.get("complete") else "INCOMPLETE"})
    return out


def backup_checks(has_location: bool, backups: dict[tuple[str, str], list[dict]], now: datetime,
                  max_age_h: float) -> list[Check]:
    if not has_location:
        return [Check("backups", "warn", "the VitessCluster has no backup location, so nothing can be restored. "
                      "Fix: set the deploy's cluster.backup (a volume or s3 location) and re-deploy.")]
    checks = []
    for (ks, shard), items in sorted(backups.items()):
        name = f"backup {ks}/{shard}"
        times = [t for b in items if is_complete(b) and (t := backup_time(b))]
        if not times:
            checks.append(Check(name, "fail", "no complete backup. Fix: run the backup flow (deployment backup/backup)."))
            continue
        age_h = (now - max(times)).total_seconds() / 3600
        if age_h > max_age_h:
            checks.append(Check(name, "fail", f"the newest complete backup is {age_h:.1f} h old (limit {max_age_h:g} h). "
                                "Fix: check the backup flow's last runs and its schedule."))
        else:
            checks.append(Check(name, "ok", f"newest complete backup {age_h:.1f} h old ({len(times)} kept)"))
    return checks


# ---------------------------------------------------------------- I/O


def guarded(name: str, fn: Callable[[], list[Check]]) -> list[Check]:
    """Run one group of checks; if it cannot run, say so as a failed check and go on."""
    try:
        return fn()
    except VtflowError as e:
        return [Check(name, "fail", f"could not check: {e}")]
    except Exception as e:  # noqa: BLE001 - a health check must report, not crash the others
        return [Check(name, "fail", f"could not check ({type(e).__name__}): {e}")]


def kubernetes_checks(k: kube.Kube, namespace: str, cluster: str,
                      previous_restarts: dict[str, int] | None) -> tuple[list[Check], dict[str, int] | None]:
    vc = None
    restarts: dict[str, int] | None = None

    def read_vc():
        nonlocal vc
        vc = k.get("planetscale.com/v2", "VitessCluster", cluster, namespace)
        if vc is None:
            return [Check("cluster status", "fail", f"VitessCluster {namespace}/{cluster} does not exist. "
                          "Fix: run the deploy flow.")]
        return [status_check(vc)]

    checks = guarded("cluster status", read_vc)
    if vc is None:
        return checks, None

    def pods():
        nonlocal restarts
        items = k.list("v1", "Pod", namespace, label_selector=f"planetscale.com/cluster={cluster}")
        restarts, names = restart_counts(items)
        return pod_checks(vc, items) + [restart_check(restarts, previous_restarts, names)]

    checks += guarded("pods", pods)
    return checks, restarts


def vitess_checks(k: kube.Kube, namespace: str, cluster: str, node_address: str | None, vtgate_address: str | None,
                  credentials: MySQLCredentials, max_lag_s: float) -> list[Check]:
    try:
        vc = k.get("planetscale.com/v2", "VitessCluster", cluster, namespace) or {}
        gw = gateway.discover(k, namespace, cluster, node_address, vtgate_address)
        started = time.monotonic()
        conn = credentials.connect(gw.host, gw.port, timeout=5, read_timeout=30, conv=mysql.TEXT_CONVERSIONS)
    except VtflowError as e:
        return [Check("vtgate", "fail", f"could not connect: {e}")]
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


def _query_check(conn, gw: gateway.Gateway, started: float) -> list[Check]:
    _, rows = mysql.run(conn, "SELECT 1", where=f"vtgate {gw.address}: SELECT 1")
    ms = (time.monotonic() - started) * 1000
    if not rows or str(rows[0][0]) != "1":
        return [Check("vtgate", "fail", f"SELECT 1 through {gw.address} returned {rows!r}.")]
    return [Check("vtgate", "ok", f"SELECT 1 through {gw.address} answered ({ms:.0f} ms with the connection)")]


def backup_age_checks(k: kube.Kube, namespace: str, cluster: str, max_age_h: float,
                      now: datetime | None = None) -> list[Check]:
    def run():
        vc = k.get("planetscale.com/v2", "VitessCluster", cluster, namespace) or {}
        has_location = bool(((vc.get("spec") or {}).get("backup") or {}).get("locations"))
        backups = {shard: [] for shard in expected_tablets_of(vc)}
        if has_location:
            found = backups_from_objects(k.list("planetscale.com/v2", "VitessBackup", namespace,
                                                label_selector=f"planetscale.com/cluster={cluster}"))
            backups.update({key: found[key] for key in backups if key in found})
        return backup_checks(has_location, backups, now or datetime.now(timezone.utc), max_age_h)

    return guarded("backups", run)


def node_checks(reports, thresholds: HealthThresholds) -> list[Check]:
    """Memory and disk headroom from node-prep reports (``tasks.node_prep.NodeReport``)."""
    checks = []
    for r in reports:
        if not r.reachable:
            checks.append(Check(f"node {r.node}", "fail", f"unreachable: {r.error}. Fix: check the node and WireGuard."))
            continue
        by = {c.check: c for c in r.checks}
        for key in ("memory", "disk"):
            c = by.get(key)
            if c is None:
                continue
            level = "ok" if c.level == "ok" else ("warn" if c.level == "warn" else "fail")
            checks.append(Check(f"node {r.node} {key}", level, f"{c.value}{': ' + c.message if c.message else ''}"))
    return checks


@task(name="health-kubernetes", cache_policy=NO_CACHE)
async def check_kubernetes(k: kube.Kube, namespace: str, cluster: str, previous_restarts: dict[str, int] | None):
    return await asyncio.to_thread(kubernetes_checks, k, namespace, cluster, previous_restarts)


@task(name="health-vitess", cache_policy=NO_CACHE)
async def check_vitess(k: kube.Kube, namespace: str, cluster: str, node_address: str | None,
                       vtgate_address: str | None, credentials: MySQLCredentials, max_lag_s: float) -> list[Check]:
    return await asyncio.to_thread(vitess_checks, k, namespace, cluster, node_address, vtgate_address,
                                   credentials, max_lag_s)


@task(name="health-backups", cache_policy=NO_CACHE)
async def check_backups(k: kube.Kube, namespace: str, cluster: str, max_age_h: float) -> list[Check]:
    return await asyncio.to_thread(backup_age_checks, k, namespace, cluster, max_age_h)
