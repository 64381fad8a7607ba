"""The simulated vitess-operator: a Controller that turns VitessClusters into running parts.

It acts only while an operator process runs: a Ready pod whose vitess-operator container the
kubelet runs (processes.py decides at start: no WATCH_NAMESPACE or an unsimulated release, no
operator), and, like the real one, only for the namespaces in the WATCH_NAMESPACE of that
running container's environment as the kubelet resolved it (empty: all namespaces). With no
operator running a VitessCluster just sits there without status. It behaves as the release its
container image names (releases.py; by digest: the tag registered for it, else the newest
simulated release): that release's default images, etcd image (or the container's
``--default_etcd_image``) and flags. When several operator pods watch a namespace, the oldest
leads (the others wait for its leader lock). What it writes into planetscale.com objects (their
spec and status) is pruned to the schema of the CRD stored in the double, as the real
operator's Go types are its release's CRDs: an older release's CRDs lack newer status fields
(VitessCell ``status.gateway.replicas`` / ``labelSelector`` before v2.15), so those are never
written. (CRDs newer than the running operator are not narrowed to the operator's release:
the double writes what the stored schema allows.)

One pass per cluster, in this order (each step needs the one before):
  1. build the desired children (desired.plan: pure);
  2. apply them parent first, filling ownerReferences (cluster -> lockserver/cells/keyspaces,
     keyspace -> shards, shard -> tablet pods/claims/vtorc, cell -> vtgate);
  3. roll changed pods as the real controllers do (rollout.py decides, ``_roll`` applies):
     every changed tablet gets ``rollout.planetscale.com/scheduled``; with updateStrategy
     Immediate its shard cascades and the tablets are released one at a time (each once every
     tablet is Available again; replicas first, the primary last after a planned reparent),
     drained and replaced; External (the default when unset) holds a changed VitessKeyspace,
     then VitessShard, then pod, each until ``rollout.planetscale.com/released`` is added to it;
     etcd members are scheduled and replaced only when released (nothing in the operator does);
  4. elect a primary per shard (first Ready tablet; again when the primary is lost), and,
     when backup locations exist, take the shard's initial backup once the primary serves;
  5. write status: shards, keyspaces, cells, lockserver, then the cluster.
Readiness always comes from what the double's kubelet reports for the pods. The operator
never runs MySQL; VSchemas and backups live in ``VitessState`` (state.py).

SIMPLIFIED: the primary is elected by the operator itself (real: vtorc or the operator's
initial reparent); no vtbackup-init pod (the initial backup is recorded directly); no PDBs,
no resharding, no cell-local lockservers.
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from ..admission import admit
from ..controllers import Controller
from ..controllers.kubelet import Run
from ..defaults import apply_defaults
from ..controllers.common import controller_of, is_ready, owner_ref
from ..store import now_rfc3339
from . import desired as desired_mod
from . import rollout
from . import names
from . import status as st
from vtflow.crdschema import prune_and_default

from .backupschedule import BackupScheduleController, backup_job, reconcile_schedules
from .processes import is_operator_container, resolved_image
from .releases import Release, UnknownRelease, running_release
from .state import BackupRecord, VitessState

VC = "planetscale.com/vitessclusters"
# kinds this operator deletes when they leave the plan (claims are kept, as data must survive)
# record_backup picks a free name and stores it in one step (BackupShards run in parallel threads)
_RECORD_LOCK = threading.Lock()
PRUNABLE = ("pods", "apps/deployments", "services", "planetscale.com/vitesscells",
            "planetscale.com/vitesskeyspaces", "planetscale.com/vitessshards", "planetscale.com/etcdlockservers")


@dataclass(frozen=True)
class RunningOperator:
    pod: str                        # namespace/name of the operator pod
    release: Release
    default_etcd_image: str | None  # its --default_etcd_image flag, if given


def running_operator(double, namespace: str) -> RunningOperator | None:
    """The vitess-operator process that leads for ``namespace``: the oldest Ready one watching it."""
    found = []
    for pod in double.list("pods"):
        if pod["metadata"].get("deletionTimestamp") or not is_ready(pod):
            continue
        for c in pod["spec"].get("containers") or []:
            env = double.kubelet.environment(pod, c["name"]) if is_operator_container(c) else None
            if env is None or "WATCH_NAMESPACE" not in env:
                continue
            watch = env["WATCH_NAMESPACE"]
            if watch and namespace not in [w.strip() for w in watch.split(",")]:
                continue
            try:
                release, _ = running_release(resolved_image(double, c))
            except UnknownRelease:
                continue   # processes.py does not start such a container; nothing to lead
            m = pod["metadata"]
            found.append((m.get("creationTimestamp", ""), m["name"], RunningOperator(
                f"{m.get('namespace', '')}/{m['name']}", release, _flag_value(c, "default_etcd_image"))))
    return min(found, key=lambda f: f[:2])[2] if found else None


def operator_watches(double, namespace: str) -> bool:
    """Does a running vitess-operator process watch ``namespace``?"""
    return running_operator(double, namespace) is not None


def _flag_value(container: dict, name: str) -> str | None:
    """The value of flag ``name`` on the container's command line (pflag: --x=v, --x v, -x=v)."""
    argv = [str(a) for a in (container.get("command") or []) + (container.get("args") or [])]
    value = None
    for i, a in enumerate(argv):
        key, sep, v = a.lstrip("-").partition("=")
        if not a.startswith("-") or key != name:
            continue
        value = v if sep else (argv[i + 1] if i + 1 < len(argv) else None)
    return value


