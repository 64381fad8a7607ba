"""The backup flow's steps: one ``vtctldclient BackupShard`` per shard, confirmation through
``GetBackups``, and retention (``RemoveBackup``), all run in the vtctld pod through the exec API.

Which backups to prune is a pure decision (``to_prune``): beyond ``keep_count`` or older than
``keep_days``, and never the newest complete backup of a shard, whatever the settings say.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from tasks.health import backup_time, is_complete
from tasks.verify import expected_tablets_of
from tasks.schema import vtctldclient
from vtflow import kube
from vtflow.errors import ConfigError, PermanentError


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


def get_backups(k: kube.Kube, namespace: str, cluster: str, ks: str, shard: str) -> list[dict]:
    rc, out, err = vtctldclient(k, namespace, cluster, ["GetBackups", "--json", f"{ks}/{shard}"])
    if rc != 0:
        raise PermanentError(f"shard {ks}/{shard}", f"GetBackups failed: {err.strip()[-300:]}",
                             "check vtctld's log and the backup location.")
    return json.loads(out or "{}").get("backups") or []


def back_up_shard(k: kube.Kube, namespace: str, cluster: str, ks: str, shard: str,
                  retention: Retention | None, now: datetime | None = None) -> BackupResult:
    """BackupShard, then confirm the new backup is listed as complete, then prune. Never raises
    for the shard's own failure: the result says what went wrong, so other shards go on."""
    started = time.monotonic()
    before = {b["name"] for b in get_backups(k, namespace, cluster, ks, shard)}
    rc, out, err = vtctldclient(k, namespace, cluster, ["BackupShard", f"{ks}/{shard}"])
    seconds = time.monotonic() - started
    if rc != 0:
        last = (err.strip() or out.strip()).splitlines()[-1:] or ["(no output)"]
        return BackupResult(ks, shard, False, seconds=seconds, error=f"BackupShard exited {rc}: {last[0][-400:]}")
    after = get_backups(k, namespace, cluster, ks, shard)
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
            rc, _, err = vtctldclient(k, namespace, cluster, ["RemoveBackup", f"{ks}/{shard}", name])
            if rc != 0:
                result.error = f"RemoveBackup {name} failed: {err.strip()[-300:]}"
                break
            pruned.append(name)
        result.pruned = tuple(pruned)
    return result


@task(name="backup-shard", cache_policy=NO_CACHE, task_run_name="backup-{ks}-{shard}")
async def backup_shard(k: kube.Kube, namespace: str, cluster: str, ks: str, shard: str,
                       retention: Retention | None) -> BackupResult:
    return await asyncio.to_thread(back_up_shard, k, namespace, cluster, ks, shard, retention)
