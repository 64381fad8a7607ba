"""The backup flow's steps: one ``vtctldclient BackupShard`` per shard, confirmation through
``GetBackups``, and retention (``RemoveBackup``), all through ``vtflow.vtctld`` (in the vtctld pod);
or, with ``method: operator``, the schedule vtflow writes into the VitessCluster for the
operator's VitessBackupSchedule (v2.13 and later), whose Jobs take the backups; and with either
method a record of every keyspace's schema and VSchema (``GetSchema``, ``GetVSchema``).

Which backups to prune is a pure decision (``to_prune``): beyond ``keep_count`` or older than
``keep_days``, and never the newest complete backup of a shard, whatever the settings say.
What the operator's schedule may hold is read from the CRD the cluster serves and the release
its operator runs (``schedule_support``: refused before v2.13, or when the CRD has no
``spec.backup.schedules``), and the entry is built for it (``schedule_entry``, pure), checked
against that CRD's schema, then written as a merge patch of ``spec.backup.schedules`` alone as
its own field manager: a server-side apply of a part of the VitessCluster as ``vtflow`` would
remove every field the deploy applied and this one leaves out. The user's own schedules in that
list are kept; only the entry named ``vtflow`` is vtflow's.
The backup-age helpers (a backup's time, whether it is complete, VitessBackup objects as
backups) and the schedule-Job helpers live here too; the health check imports them.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Literal

from cronsim import CronSim, CronSimError
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field, field_validator

from tasks import versions
from tasks.verify import expected_tablets_of
from vtflow import crdschema, kube, names, vtctld
from vtflow.errors import ConfigError, PermanentError, VtflowError
from vtflow.quantity import cpu_millis, memory_bytes
from vtflow.vtctld import CommandFailed, Vtctld

VC = ("planetscale.com/v2", "VitessCluster")
VBS = ("planetscale.com/v2", "VitessBackupSchedule")
VC_CRD = "vitessclusters.planetscale.com"
# The entry vtflow owns in spec.backup.schedules, and the label and annotation the operator puts
# on a schedule's Jobs (vtflow/names.py)
SCHEDULE_NAME = "vtflow"
BACKUP_SCHEDULE_LABEL = names.BACKUP_SCHEDULE
SCHEDULED_AT = names.BACKUP_SCHEDULED_AT
SCHEDULE_MANAGER = "vtflow-backup"   # the field manager of the schedule patch
FIRST_SCHEDULING_RELEASE = (2, 13)

Method = Literal["flow", "operator"]


class OperatorSchedule(BaseModel):
    """``method: operator``: the VitessBackupSchedule vtflow writes into the VitessCluster."""

    cron: str = Field(default="0 2 * * *", description="When the operator backs up every shard (cron, the "
                      "operator's time zone: UTC). Before the backup flow's own daily run, so that it reports them.")
    successful_jobs_kept: int = Field(default=3, ge=0, le=100, description="Finished Jobs the operator keeps per shard.")
    failed_jobs_kept: int = Field(default=3, ge=0, le=100, description="Failed Jobs the operator keeps per shard "
                                  "(what the health check reads).")
    job_timeout_minutes: int = Field(default=60, ge=1, description="A backup Job running longer is removed.")
    cpu: str = Field(default="100m", description="CPU request of each backup Job's container.")
    memory: str = Field(default="256Mi", description="Memory request (and limit) of each backup Job's container.")

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str) -> str:
        try:
            CronSim(v.strip(), datetime.now(timezone.utc))
        except CronSimError as e:
            raise ValueError(f"{v!r} is not a cron schedule ({e}); write five fields, e.g. '0 2 * * *'") from e
        if v.strip().startswith("@"):
            raise ValueError("write the five fields (e.g. '0 2 * * *'), not a @ shorthand")
        return v.strip()

    @field_validator("cpu")
    @classmethod
    def _cpu(cls, v: str) -> str:
        cpu_millis(v)
        return v

    @field_validator("memory")
    @classmethod
    def _memory(cls, v: str) -> str:
        memory_bytes(v)
        return v


class Retention(BaseModel):
    keep_count: int = Field(default=7, ge=1, description="Backups kept per shard (newest first).")
    keep_days: float | None = Field(default=14, gt=0, description="Backups older than this are removed; empty: no age limit.")


@dataclass
class BackupResult:
    keyspace: str
    shard: str
    ok: bool
    name: str = ""
    size: int | None = None
    seconds: float = 0.0
    error: str = ""
    pruned: tuple[str, ...] = ()
    note: str = ""           # method operator: what the schedule's newest Job did


# ---------------------------------------------------------------- pure: backup ages (the health check's too)


def backup_time(b: dict) -> datetime | None:
    """A GetBackups --json entry's time (protojson Timestamp: RFC 3339 text or {seconds, nanoseconds})."""
    t = b.get("time")
    if isinstance(t, dict) and "seconds" in t:
        return datetime.fromtimestamp(int(t["seconds"]) + int(t.get("nanoseconds", 0)) / 1e9, timezone.utc)
    if isinstance(t, str) and t:
        return datetime.fromisoformat(t.replace("Z", "+00:00"))
    return None


