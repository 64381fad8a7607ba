"""The restore drill's steps: prove that a shard's newest complete backup restores.

With a backup location every new vttablet restores the shard's newest complete backup before it
replicates from the primary (vitess-operator pkg/operator/vttablet/backup.go passes
``restore_from_backup``). So the drill adds ONE scratch tablet to the shard through the
VitessCluster, waits until its vttablet says it restored that backup (``RestoredBackupTime`` in
its /debug/vars, VITESS-WORKFLOWS.md section 3) and is serving, waits until every table's row
count and ``CHECKSUM TABLE`` equal the primary's (``vtctldclient ExecuteFetchAsDBA`` on both
tablets), and removes the tablet and its claim again.

How the scratch tablet is added (read in planetscale/vitess-operator):
- One shard only: a keyspace's ``partitionings`` are unioned by key range and a later
  partitioning's shard replaces an earlier one's (``VitessKeyspaceTemplate.ShardTemplates``,
  vitesskeyspace_methods.go), so the drill appends a ``custom`` partitioning holding just the
  drilled shard: its template as it is, plus the scratch pool. An ``equal`` template would put
  a scratch tablet in every shard. The CRD allows two partitionings at most; a keyspace already
  at two (resharding) is refused.
- An ``rdonly`` pool in the cell of the shard's replica pool (its resources, claim template and
  scheduling rules), or one more in the shard's rdonly pool there: an rdonly tablet is never
  promoted to primary and vtgate sends it only queries that ask for ``@rdonly``. Another pool
  of type replica in the same cell is impossible (a tablet's UID is a hash of cell, keyspace,
  key range, type and index, vttablet/uid.go), and one more replica would take replica reads.
- The scratch pod and its claim share a name (reconcile_tablets.go). When the pool shrinks back
  the operator drains the tablet and deletes the pod, then the claim; the drill deletes the
  claim itself too, so nothing stays behind whatever the operator release does.
- The VitessCluster carries the annotation ``vtflow.io/restore-drill`` from the patch that adds
  the tablet until it and its claim are gone; a run that finds it (a run killed half-way)
  removes the leftover first. Both patches are JSON merge patches (``keyspaces`` is replaced
  whole) with the VitessCluster's resourceVersion, so a concurrent change is refused, not lost.

Pure builders first (the spec change, the preflight, comparing tables, reading the tablet's
vars, the health check's judgement), then the I/O, through ``vtflow.kube`` and ``vtflow.vtctld``.
It must not decide the run's outcome (flows/restore_drill.py does) nor build names of
objects other than the drill's own marks.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.backup import backup_time, newest_complete
from tasks.cluster import NodeRoom, _pod_requests, node_room
from tasks.report import Finding
from tasks.verify import expected_tablets_of
from vtflow import kube, names
from vtflow.errors import ConfigError, PermanentError, ReadyTimeout
from vtflow.quantity import cpu_millis, memory_bytes
from vtflow.vtctld import CommandFailed, CommandUnavailable, Vtctld, tablet_alias

# the drill's own marks (SUGGESTED for vtflow/names.py, with the tablet labels below)
ANNOTATION = "vtflow.io/restore-drill"          # on the VitessCluster while a scratch tablet exists
SHARD_MARK = "vtflow.io/restore-drill-scratch"  # on the custom shard entry the drill appends
FIELD_MANAGER = "vtflow-restore-drill"
TABLET_UID = f"{names.LABEL_PREFIX}/tablet-uid"     # vitess-operator labels.go
TABLET_TYPE = f"{names.LABEL_PREFIX}/tablet-type"
HOSTNAME = "kubernetes.io/hostname"
EXPORTER_DEFAULT = (10, 32 << 20)                # mysqld-exporter sidecar (vttablet/constants.go)
VARS_COMMAND = ["wget", "-qO-", "http://localhost:15000/debug/vars"]
POLL_S = 0.5


@dataclass
class DrillResult:
    keyspace: str
    shard: str
    ok: bool = False
    backup: str = ""
    backup_time: str = ""
    restore_seconds: float | None = None   # from the VitessCluster change to the tablet serving its restore
    catchup_seconds: float | None = None   # from serving to every table equal to the primary's
    tables: list[str] = field(default_factory=list)
    finding: Finding | None = None          # what failed, with its fix

    @property
    def name(self) -> str:
        return f"{self.keyspace}/{self.shard}"


# ---------------------------------------------------------------- pure: which shards, which backup


def drill_shards(vc: dict | None, namespace: str, cluster: str, shard: str = "") -> list[tuple[str, str]]:
    """``shard`` ("ks/shard") or every shard of the cluster in order; refuses a cluster that cannot restore."""
    subject = f"VitessCluster {namespace}/{cluster}"
    if vc is None:
        raise ConfigError(subject, "does not exist.", "run the deploy flow first.")
    if not ((vc.get("spec") or {}).get("backup") or {}).get("locations"):
        raise ConfigError(subject, "has no backup location (spec.backup.locations is empty), so no tablet restores "
                          "from a backup.", "set the deploy's cluster.backup.kind to volume or s3, re-deploy, run the "
                          "backup flow, then the drill.")
    every = sorted(expected_tablets_of(vc))
    if not shard:
        return every
    ks, _, sh = shard.partition("/")
    if (ks, sh) not in every:
        raise ConfigError(f"shard {shard!r}", f"is not a shard of {subject}.",
                          "give one of " + ", ".join(f"{k}/{s}" for k, s in every) + ", or leave it empty for all.")
    return [(ks, sh)]


def rfc3339(when: datetime | None) -> str:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if when else ""


# ---------------------------------------------------------------- pure: the spec change


def _shard_range(shard: str) -> dict:
    start, _, end = shard.partition("-")
    return {"start": start, "end": end}


def _shards_of(part: dict) -> dict[str, dict]:
    """A partitioning's shards and their templates (shard name -> template)."""
    if "equal" in part:
        tpl = part["equal"].get("shardTemplate") or {}
        return {s: tpl for s in names.shard_names(int(part["equal"].get("parts", 1)))}
    out = {}
    for s in (part.get("custom") or {}).get("shards") or []:
        kr = s.get("keyRange") or {}
        out[f"{kr.get('start', '')}-{kr.get('end', '')}"] = s
    return out


