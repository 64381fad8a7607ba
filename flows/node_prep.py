"""The node-prep flow: every node checked at once over SSH, one table in the Prefect UI.

Step 1 of the deploy chain. The deploy flow calls it first; it also runs on its own from
the UI (deployment ``node-prep``).
"""

from __future__ import annotations

import asyncio
import re

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_table_artifact

from blocks.nodes import SSHNodes
from tasks.node_prep import NodeReport, NodeRequirements, prep_node
from vtflow.errors import ConfigError, PermanentError



async def load_nodes_block(name: str) -> SSHNodes:
    try:
        return await SSHNodes.aload(name)
    except ValueError as e:
        raise ConfigError(f"SSH nodes block {name!r}", "does not exist on the Prefect server.",
                          f"create it: vtflow block create nodes --name {name} --inventory FILE --key FILE") from e


def report_rows(reports: list[NodeReport]) -> list[dict]:
    """One table row per node: each check's level and value, then what to do."""
    rows = []
    for r in reports:
        row = {"node": r.node, "address": r.address, "result": r.worst}
        if not r.reachable:
            row["problems"] = r.error or "unreachable"
        for c in r.checks:
            row[c.check] = f"{c.level}: {c.value}" + (" (changed)" if c.changed else "")
        problems = [f"{c.check}: {c.message}" for c in r.checks if c.level != "ok" and c.message]
        if problems:
            row["problems"] = " | ".join(problems)
        rows.append(row)
    return rows


def artifact_key(block_name: str) -> str:
    return "node-prep-" + (re.sub(r"[^a-z0-9-]+", "-", block_name.lower()).strip("-") or "nodes")


# An async flow on purpose: Prefect joins a sync flow's heartbeat thread at exit, which sleeps
# in 1 s steps (about 1 s added to every run); node prep is short enough for that to matter.
@flow(name="node-prep", log_prints=False)
async def node_prep(
    nodes_block: str = "default",
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
        if isinstance(outcome, NodeReport):
            report = outcome
        else:  # reported per node; the others are kept
            error = str(outcome) if isinstance(outcome, BaseException) else "failed"
            report = NodeReport(node=spec.name, address=spec.address, reachable=False, error=error)
            log.error("%s", error)
        reports.append(report)
        log.info("node %s: %s%s", report.node, report.worst, " (changed)" if report.changed else "")
        for c in report.checks:
            if c.level != "ok" and c.message:
                (log.warning if c.level == "warn" else log.error)("node %s %s: %s", report.node, c.check, c.message)

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
        raise PermanentError("node prep", f"checks failed on {', '.join(r.node for r in failing)}.",
                             "see the node-prep table artifact for each problem and its fix.")
    return reports
