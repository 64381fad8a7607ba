"""The upgrade flow's steps: from the release a cluster runs to a newer one, one Vitess major at a time.

The path comes from the version table (tasks/versions.py): one row per operator minor, each built
for one Vitess major. A hop is one row: its operator (the release's manifest, CRDs first, then the
Deployment, waited for until available), then the cluster's Vitess images for that major, all at
once, as upstream's own upgrade test does (a new operator, then ``cluster_upgrade.yaml``: every
image one major up; test/endtoend/upgrade_test.sh of each release). From Vitess N to M > N the
path takes the rows of N+1 .. M in turn: a major without a row, or a row whose Kubernetes window
does not hold the cluster's version, refuses the whole path before anything changes, naming the
K3s release that would allow it. A hop is done when the operator reports the cluster ready,
every Vitess pod runs the hop's images and is Ready, no tablet pod carries the operator's
scheduled-rollout annotation ("3/3 Running" is not enough: vitess-operator PR #823), and vtgate's
/debug/vars say the new ``BuildVersion``.

A hop that fails before its images finish is rolled back: the previous images written back, a
tablet stuck on the new image deleted (the operator releases nothing while a tablet is not
Available: vitess-operator reconcile_rollout.go, so a crash-looping pod would hold the rollback
forever), the previous operator Deployment applied again when the hop changed it, and all of
that waited for. A hop that finished is never rolled back: see ``FINISHED_STAYS``.

Pure planning and judgements first; then the tasks, thin, through ``vtflow.kube``.
"""

from __future__ import annotations

import copy
import json
import re
import time
from dataclasses import dataclass, field

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from tasks import versions
from tasks.cluster import not_ready, pod_ready
from tasks.context import TargetContext
from tasks.redeploy import (DEPLOYMENT, FIELDS_OF_POD, VC, cluster_images, cluster_patch, deployment_pending,
                             operator_image)
from tasks.report import Finding
from vtflow import kube, names
from vtflow.errors import ConfigError, PermanentError, VtflowError

MANAGER = kube.FIELD_MANAGER + "-upgrade"
VARS_COMMAND = ["wget", "-qO-", "http://localhost:15000/debug/vars"]
FINISHED_STAYS = ("a Vitess major that finished is not rolled back: its tablets ran it and may have written what "
                  "the older major cannot read (the _vt sidecar schema is upgraded on start), and Vitess supports "
                  "going up one major, not down; to go back, deploy the older release into a new cluster and "
                  "restore the backup the upgrade took before that hop")
_VITESS_TAG = re.compile(r":v(\d+\.\d+\.\d+)(?:-[\w.]+)?$")


# ---------------------------------------------------------------- pure: what runs, and the path


def vitess_of(image: str) -> str | None:
    """``v22.0.1`` from ``vitess/lite:v22.0.1`` or ``harbor.lan/vitess/vitess/lite:v23.0.0-mysql80``;
    None for an image by digest or without a version tag."""
    m = _VITESS_TAG.search(image or "")
    return f"v{m.group(1)}" if m else None


def installed(dep: dict | None, vc: dict, subject: str) -> tuple[str, str]:
    """(operator release, Vitess version) as the operator Deployment and the VitessCluster's
    vttablet image name them; a ConfigError when either cannot be read."""
    operator = versions.manifest_version([dep]) if dep else None
    if operator is None:
        raise ConfigError(f"Deployment {names.OPERATOR_DEPLOYMENT}",
                          f"runs {operator_image(dep or {}) or 'no image'}: vtflow cannot tell which vitess-operator "
                          "release that is (no vX.Y.Z tag).",
                          "deploy a tagged release first (the deploy flow, operator_version), then upgrade.")
    tablet = cluster_images(vc, "vitess")["images.vttablet"]
    vitess = vitess_of(tablet)
    if vitess is None:
        raise ConfigError(f"{subject} spec.images.vttablet",
                          f"is {tablet or 'unset'}: vtflow cannot tell which Vitess release that is (no vX.Y.Z tag).",
                          "deploy with tagged images first (the deploy flow), then upgrade.")
    return operator, vitess


