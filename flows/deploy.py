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
from flows.params import MySQLBlock, NodesBlock, TargetBlock
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
from vtflow.errors import ConfigError
from vtflow.forms import OptionalText

# The one list of step names: ``until`` takes them, each step's StepReport carries its name,
# and a failed run's report names the step that was running.
Step = Literal["node-prep", "etcd-operator", "vitess-operator", "cluster", "schema", "data", "verify"]
STEPS: tuple[Step, ...] = get_args(Step)


class DeployParameters(BaseModel):
    """What to deploy where, in the order a person fills the form. Secrets are named by block,
    never given here. The flow takes these fields as its own top-level parameters (the UI's
    form, ``prefect deployment run --param``) and builds this model from them once."""

    target_block: str = Field(description="Vitess target block (kubeconfig, namespace, cluster name): pick it, "
                                          "or give its name.")
    mysql_block: str = Field(description="MySQL credentials block: the gateway user and password the cluster is "
                                         "given, and the data load and verification use.")
    nodes_block: str = Field(default="", description="SSH nodes block for node prep (step 1); empty skips node prep.")
    schemas: list[KeyspaceSchema] = Field(default_factory=list, description="SQL schema and VSchema per keyspace.")
    data: list[DataFile] = Field(default_factory=list, description="Data files (SQL or CSV, plain or .gz) loaded "
                                                                   "through vtgate.")
    data_parallel: int = Field(default=0, ge=0, le=16, description="Connections per data file (tables load at once); "
                                                                   "0: two per shard of the keyspace, at most four.")
    verify: Verification = Field(default_factory=Verification, description="What the verify step checks.")
    operator_version: OptionalText = Field(
        default=None, description="vitess-operator release, e.g. v2.17.0; empty: the newest release of vtflow's "
                                  "version table that supports the cluster's Kubernetes version.")
    vitess_version: OptionalText = Field(
        default=None, description="Vitess release, e.g. v24.0.4; empty: the one the table gives for the operator release.")
    operator_manifest: OptionalText = Field(
        default=None, description="operator.yaml: a URL, or a file on the flow's machine. Empty: the chosen "
                                  "release's, fetched from GitHub; refused when the target names a registry "
                                  "mirror (no internet assumed there): then give the release's file.")
    force: bool = Field(default=False, description="Go on with versions outside the version table (with a warning "
                                                   "in the report); field conflicts: force_conflicts.")
    cluster: ClusterSpec = Field(default_factory=ClusterSpec, description="The VitessCluster; defaults are upstream's 101 example.")
    node_requirements: NodeRequirements = Field(default_factory=NodeRequirements,
                                                description="What node prep requires of each node.")
    ready_timeout_s: float = Field(default=900, gt=0, description="How long to wait for the cluster to be ready (seconds).")
    allow_memory_overcommit: bool = Field(default=False, description="Accept memory limits beyond the nodes' free memory.")
    etcd_operator: bool = Field(default=False, description="Install coreos/etcd-operator v0.9.4 (not needed by vitess-operator).")
    force_conflicts: bool = Field(
        default=False, description="Take over fields another field manager set (a redeploy's image, a kubectl edit): "
                                   "the deploy's spec wins. Without it such a conflict fails the run and names them.")
    dry_run: bool = Field(default=False, description="Validate and report what would change; change nothing.")
    until: Step = Field(default="verify", description="Stop after this step.")

    def flow_kwargs(self) -> dict:
        """These parameters as the deploy flow takes them (unset text as "")."""
        return {name: "" if (value := getattr(self, name)) is None else value for name in type(self).model_fields}


def _described(fn):
    """The flow's docstring with an Args section from DeployParameters: the form's descriptions."""
    fn.__doc__ = (fn.__doc__ or "") + "\n\nArgs:\n" + "\n".join(
        f"    {name}: {f.description}" for name, f in DeployParameters.model_fields.items() if f.description)
    return fn


def summary_markdown(reports: list[StepReport], dry_run: bool, failure: str | None = None,
                     sections: list[str] = ()) -> str:
    """One table of the steps (short columns, so the UI does not cut it off), then what changed and
    what the steps found as lists below it: long text never goes into a cell."""
    title = "plan (dry run)" if dry_run else ("report: FAILED" if failure else "report")
    lines = [f"# Deploy {title}", ""]
    if failure:
        lines += [f"**Failed:** {failure}", ""]
    lines += ["| step | created | changed | unchanged | skipped | time |", "|---|--:|--:|--:|---|--:|"]
    below: list[str] = []
    for r in reports:
        count = {a: sum(1 for o in r.objects if o["action"] == a) for a in ("created", "changed", "unchanged")}
        cells = ["", "", ""] if r.skipped else [str(count["created"]), str(count["changed"]), str(count["unchanged"])]
        took = f"{r.seconds:.1f} s" if r.seconds is not None else ""
        lines.append(f"| {r.step} | " + " | ".join(cells) + f" | {'yes' if r.skipped else ''} | {took} |")
        verb = " (would be)" if dry_run else ""
        items = [f"- skipped: {r.skipped}"] if r.skipped else []
        items += [f"- {o['object']}: {o['action']}{verb}" for o in r.objects if o["action"] != "unchanged"]
        items += [f"- warning: {w}" for w in r.warnings]
        items += [f"- {f.line}" for f in r.findings]
        if items:
            below += ["", f"**{r.step}**", "", *items]
    if below:
        lines += ["", "## What changed and what the steps found", *below]
    for section in sections:
        lines += ["", section]
    return "\n".join(lines)


