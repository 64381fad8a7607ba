"""The backup flow's steps: one ``vtctldclient BackupShard`` per shard, confirmation through
``GetBackups``, and retention (``RemoveBackup``), all through ``vtflow.vtctld`` (in the vtctld pod).

Which backups to prune is a pure decision (``to_prune``): beyond ``keep_count`` or older than
``keep_days``, and never the newest complete backup of a shard, whatever the settings say.
The backup-age helpers (a backup's time, whether it is complete, VitessBackup objects as
backups) live here too; the health check imports them to judge backup ages.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from tasks.verify import expected_tablets_of
from vtflow import kube, names
from vtflow.errors import ConfigError
from vtflow.vtctld import CommandFailed, Vtctld


class Retention(BaseModel):
    keep_count: int = Field(default=7, ge=1, description="Backups kept per shard (newest first).")
    keep_days: float | None = Field(default=14, gt=0, description="Backups older than this are removed; empty: no age limit.")


@dataclass
class BackupResult:
    keyspace: str
    shard: str
    ok: bool
    name: str = ""
    size: int | None = None
    seconds: float = 0.0
    error: str = ""
    pruned: tuple[str, ...] = ()


# ---------------------------------------------------------------- pure: backup ages (the health check's too)


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
        key = (labels.get(names.KEYSPACE, ""), names.shard_from_label(labels.get(names.SHARD, "x-x")))
        out.setdefault(key, []).append({"name": st.get("storageName") or o["metadata"]["name"],
                                        "time": st.get("finishedTime") or st.get("startTime"),
                                        "status": "COMPLETE" if st.get("complete") else "INCOMPLETE"})
    return out


# ---------------------------------------------------------------- pure


def shards_to_back_up(vc: dict | None, namespace: str, cluster: str) -> list[tuple[str, str]]:
    """Every shard of the cluster, or a clear refusal when backups cannot run at all."""
    if vc is None:
        raise ConfigError(f"VitessCluster {namespace}/{cluster}", "does not exist.", "run the deploy flow first.")
    if not ((vc.get("spec") or {}).get("backup") or {}).get("locations"):
        raise ConfigError(f"VitessCluster {namespace}/{cluster}",
                          "has no backup location (spec.backup.locations is empty), so its tablets cannot take backups.",
                          "set the deploy's cluster.backup.kind to volume or s3 and re-deploy, then run the backup again.")
    return sorted(expected_tablets_of(vc))


def to_prune(backups: list[dict], retention: Retention, now: datetime) -> list[str]:
    """Names to remove: beyond keep_count (newest first) or older than keep_days; never the
    newest complete backup."""
    dated = sorted(((backup_time(b) or datetime.min.replace(tzinfo=timezone.utc), b) for b in backups),
                   key=lambda tb: tb[0], reverse=True)
    newest_complete = next((b["name"] for _, b in dated if is_complete(b)), None)
    cutoff = now - timedelta(days=retention.keep_days) if retention.keep_days else None
    out = []
    for i, (when, b) in enumerate(dated):
        if b["name"] == newest_complete:
            continue
        if i >= retention.keep_count or (cutoff is not None and when < cutoff):
            out.append(b["name"])
    return out


# ---------------------------------------------------------------- I/O


def back_up_shard(k: kube.Kube, namespace: str, cluster: str, ks: str, shard: str,
                  retention: Retention | None, now: datetime | None = None) -> BackupResult:
    """BackupShard, then confirm the new backup is listed as complete, then prune. Never raises
    for the shard's own failure: the result says what went wrong, so other shards go on."""
    vt = Vtctld(k, namespace, cluster)
    started = time.monotonic()
    before = {b["name"] for b in vt.get_backups(ks, shard)}
    try:
        vt.backup_shard(ks, shard)
    except CommandFailed as e:
        return BackupResult(ks, shard, False, seconds=time.monotonic() - started,
                            error=f"BackupShard exited {e.rc}: {e.detail}")
    seconds = time.monotonic() - started
    after = vt.get_backups(ks, shard)
    new = [b for b in after if b["name"] not in before]
    if not new or not any(is_complete(b) for b in new):
        return BackupResult(ks, shard, False, seconds=seconds,
                            error="BackupShard succeeded but GetBackups lists no new complete backup")
    newest = max(new, key=lambda b: backup_time(b) or datetime.min.replace(tzinfo=timezone.utc))
    result = BackupResult(ks, shard, True, name=newest["name"], size=newest.get("size"),
                          seconds=seconds)
    if retention is not None:
        pruned = []
        for name in to_prune(after, retention, now or datetime.now(timezone.utc)):
            try:
                vt.remove_backup(ks, shard, name)
            except CommandFailed as e:
                result.error = f"RemoveBackup {name} failed: {e.detail}"
                break
            pruned.append(name)
        result.pruned = tuple(pruned)
    return result


@task(name="backup-shard", cache_policy=NO_CACHE, task_run_name="backup-{ks}-{shard}")
async def backup_shard(k: kube.Kube, namespace: str, cluster: str, ks: str, shard: str,
                       retention: Retention | None) -> BackupResult:
    return await asyncio.to_thread(back_up_shard, k, namespace, cluster, ks, shard, retention)
