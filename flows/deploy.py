"""The deploy flow: node prep, etcd-operator, vitess-operator, cluster init, schema apply,
data load, verification.

Every step is safe to repeat: a second run reports every object unchanged and every data file
already loaded. ``until`` stops after a step; ``dry_run`` sends every write as a server dry-run
and changes nothing (the data step then only reads its files, and verification is skipped).
The report artifact ``deploy-<cluster>`` is written whether the run succeeds or fails, so a
failed run says in the UI which step failed and what the steps before it did.

Data flows down once: every input (operator manifest, schemas, VSchemas, data files, verify
script) is read into one plan (``tasks/plan.py``) before step 1, and every step takes that plan's
part and one target context (``tasks/context.py``) whole. The step runner records which step is
running, so a failure is named by the step's own name. This module holds no step logic.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Literal, get_args

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_markdown_artifact
from pydantic import BaseModel, Field

from blocks.mysql import MySQLCredentials
from blocks.target import VitessTarget
from flows.common import load_block
from flows.node_prep import node_prep
from tasks.cluster import ClusterSpec, init_cluster
from tasks.context import TargetContext
from tasks.data import DataFile, load_data
from tasks.node_prep import NodeRequirements
from tasks import versions
from tasks.operators import install_etcd_operator, install_vitess_operator, load_manifest
from tasks.plan import DeployPlan, build_plan
from tasks.report import StepReport
from tasks.schema import KeyspaceSchema, apply_schemas
from tasks.verify import Verification, expected_tablets_of, verify_cluster, vtadmin_ports
from vtflow import kube

# The one list of step names: ``until`` takes them, each step's StepReport carries its name,
# and a failed run's report names the step that was running.
Step = Literal["node-prep", "etcd-operator", "vitess-operator", "cluster", "schema", "data", "verify"]
STEPS: tuple[Step, ...] = get_args(Step)


class DeployParameters(BaseModel):
    """What to deploy where. Secrets are named by block, never given here."""

    target_block: str = Field(default="default", description="Vitess target block (kubeconfig, namespace, cluster name).")
    nodes_block: str | None = Field(default="default", description="SSH nodes block for node prep; empty skips node prep.")
    mysql_block: str = Field(default="default", description="MySQL credentials block: the gateway user and password.")
    node_requirements: NodeRequirements = Field(default_factory=NodeRequirements)
    etcd_operator: bool = Field(default=False, description="Install coreos/etcd-operator v0.9.4 (not needed by vitess-operator).")
    operator_version: str | None = Field(
        default=None, description="vitess-operator release, e.g. v2.17.0; empty: the newest release of vtflow's "
                                  "version table that supports the cluster's Kubernetes version.")
    vitess_version: str | None = Field(
        default=None, description="Vitess release, e.g. v24.0.4; empty: the one the table gives for the operator release.")
    operator_manifest: str | None = Field(
        default=None, description="operator.yaml (a URL, or a local file for clusters without internet); empty: the "
                                  "chosen release's, fetched from GitHub.")
    force: bool = Field(default=False, description="Go on with versions outside the version table (with a warning "
                                                   "in the report); field conflicts: force_conflicts.")
    force_conflicts: bool = Field(
        default=False, description="Take over fields another field manager set (a redeploy's image, a kubectl edit): "
                                   "the deploy's spec wins. Without it such a conflict fails the run and names them.")
    cluster: ClusterSpec = Field(default_factory=ClusterSpec, description="The VitessCluster; defaults are upstream's 101 example.")
    allow_memory_overcommit: bool = Field(default=False, description="Accept memory limits beyond the nodes' free memory.")
    ready_timeout_s: float = Field(default=900, gt=0, description="How long to wait for the cluster to be ready.")
    schemas: list[KeyspaceSchema] = Field(default_factory=list, description="SQL schema and VSchema per keyspace.")
    data: list[DataFile] = Field(default_factory=list, description="Data files (SQL or CSV) loaded through vtgate.")
    verify: Verification = Field(default_factory=Verification, description="What the verify step checks.")
    until: Step = Field(default="verify", description="Stop after this step.")
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
    run = StepRunner(params.until)
    sections: list[str] = []
    try:
        # every input read and checked once, first: a bad one stops the run before anything changes
        k = kube.Kube(target.api_client(), dry_run=params.dry_run, force_conflicts=params.force_conflicts)
        choice, manifest, spec = choose_versions(params, k.server_version())
        sections.append(choice.markdown)
        log.info("%s", choice.reason)
        plan = build_plan(manifest[0], manifest[1], params.schemas, params.data, params.verify)
        await _steps(run, params.model_copy(update={"cluster": spec}), plan, choice, TargetContext.of(target, k),
                     credentials, sections)
    except Exception as e:
        where = f"step {run.current}" if run.current else "input check"
        await _publish(target.cluster_name, summary_markdown(run.reports, params.dry_run, f"{where}: {e}", sections))
        raise
    text = summary_markdown(run.reports, params.dry_run, None, sections)
    await _publish(target.cluster_name, text)
    changed = any(r.changed for r in run.reports)
    log.info("%s", "nothing changed: the cluster already matched" if not changed and not params.dry_run else text)
    return run.reports


def choose_versions(params: DeployParameters, kubernetes: str):
    """The release and images for this cluster (the version table), its operator manifest as
    (source, documents), and the cluster spec with the chosen images; read once, before step 1."""
    given = load_manifest(params.operator_manifest) if params.operator_manifest else None
    operator, pinned_by = versions.operator_for(given, params.operator_manifest, params.operator_version)
    choice = versions.choose(kubernetes, operator, params.vitess_version, params.force, pinned_by)
    spec, image_warnings = versions.with_images(params.cluster, choice, params.force)
    source = params.operator_manifest or versions.MANIFEST_URL.format(version=choice.release.operator)
    docs = versions.pin_operator_image(given if given is not None else load_manifest(source), choice.release)
    choice = dataclasses.replace(choice, warnings=choice.warnings + tuple(image_warnings))
    return choice, (source, docs), spec


async def _publish(cluster: str, text: str) -> None:
    await acreate_markdown_artifact(markdown=text, key=f"deploy-{cluster}",
                                    description="What the deploy changed, step by step, and what verification found")


class StepRunner:
    """Runs the steps in order up to ``until``, keeps their reports, and knows which step is
    running: when one raises, ``current`` is its name."""

    def __init__(self, until: Step):
        self.last = STEPS.index(until)
        self.reports: list[StepReport] = []
        self.current: Step | None = None

    def wants(self, step: Step) -> bool:
        return STEPS.index(step) <= self.last

    async def __call__(self, step: Step, call) -> None:
        """Run ``call`` (returning the step's report, or an awaitable of it) as ``step``."""
        if not self.wants(step):
            return
        self.current = step
        report = call()
        if inspect.isawaitable(report):  # node prep is a subflow; the other steps are sync tasks
            report = await report
        if report.step != step:
            raise AssertionError(f"step {step} reported as {report.step}")
        self.reports.append(report)
        self.current = None


def _skipped(step: Step, why: str):
    return lambda: StepReport(step=step, skipped=why)


async def _steps(run: StepRunner, params: DeployParameters, plan: DeployPlan, choice: versions.Choice,
                 ctx: TargetContext, credentials: MySQLCredentials, sections: list[str]) -> None:
    # 1. nodes first: a node short of memory is cheaper to find before anything is applied
    await run("node-prep", (lambda: _node_prep(params)) if params.nodes_block else _skipped("node-prep", "no nodes block given"))
    # 2. before the vitess-operator: nothing depends on it, and it is off by default
    await run("etcd-operator", lambda: install_etcd_operator(ctx, params.etcd_operator))
    # 3. the operator (and its CRDs) before any VitessCluster can be accepted
    await run("vitess-operator", lambda: install_vitess_operator(ctx, plan.operator_docs, plan.operator_source,
                                                                 choice))
    # 4. the cluster, refused by the preflight when the nodes are too small
    await run("cluster", lambda: init_cluster(ctx, params.cluster, credentials, plan.operator_docs,
                                              params.allow_memory_overcommit, params.ready_timeout_s))
    # 5. schema once the tablets serve (the cluster step waited for that)
    await run("schema", (lambda: apply_schemas(ctx, plan.schemas)) if plan.schemas else
              _skipped("schema", "no schemas given"))
    # 6. data into the tables the schema step made, through vtgate
    await run("data", (lambda: load_data(ctx, credentials, plan.data)) if plan.data.files else
              _skipped("data", "no data files given"))
    # 7. last: it reads what every step before it made
    if params.dry_run:
        await run("verify", _skipped("verify", "a dry run deploys nothing to verify"))
    elif not params.verify.enabled:
        await run("verify", _skipped("verify", "turned off in the parameters"))
    else:
        await run("verify", lambda: _verify(ctx, credentials, params, plan, sections, run.reports))


async def _node_prep(params: DeployParameters) -> StepReport:
    await node_prep(nodes_block=params.nodes_block, requirements=params.node_requirements)
    return StepReport(step="node-prep", objects=[])


def _verify(ctx: TargetContext, credentials: MySQLCredentials, params: DeployParameters, plan: DeployPlan,
            sections: list[str], done: list[StepReport]) -> StepReport:
    vc = ctx.k.get("planetscale.com/v2", "VitessCluster", ctx.cluster, ctx.namespace) or {}
    # tables the data step found empty: more rows there than the files hold is a failure, not a warning
    exact = next((getattr(r, "exact_tables", []) for r in done if r.step == "data"), [])
    result = verify_cluster(ctx, credentials, expected_tablets_of(vc), vtadmin_ports(params.cluster), plan.data.rows,
                            params.verify, plan.verify_inputs, exact)
    sections.append(result.markdown)
    return StepReport(step="verify", findings=result.findings)
