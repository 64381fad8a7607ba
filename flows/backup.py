"""The backup flow: a backup of every shard, then retention. Served daily, one run at a time.

Refuses at once when the VitessCluster has no backup location. ``method`` says who takes the
backups:
- ``flow`` (the default, and the only one before vitess-operator v2.13): shards are backed up in
  parallel up to ``max_parallel`` (each backup stops replication on one replica while it
  copies); a shard that fails does not stop the others, and the run fails naming it. A schedule
  vtflow wrote before (method operator) is taken out, so backups are never taken twice.
- ``operator``: vtflow writes its schedule (``operator_schedule``) into the VitessCluster's
  ``spec.backup.schedules`` (refused, before any change, on a release or CRD without
  VitessBackupSchedule), then only prunes and reports: each shard's newest backup and what the
  schedule's newest Job did; a failed Job fails the run naming the shard and the Job.
Either way the run records every keyspace's schema and VSchema (artifact
``backup-schema-<cluster>``, read before the backups, so it is the schema they were taken
with) for restore checks. The artifact ``backup-<cluster>`` lists shard, backup, size, duration
and result. The deployment's concurrency limit of 1 (``deployments/``) keeps two backups of a
cluster from overlapping.
"""

from __future__ import annotations

import asyncio

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact

from blocks.target import VitessTarget
from flows.common import load_block
from flows.params import TargetBlock
from tasks.backup import (SCHEDULE_NAME, BackupResult, Method, OperatorSchedule, Retention, backup_shard,
                          newest_jobs, record_schema, remove_operator_schedule, report_backup,
                          schedule_jobs, schema_markdown, shards_to_back_up, vtflow_schedule_object, write_schedule)
from vtflow import kube
from vtflow.errors import PermanentError


def report_rows(results: list[BackupResult]) -> list[dict]:
    rows = []
    for r in results:
        row = {"shard": f"{r.keyspace}/{r.shard}", "backup": r.name or "-",
               "size": "unknown" if r.size is None else f"{r.size / 1048576:.1f} MiB",
               "seconds": round(r.seconds, 1), "result": "ok" if r.ok and not r.error else ("failed: " + r.error),
               "pruned": ", ".join(r.pruned) or "-"}
        if r.note:
            row["schedule"] = r.note
        rows.append(row)
    return rows


@flow(name="backup", log_prints=False)
async def backup(target_block: TargetBlock = "default", method: Method = "flow", max_parallel: int = 2,
                 retention: Retention = Retention(), prune: bool = True,
                 operator_schedule: OperatorSchedule = OperatorSchedule()) -> list[BackupResult]:
    """Back up every shard (method flow: BackupShard in the vtctld pod, confirmed with GetBackups;
    method operator: the operator's VitessBackupSchedule, v2.13+), prune old ones, record the schema."""
    log = get_run_logger()
    target = await load_block(VitessTarget, target_block, "target")
    k = kube.Kube(target.api_client())
    namespace, cluster = target.namespace, target.cluster_name
    vc = k.get("planetscale.com/v2", "VitessCluster", cluster, namespace)
    shards = shards_to_back_up(vc, namespace, cluster)
    keyspaces = [ks["name"] for ks in (vc.get("spec") or {}).get("keyspaces") or []]
    if method == "operator":
        # checked against the operator's release and the served CRD before anything changes
        written = await write_schedule(k, namespace, cluster, vc, shards, operator_schedule)
        log.info("schedule %s in VitessCluster %s/%s: %s (%s, %d shard(s))", SCHEDULE_NAME, namespace, cluster,
                 "written" if written.changed else "unchanged", written.entry["schedule"], len(shards))
    schema = await record_schema(k, namespace, cluster, keyspaces, return_state=True)
    if method == "operator":
        results = await _report(k, namespace, cluster, shards, retention if prune else None)
    else:
        if await asyncio.to_thread(remove_operator_schedule, k, namespace, cluster, vc):
            log.info("method flow: removed vtflow's operator schedule from VitessCluster %s/%s", namespace, cluster)
        results = await _back_up(k, namespace, cluster, shards, retention if prune else None, max_parallel, log)
    await acreate_table_artifact(table=report_rows(results), key=f"backup-{cluster}",
                                 description=f"Backups of VitessCluster {namespace}/{cluster} (method {method})")
    schema_error = None
    record = await schema.aresult(raise_on_failure=False)
    if isinstance(record, BaseException):
        schema_error = record
        log.error("schema not recorded: %s", record)
    else:
        await acreate_markdown_artifact(markdown=schema_markdown(namespace, cluster, record), key=f"backup-schema-{cluster}",
                                        description=f"Schema and VSchema of VitessCluster {namespace}/{cluster} "
                                        "at its backups, one version per run")
    for r in results:
        if r.ok and not r.error:
            log.info("%s/%s: backup %s%s; pruned %s", r.keyspace, r.shard, r.name or "none yet",
                     f" in {r.seconds:.1f} s" if method == "flow" else f" ({r.note})", list(r.pruned) or "none")
        else:
            log.error("%s/%s: %s", r.keyspace, r.shard, r.error)
    failed = [r for r in results if not r.ok or r.error]
    if failed:
        fix = ("read the shard's vttablet log and the backup location, then re-run; the other shards' backups are "
               "complete." if method == "flow" else
               f"read the Job's log (`kubectl logs -n {namespace} job/<name>`) and the backup location; the operator "
               "retries at the schedule's next run.")
        raise PermanentError(f"VitessCluster {namespace}/{cluster}", "backup failed for shard(s) "
                             + ", ".join(f"{r.keyspace}/{r.shard} ({r.error})" for r in failed), fix)
    if schema_error is not None:
        raise PermanentError(f"VitessCluster {namespace}/{cluster}", f"the backups are done, but the schema was not "
                             f"recorded: {schema_error}", "re-run when every keyspace's primary serves; a restore "
                             "cannot be checked against a schema without it.")
    return results


async def _report(k, namespace: str, cluster: str, shards: list[tuple[str, str]], retention) -> list[BackupResult]:
    """Method operator: each shard's newest backup and the schedule's newest Job, then retention."""
    vbs = await asyncio.to_thread(vtflow_schedule_object, k, namespace, cluster)
    jobs = await asyncio.to_thread(schedule_jobs, k, namespace, cluster) if vbs else []
    newest = newest_jobs(jobs, vbs["metadata"]["name"], shards) if vbs else {}
    states = [await report_backup(k, namespace, cluster, ks, shard, retention, newest.get((ks, shard)),
                                  return_state=True) for ks, shard in shards]
    out = []
    for (ks, shard), state in zip(shards, states):
        outcome = await state.aresult(raise_on_failure=False)
        out.append(BackupResult(ks, shard, False, error=str(outcome)) if isinstance(outcome, BaseException) else outcome)
    return out


async def _back_up(k, namespace: str, cluster: str, shards: list[tuple[str, str]], retention, max_parallel: int,
                   log) -> list[BackupResult]:
    log.info("backing up %d shard(s) of %s/%s, %d at a time", len(shards), namespace, cluster, max_parallel)
    gate = asyncio.Semaphore(max(1, max_parallel))

    async def one(ks: str, shard: str) -> BackupResult:
        async with gate:
            state = await backup_shard(k, namespace, cluster, ks, shard, retention, return_state=True)
        outcome = await state.aresult(raise_on_failure=False)
        if isinstance(outcome, BaseException):
            return BackupResult(ks, shard, False, error=str(outcome))
        return outcome

    return list(await asyncio.gather(*(one(ks, shard) for ks, shard in shards)))