def held_by_strategy(vc: dict, subject: str) -> None:
    """Every hop changes every tablet pod; with ``updateStrategy`` External (the operator's
    default when unset) the operator only schedules them and waits for an outside tool to
    release each one (vitess-operator vitesscluster_types.go), so the hop's wait could never
    end: refused before anything changes."""
    strategy = ((vc.get("spec") or {}).get("updateStrategy") or {}).get("type") or "External"
    if strategy != "Immediate":
        raise ConfigError(f"{subject} spec.updateStrategy.type", f"is {strategy}: the operator would only schedule "
                          "the changed tablets and wait for an outside tool to release each one, so a hop never finishes.",
                          "set spec.updateStrategy.type: Immediate (vtflow's deploy does), then run the upgrade again.")


def k3s_for(minor: str) -> str:
    """The K3s line that runs Kubernetes ``minor`` ("1.32"): K3s versions are the Kubernetes
    version with a +k3sN suffix."""
    return f"K3s v{minor} (a v{minor}.x+k3sN release)"


def _refuse_kubernetes(r: versions.Release, kubernetes: str, force: bool, warnings: list[str], why: str) -> None:
    k8s = "%d.%d" % versions.minor_of(kubernetes)
    low, high = r.kubernetes
    if r.supports(kubernetes):
        return
    if versions.minor_of(kubernetes) < versions.minor_of(low):
        problem = (f"{why} needs vitess-operator {r.operator}, which supports Kubernetes {low}-{high}; the cluster "
                   f"runs {kubernetes}.")
        fix = (f"upgrade the nodes to {k3s_for(low)} first, one Kubernetes minor at a time from {k8s} (servers, "
               "then agents), then run the upgrade again")
    else:
        problem = (f"{why} needs vitess-operator {r.operator}, which supports Kubernetes {low}-{high}; the cluster "
                   f"runs {kubernetes}, newer than that release was tested on.")
        fix = "there is no supported path: Kubernetes cannot go back a minor; ask for a release the table pairs with it"
    if not force:
        raise ConfigError(f"upgrade to vitess-operator {r.operator}", f"{problem}\n{versions.table()}",
                          f"{fix}; or re-run with force to go on anyway.")
    warnings.append(f"{problem} Going on: force.")


def version_key(version: str) -> tuple[int, int, int, int, int]:
    """Orders releases: ``v2.17.0-rc1`` < ``v2.17.0`` < ``v2.17.1``; ``v24.0.0`` < ``v24.0.4``."""
    m = re.match(r"v?(\d+)\.(\d+)(?:\.(\d+))?(?:-rc(\d+))?", version.strip())
    if not m:
        raise ConfigError(f"version {version!r}", "is not a version.", "give it as vMAJOR.MINOR.PATCH, e.g. v2.17.0.")
    major, minor, patch, rc = m.groups()
    return int(major), int(minor), int(patch or 0), 0 if rc else 1, int(rc or 0)


def _newer(now: str, table: str) -> str:
    """The table's release unless what runs is a later patch of the same minor (never go back)."""
    same_minor = versions.minor_of(now) == versions.minor_of(table)
    return now if same_minor and version_key(now) >= version_key(table) else table


@dataclass(frozen=True)
class Hop:
    """One step of the path: the table's row, the operator release it runs (the row's, or a later
    patch of it that already runs) and the Vitess version its images carry."""

    operator_from: str
    vitess_from: str
    release: versions.Release
    vitess: str
    operator_to: str = ""

    @property
    def operator(self) -> str:
        return self.operator_to or self.release.operator

    @property
    def name(self) -> str:
        return f"{self.operator_from} -> {self.operator}, Vitess {self.vitess_from} -> {self.vitess}"

    @property
    def changes_operator(self) -> bool:
        return self.operator_from != self.operator


@dataclass(frozen=True)
class Path:
    hops: tuple[Hop, ...]
    reason: str                        # one line: where to and why
    warnings: tuple[str, ...] = ()