def is_drill_partitioning(part: dict) -> bool:
    shards = (part.get("custom") or {}).get("shards") or []
    return bool(shards) and all(SHARD_MARK in (s.get("annotations") or {}) for s in shards)


def scratch_pool(pools: list[dict]) -> tuple[list[dict], dict]:
    """The shard's pools with room for one scratch rdonly tablet, and the pool it lands in."""
    pools = copy.deepcopy(pools)
    replica = next((p for p in pools if p.get("type", "replica") == "replica"), None)
    if replica is None:
        raise ConfigError("tablet pools", "have no replica pool to model the scratch tablet on.",
                          "drill a shard whose tablets run in a replica pool (not an external datastore).")
    cell = replica.get("cell")
    existing = next((p for p in pools if p.get("type") == "rdonly" and p.get("cell") == cell and not p.get("name")), None)
    if existing is not None:
        existing["replicas"] = int(existing.get("replicas", 0)) + 1
        return pools, existing
    pool = copy.deepcopy(replica)
    pool.update(type="rdonly", replicas=1)
    pools.append(pool)
    return pools, pool


def with_scratch(keyspaces: list[dict], ks: str, shard: str) -> tuple[list[dict], dict]:
    """``spec.keyspaces`` with one scratch tablet in ``ks/shard`` (see the module docstring), and the
    scratch pool. A new list; ConfigError when the keyspace cannot take one."""
    out = copy.deepcopy(keyspaces)
    entry = next((k for k in out if k.get("name") == ks), None)
    if entry is None:
        raise ConfigError(f"keyspace {ks}", "is not in the VitessCluster spec.", "give a keyspace the cluster has.")
    parts = entry.get("partitionings") or []
    if any(is_drill_partitioning(p) for p in parts):
        raise ConfigError(f"keyspace {ks}", "has a scratch tablet of an earlier drill.", "let the drill remove it first.")
    if len(parts) != 1:
        raise ConfigError(f"keyspace {ks}", f"has {len(parts)} partitionings (resharding is under way), and the CRD "
                          "allows no third for the scratch tablet.", "drill it after the resharding is complete.")
    template = _shards_of(parts[0]).get(shard)
    if template is None:
        raise ConfigError(f"shard {ks}/{shard}", "is not in the keyspace's partitioning.", "give a shard it has.")
    pools, pool = scratch_pool(template.get("tabletPools") or [])
    custom = {k: copy.deepcopy(v) for k, v in template.items() if k not in ("keyRange", "tabletPools", "annotations")}
    custom.update(keyRange=_shard_range(shard), tabletPools=pools,
                  annotations={**(template.get("annotations") or {}), SHARD_MARK: "true"})
    parts.append({"custom": {"shards": [custom]}})
    return out, pool


