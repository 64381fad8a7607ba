"""The simulated VitessBackupSchedule side of vitess-operator (releases v2.13 and later).

Two parts, as in the real operator:
  1. the VitessCluster controller's ``reconcileBackupSchedule``: one VitessBackupSchedule per
     ``spec.backup.schedules[]`` entry, named ``JoinWithConstraints(cluster, "vbsc", name)``,
     labelled with the cluster, its spec the entry as written plus ``cluster``, ``image`` and
     ``imagePullPolicy`` (the vtctld image); gone when the entry goes (``reconcile_schedules``,
     called from operator.py's pass);
  2. the VitessBackupSchedule controller (``BackupScheduleController``): plain ``batch/v1``
     Jobs at the cron (or, v2.17, generated-from-frequency) times, no CronJobs; the double's own
     Job controller and kubelet then run them, and ``backup_job`` (a kubelet program) is what
     their container does: BackupShard through the simulated vtctld, so a successful Job leaves
     a backup (GetBackups lists it) and its VitessBackup object, and a shard whose backups fail
     (``VitessState.fail_backups_of``) makes its Jobs fail.

Checked against planetscale/vitess-operator at v2.13.1, v2.14.0, v2.15.1, v2.16.0 and v2.17.0
(``pkg/controller/vitessbackupschedule/vitessbackupschedule_controller.go``,
``schedule_generator.go``, ``pkg/apis/planetscale/v2/vitessbackupschedule_methods.go``,
``pkg/operator/vitessbackup/schedule.go``, ``pkg/controller/vitesscluster/reconcile_backup_schedule.go``,
``pkg/operator/names/join_constraints.go``). The releases differ, and the running release decides:
  - v2.13/v2.14: one Job per schedule and run, named ``<vbs>-<unix time>``, labelled only
    ``planetscale.com/backup-schedule`` plus the schedule's own labels; one container (named as
    the Job, the schedule's image) running ``/bin/sh -c "vtctldclient --server=<svc>:<port>
    BackupShard ks/shard && ..."`` for every strategy, ``restartPolicy: OnFailure``; status
    ``lastScheduledTime`` and ``active``;
  - v2.15 and later: one Job per strategy (shard) and run, named
    ``JoinWithConstraints(ServiceConstraints, vbs, keyspace, shardSafeName, unix time)``,
    labelled backup-schedule, cluster, keyspace, shard and backup-method, ``restartPolicy:
    Never``; v2.15/v2.16 always run vtbackup (a Job pod plus a claim named as the Job); v2.17
    also ``backupMethod: vtctldclient`` (container ``vtctldclient``, command
    ``/vt/bin/vtctldclient``, args ``--server=<svc>:<port> BackupShard [--flag=v sorted] ks/shard``),
    ``frequency``, and Keyspace/Cluster scopes expanded per shard (``<name>-<ks>-<safe shard>``);
    status ``lastScheduledTimes``/``nextScheduledTimes``/``generatedSchedules`` per strategy.
  - every release: the annotation ``planetscale.com/backup-scheduled-at`` (RFC 3339), the
    schedule as controller owner, finished Jobs beyond ``successfulJobsHistoryLimit`` /
    ``failedJobsHistoryLimit`` deleted oldest first (by ``status.startTime``; no limit: kept),
    active Jobs older than ``jobTimeoutMinute`` deleted, ``concurrencyPolicy: Forbid`` skipping a
    run while one is active, ``startingDeadlineSeconds``, ``suspend``, and more than
    ``allowedMissedRun`` (default 100) missed runs refused ("too many missed runs").
What the objects hold is pruned to the stored CRDs' schemas; Jobs and claims are validated as
the API server validates them, so a Job the real server would refuse is never made here.

Time: the controller's clock is the real one plus ``offset_s``; ``advance(seconds)`` moves it on
(a test cannot wait a minute for ``* * * * *``). Everything the controller decides (missed runs,
scheduled times, timeouts) uses that clock; objects' own timestamps stay the store's.
SIMPLIFIED: the real controller requeues at the next run time; here a one-second resync does
the same at cron's one-minute granularity. The vtbackup Job pod has only a ``vtbackup``
container (the real one adds mysqld and init containers) and takes the backup the way
BackupShard does, named after a serving replica (the real vtbackup names it after its own
tablet alias). The Job runs its BackupShard in the controller thread, so ``slow_backups``
delays the whole controller loop meanwhile.
"""

from __future__ import annotations

