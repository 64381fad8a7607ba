"""The teardown flow: remove a keyspace (as upstream's 102_keyspace_teardown.yaml) or the whole cluster.

Steps: read everything once; refuse, before any change, what the request may not do (claims or
backups without ``confirm`` naming the cluster, the operator while other VitessClusters use it);
plan; apply in order and wait until what goes is gone (finalizers honoured). Claims and backups
are kept unless asked for; the Namespace always is. A dry run lists everything that would go
(and what is kept) and changes nothing; a second run finds nothing left to remove. The
markdown artifact ``teardown-<cluster>`` lists what was removed and what was kept, also when a
step failed. The steps are in tasks/teardown.py; this module only orders them.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_markdown_artifact

from blocks.target import VitessTarget
from flows.common import load_block
from flows.params import TargetBlock
from tasks import teardown as td
from tasks.context import TargetContext
from vtflow import kube


@flow(name="teardown", log_prints=False)
async def teardown(target_block: TargetBlock = "default", scope: td.Scope = "keyspace", keyspace: str = "",
                   delete_claims: bool = False, delete_backups: bool = False, confirm: str = "",
                   remove_operator: bool = False, dry_run: bool = False, timeout_s: float = 600) -> td.TeardownResult:
    """Remove a keyspace or the whole VitessCluster; keep claims and backups unless asked and confirmed.

    Args:
        target_block: The Vitess target (its cluster_name is the VitessCluster torn down).
        scope: keyspace: one keyspace out of the cluster; cluster: the VitessCluster, its pods, and the
            Services and Secrets vtflow made.
        keyspace: The keyspace to remove (scope keyspace).
        delete_claims: Also delete the volume claims of the tablets and etcd (the data). Needs confirm.
        delete_backups: Also remove the backups (RemoveBackup) and vtflow's backup claim. Needs confirm.
        confirm: The VitessCluster's name again; without it claims and backups are never deleted.
        remove_operator: Also remove the vitess-operator and its CRDs (scope cluster; refused while another
            VitessCluster exists).
        dry_run: List what would be removed and kept; change nothing.
        timeout_s: How long to wait, in all, for what is deleted to be gone.
    """
    log = get_run_logger()
    target = await load_block(VitessTarget, target_block, "target")
    req = td.TeardownRequest(scope=scope, keyspace=keyspace, delete_claims=delete_claims, delete_backups=delete_backups,
                             confirm=confirm, remove_operator=remove_operator)
    ctx = TargetContext.of(target, kube.Kube(target.api_client(), dry_run=dry_run))
    observed = await td.observe_task(ctx, req)
    plan = td.plan(observed, req)  # refusals raise here, before any change
    result = td.TeardownResult(namespace=ctx.namespace, cluster=ctx.cluster, scope=scope, keyspace=keyspace,
                               dry_run=dry_run, kept=plan.kept, notes=plan.notes)
    finished: list[td.Step] = []
    try:
        await td.apply_task(ctx, plan, timeout_s, finished.append)
    except Exception as e:
        result.failed = str(e)
        raise
    finally:
        done = finished if result.failed else plan.steps
        result.removed = [s.what for s in done if s.removes] + ([] if result.failed else plan.gone_with_it)
        await acreate_markdown_artifact(markdown=result.markdown(), key=f"teardown-{ctx.cluster}",
                                        description=f"Teardown of VitessCluster {ctx.namespace}/{ctx.cluster}")
        for line in result.removed:
            log.info("%s: %s", "would remove" if dry_run else "removed", line)
        for line in result.kept:
            log.info("kept: %s", line)
    return result
