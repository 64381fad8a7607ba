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
Pure builders here; the flow (flows/redeploy.py) calls the Kubernetes client through them.
"""

from __future__ import annotations

import re
from typing import Literal

from tasks.cluster import not_ready
from vtflow.errors import ConfigError

Component = Literal["vitess", "vtadmin", "operator"]
VITESS_IMAGE_KEYS = ("vtctld", "vtgate", "vttablet", "vtorc", "vtbackup")
OPERATOR_DEPLOYMENT = "vitess-operator"
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_REPOSITORY = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?::\d+)?(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)+$")
# the pods whose containers run a component's image, by planetscale.com/component label
PODS_OF = {"vitess": ("vtctld", "vtgate", "vttablet", "vtorc"), "vtadmin": ("vtadmin",)}


def pushed_at_annotation(component: str) -> str:
    return f"vtflow.io/{component}-pushed-at"


def image_ref(repository: str, digest: str, mirror: str | None) -> str:
    """``repository@digest``, refused unless it is well formed and under the target's mirror."""
    if not _DIGEST.match(digest):
        raise ConfigError(f"image {repository}", f"digest {digest!r} is not sha256:<64 hex digits>.",
                          "redeploy by the digest Harbor reported for the push.")
    if not _REPOSITORY.match(repository):
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
    """A merge patch writing ``images`` (field path -> image) and the push time."""
    spec: dict = {}
    for path, image in images.items():
        node = spec
        parts = path.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = image
    patch: dict = {"spec": spec}
    if pushed_at is not None:
        patch["metadata"] = {"annotations": {pushed_at_annotation(component): str(pushed_at)}}
    return patch


def operator_image(deployment: dict) -> str:
    containers = (((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or []
    return containers[0]["image"] if containers else ""


def operator_patch(deployment: dict, image: str, pushed_at: float | None) -> dict:
    name = deployment["spec"]["template"]["spec"]["containers"][0]["name"]
    patch: dict = {"spec": {"template": {"spec": {"containers": [{"name": name, "image": image}]}}}}
    if pushed_at is not None:
        patch["metadata"] = {"annotations": {pushed_at_annotation("operator"): str(pushed_at)}}
    return patch


def newer_applied(obj: dict, component: str, pushed_at: float | None) -> float | None:
    """The push time already applied when it is newer than this push (then this push must not
    replace it); None otherwise."""
    applied = ((obj.get("metadata") or {}).get("annotations") or {}).get(pushed_at_annotation(component))
    try:
        applied_at = float(applied) if applied is not None else None
    except ValueError:
        return None
    if applied_at is not None and pushed_at is not None and applied_at > pushed_at:
        return applied_at
    return None


def rollout_pending(vc: dict | None, pods: list[dict], component: str, image: str) -> str | None:
    """None once the operator reports the cluster ready and every pod of the component runs
    ``image`` and is Ready; otherwise what is still rolling."""
    reason = not_ready(vc)
    if reason:
        return reason
    old = []
    for p in pods:
        comp = (p["metadata"].get("labels") or {}).get("planetscale.com/component")
        if comp not in PODS_OF[component]:
            continue
        images = {c.get("image") for c in (p.get("spec") or {}).get("containers") or []}
        ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                    for c in (p.get("status") or {}).get("conditions") or [])
        if image not in images or not ready:
            old.append(p["metadata"]["name"])
    return f"{len(old)} pod(s) not yet on {image} and ready: {', '.join(sorted(old)[:5])}" if old else None


def deployment_pending(dep: dict | None, image: str) -> str | None:
    if dep is None:
        return "the vitess-operator Deployment is missing"
    st, meta = dep.get("status") or {}, dep.get("metadata") or {}
    if operator_image(dep) != image:
        return "the Deployment does not name the new image"
    if st.get("observedGeneration", 0) < meta.get("generation", 1):
        return "the Deployment controller has not seen the change"
    want = (dep.get("spec") or {}).get("replicas", 1)
    if st.get("updatedReplicas", 0) < want or st.get("availableReplicas", 0) < want or st.get("replicas", 0) > want:
        return (f"{st.get('updatedReplicas', 0)}/{want} updated, {st.get('availableReplicas', 0)} available")
    return None