def is_complete(b: dict) -> bool:
    """vtctld's GetBackups leaves ``status`` UNKNOWN (vitessio/vitess#8332): only an explicit
    INCOMPLETE or INVALID counts against a backup there. VitessBackup objects say ``complete``."""
    return str(b.get("status", "UNKNOWN")).upper() not in ("INCOMPLETE", "INVALID")


def newest_complete(backups: list[dict]) -> dict | None:
    """The backup a new tablet restores: the newest complete one (GetBackups --json entries).
    vttablet takes the last complete backup in backup storage's order, which is by name
    (mysqlctl FindBackupToRestore walks the list from its end): two backups of one second sort
    by tablet alias, and so does this."""
    done = [b for b in backups if is_complete(b) and backup_time(b) is not None]
    return max(done, key=lambda b: (backup_time(b), b.get("name", "")), default=None)


def backups_from_objects(objects: list[dict]) -> dict[tuple[str, str], list[dict]]:
    """VitessBackup objects (the operator's view of backup storage, ``status.complete`` read from
    each backup's MANIFEST) as GetBackups-like entries, per (keyspace, shard)."""
    out: dict[tuple[str, str], list[dict]] = {}
    for o in objects:
        labels, st = o["metadata"].get("labels") or {}, o.get("status") or {}
        key = (labels.get(names.KEYSPACE, ""), names.shard_from_label(labels.get(names.SHARD, "x-x")))
        out.setdefault(key, []).append({"name": st.get("storageName") or o["metadata"]["name"],
                                        "time": st.get("finishedTime") or st.get("startTime"),
                                        "status": "COMPLETE" if st.get("complete") else "INCOMPLETE"})
    return out


# ---------------------------------------------------------------- pure


def shards_to_back_up(vc: dict | None, namespace: str, cluster: str) -> list[tuple[str, str]]:
    """Every shard of the cluster, or a clear refusal when backups cannot run at all."""
    if vc is None:
        raise ConfigError(f"VitessCluster {namespace}/{cluster}", "does not exist.", "run the deploy flow first.")
    if not ((vc.get("spec") or {}).get("backup") or {}).get("locations"):
        raise ConfigError(f"VitessCluster {namespace}/{cluster}",
                          "has no backup location (spec.backup.locations is empty), so its tablets cannot take backups.",
                          "set the deploy's cluster.backup.kind to volume or s3 and re-deploy, then run the backup again.")
    return sorted(expected_tablets_of(vc))


def to_prune(backups: list[dict], retention: Retention, now: datetime) -> list[str]:
    """Names to remove: beyond keep_count (newest first) or older than keep_days; never the
    newest complete backup."""
    dated = sorted(((backup_time(b) or datetime.min.replace(tzinfo=timezone.utc), b) for b in backups),
                   key=lambda tb: (tb[0], tb[1].get("name", "")), reverse=True)
    kept = (newest_complete(backups) or {}).get("name")
    cutoff = now - timedelta(days=retention.keep_days) if retention.keep_days else None
    out = []
    for i, (when, b) in enumerate(dated):
        if b["name"] == kept:
            continue
        if i >= retention.keep_count or (cutoff is not None and when < cutoff):
            out.append(b["name"])
    return out


# ---------------------------------------------------------------- I/O


