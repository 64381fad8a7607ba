"""The redeploy flow's steps: a pushed image, checked, written into the cluster by digest, rolled
out, and rolled back when it does not come up healthy.

Components and the image fields they own:
- ``vitess``: every Vitess image of the VitessCluster (vtctld, vtgate, vttablet, vtorc,
  vtbackup, mysqld) — vitess/lite carries them all;
- ``vtadmin``: ``spec.images.vtadmin``;
- ``operator``: the vitess-operator Deployment's container.
Images are written as ``repository@sha256:...`` so that what runs is exactly what was pushed.
The push time of the image last applied is kept in an annotation per component, so that an
older push (Harbor retries, a queue that delivered out of order) never replaces a newer one.

Pure builders and judgements first; then the flow's tasks (``set_image``, ``wait_rollout``,
``rollback``), thin, through ``vtflow.kube``. A rollback says whether it waited for the previous
images and whether they came up: only then may anyone say they run again.
"""

from __future__ import annotations

import math
import re
from typing import Literal, Mapping

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from tasks.cluster import not_ready, pod_ready
from tasks.common import retry_transient
from tasks.context import TargetContext
from tasks.report import Finding
from vtflow import harbor, names
from vtflow.errors import ConfigError, PermanentError, VtflowError

Component = Literal["vitess", "vtadmin", "operator"]
VC = ("planetscale.com/v2", "VitessCluster")
DEPLOYMENT = ("apps/v1", "Deployment")
VITESS_IMAGE_KEYS = ("vtctld", "vtgate", "vttablet", "vtorc", "vtbackup")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_REPOSITORY = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)+$")
# the pods whose containers run a component's image, by planetscale.com/component label
PODS_OF = {"vitess": (names.VTCTLD, names.VTGATE, names.VTTABLET, names.VTORC), "vtadmin": (names.VTADMIN,)}
# the image fields each pod's containers run (vtbackup runs in Jobs only, not in these pods)
FIELDS_OF_POD = {names.VTCTLD: ("images.vtctld",), names.VTGATE: ("images.vtgate",), names.VTORC: ("images.vtorc",),
                  names.VTTABLET: ("images.vttablet", "images.mysqld.mysql80Compatible"),
                  names.VTADMIN: ("images.vtadmin",)}


def check_pushed_at(pushed_at: float | None, now: float) -> None:
    """A push time may not lie more than a day past ``now`` (the receiver's own bound): the newest
    applied push time is what makes later pushes skip, so one far-future run would block every
    redeploy of the component. Past times are harmless (such a push is skipped or applied)."""
    if pushed_at is None:
        return
    if not (math.isfinite(pushed_at) and 0 <= pushed_at <= now + harbor.MAX_PUSH_AHEAD):
        raise ConfigError(f"pushed_at {pushed_at!r}", "is not a push time: negative, not a number, or more than a day "
                          "past this machine's clock.", "give the push's time in seconds since 1970 (UTC), or none.")


def image_ref(repository: str, digest: str, mirror: str | None) -> str:
    """``repository@digest``, refused unless it is well formed and under the target's mirror."""
    if not _DIGEST.fullmatch(digest):  # not match: "$" passes a trailing newline
        raise ConfigError(f"image {repository}", f"digest {digest!r} is not sha256:<64 hex digits>.",
                          "redeploy by the digest Harbor reported for the push.")
    if not _REPOSITORY.fullmatch(repository):
        raise ConfigError(f"image {repository}", "is not an image repository (registry/namespace/name, lower case).",
                          "check the route's repository and Harbor's resource_url.")
    if not mirror:
        raise ConfigError("Vitess target block", "has no registry_mirror, so vtflow cannot tell your Harbor's images "
                          "from anyone else's.", "set registry_mirror to your Harbor project, e.g. harbor.lan/vitess.")
    if not repository.startswith(mirror.rstrip("/") + "/"):
        raise ConfigError(f"image {repository}", f"is not under the target's registry mirror {mirror}.",
                          "push to the mirror's project, or correct the target block's registry_mirror.")
    return f"{repository}@{digest}"


def cluster_images(vc: dict, component: str) -> dict[str, str]:
    """The component's image fields in the VitessCluster: field path -> image."""
    images = (vc.get("spec") or {}).get("images") or {}
    if component == "vitess":
        out = {f"images.{k}": images.get(k, "") for k in VITESS_IMAGE_KEYS}
        out["images.mysqld.mysql80Compatible"] = (images.get("mysqld") or {}).get("mysql80Compatible", "")
        return out
    if component == "vtadmin":
        return {"images.vtadmin": images.get("vtadmin", "")}
    raise ValueError(component)


