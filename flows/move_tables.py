"""The move-tables flow: move tables from one keyspace to another with MoveTables, verified, resumable.

Upstream's sharding guide does it by hand (apply 201, then vtctldclient MoveTables create,
status, VDiff, SwitchTraffic, complete, watching the output). Here each of those is a stage of
tasks/vreplication.py, each read back from the workflow's real state, so that a run stopped
anywhere (killed, failed, or left open on purpose) is finished by the next run with the same
parameters, which redoes nothing: tablets, create, copy, vdiff, switch-reads, switch-writes,
verify, complete. A VDiff difference stops the run before any switch; a failure after a switch
reverses it and reports both traffic states. A dry run lists every step and object change and
changes nothing. The markdown artifact ``move-tables-<cluster>`` shows each stage, the copy, the
lag, the VDiff result and the traffic state; ``move-tables-copy-<cluster>`` is the copy's
progress. This module only orders the stages.
"""

from __future__ import annotations

import time

from prefect import flow, get_run_logger

from blocks.mysql import MySQLCredentials
from blocks.target import VitessTarget
from flows.common import load_block
from flows import vreplication as stages
from flows.params import MySQLBlock, TargetBlock
from tasks import gateway
from tasks import vreplication as vr
from tasks.report import Finding, failed
from vtflow import kube, mysql
from vtflow.errors import PermanentError


@flow(name="move-tables", log_prints=False)
async def move_tables(target_block: TargetBlock = "default", mysql_block: MySQLBlock = "default",
                      source_keyspace: str = "commerce", target_keyspace: str = "customer",
                      tables: list[str] = ["customer", "corder"], workflow: str = "",  # noqa: B006 (the form's default)
                      complete: bool = False, max_lag_s: int = 30, dry_run: bool = False,
                      tablets_timeout_s: float = 900, copy_timeout_s: float = 3600, vdiff_timeout_s: float = 1800,
                      switch_timeout_s: float = 30) -> vr.WorkflowReport:
    """Move tables to another keyspace (MoveTables): its tablets, create, copy, VDiff, switch reads
    then writes, verify through vtgate, complete when asked. A re-run resumes where a run stopped.

    Args:
        target_block: The Vitess target (its cluster_name is the VitessCluster changed).
        mysql_block: MySQL credentials for the verification through vtgate.
        source_keyspace: The keyspace the tables are in now.
        target_keyspace: The keyspace they move to; added to the VitessCluster with the source keyspace's tablet
            template when missing (as upstream's 201_customer_tablets.yaml), after a preflight of the nodes' room.
        tables: The tables to move.
        workflow: The workflow's name; empty: <source>2<target>.
        complete: Complete the workflow after the verification (drops the source's copies); off: leave it open
            so that ReverseTraffic can still undo the move.
        max_lag_s: Replication lag allowed for the copy to count as caught up and for each switch.
        dry_run: List every step and object change; change nothing.
        tablets_timeout_s: How long to wait for the target keyspace's tablets to serve.
        copy_timeout_s: How long to wait for the copy to finish and catch up.
        vdiff_timeout_s: How long to wait for the VDiff.
        switch_timeout_s: How long each switch waits for the streams to catch up (--timeout).
    """
    log = get_run_logger()
    req = vr.MoveTablesRequest(source_keyspace=source_keyspace, target_keyspace=target_keyspace, tables=tables,
                               workflow=workflow, complete=complete, max_lag_s=max_lag_s)
    req.refusals("move-tables")
    target = await load_block(VitessTarget, target_block, "target")
    credentials = await load_block(MySQLCredentials, mysql_block, "mysql credentials")
    k = kube.Kube(target.api_client())
    w = vr.Workflow(k, target.namespace, target.cluster_name, "MoveTables", req.source_keyspace,
                    req.target_keyspace, req.name, list(req.tables), log)
    report = vr.WorkflowReport("MoveTables", target.namespace, target.cluster_name, req.source_keyspace,
                               req.target_keyspace, req.name, list(req.tables), dry_run=dry_run)
    await stages.reported(report, f"MoveTables {req.target_keyspace}.{req.name} of VitessCluster "
                                  f"{target.namespace}/{target.cluster_name}",
                          _run(w, req, report, target, credentials, dry_run, log,
                               (tablets_timeout_s, copy_timeout_s, vdiff_timeout_s, switch_timeout_s)))
    return report


