"""The resharding flows' steps: a VReplication workflow (MoveTables; Reshard builds on the same
stages) driven through vtctldclient, each stage read back from the workflow's real state, so that
a run killed anywhere is finished by the next one without doing anything twice.

Stages, in order (``STAGES``):
- ``tablets``: the target keyspace's tablets in the VitessCluster (as upstream's
  201_customer_tablets.yaml adds them), after a preflight that refuses, with the numbers, tablets
  the nodes cannot hold; then waited for: the operator reports them ready, every target shard has
  a PRIMARY in GetTablets, and no tablet pod carries ``rollout.planetscale.com/scheduled``
  (upstream saw SwitchTraffic time out on tablets still rolling; operator PR #823);
- ``create``: ``MoveTables create`` unless the workflow exists;
- ``copy``: until every table is copied (``table_copy_state`` empty, or every ``phase``
  COMPLETE on v24), every stream Running and the lag within the bound; a stream in Error stops
  the run with its message;
- ``vdiff``: a VDiff that must find no difference, before any switch (VDiff is refused once
  writes are switched, so a re-run past that point skips it);
- ``switch-reads`` then ``switch-writes``: each a ``--dry-run`` first (its lines go to the log
  and the report), then the switch with ``--max-replication-lag-allowed``;
- ``verify``: through vtgate, every moved table answers in the target keyspace and through the
  source keyspace's name (the routing rules) with the target primary's row count;
- ``complete``: when asked (else the workflow is left open for a ``ReverseTraffic``).
A failure after a switch reverses what was switched and reports both traffic states.

Where the state is read: ``Workflow list`` of both keyspaces (another open workflow there is
refused, by name), ``status``/``show`` of the workflow (streams, copy, lag, traffic state), and,
once the workflow is gone, the tables of the source and target primaries (moved and completed
already, or never started). Facts: ../shared/VITESS-WORKFLOWS.md sections 0-1 and FACTS.md
"Resharding". Pure builders first, then the I/O through ``vtflow.kube`` and ``vtflow.vtctld``;
nothing here decides the run's outcome (flows/move_tables.py does).
"""

from __future__ import annotations

import copy
import re
import time
from dataclasses import dataclass, field
from typing import Callable

from pydantic import BaseModel, Field

from tasks.cluster import not_ready
from tasks.report import Finding
from tasks.restore import _allowed_nodes, _spread_nodes, fetch_rows, room_with_every_pod, tablet_demand
from tasks.teardown import keyspaces_change
from tasks.verify import expected_tablets_of
from vtflow import kube, names
from vtflow.errors import ConfigError, PermanentError, TransientError
from vtflow.quantity import cpu_millis, memory_bytes
from vtflow.vtctld import Vtctld

STAGES = ("tablets", "create", "copy", "vdiff", "switch-reads", "switch-writes", "verify", "complete")
ROLLOUT_SCHEDULED = names.ROLLOUT_SCHEDULED
VC = ("planetscale.com/v2", "VitessCluster")
POLL_S = 1.0
LOG_EVERY_S = 5.0
NAME = re.compile(r"^[A-Za-z0-9_]+$")
INSERT_INTO = re.compile(r"^\s*insert\s+(?:ignore\s+)?into\s+`?([A-Za-z0-9_$]+)`?", re.IGNORECASE)   # keyspace, table and workflow names vtflow passes on a command line


class MoveTablesRequest(BaseModel):
    """What a move-tables run was asked to do (the flow's parameters, less the blocks)."""

    source_keyspace: str = Field(default="commerce", description="The keyspace the tables are in now.")
    target_keyspace: str = Field(default="customer", description="The keyspace they move to (added with the source's "
                                 "tablet template when the VitessCluster lacks it).")
    tables: list[str] = Field(default_factory=lambda: ["customer", "corder"], description="The tables to move.")
    workflow: str = Field(default="", description="The workflow's name; empty: <source>2<target>.")
    complete: bool = Field(default=False, description="Complete the workflow after the verification (drops the source "
                           "tables); off: leave it open so ReverseTraffic can still undo the move.")
    max_lag_s: int = Field(default=30, ge=0, description="Replication lag allowed for the copy to count as caught up and "
                           "for each switch (--max-replication-lag-allowed).")

    @property
    def name(self) -> str:
        return self.workflow or f"{self.source_keyspace}2{self.target_keyspace}"

    def refusals(self, subject: str) -> None:
        """Bad input, before anything is read or changed: one line naming the parameter and the fix."""
        for what, value in (("source_keyspace", self.source_keyspace), ("target_keyspace", self.target_keyspace),
                            ("workflow", self.name), *(("tables", t) for t in self.tables)):
            if not NAME.match(value):
                raise ConfigError(f"move-tables parameter {what}", f"{value!r} is not a plain name (letters, digits, _).",
                                  "give the name as vtctldclient takes it, without quotes or spaces.")
        if not self.tables:
            raise ConfigError("move-tables parameter tables", "is empty.", "name the tables to move, e.g. customer, corder.")
        if self.source_keyspace == self.target_keyspace:
            raise ConfigError("move-tables parameters", f"source and target keyspace are both {self.source_keyspace!r}.",
                              "give a different target keyspace (Reshard splits one keyspace into shards).")


