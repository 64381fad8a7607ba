"""The stages both resharding flows (move-tables, reshard) share, in the order they run them.

Each stage is a Prefect task named by the stage (``stage``), running the blocking calls of
tasks/vreplication.py in a thread. What is switched is read back from the workflow each time, so
a re-run skips what an earlier run did. ``after_switch_failure`` is the one place that decides
what a failure after a switch does: reverse what can be reversed, and fail with both states.
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable

from prefect import task
from prefect.artifacts import acreate_markdown_artifact
from prefect.cache_policies import NO_CACHE

from tasks import vreplication as vr
from vtflow.errors import PermanentError, VtflowError
from vtflow.vtctld import CommandFailed


@task(name="workflow-stage", task_run_name="{stage}", cache_policy=NO_CACHE)
async def stage(stage: str, fn: Callable, *args):
    """One stage, in a thread (its calls block), named by the stage in the run's task list."""
    return await asyncio.to_thread(fn, *args)


async def reported(report: vr.WorkflowReport, description: str, body) -> None:
    """Run the flow's stages (``body``, a coroutine); the report artifact is written whatever
    happened, with the failure when there was one."""
    try:
        await body
    except Exception as e:
        report.failed = str(e)
        raise
    finally:
        await acreate_markdown_artifact(markdown=report.markdown(), key=report.key, description=description)


class Progress:
    """The copy's progress artifact, created on the first figure and updated in place."""

    def __init__(self, key: str):
        self.key, self.id, self.last = key, None, -1.0

    def __call__(self, percent: float) -> None:
        from prefect.artifacts import create_progress_artifact, update_progress_artifact

        if percent == self.last:
            return
        if self.id is None:
            # _sync: called from the stage's thread, where Prefect's dispatch would hand back a coroutine
            self.id = create_progress_artifact(percent, key=self.key, description="the copy: rows copied", _sync=True)
        else:
            update_progress_artifact(self.id, percent, _sync=True)
        self.last = percent


async def copy_and_check(w: vr.Workflow, max_lag_s: int, report: vr.WorkflowReport, state: vr.CopyState,
                         copy_timeout_s: float, vdiff_timeout_s: float) -> vr.Traffic:
    """The copy waited for, then a VDiff that must find no difference. Both are over once writes
    are switched: the forward streams are then stopped and frozen (the reverse workflow
    replicates), and VDiff is refused."""
    traffic = state.traffic
    if traffic.writes:
        report.copy = state
        report.record("copy", "skipped", f"writes are switched already ({traffic.text}): the forward streams are frozen")
        report.record("vdiff", "skipped", "writes are switched already (VDiff is refused then)")
        return traffic
    t = time.monotonic()
    progress = Progress(report.copy_key)
    state = await stage("copy", w.wait_copy, max_lag_s, copy_timeout_s, report, progress)
    report.record("copy", "done", state.line() + (f"; lag {report.lag} s" if report.lag is not None else ""),
                  time.monotonic() - t)
    t = time.monotonic()
    result = await stage("vdiff", w.run_vdiff, vdiff_timeout_s)
    report.vdiff = result
    if result.mismatch:
        report.record("vdiff", "failed", "; ".join(result.differences()), time.monotonic() - t)
        raise PermanentError(w.subject, f"VDiff {result.uuid} found differences (nothing was switched): "
                             + "; ".join(result.differences()) + ".",
                             "find what wrote to the target tables, fix the rows, or cancel the workflow and re-run; "
                             f"the details: vtctldclient VDiff --target-keyspace {w.target} --workflow {w.name} show "
                             f"{result.uuid} --verbose.")
    report.record("vdiff", "done", f"{result.rows} rows compared, no difference", time.monotonic() - t)
    return traffic


async def switches(w: vr.Workflow, max_lag_s: int, report: vr.WorkflowReport, traffic: vr.Traffic,
                   switch_timeout_s: float) -> vr.Traffic:
    """Reads, then writes, each unless switched already."""
    for name, types, done in (("switch-reads", "rdonly,replica", traffic.reads),
                              ("switch-writes", "primary", traffic.writes)):
        if done:
            report.record(name, "skipped", f"already switched ({traffic.text})")
            continue
        t = time.monotonic()
        lines, after = await stage(name, w.switch, types, max_lag_s, switch_timeout_s)
        traffic = vr.traffic_of(after)
        report.record(name, "done", f"{after} (dry run: {len(lines)} step(s))", time.monotonic() - t)
    return traffic


