"""Deployments that ``make up`` serves: names, schedules, triggers and default parameters.

Entry points only: no logic beyond declaring how each flow is offered in the Prefect UI.
Schedules are defaults; change them in the UI (deployment -> schedules) or here.
``vtflow.schedules`` decides, from what the server already has, which block names the scheduled
deployments use and whether their schedules start paused (``blocks`` and ``active``).
``prefect.yaml`` is rendered from this list (``python -m deployments.prefect_yaml``).
"""

from __future__ import annotations

import os

HEALTH_EVERY_S = 300          # every 5 minutes
BACKUP_CRON = "0 3 * * *"     # daily at 03:00 (the server's time zone, UTC unless set)
DRILL_CRON = "0 4 * * 0"      # Sundays at 04:00, after the night's backup; paused until turned on


def scheduled_blocks() -> dict:
    """The block names scheduled runs use: VTFLOW_BLOCKS (e.g. ``sandbox``), else ``default``,
    the name ``vtflow block create`` gives."""
    name = os.environ.get("VTFLOW_BLOCKS", "default")
    return {"target_block": name, "mysql_block": name}


# the deployments that run on a schedule ("flow/deployment"), and their block parameters
SCHEDULED = {"health-check/health-check": ("target_block", "mysql_block"), "backup/backup": ("target_block",)}
# schedules a user turns on (in the UI): served paused at first, then as the server has them
OPT_IN = {"restore-drill/restore-drill": ("target_block",)}


def all_deployments(blocks: dict[str, dict] | None = None, active: dict[str, bool] | None = None) -> list:
    """Every deployment ``make up`` serves. ``blocks``: per scheduled deployment ("flow/name"),
    the block parameters to use instead of scheduled_blocks(); ``active``: whether its schedule
    is active (default True)."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.schedules import Cron, Interval

    from flows.backup import backup
    from flows.deploy import deploy
    from flows.health import health_check
    from flows.move_tables import move_tables
    from flows.node_prep import node_prep
    from flows.redeploy import redeploy
    from flows.reshard import reshard
    from flows.restore_drill import restore_drill
    from flows.teardown import teardown
    from flows.upgrade import upgrade

    blocks, active = blocks or {}, active or {}

    def block_parameters(name: str) -> dict:
        return {k: (blocks.get(name) or scheduled_blocks())[k] for k in {**SCHEDULED, **OPT_IN}[name]}

    one_at_a_time = ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE)
    return [
        deploy.to_deployment(
            name="deploy",
            description="Deploy Vitess: node prep, etcd-operator (off by default), vitess-operator, cluster init, "
                        "schema, data load, verification. Set until to stop early, dry_run to see the plan.",
            tags=["vtflow", "deploy"],
            concurrency_limit=one_at_a_time,
        ),
        node_prep.to_deployment(
            name="node-prep",
            description="Check every K3s node over SSH (K3s, CPU, memory, disk, WireGuard, clock, MySQL client).",
            tags=["vtflow", "deploy"],
            parameters={"nodes_block": "default"},
        ),
        health_check.to_deployment(
            name="health-check",
            description="Pods, VitessCluster status, vtgate, tablets, replication lag, backup age (and nodes with a "
                        "nodes block). Fails when a check fails: add an automation on failed runs to be notified.",
            tags=["vtflow", "day-two"],
            schedules=[Interval(HEALTH_EVERY_S, active=active.get("health-check/health-check", True))],
            parameters=block_parameters("health-check/health-check"),
            concurrency_limit=ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW),
        ),
        backup.to_deployment(
            name="backup",
            description="BackupShard for every shard (in parallel up to max_parallel), confirmed with GetBackups, "
                        "then retention; records every keyspace's schema and VSchema. method=operator: writes a "
                        "VitessBackupSchedule (vitess-operator v2.13+), then only prunes and reports. One run at a "
                        "time: a second run waits for the first.",
            tags=["vtflow", "day-two"],
            schedules=[Cron(BACKUP_CRON, active=active.get("backup/backup", True))],
            parameters=block_parameters("backup/backup"),
            concurrency_limit=one_at_a_time,
        ),
        restore_drill.to_deployment(
            name="restore-drill",
            description="Prove the newest backup of each shard (or one: shard ks/shard) restores: a scratch rdonly "
                        "tablet restores it, catches up, is compared table by table with the primary, and is removed. "
                        "Weekly schedule, paused until you turn it on.",
            tags=["vtflow", "day-two"],
            schedules=[Cron(DRILL_CRON, active=active.get("restore-drill/restore-drill", False))],
            parameters=block_parameters("restore-drill/restore-drill"),
            concurrency_limit=one_at_a_time,
        ),
        teardown.to_deployment(
            name="teardown",
            description="Remove a keyspace (as upstream's 102_keyspace_teardown.yaml) or the whole cluster; claims and "
                        "backups are kept unless asked and confirm names the cluster; the operator only when asked and "
                        "no other VitessCluster exists. dry_run lists what would go.",
            tags=["vtflow", "day-two"],
            concurrency_limit=one_at_a_time,
        ),
        move_tables.to_deployment(
            name="move-tables",
            description="Move tables to another keyspace (MoveTables, upstream's 201-205): the target keyspace's "
                        "tablets (preflight first), create, copy, VDiff, switch reads then writes, verify through "
                        "vtgate, complete when asked. Re-run after any failure: it resumes. dry_run lists every step.",
            tags=["vtflow", "resharding"],
            concurrency_limit=one_at_a_time,
        ),
        reshard.to_deployment(
            name="reshard",
            description="Split a keyspace's shards (Reshard, upstream's 301-306): the schema and VSchema changes first, "
                        "the new shards (preflight first), create, copy, VDiff, switch reads then writes, verify each "
                        "row's shard through vtgate, then complete and remove the old shards when asked. Re-run after any "
                        "failure: it resumes.",
            tags=["vtflow", "resharding"],
            concurrency_limit=one_at_a_time,
        ),
        upgrade.to_deployment(
            name="upgrade",
            description="Upgrade vitess-operator and Vitess one supported major at a time (the version table), to the "
                        "newest release the cluster's Kubernetes allows or the one asked for: preflight and a backup, "
                        "the operator, then the images, each hop waited for and verified, rolled back when it does not "
                        "come up. dry_run shows every hop and change.",
            tags=["vtflow", "day-two"],
            concurrency_limit=one_at_a_time,
        ),
        redeploy.to_deployment(
            name="redeploy",
            description="Roll a component (vitess, vtadmin, operator) to an image pushed to Harbor, by digest: backup "
                        "first, rolling update, verification, rollback on failure. Runs come from the webhook receiver. "
                        "One at a time: a newer push waits for the running one.",
            tags=["vtflow", "day-two"],
            concurrency_limit=one_at_a_time,
        ),
    ]