# ---------------------------------------------------------------- pure: what vtctldclient says


@dataclass(frozen=True)
class Traffic:
    """A workflow's traffic state string (``State.String()``, workflow/state.go), read back."""

    text: str
    replica: bool
    rdonly: bool
    writes: bool

    @property
    def reads(self) -> bool:
        return self.replica and self.rdonly

    @property
    def any(self) -> bool:
        return self.replica or self.rdonly or self.writes


def traffic_of(text: str) -> Traffic:
    if "All Reads Switched" in text:
        replica = rdonly = True
    elif "Reads Not Switched" in text:
        replica = rdonly = False
    else:   # "Reads partially switched. All Replica Reads Switched. Rdonly not switched" (or "... in cells: c1")
        replica = "All Replica Reads Switched" in text or "Replica switched in cells" in text
        rdonly = "All Rdonly Reads Switched" in text or "Rdonly switched in cells" in text
    return Traffic(text, replica, rdonly, "Writes Switched" in text)


@dataclass
class CopyState:
    """One status read: the streams, each table's copy, the traffic state."""

    streams: list[dict]                    # {"shard", "id", "status", "info"}
    tables: dict[str, dict]                # table -> copy state (empty once every table is copied)
    traffic: Traffic

    @property
    def copied(self) -> bool:
        """Every table copied: nothing left in the copy state (it empties once every table is
        copied), or every table's phase COMPLETE (v24 lists them all while any still copies;
        an older server has no phase and lists only the tables still copying)."""
        return all(t.get("phase") == "COMPLETE" for t in self.tables.values())

    @property
    def percent(self) -> float:
        """Rows copied of the rows to copy, over every table (100 once copying is over)."""
        total = sum(int(t.get("rows_total", 0)) for t in self.tables.values())
        done = sum(min(int(t.get("rows_copied", 0)), int(t.get("rows_total", 0))) for t in self.tables.values())
        return 100.0 if not self.tables or not total else round(100.0 * done / total, 1)

    def line(self) -> str:
        streams = ", ".join(f"{s['shard']} {s['status']}" for s in self.streams) or "none"
        tables = "; ".join(f"{t} {c.get('rows_copied', '?')}/{c.get('rows_total', '?')} rows"
                           + (f" ({c['phase']})" if c.get("phase") else "") for t, c in sorted(self.tables.items()))
        return f"streams {streams}" + (f"; copying {tables}" if tables else "; every table copied")


def copy_state_of(status: dict) -> CopyState:
    streams = [{"shard": key, "id": s.get("id"), "status": s.get("status", ""), "info": s.get("info", "")}
               for key, ss in sorted((status.get("shard_streams") or {}).items()) for s in ss.get("streams") or []]
    return CopyState(streams, dict(status.get("table_copy_state") or {}), traffic_of(status.get("traffic_state", "")))


def lag_of(show: dict | None) -> int | None:
    """``max_v_replication_lag`` of ``Workflow show`` (an int64, printed as a string)."""
    if not show or show.get("max_v_replication_lag") in (None, ""):
        return None
    return int(show["max_v_replication_lag"])


def stream_errors(show: dict | None, state: CopyState) -> list[str]:
    """Each stream in Error, with its message (``show`` has it; status's info does too)."""
    out = []
    for key, shard in sorted(((show or {}).get("shard_streams") or {}).items()):
        for s in shard.get("streams") or []:
            if s.get("state") == "Error":
                out.append(f"stream {s.get('id')} on {key}: {s.get('message') or 'no message'}")
    if not out:
        out = [f"stream {s['id']} on {s['shard']}: {s['info'] or 'no message'}" for s in state.streams
               if s["status"] == "Error"]
    return out


def copy_verdict(state: CopyState, lag: int | None, max_lag_s: int) -> str | None:
    """None when the copy is over and caught up; else what it still waits for."""
    if not state.streams:
        return "no stream yet"
    if not state.copied:
        return f"copy at {state.percent}%"
    waiting = [f"{s['shard']} {s['status']}" for s in state.streams if s["status"] != "Running"]
    if waiting:
        return "streams not Running: " + ", ".join(waiting)
    if lag is not None and lag > max_lag_s:
        return f"replication lag {lag} s above {max_lag_s} s"
    return None


@dataclass
class VDiffResult:
    uuid: str
    state: str
    rows: int
    mismatch: bool
    tables: dict[str, dict] = field(default_factory=dict)

    def differences(self) -> list[str]:
        """One line per table that differs, with its counts."""
        out = []
        for t, c in sorted(self.tables.items()):
            parts = [f"{c.get(k, 0)} {what}" for k, what in (("MismatchedRows", "rows differ"),
                                                              ("ExtraRowsSource", "only in the source"),
                                                              ("ExtraRowsTarget", "only in the target")) if c.get(k)]
            if parts:
                out.append(f"{t}: " + ", ".join(parts) + f" (of {c.get('RowsCompared', '?')} compared)")
        return out or (["a difference vtctld did not break down by table"] if self.mismatch else [])