import copy
import hashlib
import shlex
import struct
from datetime import datetime, timedelta, timezone

from cronsim import CronSim, CronSimError

from ..controllers import Controller
from ..controllers.common import controller_of, owner_ref
from . import names

VBS = "planetscale.com/vitessbackupschedules"
VC = "planetscale.com/vitessclusters"
BACKUP_SCHEDULE = "planetscale.com/backup-schedule"
BACKUP_METHOD = "planetscale.com/backup-method"
SCHEDULED_AT = "planetscale.com/backup-scheduled-at"
VTCTLDCLIENT = "/vt/bin/vtctldclient"
VTBACKUP = "/vt/bin/vtbackup"
DEFAULT_ALLOWED_MISSED_RUNS = 100
FREQUENCY_EXAMPLES = "1m, 5m, 15m, 30m, 1h, 2h, 4h, 6h, 12h, 24h"


# ---------------------------------------------------------------- pure: names

def join_with_constraints(max_length: int, service: bool, *parts: str) -> str:
    """``names.JoinWithConstraints``: parts lower-cased (other characters to '-'), joined with
    '-', the hash of the original parts appended; too long: cut, and '---' before the hash.
    ``service``: the first character must be a letter (ServiceConstraints, 63), else a
    lower-case letter or digit (DefaultConstraints, 253)."""
    digest = names.name_hash(*parts)

    def fix(ch: str) -> str:
        if ch.isascii() and (ch.islower() or ch.isdigit() or ch == "-"):
            return ch
        return ch.lower() if ch.isascii() and ch.isupper() else "-"
    new = ["".join(fix(c) for c in p) for p in parts]
    first = new[0][:1]
    if not first or not (first.islower() if service else (first.islower() or first.isdigit())):
        new[0] = "x" + new[0]
    partial = "-".join(new)
    if len(partial) + 1 + len(digest) <= max_length:
        return f"{partial}-{digest}"
    cut = len(partial) + 1 + len(digest) - max_length + 2
    return partial[:len(partial) - cut] + "---" + digest


def schedule_name(cluster: str, schedule: str) -> str:
    """``vitessbackup.ScheduleName``."""
    return join_with_constraints(253, False, cluster, "vbsc", schedule)


def job_name(vbs: str, keyspace: str, safe_shard: str, when: datetime) -> str:
    """A v2.15+ Job: ``JoinWithConstraints(ServiceConstraints, vbs, ks, shard, unix)``."""
    return join_with_constraints(63, True, vbs, keyspace, safe_shard, str(int(when.timestamp())))


# ---------------------------------------------------------------- pure: schedules

def per_strategy(release) -> bool:
    """From v2.15 the controller runs one Job per strategy (shard); before, one per schedule."""
    return release.minor >= (2, 15)


def desired_schedules(vc: dict, release) -> list[dict]:
    """``NewVitessBackupSchedule`` for every entry of ``spec.backup.schedules`` that has a
    schedule (or, from v2.17, a frequency)."""
    spec = vc.get("spec") or {}
    backup = spec.get("backup")
    if not backup:
        return []
    ns, cluster = vc["metadata"]["namespace"], vc["metadata"]["name"]
    out = []
    for entry in backup.get("schedules") or []:
        has_frequency = release.minor >= (2, 17) and entry.get("frequency")
        if not entry.get("schedule") and not has_frequency:
            continue
        body = {**copy.deepcopy(entry), "cluster": cluster,
                "image": (spec.get("images") or {}).get("vtctld", "")}
        pull = (spec.get("imagePullPolicies") or {}).get("vtctld")
        if pull:
            body["imagePullPolicy"] = pull
        out.append({"apiVersion": "planetscale.com/v2", "kind": "VitessBackupSchedule",
                    "metadata": {"name": schedule_name(cluster, entry.get("name", "")), "namespace": ns,
                                 "labels": {names.CLUSTER: cluster}},
                    "spec": body})
    return out


