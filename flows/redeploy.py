"""The redeploy flow: roll the cluster to an image pushed to Harbor (started by the webhook receiver,
vtflow/webhook.py, or by hand), safely.

Order: check the image reference against the target's mirror and read what runs now (and the
verification's inputs) before anything changes; skip a push older than the one already applied;
take a backup first when the cluster has a backup location; write the image by digest; wait for
the operator's rolling update; run the deploy's verification; on any failure after the change,
put the previous images back and wait for them, and fail naming both states (saying the
previous images run again only when that wait completed). The deployment's concurrency limit
(one at a time, ENQUEUE) keeps redeploys of a cluster in order: a newer push while one runs
waits, it is not lost. The steps are in tasks/redeploy.py; this module only orders them.
"""

from __future__ import annotations

import time

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_markdown_artifact
from pydantic import BaseModel

from blocks.mysql import MySQLCredentials
from blocks.target import VitessTarget
from flows.backup import backup
from flows.common import load_block
from flows.params import MySQLBlock, TargetBlock
from tasks import redeploy as rd
from tasks.context import TargetContext
from tasks.verify import Verification, verify_deployed
from tasks.verify import read_inputs as read_verify_inputs
from vtflow import kube
from vtflow.errors import PermanentError, VtflowError


class RedeployResult(BaseModel):
    component: str
    image: str
    action: str                        # changed | unchanged | skipped | rolled back
    previous: dict[str, str] = {}
    message: str = ""
    rollback: rd.Rollback | None = None


@flow(name="redeploy", log_prints=False)
async def redeploy(component: rd.Component, repository: str, digest: str, tag: str | None = None,
                   pushed_at: float | None = None, target_block: TargetBlock = "default", mysql_block: MySQLBlock = "default",
                   backup_first: bool = True, rollout_timeout_s: float = 900,
                   verify: Verification = Verification()) -> RedeployResult:
    """Roll ``component`` to ``repository@digest``; roll back if it does not come up healthy."""
    target = await load_block(VitessTarget, target_block, "target")
    credentials = await load_block(MySQLCredentials, mysql_block, "mysql credentials")
    image = rd.image_ref(repository, digest, target.registry_mirror)
    rd.check_pushed_at(pushed_at, time.time())
    ctx = TargetContext.of(target, kube.Kube(target.api_client()))
    vc, change = rd.read_change(ctx, component, image, pushed_at)
    verify_inputs = read_verify_inputs(verify) if verify.enabled else (None, None)  # a bad script fails here, unchanged
    if (reason := _nothing_to_do(change, pushed_at)) is not None:
        return await _report(ctx, change, tag, "skipped" if change.newer_push is not None else "unchanged", reason)

    await _backup_first(target_block, vc, component, backup_first)
    rd.set_image(ctx, component, change.new, pushed_at)
    try:
        get_run_logger().info("%s set to %s; waiting for the rolling update", component, image)
        rd.wait_rollout(ctx, component, image, rollout_timeout_s)
        verify_deployed(ctx, credentials, verify, verify_inputs, vc)
    except VtflowError as failure:
        get_run_logger().error("redeploy of %s to %s failed: %s; rolling back", component, image, failure)
        back = rd.rollback(ctx, component, change.previous, rollout_timeout_s)
        raise await _rolled_back(ctx, change, tag, failure, back) from failure
    return await _report(ctx, change, tag, "changed", "rolled out and verified")


# ---------------------------------------------------------------- the flow's steps


def _nothing_to_do(change: rd.Change, pushed_at: float | None) -> str | None:
    """Why this push changes nothing, or None."""
    if change.newer_push is not None:
        return (f"a newer push (at {change.newer_push:.0f}) is already applied; this one (at {pushed_at:.0f}) "
                "must not replace it")
    if change.unchanged:
        return "the cluster already runs this digest"
    return None


async def _backup_first(target_block: str, vc: dict, component: str, wanted: bool) -> None:
    """A backup before anything changes, when the cluster has somewhere to put it; a failed
    backup fails the redeploy with the cluster untouched."""
    if wanted and ((vc.get("spec") or {}).get("backup") or {}).get("locations"):
        get_run_logger().info("taking a backup before changing %s", component)
        await backup(target_block=target_block, prune=False)


async def _rolled_back(ctx: TargetContext, change: rd.Change, tag: str | None, failure: VtflowError,
                       back: rd.Rollback) -> PermanentError:
    """The report of a failed redeploy, and the error that ends the run (it names both states)."""
    cause = f"{failure.subject}: {failure.problem.rstrip('.')}"
    await _report(ctx, change, tag, "rolled back", f"{cause}; {back.summary}", back)
    fix = f"see the artifact redeploy-{ctx.cluster}; fix the image and push again."
    if not back.confirmed:
        fix = f"{back.finding.fix}; then {fix}"
    return PermanentError(f"redeploy of {change.component} to {change.image}", f"failed ({cause}); {back.summary}.", fix)


async def _report(ctx: TargetContext, change: rd.Change, tag: str | None, action: str, message: str,
                  back: rd.Rollback | None = None) -> RedeployResult:
    """The artifact ``redeploy-<cluster>`` (each image field before and after) and the result."""
    lines = [f"# Redeploy of {change.component}: {action}", "",
             f"- image: `{change.image}`" + (f" (tag {tag})" if tag else ""), f"- {message}"]
    if back is not None:
        lines.append(f"- {back.finding.line}")
    lines += ["", "| field | before | after |", "|---|---|---|"]
    # after a rollback the previous images are what the VitessCluster names (whether or not they run yet)
    after = change.new if action == "changed" or (back is not None and not back.written) else change.previous
    lines += [f"| {p} | `{change.previous[p]}` | `{after[p]}` |" for p in change.previous]
    await acreate_markdown_artifact(markdown="\n".join(lines), key=f"redeploy-{ctx.cluster}",
                                    description=f"Redeploy of {change.component} in {ctx.namespace}/{ctx.cluster}")
    return RedeployResult(component=change.component, image=change.image, action=action, previous=change.previous,
                          message=message, rollback=back)