class VitessOperator(Controller):
    name = "vitess-operator"
    watches = (VC, "pods", "apps/deployments", "planetscale.com/vitessbackups")
    resync_s = 2.0

    def __init__(self, state: VitessState):
        self.state = state
        self._pending: set[tuple[str, str]] = set()

    def start(self, double) -> None:
        # the operator's VitessBackupSchedule controller and what its Jobs run (backupschedule.py)
        double.backup_schedules = BackupScheduleController(self.state)
        double.add_controller(double.backup_schedules)
        # the rollout's test knobs (rollout.TabletRollout), and the vttablet that never gets Ready
        double.rollout = rollout.TabletRollout()
        if double.kubelet is not None:
            double.kubelet.add_program(backup_job(self.state))
            double.kubelet.add_program(_never_ready_tablet(double.rollout))

    # -- triggers -----------------------------------------------------------------------------
    def handle(self, double, change) -> None:
        obj = change.obj
        ns = obj["metadata"].get("namespace", "")
        if change.resource == "vitessclusters":
            if change.type != "DELETED":
                self._schedule(double, ns, obj["metadata"]["name"])
            return
        if change.resource == "pods" and any(is_operator_container(c) for c in obj["spec"].get("containers") or []):
            self.resync(double)
            return
        cluster = (obj["metadata"].get("labels") or {}).get(names.CLUSTER)
        if cluster:
            self._schedule(double, ns, cluster)

    def resync(self, double) -> None:
        for vc in double.list(VC):
            self._schedule(double, vc["metadata"]["namespace"], vc["metadata"]["name"])

    def _schedule(self, double, ns: str, name: str) -> None:
        # coalesce bursts of pod changes into one pass per cluster
        if (ns, name) in self._pending:
            return
        self._pending.add((ns, name))
        double.controllers.after(0.01, lambda: self._pass(double, ns, name))

    # -- one reconcile pass ---------------------------------------------------------------------
    def _pass(self, double, ns: str, name: str) -> None:
        self._pending.discard((ns, name))
        vc = double.get(VC, ns, name)
        if vc is None or vc["metadata"].get("deletionTimestamp"):
            return
        op = running_operator(double, ns)
        if op is None:
            return
        plan = desired_mod.plan(vc, op.release, op.default_etcd_image)
        current, held = self._apply(double, vc, plan)
        self._prune(double, vc, {d.key for d in plan})
        reconcile_schedules(double, vc, op.release)
        self._roll(double, vc, plan, held)
        self._elect_and_backup(double, vc, plan)
        self._write_status(double, vc, plan, current, held)

    def _apply(self, double, vc: dict, plan: list[desired_mod.Desired]) -> tuple[dict, set]:
        """Create and update the plan's objects, parents first; (current objects, held keys).
        Under updateStrategy External an existing keyspace or shard whose spec would change waits
        for ``rollout.planetscale.com/released`` (``_update_held``): it and everything under it
        that exists keeps its spec (held); new children are made as planned."""
        ns = vc["metadata"]["namespace"]
        external = rollout.update_strategy(vc) == rollout.EXTERNAL
        current: dict[tuple[str, str], dict] = {}
        held: set[tuple[str, str]] = set()
        for item in plan:
            owner = vc if item.owner is None else current.get(item.owner)
            if owner is None:
                continue
            obj = copy.deepcopy(item.obj)
            if item.ref.startswith("planetscale.com/"):
                # what the operator's Go types can hold: the stored CRD's schema
                prune_and_default(obj, _schema(double, item.ref), root=True)
            obj["metadata"]["ownerReferences"] = [owner_ref(owner)]
            if item.ref == "pods":
                obj["metadata"].setdefault("annotations", {})[desired_mod.DESIRED_HASH] = desired_mod.spec_hash(obj["spec"])
            name = obj["metadata"]["name"]
            cur = double.get(item.ref, ns, name)
            if cur is None:
                cur = self._create(double, item.ref, obj)
            elif item.owner in held:
                held.add(item.key)
            elif item.ref not in ("pods", "persistentvolumeclaims"):
                if external and item.ref in (rollout.KEYSPACES, rollout.SHARDS):
                    cur, waits = self._update_held(double, item.ref, cur, obj)
                    if waits:
                        held.add(item.key)
                else:
                    cur = self._update(double, item.ref, cur, obj) or cur
            current[item.key] = cur
        return current, held

    def _update_held(self, double, ref: str, cur: dict, want: dict) -> tuple[dict, bool]:
        """reconciler/object.go for a VitessKeyspace/VitessShard under External: released -> the
        whole update, annotations removed; else the in-place part, and ``scheduled`` while more waits."""
        ns, name = cur["metadata"]["namespace"], cur["metadata"]["name"]
        ann = cur["metadata"].get("annotations") or {}
        if rollout.RELEASED in ann:
            cur = self._update(double, ref, cur, want) or cur
            self._act(double, ns, rollout.Action("annotate", ref, name, remove=(rollout.SCHEDULED, rollout.RELEASED)))
            return double.get(ref, ns, name) or cur, False
        spec, pending = rollout.held_spec(ref, cur, want)

        def fn(o):
            before = copy.deepcopy(o)
            o["spec"] = copy.deepcopy(spec)
            o["metadata"].setdefault("labels", {}).update(want["metadata"].get("labels") or {})
            a = o["metadata"].setdefault("annotations", {})
            if pending:
                a[rollout.SCHEDULED] = pending
            else:
                a.pop(rollout.SCHEDULED, None)
            return o != before
        return double.mutate(ref, ns, name, fn) or cur, bool(pending)

    def _create(self, double, ref: str, obj: dict) -> dict:
        # the real operator writes through the API, so admission runs: cluster IPs for Services,
        # the default StorageClass for claims; the internal API skips it, so run it here
        group, _, plural = ref.rpartition("/")
        rt = double.registry.by_gr(group, plural)
        if rt is not None:
            obj = apply_defaults(group, plural, copy.deepcopy(obj))
            admit(double.store, rt, obj, None)
        return double.create(ref, obj)

    def _update(self, double, ref: str, cur: dict, want: dict) -> dict | None:
        ns, name = cur["metadata"]["namespace"], cur["metadata"]["name"]
        labels_differ = any((cur["metadata"].get("labels") or {}).get(k) != v
                            for k, v in (want["metadata"].get("labels") or {}).items())
        if ref == "services":
            keep = ("selector", "ports")
            differ = any(_strip_ports(cur["spec"].get(k)) != _strip_ports(want["spec"].get(k)) for k in keep)
        elif ref == "apps/deployments":
            differ = (cur["spec"].get("replicas") != want["spec"].get("replicas") or
                      _tpl(cur) != _tpl(want))
        else:
            differ = any(cur.get("spec", {}).get(k) != v for k, v in (want.get("spec") or {}).items())
        if not differ and not labels_differ:
            return None

        def fn(o):
            o["metadata"].setdefault("labels", {}).update(want["metadata"].get("labels") or {})
            if ref == "services":
                o["spec"]["selector"] = want["spec"]["selector"]
                o["spec"]["ports"] = want["spec"]["ports"]
            elif ref == "apps/deployments":
                o["spec"]["replicas"] = want["spec"]["replicas"]
                o["spec"]["template"] = copy.deepcopy(want["spec"]["template"])
                apply_defaults("apps", "deployments", o)
            else:
                o["spec"].update(copy.deepcopy(want.get("spec") or {}))
        return double.mutate(ref, ns, name, fn)

    def _prune(self, double, vc: dict, keep: set) -> None:
        ns, cluster = vc["metadata"]["namespace"], vc["metadata"]["name"]
        mine = {vc["metadata"]["uid"]}
        objs = []
        for ref in reversed(PRUNABLE):
            for o in double.list(ref, ns, f"{names.CLUSTER}={cluster}"):
                objs.append((ref, o))
                if (ref, o["metadata"]["name"]) in keep:
                    mine.add(o["metadata"]["uid"])
        for ref, o in objs:
            c = controller_of(o)
            if c and c.get("uid") in mine and (ref, o["metadata"]["name"]) not in keep:
                double.delete(ref, ns, o["metadata"]["name"])

    def _roll(self, double, vc: dict, plan: list, held: set) -> None:
        """Schedule, release, drain and replace changed pods as the real controllers do (rollout.py
        decides from one snapshot; this applies). Tablets per shard; etcd members only when released."""
        ns = vc["metadata"]["namespace"]
        strategy = rollout.update_strategy(vc)
        knobs = getattr(double, "rollout", None) or rollout.TabletRollout()
        now = datetime.now(timezone.utc)
        by_owner: dict[tuple[str, str], list] = {}
        for d in plan:
            if d.ref == "pods":
                by_owner.setdefault(d.owner, []).append(d)
        actions: list[rollout.Action] = []
        for owner, wanted in by_owner.items():
            views = [self._view(double, ns, d, knobs, now, owner in held) for d in wanted]
            if owner[0] == "planetscale.com/vitessshards":
                shard = double.get(owner[0], ns, owner[1])
                if shard is None:
                    continue
                primary = (shard.get("status") or {}).get("masterAlias")
                actions += rollout.shard_actions(shard, views, primary, strategy, now)
            else:
                actions += rollout.etcd_actions([(v.pod, v.changed, v.pending) for v in views])
        for a in actions:
            self._act(double, ns, a)

    def _view(self, double, ns: str, d, knobs, now: datetime, held: bool) -> "rollout.TabletView":
        pod = double.get("pods", ns, d.obj["metadata"]["name"])
        labels = d.obj["metadata"].get("labels") or {}
        alias = rollout.tablet_alias(d.obj) if labels.get(names.COMPONENT) == "vttablet" else d.obj["metadata"]["name"]
        pool = labels.get(names.TABLET_TYPE, "")
        if pod is None:
            return rollout.TabletView(alias, None, False, "", False, False, pool)
        going = bool(pod["metadata"].get("deletionTimestamp"))
        have = (pod["metadata"].get("annotations") or {}).get(desired_mod.DESIRED_HASH)
        # a held shard's pods want what they have (the shard's spec did not change yet)
        changed = not going and not held and have != desired_mod.spec_hash(d.obj["spec"])
        pending = rollout.describe_diff(pod.get("spec") or {}, d.obj["spec"]) if changed else ""
        ready = is_ready(pod) and not going
        return rollout.TabletView(alias, None if going else pod, changed, pending,
                                  ready and _ready_for(pod, knobs.available_s, now), ready, pool)

    def _act(self, double, ns: str, a: "rollout.Action") -> None:
        if a.kind == "delete":
            double.delete(a.ref, ns, a.name)
        elif a.kind == "annotate":
            def fn(o):
                ann = o["metadata"].setdefault("annotations", {})
                before = dict(ann)
                ann.update(dict(a.add))
                for k in a.remove:
                    ann.pop(k, None)
                if not ann:
                    o["metadata"].pop("annotations", None)
                return ann != before
            double.mutate(a.ref, ns, a.name, fn)
        elif a.kind == "reparent":
            # PlannedReparentShard: the shard record's primary moves; the new term starts now
            self.state.set_primary_term(a.alias, now_rfc3339())
            double.mutate(a.ref, ns, a.name, lambda s: s.setdefault("status", {}).__setitem__("masterAlias", a.alias))

    def _elect_and_backup(self, double, vc: dict, plan: list) -> None:
        ns, cluster = vc["metadata"]["namespace"], vc["metadata"]["name"]
        has_locations = bool(((vc.get("spec") or {}).get("backup") or {}).get("locations"))
        for d in plan:
            if d.ref != "planetscale.com/vitessshards":
                continue
            shard = double.get(d.ref, ns, d.obj["metadata"]["name"])
            if shard is None:
                continue
            ks, shard_name = d.obj["metadata"]["labels"][names.KEYSPACE], d.obj["spec"]["name"]
            pods = self._shard_pods(double, ns, cluster, ks, shard_name)
            by_alias = {self._alias(p): p for p in pods}
            master = had_master = (shard.get("status") or {}).get("masterAlias")
            if master not in by_alias or not is_ready(by_alias[master]):
                candidates = sorted((p for p in pods if is_ready(p)
                                     and (p["metadata"]["labels"].get(names.TABLET_TYPE) == "replica")),
                                    key=lambda p: int(p["metadata"]["labels"].get(names.TABLET_INDEX, "0")))
                if candidates:
                    new = self._alias(candidates[0])
                    self.state.set_primary_term(new, now_rfc3339())
                    double.mutate(d.ref, ns, shard["metadata"]["name"],
                                  lambda s: s.setdefault("status", {}).__setitem__("masterAlias", new))
                    master = new
            # the initial backup (vtbackup-init) only while the shard has never had a primary, as
            # reconcile_backup_job.go: a shard whose backups were all removed later gets none
            if (has_locations and not had_master and master in by_alias and is_ready(by_alias[master])
                    and not self.state.list_backups(ns, cluster, ks, shard_name)):
                record_backup(double, self.state, vc, ks, shard_name, master,
                              ((vc.get("spec") or {}).get("backup") or {}).get("engine", "builtin"))

    @staticmethod
    def _alias(pod: dict) -> str:
        lb = pod["metadata"].get("labels") or {}
        return names.alias(lb.get(names.CELL, ""), int(lb.get(names.TABLET_UID, "0") or 0))

    @staticmethod
    def _shard_pods(double, ns: str, cluster: str, ks: str, shard: str) -> list[dict]:
        sel = (f"{names.COMPONENT}=vttablet,{names.CLUSTER}={cluster},{names.KEYSPACE}={ks},"
               f"{names.SHARD}={names.safe_shard(shard)}")
        return [p for p in double.list("pods", ns, sel) if not p["metadata"].get("deletionTimestamp")]

    # -- status -------------------------------------------------------------------------------
    def _write_status(self, double, vc: dict, plan: list, current: dict, held: set) -> None:
        ns, cluster = vc["metadata"]["namespace"], vc["metadata"]["name"]
        spec = vc.get("spec") or {}
        now = now_rfc3339()
        want_hash = {d.obj["metadata"]["name"]: desired_mod.spec_hash(d.obj["spec"]) for d in plan if d.ref == "pods"}
        for d in plan:   # a held shard's pods are up to date with the spec it has
            pod = double.get("pods", ns, d.obj["metadata"]["name"]) if d.ref == "pods" and d.owner in held else None
            if pod is not None:
                want_hash[d.obj["metadata"]["name"]] = (pod["metadata"].get("annotations") or {}).get(desired_mod.DESIRED_HASH)
        status: dict = {"observedGeneration": vc["metadata"].get("generation", 1),
                        "gatewayServiceName": names.vtgate_service(cluster), "orphanedCells": {}, "orphanedKeyspaces": {}}
        if desired_mod.manages_etcd(vc):
            ls_name = names.lockserver(cluster)
            ls = double.get("planetscale.com/etcdlockservers", ns, ls_name)
            if ls is not None:
                pods = double.list("pods", ns, f"{names.LOCKSERVER}={ls_name}")
                ls_status = st.lockserver_status(ls, pods, f"{ls_name}-client")
                _set_status(double, "planetscale.com/etcdlockservers", ls, ls_status)
                status["globalLockserver"] = {"etcd": ls_status}
        dash_cell = ((spec.get("vitessDashboard") or {}).get("cells") or [c["name"] for c in spec.get("cells") or []] or ["zone1"])[0]
        status["vitessDashboard"] = {
            "available": st.tf(st.deployment_available(double.get("apps/deployments", ns, names.vtctld(cluster, dash_cell)))),
            "serviceName": names.vtctld_service(cluster)}
        if spec.get("vtadmin"):
            va_cell = ((spec["vtadmin"].get("cells") or [dash_cell]))[0]
            status["vtadmin"] = {
                "available": st.tf(st.deployment_available(double.get("apps/deployments", ns, names.vtadmin(cluster, va_cell)))),
                "serviceName": names.vtadmin(cluster, va_cell)}
        status["cells"] = {}
        for c in spec.get("cells") or []:
            dep = double.get("apps/deployments", ns, names.vtgate(cluster, c["name"]))
            avail = st.deployment_available(dep)
            status["cells"][c["name"]] = {"gatewayAvailable": st.tf(avail)}
            cell_obj = double.get("planetscale.com/vitesscells", ns, names.cell(cluster, c["name"]))
            if cell_obj is not None:
                _set_status(double, "planetscale.com/vitesscells", cell_obj, {
                    "observedGeneration": cell_obj["metadata"].get("generation", 1), "idle": "False",
                    "gateway": {"available": st.tf(avail), "serviceName": names.vtgate(cluster, c["name"]),
                                "replicas": ((dep or {}).get("status") or {}).get("replicas", 0),
                                "labelSelector": f"{names.CELL}={c['name']},{names.CLUSTER}={cluster},{names.COMPONENT}=vtgate"},
                    "keyspaces": {k["name"]: {} for k in spec.get("keyspaces") or []}})
        status["keyspaces"] = {}
        for ks in spec.get("keyspaces") or []:
            shards_in = {}
            for d in plan:
                if d.ref != "planetscale.com/vitessshards" or d.obj["metadata"]["labels"].get(names.KEYSPACE) != ks["name"]:
                    continue
                shard = double.get(d.ref, ns, d.obj["metadata"]["name"])
                if shard is None:
                    continue
                sname = d.obj["spec"]["name"]
                pods = self._shard_pods(double, ns, cluster, ks["name"], sname)
                desired_n = sum(int(p.get("replicas", 0)) for p in d.obj["spec"].get("tabletPools") or [])
                updated = sum(1 for p in pods if (p["metadata"].get("annotations") or {}).get(desired_mod.DESIRED_HASH)
                              == want_hash.get(p["metadata"]["name"]))
                vtorc = None
                if "vitessOrchestrator" in ks:
                    pools = d.obj["spec"].get("tabletPools") or []
                    orc_cell = (pools[0].get("cell") if pools else None) or dash_cell
                    vtorc = double.get("apps/deployments", ns, names.vtorc(cluster, ks["name"], sname, orc_cell)) or {
                        "metadata": {"name": names.vtorc(cluster, ks["name"], sname, orc_cell)}}
                sst = st.shard_status(shard, pods, (shard.get("status") or {}).get("masterAlias"), want_hash,
                                      self.state.list_backups(ns, cluster, ks["name"], sname),
                                      bool(d.obj["spec"].get("backupLocations")), vtorc)
                _set_status(double, d.ref, shard, sst)
                shards_in[sname] = (sst, desired_n, updated)
            ks_obj = double.get("planetscale.com/vitesskeyspaces", ns, names.keyspace(cluster, ks["name"]))
            if ks_obj is None:
                continue
            kst = st.keyspace_status(ks_obj, shards_in, now)
            _set_status(double, "planetscale.com/vitesskeyspaces", ks_obj, kst)
            cells = sorted({c for s in shards_in.values() for c in s[0].get("cells") or []})
            status["keyspaces"][ks["name"]] = st.cluster_keyspace_entry(kst, cells)
        _set_status(double, VC, vc, status)