def validate_frequency(minutes_total: float) -> str | None:
    """``ValidateBackupFrequency``: why a frequency cannot be a cron, or None."""
    total = int(minutes_total)
    if total < 1:
        return f"frequency must be at least 1 minute, got {minutes_total}m"
    if total != minutes_total:
        return "frequency must be expressible in whole minutes"
    if total < 60 and 60 % total:
        return f"supported sub-hour values must divide evenly into 1 hour (examples: {FREQUENCY_EXAMPLES})"
    if 60 <= total < 1440 and (total % 60 or 24 % (total // 60)):
        return f"supported intra-day values must be whole hours dividing 24 (examples: {FREQUENCY_EXAMPLES})"
    if total > 1440:
        return f"maximum supported value is 24h (examples: {FREQUENCY_EXAMPLES})"
    return None


def parse_go_duration(text: str) -> float:
    """A Go duration (``1h30m``, ``15m``, ``24h``) in minutes; ValueError when it is not one."""
    import re
    if not re.fullmatch(r"(\d+(\.\d+)?(h|m|s|ms|us|ns))+", text or ""):
        raise ValueError(f"time: invalid duration {text!r}")
    unit = {"h": 60, "m": 1, "s": 1 / 60, "ms": 1 / 60000, "us": 1 / 6e7, "ns": 1 / 6e10}
    return sum(float(n) * unit[u] for n, _, u in re.findall(r"(\d+(\.\d+)?)(h|ms|us|ns|m|s)", text))


def cron_from_frequency(minutes: int, cluster: str, keyspace: str, shard: str, strategy: str) -> str:
    """``generateCronFromFrequency``: a cron staggered by a hash of the shard's identity."""
    digest = hashlib.sha256(f"{cluster}|{keyspace}|{shard}|{strategy}".encode()).digest()
    offset = struct.unpack(">Q", digest[:8])[0] % minutes
    if minutes % 1440 == 0:
        day = offset % 1440
        return f"{day % 60} {day // 60} * * *" if minutes == 1440 else f"{day % 60} {day // 60} */{minutes // 1440} * *"
    if minutes % 60 == 0:
        step = minutes // 60
        return f"{offset % 60} * * * *" if step == 1 else f"{offset % 60} {(offset // 60) % step}/{step} * * *"
    if minutes < 60:
        return f"{offset % minutes}/{minutes} * * * *"
    return f"{offset % 60} {offset // 60} * * *"


def next_runs(cron: str, created: datetime, most_recent: datetime | None, now: datetime,
              starting_deadline_s: int | None, missed_limit: int) -> tuple[datetime | None, datetime]:
    """``getNextSchedule``: (the latest missed run or None, the next run). ValueError for a
    schedule cron cannot parse, or too many missed runs."""
    try:
        CronSim(cron, now)
    except CronSimError as e:
        raise ValueError(f"unable to parse schedule {cron!r}: {e}") from e
    latest = most_recent or created
    if starting_deadline_s is not None:
        latest = max(latest, now - timedelta(seconds=starting_deadline_s))
    following = next(CronSim(cron, now))
    if latest > now:
        return None, following
    missed, count = None, 0
    for t in CronSim(cron, latest):
        if t > now:
            break
        missed, count = t, count + 1
        if count > missed_limit:
            raise ValueError("too many missed runs, check clock skew or increase .spec.allowedMissedRun")
    return missed, following


def job_kind(job: dict) -> str:
    """``getJobsList``'s classes: failed (Failed or FailureTarget), successful (Complete), active."""
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("status") == "True" and c.get("type") in ("Failed", "FailureTarget"):
            return "failed"
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("status") == "True" and c.get("type") == "Complete":
            return "successful"
    return "active"


def scheduled_at(job: dict) -> datetime | None:
    raw = ((job["metadata"].get("annotations") or {}).get(SCHEDULED_AT)) or ""
    return datetime.fromisoformat(raw.replace("Z", "+00:00")) if raw else None


def rfc3339(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------- the VitessCluster side

def reconcile_schedules(double, vc: dict, release) -> None:
    """The VitessCluster controller's ``reconcileBackupSchedule`` (operator.py calls it each
    pass): create, update in place (spec only) or delete the cluster's VitessBackupSchedules.
    Nothing before v2.13, or when the stored CRDs have no VitessBackupSchedule."""
    if release.minor < (2, 13) or double.registry.by_gr("planetscale.com", "vitessbackupschedules") is None:
        return
    from vtflow.crdschema import prune_and_default

    ns, cluster = vc["metadata"]["namespace"], vc["metadata"]["name"]
    schema = double.registry.by_gr("planetscale.com", "vitessbackupschedules").schema
    want = {}
    for obj in desired_schedules(vc, release):
        prune_and_default(obj, schema, root=True)
        obj["metadata"]["ownerReferences"] = [owner_ref(vc)]
        want[obj["metadata"]["name"]] = obj
    for cur in double.list(VBS, ns, f"{names.CLUSTER}={cluster}"):
        c = controller_of(cur)
        if c and c.get("uid") == vc["metadata"]["uid"] and cur["metadata"]["name"] not in want:
            double.delete(VBS, ns, cur["metadata"]["name"])
    for name, obj in want.items():
        cur = double.get(VBS, ns, name)
        if cur is None:
            double.create(VBS, obj)
        elif cur.get("spec") != obj["spec"]:
            double.mutate(VBS, ns, name, lambda o, s=obj["spec"]: o.update(spec=copy.deepcopy(s)))


# ---------------------------------------------------------------- the VitessBackupSchedule controller

class BackupScheduleController(Controller):
    name = "vitessbackupschedule-controller"
    watches = (VBS, "batch/jobs")
    resync_s = 1.0

    def __init__(self, state):
        self.state = state
        self.offset_s = 0.0

    # -- time ----------------------------------------------------------------------------------
    def now(self) -> datetime:
        return datetime.now(timezone.utc) + timedelta(seconds=self.offset_s)

    def advance(self, double, seconds: float) -> None:
        """Move the controller's clock on by ``seconds`` and reconcile at once."""
        self.offset_s += seconds
        double.controllers.call_soon(lambda: self.resync(double))

    # -- triggers ------------------------------------------------------------------------------
    def handle(self, double, change) -> None:
        obj = change.obj
        if change.resource == "vitessbackupschedules":
            if change.type != "DELETED":
                self._reconcile(double, obj["metadata"]["namespace"], obj["metadata"]["name"])
            return
        owner = controller_of(obj)
        if owner and owner.get("kind") == "VitessBackupSchedule":
            self._reconcile(double, obj["metadata"]["namespace"], owner["name"])

    def resync(self, double) -> None:
        for vbs in double.list(VBS):
            self._reconcile(double, vbs["metadata"]["namespace"], vbs["metadata"]["name"])

    # -- one pass ------------------------------------------------------------------------------
    def _reconcile(self, double, ns: str, name: str) -> None:
        from .operator import running_operator

        vbs = double.get(VBS, ns, name)
        if vbs is None or vbs["metadata"].get("deletionTimestamp"):
            return
        op = running_operator(double, ns)
        if op is None or op.release.minor < (2, 13):
            return
        spec = vbs.get("spec") or {}
        if per_strategy(op.release):
            if spec.get("suspend"):
                return
            status = {"lastScheduledTimes": {}, "nextScheduledTimes": {}, "generatedSchedules": {},
                      **copy.deepcopy(vbs.get("status") or {})}
            seen = set()
            for strategy in self._expand(double, vbs, op.release):
                seen.add(strategy["name"])
                try:
                    self._strategy(double, vbs, strategy, op.release, status)
                except ValueError as e:
                    double.log(*self._operator_log(double, ns), f"VitessBackupSchedule {ns}/{name}: {e}")
            for key in ("lastScheduledTimes", "nextScheduledTimes", "generatedSchedules"):
                status[key] = {k: v for k, v in (status.get(key) or {}).items() if k in seen}
        else:
            status = self._whole(double, vbs, op.release)
        if status is not None:
            self._set_status(double, vbs, status)

    def _operator_log(self, double, ns: str) -> tuple[str, str, str]:
        from .operator import running_operator
        pod_ns, _, pod = running_operator(double, ns).pod.partition("/")
        return pod_ns, pod, "vitess-operator"

    def _expand(self, double, vbs: dict, release) -> list[dict]:
        """Shard scope as given; Keyspace and Cluster scope (v2.17) one strategy per shard."""
        ns, cluster = vbs["metadata"]["namespace"], vbs["spec"].get("cluster", "")
        out = []
        for s in vbs["spec"].get("strategies") or []:
            scope = s.get("scope") or "Shard"
            if scope == "Shard":
                out.append(s)
                continue
            for ks in sorted(double.list("planetscale.com/vitesskeyspaces", ns, f"{names.CLUSTER}={cluster}"),
                             key=lambda k: k["spec"].get("name", "")):
                ks_name = ks["spec"].get("name", "")
                if scope == "Keyspace" and ks_name != s.get("keyspace"):
                    continue
                for shard in sorted((ks.get("status") or {}).get("shards") or {}):
                    out.append({**s, "name": f"{s['name']}-{ks_name}-{names.safe_shard(shard)}",
                                "keyspace": ks_name, "shard": shard, "scope": "Shard"})
        return out

    def _jobs(self, double, ns: str, selector: str) -> dict[str, list[dict]]:
        out: dict[str, list[dict]] = {"active": [], "failed": [], "successful": []}
        for job in double.list("batch/jobs", ns, selector):
            if not job["metadata"].get("deletionTimestamp"):
                out[job_kind(job)].append(job)
        return out

    def _bookkeeping(self, double, vbs: dict, jobs: dict[str, list[dict]], now: datetime) -> None:
        """History limits (oldest first by startTime), then timed-out active Jobs."""
        spec, ns = vbs["spec"], vbs["metadata"]["namespace"]
        for kind, limit in (("failed", spec.get("failedJobsHistoryLimit")),
                            ("successful", spec.get("successfulJobsHistoryLimit"))):
            if limit is None:
                continue
            ordered = sorted(jobs[kind], key=lambda j: ((j.get("status") or {}).get("startTime") is not None,
                                                        (j.get("status") or {}).get("startTime") or ""))
            for job in ordered[:max(0, len(ordered) - int(limit))]:
                self._delete_job(double, ns, job)
        timeout = spec.get("jobTimeoutMinute")
        if timeout is None or timeout == -1:
            return
        for job in jobs["active"]:
            at = scheduled_at(job)
            if at is not None and at + timedelta(minutes=int(timeout)) < now:
                self._delete_job(double, ns, job)

    def _delete_job(self, double, ns: str, job: dict) -> None:
        name = job["metadata"]["name"]
        double.delete("batch/jobs", ns, name)
        if (job["metadata"].get("labels") or {}).get(BACKUP_METHOD, "vtbackup") == "vtbackup" and \
                double.get("persistentvolumeclaims", ns, name) is not None:
            double.delete("persistentvolumeclaims", ns, name)

    def _due(self, vbs: dict, cron: str, jobs: dict, now: datetime) -> tuple[datetime | None, datetime]:
        spec = vbs["spec"]
        created = datetime.fromisoformat(vbs["metadata"]["creationTimestamp"].replace("Z", "+00:00"))
        times = [t for j in jobs["active"] + jobs["failed"] + jobs["successful"] if (t := scheduled_at(j))]
        return next_runs(cron, created, max(times) if times else None, now, spec.get("startingDeadlineSeconds"),
                         spec.get("allowedMissedRun", DEFAULT_ALLOWED_MISSED_RUNS))

    def _gate(self, vbs: dict, jobs: dict, missed: datetime | None, now: datetime) -> bool:
        """May a Job for ``missed`` be created now (deadline, concurrency policy)?"""
        spec = vbs["spec"]
        if missed is None:
            return False
        deadline = spec.get("startingDeadlineSeconds")
        if deadline is not None and missed + timedelta(seconds=int(deadline)) < now:
            return False
        return not (spec.get("concurrencyPolicy") == "Forbid" and jobs["active"])

    def _strategy(self, double, vbs: dict, strategy: dict, release, status: dict) -> None:
        """One shard strategy of a v2.15+ schedule."""
        spec, ns, name = vbs["spec"], vbs["metadata"]["namespace"], vbs["metadata"]["name"]
        ks, shard = strategy.get("keyspace", ""), strategy.get("shard", "")
        if "-" not in shard:
            raise ValueError(f"invalid strategy shard: {shard}")
        safe = names.safe_shard(shard)
        selector = (f"{BACKUP_SCHEDULE}={name},{names.CLUSTER}={spec.get('cluster', '')},"
                    f"{names.KEYSPACE}={ks},{names.SHARD}={safe}")
        now = self.now()
        jobs = self._jobs(double, ns, selector)
        self._bookkeeping(double, vbs, jobs, now)
        cron = spec.get("schedule") or ""
        if release.minor >= (2, 17) and spec.get("frequency"):
            if cron:
                raise ValueError(f"schedule {spec.get('name')!r}: Schedule and Frequency are mutually exclusive, set only one")
            minutes = parse_go_duration(spec["frequency"])
            problem = validate_frequency(minutes)
            if problem:
                raise ValueError(f"schedule {spec.get('name')!r}: {problem}")
            cron = cron_from_frequency(int(minutes), spec.get("cluster", ""), ks, shard, strategy["name"])
            status["generatedSchedules"][strategy["name"]] = cron
        missed, following = self._due(vbs, cron, jobs, now)
        status["nextScheduledTimes"][strategy["name"]] = rfc3339(following)
        if not self._gate(vbs, jobs, missed, now):
            return
        method = (spec.get("backupMethod") or "vtbackup") if release.minor >= (2, 17) else "vtbackup"
        if method == "vtbackup" and not self._shard_bootstrapped(double, ns, spec.get("cluster", ""), ks, shard):
            return   # errWaitingForShardBootstrap: deferred to the next run
        jname = job_name(name, ks, safe, missed)
        labels = {BACKUP_SCHEDULE: name, names.CLUSTER: spec.get("cluster", ""), names.KEYSPACE: ks,
                  names.SHARD: safe, BACKUP_METHOD: method}
        meta = self._job_meta(vbs, jname, {**(vbs["metadata"].get("labels") or {}), **labels}, missed)
        if method == "vtctldclient":
            server = self._vtctld_server(double, ns, spec.get("cluster", ""))
            flags = [f"--{k}={v}" for k, v in sorted((strategy.get("extraFlags") or {}).items())]
            container = {"name": "vtctldclient", "image": spec.get("image", ""), "command": [VTCTLDCLIENT],
                         "args": [f"--server={server}", "BackupShard", *flags, f"{ks}/{shard}"],
                         "resources": copy.deepcopy(spec.get("resources") or {})}
            if spec.get("imagePullPolicy"):
                container["imagePullPolicy"] = spec["imagePullPolicy"]
            pod = {"restartPolicy": "Never", "containers": [container]}
        else:
            pod = self._vtbackup_pod(double, vbs, jname, ks, shard)
            if pod is None:
                return
        if double.get("batch/jobs", ns, jname) is None:
            self._create_job(double, vbs, meta, pod)
            status["lastScheduledTimes"][strategy["name"]] = rfc3339(missed)

    def _whole(self, double, vbs: dict, release) -> dict | None:
        """A v2.13/v2.14 schedule: one Job per run for all its strategies."""
        spec, ns, name = vbs["spec"], vbs["metadata"]["namespace"], vbs["metadata"]["name"]
        now = self.now()
        jobs = self._jobs(double, ns, f"{BACKUP_SCHEDULE}={name}")
        times = [t for j in jobs["active"] + jobs["failed"] + jobs["successful"] if (t := scheduled_at(j))]
        status = {"lastScheduledTime": rfc3339(max(times)) if times else None,
                  "active": [{"apiVersion": "batch/v1", "kind": "Job", "namespace": ns, "name": j["metadata"]["name"],
                              "uid": j["metadata"]["uid"]} for j in jobs["active"]]}
        self._bookkeeping(double, vbs, jobs, now)
        if spec.get("suspend"):
            return status
        try:
            missed, _ = self._due(vbs, spec.get("schedule") or "", jobs, now)
        except ValueError as e:
            double.log(*self._operator_log(double, ns), f"VitessBackupSchedule {ns}/{name}: {e}")
            return status
        if not self._gate(vbs, jobs, missed, now):
            return status
        jname = f"{name}-{int(missed.timestamp())}"
        server = self._vtctld_server(double, ns, spec.get("cluster", ""))
        cmds = []
        for s in spec.get("strategies") or []:
            if s.get("name") == "BackupShard":
                flags = "".join(f" --{k}={v}" for k, v in (s.get("extraFlags") or {}).items())
                cmds.append(f"{VTCTLDCLIENT} --server={server} BackupShard{flags} {s.get('keyspace')}/{s.get('shard')}")
        container = {"name": jname, "image": spec.get("image", ""), "resources": copy.deepcopy(spec.get("resources") or {}),
                     "args": ["/bin/sh", "-c", " && ".join(cmds)]}
        if spec.get("imagePullPolicy"):
            container["imagePullPolicy"] = spec["imagePullPolicy"]
        meta = self._job_meta(vbs, jname, {BACKUP_SCHEDULE: name, **(vbs["metadata"].get("labels") or {})}, missed)
        if double.get("batch/jobs", ns, jname) is None:
            self._create_job(double, vbs, meta, {"restartPolicy": "OnFailure", "containers": [container]})
        return status

    # -- building and creating -----------------------------------------------------------------
    @staticmethod
    def _job_meta(vbs: dict, name: str, labels: dict, when: datetime) -> dict:
        annotations = {**(vbs["metadata"].get("annotations") or {}), **(vbs["spec"].get("annotations") or {}),
                       SCHEDULED_AT: rfc3339(when)}
        return {"name": name, "namespace": vbs["metadata"]["namespace"], "labels": labels, "annotations": annotations}

    @staticmethod
    def _vtctld_server(double, ns: str, cluster: str) -> str:
        """``getVtctldServiceName``: a vtctld Service of the cluster and its grpc port; no Service:
        the Job cannot be built (the real controller's error)."""
        for svc in double.list("services", ns, f"{names.CLUSTER}={cluster},{names.COMPONENT}=vtctld"):
            port = next((p["port"] for p in svc["spec"].get("ports") or [] if p.get("name") == "grpc"), None)
            if port:
                return f"{svc['metadata']['name']}:{port}"
        raise ValueError(f"no vtctld service found in {ns!r} namespace")

    @staticmethod
    def _shard(double, ns: str, cluster: str, ks: str, shard: str) -> dict | None:
        for s in double.list("planetscale.com/vitessshards", ns, f"{names.CLUSTER}={cluster},{names.KEYSPACE}={ks}"):
            if (s.get("spec") or {}).get("name") == shard:
                return s
        return None

    def _shard_bootstrapped(self, double, ns: str, cluster: str, ks: str, shard: str) -> bool:
        """``shardReadyForScheduledBackup``, asked only while the shard has no complete backup."""
        if self.state.list_backups(ns, cluster, ks, shard):
            return True
        vts = self._shard(double, ns, cluster, ks, shard)
        st = (vts or {}).get("status") or {}
        tablets = st.get("tablets") or {}
        return (st.get("hasMaster") == "True" and st.get("hasInitialBackup") == "True" and bool(tablets)
                and all(t.get("ready") == "True" for t in tablets.values()))

    def _vtbackup_pod(self, double, vbs: dict, jname: str, ks: str, shard: str) -> dict | None:
        ns, cluster = vbs["metadata"]["namespace"], vbs["spec"].get("cluster", "")
        vts = self._shard(double, ns, cluster, ks, shard)
        if vts is None:
            raise ValueError(f"unable to find shard {shard} in keyspace {ks} in {ns}")
        if double.get("persistentvolumeclaims", ns, jname) is not None:
            raise ValueError(f"PVC already exists for job {jname}")
        pools = (vts.get("spec") or {}).get("tabletPools") or [{}]
        claim_spec = copy.deepcopy(pools[0].get("dataVolumeClaimTemplate") or
                                   {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}})
        claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                 "metadata": {"name": jname, "namespace": ns, "labels": {names.CLUSTER: cluster}},
                 "spec": claim_spec}
        self._create(double, "persistentvolumeclaims", claim, vbs)
        image = ((vts.get("spec") or {}).get("images") or {}).get("vtbackup") or vbs["spec"].get("image", "")
        return {"restartPolicy": "Never",
                "containers": [{"name": "vtbackup", "image": image, "command": [VTBACKUP],
                                "args": [f"--init_keyspace={ks}", f"--init_shard={shard}", "--initial_backup=false",
                                         "--logtostderr"],
                                "volumeMounts": [{"name": "vt", "mountPath": "/vt/vtdataroot"}],
                                "resources": copy.deepcopy(pools[0].get("vttablet") or {})}],
                "volumes": [{"name": "vt", "persistentVolumeClaim": {"claimName": jname}}]}

    def _create_job(self, double, vbs: dict, meta: dict, pod_spec: dict) -> None:
        job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": copy.deepcopy(meta),
               "spec": {"template": {"metadata": copy.deepcopy(meta), "spec": pod_spec}}}
        job["spec"]["template"]["metadata"].pop("name", None)
        job["spec"]["template"]["metadata"].pop("namespace", None)
        self._create(double, "batch/jobs", job, vbs)

    @staticmethod
    def _create(double, ref: str, obj: dict, owner: dict) -> dict:
        """As the real controller creates through the API: defaults, the server's validation
        (an object it would refuse raises, and is logged by the controller loop), admission."""
        from ..admission import admit
        from ..defaults import apply_defaults
        from ..validation import validate

        obj["metadata"]["ownerReferences"] = [owner_ref(owner)]
        group, _, plural = ref.rpartition("/")
        rt = double.registry.by_gr(group, plural)
        obj = apply_defaults(group, plural, copy.deepcopy(obj))
        if ref == "batch/jobs":
            _job_selector(obj)
        obj = validate(rt, obj, double.config.server_version)
        admit(double.store, rt, obj, None)
        return double.create(ref, obj)

    @staticmethod
    def _set_status(double, vbs: dict, status: dict) -> None:
        from vtflow.crdschema import prune_and_default

        rt = double.registry.by_gr("planetscale.com", "vitessbackupschedules")
        schema = (((rt.schema if rt else None) or {}).get("properties") or {}).get("status")
        status = {k: v for k, v in status.items() if v is not None}
        if schema:
            status = prune_and_default(copy.deepcopy(status), schema)
        if (vbs.get("status") or {}) != status:
            m = vbs["metadata"]
            double.mutate(VBS, m["namespace"], m["name"], lambda o: o.update(status=status))