def vdiff_of(summary: dict) -> VDiffResult | None:
    """``VDiff show <uuid> --format json`` (``{}`` while there is none)."""
    if not summary or "State" not in summary:
        return None
    return VDiffResult(summary.get("UUID", ""), summary["State"], int(summary.get("RowsCompared") or 0),
                       bool(summary.get("HasMismatch")), dict(summary.get("TableSummary") or {}))


def dry_run_lines(out: str) -> list[str]:
    """The steps a ``--dry-run`` printed (text: a summary, a blank line, one step per line)."""
    lines = [line.strip() for line in out.splitlines() if line.strip()]
    return lines[1:] if lines and "dry run results" in lines[0] else lines


# ---------------------------------------------------------------- pure: the cluster change


def keyspace_entry(vc: dict, name: str) -> dict | None:
    return next((k for k in (vc.get("spec") or {}).get("keyspaces") or [] if k.get("name") == name), None)


def _template_of(entry: dict) -> dict:
    """The shard template of an unsharded keyspace's entry (its first partitioning's)."""
    for part in entry.get("partitionings") or []:
        if "equal" in part:
            return copy.deepcopy(part["equal"].get("shardTemplate") or {})
        for s in (part.get("custom") or {}).get("shards") or []:
            return copy.deepcopy({k: v for k, v in s.items() if k not in ("keyRange", "name")})
    return {}


def target_entry(vc: dict, source: str, target: str) -> dict:
    """The target keyspace as upstream's 201 adds it: the source keyspace's entry (durability,
    vtorc, its shard's tablet template: pools, resources, claims, scheduling), renamed, unsharded."""
    src = keyspace_entry(vc, source)
    if src is None:
        raise ConfigError(f"keyspace {source}", f"is not in VitessCluster {vc['metadata'].get('namespace')}/"
                          f"{vc['metadata']['name']} (its keyspaces: {', '.join(k['name'] for k in vc['spec'].get('keyspaces') or [])}).",
                          "give one of those as source_keyspace.")
    out = {k: copy.deepcopy(v) for k, v in src.items() if k not in ("name", "partitionings", "annotations")}
    out["name"] = target
    out["partitionings"] = [{"equal": {"parts": 1, "shardTemplate": _template_of(src)}}]
    return out


def shard_templates(entry: dict) -> list[dict]:
    """One template per shard the keyspace entry makes (an equal partitioning's, repeated)."""
    out = []
    for part in entry.get("partitionings") or []:
        if "equal" in part:
            out += [part["equal"].get("shardTemplate") or {}] * int(part["equal"].get("parts", 1))
        else:
            out += (part.get("custom") or {}).get("shards") or []
    return out


def new_tablets(entry: dict) -> list[dict]:
    """One tablet pool entry per tablet pod ``entry`` makes (replicas expanded), every shard."""
    return [pool for s in shard_templates(entry) for pool in s.get("tabletPools") or []
            for _ in range(int(pool.get("replicas", 0)))]


def has_backups(vc: dict) -> bool:
    """Whether the VitessCluster has a backup location (then each new shard's first backup runs
    in a vtbackup-init pod beside its tablets)."""
    return bool(((vc.get("spec") or {}).get("backup") or {}).get("locations"))


def _requests(part: dict) -> tuple[int, int]:
    req = ((part.get("resources") or {}).get("requests")) or {}
    return cpu_millis(req.get("cpu", "0")), memory_bytes(req.get("memory", "0"))


def new_pods(entry: dict, backup: bool) -> list[tuple[str, int, int, dict]]:
    """(what, CPU millis, memory bytes, the pool whose scheduling rules apply) of every pod the
    keyspace entry makes: per shard its vtorc, its tablets and, with a backup location, the
    vtbackup-init pod that takes the new shard's first backup (the operator runs it beside the
    tablets: mysqld's requests; tasks/sizing.py counts it the same way)."""
    out = []
    vtorc = entry.get("vitessOrchestrator")
    for s in shard_templates(entry):
        pools = s.get("tabletPools") or []
        if vtorc:
            out.append(("vtorc", *_requests(vtorc), {}))
        for pool in pools:
            out += [("tablet", *tablet_demand(pool), pool)] * int(pool.get("replicas", 0))
        if backup and pools:
            out.append(("vtbackup-init", *_requests(pools[0].get("mysqld") or {}), {}))
    return out


