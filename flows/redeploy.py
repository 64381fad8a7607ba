"""The redeploy flow: roll the cluster to an image pushed to Harbor (started by the webhook receiver,
vtflow/webhook.py, or by hand), safely.

Order: check the image reference against the target's mirror; skip a push older than the one
already applied; take a backup first when the cluster has a backup location; write the image by
digest; wait for the operator's rolling update; run the deploy's verification; on any failure
after the change, put the previous images back, wait for that rollout, and fail naming both
states. The deployment's concurrency limit (one at a time, ENQUEUE) keeps redeploys of a cluster
in order: a newer push while one runs waits, it is not lost.
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.artifacts import acreate_markdown_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from blocks.mysql import MySQLCredentials
from blocks.target import VitessTarget
from flows.backup import backup
from flows.common import load_block
from tasks import redeploy as rd
from tasks.cluster import vtadmin_node_port_name
from tasks.common import retry_transient
from tasks.verify import Verification, expected_tablets_of, verify_cluster
from vtflow import kube
from vtflow.errors import PermanentError, VtflowError

VC = ("planetscale.com/v2", "VitessCluster")


class RedeployResult(BaseModel):
    component: str
    image: str
    action: str                        # changed | unchanged | skipped | rolled back
    previous: dict[str, str] = {}
    message: str = ""


def _vtadmin_ports(k: kube.Kube, namespace: str, cluster: str, vc: dict) -> tuple[int, int] | None:
    if not (vc.get("spec") or {}).get("vtadmin"):
        return None
    svc = k.get("v1", "Service", vtadmin_node_port_name(cluster), namespace)
    ports = {p.get("name"): p.get("nodePort") for p in ((svc or {}).get("spec") or {}).get("ports") or []}
    return (ports["web"], ports["api"]) if ports.get("web") and ports.get("api") else None


@task(name="set-image", retries=1, retry_delay_seconds=3, retry_condition_fn=retry_transient, cache_policy=NO_CACHE)
def set_image(k: kube.Kube, namespace: str, cluster: str, component: str, images: dict[str, str],
              pushed_at: float | None) -> None:
    if component == "operator":
        dep = k.get("apps/v1", "Deployment", rd.OPERATOR_DEPLOYMENT, namespace)
        k.patch("apps/v1", "Deployment", rd.OPERATOR_DEPLOYMENT, namespace,
                rd.operator_patch(dep, images["image"], pushed_at))
    else:
        k.patch(*VC, cluster, namespace, rd.cluster_patch(component, images, pushed_at))


@task(name="wait-rollout", cache_policy=NO_CACHE)
def wait_rollout(k: kube.Kube, namespace: str, cluster: str, component: str, image: str, timeout_s: float) -> None:
    log = get_run_logger()
    if component == "operator":
        k.wait("apps/v1", "Deployment", rd.OPERATOR_DEPLOYMENT, namespace,
               lambda dep: rd.deployment_pending(dep, image), timeout_s, progress=lambda m: log.info("%s", m))
        return
    selector = f"planetscale.com/cluster={cluster}"
    k.wait(*VC, cluster, namespace,
           lambda vc: rd.rollout_pending(vc, k.list("v1", "Pod", namespace, label_selector=selector), component, image),
           timeout_s, progress=lambda m: log.info("%s", m))


@flow(name="redeploy", log_prints=False)
async def redeploy(component: rd.Component, repository: str, digest: str, tag: str | None = None,
                   pushed_at: float | None = None, target_block: str = "default", mysql_block: str = "default",
                   backup_first: bool = True, rollout_timeout_s: float = 900,
                   verify: Verification = Verification()) -> RedeployResult:
    """Roll ``component`` to ``repository@digest``; roll back if it does not come up healthy."""
    log = get_run_logger()
    target = await load_block(VitessTarget, target_block, "target")
    credentials = await load_block(MySQLCredentials, mysql_block, "mysql credentials")
    image = rd.image_ref(repository, digest, target.registry_mirror)
    namespace, cluster = target.namespace, target.cluster_name
    k = kube.Kube(target.api_client())
    vc = k.get(*VC, cluster, namespace)
    if vc is None:
        raise PermanentError(f"VitessCluster {namespace}/{cluster}", "does not exist.", "run the deploy flow first.")
    if component == "operator":
        dep = k.get("apps/v1", "Deployment", rd.OPERATOR_DEPLOYMENT, namespace)
        if dep is None:
            raise PermanentError(f"Deployment {namespace}/{rd.OPERATOR_DEPLOYMENT}", "does not exist.",
                                 "run the deploy flow first.")
        holder, previous, new = dep, {"image": rd.operator_image(dep)}, {"image": image}
    else:
        holder, previous = vc, rd.cluster_images(vc, component)
        new = {path: image for path in previous}

    async def report(result: RedeployResult) -> RedeployResult:
        lines = [f"# Redeploy of {component}: {result.action}", "", f"- image: `{image}`" + (f" (tag {tag})" if tag else ""),
                 f"- {result.message}", "", "| field | before | after |", "|---|---|---|"]
        after = new if result.action == "changed" else previous
        lines += [f"| {p} | `{previous[p]}` | `{after[p]}` |" for p in previous]
        await acreate_markdown_artifact(markdown="\n".join(lines), key=f"redeploy-{cluster}",
                                        description=f"Redeploy of {component} in {namespace}/{cluster}")
        return result

    newer = rd.newer_applied(holder, component, pushed_at)
    if newer is not None:
        return await report(RedeployResult(component=component, image=image, action="skipped", previous=previous,
                                           message=f"a newer push (at {newer:.0f}) is already applied; this one "
                                                   f"(at {pushed_at:.0f}) must not replace it"))
    if set(previous.values()) == {image}:
        return await report(RedeployResult(component=component, image=image, action="unchanged", previous=previous,
                                           message="the cluster already runs this digest"))

    if backup_first and ((vc.get("spec") or {}).get("backup") or {}).get("locations"):
        log.info("taking a backup before changing %s", component)
        await backup(target_block=target_block, prune=False)  # fails the redeploy before anything changed

    set_image(k, namespace, cluster, component, new, pushed_at)
    log.info("%s set to %s; waiting for the rolling update", component, image)
    try:
        wait_rollout(k, namespace, cluster, component, image, rollout_timeout_s)
        if verify.enabled:
            vc = k.get(*VC, cluster, namespace) or vc
            verify_cluster(k, namespace, cluster, target.node_address, target.vtgate_address, credentials,
                           expected_tablets_of(vc), _vtadmin_ports(k, namespace, cluster, vc) if verify.vtadmin else None,
                           {}, verify)
    except VtflowError as failure:
        log.error("redeploy of %s to %s failed: %s; rolling back", component, image, failure)
        set_image(k, namespace, cluster, component, previous, None)
        back = next(iter(set(previous.values())))
        try:
            if len(set(previous.values())) == 1:
                wait_rollout(k, namespace, cluster, component, back, rollout_timeout_s)
            rolled = "rolled back and the previous images are running again"
        except VtflowError as e:
            rolled = f"rolled back, but the previous images did not come up: {e}"
        await report(RedeployResult(component=component, image=image, action="rolled back", previous=previous,
                                    message=f"{failure}; {rolled}"))
        raise PermanentError(f"redeploy of {component} to {image}", f"failed ({failure}); {rolled}.",
                             f"see the artifact redeploy-{cluster}; fix the image and push again.") from failure
    return await report(RedeployResult(component=component, image=image, action="changed", previous=previous,
                                       message="rolled out and verified"))