def without_scratch(keyspaces: list[dict]) -> list[dict]:
    """``spec.keyspaces`` with every partitioning a drill appended removed."""
    out = copy.deepcopy(keyspaces)
    for entry in out:
        entry["partitionings"] = [p for p in entry.get("partitionings") or [] if not is_drill_partitioning(p)]
    return out


# ---------------------------------------------------------------- pure: preflight


def tablet_demand(pool: dict) -> tuple[int, int]:
    """One tablet pod's requests (CPU millis, memory bytes): vttablet, mysqld and the exporter."""
    cpu = mem = 0
    for part in (pool.get("vttablet") or {}, pool.get("mysqld") or {}):
        req = ((part.get("resources") or {}).get("requests")) or {}
        cpu, mem = cpu + cpu_millis(req.get("cpu", "0")), mem + memory_bytes(req.get("memory", "0"))
    exp = (((pool.get("mysqldExporter") or {}).get("resources") or {}).get("requests")) or {}
    cpu += cpu_millis(exp["cpu"]) if "cpu" in exp else EXPORTER_DEFAULT[0]
    mem += memory_bytes(exp["memory"]) if "memory" in exp else EXPORTER_DEFAULT[1]
    return cpu, mem


def _allowed_nodes(pool: dict, nodes: list[str]) -> list[str]:
    """The nodes the pool's required node affinity allows (``matchFields metadata.name In``, as the
    sizing renders it; other terms are taken as allowing every node)."""
    required = ((((pool.get("affinity") or {}).get("nodeAffinity") or {})
                 .get("requiredDuringSchedulingIgnoredDuringExecution")) or {}).get("nodeSelectorTerms") or []
    allowed: set[str] = set()
    for term in required:
        fields = term.get("matchFields") or []
        if term.get("matchExpressions") or not fields:
            return nodes
        for f in fields:
            if f.get("key") == "metadata.name" and f.get("operator") == "In":
                allowed.update(f.get("values") or [])
    return [n for n in nodes if n in allowed] if required else nodes


def _spread_nodes(pool: dict, candidates: list[str], pods: list[dict]) -> list[str]:
    """The candidates a DoNotSchedule hostname spread constraint still allows one more pod on."""
    for c in pool.get("topologySpreadConstraints") or []:
        if c.get("topologyKey") != HOSTNAME or c.get("whenUnsatisfiable") != "DoNotSchedule":
            continue
        want = ((c.get("labelSelector") or {}).get("matchLabels")) or {}
        count = {n: 0 for n in candidates}
        for p in pods:
            node = (p.get("spec") or {}).get("nodeName")
            if node in count and want.items() <= (p["metadata"].get("labels") or {}).items():
                count[node] += 1
        low = min(count.values(), default=0)
        candidates = [n for n in candidates if count[n] + 1 - low <= int(c.get("maxSkew", 1))]
    return candidates