async def _run(w: vr.Workflow, req: vr.MoveTablesRequest, report: vr.WorkflowReport, target: VitessTarget,
               credentials: MySQLCredentials, dry_run: bool, log, timeouts: tuple[float, float, float, float]) -> None:
    tablets_timeout_s, copy_timeout_s, vdiff_timeout_s, switch_timeout_s = timeouts
    t0 = time.monotonic()
    vc = await stages.stage("observe", w.vc)
    vr.refuse_others(w, await stages.stage("observe-workflows", w.others, vc))

    # -- tablets: the target keyspace in the VitessCluster, after a preflight, then serving
    if vr.keyspace_entry(vc, w.target) is None:
        entry = vr.target_entry(vc, w.source, w.target)
        lines = await stages.stage("preflight", w.preflight, vc, entry,
                                   f"keyspace {w.target} for VitessCluster {w.namespace}/{w.cluster}",
                                   "free room on the nodes, add a node, or lower the source keyspace's tablet replicas "
                                   "or requests (the target copies its template) with the deploy flow, then re-run.")
        if dry_run:
            report.planned += [f"add keyspace {w.target} to VitessCluster {w.namespace}/{w.cluster} (spec.keyspaces: "
                               f"{len(vr.new_tablets(entry))} tablet pod(s), the template of {w.source})", *lines]
            report.record("tablets", "would", "add the keyspace, then wait for its tablets")
        else:
            done = await stages.stage("add-keyspace", w.add_keyspace, vc, entry)
            log.info("%s", done)
    if not dry_run:
        t = time.monotonic()
        await stages.stage("wait-tablets", w.wait_tablets, w.target, tablets_timeout_s)
        report.record("tablets", "done", f"keyspace {w.target}'s tablets serve, no rollout pending",
                      time.monotonic() - t)

    # -- create, unless the workflow exists (or the tables moved and the workflow was completed)
    # the target keyspace was not in the VitessCluster when the run began (a dry run, or this run added it): it
    # has no workflow and no tables yet, and in a dry run vtctld does not know it at all
    target_missing = vr.keyspace_entry(vc, w.target) is None
    state, show = (None, None) if target_missing else await stages.stage("observe-workflow", w.status)
    completed_already = False
    if state is None:
        source_tables = await stages.stage("observe-source-tables", w.tables_of, w.source)
        target_tables = set() if target_missing else await stages.stage("observe-target-tables", w.tables_of, w.target)
        verdict = vr.refuse_if_unmovable(w, source_tables, target_tables)
        completed_already = verdict == "done"
        if completed_already:
            report.record("create", "skipped", f"the tables are in {w.target} and no longer in {w.source}: "
                                               "moved and completed by an earlier run")
        elif dry_run:
            report.planned += [f"vtctldclient MoveTables --target-keyspace {w.target} --workflow {w.name} create "
                               f"--source-keyspace {w.source} --tables {','.join(w.tables)}",
                               "wait for the copy (every table copied, streams Running, lag within "
                               f"{req.max_lag_s} s)", "VDiff create, then show until completed: no difference",
                               "SwitchTraffic --tablet-types=rdonly,replica (its --dry-run first)",
                               "SwitchTraffic --tablet-types=primary (its --dry-run first)",
                               f"verify through vtgate: {', '.join(w.tables)} in {w.target} and by {w.source}'s name"]
            if req.complete:
                report.planned.append(f"MoveTables complete (drops {', '.join(w.tables)} from {w.source})")
            report.record("create", "would", "the workflow does not exist yet")
            return
        else:
            t = time.monotonic()
            await stages.stage("create", w.command, "create", ["--source-keyspace", w.source, "--tables", ",".join(w.tables)],
                        "read the message: a table without a primary key, or the keyspaces' tablets not serving.")
            report.record("create", "done", f"MoveTables create --source-keyspace {w.source} --tables "
                                            f"{','.join(w.tables)}", time.monotonic() - t)
            state, show = await stages.stage("observe-workflow", w.status)
    else:
        report.record("create", "skipped", "the workflow exists (an earlier run created it)")

    if not completed_already:
        report.traffic_before = state.traffic.text if state else ""
        if dry_run:
            await stages.plan_switches(w, req.max_lag_s, report, state, switch_timeout_s)
            if req.complete:
                report.planned.append(f"MoveTables complete (drops {', '.join(w.tables)} from {w.source})")
            return
        traffic = await stages.copy_and_check(w, req.max_lag_s, report, state, copy_timeout_s, vdiff_timeout_s)
        try:
            traffic = await stages.switches(w, req.max_lag_s, report, traffic, switch_timeout_s)
            await _verify(w, report, target, credentials, completed=False)
        except Exception as e:
            await stages.after_switch_failure(w, req.max_lag_s, report, switch_timeout_s, e)
        if req.complete:
            await stages.complete(w, report, f"workflow removed, {', '.join(w.tables)} dropped from {w.source}")
            completed_already = True
        else:
            report.record("complete", "skipped", "complete is off: the workflow stays open (ReverseTraffic can undo it)")
        report.traffic_after = traffic.text
    if completed_already:
        await _verify(w, report, target, credentials, completed=True)
        report.traffic_after = report.traffic_after or "completed"
    log.info("%s done in %.1f s", w.subject, time.monotonic() - t0)


async def _verify(w, report, target: VitessTarget, credentials: MySQLCredentials, completed: bool) -> None:
    """Through vtgate: each table under the target's name and, while the workflow is open, the
    source's (the routing rules), with the target primary's count; once completed, the source
    keyspace no longer has them."""
    keyspaces = [w.target] if completed else [w.target, w.source]

    def check():
        primary = w.counts_on(w.target)
        gw = gateway.discover(w.k, w.namespace, w.cluster, target.node_address, target.vtgate_address)
        conn = credentials.connect(gw.host, gw.port, conv=mysql.TEXT_CONVERSIONS)
        try:
            findings = vr.verify_findings(w.gateway_counts(conn, keyspaces), primary, keyspaces)
        finally:
            conn.close()
        if completed:
            left = sorted(set(w.tables) & w.tables_of(w.source))
            findings.append(Finding(name=f"keyspace {w.source}", level="fail" if left else "ok",
                                    problem=(f"still has {', '.join(left)}" if left else
                                             f"no longer has {', '.join(w.tables)}"),
                                    fix="complete the workflow (MoveTables complete) and re-run" if left else ""))
        return primary, findings

    t = time.monotonic()
    primary, findings = await stages.stage("verify", check)
    report.rows = primary
    bad = failed(findings)
    for f in findings:
        (w.log.info if f.level == "ok" else w.log.error)("%s", f.line)
    if bad:
        report.record("verify", "failed", "; ".join(f.short for f in bad), time.monotonic() - t)
        raise PermanentError(w.subject, "the verification through vtgate failed: " + "; ".join(f.short for f in bad) + ".",
                             f"see the artifact {report.key}.")
    report.record("verify", "done", "; ".join(f.problem for f in findings), time.monotonic() - t)