def plan_path(kubernetes: str, operator_now: str, vitess_now: str, operator: str | None = None,
              vitess: str | None = None, force: bool = False) -> Path:
    """The hops from (``operator_now``, ``vitess_now``) to the target: the pinned ``operator``
    and/or ``vitess`` (a version or a bare major), else the newest release of the table that
    ``kubernetes`` allows. Refuses, before anything changes: a target older than what runs, a
    major the table has no row for, a hop whose Kubernetes window does not hold the cluster's
    version (naming the K3s line needed; ``force`` makes that a warning)."""
    warnings: list[str] = []
    k8s = "%d.%d" % versions.minor_of(kubernetes)
    if operator:
        target = versions.release(operator)
        why = f"vitess-operator {operator} as asked"
    elif vitess:
        major = versions.vitess_pin(vitess, versions.DEFAULT)[1]
        rows = [r for r in versions.RELEASES if r.vitess_major == major]
        if not rows:
            raise ConfigError(f"vitess_version {vitess}", "has no row in vtflow's version table:\n" + versions.table(),
                              "ask for a Vitess major of the table.")
        target = rows[-1]
        why = f"Vitess {vitess} as asked (vitess-operator {target.operator})"
    else:
        fits = [r for r in versions.RELEASES if r.supports(kubernetes)]
        if not fits:
            raise ConfigError(f"Kubernetes {kubernetes}", "is supported by no release in vtflow's version table:\n"
                              + versions.table(), "run the cluster at a Kubernetes version of the table.")
        target = fits[-1]
        why = f"vitess-operator {target.operator}, the newest release the table allows on Kubernetes {k8s}"
    target_vitess = target.vitess
    if vitess:
        target_vitess, major = versions.vitess_pin(vitess, target)
        if major != target.vitess_major:
            raise ConfigError(f"vitess_version {vitess}", f"is Vitess {major}; vitess-operator {target.operator} is "
                              f"built for Vitess {target.vitess_major}.\n{versions.table()}",
                              "ask for the operator release of that major, or leave one of the two empty.")
    now_major = versions.minor_of(vitess_now)[0]
    if target.vitess_major < now_major or (target.vitess_major == now_major
                                           and versions.minor_of(target.operator) < versions.minor_of(operator_now)):
        raise ConfigError(f"upgrade to {why}", f"is older than what runs (vitess-operator {operator_now}, Vitess "
                          f"{vitess_now}): vtflow upgrades, it does not downgrade.",
                          "ask for a newer release, or leave the target empty for the newest the cluster allows.")
    hops: list[Hop] = []
    op_from, v_from = operator_now, vitess_now
    for major in range(now_major + 1, target.vitess_major + 1):
        rows = [r for r in versions.RELEASES if r.vitess_major == major]
        if not rows:
            raise ConfigError(f"upgrade from Vitess {vitess_now} to {target_vitess}",
                              f"passes Vitess {major}, which has no row in vtflow's version table (one major at a "
                              f"time is the only supported step):\n{versions.table()}",
                              "upgrade through that major by hand, or deploy the target release into a new cluster "
                              "and move the data (move-tables).")
        r = rows[-1]
        hops.append(Hop(op_from, v_from, r, target_vitess if r is target else r.vitess, _newer(op_from, r.operator)))
        op_from, v_from = hops[-1].operator, hops[-1].vitess
    if target.vitess_major == versions.minor_of(v_from)[0]:
        # the same major: a newer operator (an rc to its release) or a newer Vitess patch; never an older one
        if version_key(target_vitess) < version_key(v_from):
            if vitess:
                raise ConfigError(f"vitess_version {vitess}", f"is older than the Vitess that runs ({v_from}): vtflow "
                                  "upgrades, it does not downgrade.", "ask for a newer patch, or leave it empty.")
            target_vitess = v_from
        to = _newer(op_from, target.operator)
        if (op_from, v_from) != (to, target_vitess):
            hops.append(Hop(op_from, v_from, target, target_vitess, to))
    for h in hops:
        _refuse_kubernetes(h.release, kubernetes, force, warnings, f"the hop to Vitess {h.vitess}")
    nxt = [r for r in versions.RELEASES if r.vitess_major == target.vitess_major + 1]
    if not operator and not vitess and nxt and not nxt[0].supports(kubernetes):
        low = nxt[0].kubernetes[0]
        if versions.minor_of(kubernetes) < versions.minor_of(low):
            warnings.append(f"the next release, vitess-operator {nxt[0].operator} (Vitess {nxt[0].vitess_major}), "
                            f"needs Kubernetes {low}+: upgrade the nodes to {k3s_for(low)} to go on after this.")
    if versions.minor_of(target_vitess)[0] < versions.OLDEST_SUPPORTED_VITESS:
        warnings.append(f"Vitess {versions.minor_of(target_vitess)[0]} is past its end of life; "
                        f"{versions.DEFAULT.row()} is the supported one.")
    return Path(tuple(hops), why, tuple(warnings))


