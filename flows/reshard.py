"""The reshard flow: split a keyspace's shards with Reshard, verified, resumable, old shards removed last.

Upstream's sharding guide (after MoveTables): the sequence tables and VSchema in ``commerce``, the
sharded VSchema and schema in ``customer`` (create_commerce_seq.sql, vschema_commerce_seq.json,
vschema_customer_sharded.json, create_customer_sharded.sql), the new shards in the VitessCluster
(302), ``Reshard create``, copy, VDiff, switches, ``complete``, and only then the old shard out of
the VitessCluster (306): the other order leaves a frozen workflow upstream cannot clean up. Each
is a stage here (prepare, shards, create, copy, vdiff, switch-reads, switch-writes, verify,
complete, cleanup), read back from the cluster's state so that a re-run resumes: the workflow's
status, the shards' ``is_primary_serving`` (GetShard) once the workflow is gone, and the
VitessCluster's partitionings. The verification reads every row through vtgate and checks that
each target shard (``USE ks/shard``) holds exactly the rows the ``hash`` vindex gives it. The
shared stages are in flows/vreplication.py; artifact ``reshard-<cluster>``.
"""

from __future__ import annotations

import time

from prefect import flow, get_run_logger

from blocks.mysql import MySQLCredentials
from blocks.target import VitessTarget
from flows import vreplication as stages
from flows.common import load_block
from flows.params import MySQLBlock, TargetBlock
from tasks import gateway
from tasks import schema as schema_step
from tasks import vreplication as vr
from tasks.context import TargetContext
from tasks.report import Finding, failed
from tasks.schema import KeyspaceSchema
from vtflow import kube, mysql
from vtflow.errors import ConfigError, PermanentError


@flow(name="reshard", log_prints=False)
async def reshard(target_block: TargetBlock = "default", mysql_block: MySQLBlock = "default",
                  keyspace: str = "customer", source_shards: list[str] = ["-"],  # noqa: B006 (the form's defaults)
                  target_shards: list[str] = ["-80", "80-"], workflow: str = "",  # noqa: B006
                  prepare: list[KeyspaceSchema] = [],  # noqa: B006
                  complete: bool = False, max_lag_s: int = 30, dry_run: bool = False,
                  tablets_timeout_s: float = 900, copy_timeout_s: float = 3600, vdiff_timeout_s: float = 1800,
                  switch_timeout_s: float = 30, removal_timeout_s: float = 600) -> vr.WorkflowReport:
    """Split a keyspace's shards (Reshard): schema first, the new shards, create, copy, VDiff, switch
    reads then writes, verify every row's shard through vtgate, complete and then remove the old
    shards when asked. A re-run resumes where a run stopped.

    Args:
        target_block: The Vitess target (its cluster_name is the VitessCluster changed).
        mysql_block: MySQL credentials for the verification through vtgate.
        keyspace: The keyspace to reshard.
        source_shards: The shards it has now ("-" for an unsharded keyspace).
        target_shards: The shards it is split into: an equal split, as the operator's equal partitioning
            names them (-80,80- or -40,40-80,80-c0,c0-).
        workflow: The workflow's name; empty: <keyspace>2<keyspace>.
        prepare: Schema and VSchema changes applied first, in order (upstream: commerce's sequence tables and
            VSchema, then the keyspace's sharded VSchema and schema). Skipped once every VSchema given is in place.
        complete: Complete the workflow after the verification, then remove the old shards' tablets from the
            VitessCluster (upstream's 306); off: leave it open so that ReverseTraffic can undo the switch.
        max_lag_s: Replication lag allowed for the copy to count as caught up and for each switch.
        dry_run: List every step and object change; change nothing.
        tablets_timeout_s: How long to wait for the new shards' tablets to serve.
        copy_timeout_s: How long to wait for the copy to finish and catch up.
        vdiff_timeout_s: How long to wait for the VDiff.
        switch_timeout_s: How long each switch waits for the streams to catch up (--timeout).
        removal_timeout_s: How long to wait for the old shards' tablet pods to be gone.
    """
    log = get_run_logger()
    req = vr.ReshardRequest(keyspace=keyspace, source_shards=list(source_shards), target_shards=list(target_shards),
                            workflow=workflow, max_lag_s=max_lag_s)
    req.refusals()
    schemas = schema_step.check_inputs(list(prepare))   # every file read and checked before any change
    target = await load_block(VitessTarget, target_block, "target")
    credentials = await load_block(MySQLCredentials, mysql_block, "mysql credentials")
    k = kube.Kube(target.api_client())
    w = vr.Workflow(k, target.namespace, target.cluster_name, "Reshard", req.keyspace, req.keyspace, req.name, [], log)
    report = vr.WorkflowReport("Reshard", target.namespace, target.cluster_name, f"{keyspace}/{','.join(source_shards)}",
                               f"{keyspace}/{','.join(target_shards)}", req.name, [], dry_run=dry_run)
    await stages.reported(report, f"Reshard {req.keyspace}.{req.name} of VitessCluster "
                                  f"{target.namespace}/{target.cluster_name}",
                          _run(w, req, report, TargetContext.of(target, k), credentials, schemas, complete, dry_run,
                               log, (tablets_timeout_s, copy_timeout_s, vdiff_timeout_s, switch_timeout_s,
                                     removal_timeout_s)))
    return report


