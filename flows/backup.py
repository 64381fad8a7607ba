"""The backup flow: a backup of every shard, then retention. Served daily, one run at a time.

Refuses at once when the VitessCluster has no backup location. Shards are backed up in
parallel up to ``max_parallel`` (each backup stops replication on one replica while it copies);
a shard that fails does not stop the others, and the run fails naming it. The artifact
``backup-<cluster>`` lists shard, backup, size, duration and result. The deployment's
concurrency limit of 1 (``deployments/``) keeps two backups of a cluster from overlapping.
"""

from __future__ import annotations

import asyncio

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_table_artifact

from blocks.target import VitessTarget
from flows.common import load_block
from flows.params import TargetBlock
from tasks.backup import BackupResult, Retention, backup_shard, shards_to_back_up
from vtflow import kube
from vtflow.errors import PermanentError


def report_rows(results: list[BackupResult]) -> list[dict]:
    return [{"shard": f"{r.keyspace}/{r.shard}", "backup": r.name or "-",
             "size": "unknown" if r.size is None else f"{r.size / 1048576:.1f} MiB",
             "seconds": round(r.seconds, 1), "result": "ok" if r.ok and not r.error else ("failed: " + r.error),
             "pruned": ", ".join(r.pruned) or "-"} for r in results]


@flow(name="backup", log_prints=False)
async def backup(target_block: TargetBlock = "default", max_parallel: int = 2, retention: Retention = Retention(),
                 prune: bool = True) -> list[BackupResult]:
    """Back up every shard (BackupShard in the vtctld pod), confirm with GetBackups, prune old ones."""
    log = get_run_logger()
    target = await load_block(VitessTarget, target_block, "target")
    k = kube.Kube(target.api_client())
    namespace, cluster = target.namespace, target.cluster_name
    shards = shards_to_back_up(k.get("planetscale.com/v2", "VitessCluster", cluster, namespace), namespace, cluster)
    log.info("backing up %d shard(s) of %s/%s, %d at a time", len(shards), namespace, cluster, max_parallel)
    gate = asyncio.Semaphore(max(1, max_parallel))

    async def one(ks: str, shard: str) -> BackupResult:
        async with gate:
            state = await backup_shard(k, namespace, cluster, ks, shard, retention if prune else None, return_state=True)
        outcome = await state.aresult(raise_on_failure=False)
        if isinstance(outcome, BaseException):
            return BackupResult(ks, shard, False, error=str(outcome))
        return outcome

    results = list(await asyncio.gather(*(one(ks, shard) for ks, shard in shards)))
    await acreate_table_artifact(table=report_rows(results), key=f"backup-{cluster}",
                                 description=f"Backups of VitessCluster {namespace}/{cluster}")
    for r in results:
        if r.ok and not r.error:
            log.info("%s/%s: backup %s in %.1f s; pruned %s", r.keyspace, r.shard, r.name, r.seconds, list(r.pruned) or "none")
        else:
            log.error("%s/%s: %s", r.keyspace, r.shard, r.error)
    failed = [r for r in results if not r.ok or r.error]
    if failed:
        raise PermanentError(f"VitessCluster {namespace}/{cluster}", "backup failed for shard(s) "
                             + ", ".join(f"{r.keyspace}/{r.shard} ({r.error})" for r in failed),
                             "read the shard's vttablet log and the backup location, then re-run; the other shards' "
                             "backups are complete.")
    return results