async def reverse(w: vr.Workflow, max_lag_s: int, report: vr.WorkflowReport, switch_timeout_s: float,
                  cause: BaseException) -> tuple[str, str] | None:
    """After a failure: put back what is switched, and say both states. ReverseTraffic runs on the
    reverse workflow, which only a write switch creates (server.go WorkflowSwitchTraffic loads
    ``<source>.<workflow>_reverse``): before that, switched reads cannot be reversed, and stay
    (Vitess cancelled the failed write switch itself); the run says so."""
    state, _ = await stage("observe-workflow", w.status)
    if state is None or not state.traffic.any:
        return None
    before = state.traffic
    if not before.writes:
        report.record("reverse", "skipped", f"{before.text}: reads stay switched, since ReverseTraffic needs the reverse "
                      "workflow that only a write switch makes; re-run to switch writes, or cancel the workflow")
        report.traffic_after = before.text
        w.log.error("%s failed (%s); traffic is %s: reads stay on %s, writes on %s", w.subject, cause, before.text,
                    w.target, w.source)
        return before.text, f"{before.text} (reads not reversible before the write switch)"
    types = ",".join(t for t, on in (("primary", before.writes), ("replica", before.replica), ("rdonly", before.rdonly))
                     if on)
    try:
        _, after = await stage("reverse", w.switch, types, max_lag_s, switch_timeout_s, True)
        report.record("reverse", "done", f"after the failure: {before.text} -> {after}")
        report.traffic_after = after
        w.log.error("%s failed (%s); traffic was %s and is now %s", w.subject, cause, before.text, after)
        return before.text, after
    except Exception as e:
        report.record("reverse", "failed", f"{before.text}: {e}")
        report.traffic_after = before.text
        w.log.error("%s failed (%s) with traffic %s, and reversing it failed too: %s", w.subject, cause, before.text, e)
        return before.text, f"{before.text} (ReverseTraffic failed: {e})"


async def after_switch_failure(w: vr.Workflow, max_lag_s: int, report: vr.WorkflowReport, switch_timeout_s: float,
                               e: BaseException) -> None:
    """Reverse what is switched and raise the failure with the traffic state before and after
    (re-raises ``e`` as it is when nothing was switched)."""
    states = await reverse(w, max_lag_s, report, switch_timeout_s, e)
    if states is None:
        raise e
    said = f"{e.subject}: {e.problem}" if isinstance(e, VtflowError) else f"({type(e).__name__}) {e}"
    raise PermanentError(w.subject, f"failed after a switch: {said.rstrip('.')}. Traffic was {states[0]!r}, and is "
                         f"now {states[1]!r}.", getattr(e, "fix", None) or "read the run's log, fix the cause and "
                         "re-run: it resumes from the traffic state it finds.") from e


async def complete(w: vr.Workflow, report: vr.WorkflowReport, detail: str) -> None:
    """``complete``, after its dry run (its lines go to the log)."""
    t = time.monotonic()
    lines = vr.dry_run_lines(await stage("complete-dry-run", w.command, "complete", ["--dry-run"],
                                         "read the message, then re-run."))
    for line in lines:
        w.log.info("complete dry run: %s", line)
    await stage("complete", w.command, "complete", [], "read the message, then re-run: the switches are kept.")
    report.record("complete", "done", detail, time.monotonic() - t)


async def plan_switches(w: vr.Workflow, max_lag_s: int, report: vr.WorkflowReport, state: vr.CopyState,
                        switch_timeout_s: float) -> None:
    """Dry run with the workflow open: the switches' own --dry-run lines, and complete's."""
    traffic = state.traffic
    for name, types, done in (("switch-reads", "rdonly,replica", traffic.reads),
                              ("switch-writes", "primary", traffic.writes)):
        if done:
            report.record(name, "skipped", f"already switched ({traffic.text})")
            continue
        try:
            out = await stage(f"{name}-dry-run", w.command, "switchtraffic",
                              [f"--tablet-types={types}", f"--max-replication-lag-allowed={max_lag_s}s",
                               f"--timeout={int(switch_timeout_s)}s", "--dry-run"], "read the message.")
        except CommandFailed as e:   # refused now (copy in progress, lag): the run would wait for the copy first
            report.planned.append(f"SwitchTraffic --tablet-types={types}: after the copy (now: {e.detail})")
            report.record(name, "would", "after the copy")
            continue
        report.planned += [f"SwitchTraffic --tablet-types={types}:"] + vr.dry_run_lines(out)
        report.record(name, "would", f"{len(vr.dry_run_lines(out))} step(s), see the plan")