async def _run(w: vr.Workflow, req: vr.ReshardRequest, report: vr.WorkflowReport, ctx: TargetContext,
               credentials: MySQLCredentials, schemas, complete: bool, dry_run: bool, log, timeouts) -> None:
    tablets_timeout_s, copy_timeout_s, vdiff_timeout_s, switch_timeout_s, removal_timeout_s = timeouts
    t0 = time.monotonic()
    vc = await stages.stage("observe", w.vc)
    entry = vr.keyspace_entry(vc, req.keyspace)
    if entry is None:
        raise ConfigError(f"keyspace {req.keyspace}", f"is not in VitessCluster {w.namespace}/{w.cluster}.",
                          "move its tables first (the move-tables flow), or give one of "
                          + ", ".join(k["name"] for k in vc["spec"].get("keyspaces") or []) + ".")
    vr.refuse_others(w, await stages.stage("observe-workflows", w.others, vc))
    state, _ = await stages.stage("observe-workflow", w.status)
    serving = await stages.stage("observe-shards", w.serving, req.keyspace, req.source_shards) if state is None else True
    moved = state is None and not serving   # completed by an earlier run: the old shards serve no more

    # -- prepare: the schema and VSchema changes, unless every VSchema given is in place
    if schemas and not moved:
        pending = await stages.stage("observe-vschemas", w.vschemas_pending, schemas)
        if not pending:
            report.record("prepare", "skipped", "every VSchema given is in place (an earlier run applied them)")
        elif dry_run:
            report.planned += [f"apply the schema and VSchema of keyspace {s.keyspace} ({len(s.statements)} "
                               f"statement(s){', VSchema' if s.vschema is not None else ''})" for s in schemas]
            report.record("prepare", "would", f"{len(schemas)} keyspace(s)")
        else:
            t = time.monotonic()
            done = await stages.stage("prepare", w.prepare, ctx, schemas)
            report.record("prepare", "done", done, time.monotonic() - t)
    vs = await stages.stage("observe-vschema", w.vt.get_vschema, req.keyspace)
    w.tables = sorted(vr.primary_vindex_columns(vs)) if not dry_run or vs else []
    report.tables = list(w.tables)

    # -- shards: the target shards in the VitessCluster (302), after a preflight, then serving
    grown = vr.with_target_shards(entry, req.source_shards, req.target_shards) if not moved else None
    if grown is not None:
        added = {**grown, "partitionings": grown["partitionings"][-1:]}
        lines = await stages.stage("preflight", w.preflight, vc, added,
                                   f"shards {','.join(req.target_shards)} of keyspace {req.keyspace}",
                                   "free room on the nodes, add a node, or lower the keyspace's tablet replicas or "
                                   "requests with the deploy flow, then re-run.")
        if dry_run:
            report.planned += [f"add shards {','.join(req.target_shards)} to keyspace {req.keyspace} of VitessCluster "
                               f"{w.namespace}/{w.cluster} (a second partitioning, {len(vr.new_tablets(added))} "
                               "tablet pod(s), the template of the current shards)", *lines]
            report.record("shards", "would", "add the shards, then wait for their tablets")
        else:
            verb, body = vr.keyspaces_change(vc, vr.with_entry(vc, grown))
            await stages.stage("add-shards", w.set_keyspaces, verb, body)
            log.info("shards %s added to keyspace %s (%s)", ",".join(req.target_shards), req.keyspace, verb)
    if not dry_run:
        t = time.monotonic()
        await stages.stage("wait-tablets", w.wait_tablets, req.keyspace, tablets_timeout_s)
        report.record("shards", "done", f"shards {','.join(req.target_shards)} serve, no rollout pending",
                      time.monotonic() - t)

    # -- create, unless the workflow exists or an earlier run completed it
    if moved:
        report.record("create", "skipped", f"shards {','.join(req.source_shards)} no longer serve: resharded and "
                                           "completed by an earlier run")
    elif state is None:
        flags = ["--source-shards", ",".join(req.source_shards), "--target-shards", ",".join(req.target_shards)]
        if dry_run:
            report.planned += [f"vtctldclient Reshard --target-keyspace {req.keyspace} --workflow {w.name} create "
                               + " ".join(flags), f"wait for the copy (streams Running, lag within {req.max_lag_s} s)",
                               "VDiff create, then show until completed: no difference",
                               "SwitchTraffic --tablet-types=rdonly,replica, then primary (each --dry-run first)",
                               "verify through vtgate: every row, and each shard's rows as the hash vindex places them"]
            if complete:
                report.planned += ["Reshard complete", f"remove shards {','.join(req.source_shards)} from the "
                                   "VitessCluster (upstream 306) and wait until their tablets are gone"]
            report.record("create", "would", "the workflow does not exist yet")
            return
        t = time.monotonic()
        await stages.stage("create", w.command, "create", flags,
                           "read the message: a table without a primary vindex, or the shards' tablets not serving.")
        report.record("create", "done", "Reshard create " + " ".join(flags), time.monotonic() - t)
        state, _ = await stages.stage("observe-workflow", w.status)
    else:
        report.record("create", "skipped", "the workflow exists (an earlier run created it)")

    if not moved:
        report.traffic_before = state.traffic.text if state else ""
        if dry_run:
            await stages.plan_switches(w, req.max_lag_s, report, state, switch_timeout_s)
            return
        traffic = await stages.copy_and_check(w, req.max_lag_s, report, state, copy_timeout_s, vdiff_timeout_s)
        try:
            traffic = await stages.switches(w, req.max_lag_s, report, traffic, switch_timeout_s)
            await _verify(w, req, report, ctx, credentials)
        except Exception as e:
            await stages.after_switch_failure(w, req.max_lag_s, report, switch_timeout_s, e)
        report.traffic_after = traffic.text
        if not complete:
            report.record("complete", "skipped", "complete is off: the workflow stays open (ReverseTraffic can undo it)")
            log.info("%s done in %.1f s (left open)", w.subject, time.monotonic() - t0)
            return
        await stages.complete(w, report, f"workflow removed; shards {','.join(req.source_shards)} serve no more")
    else:
        await _verify(w, req, report, ctx, credentials)
        report.traffic_after = "completed"

    # -- cleanup: only after complete, the old shards out of the VitessCluster (306)
    if complete:
        vc = await stages.stage("observe", w.vc)
        shrunk = vr.without_source_shards(vr.keyspace_entry(vc, req.keyspace), req.source_shards)
        t = time.monotonic()
        if shrunk is not None:
            if dry_run:
                report.planned.append(f"remove shards {','.join(req.source_shards)} from the VitessCluster (306)")
                report.record("cleanup", "would", "remove the old partitioning")
                return
            verb, body = vr.keyspaces_change(vc, vr.with_entry(vc, shrunk))
            await stages.stage("remove-old-shards", w.set_keyspaces, verb, body)
        await stages.stage("wait-old-tablets-gone", w.wait_shards_gone, req.keyspace, req.source_shards, removal_timeout_s)
        report.record("cleanup", "done" if shrunk is not None else "skipped",
                      f"shards {','.join(req.source_shards)}' tablets are gone" if shrunk is not None
                      else "the old shards were removed by an earlier run", time.monotonic() - t)
    log.info("%s done in %.1f s", w.subject, time.monotonic() - t0)