def _job_selector(job: dict) -> None:
    """What the API server adds to a Job without ``manualSelector`` (batch's PrepareForCreate):
    ``spec.selector`` on the controller uid and that label, and ``job-name``, on the template
    (a Job name longer than 63 characters is therefore refused: the label cannot hold it). The
    uid is only known once stored, so a fresh one stands in (SIMPLIFIED)."""
    import uuid

    spec = job["spec"]
    uid = str(uuid.uuid4())
    spec.setdefault("selector", {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}})
    labels = spec["template"].setdefault("metadata", {}).setdefault("labels", {})
    labels.setdefault("batch.kubernetes.io/controller-uid", uid)
    labels.setdefault("batch.kubernetes.io/job-name", job["metadata"]["name"])


# ---------------------------------------------------------------- what a backup Job's container does

def backup_job(state):
    """The kubelet program of backup Job containers: vtctldclient BackupShard (v2.17's
    vtctldclient method, v2.13's ``sh -c`` chain) or vtbackup, run through the simulated vtctld;
    exit 0 when every backup was taken, 1 (with the client's error in the log) otherwise."""

    def program(double, pod: dict, container: dict, env: dict):
        from ..controllers.kubelet import Run

        if BACKUP_SCHEDULE not in (pod["metadata"].get("labels") or {}):
            return None
        argv = [str(a) for a in (container.get("command") or []) + (container.get("args") or [])]
        if argv[:2] == ["/bin/sh", "-c"] and len(argv) == 3:
            commands = [shlex.split(part) for part in argv[2].split("&&")]
        elif argv and argv[0] in (VTCTLDCLIENT, VTBACKUP):
            commands = [argv]
        else:
            return None
        lines, code = run_backups(double, state, pod, commands)
        if code:
            # the process exits non-zero: the pod ends Failed, and the Job controller counts it
            ns, name = pod["metadata"].get("namespace", ""), pod["metadata"]["name"]
            double.controllers.call_soon(lambda: double.kubelet.fail(double, ns, name, code))
        # exit 0: the kubelet ends a Job's pod Succeeded after config.job_duration
        return Run(lines)

    return program