@flow(name="deploy", log_prints=False)
@_described
async def deploy(
    target_block: TargetBlock,
    mysql_block: MySQLBlock,
    nodes_block: NodesBlock = "",
    schemas: list[KeyspaceSchema] = [],  # noqa: B006 - validated into new lists; never changed
    data: list[DataFile] = [],  # noqa: B006
    data_parallel: int = 0,
    verify: Verification = Verification(),
    operator_version: str = "",
    vitess_version: str = "",
    operator_manifest: str = "",
    force: bool = False,
    cluster: ClusterSpec = ClusterSpec(),
    node_requirements: NodeRequirements = NodeRequirements(),
    ready_timeout_s: float = 900,
    allow_memory_overcommit: bool = False,
    etcd_operator: bool = False,
    force_conflicts: bool = False,
    dry_run: bool = False,
    until: Step = "verify",
) -> list[StepReport]:
    """Deploy Vitess: node prep, etcd-operator, vitess-operator, cluster init, schema apply,
    data load, verification."""
    params = DeployParameters(**{name: value for name, value in locals().items() if name in DeployParameters.model_fields})
    log = get_run_logger()
    target = await load_block(VitessTarget, params.target_block, "target")
    credentials = await load_block(MySQLCredentials, params.mysql_block, "mysql credentials")
    run = StepRunner(params.until)
    sections: list[str] = []
    try:
        # every input read and checked once, first: a bad one stops the run before anything changes
        k = kube.Kube(target.api_client(), dry_run=params.dry_run, force_conflicts=params.force_conflicts)
        choice, manifest, spec = choose_versions(params, k.server_version(), target.registry_mirror)
        sections.append(choice.markdown)
        log.info("%s", choice.reason)
        plan = build_plan(manifest[0], manifest[1], params.schemas, params.data, params.verify,
                          params.data_parallel or None)
        await _steps(run, params.model_copy(update={"cluster": spec}), plan, choice, TargetContext.of(target, k),
                     credentials, sections)
    except Exception as e:
        where = f"step {run.current}" if run.current else "input check"
        await _publish(target.cluster_name, summary_markdown(run.reports, params.dry_run, f"{where}: {e}", sections))
        raise
    text = summary_markdown(run.reports, params.dry_run, None, sections)
    await _publish(target.cluster_name, text)
    if not params.dry_run and run.wants("cluster") and params.cluster.vtadmin:
        await _link_vtadmin(target)
    changed = any(r.changed for r in run.reports)
    log.info("%s", "nothing changed: the cluster already matched" if not changed and not params.dry_run else text)
    return run.reports


def choose_versions(params: DeployParameters, kubernetes: str, registry_mirror: str | None = None):
    """The release and images for this cluster (the version table), its operator manifest as
    (source, documents), and the cluster spec with the chosen images; read once, before step 1.
    Without a given manifest the release's is fetched from GitHub, unless the target names a
    registry mirror: a cluster behind a mirror is taken to have no internet, so the run is
    refused here, before step 1, naming the file to give."""
    given = load_manifest(params.operator_manifest) if params.operator_manifest else None
    operator, pinned_by = versions.operator_for(given, params.operator_manifest, params.operator_version)
    choice = versions.choose(kubernetes, operator, params.vitess_version, params.force, pinned_by)
    spec, image_warnings = versions.with_images(params.cluster, choice, params.force)
    source = params.operator_manifest or versions.MANIFEST_URL.format(version=choice.release.operator)
    if given is None and registry_mirror:
        raise ConfigError("parameter operator_manifest", f"is empty, and the target names the registry mirror "
                          f"{registry_mirror}: vtflow does not fetch the operator manifest from GitHub for a cluster "
                          "behind a mirror.", f"give operator_manifest: vitess-operator {choice.release.operator}'s "
                          f"operator-latest.yaml as a file on this machine or a URL you can reach ({source} is "
                          "upstream's); its images move to the mirror.")
    docs = versions.pin_operator_image(given if given is not None else load_manifest(source), choice.release)
    choice = dataclasses.replace(choice, warnings=choice.warnings + tuple(image_warnings))
    return choice, (source, docs), spec


async def _publish(cluster: str, text: str) -> None:
    await acreate_markdown_artifact(markdown=text, key=f"deploy-{cluster}",
                                    description="What the deploy changed, step by step, and what verification found")


async def _link_vtadmin(target: VitessTarget) -> None:
    """A link artifact to the cluster's vtadmin, beside the report (``deploy-<cluster>-vtadmin``)."""
    from prefect.artifacts import acreate_link_artifact

    from vtflow.connect import vtadmin_url
    from vtflow.errors import VtflowError

    try:
        url = vtadmin_url(target)
    except VtflowError as e:  # no node_address, or no vtadmin NodePort: the report's verify section says why
        get_run_logger().info("no vtadmin link: %s", e)
        return
    await acreate_link_artifact(link=url, link_text=f"vtadmin of {target.namespace}/{target.cluster_name}",
                                key=f"deploy-{target.cluster_name}-vtadmin",
                                description="vtadmin's web UI (its NodePort on the target's node_address)")


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
        import time

        self.current = step
        started = time.monotonic()
        report = call()
        if inspect.isawaitable(report):  # node prep is a subflow; the other steps are sync tasks
            report = await report
        if report.step != step:
            raise AssertionError(f"step {step} reported as {report.step}")
        if report.seconds is None and not report.skipped:
            report.seconds = round(time.monotonic() - started, 2)
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