def cluster_patch(component: str, images: dict[str, str], pushed_at: float | None) -> dict:
    """A merge patch writing ``images`` (field path -> image) and the push time. An empty image
    (the field was not set before) is written as null, which removes the field again."""
    spec: dict = {}
    for path, image in images.items():
        node = spec
        parts = path.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = image or None
    patch: dict = {"spec": spec}
    if pushed_at is not None:
        patch["metadata"] = {"annotations": {names.pushed_at_annotation(component): str(pushed_at)}}
    return patch


def operator_image(deployment: dict) -> str:
    containers = (((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or []
    return containers[0]["image"] if containers else ""


def operator_patch(deployment: dict, image: str, pushed_at: float | None) -> dict:
    name = deployment["spec"]["template"]["spec"]["containers"][0]["name"]
    patch: dict = {"spec": {"template": {"spec": {"containers": [{"name": name, "image": image}]}}}}
    if pushed_at is not None:
        patch["metadata"] = {"annotations": {names.pushed_at_annotation("operator"): str(pushed_at)}}
    return patch


def newer_applied(obj: dict, component: str, pushed_at: float | None) -> float | None:
    """The push time already applied when it is newer than this push (then this push must not
    replace it); None otherwise."""
    applied = ((obj.get("metadata") or {}).get("annotations") or {}).get(names.pushed_at_annotation(component))
    try:
        applied_at = float(applied) if applied is not None else None
    except ValueError:
        return None
    if applied_at is not None and pushed_at is not None and applied_at > pushed_at:
        return applied_at
    return None


def pod_images(component: str, images: str | Mapping[str, str]) -> dict[str, set[str]]:
    """The images each pod of the component must run (by its planetscale.com/component label):
    one image for all of them, or per pod from the image fields (field path -> image)."""
    if isinstance(images, str):
        return {pod: {images} for pod in PODS_OF[component]}
    return {pod: {images[f] for f in FIELDS_OF_POD[pod]} for pod in PODS_OF[component]}


def rollout_pending(vc: dict | None, pods: list[dict], component: str, image: str | Mapping[str, str]) -> str | None:
    """None once the operator reports the cluster ready and every pod of the component runs
    ``image`` (or, given image fields, each pod its own) and is Ready; otherwise what is still rolling."""
    reason = not_ready(vc)
    if reason:
        return reason
    wanted = pod_images(component, image)
    old = []
    for p in pods:
        comp = (p["metadata"].get("labels") or {}).get(names.COMPONENT)
        if comp not in wanted:
            continue
        images = {c.get("image") for c in (p.get("spec") or {}).get("containers") or []}
        if not wanted[comp] <= images or not pod_ready(p):
            old.append(p["metadata"]["name"])
    what = image if isinstance(image, str) else "the images of its fields"
    return f"{len(old)} pod(s) not yet on {what} and ready: {', '.join(sorted(old)[:5])}" if old else None


def deployment_pending(dep: dict | None, image: str) -> str | None:
    if dep is None:
        return f"the {names.OPERATOR_DEPLOYMENT} Deployment is missing"
    st, meta = dep.get("status") or {}, dep.get("metadata") or {}
    if operator_image(dep) != image:
        return "the Deployment does not name the new image"
    if st.get("observedGeneration", 0) < meta.get("generation", 1):
        return "the Deployment controller has not seen the change"
    want = (dep.get("spec") or {}).get("replicas", 1)
    if st.get("updatedReplicas", 0) < want or st.get("availableReplicas", 0) < want or st.get("replicas", 0) > want:
        return (f"{st.get('updatedReplicas', 0)}/{want} updated, {st.get('availableReplicas', 0)} available")
    return None


# ---------------------------------------------------------------- what a redeploy changes (pure)


class Change(BaseModel):
    """A redeploy's plan, read once before anything changes: the component's image fields
    before and after, and the push time already applied when it is newer than this push."""

    component: str
    image: str
    previous: dict[str, str]
    new: dict[str, str]
    newer_push: float | None = None

    @property
    def unchanged(self) -> bool:
        return set(self.previous.values()) == {self.image}


def plan_change(vc: dict, dep: dict | None, component: str, image: str, pushed_at: float | None) -> Change:
    """The change from what ``vc`` (or, for the operator, ``dep``) holds now to ``image``."""
    if component == "operator":
        holder, previous, new = dep or {}, {"image": operator_image(dep or {})}, {"image": image}
    else:
        holder, previous = vc, cluster_images(vc, component)
        new = {path: image for path in previous}
    return Change(component=component, image=image, previous=previous, new=new,
                  newer_push=newer_applied(holder, component, pushed_at))


class Rollback(BaseModel):
    """What a rollback did. Only ``confirmed`` (the previous images written back, their rollout
    waited for, and complete) allows saying that the previous images run again."""

    written: bool = False
    waited: bool = False
    confirmed: bool = False
    reason: str = ""

    @property
    def finding(self) -> Finding:
        if self.confirmed:
            return Finding(name="rollback", level="ok", problem="the previous images are running again")
        if not self.written:
            return Finding(name="rollback", level="fail",
                           problem=f"the previous images could not be written back ({self.reason})",
                           fix="write the images of the artifact's 'before' column back by hand")
        return Finding(name="rollback", level="fail",
                       problem=f"the previous images were written back but their rollout was not confirmed ({self.reason})",
                       fix="watch the cluster's pods until they run the images of the artifact's 'before' column")

    @property
    def summary(self) -> str:
        """How the run's message ends."""
        if self.confirmed:
            return "rolled back and the previous images are running again"
        return ("rolled back: " if self.written else "not rolled back: ") + self.finding.problem


# ---------------------------------------------------------------- tasks (through vtflow.kube)


def read_change(target: TargetContext, component: str, image: str, pushed_at: float | None) -> tuple[dict, Change]:
    """The VitessCluster as it is, and the change planned from it. Refuses a cluster (or an
    operator Deployment) that does not exist, before anything is changed."""
    k, namespace, cluster = target.k, target.namespace, target.cluster
    vc = k.get(*VC, cluster, namespace)
    if vc is None:
        raise PermanentError(target.subject, "does not exist.", "run the deploy flow first.")
    dep = None
    if component == "operator":
        dep = k.get(*DEPLOYMENT, names.OPERATOR_DEPLOYMENT, namespace)
        if dep is None:
            raise PermanentError(f"Deployment {namespace}/{names.OPERATOR_DEPLOYMENT}", "does not exist.",
                                 "run the deploy flow first.")
    return vc, plan_change(vc, dep, component, image, pushed_at)


def _write(target: TargetContext, component: str, images: dict[str, str], pushed_at: float | None) -> None:
    k, namespace = target.k, target.namespace
    if component == "operator":
        dep = k.get(*DEPLOYMENT, names.OPERATOR_DEPLOYMENT, namespace)
        # strategic: a merge patch would replace the containers list with this one entry, and the
        # operator would lose its command, env (WATCH_NAMESPACE) and resources
        k.patch(*DEPLOYMENT, names.OPERATOR_DEPLOYMENT, namespace, operator_patch(dep, images["image"], pushed_at),
                strategic=True)
    else:
        k.patch(*VC, target.cluster, namespace, cluster_patch(component, images, pushed_at))


def _wait(target: TargetContext, component: str, images: str | dict[str, str], timeout_s: float) -> None:
    log = get_run_logger()
    k, namespace = target.k, target.namespace
    if component == "operator":
        image = images if isinstance(images, str) else images["image"]
        k.wait(*DEPLOYMENT, names.OPERATOR_DEPLOYMENT, namespace, lambda dep: deployment_pending(dep, image),
               timeout_s, progress=lambda m: log.info("%s", m))
        return
    selector = names.cluster_selector(target.cluster)
    k.wait(*VC, target.cluster, namespace,
           lambda vc: rollout_pending(vc, k.list("v1", "Pod", namespace, label_selector=selector), component, images),
           timeout_s, progress=lambda m: log.info("%s", m))


@task(name="set-image", task_run_name="set-image-{component}", retries=1, retry_delay_seconds=3,
      retry_condition_fn=retry_transient, cache_policy=NO_CACHE)
def set_image(target: TargetContext, component: str, images: dict[str, str], pushed_at: float | None) -> None:
    _write(target, component, images, pushed_at)


@task(name="wait-rollout", task_run_name="wait-rollout-{component}", cache_policy=NO_CACHE)
def wait_rollout(target: TargetContext, component: str, image: str, timeout_s: float) -> None:
    """The operator's (or the Deployment controller's) rolling update to ``image``. No retries:
    a timeout comes after the whole wait, and a second wait would only be as long."""
    _wait(target, component, image, timeout_s)


@task(name="rollback", task_run_name="rollback-{component}", cache_policy=NO_CACHE)
def rollback(target: TargetContext, component: str, previous: dict[str, str], timeout_s: float) -> Rollback:
    """Write ``previous`` back and wait for it to run. Never raises for its own failure: the
    result says how far it got, so that the redeploy's failure is still the one reported."""
    log = get_run_logger()
    try:
        _write(target, component, previous, None)
    except VtflowError as e:
        log.error("rollback of %s: the previous images could not be written back: %s", component, e)
        return Rollback(reason=f"{e.subject}: {e.problem}")
    unknown = sorted(path for path, image in previous.items() if not image)
    if unknown:
        # the fields were unset before: the operator's defaults run there, and nothing says which image that is
        return Rollback(written=True, reason=f"{', '.join(unknown)} had no image before, so what must run there "
                                             "cannot be checked")
    try:
        _wait(target, component, previous["image"] if component == "operator" else previous, timeout_s)
    except VtflowError as e:
        log.error("rollback of %s: the previous images did not come up: %s", component, e)
        return Rollback(written=True, waited=True, reason=f"{e.subject}: {e.problem.rstrip('.')}")
    return Rollback(written=True, waited=True, confirmed=True)