def back_up_shard(k: kube.Kube, namespace: str, cluster: str, ks: str, shard: str,
                  retention: Retention | None, now: datetime | None = None) -> BackupResult:
    """BackupShard, then confirm the new backup is listed as complete, then prune. Never raises
    for the shard's own failure: the result says what went wrong, so other shards go on."""
    vt = Vtctld(k, namespace, cluster)
    started = time.monotonic()
    before = {b["name"] for b in vt.get_backups(ks, shard)}
    try:
        vt.backup_shard(ks, shard)
    except CommandFailed as e:
        return BackupResult(ks, shard, False, seconds=time.monotonic() - started,
                            error=f"BackupShard exited {e.rc}: {e.detail}")
    seconds = time.monotonic() - started
    after = vt.get_backups(ks, shard)
    new = [b for b in after if b["name"] not in before]
    if not new or not any(is_complete(b) for b in new):
        return BackupResult(ks, shard, False, seconds=seconds,
                            error="BackupShard succeeded but GetBackups lists no new complete backup")
    newest = max(new, key=lambda b: backup_time(b) or datetime.min.replace(tzinfo=timezone.utc))
    result = BackupResult(ks, shard, True, name=newest["name"], size=newest.get("size"),
                          seconds=seconds)
    if retention is not None:
        _prune(vt, ks, shard, after, retention, now, result)
    return result


def _prune(vt: Vtctld, ks: str, shard: str, backups: list[dict], retention: Retention, now: datetime | None,
           result: BackupResult) -> None:
    """RemoveBackup of what ``retention`` lets go; the first failure ends it, named in ``result``."""
    pruned = []
    for name in to_prune(backups, retention, now or datetime.now(timezone.utc)):
        try:
            vt.remove_backup(ks, shard, name)
        except CommandFailed as e:
            result.error = result.error or f"RemoveBackup {name} failed: {e.detail}"
            break
        pruned.append(name)
    result.pruned = tuple(pruned)


@task(name="backup-shard", cache_policy=NO_CACHE, task_run_name="backup-{ks}-{shard}")
async def backup_shard(k: kube.Kube, namespace: str, cluster: str, ks: str, shard: str,
                       retention: Retention | None) -> BackupResult:
    return await asyncio.to_thread(back_up_shard, k, namespace, cluster, ks, shard, retention)


# ---------------------------------------------------------------- pure: the operator's schedule


@dataclass(frozen=True)
class ScheduleSupport:
    """What the cluster lets vtflow write into ``spec.backup.schedules``."""

    release: str | None           # the running vitess-operator's tag; None when its image names none
    fixed_strategy_name: bool     # strategies[].name must be "BackupShard" (the CRDs of v2.13/v2.14)
    backup_method: bool           # backupMethod exists (v2.17's CRD): vtflow asks for vtctldclient
    schema: dict = field(default_factory=dict, compare=False, repr=False)   # the served VitessCluster schema


def _schedule_item(schema: dict | None) -> dict | None:
    props = ((((schema or {}).get("properties") or {}).get("spec") or {}).get("properties") or {})
    backup = ((props.get("backup") or {}).get("properties") or {})
    return (backup.get("schedules") or {}).get("items")


def schedule_support(subject: str, operator_tag: str | None, vc_schema: dict | None) -> ScheduleSupport:
    """Whether ``method: operator`` can work here, from the operator's release and the served
    CRD (both: v2.13's e2e operator.yaml runs v2.12.0 with CRDs that already have schedules,
    and a release by digest names no version). A refusal names the release and the fix."""
    fix = ("run the backup with method flow (vtflow's own backups), or upgrade the vitess-operator to v2.13 or "
           "later (README: Versions) and re-run.")
    if operator_tag and versions.minor_of(operator_tag) < FIRST_SCHEDULING_RELEASE:
        raise ConfigError(subject, f"runs vitess-operator {operator_tag}, which has no VitessBackupSchedule "
                          "(native backup schedules came with v2.13).", fix)
    item = _schedule_item(vc_schema)
    if item is None:
        raise ConfigError(subject, "is served by a VitessCluster CRD without spec.backup.schedules (vitess-operator "
                          "before v2.13), so the operator cannot schedule backups.", fix)
    strategy = ((item.get("properties") or {}).get("strategies") or {}).get("items") or {}
    name = (strategy.get("properties") or {}).get("name") or {}
    return ScheduleSupport(operator_tag, name.get("enum") == ["BackupShard"],
                           "backupMethod" in (item.get("properties") or {}), vc_schema or {})


