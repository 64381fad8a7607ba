"""The node-prep flow: every node checked at once over SSH, one table in the Prefect UI.

Step 1 of the deploy chain. The deploy flow calls it first; it also runs on its own from
the UI (deployment ``node-prep``). Every judgement is a ``tasks.report.Finding``: logged with
``Finding.line``, summed up in the run's state message with ``Finding.short``, and shown in the
table with its problem and its fix in columns of their own. It judges nothing itself
(tasks/node_prep.py does).
"""

from __future__ import annotations

import asyncio
import re

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_table_artifact

from blocks.nodes import SSHNodes
from flows.params import NodesBlock
from tasks.node_prep import NodeReport, NodeRequirements, prep_node
from tasks.report import Finding, failed
from vtflow.errors import ConfigError, PermanentError, VtflowError


async def load_nodes_block(name: str) -> SSHNodes:
    try:
        return await SSHNodes.aload(name)
    except ValueError as e:
        raise ConfigError(f"SSH nodes block {name!r}", "does not exist on the Prefect server.",
                          f"create it: vtflow block create nodes --name {name} --inventory FILE --key FILE") from e


def report_rows(reports: list[NodeReport]) -> list[dict]:
    """One table row per node: each check's level and what it measured, then the problems and,
    in a column of their own, their fixes (each prefixed with its check's name)."""
    rows = []
    for r in reports:
        row = {"node": r.node, "address": r.address, "result": r.worst}
        for f in r.findings:
            row[f.name] = (f"{f.level}: {r.values[f.name]}" if f.name in r.values else f.level) + (
                " (changed)" if f.name in r.changed_checks else "")
        wrong = [f for f in r.findings if f.level != "ok"]
        if problems := [f"{f.name}: {f.problem}" for f in wrong if f.problem]:
            row["problems"] = " | ".join(problems)
        if fixes := [f"{f.name}: {f.fix}" for f in wrong if f.fix]:
            row["fixes"] = " | ".join(fixes)
        rows.append(row)
    return rows


def unreachable_report(spec, outcome) -> NodeReport:
    """A node that could not be probed: the error kept whole, and as the finding ``probe``."""
    if isinstance(outcome, VtflowError):
        finding = Finding(name="probe", level="fail", problem=f"{outcome.subject}: {outcome.problem}", fix=outcome.fix or "")
    else:
        finding = Finding(name="probe", level="fail", problem=str(outcome) if isinstance(outcome, BaseException) else "failed",
                          fix="read the prep-node task's log")
    return NodeReport(node=spec.name, address=spec.address, reachable=False,
                      error=str(outcome) if isinstance(outcome, BaseException) else "failed",
                      findings=[finding], values={"probe": "unreachable"})


def failure_summary(reports: list[NodeReport], most: int = 5) -> str:
    """The failed findings of the given nodes as one line, at most ``most`` of them."""
    shorts = [f"{r.node} {f.short}" for r in reports for f in failed(r.findings)]
    more = f"; and {len(shorts) - most} more" if len(shorts) > most else ""
    return "; ".join(shorts[:most]) + more


def artifact_key(block_name: str) -> str:
    return "node-prep-" + (re.sub(r"[^a-z0-9-]+", "-", block_name.lower()).strip("-") or "nodes")


# An async flow on purpose: Prefect joins a sync flow's heartbeat thread at exit, which sleeps
# in 1 s steps (about 1 s added to every run); node prep is short enough for that to matter.
@flow(name="node-prep", log_prints=False)
async def node_prep(
    nodes_block: NodesBlock = "default",
    requirements: NodeRequirements = NodeRequirements(),
    install_mysql_client: bool = False,
    fail_on_unreachable: bool = True,
    fail_on_check: bool = True,
    ssh_timeout_s: float = 10.0,
    max_parallel: int = 64,
) -> list[NodeReport]:
    """Check every node of the SSH nodes block named ``nodes_block``: K3s, CPU, memory, disk,
    WireGuard peers, clock, MySQL client. Installs a MySQL client only when
    ``install_mysql_client`` is set; at most ``max_parallel`` nodes at once. Fails when a node is unreachable (unless
    ``fail_on_unreachable`` is off) or a check fails (unless ``fail_on_check`` is off)."""
    log = get_run_logger()
    nodes = await load_nodes_block(nodes_block)
    gate = asyncio.Semaphore(max(1, max_parallel))

    async def one(name: str):
        async with gate:
            return await prep_node(nodes, name, requirements, install_mysql_client, ssh_timeout_s, return_state=True)

    states = dict(zip([n.name for n in nodes.nodes], await asyncio.gather(*(one(n.name) for n in nodes.nodes))))
    reports: list[NodeReport] = []
    for spec in nodes.nodes:
        outcome = await states[spec.name].aresult(raise_on_failure=False)
        # reported per node; the others are kept
        report = outcome if isinstance(outcome, NodeReport) else unreachable_report(spec, outcome)
        reports.append(report)
        log.info("node %s: %s%s", report.node, report.worst, " (changed)" if report.changed else "")
        for f in report.findings:
            if f.level != "ok":
                (log.warning if f.level == "warn" else log.error)("node %s %s", report.node, f.line)

    unreachable = [r for r in reports if not r.reachable]
    failing = [r for r in reports if r.reachable and r.worst == "fail"]
    summary = (f"{len(reports)} nodes: {len(reports) - len(unreachable) - len(failing)} passed, "
               f"{len(failing)} failed a check, {len(unreachable)} not checked; "
               f"{sum(r.changed for r in reports)} changed.")
    await acreate_table_artifact(table=report_rows(reports), key=artifact_key(nodes_block),
                                 description=f"Node prep of SSH nodes block `{nodes_block}`: {summary}")
    log.info(summary)
    if unreachable and fail_on_unreachable:
        raise PermanentError("node prep", f"not checked (unreachable or refused): {', '.join(r.node for r in unreachable)}.",
                             "see each node's error above; re-run with fail_on_unreachable=false to go on without them.")
    if failing and fail_on_check:
        raise PermanentError("node prep", f"checks failed on {', '.join(r.node for r in failing)}: "
                             f"{failure_summary(failing)}.",
                             "see the node-prep table artifact for each problem and its fix.")
    return reports