def hop_images(vc: dict, hop: Hop) -> dict[str, str]:
    """The image fields the hop writes: the release's images for its Vitess version, in every
    field the cluster sets (vtadmin and the exporter only where set)."""
    new = hop.release.images(hop.vitess)
    images = (vc.get("spec") or {}).get("images") or {}
    out = {path: new.vitess for path in cluster_images(vc, "vitess") if path != "images.mysqld.mysql80Compatible"}
    out["images.mysqld.mysql80Compatible"] = new.mysqld
    if images.get("vtadmin"):
        out["images.vtadmin"] = new.vtadmin
    if images.get("mysqldExporter"):
        out["images.mysqldExporter"] = new.mysqld_exporter
    return out


def image_fields(vc: dict) -> dict[str, str]:
    """Every image field ``hop_images`` may write, as the cluster has it now."""
    images = (vc.get("spec") or {}).get("images") or {}
    out = dict(cluster_images(vc, "vitess"))
    if images.get("vtadmin"):
        out["images.vtadmin"] = images["vtadmin"]
    if images.get("mysqldExporter"):
        out["images.mysqldExporter"] = images["mysqldExporter"]
    return out


def stuck_pods(pods: list[dict], images: dict[str, str]) -> list[str]:
    """Pods on the hop's images whose container crash-loops: the hop cannot finish."""
    wanted = set(images.values())
    out = []
    for p in pods:
        run = {c.get("name"): c.get("image") for c in (p.get("spec") or {}).get("containers") or []}
        for cs in (p.get("status") or {}).get("containerStatuses") or []:
            waiting = ((cs.get("state") or {}).get("waiting") or {}).get("reason")
            if waiting == "CrashLoopBackOff" and run.get(cs.get("name")) in wanted:
                out.append(p["metadata"]["name"])
                break
    return sorted(out)


def rollout_pending(vc: dict | None, pods: list[dict], images: dict[str, str]) -> str | None:
    """None once the operator reports the cluster ready, every Vitess pod runs its images and is
    Ready, and no tablet pod waits with the scheduled-rollout annotation; else what still rolls."""
    reason = not_ready(vc)
    if reason:
        return reason
    old, scheduled = [], []
    for p in pods:
        labels = p["metadata"].get("labels") or {}
        fields = FIELDS_OF_POD.get(labels.get(names.COMPONENT))
        if not fields or p["metadata"].get("deletionTimestamp"):
            continue
        run = {c.get("image") for c in (p.get("spec") or {}).get("containers") or []}
        if not {images[f] for f in fields if f in images} <= run or not pod_ready(p):
            old.append(p["metadata"]["name"])
        if labels.get(names.COMPONENT) == names.VTTABLET and names.ROLLOUT_SCHEDULED in (p["metadata"].get("annotations") or {}):
            scheduled.append(p["metadata"]["name"])
    if old:
        return f"{len(old)} pod(s) not yet on the new images and ready: {', '.join(sorted(old)[:5])}"
    if scheduled:
        return f"tablet pod(s) {', '.join(sorted(scheduled))} carry {names.ROLLOUT_SCHEDULED} (a rollout is pending)"
    return None


def build_version(vars_text: str) -> str:
    """``BuildVersion`` of a Vitess process's /debug/vars, "" when absent or unreadable."""
    try:
        return str(json.loads(vars_text).get("BuildVersion") or "")
    except (ValueError, AttributeError):
        return ""


def same_release(build: str, vitess: str) -> bool:
    """``24.0.0`` (BuildVersion) is ``v24.0.0``; a SNAPSHOT or suffix of the same numbers counts."""
    return bool(build) and build.split("-")[0] == vitess.lstrip("v").split("-")[0]