def schedule_entry(shards: list[tuple[str, str]], schedule: OperatorSchedule, support: ScheduleSupport) -> dict:
    """vtflow's ``spec.backup.schedules[]`` entry: one Shard strategy per shard (every release
    understands those), Forbid (a shard's backups never overlap), the history limits the health
    check reads. v2.17: ``backupMethod: vtctldclient``, BackupShard on a serving replica as the
    flow method does (the default, vtbackup, starts a Job pod with its own mysqld and claim)."""
    entry = {
        "name": SCHEDULE_NAME,
        "schedule": schedule.cron,
        "resources": {"requests": {"cpu": schedule.cpu, "memory": schedule.memory}, "limits": {"memory": schedule.memory}},
        "successfulJobsHistoryLimit": schedule.successful_jobs_kept,
        "failedJobsHistoryLimit": schedule.failed_jobs_kept,
        "jobTimeoutMinute": schedule.job_timeout_minutes,
        "concurrencyPolicy": "Forbid",
        "strategies": [{"name": "BackupShard" if support.fixed_strategy_name else f"{ks}-{names.shard_label(sh)}",
                        "keyspace": ks, "shard": sh} for ks, sh in shards],
    }
    if support.backup_method:
        entry["backupMethod"] = vtctld.CLIENT   # BackupShard from a Job, on a serving replica
    return entry


def schedules_with(vc: dict, entry: dict | None) -> list[dict]:
    """The cluster's schedules with vtflow's entry replaced by ``entry`` (None: removed); the
    user's own entries kept as they are, in their order."""
    current = [s for s in (((vc.get("spec") or {}).get("backup") or {}).get("schedules") or [])]
    out = [s for s in current if s.get("name") != SCHEDULE_NAME]
    if entry is not None:
        at = next((i for i, s in enumerate(current) if s.get("name") == SCHEDULE_NAME), len(out))
        out.insert(min(at, len(out)), entry)
    return out


def schedule_patch(vc: dict, schedules: list[dict]) -> dict:
    """A JSON merge patch of ``spec.backup.schedules`` (a list: replaced whole), guarded by the
    resourceVersion that was read: a VitessCluster changed meanwhile answers 409, not a lost write."""
    return {"metadata": {"resourceVersion": vc["metadata"]["resourceVersion"]},
            "spec": {"backup": {"schedules": schedules or None}}}


def check_against_crd(vc: dict, schedules: list[dict], support: ScheduleSupport) -> None:
    """The VitessCluster with ``schedules`` as the served CRD would store it: a field it would
    drop or a value it would refuse is a ConfigError naming it, before anything is written."""
    import copy as _copy

    candidate = _copy.deepcopy({k: v for k, v in vc.items() if k != "status"})
    candidate.setdefault("spec", {}).setdefault("backup", {})["schedules"] = schedules
    stored, errors = crdschema.validate(candidate, support.schema)
    lost = [f for f in crdschema.dropped(candidate, stored) if f.startswith("spec.backup.schedules")]
    if lost or errors:
        problems = [f"{f} (dropped by the CRD)" for f in lost] + [
            f"{crdschema.field_path(e.absolute_path) or '(root)'}: {e.message}" for e in errors[:5]]
        raise ConfigError(kube.ref(vc), "the backup schedule does not fit this cluster's VitessCluster CRD: "
                          + "; ".join(problems), "correct the operator_schedule settings named above, or use method flow.")


def job_outcome(job: dict) -> str:
    """A Job as the schedule controller sorts it: failed, complete or active."""
    conds = (job.get("status") or {}).get("conditions") or []
    if any(c.get("status") == "True" and c.get("type") in ("Failed", "FailureTarget") for c in conds):
        return "failed"
    if any(c.get("status") == "True" and c.get("type") == "Complete" for c in conds):
        return "complete"
    return "active"


def job_failure(job: dict) -> str:
    conds = (job.get("status") or {}).get("conditions") or []
    c = next((c for c in conds if c.get("type") == "Failed" and c.get("status") == "True"), None) or {}
    return c.get("reason") or c.get("message") or "failed"


def job_time(job: dict) -> str:
    return (job["metadata"].get("annotations") or {}).get(SCHEDULED_AT) or job["metadata"].get("creationTimestamp", "")


def newest_jobs(jobs: list[dict], schedule: str, shards: list[tuple[str, str]]) -> dict[tuple[str, str], dict]:
    """The newest finished or running Job of schedule ``schedule`` per shard. From v2.15 a Job
    is a shard's (labels keyspace and shard); before, one Job backs up all (no shard labels)."""
    out: dict[tuple[str, str], dict] = {}
    for job in sorted((j for j in jobs if (j["metadata"].get("labels") or {}).get(BACKUP_SCHEDULE_LABEL) == schedule),
                      key=job_time):
        labels = job["metadata"].get("labels") or {}
        if names.KEYSPACE in labels and names.SHARD in labels:
            keys = [(labels[names.KEYSPACE], names.shard_from_label(labels[names.SHARD]))]
        else:
            keys = list(shards)
        for key in keys:
            out[key] = job
    return out


