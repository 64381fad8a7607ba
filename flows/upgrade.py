"""The upgrade flow: take a cluster from the vitess-operator and Vitess it runs to a newer release,
one Vitess major at a time (the version table's rows), each hop backed up, verified, and rolled
back when it does not come up.

Order, read once before anything changes: what runs (the operator Deployment's release, the
VitessCluster's images, every node's kubelet version), the path (tasks/upgrade.py: refused when
the table does not allow it), every hop's operator manifest and the verification's inputs. A dry
run stops there and shows every hop and every object it would change. Each hop then: preflight
(the health check's own Kubernetes and Vitess checks, replication lag, a backup younger than
``backup_max_age_h`` or one taken now), the hop's operator manifest (CRDs first, then the
Deployment, waited for), the cluster's images for the hop's Vitess, the rollout waited for (every
pod on the new images, none scheduled, vtgate on the new BuildVersion) and the deploy's
verification. A hop that fails is rolled back and the run fails naming both states; hops that
finished stay (tasks/upgrade.py ``FINISHED_STAYS`` says why). Re-running after any failure starts
from what runs then; at the target nothing is changed. The steps are in tasks/upgrade.py.
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
from tasks import upgrade as up
from tasks import versions
from tasks.context import TargetContext
from tasks.health import backup_age_checks, kubernetes_checks, vitess_checks
from tasks.operators import install_vitess_operator, load_manifest, operator_objects
from tasks.redeploy import VC
from tasks.report import Finding, failed
from tasks.verify import Verification, verify_deployed
from tasks.verify import read_inputs as read_verify_inputs
from vtflow import kube, names
from vtflow.errors import ConfigError, PermanentError, VtflowError


class UpgradeResult(BaseModel):
    action: str                         # unchanged | planned | upgraded | rolled back | refused | failed
    operator: tuple[str, str]           # before the run, after it
    vitess: tuple[str, str]
    hops: list[up.HopResult] = []
    message: str = ""
    warnings: list[str] = []            # the path's: a next release that needs a newer Kubernetes, force


@flow(name="upgrade", log_prints=False)
async def upgrade(target_block: TargetBlock = "default", mysql_block: MySQLBlock = "default",
                  operator_version: str = "", vitess_version: str = "",
                  operator_manifests: dict[str, str] = {},  # noqa: B006 - read, never changed
                  dry_run: bool = False, backup_max_age_h: float = 24, max_replication_lag_s: float = 30,
                  rollout_timeout_s: float = 900, force: bool = False,
                  verify: Verification = Verification()) -> UpgradeResult:
    """Upgrade vitess-operator and Vitess one supported major at a time, to the newest release the
    cluster's Kubernetes allows (or the one asked for).

    Args:
        operator_version: The release to reach, e.g. v2.17.0; empty: the newest the table allows
            on the cluster's Kubernetes.
        vitess_version: The Vitess to reach, e.g. v24.0.4 or v24; empty: the target release's.
        operator_manifests: Per release on the way, its operator-latest.yaml (a file or URL), e.g.
            {"v2.16.0": "/srv/vitess-operator/v2.16.0/operator-latest.yaml"}; a release left out is
            fetched from GitHub (refused when the target names a registry mirror).
        dry_run: Show every hop and every object it would change; change nothing.
        backup_max_age_h: Each hop needs a backup of every shard younger than this (hours); else it
            takes one first.
        max_replication_lag_s: A replica further behind fails the hop's preflight.
        rollout_timeout_s: How long each hop may take to roll out (seconds).
        force: Go on where the table's Kubernetes windows do not hold the cluster's version.
        verify: What the deploy's verification checks after each hop.
    """
    log = get_run_logger()
    target = await load_block(VitessTarget, target_block, "target")
    credentials = await load_block(MySQLCredentials, mysql_block, "mysql credentials")
    ctx = TargetContext.of(target, kube.Kube(target.api_client()))
    try:   # every input read and checked before anything changes
        now = up.read_installed(ctx)
        up.held_by_strategy(now.vc, ctx.subject)
        path = up.plan_path(now.kubernetes, now.operator, now.vitess, operator_version or None,
                            vitess_version or None, force)
        manifests = _read_manifests(path, operator_manifests, target.registry_mirror)
        verify_inputs = read_verify_inputs(verify) if verify.enabled else (None, None)
    except VtflowError as e:
        await _publish(ctx, "\n".join(["# Upgrade refused", "", f"- {e}", "- nothing was changed"]))
        raise
    for w in path.warnings:
        log.warning("%s", w)
    hops = [up.HopResult(hop=h.name, operator=(h.operator_from, h.operator), vitess=(h.vitess_from, h.vitess))
            for h in path.hops]
    result = UpgradeResult(action="unchanged", operator=(now.operator, now.operator), vitess=(now.vitess, now.vitess),
                           hops=hops, warnings=list(path.warnings))
    if not path.hops:
        result.message = f"nothing to do: vitess-operator {now.operator} with Vitess {now.vitess} is the target ({path.reason})"
        log.info("%s", result.message)
        await _report(ctx, now, path, result)
        return result
    if dry_run:
        dry = TargetContext.of(target, kube.Kube(target.api_client(), dry_run=True))
        images = up.image_fields(now.vc)
        for h, r in zip(path.hops, hops):
            r.changes, images = _planned_changes(dry, now.vc, images, h, manifests.get(h.operator))
        result.action, result.message = "planned", f"{len(hops)} hop(s) to {path.reason}; nothing changed (dry run)"
        await _report(ctx, now, path, result)
        return result

    for h, r in zip(path.hops, hops):
        log.info("hop %s", h.name)
        started = time.monotonic()
        try:
            await _hop(ctx, target_block, credentials, h, r, manifests.get(h.operator), backup_max_age_h,
                       max_replication_lag_s, rollout_timeout_s, verify, verify_inputs)
        except VtflowError as failure:
            r.seconds = round(time.monotonic() - started, 1)
            raise await _failed(ctx, now, path, result, h, r, failure) from failure
        r.result, r.seconds = "done", round(time.monotonic() - started, 1)
        result.operator, result.vitess = (now.operator, h.operator), (now.vitess, h.vitess)
    result.action = "upgraded"
    result.message = f"upgraded to vitess-operator {result.operator[1]} with Vitess {result.vitess[1]} ({path.reason})"
    log.info("%s", result.message)
    await _report(ctx, now, path, result)
    return result


# ---------------------------------------------------------------- before anything changes


def _read_manifests(path: up.Path, given: dict[str, str], mirror: str | None) -> dict[str, tuple[str, list[dict]]]:
    """The operator manifest (source, documents pinned to the release) of each hop that changes
    the operator, read once."""
    out = {}
    for h in path.hops:
        if not h.changes_operator or h.operator in out:
            continue
        source = given.get(h.operator) or given.get(h.release.minor)
        if not source and mirror:
            raise ConfigError(f"operator_manifests {h.operator}", f"is not given, and the target names the registry "
                              f"mirror {mirror}: vtflow does not fetch manifests from GitHub for a cluster behind a mirror.",
                              f"give operator_manifests {{\"{h.operator}\": \"<file or URL>\"}}: the release's "
                              f"operator-latest.yaml ({versions.MANIFEST_URL.format(version=h.operator)} is upstream's).")
        source = source or versions.MANIFEST_URL.format(version=h.operator)
        docs = load_manifest(source)
        versions.operator_for(docs, source, h.operator)   # a manifest of another release is refused
        out[h.operator] = (source, versions.pin_operator_image(docs, h.release))
    return out


def _planned_changes(dry: TargetContext, vc: dict, before: dict[str, str], hop: up.Hop,
                     manifest: tuple[str, list[dict]] | None) -> tuple[list[str], dict[str, str]]:
    """What the hop would change, and the image fields after it: the operator objects a
    server-side dry run finds different from what runs now, and each image field from what the
    hop before it left (``before``)."""
    out = []
    if hop.changes_operator:
        for obj in operator_objects(manifest[1], dry.namespace, dry.registry_mirror):
            done = dry.k.apply(obj, force=True)
            if done.action != "unchanged":
                out.append(f"{done.ref}: {done.action} (compared with what runs now)")
    after = up.hop_images(vc, hop)
    for path, image in after.items():
        if before.get(path) != image:
            out.append(f"VitessCluster {dry.namespace}/{dry.cluster} spec.{path}: {before.get(path) or 'unset'} -> {image}")
    return out, {**before, **after}


# ---------------------------------------------------------------- one hop


async def _hop(ctx: TargetContext, target_block: str, credentials: MySQLCredentials, h: up.Hop, r: up.HopResult,
               manifest: tuple[str, list[dict]] | None, backup_max_age_h: float, max_lag_s: float, timeout_s: float,
               verify: Verification, verify_inputs) -> None:
    log = get_run_logger()
    r.checks += await _preflight(ctx, target_block, credentials, backup_max_age_h, max_lag_s)
    vc = ctx.k.get(*VC, ctx.cluster, ctx.namespace)
    deployment = ctx.k.get("apps/v1", "Deployment", names.OPERATOR_DEPLOYMENT, ctx.namespace)
    previous, new = up.image_fields(vc), up.hop_images(vc, h)
    r.changes = [f"spec.{p}: {previous.get(p) or 'unset'} -> {image}" for p, image in new.items() if previous.get(p) != image]
    try:
        if h.changes_operator:
            choice = versions.Choice(h.release, h.release.images(h.vitess), "", f"vitess-operator {h.operator} (upgrade)")
            step = install_vitess_operator(ctx, manifest[1], manifest[0], choice, timeout_s)
            r.changes = [f"{o['object']}: {o['action']}" for o in step.objects if o["action"] != "unchanged"] + r.changes
            # the new operator's flags may roll tablets before any image changes: let that finish first
            up.wait_hop(ctx, previous, h.vitess_from, timeout_s)
        up.set_images(ctx, new, h.vitess)
        r.checks += up.wait_hop(ctx, new, h.vitess, timeout_s)
        r.checks += verify_deployed(ctx, credentials, verify, verify_inputs)
    except VtflowError as failure:
        log.error("hop %s failed: %s; rolling back", h.name, failure)
        back = up.rollback(ctx, previous, new, deployment if h.changes_operator else None, timeout_s)
        r.checks.append(back.finding)
        r.result = "rolled back" if back.confirmed else "failed"
        raise


async def _preflight(ctx: TargetContext, target_block: str, credentials: MySQLCredentials, backup_max_age_h: float,
                     max_lag_s: float) -> list[Finding]:
    """The health check's own Kubernetes and Vitess checks (replication lag included) must pass;
    shards without a backup younger than ``backup_max_age_h`` get one now."""
    k = ctx.k
    checks = kubernetes_checks(k, ctx.namespace, ctx.cluster, None).findings
    checks += vitess_checks(k, ctx.namespace, ctx.cluster, ctx.node_address, ctx.vtgate_address, credentials, max_lag_s)
    checks = [c for c in checks if c.name != "restarts"]   # restarts since the last health check are not this run's
    if bad := failed(checks):
        raise PermanentError(f"upgrade preflight of {ctx.subject}", f"{len(bad)} check(s) failed: "
                             + "; ".join(f.short for f in bad), "fix what the checks name (health-check flow), then re-run.")
    vc = k.get(*VC, ctx.cluster, ctx.namespace) or {}
    if ((vc.get("spec") or {}).get("backup") or {}).get("locations"):
        ages = [c for c in backup_age_checks(k, ctx.namespace, ctx.cluster, backup_max_age_h) if c.name != "backup schedules"]
        if old := failed(ages):
            get_run_logger().info("taking a backup before the hop: %s", "; ".join(f.short for f in old))
            await backup(target_block=target_block, prune=False)   # fails the hop, unchanged, when it fails
            ages = [Finding(name="backups", level="ok", problem=f"took a backup of every shard before the hop (none "
                            f"younger than {backup_max_age_h:g} h: {'; '.join(f.short for f in old)})")]
        checks += ages
    else:
        checks.append(Finding(name="backups", level="warn", problem="the cluster has no backup location, so no backup "
                              "was taken before the hop", fix="set the deploy's cluster.backup and re-deploy"))
    return checks


# ---------------------------------------------------------------- the report


async def _failed(ctx: TargetContext, now: up.Installed, path: up.Path, result: UpgradeResult, h: up.Hop,
                  r: up.HopResult, failure: VtflowError) -> PermanentError:
    cause = f"{failure.subject}: {failure.problem.rstrip('.')}"
    back = next((c for c in reversed(r.checks) if c.name == "rollback"), None)
    confirmed = back is not None and back.level == "ok"
    runs = f"vitess-operator {h.operator_from} with Vitess {h.vitess_from}"
    if back is None:   # the preflight refused the hop: nothing of it was changed
        r.result, state = "refused", f"the hop changed nothing: {runs} runs"
    else:
        state = (f"rolled back: {runs} runs again" if confirmed else
                 f"not confirmed rolled back to {runs} ({back.problem})")
    done = [x for x in result.hops if x.result == "done"]
    stays = (f"; the hop(s) before it finished and stay ({up.FINISHED_STAYS})" if done else "")
    result.action = "rolled back" if confirmed else ("refused" if back is None else "failed")
    result.message = f"hop {h.name} failed ({cause}); {state}{stays}"
    await _report(ctx, now, path, result)
    fix = f"see the artifact upgrade-{ctx.cluster}; fix the cause, then re-run (it starts from what runs)."
    if not confirmed and back is not None:
        fix = f"{back.fix}; then {fix}"
    return PermanentError(f"upgrade hop {h.name}", f"failed ({cause}); {state}{stays}.", fix)


async def _report(ctx: TargetContext, now: up.Installed, path: up.Path, result: UpgradeResult) -> None:
    """The artifact ``upgrade-<cluster>``: the path, each hop's versions, result, time, checks and changes."""
    title = {"planned": "plan (dry run)", "unchanged": "nothing to do", "upgraded": "done"}.get(
        result.action, f"FAILED ({result.action})")
    lines = [f"# Upgrade {title}", "", f"- {result.message}", f"- target: {path.reason}",
             f"- Kubernetes {now.kubernetes}; nodes: " + ", ".join(f"{n} {v}" for n, v in sorted(now.nodes.items()))]
    lines += [f"- warning: {w}" for w in path.warnings]
    if result.hops:
        lines += ["", "| hop | operator | Vitess | result | time |", "|---|---|---|---|--:|"]
        for r in result.hops:
            took = f"{r.seconds:.1f} s" if r.seconds is not None else ""
            lines.append(f"| {r.hop.split(',')[0]} | {r.operator[0]} -> {r.operator[1]} | {r.vitess[0]} -> {r.vitess[1]} "
                         f"| {r.result} | {took} |")
        for r in result.hops:
            if r.checks:
                lines += ["", f"**{r.hop}: checks**", "", *(f"- {c.line}" for c in r.checks)]
            if r.changes:
                verb = "would change" if result.action == "planned" else "changes"
                lines += ["", f"**{r.hop}: {verb}**", "", *(f"- {c}" for c in r.changes)]
    await _publish(ctx, "\n".join(lines))


async def _publish(ctx: TargetContext, text: str) -> None:
    await acreate_markdown_artifact(markdown=text, key=f"upgrade-{ctx.cluster}",
                                    description=f"Upgrade of {ctx.namespace}/{ctx.cluster}: hops, checks, changes")
