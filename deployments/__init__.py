"""Deployments that ``make up`` serves: names, schedules, triggers and default parameters.

Entry points only: no logic beyond declaring how each flow is offered in the Prefect UI.
"""

from __future__ import annotations


def all_deployments() -> list:
    from flows.deploy import deploy
    from flows.node_prep import node_prep

    return [
        deploy.to_deployment(
            name="deploy",
            description="Deploy Vitess: node prep, etcd-operator (off by default), vitess-operator, cluster init. "
                        "Set until to stop early, dry_run to see the plan.",
            tags=["vtflow", "deploy"],
        ),
        node_prep.to_deployment(
            name="node-prep",
            description="Check every K3s node over SSH (K3s, CPU, memory, disk, WireGuard, clock, MySQL client).",
            tags=["vtflow", "deploy"],
            parameters={"nodes_block": "default"},
        ),
    ]
