"""The health-check flow: is the deployed cluster still healthy? Served on a schedule (every 5 min).

Kubernetes (pods ready per component, restarts since the last check, the VitessCluster's
status), Vitess through vtgate (a query, tablets, replication lag), backups (age of the newest
complete one per shard), and optionally the nodes over SSH (memory and disk headroom, read by
health's own probe). The groups run at once, their results keyed by group; a group that cannot
run reports that as a failed finding and the others still run. The run fails when any check
fails, so that a Prefect automation on failed runs notifies someone; the markdown artifact
``health-<cluster>`` keeps one version per run (the trend). The flow judges nothing itself
(tasks/health.py does).
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
from tasks.health import HealthThresholds, check_backups, check_kubernetes, check_node, check_vitess
from tasks.report import LEVELS, Finding, error_finding, failed, worst
from vtflow import kube
from vtflow.errors import PermanentError

ICON = {"ok": "ok", "warn": "WARN", "fail": "FAIL"}


def restarts_variable(cluster: str) -> str:
    """The Prefect Variable that keeps the restart counts of the last check, per cluster."""
    return f"vtflow-health-restarts-{cluster}"


def _cell(text: str) -> str:
    return text.replace("|", "/")


def summary_markdown(cluster: str, findings: list[Finding]) -> str:
    counts = {lvl: sum(1 for f in findings if f.level == lvl) for lvl in LEVELS}
    lines = [f"# Health of {cluster}: {ICON[worst(findings)]}", "",
             f"{counts['ok']} ok, {counts['warn']} warnings, {counts['fail']} failed", "",
             "| check | level | problem | fix |", "|---|---|---|---|"]
    lines += [f"| {f.name} | {ICON[f.level]} | {_cell(f.problem)} | {_cell(f.fix)} |"
              for f in sorted(findings, key=lambda f: -LEVELS.index(f.level))]
    return "\n".join(lines)


def group_findings(group: str, result) -> list[Finding]:
    """A group's findings, or one failed finding named after the group when it raised."""
    return [error_finding(group, result, "could not check: ")] if isinstance(result, BaseException) else list(result)


@flow(name="health-check", log_prints=False)
async def health_check(target_block: str = "default", mysql_block: str = "default", nodes_block: str | None = None,
                       thresholds: HealthThresholds = HealthThresholds()) -> list[Finding]:
    """Check the cluster, Vitess, backups and (with a nodes block) the nodes; fail if any check fails."""
    log = get_run_logger()
    target = await load_block(VitessTarget, target_block, "target")
    credentials = await load_block(MySQLCredentials, mysql_block, "mysql credentials")
    nodes = await load_block(SSHNodes, nodes_block, "nodes") if nodes_block else None
    cluster, namespace = target.cluster_name, target.namespace
    k = kube.Kube(target.api_client(), attempts=2, backoff_s=0.2)
    previous = await Variable.aget(restarts_variable(cluster), default=None)

    groups = {
        "kubernetes": check_kubernetes(k, namespace, cluster, previous),
        "vitess": check_vitess(k, namespace, cluster, target.node_address, target.vtgate_address, credentials,
                               thresholds.max_replication_lag_s),
        "backups": check_backups(k, namespace, cluster, thresholds.max_backup_age_h),
    }
    for n in nodes.nodes if nodes is not None else []:
        groups[f"node {n.name}"] = check_node(nodes, n.name, thresholds)
    results = dict(zip(groups, await asyncio.gather(*groups.values(), return_exceptions=True)))

    kubernetes = results.pop("kubernetes")
    restarts = None if isinstance(kubernetes, BaseException) else kubernetes.restarts
    findings = group_findings("kubernetes", kubernetes if isinstance(kubernetes, BaseException) else kubernetes.findings)
    for group, result in results.items():  # in the order above: vitess, backups, then each node
        findings += group_findings(group, result)

    if restarts is not None:
        await Variable.aset(restarts_variable(cluster), restarts, overwrite=True)
    await acreate_markdown_artifact(markdown=summary_markdown(cluster, findings), key=f"health-{cluster}",
                                    description=f"Health of VitessCluster {namespace}/{cluster}, one version per check")
    for f in findings:
        (log.info if f.level == "ok" else log.warning)("%s", f.line)
    if bad := failed(findings):
        raise PermanentError(f"VitessCluster {namespace}/{cluster}",
                             f"{len(bad)} health check(s) failed: " + "; ".join(f.short for f in bad),
                             f"see the artifact health-{cluster}.")
    return findings