def scratch_room(rooms: list[NodeRoom], pool: dict, pods: list[dict]) -> tuple[str | None, list[str]]:
    """The node that can hold the scratch tablet (the roomiest allowed one), or None, and the
    lines that say why, with the numbers."""
    need_cpu, need_mem = tablet_demand(pool)
    allowed = _spread_nodes(pool, _allowed_nodes(pool, [r.node for r in rooms]), pods)
    lines = [f"one scratch tablet requests {need_cpu}m CPU and {need_mem / (1 << 30):.2f} GiB"]
    fits = []
    for r in rooms:
        why = ("" if r.node in allowed else " (the pool's scheduling rules exclude it)")
        lines.append(f"node {r.node}: free {r.free_cpu_millis}m CPU, {r.free_memory_bytes / (1 << 30):.2f} GiB{why}")
        if r.node in allowed and r.free_cpu_millis >= need_cpu and r.free_memory_bytes >= need_mem:
            fits.append(r)
    best = max(fits, key=lambda r: (r.free_memory_bytes, r.free_cpu_millis), default=None)
    return (best.node if best else None), lines


def room_with_every_pod(nodes: list[dict], pods: list[dict]) -> list[NodeRoom]:
    """Each node's room with every running pod counted (the cluster's own and the operator's too:
    the scratch tablet comes on top of them all)."""
    rooms = node_room(nodes, pods, cluster="")   # "" matches no pod: none is left out as "this cluster's"
    operator = [p for p in pods if names.OPERATOR_POD_LABELS.items() <= (p["metadata"].get("labels") or {}).items()
                and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
    for r in rooms:
        for p in operator:
            if (p.get("spec") or {}).get("nodeName") == r.node:
                c, m = _pod_requests(p)
                r.used_cpu_millis += c
                r.used_memory_bytes += m
    return rooms


# ---------------------------------------------------------------- pure: what the tablets say


def restored_backup_time(vars_text: str) -> str:
    """vttablet's ``RestoredBackupTime`` expvar ("" until it restored)."""
    try:
        return str(json.loads(vars_text).get("RestoredBackupTime") or "")
    except ValueError:
        return ""


def same_second(rfc: str, when: datetime | None) -> bool:
    if not rfc or when is None:
        return False
    return datetime.fromisoformat(rfc.replace("Z", "+00:00")).replace(microsecond=0) == when.replace(microsecond=0)


def fetch_rows(out: str) -> list[list]:
    """The rows of ``ExecuteFetchAsDBA --json`` (a sqltypes.Result; rows null when empty)."""
    return json.loads(out or "{}").get("rows") or []


def stats_queries(tables: list[str]) -> tuple[str, str]:
    """One query for every table's row count, one for every table's checksum."""
    counts = "SELECT " + ", ".join(f"(SELECT COUNT(*) FROM `{t}`)" for t in tables)
    return counts, "CHECKSUM TABLE " + ", ".join(f"`{t}`" for t in tables)


def table_stats(tables: list[str], count_rows: list[list], checksum_rows: list[list]) -> dict[str, tuple[int, str]]:
    """table -> (rows, checksum) from the two queries' rows (CHECKSUM TABLE names tables ``db.table``)."""
    counts = [int(v) for v in (count_rows[0] if count_rows else [])]
    sums = {str(r[0]).rsplit(".", 1)[-1]: str(r[1]) for r in checksum_rows}
    return {t: (counts[i] if i < len(counts) else -1, sums.get(t, "")) for i, t in enumerate(tables)}


def differences(primary: dict[str, tuple[int, str]], scratch: dict[str, tuple[int, str]]) -> list[str]:
    """One line per table whose rows or checksum differ."""
    out = []
    for t in sorted(primary):
        p, s = primary[t], scratch.get(t, (-1, ""))
        if p != s:
            out.append(f"{t} (rows {s[0]} vs the primary's {p[0]}, checksum {s[1] or '-'} vs {p[1] or '-'})")
    return out


# ---------------------------------------------------------------- pure: the health check's judgement


def drill_variable(cluster: str) -> str:
    """The Prefect Variable holding the last drill's outcome, per cluster."""
    return f"vtflow-restore-drill-{cluster}"


def drill_record(results: list[DrillResult], at: datetime) -> dict:
    """What the health check keeps of a drill: "ok", "failed", or "refused" when every shard
    that did not pass could not be drilled (no room: its finding is a warning)."""
    failed = [r for r in results if not r.ok]
    refused = failed and all(r.finding is not None and r.finding.level == "warn" for r in failed)
    return {"at": at.astimezone(timezone.utc).isoformat(),
            "result": "refused" if refused else "failed" if failed else "ok",
            "shards": [r.name for r in results],
            "problem": "; ".join(f"{r.name}: {r.finding.problem if r.finding else 'failed'}" for r in failed)}


def drill_finding(record: dict | None, now: datetime, max_age_days: float = 8) -> Finding:
    """The health check's judgement of the last drill: none, too old or one that could not run
    (no room) warns, a failed one fails."""
    name = "restore drill"
    fix = "run the restore-drill flow (deployment restore-drill), or turn on its weekly schedule."
    if not record or not record.get("at"):
        return Finding(name=name, level="warn", problem="no restore drill has run: no backup is proven to restore",
                       fix=fix)
    at = datetime.fromisoformat(record["at"])
    age_d = (now - at).total_seconds() / 86400
    if record.get("result") == "refused":
        return Finding(name=name, level="warn", problem=f"the last drill ({age_d:.1f} days ago) could not run: "
                       f"{record.get('problem') or 'see its run'}", fix="free room for one tablet on a node, then run "
                       "the drill again: until then no backup is proven to restore.")
    if record.get("result") != "ok":
        return Finding(name=name, level="fail", problem=f"the last drill ({age_d:.1f} days ago) failed: "
                       f"{record.get('problem') or 'see its run'}", fix="act on the drill's finding, take a new backup "
                       "(backup flow), then run the drill again.")
    if age_d > max_age_days:
        return Finding(name=name, level="warn", problem=f"the last drill passed {age_d:.1f} days ago (more than "
                       f"{max_age_days:g})", fix=fix)
    return Finding(name=name, level="ok", problem=f"last drill passed {age_d:.1f} days ago on "
                   f"{', '.join(record.get('shards') or [])}")


async def last_drill(cluster: str) -> dict | None:
    """The last drill's record (what ``drill_finding`` judges), or None when none has run."""
    from prefect.variables import Variable

    value = await Variable.aget(drill_variable(cluster), default=None)
    return value if isinstance(value, dict) else None


# ---------------------------------------------------------------- I/O


class Drill:
    """The drill of one cluster: its clients and names, and the steps."""

    def __init__(self, k: kube.Kube, namespace: str, cluster: str, log):
        self.k, self.namespace, self.cluster, self.log = k, namespace, cluster, log
        self.vt = Vtctld(k, namespace, cluster)

    @property
    def subject(self) -> str:
        return f"VitessCluster {self.namespace}/{self.cluster}"

    def vc(self) -> dict:
        vc = self.k.get("planetscale.com/v2", "VitessCluster", self.cluster, self.namespace)
        if vc is None:
            raise ConfigError(self.subject, "does not exist.", "run the deploy flow first.")
        return vc

    def shard_pods(self, ks: str, shard: str) -> list[dict]:
        sel = names.selector({**names.cluster_labels(self.cluster, names.VTTABLET), names.KEYSPACE: ks,
                              names.SHARD: names.shard_label(shard)})
        return [p for p in self.k.list("v1", "Pod", self.namespace, label_selector=sel)
                if not p["metadata"].get("deletionTimestamp")]

    def _patch(self, change, attempts: int = 5) -> None:
        """A merge patch made by ``change(vc) -> patch`` from the VitessCluster as read, carrying its
        resourceVersion; read again and remade when the operator (status) or a person wrote meanwhile."""
        for attempt in range(attempts):
            vc = self.vc()
            body = change(vc)
            body.setdefault("metadata", {})["resourceVersion"] = vc["metadata"]["resourceVersion"]
            try:
                self.k.patch("planetscale.com/v2", "VitessCluster", self.cluster, self.namespace, body,
                             manager=FIELD_MANAGER)
                return
            except PermanentError as e:
                if not e.problem.startswith("conflict") or attempt == attempts - 1:
                    raise

    # -- the steps

    def preflight(self, vc: dict, ks: str, shard: str) -> dict:
        """The scratch pool, or a refusal with the numbers, before any change."""
        _, pool = with_scratch((vc.get("spec") or {}).get("keyspaces") or [], ks, shard)
        pods = self.k.list("v1", "Pod")
        node, lines = scratch_room(room_with_every_pod(self.k.list("v1", "Node"), pods), pool, pods)
        if node is None:
            raise PermanentError(f"shard {ks}/{shard} of {self.subject}", "no node can hold one more tablet, so the "
                                 "drill changed nothing: " + "; ".join(lines) + ".",
                                 "free room on a node (or add one), or lower the pool's vttablet/mysqld requests.")
        self.log.info("%s/%s preflight: %s; it fits on %s", ks, shard, "; ".join(lines), node)
        return pool

    def add(self, ks: str, shard: str) -> set[str]:
        """One patch: the scratch pool and the annotation that says a drill has a tablet out."""
        before = {p["metadata"]["name"] for p in self.shard_pods(ks, shard)}
        mark = json.dumps({"keyspace": ks, "shard": shard, "before": sorted(before),
                           "at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")})
        self._patch(lambda vc: {"metadata": {"annotations": {ANNOTATION: mark}}, "spec": {
            "keyspaces": with_scratch((vc.get("spec") or {}).get("keyspaces") or [], ks, shard)[0]}})
        self.log.info("%s/%s: added a scratch rdonly tablet through %s", ks, shard, self.subject)
        return before

    def scratch_pod(self, ks: str, shard: str, before: set[str]) -> dict | None:
        new = [p for p in self.shard_pods(ks, shard) if p["metadata"]["name"] not in before
               and (p["metadata"].get("labels") or {}).get(TABLET_TYPE) == "rdonly"]
        return new[0] if new else None

    def tablet_vars(self, pod: str) -> str:
        rc, out, err = self.k.exec(self.namespace, pod, names.VTTABLET, VARS_COMMAND, timeout_s=30)
        return out if rc == 0 else ""

    def wait_restored(self, ks: str, shard: str, before: set[str], timeout_s: float) -> tuple[str, str, str]:
        """Until the scratch tablet is Ready and says which backup it restored: (pod, alias, RestoredBackupTime)."""
        deadline = time.monotonic() + timeout_s
        reason = "no scratch tablet pod yet"
        while True:
            pod = self.scratch_pod(ks, shard, before)
            if pod is not None:
                name, labels = pod["metadata"]["name"], pod["metadata"].get("labels") or {}
                alias = f"{labels.get(names.CELL, '')}-{int(labels.get(TABLET_UID, '0') or 0):010d}"
                ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                            for c in (pod.get("status") or {}).get("conditions") or [])
                restored = restored_backup_time(self.tablet_vars(name)) if ready else ""
                if restored:
                    return name, alias, restored
                reason = (f"Pod {name} is {(pod.get('status') or {}).get('phase', 'Pending')}" if not ready else
                          f"Pod {name} serves but its /debug/vars have no RestoredBackupTime (no restore yet)")
            if time.monotonic() >= deadline:
                raise ReadyTimeout(f"scratch tablet of shard {ks}/{shard}", f"did not restore within {timeout_s:.0f} s: "
                                   f"{reason}.", "read the scratch pod's vttablet log (`Restore:` lines) and the backup "
                                   "location; raise restore_timeout_s for a large backup.")
            time.sleep(POLL_S)

    def stats(self, alias: str, tables: list[str]) -> dict[str, tuple[int, str]]:
        counts, sums = stats_queries(tables)
        rows = []
        for q in (counts, sums):
            reply = self.vt.run(["ExecuteFetchAsDBA", "--json", alias, q])
            if not reply.ok:
                raise CommandUnavailable(f"vtctldclient ExecuteFetchAsDBA on {alias} in {self.subject}",
                                         f"exited {reply.rc}: {reply.said}", "re-run when the tablet serves.",
                                         "ExecuteFetchAsDBA", reply.rc, reply.said)
            rows.append(fetch_rows(reply.out))
        return table_stats(tables, rows[0], rows[1])

    def primary(self, ks: str, shard: str) -> str:
        for t in self.vt.get_tablets(ks):
            if t.get("shard") == shard and t.get("type") == "PRIMARY":
                return tablet_alias(t)
        raise PermanentError(f"shard {ks}/{shard} of {self.subject}", "has no PRIMARY tablet to compare with.",
                             "run the health check; the shard needs a primary before a drill.")

    def compare(self, ks: str, shard: str, scratch: str, timeout_s: float) -> tuple[list[str], list[str]]:
        """Until every table's rows and checksum equal the primary's (the scratch tablet has caught up),
        or ``timeout_s``: (tables, differences left)."""
        primary = self.primary(ks, shard)
        tables = sorted(self.vt.table_names(primary))
        if not tables:
            return [], []
        deadline = time.monotonic() + timeout_s
        while True:
            diff = differences(self.stats(primary, tables), self.stats(scratch, tables))
            if not diff or time.monotonic() >= deadline:
                return tables, diff
            time.sleep(POLL_S)

    def remove(self, timeout_s: float) -> bool:
        """Remove a scratch tablet (this run's or a killed run's) and its claim; whether there was one."""
        vc = self.vc()
        raw = (vc["metadata"].get("annotations") or {}).get(ANNOTATION)
        keyspaces = (vc.get("spec") or {}).get("keyspaces") or []
        if raw is None and keyspaces == without_scratch(keyspaces):
            return False
        mark = json.loads(raw) if raw else {}
        ks, shard, before = mark.get("keyspace", ""), mark.get("shard", ""), set(mark.get("before") or [])
        if keyspaces != without_scratch(keyspaces):
            self._patch(lambda vc: {"spec": {"keyspaces": without_scratch((vc.get("spec") or {}).get("keyspaces") or [])}})
        deadline = time.monotonic() + timeout_s
        while ks:
            pod = self.scratch_pod(ks, shard, before)
            if pod is None:
                break
            if time.monotonic() >= deadline:
                raise ReadyTimeout(f"Pod {self.namespace}/{pod['metadata']['name']}", f"the scratch tablet is still "
                                   f"there {timeout_s:.0f} s after the drill removed its pool.",
                                   "read VitessShard status.orphanedTablets (the operator keeps a tablet it cannot "
                                   "drain while the shard is unhealthy); once the shard is healthy re-run the drill, "
                                   "which removes it, or delete the pod and its claim of the same name by hand.")
            time.sleep(POLL_S)
        if ks:
            sel = names.selector({**names.cluster_labels(self.cluster, names.VTTABLET), names.KEYSPACE: ks,
                                  names.SHARD: names.shard_label(shard)})
            pods = {p["metadata"]["name"] for p in self.k.list("v1", "Pod", self.namespace, label_selector=sel)}
            since = mark.get("at", "")
            for claim in self.k.list("v1", "PersistentVolumeClaim", self.namespace, label_selector=sel):
                meta = claim["metadata"]
                cname = meta["name"]
                # a pod and its claim share a name: the scratch claim is the rdonly one made since the
                # drill's patch whose pod is gone, never one of the tablets the shard had before
                if (cname not in before and cname not in pods and (meta.get("labels") or {}).get(TABLET_TYPE) == "rdonly"
                        and str(meta.get("creationTimestamp") or "") >= since):
                    self.k.delete("v1", "PersistentVolumeClaim", cname, self.namespace)
                    self.log.info("%s/%s: removed the scratch tablet's claim %s", ks, shard, cname)
        if raw is not None:
            self._patch(lambda vc: {"metadata": {"annotations": {ANNOTATION: None}}})
        return True


