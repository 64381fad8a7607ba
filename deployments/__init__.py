"""Deployments that ``make up`` serves: names, schedules, triggers and default parameters.

Entry points only: no logic beyond declaring how each flow is offered in the Prefect UI.
Schedules are defaults; change them in the UI (deployment -> schedules) or here.
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


def all_deployments() -> list:
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy

    from flows.backup import backup
    from flows.deploy import deploy
    from flows.health import health_check
    from flows.node_prep import node_prep
    from flows.redeploy import redeploy

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
            interval=HEALTH_EVERY_S,
            parameters=scheduled_blocks(),
            concurrency_limit=ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW),
        ),
        backup.to_deployment(
            name="backup",
            description="BackupShard for every shard (in parallel up to max_parallel), confirmed with GetBackups, "
                        "then retention. One run at a time: a second run waits for the first.",
            tags=["vtflow", "day-two"],
            cron=BACKUP_CRON,
            parameters={"target_block": scheduled_blocks()["target_block"]},
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