# ---------------------------------------------------------------- pure: the schema record


def schema_of(get_schema_json: str) -> dict[str, str]:
    """``GetSchema <alias>`` (protojson SchemaDefinition) -> table name -> CREATE statement."""
    data = json.loads(get_schema_json or "{}")
    return {t["name"]: t.get("schema", "") for t in data.get("table_definitions") or []}


def schema_digest(keyspace_record: dict) -> str:
    """A short digest of a keyspace's tables and VSchema, to compare a restore with at a glance."""
    text = json.dumps({"tables": keyspace_record.get("tables"), "vschema": keyspace_record.get("vschema")},
                      sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


SCHEMA_BEGIN, SCHEMA_END = "```json vtflow-schema", "```"


def schema_markdown(namespace: str, cluster: str, record: dict) -> str:
    """The artifact ``backup-schema-<cluster>``: a summary per keyspace, then the whole record
    as one JSON block that ``schema_from_markdown`` reads back (a restore check compares with it)."""
    lines = [f"# Schema of VitessCluster {namespace}/{cluster} at {record['taken_at']}", "",
             "| keyspace | tables | VSchema tables | read from | digest |", "|---|---|---|---|---|"]
    for ks, r in sorted(record["keyspaces"].items()):
        lines.append(f"| {ks} | {len(r['tables'])} | {len((r.get('vschema') or {}).get('tables') or {})} | "
                     f"{r['tablet']} | {schema_digest(r)} |")
    lines += ["", SCHEMA_BEGIN, json.dumps(record, indent=1, sort_keys=True), SCHEMA_END]
    return "\n".join(lines)


def schema_from_markdown(markdown: str) -> dict:
    """The record ``schema_markdown`` wrote; ValueError when the text holds none."""
    m = re.search(re.escape(SCHEMA_BEGIN) + r"\n(.*?)\n" + re.escape(SCHEMA_END), markdown or "", re.S)
    if not m:
        raise ValueError("no vtflow schema record in this text")
    return json.loads(m.group(1))


def schema_tablet(tablets: list[dict]) -> dict | None:
    """The tablet to read a keyspace's schema from: the primary of its first shard."""
    primaries = [t for t in tablets if str(t.get("type")).upper() in ("PRIMARY", "MASTER", "1")]
    return min(primaries or tablets, key=lambda t: (t.get("shard", ""), t["alias"]["uid"]), default=None)


# ---------------------------------------------------------------- I/O: the operator's schedule


def operator_release_in(k: kube.Kube, namespace: str) -> str | None:
    """The tag of the vitess-operator Deployment in ``namespace`` (where the deploy installs it);
    None when there is none or its image names no version (by digest)."""
    dep = k.get("apps/v1", "Deployment", names.OPERATOR_DEPLOYMENT, namespace)
    return versions.manifest_version([dep]) if dep else None


def served_vc_schema(k: kube.Kube) -> dict | None:
    crd = k.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", VC_CRD)
    return crdschema.crd_schema(crd, "v2") if crd else None


@dataclass
class ScheduleWrite:
    entry: dict
    support: ScheduleSupport
    changed: bool


def write_operator_schedule(k: kube.Kube, namespace: str, cluster: str, vc: dict, shards: list[tuple[str, str]],
                            schedule: OperatorSchedule) -> ScheduleWrite:
    """Check, then write vtflow's schedule into the VitessCluster (nothing when it is there as wanted)."""
    support = schedule_support(kube.ref(vc), operator_release_in(k, namespace), served_vc_schema(k))
    entry = schedule_entry(shards, schedule, support)
    wanted = schedules_with(vc, entry)
    check_against_crd(vc, wanted, support)
    current = ((vc.get("spec") or {}).get("backup") or {}).get("schedules") or []
    mine = next((s for s in current if s.get("name") == SCHEDULE_NAME), None)
    stored_entry = crdschema.prune_and_default(json.loads(json.dumps(entry)), _schedule_item(support.schema))
    if mine == stored_entry:
        return ScheduleWrite(entry, support, False)
    k.patch(*VC, cluster, namespace, schedule_patch(vc, wanted), manager=SCHEDULE_MANAGER)
    return ScheduleWrite(entry, support, True)


def remove_operator_schedule(k: kube.Kube, namespace: str, cluster: str, vc: dict) -> bool:
    """Method flow again: take vtflow's entry out (the operator then deletes its schedule);
    whether there was one."""
    current = ((vc.get("spec") or {}).get("backup") or {}).get("schedules") or []
    if not any(s.get("name") == SCHEDULE_NAME for s in current):
        return False
    k.patch(*VC, cluster, namespace, schedule_patch(vc, schedules_with(vc, None)), manager=SCHEDULE_MANAGER)
    return True


def schedule_jobs(k: kube.Kube, namespace: str, cluster: str) -> list[dict]:
    """Every Job of the cluster's backup schedules (the operator labels them with both)."""
    return k.list("batch/v1", "Job", namespace,
                  label_selector=f"{names.CLUSTER}={cluster},{BACKUP_SCHEDULE_LABEL}")


def vtflow_schedule_object(k: kube.Kube, namespace: str, cluster: str) -> dict | None:
    """The VitessBackupSchedule the operator made of vtflow's entry (its spec.name), if any yet."""
    try:
        items = k.list(*VBS, namespace, label_selector=names.cluster_selector(cluster))
    except VtflowError:
        return None   # the kind is not served (the refusal above says why)
    return next((o for o in items if (o.get("spec") or {}).get("name") == SCHEDULE_NAME), None)


def report_shard(k: kube.Kube, namespace: str, cluster: str, ks: str, shard: str, retention: Retention | None,
                 job: dict | None, now: datetime | None = None) -> BackupResult:
    """Method operator: the shard's newest complete backup (GetBackups), what the schedule's
    newest Job did, and retention. Never raises for the shard's own failure."""
    vt = Vtctld(k, namespace, cluster)
    try:
        backups = vt.get_backups(ks, shard)
    except CommandFailed as e:
        return BackupResult(ks, shard, False, error=f"GetBackups exited {e.rc}: {e.detail}")
    complete = [b for b in backups if is_complete(b)]
    newest = max(complete, key=lambda b: backup_time(b) or datetime.min.replace(tzinfo=timezone.utc), default=None)
    result = BackupResult(ks, shard, True, name=(newest or {}).get("name", ""))
    if job is None:
        result.note = "no Job of the schedule yet"
    else:
        outcome = job_outcome(job)
        result.note = f"Job {job['metadata']['name']} ({job_time(job)}): {outcome}"
        if outcome == "failed":
            result.ok = False
            result.error = f"the schedule's newest Job {job['metadata']['name']} failed ({job_failure(job)})"
    if retention is not None:
        _prune(vt, ks, shard, backups, retention, now, result)
    return result


# ---------------------------------------------------------------- I/O: the schema record


def read_schema(k: kube.Kube, namespace: str, cluster: str, keyspaces: list[str]) -> dict:
    """Every keyspace's tables (GetSchema of its first shard's primary) and VSchema (GetVSchema)."""
    vt = Vtctld(k, namespace, cluster)
    record = {"cluster": cluster, "namespace": namespace,
              "taken_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "keyspaces": {}}
    for ks in keyspaces:
        tablet = schema_tablet(vt.get_tablets(ks))
        if tablet is None:
            raise PermanentError(f"keyspace {ks} of VitessCluster {namespace}/{cluster}", "has no tablet to read "
                                 "its schema from.", "wait until the cluster is ready (health check), then re-run.")
        alias = f"{tablet['alias']['cell']}-{int(tablet['alias']['uid']):010d}"
        record["keyspaces"][ks] = {"tablet": alias, "tables": schema_of(vt.get_schema(alias)),
                                   "vschema": vt.get_vschema(ks)}
    return record


@task(name="backup-schema", cache_policy=NO_CACHE, task_run_name="backup-schema")
async def record_schema(k: kube.Kube, namespace: str, cluster: str, keyspaces: list[str]) -> dict:
    return await asyncio.to_thread(read_schema, k, namespace, cluster, keyspaces)


@task(name="backup-operator-schedule", cache_policy=NO_CACHE, task_run_name="backup-operator-schedule")
async def write_schedule(k: kube.Kube, namespace: str, cluster: str, vc: dict, shards: list[tuple[str, str]],
                            schedule: OperatorSchedule) -> ScheduleWrite:
    return await asyncio.to_thread(write_operator_schedule, k, namespace, cluster, vc, shards, schedule)


@task(name="backup-report-shard", cache_policy=NO_CACHE, task_run_name="backup-report-{ks}-{shard}")
async def report_backup(k: kube.Kube, namespace: str, cluster: str, ks: str, shard: str, retention: Retention | None,
                        job: dict | None) -> BackupResult:
    return await asyncio.to_thread(report_shard, k, namespace, cluster, ks, shard, retention, job)
