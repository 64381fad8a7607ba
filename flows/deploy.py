"""The deploy flow: node prep, etcd-operator, vitess-operator, cluster init, schema apply (steps 1-5).

Data load and verification (steps 6-7) join this chain with their issue. Every
step is safe to repeat: a second run reports every object unchanged. ``until`` stops after
a step; ``dry_run`` sends every write as a server dry-run and changes nothing.
"""

from __future__ import annotations

from typing import Literal

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_markdown_artifact
from pydantic import BaseModel, Field

from blocks.mysql import MySQLCredentials
from blocks.target import VitessTarget
from flows.node_prep import node_prep
from tasks.cluster import ClusterSpec, init_cluster
from tasks.node_prep import NodeRequirements
from tasks.operators import (DEFAULT_OPERATOR_VERSION, OPERATOR_URL, StepReport, install_etcd_operator,
                             install_vitess_operator, load_manifest)
from tasks.schema import KeyspaceSchema, apply_schemas
from vtflow import kube
from vtflow.errors import ConfigError

STEPS = ("node-prep", "etcd-operator", "vitess-operator", "cluster", "schema")


class DeployParameters(BaseModel):
    """What to deploy where. Secrets are named by block, never given here."""

    target_block: str = Field(default="default", description="Vitess target block (kubeconfig, namespace, cluster name).")
    nodes_block: str | None = Field(default="default", description="SSH nodes block for node prep; empty skips node prep.")
    mysql_block: str = Field(default="default", description="MySQL credentials block: the gateway user and password.")
    node_requirements: NodeRequirements = Field(default_factory=NodeRequirements)
    etcd_operator: bool = Field(default=False, description="Install coreos/etcd-operator v0.9.4 (not needed by vitess-operator).")
    operator_manifest: str = Field(default=OPERATOR_URL.format(version=DEFAULT_OPERATOR_VERSION),
                                   description="operator.yaml: a release URL, or a local file for clusters without internet.")
    force: bool = Field(default=False, description="Go on when the operator does not support the cluster's Kubernetes version.")
    cluster: ClusterSpec = Field(default_factory=ClusterSpec, description="The VitessCluster; defaults are upstream's 101 example.")
    allow_memory_overcommit: bool = Field(default=False, description="Accept memory limits beyond the nodes' free memory.")
    ready_timeout_s: float = Field(default=900, gt=0, description="How long to wait for the cluster to be ready.")
    schemas: list[KeyspaceSchema] = Field(default_factory=list, description="SQL schema and VSchema per keyspace.")
    until: Literal["node-prep", "etcd-operator", "vitess-operator", "cluster", "schema"] = Field(
        default="schema", description="Stop after this step.")
    dry_run: bool = Field(default=False, description="Validate and report what would change; change nothing.")


async def _load(block_cls, name: str, what: str):
    try:
        return await block_cls.aload(name)
    except ValueError as e:
        raise ConfigError(f"{what} block {name!r}", "does not exist on the Prefect server.",
                          f"create it with `vtflow block create {what.split()[0].lower()} --name {name} ...`.") from e


def summary_markdown(reports: list[StepReport], dry_run: bool) -> str:
    lines = [f"# Deploy {'plan (dry run)' if dry_run else 'report'}", ""]
    for r in reports:
        if r.skipped:
            lines.append(f"- **{r.step}**: skipped. {r.skipped}")
            continue
        changed = [o for o in r.objects if o["action"] != "unchanged"]
        verb = "would change" if dry_run else "changed"
        lines.append(f"- **{r.step}**: {len(changed)} of {len(r.objects)} objects {verb}"
                     + ("" if changed else " (nothing to do)"))
        lines += [f"  - {o['object']}: {o['action']}" for o in changed]
        lines += [f"  - warning: {w}" for w in r.warnings]
    return "\n".join(lines)


@flow(name="deploy", log_prints=False)
async def deploy(params: DeployParameters = DeployParameters()) -> list[StepReport]:
    """Deploy Vitess: node prep, etcd-operator, vitess-operator, cluster init, schema apply."""
    log = get_run_logger()
    stop = STEPS.index(params.until)
    target = await _load(VitessTarget, params.target_block, "target")
    credentials = await _load(MySQLCredentials, params.mysql_block, "mysql credentials")
    reports: list[StepReport] = []

    # 1. nodes first: a node short of memory is cheaper to find before anything is applied
    if params.nodes_block:
        await node_prep(nodes_block=params.nodes_block, requirements=params.node_requirements)
        reports.append(StepReport(step="node-prep", objects=[]))
    else:
        reports.append(StepReport(step="node-prep", skipped="no nodes block given"))
    if stop >= 1:
        k = kube.Kube(target.api_client(), dry_run=params.dry_run)
        namespace, mirror = target.namespace, target.registry_mirror
        # 2. before the vitess-operator: nothing depends on it, and it is off by default
        reports.append(install_etcd_operator(k, params.etcd_operator, namespace, mirror))
    if stop >= 2:
        # 3. the operator (and its CRDs) before any VitessCluster can be accepted
        reports.append(install_vitess_operator(k, params.operator_manifest, namespace, mirror, params.force))
    if stop >= 3:
        # 4. the cluster, refused by the preflight when the nodes are too small
        docs = load_manifest(params.operator_manifest)
        reports.append(init_cluster(k, params.cluster, namespace, target.cluster_name, target.node_address,
                                    credentials, docs, params.allow_memory_overcommit, params.ready_timeout_s))
    if stop >= 4:
        # 5. schema once the tablets serve (the cluster step waited for that)
        if params.schemas:
            reports.append(apply_schemas(k, namespace, target.cluster_name, params.schemas))
        else:
            reports.append(StepReport(step="schema-apply", skipped="no schemas given"))
    text = summary_markdown(reports, params.dry_run)
    await acreate_markdown_artifact(markdown=text, key=f"deploy-{target.cluster_name}",
                                    description="What the deploy changed, step by step")
    changed = any(r.changed for r in reports)
    log.info("%s", "nothing changed: the cluster already matched" if not changed and not params.dry_run else text)
    return reports