async def _verify(w: vr.Workflow, req: vr.ReshardRequest, report: vr.WorkflowReport, ctx: TargetContext,
                  credentials: MySQLCredentials) -> None:
    """Through vtgate: every row of each table at keyspace level, and in each target shard exactly
    the rows the hash vindex gives it."""
    columns = vr.primary_vindex_columns(w.vt.get_vschema(req.keyspace))

    def check() -> list[Finding]:
        gw = gateway.discover(ctx.k, ctx.namespace, ctx.cluster, ctx.node_address, ctx.vtgate_address)
        conn = credentials.connect(gw.host, gw.port, conv=mysql.TEXT_CONVERSIONS)
        out = []
        try:
            for table, column in sorted(columns.items()):
                mysql.use(conn, req.keyspace)
                _, rows = mysql.run(conn, f"SELECT `{column}` FROM `{table}`", where=f"{req.keyspace}.{table} through vtgate")
                want = vr.shard_counts([int(r[0]) for r in rows], req.target_shards)
                got = {}
                for shard in req.target_shards:
                    mysql.use(conn, f"{req.keyspace}/{shard}")
                    _, n = mysql.run(conn, f"SELECT COUNT(*) FROM `{table}`", where=f"{req.keyspace}/{shard}.{table}")
                    got[shard] = int(n[0][0])
                bad = [f"{s} has {got[s]}, the vindex gives it {want[s]}" for s in req.target_shards if got[s] != want[s]]
                placed = ", ".join(f"{s}: {got[s]}" for s in req.target_shards)
                out.append(Finding(name=f"table {table}", level="fail" if bad else "ok",
                                   problem=("; ".join(bad) if bad else f"{len(rows)} rows through vtgate ({placed}), "
                                            "each in the shard its hash vindex gives"),
                                   fix="run VDiff and see the shards' vttablet logs" if bad else ""))
                report.rows[table] = len(rows)
        finally:
            conn.close()
        return out

    t = time.monotonic()
    findings = await stages.stage("verify", check)
    for f in findings:
        (w.log.info if f.level == "ok" else w.log.error)("%s", f.line)
    bad = failed(findings)
    if bad:
        report.record("verify", "failed", "; ".join(f.short for f in bad), time.monotonic() - t)
        raise PermanentError(w.subject, "the verification through vtgate failed: " + "; ".join(f.short for f in bad) + ".",
                             f"see the artifact {report.key}.")
    report.record("verify", "done", "; ".join(f.problem for f in findings) or "no table with a hash vindex",
                  time.monotonic() - t)

