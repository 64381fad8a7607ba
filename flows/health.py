"""The health-check flow: is the deployed cluster still healthy? Served on a schedule (every 5 min).

Kubernetes (pods ready per component, restarts since the last check, the VitessCluster's
status), Vitess through vtgate (a query, tablets, replication lag), backups (age of the newest
complete one per shard), and optionally the nodes over SSH (memory and disk headroom). The
groups run at once; a group that cannot run reports that as a failed check and the others still
run. The run fails when any check fails, so that a Prefect automation on failed runs notifies
someone; the markdown artifact ``health-<cluster>`` keeps one version per run (the trend).
"""

from __future__ import annotations

import asyncio

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_markdown_artifact
from prefect.variables import Variable

from blocks.mysql import MySQLCredentials
from blocks.nodes import SSHNodes
from blocks.target import VitessTarget
from flows.common import load_block
from tasks.health import HealthThresholds, check_backups, check_kubernetes, check_vitess, node_checks
from tasks.node_prep import NodeRequirements, prep_node
from tasks.verify import Check
from vtflow import kube
from vtflow.errors import PermanentError

ICON = {"ok": "ok", "warn": "WARN", "fail": "FAIL"}


def restarts_variable(cluster: str) -> str:
    """The Prefect Variable that keeps the restart counts of the last check, per cluster."""
    return f"vtflow-health-restarts-{cluster}"


def summary_markdown(cluster: str, checks: list[Check]) -> str:
    worst = "fail" if any(c.level == "fail" for c in checks) else ("warn" if any(c.level == "warn" for c in checks) else "ok")
    counts = {lvl: sum(1 for c in checks if c.level == lvl) for lvl in ("ok", "warn", "fail")}
    lines = [f"# Health of {cluster}: {ICON[worst]}", "",
             f"{counts['ok']} ok, {counts['warn']} warnings, {counts['fail']} failed", "",
             "| check | level | what to know / do |", "|---|---|---|"]
    order = {"fail": 0, "warn": 1, "ok": 2}
    lines += [f"| {c.name} | {ICON[c.level]} | {c.message.replace('|', '/')} |"
              for c in sorted(checks, key=lambda c: order[c.level])]
    return "\n".join(lines)


@flow(name="health-check", log_prints=False)
async def health_check(target_block: str = "default", mysql_block: str = "default", nodes_block: str | None = None,
                       thresholds: HealthThresholds = HealthThresholds()) -> list[Check]:
    """Check the cluster, Vitess, backups and (with a nodes block) the nodes; fail if any check fails."""
    log = get_run_logger()
    target = await load_block(VitessTarget, target_block, "target")
    credentials = await load_block(MySQLCredentials, mysql_block, "mysql credentials")
    nodes = await load_block(SSHNodes, nodes_block, "nodes") if nodes_block else None
    cluster, namespace = target.cluster_name, target.namespace
    k = kube.Kube(target.api_client(), attempts=2, backoff_s=0.2)
    previous = await Variable.aget(restarts_variable(cluster), default=None)

    groups = [
        check_kubernetes(k, namespace, cluster, previous),
        check_vitess(k, namespace, cluster, target.node_address, target.vtgate_address, credentials,
                     thresholds.max_replication_lag_s),
        check_backups(k, namespace, cluster, thresholds.max_backup_age_h),
    ]
    if nodes is not None:
        req = NodeRequirements(min_cpus=1, min_memory_gib=0.001, min_available_memory_gib=thresholds.min_free_memory_gib,
                               min_disk_gib=thresholds.min_free_disk_gib)
        groups += [prep_node(nodes, n.name, req, return_state=True) for n in nodes.nodes]
    results = await asyncio.gather(*groups, return_exceptions=True)

    checks: list[Check] = []
    restarts = None
    node_reports = []
    for i, result in enumerate(results):
        if i >= 3:  # a node: its state
            outcome = await result.aresult(raise_on_failure=False)
            if isinstance(outcome, BaseException):
                name = nodes.nodes[i - 3].name
                checks.append(Check(f"node {name}", "fail", f"could not check: {outcome}"))
            else:
                node_reports.append(outcome)
            continue
        if isinstance(result, BaseException):
            checks.append(Check(("kubernetes", "vitess", "backups")[i], "fail", f"could not check: {result}"))
        elif i == 0:
            group, restarts = result
            checks += group
        else:
            checks += result
    checks += node_checks(node_reports, thresholds)

    if restarts is not None:
        await Variable.aset(restarts_variable(cluster), restarts, overwrite=True)
    text = summary_markdown(cluster, checks)
    await acreate_markdown_artifact(markdown=text, key=f"health-{cluster}",
                                    description=f"Health of VitessCluster {namespace}/{cluster}, one version per check")
    failed = [c for c in checks if c.level == "fail"]
    for c in checks:
        (log.info if c.level == "ok" else log.warning)("%s: %s: %s", c.name, c.level, c.message)
    if failed:
        raise PermanentError(f"VitessCluster {namespace}/{cluster}",
                             f"{len(failed)} health check(s) failed: "
                             + "; ".join(f"{c.name}: {c.message.split(' Fix: ')[0].rstrip('.')}" for c in failed),
                             f"see the artifact health-{cluster}.")
    return checks