def run_backups(double, state, pod: dict, commands: list[list[str]]) -> tuple[list[str], int]:
    """Run a backup Job's commands in order through the simulated vtctld: (log lines, exit code
    of the first that failed, or 0)."""
    from .vtctld import UsageError, Vtctld

    handler = Vtctld(double, state)
    ns = pod["metadata"].get("namespace", "")
    lines: list[str] = []
    for cmd in commands:
        if cmd and cmd[0] == VTBACKUP:
            opts = dict(a.lstrip("-").split("=", 1) for a in cmd[1:] if "=" in a)
            args = ["BackupShard", f"{opts.get('init_keyspace')}/{opts.get('init_shard')}"]
        elif cmd and cmd[0] == VTCTLDCLIENT:
            args = [a for a in cmd[1:] if not a.startswith("--server=")]
            server = next((a.split("=", 1)[1] for a in cmd[1:] if a.startswith("--server=")), "")
            host, _, port = server.rpartition(":")
            svc = double.get("services", ns, host) if host else None
            if svc is None or not any(str(p.get("port")) == port for p in svc["spec"].get("ports") or []):
                lines.append(f"E0000 00:00:00.000000       1 main.go:56] rpc error: code = Unavailable desc = "
                             f"connection error: desc = \"transport: Error while dialing: dial tcp {server}: "
                             "connect: connection refused\"")
                return lines, 1
        else:
            lines.append(f"/bin/sh: 1: {cmd[0] if cmd else ''}: not found")
            return lines, 127
        try:
            r = handler.run(args, None, pod)
        except UsageError as e:
            lines.append(f"Error: {e}")
            return lines, 1
        lines += [ln for ln in (r.out + r.err).splitlines() if ln]
        if r.code != 0:
            return lines, r.code
    return lines, 0
