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


def scheduled_blocks() -> dict:
    """The block names scheduled runs use: VTFLOW_BLOCKS (e.g. ``sandbox``), else ``default``,
    the name ``vtflow block create`` gives."""
    name = os.environ.get("VTFLOW_BLOCKS", "default")
    return {"target_block": name, "mysql_block": name}


# the deployments that run on a schedule ("flow/deployment"), and their block parameters
SCHEDULED = {"health-check/health-check": ("target_block", "mysql_block"), "backup/backup": ("target_block",)}


def all_deployments(blocks: dict[str, dict] | None = None, active: dict[str, bool] | None = None) -> list:
    """Every deployment ``make up`` serves. ``blocks``: per scheduled deployment ("flow/name"),
    the block parameters to use instead of scheduled_blocks(); ``active``: whether its schedule
    is active (default True)."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.schedules import Cron, Interval

    from flows.backup import backup
    from flows.deploy import deploy
    from flows.health import health_check
    from flows.node_prep import node_prep
    from flows.redeploy import redeploy

    blocks, active = blocks or {}, active or {}

    def block_parameters(name: str) -> dict:
        return {k: (blocks.get(name) or scheduled_blocks())[k] for k in SCHEDULED[name]}

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
                        "then retention. One run at a time: a second run waits for the first.",
            tags=["vtflow", "day-two"],
            schedules=[Cron(BACKUP_CRON, active=active.get("backup/backup", True))],
            parameters=block_parameters("backup/backup"),
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
