"""The health-check flow: is the deployed cluster still healthy? Served on a schedule (every 5 min).

Kubernetes (pods ready per component, restarts since the last check, the VitessCluster's
status), Vitess through vtgate (a query, tablets, replication lag), backups (age of the newest
complete one per shard, whoever took it, and whether the newest Job of each operator backup
schedule failed), and optionally the nodes over SSH (memory and disk headroom, read by
health's own probe). The groups run at once, their results keyed by group; a group that cannot
run reports that as a failed finding and the others still run. The run fails when any check
fails, so that a Prefect automation on failed runs notifies someone; the markdown artifact
``health-<cluster>`` keeps one version per run (the trend). The flow judges nothing itself
(tasks/health.py does).
"""

from __future__ import annotations

import asyncio
import time

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_markdown_artifact
from prefect.variables import Variable

from blocks.mysql import MySQLCredentials
from blocks.nodes import SSHNodes
from blocks.target import VitessTarget
from flows.common import load_block
from flows.params import MySQLBlock, NodesBlock, TargetBlock
from tasks.health import (HealthThresholds, check_backups, check_kubernetes, check_node, check_restore_drill,
                          check_vitess)
from tasks.report import LEVELS, Finding, error_finding, failed, worst
from vtflow import kube
from vtflow.errors import PermanentError

ICON = {"ok": "ok", "warn": "WARN", "fail": "FAIL"}


def restarts_variable(cluster: str) -> str:
    """The Prefect Variable that keeps the restart counts of the last check, per cluster."""
    return f"vtflow-health-restarts-{cluster}"


def _cell(text: str) -> str:
    return text.replace("|", "/")


HISTORY_RUNS = 6  # runs the history grid shows: the newest and the five before it (narrow enough for the UI)


def history_variable(cluster: str) -> str:
    """The Prefect Variable that keeps each check's level in the last HISTORY_RUNS runs, per cluster."""
    return f"vtflow-health-history-{cluster}"


def add_to_history(history, findings: list[Finding], at: str) -> list[dict]:
    """Pure: the history with this run (its time and each check's level) appended, the oldest dropped."""
    runs = [r for r in (history or []) if isinstance(r, dict) and isinstance(r.get("levels"), dict)]
    return (runs + [{"at": at, "levels": {f.name: f.level for f in findings}}])[-HISTORY_RUNS:]


def summary_markdown(cluster: str, findings: list[Finding], history: list[dict] = ()) -> str:
    """A checks x runs grid (newest run first: the trend) with short cells, then each finding's
    problem and fix as a list below it, never inside a cell (the UI cuts off wide tables)."""
    counts = {lvl: sum(1 for f in findings if f.level == lvl) for lvl in LEVELS}
    runs = list(history)[::-1] or [{"at": "now", "levels": {f.name: f.level for f in findings}}]
    names = [f.name for f in findings]
    for r in runs:  # a check that an older run had (a node since removed) keeps its row
        names += [n for n in r["levels"] if n not in names]
    lines = [f"# Health of {cluster}: {ICON[worst(findings)]}", "",
             f"{counts['ok']} ok, {counts['warn']} warnings, {counts['fail']} failed", "",
             "| check | " + " | ".join(_cell(str(r.get("at", ""))[-5:]) for r in runs) + " |",  # HH:MM (UTC)
             "|---|" + "---|" * len(runs)]
    lines += [f"| {_cell(n)} | " + " | ".join(ICON.get(r["levels"].get(n, ""), "") for r in runs) + " |" for n in names]
    lines += ["", "Runs newest first, times UTC.", "", "## Findings", ""]
    lines += [f"- {_cell(f.line)}" for f in sorted(findings, key=lambda f: -LEVELS.index(f.level))]
    return "\n".join(lines)


def group_findings(group: str, result) -> list[Finding]:
    """A group's findings, or one failed finding named after the group when it raised."""
    return [error_finding(group, result, "could not check: ")] if isinstance(result, BaseException) else list(result)


@flow(name="health-check", log_prints=False)
async def health_check(target_block: TargetBlock = "default", mysql_block: MySQLBlock = "default", nodes_block: NodesBlock = "",
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
        "restore drill": check_restore_drill(cluster, thresholds.max_drill_age_days),
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
    history = add_to_history(await Variable.aget(history_variable(cluster), default=None), findings,
                             time.strftime("%m-%d %H:%M", time.gmtime()))
    await Variable.aset(history_variable(cluster), history, overwrite=True)
    await acreate_markdown_artifact(markdown=summary_markdown(cluster, findings, history), key=f"health-{cluster}",
                                    description=f"Health of VitessCluster {namespace}/{cluster}, one version per check")
    for f in findings:
        (log.info if f.level == "ok" else log.warning)("%s", f.line)
    if bad := failed(findings):
        raise PermanentError(f"VitessCluster {namespace}/{cluster}",
                             f"{len(bad)} health check(s) failed: " + "; ".join(f.short for f in bad),
                             f"see the artifact health-{cluster}.")
    return findings