def drill_one(d: Drill, ks: str, shard: str, restore_timeout_s: float, catchup_timeout_s: float,
              removal_timeout_s: float) -> DrillResult:
    """One shard: backup, preflight, add, restore, compare; the scratch tablet removed whatever happened.
    The shard's own failure is the result's finding; only a failed removal raises."""
    r = DrillResult(ks, shard)
    subject = f"shard {ks}/{shard}"
    vc = d.vc()
    backup = newest_complete(d.vt.get_backups(ks, shard))
    if backup is None:
        r.finding = Finding(name=r.name, level="fail", problem=f"{subject} has no complete backup to restore",
                            fix="run the backup flow (deployment backup), then the drill again")
        return r
    r.backup, r.backup_time = backup["name"], rfc3339(backup_time(backup))
    try:
        d.preflight(vc, ks, shard)
    except (ConfigError, PermanentError) as e:
        # the run fails (nothing was proven), but the backup was not found wanting: a warning
        r.finding = Finding(name=r.name, level="warn", problem=f"{e.subject}: {e.problem}", fix=e.fix or "")
        return r
    started = time.monotonic()
    try:
        before = d.add(ks, shard)
        pod, alias, restored = d.wait_restored(ks, shard, before, restore_timeout_s)
        r.restore_seconds = time.monotonic() - started
        if not same_second(restored, backup_time(backup)):
            again = {rfc3339(backup_time(b)): b["name"] for b in d.vt.get_backups(ks, shard)}
            newer = restored in again and restored > r.backup_time
            if not newer:
                r.finding = Finding(name=r.name, level="fail", problem=(
                    f"the scratch tablet {alias} restored the backup of {restored} ({again.get(restored, 'not listed')}), "
                    f"not the newest complete one, {r.backup} ({r.backup_time}): vttablet could not use the newest"),
                    fix=f"read Pod {pod}'s vttablet log (`Restore:` lines) and the backup's MANIFEST; take a new "
                        "backup (backup flow)")
                return r
            r.backup, r.backup_time = again[restored], restored   # a backup taken meanwhile: it restored that
        d.log.info("%s: tablet %s restored %s in %.1f s", subject, alias, r.backup, r.restore_seconds)
        served = time.monotonic()
        r.tables, diff = d.compare(ks, shard, alias, catchup_timeout_s)
        if diff:
            r.finding = Finding(name=r.name, level="fail", problem=(
                f"the tablet restored from backup {r.backup} differs from the primary after {catchup_timeout_s:.0f} s "
                "of catching up in table(s) " + "; ".join(diff)),
                fix=(f"the backup of {ks}/{shard} does not hold the primary's data: take a new backup (backup flow) "
                     "and drill again; if writes ran during the drill, raise catchup_timeout_s or drill in a "
                     "quieter hour"))
            return r
        r.catchup_seconds = time.monotonic() - served
        r.ok = True
        return r
    except (ReadyTimeout, CommandFailed, CommandUnavailable, PermanentError) as e:
        r.finding = Finding(name=r.name, level="fail", problem=f"{e.subject}: {e.problem}", fix=e.fix or "")
        return r
    finally:
        d.remove(removal_timeout_s)


@task(name="restore-drill-leftover", task_run_name="restore-drill-leftover", cache_policy=NO_CACHE)
async def remove_leftover(d: Drill, timeout_s: float) -> bool:
    """A scratch tablet a killed run left behind, removed before anything else."""
    return await asyncio.to_thread(d.remove, timeout_s)


@task(name="restore-drill-shard", task_run_name="restore-drill-{ks}-{shard}", cache_policy=NO_CACHE)
async def drill_shard(d: Drill, ks: str, shard: str, restore_timeout_s: float, catchup_timeout_s: float,
                      removal_timeout_s: float) -> DrillResult:
    return await asyncio.to_thread(drill_one, d, ks, shard, restore_timeout_s, catchup_timeout_s, removal_timeout_s)