def clean_for_apply(obj: dict) -> dict:
    """``obj`` as read, fit to be applied again: no status, no server-set metadata."""
    out = copy.deepcopy(obj)
    out.pop("status", None)
    meta = out.get("metadata") or {}
    for k in ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields", "selfLink"):
        meta.pop(k, None)
    (meta.get("annotations") or {}).pop("deployment.kubernetes.io/revision", None)   # the controller's
    return out


# ---------------------------------------------------------------- results


class HopResult(BaseModel):
    """One hop as the report shows it: versions before and after (after: what the cluster names
    once the hop ended), its result, time, checks and the object changes (planned or made)."""

    hop: str
    operator: tuple[str, str]
    vitess: tuple[str, str]
    result: str = "planned"            # planned | done | rolled back | failed | refused (its preflight)
    seconds: float | None = None
    checks: list[Finding] = []
    changes: list[str] = []


# ---------------------------------------------------------------- tasks (through vtflow.kube)


@dataclass(frozen=True)
class Installed:
    kubernetes: str
    operator: str
    vitess: str
    vc: dict
    nodes: dict[str, str]              # node -> kubelet (K3s) version


def read_installed(ctx: TargetContext) -> Installed:
    """What runs now, read once before anything changes; refuses a cluster that is not there."""
    k = ctx.k
    vc = k.get(*VC, ctx.cluster, ctx.namespace)
    if vc is None:
        raise PermanentError(ctx.subject, "does not exist.", "run the deploy flow first.")
    dep = k.get(*DEPLOYMENT, names.OPERATOR_DEPLOYMENT, ctx.namespace)
    if dep is None:
        raise PermanentError(f"Deployment {ctx.namespace}/{names.OPERATOR_DEPLOYMENT}", "does not exist.",
                             "run the deploy flow first.")
    operator, vitess = installed(dep, vc, ctx.subject)
    nodes = {n["metadata"]["name"]: ((n.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion", "?")
             for n in k.list("v1", "Node")}
    return Installed(k.server_version(), operator, vitess, vc, nodes)


def _pods(ctx: TargetContext) -> list[dict]:
    return ctx.k.list("v1", "Pod", ctx.namespace, label_selector=names.cluster_selector(ctx.cluster))


POLL_S = 1.0   # the rollout is read this often: pods change without the VitessCluster changing


def wait_images(ctx: TargetContext, images: dict[str, str], timeout_s: float) -> None:
    """The operator's rollout to ``images``, read every ``POLL_S`` (the VitessCluster and the pods;
    each new reason logged once); a pod crash-looping on the images fails the wait at once."""
    log = get_run_logger()
    deadline, said = time.monotonic() + timeout_s, None
    while True:
        pods = _pods(ctx)
        if stuck := stuck_pods(pods, images):
            raise PermanentError(f"pod(s) {', '.join(stuck)}", "crash-loop on the new images (CrashLoopBackOff): "
                                 "the rollout cannot finish.", "read the pods' previous logs (kubectl logs --previous).")
        reason = rollout_pending(ctx.k.get(*VC, ctx.cluster, ctx.namespace), pods, images)
        if reason is None:
            return
        if reason != said:
            log.info("%s: %s", ctx.subject, reason)
            said = reason
        if time.monotonic() >= deadline:
            raise kube.WaitTimeout(ctx.subject, f"not rolled out after {timeout_s:.0f} s: {reason}.",
                                   "read the named pods' events and logs, or raise rollout_timeout_s.")
        time.sleep(POLL_S)


def vtgate_versions(ctx: TargetContext) -> dict[str, str]:
    """Each Ready vtgate pod's BuildVersion (its /debug/vars, through exec)."""
    selector = f"{names.cluster_selector(ctx.cluster)},{names.COMPONENT}={names.VTGATE}"
    out = {}
    for p in ctx.k.list("v1", "Pod", ctx.namespace, label_selector=selector):
        if pod_ready(p) and not p["metadata"].get("deletionTimestamp"):
            rc, text, _ = ctx.k.exec(ctx.namespace, p["metadata"]["name"], names.VTGATE, VARS_COMMAND, timeout_s=30)
            out[p["metadata"]["name"]] = build_version(text) if rc == 0 else ""
    return out


def check_vtgate_version(ctx: TargetContext, vitess: str) -> Finding:
    found = vtgate_versions(ctx)
    wrong = {p: v or "none" for p, v in found.items() if not same_release(v, vitess)}
    if not found or wrong:
        raise PermanentError("vtgate", f"reports BuildVersion {', '.join(f'{p}: {v}' for p, v in wrong.items()) or 'from no Ready pod'}, "
                             f"not {vitess}.", "read the vtgate pods' logs; the operator may still be rolling them.")
    return Finding(name="vtgate version", level="ok",
                   problem=f"{len(found)} vtgate pod(s) report BuildVersion {vitess.lstrip('v')}")


@task(name="upgrade-images", task_run_name="upgrade-images-{vitess}", cache_policy=NO_CACHE)
def set_images(ctx: TargetContext, images: dict[str, str], vitess: str) -> None:
    """Write the hop's images into the VitessCluster (a merge patch as vtflow-upgrade)."""
    ctx.k.patch(*VC, ctx.cluster, ctx.namespace, cluster_patch("vitess", images, None), manager=MANAGER)


@task(name="upgrade-wait", task_run_name="upgrade-wait-{vitess}", cache_policy=NO_CACHE)
def wait_hop(ctx: TargetContext, images: dict[str, str], vitess: str, timeout_s: float) -> list[Finding]:
    """Every Vitess pod on the hop's images, no rollout pending, vtgate on the new version."""
    started = time.monotonic()
    wait_images(ctx, images, timeout_s)
    rolled = Finding(name="rollout", level="ok",
                     problem=f"every Vitess pod runs the new images and is Ready, no tablet is scheduled for a "
                             f"rollout ({time.monotonic() - started:.1f} s)")
    return [rolled, check_vtgate_version(ctx, vitess)]


@dataclass
class Rollback:
    """What a hop's rollback did: only ``confirmed`` allows saying the previous state runs again."""

    confirmed: bool = False
    reason: str = ""
    deleted: list[str] = field(default_factory=list)

    @property
    def finding(self) -> Finding:
        if self.confirmed:
            return Finding(name="rollback", level="ok", problem="the previous operator and images run again"
                           + (f" (deleted stuck pod(s) {', '.join(self.deleted)})" if self.deleted else ""))
        return Finding(name="rollback", level="fail", problem=f"the rollback was not confirmed ({self.reason})",
                       fix="watch the cluster's pods until they run the images of the report's 'before' column; "
                           "delete a pod that crash-loops on the new images")


@task(name="upgrade-rollback", task_run_name="upgrade-rollback", cache_policy=NO_CACHE)
def rollback(ctx: TargetContext, previous: dict[str, str], new: dict[str, str], deployment: dict | None,
             timeout_s: float) -> Rollback:
    """Put the previous images (and, given ``deployment``, the previous operator Deployment) back,
    delete tablets stuck on the new images, and wait for all of it. Never raises for its own
    failure: the result says how far it got, so that the hop's failure is the one reported."""
    log = get_run_logger()
    k = ctx.k
    back = Rollback()
    try:
        k.patch(*VC, ctx.cluster, ctx.namespace, cluster_patch("vitess", previous, None), manager=MANAGER)
        if deployment is not None:
            k.apply(clean_for_apply(deployment), force=True)
        # a pod on the new images that is not Ready keeps the operator from releasing anything
        for p in _pods(ctx):
            run = {c.get("image") for c in (p.get("spec") or {}).get("containers") or []}
            if run & set(new.values()) - set(previous.values()) and not pod_ready(p):
                k.delete("v1", "Pod", p["metadata"]["name"], ctx.namespace)
                back.deleted.append(p["metadata"]["name"])
        if deployment is not None:
            image = operator_image(deployment)
            k.wait(*DEPLOYMENT, names.OPERATOR_DEPLOYMENT, ctx.namespace, lambda d: deployment_pending(d, image),
                   timeout_s, progress=lambda m: log.info("rollback: %s", m))
        wait_images(ctx, previous, timeout_s)
    except VtflowError as e:
        log.error("rollback: %s", e)
        back.reason = f"{e.subject}: {e.problem.rstrip('.')}"
        return back
    back.confirmed = True
    return back