def placement(nodes: list[dict], pods: list[dict], entry: dict, backup: bool = False) -> tuple[bool, list[str]]:
    """Whether the nodes hold every pod ``entry`` adds, on top of every pod running now (each on
    the roomiest node its pool's rules allow, one after another), and the lines that say so with
    the numbers."""
    rooms = room_with_every_pod(nodes, pods)
    adds = new_pods(entry, backup)
    count = {k: sum(1 for p in adds if p[0] == k) for k in ("tablet", "vtorc", "vtbackup-init")}
    lines = [f"keyspace {entry['name']} adds {count['tablet']} tablet pod(s), {count['vtorc']} vtorc pod(s)"
             + (f" and {count['vtbackup-init']} vtbackup-init pod(s) for the first backup" if count["vtbackup-init"] else "")
             + f": {sum(p[1] for p in adds)}m CPU and {sum(p[2] for p in adds) / (1 << 30):.2f} GiB requested in all"]
    lines += [f"node {r.node}: free {r.free_cpu_millis}m CPU, {r.free_memory_bytes / (1 << 30):.2f} GiB" for r in rooms]
    placed = list(pods)
    seen = dict.fromkeys(count, 0)
    for what, cpu, mem, pool in adds:
        seen[what] += 1
        allowed = _spread_nodes(pool, _allowed_nodes(pool, [r.node for r in rooms]), placed)
        fits = [r for r in rooms if r.node in allowed and r.free_cpu_millis >= cpu and r.free_memory_bytes >= mem]
        if not fits:
            lines.append(f"{what} {seen[what]} of {count[what]} ({cpu}m CPU, {mem / (1 << 30):.2f} GiB) fits on no node")
            return False, lines
        best = max(fits, key=lambda r: (r.free_memory_bytes, r.free_cpu_millis))
        best.used_cpu_millis += cpu
        best.used_memory_bytes += mem
        labels: dict = {}
        for c in pool.get("topologySpreadConstraints") or []:
            labels.update(((c.get("labelSelector") or {}).get("matchLabels")) or {})
        placed.append({"metadata": {"labels": labels}, "spec": {"nodeName": best.node}})
    return True, lines


def held_rollout(vc: dict | None, held: list[dict]) -> str | None:
    """With ``updateStrategy: External`` (the operator's default) a changed VitessKeyspace or
    VitessShard (``held``: those of the cluster) carries the scheduled annotation and nothing
    rolls until an external tool releases it (vitess-operator reconcile_shards.go,
    vitesscluster_types.go): waiting would never end. What is held, or None."""
    strategy = (((vc or {}).get("spec") or {}).get("updateStrategy") or {}).get("type", "External")
    names_ = sorted(f"{o['kind']} {o['metadata']['name']}" for o in held
                    if ROLLOUT_SCHEDULED in (o["metadata"].get("annotations") or {}))
    return f"{', '.join(names_)} (updateStrategy {strategy})" if names_ and strategy != "Immediate" else None


def tablets_not_ready(vc: dict | None, pods: list[dict], tablets: list[dict], keyspace: str) -> str | None:
    """None when the keyspace's tablets serve and none waits for a rollout; else what is missing.
    ``pods``: the cluster's vttablet pods (etcd's pods are never released by the operator, so a
    wait on every pod could hang)."""
    reason = not_ready(vc)
    if reason:
        return reason
    rolling = sorted(p["metadata"]["name"] for p in pods
                     if ROLLOUT_SCHEDULED in (p["metadata"].get("annotations") or {}))
    if rolling:
        return f"tablet pod(s) {', '.join(rolling)} carry {ROLLOUT_SCHEDULED} (a rollout is pending)"
    want = sorted(s for (ks, s) in expected_tablets_of(vc or {}) if ks == keyspace)
    have = {t.get("shard") for t in tablets if t.get("type") == "PRIMARY"}
    missing = [s for s in want if s not in have]
    if not want:
        return f"keyspace {keyspace} is not in the VitessCluster yet"
    return f"no PRIMARY tablet in {', '.join(f'{keyspace}/{s}' for s in missing)} yet" if missing else None


# ---------------------------------------------------------------- the report


@dataclass
class StageRecord:
    stage: str
    result: str          # done | skipped | would | failed
    detail: str = ""
    seconds: float | None = None


@dataclass
class WorkflowReport:
    """What a run did, stage by stage, and the workflow as it last read it (the artifact)."""

    kind: str
    namespace: str
    cluster: str
    source: str
    target: str
    workflow: str
    tables: list[str]
    dry_run: bool = False
    stages: list[StageRecord] = field(default_factory=list)
    copy: CopyState | None = None
    lag: int | None = None
    vdiff: VDiffResult | None = None
    traffic_before: str = ""
    traffic_after: str = ""
    rows: dict[str, int] = field(default_factory=dict)
    planned: list[str] = field(default_factory=list)   # dry run: every step and object change
    failed: str = ""

    def record(self, stage: str, result: str, detail: str = "", seconds: float | None = None) -> None:
        self.stages.append(StageRecord(stage, result, detail, seconds))

    @property
    def key(self) -> str:
        return f"{'move-tables' if self.kind == 'MoveTables' else 'reshard'}-{self.cluster}"

    @property
    def copy_key(self) -> str:
        """The copy's progress artifact."""
        return f"{'move-tables' if self.kind == 'MoveTables' else 'reshard'}-copy-{self.cluster}"

    def markdown(self) -> str:
        cell = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
        out = [f"# {self.kind} {self.target}.{self.workflow}" + (" (dry run)" if self.dry_run else ""),
               "", f"VitessCluster `{self.namespace}/{self.cluster}`: {self.source} -> {self.target}, tables "
               f"{', '.join(self.tables)}.", ""]
        if self.failed:
            out += [f"**Failed:** {cell(self.failed)}", ""]
        out += ["| stage | result | seconds | detail |", "|---|---|---|---|"]
        out += [f"| {s.stage} | {s.result} | {'' if s.seconds is None else round(s.seconds, 1)} | {cell(s.detail)} |"
                for s in self.stages]
        out += ["", "## Workflow", "", f"- traffic: {self.traffic_before or '-'} -> {self.traffic_after or '-'}",
                f"- replication lag: {'-' if self.lag is None else f'{self.lag} s'}"]
        if self.copy is not None:
            out.append(f"- copy: {self.copy.percent}%; {self.copy.line()}")
        if self.vdiff is not None:
            out.append(f"- VDiff {self.vdiff.uuid}: {self.vdiff.state}, {self.vdiff.rows} rows compared, "
                       + ("differences: " + "; ".join(self.vdiff.differences()) if self.vdiff.mismatch else "no difference"))
        if self.rows:
            out += ["", "| table | rows (through vtgate) |", "|---|---|"] + [f"| {t} | {n} |" for t, n in sorted(self.rows.items())]
        if self.planned:
            out += ["", "## Plan (nothing was changed)", ""] + [f"- {cell(p)}" for p in self.planned]
        return "\n".join(out) + "\n"


