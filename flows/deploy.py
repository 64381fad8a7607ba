"""The deploy flow: node prep, etcd-operator, vitess-operator, cluster init, schema apply,
data load, verification.

Every step is safe to repeat: a second run reports every object unchanged and every data file
already loaded. ``until`` stops after a step; ``dry_run`` sends every write as a server dry-run
and changes nothing (the data step then only reads its files, and verification is skipped).
The report artifact ``deploy-<cluster>`` is written whether the run succeeds or fails, so a
failed run says in the UI which step failed and what the steps before it did.
"""

from __future__ import annotations

from typing import Literal

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_markdown_artifact
from pydantic import BaseModel, Field

from blocks.mysql import MySQLCredentials
from blocks.target import VitessTarget
from flows.common import load_block
from flows.node_prep import node_prep
from tasks.cluster import ClusterSpec, init_cluster
from tasks.data import DataFile, load_data
from tasks.data import read_files as read_data_files
from tasks.node_prep import NodeRequirements
from tasks.operators import (DEFAULT_OPERATOR_VERSION, OPERATOR_URL, install_etcd_operator, install_vitess_operator,
                             load_manifest)
from tasks.report import Finding, StepReport
from tasks.schema import KeyspaceSchema, apply_schemas
from tasks.schema import check_inputs as check_schema_inputs
from tasks.verify import Verification, expected_tablets_of, verify_cluster, vtadmin_ports
from tasks.verify import read_inputs as read_verify_inputs
from vtflow import kube

STEPS = ("node-prep", "etcd-operator", "vitess-operator", "cluster", "schema", "data", "verify")


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
    data: list[DataFile] = Field(default_factory=list, description="Data files (SQL or CSV) loaded through vtgate.")
    verify: Verification = Field(default_factory=Verification, description="What the verify step checks.")
    until: Literal["node-prep", "etcd-operator", "vitess-operator", "cluster", "schema", "data", "verify"] = Field(
        default="verify", description="Stop after this step.")
    dry_run: bool = Field(default=False, description="Validate and report what would change; change nothing.")


def summary_markdown(reports: list[StepReport], dry_run: bool, failure: str | None = None,
                     sections: list[str] = ()) -> str:
    title = "plan (dry run)" if dry_run else ("report: FAILED" if failure else "report")
    lines = [f"# Deploy {title}", ""]
    if failure:
        lines += [f"**Failed:** {failure}", ""]
    for r in reports:
        if r.skipped:
            lines.append(f"- **{r.step}**: skipped. {r.skipped}")
            continue
        changed = [o for o in r.objects if o["action"] != "unchanged"]
        verb = "would change" if dry_run else "changed"
        if r.objects or not r.findings:
            lines.append(f"- **{r.step}**: {len(changed)} of {len(r.objects)} objects {verb}"
                         + ("" if changed else " (nothing to do)"))
        else:
            lines.append(f"- **{r.step}**:")
        lines += [f"  - {o['object']}: {o['action']}" for o in changed]
        lines += [f"  - warning: {w}" for w in r.warnings]
        lines += [f"  - {f.line}" for f in r.findings]
    for section in sections:
        lines += ["", section]
    return "\n".join(lines)


@flow(name="deploy", log_prints=False)
async def deploy(params: DeployParameters = DeployParameters()) -> list[StepReport]:
    """Deploy Vitess: node prep, etcd-operator, vitess-operator, cluster init, schema apply,
    data load, verification."""
    log = get_run_logger()
    target = await load_block(VitessTarget, params.target_block, "target")
    credentials = await load_block(MySQLCredentials, params.mysql_block, "mysql credentials")
    reports: list[StepReport] = []
    sections: list[str] = []
    inputs_checked = False
    try:
        # every input file read and checked first: a bad one stops the run before anything changes
        check_schema_inputs(params.schemas)
        read_data_files(params.data)
        if params.verify.enabled:
            read_verify_inputs(params.verify)
        inputs_checked = True
        await _steps(params, target, credentials, reports, sections)
    except Exception as e:
        # one report per step that finished: the failed step is the next one
        where = f"step {STEPS[min(len(reports), len(STEPS) - 1)]}" if inputs_checked else "input check"
        await _publish(target.cluster_name, summary_markdown(reports, params.dry_run, f"{where}: {e}", sections))
        raise
    text = summary_markdown(reports, params.dry_run, None, sections)
    await _publish(target.cluster_name, text)
    changed = any(r.changed for r in reports)
    log.info("%s", "nothing changed: the cluster already matched" if not changed and not params.dry_run else text)
    return reports


async def _publish(cluster: str, text: str) -> None:
    await acreate_markdown_artifact(markdown=text, key=f"deploy-{cluster}",
                                    description="What the deploy changed, step by step, and what verification found")


async def _steps(params: DeployParameters, target: VitessTarget, credentials: MySQLCredentials,
                 reports: list[StepReport], sections: list[str]) -> None:
    stop = STEPS.index(params.until)
    # 1. nodes first: a node short of memory is cheaper to find before anything is applied
    if params.nodes_block:
        await node_prep(nodes_block=params.nodes_block, requirements=params.node_requirements)
        reports.append(StepReport(step="node-prep", objects=[]))
    else:
        reports.append(StepReport(step="node-prep", skipped="no nodes block given"))
    if stop < 1:
        return
    k = kube.Kube(target.api_client(), dry_run=params.dry_run)
    namespace, cluster, mirror = target.namespace, target.cluster_name, target.registry_mirror
    # 2. before the vitess-operator: nothing depends on it, and it is off by default
    reports.append(install_etcd_operator(k, params.etcd_operator, namespace, mirror))
    if stop < 2:
        return
    # 3. the operator (and its CRDs) before any VitessCluster can be accepted
    reports.append(install_vitess_operator(k, params.operator_manifest, namespace, mirror, params.force))
    if stop < 3:
        return
    # 4. the cluster, refused by the preflight when the nodes are too small
    docs = load_manifest(params.operator_manifest)
    reports.append(init_cluster(k, params.cluster, namespace, cluster, target.node_address,
                                credentials, docs, params.allow_memory_overcommit, params.ready_timeout_s))
    if stop < 4:
        return
    # 5. schema once the tablets serve (the cluster step waited for that)
    if params.schemas:
        reports.append(apply_schemas(k, namespace, cluster, params.schemas))
    else:
        reports.append(StepReport(step="schema-apply", skipped="no schemas given"))
    if stop < 5:
        return
    # 6. data into the tables the schema step made, through vtgate
    loaded: dict[str, int] = {}
    if params.data:
        report, loaded = load_data(k, namespace, cluster, target.node_address, target.vtgate_address,
                                   credentials, params.data)
        reports.append(report)
    else:
        reports.append(StepReport(step="data-load", skipped="no data files given"))
    if stop < 6:
        return
    # 7. last: it reads what every step before it made
    if params.dry_run:
        reports.append(StepReport(step="verify", skipped="a dry run deploys nothing to verify"))
    elif not params.verify.enabled:
        reports.append(StepReport(step="verify", skipped="turned off in the parameters"))
    else:
        result = verify_cluster(k, namespace, cluster, target.node_address, target.vtgate_address, credentials,
                                expected_tablets_of(k.get("planetscale.com/v2", "VitessCluster", cluster, namespace) or {}),
                                vtadmin_ports(params.cluster), loaded, params.verify)
        reports.append(StepReport(step="verify", findings=[Finding(name=c.name, level=c.level, problem=c.message)
                                                           for c in result.checks]))
        sections.append(result.markdown)