def _ready_for(pod: dict, seconds: float, now: datetime) -> bool:
    """Ready for ``seconds`` (podutils.IsPodAvailable against the Ready condition's transition)."""
    if seconds <= 0:
        return True
    cond = next((c for c in (pod.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"), None)
    try:
        since = datetime.strptime((cond or {}).get("lastTransitionTime", ""), "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return False
    return (now - since.replace(tzinfo=timezone.utc)).total_seconds() >= seconds


def _never_ready_tablet(knobs: "rollout.TabletRollout"):
    """The kubelet program of the fault: a vttablet on a faulty image exits at every start."""
    def program(double, pod: dict, container: dict, env: dict):
        if str((container.get("command") or [""])[0]).rsplit("/", 1)[-1] != "vttablet":
            return None
        image = str(container.get("image", ""))
        alias = rollout.tablet_alias(pod)
        if not (knobs.fails(image, alias) or knobs.fails(resolved_image(double, container), alias)):
            return None
        return Run([f"kubedouble: injected fault: vttablet {alias} never becomes ready on {image} "
                    "(TabletRollout.never_ready)"], exit_code=1)
    return program


def _schema(double, ref: str) -> dict | None:
    group, _, plural = ref.rpartition("/")
    rt = double.registry.by_gr(group, plural)
    return rt.schema if rt is not None else None


def _set_status(double, ref: str, obj: dict, status: dict) -> None:
    # only the status fields the stored CRD declares: the real operator's types are its CRDs
    schema = ((_schema(double, ref) or {}).get("properties") or {}).get("status")
    status = prune_and_default(copy.deepcopy(status), schema) if schema else status
    cur = obj.get("status") or {}
    merged = {**cur, **status}
    if merged == cur:
        return
    m = obj["metadata"]
    double.mutate(ref, m.get("namespace", ""), m["name"], lambda o: o.update(status={**(o.get("status") or {}), **status}))


def _strip_ports(v):
    if isinstance(v, list):
        return [{k: x for k, x in p.items() if k not in ("nodePort", "protocol")} for p in v]
    return v


def _tpl(dep: dict) -> dict:
    """The parts of a pod template the operator sets (defaults added by the server ignored);
    a change to any of them (the scheduling rules too) updates the Deployment and rolls it."""
    t = (dep.get("spec") or {}).get("template") or {}
    spec = t.get("spec") or {}
    return {"labels": (t.get("metadata") or {}).get("labels"),
            "containers": [(c.get("name"), c.get("image"), c.get("args"), c.get("resources") or {})
                           for c in spec.get("containers") or []],
            "affinity": spec.get("affinity"), "spread": spec.get("topologySpreadConstraints")}


def record_backup(double, state: VitessState, vc: dict, ks: str, shard: str, tablet_alias: str,
                  engine: str, size: int = 0, when: datetime | None = None, exact: bool = False) -> BackupRecord:
    """Record a completed backup and the VitessBackup object the operator keeps for it.

    ``when`` is the backup's (start) time, now by default; naive datetimes are UTC and it is cut
    to whole seconds, as the name keeps only those. A name that exists already moves on by a
    second (two backups of one tablet within a second), or, with ``exact``, raises ValueError.
    SIMPLIFIED: the real operator makes VitessBackup objects by listing backup storage (its
    vitessbackupstorage subcontroller); here they are made right away, with the record.
    """
    ns, cluster = vc["metadata"]["namespace"], vc["metadata"]["name"]
    if when is None:
        when = datetime.now(timezone.utc)
    elif when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    when = when.astimezone(timezone.utc).replace(microsecond=0)
    with _RECORD_LOCK:
        existing = {b.name for b in state.list_backups(ns, cluster, ks, shard)}
        name = f"{when:%Y-%m-%d.%H%M%S}.{tablet_alias}"
        if exact and name in existing:
            raise ValueError(f"backup {ks}/{shard}/{name} exists already")
        while name in existing:   # two backups within a second: the real ones would be a second apart
            when += timedelta(seconds=1)
            name = f"{when:%Y-%m-%d.%H%M%S}.{tablet_alias}"
        rec = BackupRecord(name, ks, shard, tablet_alias, when.strftime("%Y-%m-%dT%H:%M:%SZ"), engine, size)
        state.store_backup(ns, cluster, rec)
    obj_name = names.backup(cluster, ks, shard, name)
    if double.get("planetscale.com/vitessbackups", ns, obj_name) is None:
        double.create("planetscale.com/vitessbackups", {
            "apiVersion": "planetscale.com/v2", "kind": "VitessBackup",
            "metadata": {"name": obj_name, "namespace": ns, "ownerReferences": [owner_ref(vc)],
                         "labels": {names.CLUSTER: cluster, names.KEYSPACE: ks, names.SHARD: names.safe_shard(shard),
                                    "backup.planetscale.com/location": "",
                                    "backup.planetscale.com/type": "vtctld"}},
            "spec": {},
            "status": {"startTime": rec.time, "finishedTime": rec.time, "complete": True, "engine": engine,
                       "storageDirectory": f"{ks}/{shard}", "storageName": name,
                       "position": "MySQL56/00000000-0000-0000-0000-000000000000:1-1"}})
    return rec


def forget_backup(double, state: VitessState, vc: dict, ks: str, shard: str, name: str) -> BackupRecord | None:
    """Remove a backup record and its VitessBackup object(s); the record, or None if unknown.

    SIMPLIFIED: the real operator deletes a VitessBackup when its next listing of backup storage
    no longer finds the backup (ReconcileObjectSet in its vitessbackupstorage subcontroller);
    here it goes at once.
    """
    ns, cluster = vc["metadata"]["namespace"], vc["metadata"]["name"]
    rec = state.remove_backup(ns, cluster, ks, shard, name)
    selector = f"{names.CLUSTER}={cluster},{names.KEYSPACE}={ks},{names.SHARD}={names.safe_shard(shard)}"
    for obj in double.list("planetscale.com/vitessbackups", ns, selector):
        st_ = obj.get("status") or {}
        if st_.get("storageName") == name and st_.get("storageDirectory") in (None, f"{ks}/{shard}"):
            double.delete("planetscale.com/vitessbackups", ns, obj["metadata"]["name"])
    return rec
