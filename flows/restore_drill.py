"""The restore-drill flow: prove that each shard's newest complete backup restores.

For the chosen shard ("ks/shard"), or every shard in turn: the newest complete backup (none:
that shard fails naming the backup flow), a preflight (the nodes hold one more tablet, or it
refuses with the numbers before any change), one scratch tablet added through the
VitessCluster, restored from that backup (its vttablet's RestoredBackupTime), caught up with the
primary (every table's row count and checksum equal), and removed again with its claim whatever
happened (tasks/restore.py). A run first removes a scratch tablet a killed run left behind.
The artifact ``restore-drill-<cluster>`` lists shard, backup, restore seconds, tables compared
and result; the Prefect Variable ``vtflow-restore-drill-<cluster>`` keeps the outcome for the
health check. A shard that fails does not stop the others; the run fails naming each one and
its fix.
"""

from __future__ import annotations

from datetime import datetime, timezone

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_table_artifact
from prefect.variables import Variable

from blocks.target import VitessTarget
from flows.common import load_block
from flows.params import TargetBlock
from tasks.restore import Drill, DrillResult, drill_record, drill_shard, drill_shards, drill_variable, remove_leftover
from vtflow import kube
from vtflow.errors import PermanentError


def report_rows(results: list[DrillResult]) -> list[dict]:
    return [{"shard": r.name, "backup": r.backup or "-",
             "restore seconds": "-" if r.restore_seconds is None else round(r.restore_seconds, 1),
             "catch-up seconds": "-" if r.catchup_seconds is None else round(r.catchup_seconds, 1),
             "tables compared": len(r.tables),
             "result": "ok" if r.ok else "failed: " + (r.finding.problem if r.finding else "unknown")} for r in results]


@flow(name="restore-drill", log_prints=False)
async def restore_drill(target_block: TargetBlock = "default", shard: str = "", restore_timeout_s: float = 900,
                        catchup_timeout_s: float = 300, removal_timeout_s: float = 300) -> list[DrillResult]:
    """Restore the newest backup of a shard ("ks/shard"; empty: every shard in turn) into a scratch
    tablet, compare it with the primary, remove it."""
    log = get_run_logger()
    target = await load_block(VitessTarget, target_block, "target")
    k = kube.Kube(target.api_client())
    namespace, cluster = target.namespace, target.cluster_name
    shards = drill_shards(k.get("planetscale.com/v2", "VitessCluster", cluster, namespace), namespace, cluster, shard)
    d = Drill(k, namespace, cluster, log)
    if await remove_leftover(d, removal_timeout_s):
        log.warning("removed a scratch tablet an earlier drill left behind")
    results = []
    for ks, sh in shards:
        r = await drill_shard(d, ks, sh, restore_timeout_s, catchup_timeout_s, removal_timeout_s)
        if r.ok:
            log.info("%s: restored %s in %.1f s, caught up in %.1f s, %d table(s) equal to the primary's",
                     r.name, r.backup, r.restore_seconds, r.catchup_seconds, len(r.tables))
        else:
            log.error("%s", r.finding.line if r.finding else f"{r.name}: failed")
        results.append(r)
    await acreate_table_artifact(table=report_rows(results), key=f"restore-drill-{cluster}",
                                 description=f"Restore drill of VitessCluster {namespace}/{cluster}")
    await Variable.aset(drill_variable(cluster), drill_record(results, datetime.now(timezone.utc)), overwrite=True)
    failed = [r for r in results if not r.ok]
    if failed:
        raise PermanentError(f"VitessCluster {namespace}/{cluster}", "restore drill failed for shard(s) "
                             + "; ".join(f"{r.name} ({r.finding.problem if r.finding else 'failed'})" for r in failed),
                             " ".join(f"{r.name}: {r.finding.fix}." for r in failed if r.finding and r.finding.fix)
                             or "read the run's log.")
    return results