# ---------------------------------------------------------------- the I/O


class Workflow:
    """One workflow of VitessCluster ``namespace/cluster``, as vtctld and the API server show it."""

    def __init__(self, k: kube.Kube, namespace: str, cluster: str, kind: str, source: str, target: str,
                 name: str, tables: list[str], log):
        self.k, self.namespace, self.cluster, self.kind = k, namespace, cluster, kind
        self.source, self.target, self.name, self.tables, self.log = source, target, name, tables, log
        self.vt = Vtctld(k, namespace, cluster)

    @property
    def subject(self) -> str:
        return f"{self.kind} workflow {self.target}.{self.name} of VitessCluster {self.namespace}/{self.cluster}"

    def vc(self) -> dict:
        vc = self.k.get(*VC, self.cluster, self.namespace)
        if vc is None:
            raise ConfigError(f"VitessCluster {self.namespace}/{self.cluster}", "does not exist.", "run the deploy flow first.")
        return vc

    # -- reads

    def others(self, vc: dict) -> list[str]:
        """Open workflows on the source or target keyspace other than this one (and its _reverse)."""
        mine = {self.name, f"{self.name}_reverse"}
        out = []
        for ks in dict.fromkeys((self.source, self.target)):
            if keyspace_entry(vc, ks) is None:
                continue
            out += [f"{ks}.{w}" for w in self.vt.workflow_names(ks) if w not in mine]
        return out

    def status(self) -> tuple[CopyState | None, dict | None]:
        status = self.vt.workflow_status(self.kind, self.target, self.name)
        if status is None:
            return None, None
        return copy_state_of(status), self.vt.workflow_show(self.target, self.name)

    def primary(self, keyspace: str) -> str | None:
        for t in self.vt.get_tablets(keyspace):
            if t.get("type") == "PRIMARY":
                return f"{t['alias']['cell']}-{int(t['alias']['uid']):010d}"
        return None

    def tables_of(self, keyspace: str) -> set[str]:
        alias = self.primary(keyspace)
        if alias is None:
            raise TransientError(f"keyspace {keyspace} of VitessCluster {self.namespace}/{self.cluster}",
                                 "has no PRIMARY tablet.", "re-run when its tablets serve.")
        return self.vt.table_names(alias)

    def counts_on(self, keyspace: str) -> dict[str, int]:
        """Each moved table's row count on the keyspace's primary (ExecuteFetchAsDBA)."""
        alias = self.primary(keyspace)
        q = "SELECT " + ", ".join(f"(SELECT COUNT(*) FROM `{t}`)" for t in self.tables)
        reply = self.vt.run(["ExecuteFetchAsDBA", "--json", alias or "", q])
        if not reply.ok:
            raise TransientError(f"vtctldclient ExecuteFetchAsDBA on {alias}", f"exited {reply.rc}: {reply.said}",
                                 "re-run when the tablet serves.")
        row = (fetch_rows(reply.out) or [[None] * len(self.tables)])[0]
        return {t: int(v) for t, v in zip(self.tables, row)}

    def serving(self, keyspace: str, shards: list[str]) -> bool:
        """Whether any of ``shards`` is primary-serving (GetShard): false once a Reshard switched
        writes away from them (and after its complete)."""
        return any((self.vt.get_shard(keyspace, s) or {}).get("is_primary_serving", False) for s in shards)

    def vschemas_pending(self, schemas) -> list[str]:
        """The keyspaces of ``schemas`` whose VSchema is not the one given (the prepare stage's mark)."""
        return [s.keyspace for s in schemas if s.vschema is not None and self.vt.get_vschema(s.keyspace) != s.vschema]

    def prepare(self, ctx, schemas) -> str:
        """The schema changes, as the deploy's schema step applies them (a CREATE TABLE of a table
        that exists is skipped, a VSchema already in place not sent), and an INSERT into a table
        that existed before this run skipped too: its rows were written by the run that created it."""
        from tasks import schema as schema_step

        kept = []
        for s in schemas:
            have = schema_step.existing_tables(self.k, self.namespace, self.cluster, s.keyspace)
            statements = [st for st in s.statements if (m := INSERT_INTO.match(st.sql)) is None or m.group(1) not in have]
            kept.append(schema_step.SchemaInput(s.keyspace, statements, s.notes, s.vschema, s.warnings))
        step = schema_step.apply_schemas.fn(ctx, kept)
        changed = [o["object"] for o in step.objects if o["action"] != "unchanged"]
        return f"{len(changed)} change(s): " + "; ".join(changed) if changed else "nothing to change"

    def set_keyspaces(self, verb: str, body: dict) -> None:
        """Write spec.keyspaces as ``keyspaces_change`` said: apply, or a guarded merge patch."""
        if verb == "apply":
            self.k.apply(body)
        else:
            manager = kube.FIELD_MANAGER + ("-move-tables" if self.kind == "MoveTables" else "-reshard")
            self.k.patch(*VC, self.cluster, self.namespace, body, manager=manager)

    def wait_shards_gone(self, keyspace: str, shards: list[str], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        said = 0.0
        while True:
            pods = [p["metadata"]["name"] for s in shards for p in self.k.list(
                "v1", "Pod", self.namespace, label_selector=names.selector({
                    **names.cluster_labels(self.cluster, names.VTTABLET), names.KEYSPACE: keyspace,
                    names.SHARD: names.shard_label(s)}))]
            if not pods:
                return
            if time.monotonic() - said >= LOG_EVERY_S:
                self.log.info("waiting for the tablets of %s to go: %s", ",".join(shards), ", ".join(sorted(pods)))
                said = time.monotonic()
            if time.monotonic() >= deadline:
                raise PermanentError(f"shards {','.join(shards)} of keyspace {keyspace}",
                                     f"tablet pod(s) {', '.join(sorted(pods))} still there after {timeout_s:.0f} s.",
                                     "see the operator's log (kubectl logs deploy/vitess-operator), or raise "
                                     "removal_timeout_s and re-run.")
            time.sleep(POLL_S)

    # -- the stages that change something

    def add_keyspace(self, vc: dict, entry: dict) -> str:
        """The keyspace into spec.keyspaces (server-side apply when vtflow owns the list)."""
        verb, body = keyspaces_change(vc, [*((vc.get("spec") or {}).get("keyspaces") or []), entry])
        self.set_keyspaces(verb, body)
        return f"keyspace {entry['name']} added to VitessCluster {self.namespace}/{self.cluster} ({verb})"

    def preflight(self, vc: dict, adds: dict, subject: str, fix: str) -> list[str]:
        """Place every pod ``adds`` (a keyspace entry) makes on the nodes' room, as the running pods
        leave it; the lines with the numbers, or a refusal naming ``subject`` before any change."""
        fits, lines = placement(self.k.list("v1", "Node"), self.k.list("v1", "Pod"), adds, backup=has_backups(vc))
        for line in lines:
            self.log.info("preflight: %s", line)
        if not fits:
            raise PermanentError(subject, "the nodes cannot hold its tablets (nothing was changed): "
                                 + "; ".join(lines) + ".", fix)
        return lines

    def wait_tablets(self, keyspace: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        said = 0.0
        while True:
            vc = self.k.get(*VC, self.cluster, self.namespace)
            pods = self.k.list("v1", "Pod", self.namespace,
                               label_selector=names.cluster_selector(self.cluster, names.VTTABLET))
            try:
                tablets = self.vt.get_tablets(keyspace)
            except TransientError:
                tablets = []
            selector = names.cluster_selector(self.cluster)
            held = held_rollout(vc, [{**o, "kind": kind} for kind in ("VitessKeyspace", "VitessShard")
                                     for o in self.k.list("planetscale.com/v2", kind, self.namespace,
                                                          label_selector=selector)])
            if held:
                raise PermanentError(f"VitessCluster {self.namespace}/{self.cluster}",
                                     f"has a rollout the operator holds for an external release: {held}.",
                                     f"release it (kubectl annotate ... {names.ROLLOUT_RELEASED}=), "
                                     "or set spec.updateStrategy.type: Immediate, then re-run.")
            reason = tablets_not_ready(vc, pods, tablets, keyspace)
            if reason is None:
                return
            if time.monotonic() - said >= LOG_EVERY_S:
                self.log.info("waiting for the tablets of %s: %s", keyspace, reason)
                said = time.monotonic()
            if time.monotonic() >= deadline:
                raise PermanentError(f"keyspace {keyspace} of VitessCluster {self.namespace}/{self.cluster}",
                                     f"tablets not ready after {timeout_s:.0f} s: {reason}.",
                                     "see the tablet pods' events and logs (kubectl describe pod), or raise tablets_timeout_s.")
            time.sleep(POLL_S)

    def command(self, action: str, flags: list[str], fix: str) -> str:
        return self.vt.workflow_command(self.kind, self.target, self.name, action, flags, fix)

    def wait_copy(self, max_lag_s: int, timeout_s: float, report: WorkflowReport,
                  progress: Callable[[float], None]) -> CopyState:
        deadline = time.monotonic() + timeout_s
        said = 0.0
        while True:
            state, show = self.status()
            if state is None:
                raise PermanentError(self.subject, "vanished while copying (cancelled from outside?).",
                                     "re-run the flow: it creates the workflow again.")
            lag = lag_of(show)
            report.copy, report.lag = state, lag
            errors = stream_errors(show, state)
            if errors:
                raise PermanentError(self.subject, "has a stream in Error: " + "; ".join(errors) + ".",
                                     "fix what the message names (the tablets' vttablet log says more), then re-run "
                                     f"the flow; or cancel it: vtctldclient {self.kind} --target-keyspace {self.target} "
                                     f"--workflow {self.name} cancel.")
            progress(state.percent)
            reason = copy_verdict(state, lag, max_lag_s)
            if reason is None:
                return state
            if time.monotonic() - said >= LOG_EVERY_S:
                self.log.info("copy of %s: %s; lag %s; %s", self.name, reason,
                              "-" if lag is None else f"{lag} s", state.line())
                said = time.monotonic()
            if time.monotonic() >= deadline:
                raise PermanentError(self.subject, f"not caught up after {timeout_s:.0f} s: {reason}.",
                                     "raise copy_timeout_s and re-run (the copy goes on meanwhile).")
            time.sleep(POLL_S)

    def run_vdiff(self, timeout_s: float) -> VDiffResult:
        uuid = self.vt.vdiff(self.target, self.name, "create")["UUID"]
        deadline = time.monotonic() + timeout_s
        while True:
            result = vdiff_of(self.vt.vdiff(self.target, self.name, "show", uuid))
            if result is not None and result.state == "completed":
                return result
            if result is not None and result.state == "error":
                raise PermanentError(self.subject, f"VDiff {uuid} ended in error.",
                                     "read the target tablets' vttablet log, then re-run.")
            if time.monotonic() >= deadline:
                raise PermanentError(self.subject, f"VDiff {uuid} not completed after {timeout_s:.0f} s "
                                     f"({result.state if result else 'no result yet'}).",
                                     "raise vdiff_timeout_s and re-run.")
            time.sleep(POLL_S)

    def switch(self, types: str, max_lag_s: int, timeout_s: float, backward: bool = False) -> tuple[list[str], str]:
        """A dry run, then the switch (or reversal) of ``types``: (the dry run's lines, the state after)."""
        action = "reversetraffic" if backward else "switchtraffic"
        flags = [f"--tablet-types={types}", f"--max-replication-lag-allowed={max_lag_s}s", f"--timeout={int(timeout_s)}s"]
        fix = ("read the message; once its cause is fixed (lag, tablets still rolling, a stream in Error) re-run the "
               "flow, which resumes from the traffic state it finds.")
        lines = dry_run_lines(self.command(action, [*flags, "--dry-run"], fix))
        for line in lines:
            self.log.info("%s dry run: %s", action, line)
        self.command(action, flags, fix)
        state, _ = self.status()
        return lines, state.traffic.text if state else ""

    def gateway_counts(self, conn, keyspaces: list[str]) -> dict[str, dict[str, int]]:
        """Each moved table's row count through vtgate, under each keyspace's name."""
        from vtflow import mysql

        out: dict[str, dict[str, int]] = {}
        for ks in keyspaces:
            for t in self.tables:
                _, rows = mysql.run(conn, f"SELECT COUNT(*) FROM `{ks}`.`{t}`", where=f"{ks}.{t} through vtgate")
                out.setdefault(t, {})[ks] = int(rows[0][0])
        return out


def verify_findings(counts: dict[str, dict[str, int]], primary: dict[str, int], keyspaces: list[str]) -> list[Finding]:
    """Every moved table answers through vtgate, under each of ``keyspaces``' names (the target's,
    and the source's while the routing rules send it on), with the target primary's row count."""
    out = []
    for t in sorted(primary):
        got = counts.get(t, {})
        bad = [f"{ks}.{t} gives {got.get(ks)}" for ks in keyspaces if got.get(ks) != primary[t]]
        seen = " and ".join(f"{ks}.{t}" for ks in keyspaces)
        out.append(Finding(name=f"table {t}", level="fail" if bad else "ok",
                           problem=(f"{'; '.join(bad)} through vtgate, the {keyspaces[0]} primary has {primary[t]} rows"
                                    if bad else f"{primary[t]} rows through vtgate as {seen}"),
                           fix="see GetRoutingRules and the vtgate log" if bad else ""))
    return out


def refuse_others(w: Workflow, others: list[str]) -> None:
    if others:
        raise ConfigError(w.subject, f"another workflow is open on keyspace {w.source} or {w.target}: "
                          f"{', '.join(others)}.", "finish it (complete) or cancel it first, or give its name as "
                          "workflow to resume it.")


def refuse_if_unmovable(w: Workflow, source_tables: set[str], target_tables: set[str]) -> str:
    """With no workflow: 'done' when the tables have moved already (completed), 'start' when they
    are all in the source; otherwise a refusal naming what is where."""
    want = set(w.tables)
    if want <= target_tables and not (want & source_tables):
        return "done"
    missing = sorted(want - source_tables)
    if missing:
        raise ConfigError(w.subject, f"table(s) {', '.join(missing)} are not in keyspace {w.source}.",
                          f"give tables of {w.source} (its tables: {', '.join(sorted(source_tables)) or 'none'}).")
    clash = sorted(want & target_tables)
    if clash:
        raise ConfigError(w.subject, f"keyspace {w.target} already has table(s) {', '.join(clash)} and no workflow "
                          f"{w.name} moves them.", f"drop them from {w.target} if they are a leftover (a cancelled move), "
                          "or choose another target keyspace.")
    return "start"



# ---------------------------------------------------------------- Reshard (upstream 302 -> Reshard -> 306)


class ReshardRequest(BaseModel):
    """What a reshard run was asked to do (the flow's parameters, less the blocks and the schema)."""

    keyspace: str = Field(default="customer", description="The keyspace to reshard.")
    source_shards: list[str] = Field(default_factory=lambda: ["-"], description="The shards it has now.")
    target_shards: list[str] = Field(default_factory=lambda: ["-80", "80-"],
                                     description="The shards it is split into (equal parts: -80,80- or -40,40-80,...).")
    workflow: str = Field(default="", description="The workflow's name; empty: <keyspace>2<keyspace>.")
    max_lag_s: int = Field(default=30, ge=0, description="Replication lag allowed (copy caught up, each switch).")

    @property
    def name(self) -> str:
        return self.workflow or f"{self.keyspace}2{self.keyspace}"

    def refusals(self) -> None:
        for what, value in (("keyspace", self.keyspace), ("workflow", self.name)):
            if not NAME.match(value):
                raise ConfigError(f"reshard parameter {what}", f"{value!r} is not a plain name (letters, digits, _).",
                                  "give the name as vtctldclient takes it.")
        want = names.shard_names(len(self.target_shards))
        if self.target_shards != want or len(self.target_shards) < 2:
            raise ConfigError("reshard parameter target_shards", f"{','.join(self.target_shards)} is not an equal "
                              "split the operator's equal partitioning makes.",
                              f"give {','.join(names.shard_names(max(2, len(self.target_shards))))} (or another "
                              "number of equal parts).")
        if set(self.source_shards) & set(self.target_shards):
            raise ConfigError("reshard parameters", "source and target shards overlap by name.",
                              "give the shards the keyspace has now as source_shards.")


def partitioning_shards(part: dict) -> list[str]:
    if "equal" in part:
        return names.shard_names(int(part["equal"].get("parts", 1)))
    out = []
    for s in (part.get("custom") or {}).get("shards") or []:
        kr = s.get("keyRange") or {}
        out.append(f"{kr.get('start', '')}-{kr.get('end', '')}" if kr else s.get("name", "-"))
    return out


def _norm(shards: list[str]) -> list[str]:
    return ["-" if s in ("0", "-") else s for s in shards]


def with_target_shards(entry: dict, source_shards: list[str], target_shards: list[str]) -> dict | None:
    """The keyspace entry with a second partitioning of the target shards (upstream 302: the same
    template as the source's), or None when it has one already."""
    parts = entry.get("partitionings") or []
    if any(partitioning_shards(p) == target_shards for p in parts):
        return None
    src = next((p for p in parts if partitioning_shards(p) == _norm(source_shards)), None)
    if src is None:
        have = "; ".join(",".join(partitioning_shards(p)) for p in parts) or "none"
        raise ConfigError(f"keyspace {entry['name']}", f"has no partitioning of the shards {','.join(source_shards)} "
                          f"(its partitionings: {have}).", "give the shards it has now as source_shards.")
    if len(parts) >= 2:   # the CRD allows two partitionings at most
        raise ConfigError(f"keyspace {entry['name']}", "has two partitionings already (a reshard under way or left "
                          "half-done).", "finish or undo that one first (its old partitioning out of the VitessCluster).")
    out = copy.deepcopy(entry)
    out["partitionings"].append({"equal": {"parts": len(target_shards), "shardTemplate": _template_of({"partitionings": [src]})}})
    return out


def without_source_shards(entry: dict, source_shards: list[str]) -> dict | None:
    """The keyspace entry without the old partitioning (upstream 306), or None when it is gone."""
    parts = entry.get("partitionings") or []
    keep = [p for p in parts if partitioning_shards(p) != _norm(source_shards)]
    if len(keep) == len(parts):
        return None
    out = copy.deepcopy(entry)
    out["partitionings"] = keep
    return out


def with_entry(vc: dict, entry: dict) -> list[dict]:
    """The VitessCluster's keyspaces with ``entry`` in place of the keyspace of its name."""
    return [entry if k.get("name") == entry["name"] else k for k in (vc.get("spec") or {}).get("keyspaces") or []]


def shard_counts(ids: list[int], shards: list[str]) -> dict[str, int]:
    """How many of ``ids`` each shard owns under the ``hash`` vindex (vtflow.vindex)."""
    from vtflow.vindex import hash_keyspace_id, shard_of

    out = {s: 0 for s in shards}
    for i in ids:
        out[shard_of(hash_keyspace_id(int(i)), shards)] += 1
    return out


def primary_vindex_columns(vschema: dict | None) -> dict[str, str]:
    """table -> the column of its primary (first) hash vindex, from a sharded VSchema."""
    vs = vschema or {}
    kinds = {n: (v or {}).get("type") for n, v in (vs.get("vindexes") or {}).items()}
    out = {}
    for t, spec in (vs.get("tables") or {}).items():
        cv = ((spec or {}).get("column_vindexes") or [None])[0]
        if cv and kinds.get(cv.get("name")) == "hash":
            out[t] = cv.get("column") or (cv.get("columns") or [""])[0]
    return out
