"""The teardown flow's steps: what goes and what stays, decided before anything changes, then one applier.

``observe`` reads everything once (the VitessCluster, its pods and claims, the Services and
Secrets vtflow made beside it, the backups through vtctld, and, for ``remove_operator``, the
other VitessClusters and the operator's objects). ``plan`` is pure: it refuses (before any
change) what the request may not do, and otherwise lists the steps in order and what is kept.
``apply_plan`` is the one place that changes the cluster, through ``vtflow.kube`` (dry-run: the
client's ``dryRun=All``, and no waiting) and ``vtflow.vtctld`` (RemoveBackup).

Order, and why:
- backups first (``delete_backups``): RemoveBackup needs vtctld, which goes with the cluster;
- claims are kept by giving each an owner that outlives the cluster (its Namespace) before
  anything is deleted: the operator makes every tablet's and etcd member's claim with its
  VitessShard / EtcdLockserver as owner (ReconcileObjectSet), so the garbage collector would
  delete them with the cluster; with a second, live owner it only drops the dangling reference;
- a keyspace goes as upstream's 102_keyspace_teardown.yaml does it: out of the VitessCluster's
  spec (server-side apply of what vtflow applied, less the keyspace, so that a later deploy still
  owns the field); the operator deletes its VitessKeyspace, the garbage collector the rest;
- the cluster: the VitessCluster (its dependents follow by ownerReferences), then a wait until
  it and every pod of the cluster are gone (deletion as the API server does it: finalizers are
  waited on, never removed), then the Services and Secrets vtflow made, then the claims asked for;
- the operator and its CRDs last, and only when no other VitessCluster exists.

Nothing here imports the kubernetes client.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
from dataclasses import dataclass, field
from typing import Callable, Literal

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from tasks.common import retry_transient
from tasks.context import TargetContext
from tasks.report import Finding
from tasks.verify import expected_tablets_of
from vtflow import kube, names
from vtflow.errors import ConfigError, PermanentError, TransientError
from vtflow.vtctld import Vtctld

Scope = Literal["keyspace", "cluster"]
VC = ("planetscale.com/v2", "VitessCluster")
PVC = ("v1", "PersistentVolumeClaim")
CRD = ("apiextensions.k8s.io/v1", "CustomResourceDefinition")
OPERATOR_GROUP = "planetscale.com"
# What upstream's operator.yaml installs besides its CRDs, over every release vtflow supports
# (up to v2.14 a namespaced Role "vitess-operator"; from v2.15 a ClusterRole of that name and a
# Role for backup storage; tests/tasks/test_teardown.py pins them against each release's file),
# in removal order: the Deployment first, so that nothing acts while its rights go. Objects
# (kind, name, namespaced?) that a release lacks are simply not found.
OPERATOR_OBJECTS: tuple[tuple[str, str, str, bool], ...] = (
    ("apps/v1", "Deployment", names.OPERATOR_DEPLOYMENT, True),
    ("rbac.authorization.k8s.io/v1", "RoleBinding", "vitess-operator", True),
    ("rbac.authorization.k8s.io/v1", "Role", "vitess-operator", True),
    ("rbac.authorization.k8s.io/v1", "RoleBinding", "vitess-operator-backup-storage", True),
    ("rbac.authorization.k8s.io/v1", "Role", "vitess-operator-backup-storage", True),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "vitess-operator", False),
    ("rbac.authorization.k8s.io/v1", "ClusterRole", "vitess-operator", False),
    ("v1", "ServiceAccount", "vitess-operator", True),
    ("scheduling.k8s.io/v1", "PriorityClass", "vitess-operator-control-plane", False),
    ("scheduling.k8s.io/v1", "PriorityClass", "vitess", False),
)


class TeardownRequest(BaseModel):
    """What the run was asked to remove (the flow's parameters, less the target and dry_run)."""

    scope: Scope = Field(default="keyspace", description="keyspace: one keyspace out of the cluster; cluster: all of it.")
    keyspace: str = Field(default="", description="The keyspace to remove (scope keyspace).")
    delete_claims: bool = Field(default=False, description="Delete the tablets' and etcd's volume claims (the data).")
    delete_backups: bool = Field(default=False, description="Remove the backups (RemoveBackup) and vtflow's backup claim.")
    confirm: str = Field(default="", description="The VitessCluster's name again: required for claims or backups to go.")
    remove_operator: bool = Field(default=False, description="Remove the vitess-operator and its CRDs (scope cluster; "
                                                             "only when no other VitessCluster exists).")


@dataclass
class Observed:
    """Everything the plan needs, read once before step 1."""

    namespace: str
    cluster: str
    vc: dict | None
    namespace_obj: dict | None = None
    pods: list[dict] = field(default_factory=list)
    claims: list[dict] = field(default_factory=list)
    made: list[dict] = field(default_factory=list)           # the Services and Secrets vtflow made
    backups: dict[tuple[str, str], list[str]] | None = None  # None: not listed (see backups_unread)
    backups_unread: str = ""
    other_clusters: list[str] = field(default_factory=list)  # "namespace/name" of every other VitessCluster
    operator: list[dict] = field(default_factory=list)       # the operator's objects that exist

    @property
    def subject(self) -> str:
        return f"VitessCluster {self.namespace}/{self.cluster}"


Verb = Literal["remove-backup", "keep-claim", "apply", "patch", "delete", "wait-gone"]


@dataclass(frozen=True)
class Step:
    """One change (or wait) of the plan, in order. ``what`` is how the report names it."""

    verb: Verb
    what: str
    api_version: str = ""
    kind: str = ""
    name: str = ""
    namespace: str | None = None
    body: dict | None = None         # apply: the object; patch / keep-claim: the JSON merge patch
    selector: str | None = None      # wait-gone without a name: every object of the kind matching it
    backup: tuple[str, str, str] | None = None  # remove-backup: keyspace, shard, backup name

    @property
    def removes(self) -> bool:
        return self.verb in ("remove-backup", "apply", "patch", "delete")


@dataclass
class Plan:
    steps: list[Step]
    kept: list[str]
    gone_with_it: list[str] = field(default_factory=list)  # what the operator and the GC remove (pods)
    notes: list[Finding] = field(default_factory=list)

    @property
    def removals(self) -> list[str]:
        return [s.what for s in self.steps if s.removes] + self.gone_with_it


class TeardownResult(BaseModel):
    """What a run removed (or, in a dry run, would remove) and what it kept."""

    namespace: str
    cluster: str
    scope: Scope
    keyspace: str = ""
    dry_run: bool = False
    removed: list[str] = Field(default_factory=list)
    kept: list[str] = Field(default_factory=list)
    notes: list[Finding] = Field(default_factory=list)
    failed: str = ""

    def markdown(self) -> str:
        what = f"keyspace {self.keyspace}" if self.scope == "keyspace" else "the whole cluster"
        head = f"# Teardown of VitessCluster {self.namespace}/{self.cluster}: {what}" + (" (dry run)" if self.dry_run else "")
        lines = [head, ""]
        if self.failed:
            lines += [f"**Failed**: {self.failed}", ""]
        lines += ["## " + ("Would remove" if self.dry_run else "Removed"), ""]
        lines += [f"- {r}" for r in self.removed] or ["Nothing" + (" would be" if self.dry_run else " was") + " removed."]
        lines += ["", "## Kept", ""]
        lines += [f"- {k}" for k in self.kept] or ["Nothing."]
        if self.notes:
            lines += ["", "## Notes", ""] + [f"- {n.line}" for n in self.notes]
        return "\n".join(lines)


# ---------------------------------------------------------------- pure: managed fields


def _leaf(tree: dict) -> bool:
    return not any(k.startswith(("f:", "k:", "v:", "i:")) for k in tree)


def owned_part(value, tree: dict):
    """The part of ``value`` that a fieldsV1 ``tree`` (one manager's managedFields entry) covers;
    what client-go's Extract<Kind> gives for server-side apply. An atomic list or a leaf is whole."""
    if _leaf(tree):
        return copy.deepcopy(value)
    if isinstance(value, dict):
        return {key[2:]: owned_part(value[key[2:]], sub) for key, sub in tree.items()
                if key.startswith("f:") and key[2:] in value}
    if isinstance(value, list):
        out = []
        for item in value:
            for key, sub in tree.items():
                if key.startswith("k:") and isinstance(item, dict):
                    keys = json.loads(key[2:])
                    if all(item.get(k) == v for k, v in keys.items()):
                        out.append({**keys, **owned_part(item, sub)})
                elif key.startswith("v:") and json.loads(key[2:]) == item:
                    out.append(copy.deepcopy(item))
        return out
    return copy.deepcopy(value)


def _entries(obj: dict, manager: str, operation: str) -> list[dict]:
    return [e for e in (obj.get("metadata") or {}).get("managedFields") or []
            if e.get("manager") == manager and e.get("operation") == operation and not e.get("subresource")]


def applied_config(obj: dict, manager: str = kube.FIELD_MANAGER) -> dict:
    """What ``manager`` last applied to ``obj`` (server-side apply), with the object's identity."""
    meta = obj.get("metadata") or {}
    out: dict = {}
    for e in _entries(obj, manager, "Apply"):
        part = owned_part({k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "status")},
                          e.get("fieldsV1") or {})
        for key, value in part.items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = {**out[key], **value}
            else:
                out[key] = value
    out["apiVersion"], out["kind"] = obj["apiVersion"], obj["kind"]
    out.setdefault("metadata", {}).update({k: meta[k] for k in ("name", "namespace") if meta.get(k)})
    return out


def field_owners(obj: dict, path: tuple[str, ...]) -> set[tuple[str, str]]:
    """(manager, operation) of every managedFields entry that owns the field at ``path``."""
    out = set()
    for e in (obj.get("metadata") or {}).get("managedFields") or []:
        tree = e.get("fieldsV1") or {}
        for part in path:
            tree = tree.get(f"f:{part}") if isinstance(tree, dict) else None
            if tree is None:
                break
        if tree is not None:
            out.add((e.get("manager", ""), e.get("operation", "")))
    return out


# ---------------------------------------------------------------- pure: the plan


def ref(kind: str, name: str, namespace: str | None = None) -> str:
    return f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"


def keyspace_names(vc: dict | None) -> list[str]:
    return [k.get("name", "") for k in ((vc or {}).get("spec") or {}).get("keyspaces") or []]


def is_backup_claim(claim: dict) -> bool:
    """vtflow's backup claim (tasks/cluster.py renders it with vtflow's labels; nothing else
    vtflow makes is a claim); every other claim of the cluster is the operator's, holding data."""
    return (claim["metadata"].get("labels") or {}).get(names.MANAGED_BY) == names.MANAGER


def keep_claim_patch(claim: dict, namespace_obj: dict | None) -> dict | None:
    """The merge patch that keeps ``claim`` when its owners go: its Namespace as a second owner
    (the garbage collector deletes a dependent only when every owner is gone). None when nothing
    would collect it (no owner) or it is kept already. The resourceVersion makes the write fail
    rather than drop an owner written meanwhile (a merge patch replaces the list whole)."""
    meta = claim["metadata"]
    refs = meta.get("ownerReferences") or []
    if not refs or namespace_obj is None:
        return None
    uid = namespace_obj["metadata"]["uid"]
    if any(r.get("uid") == uid for r in refs):
        return None
    keeper = {"apiVersion": "v1", "kind": "Namespace", "name": namespace_obj["metadata"]["name"], "uid": uid}
    return {"metadata": {"resourceVersion": meta.get("resourceVersion"), "ownerReferences": refs + [keeper]}}


def keyspaces_change(vc: dict, keyspaces: list[dict]) -> tuple[Verb, dict]:
    """How to set the VitessCluster's spec.keyspaces to ``keyspaces``: when vtflow alone owns the
    list (the deploy applied it), a server-side apply of what vtflow applied with the new list,
    so vtflow keeps owning the field and a later deploy does not conflict; otherwise (someone
    else wrote the list) a merge patch, guarded by the resourceVersion read. ("apply" | "patch", body)."""
    meta = vc["metadata"]
    if field_owners(vc, ("spec", "keyspaces")) == {(kube.FIELD_MANAGER, "Apply")}:
        body = applied_config(vc)
        if keyspaces:
            body.setdefault("spec", {})["keyspaces"] = copy.deepcopy(keyspaces)
        else:
            body.get("spec", {}).pop("keyspaces", None)
        return "apply", body
    return "patch", {"metadata": {"resourceVersion": meta.get("resourceVersion")}, "spec": {"keyspaces": keyspaces or None}}


def without_keyspace(vc: dict, keyspace: str) -> Step:
    """The change that takes ``keyspace`` out of the VitessCluster's spec (upstream 102), made as
    ``keyspaces_change`` says."""
    meta = vc["metadata"]
    subject = ref("VitessCluster", meta["name"], meta.get("namespace"))
    what = f"keyspace {keyspace} of {subject} (out of spec.keyspaces; the operator removes its shards and tablets)"
    rest = [k for k in (vc.get("spec") or {}).get("keyspaces") or [] if k.get("name") != keyspace]
    verb, body = keyspaces_change(vc, rest)
    return Step(verb, what, *VC, meta["name"], meta.get("namespace"), body=body)


def refuse(obs: Observed, req: TeardownRequest) -> None:
    """Every refusal, before anything changes: one line naming the object and the fix."""
    if req.scope == "keyspace" and not req.keyspace:
        raise ConfigError(obs.subject, "scope keyspace needs the keyspace to remove.",
                          f"set keyspace to one of {', '.join(keyspace_names(obs.vc)) or 'its keyspaces'}, or set "
                          "scope to cluster to remove the whole cluster.")
    asked = [w for w, on in (("delete_claims", req.delete_claims), ("delete_backups", req.delete_backups)) if on]
    if asked and req.confirm != obs.cluster:
        got = f"confirm is {req.confirm!r}" if req.confirm else "confirm is empty"
        raise ConfigError(obs.subject, f"{' and '.join(asked)} would delete data for good, and {got}; nothing was changed.",
                          f"set confirm to {obs.cluster!r} (the cluster's name) to delete it, or turn "
                          f"{' and '.join(asked)} off to keep it.")
    if req.remove_operator and req.scope != "cluster":
        raise ConfigError(obs.subject, "remove_operator removes the operator every keyspace needs; it needs scope cluster.",
                          "set scope to cluster, or turn remove_operator off.")
    if req.remove_operator and obs.other_clusters:
        raise ConfigError(obs.subject, "remove_operator: other VitessClusters still use the vitess-operator and its "
                          f"CRDs ({', '.join(obs.other_clusters)}); nothing was changed.",
                          "tear those down first, or turn remove_operator off.")
    if req.delete_backups and obs.backups is None and obs.backups_unread:
        raise PermanentError(obs.subject, f"delete_backups: the backups cannot be listed ({obs.backups_unread}); "
                             "nothing was changed.", "wait until the cluster's vtctld is Ready and re-run, or turn "
                             "delete_backups off.")


def plan(obs: Observed, req: TeardownRequest) -> Plan:
    """The steps of the teardown in order, and what is kept; refuses (ConfigError) first."""
    refuse(obs, req)
    ns, cluster = obs.namespace, obs.cluster
    steps: list[Step] = []
    kept: list[str] = []
    notes: list[Finding] = []

    # backups (while vtctld runs)
    for (ks, shard), backups in sorted((obs.backups or {}).items()):
        if req.delete_backups:
            steps += [Step("remove-backup", f"backup {ks}/{shard} {b}", backup=(ks, shard, b)) for b in backups]
        elif backups:
            kept.append(f"{len(backups)} backup(s) of shard {ks}/{shard} (newest {backups[-1]}): delete_backups not set")
    if req.delete_backups and obs.vc is None:
        notes.append(Finding(name="backups", level="warn", problem=f"{obs.subject} is gone, so RemoveBackup cannot "
                             "run: only vtflow's backup claim (if any is left) is deleted",
                             fix="remove what is left in an s3 location with the bucket's own tools"))
    if obs.backups is None and obs.backups_unread and not req.delete_backups:
        notes.append(Finding(name="backups", level="warn", problem=f"not listed: {obs.backups_unread}",
                             fix="they are kept in the backup location either way"))

    data = [c for c in obs.claims if not is_backup_claim(c)]
    backup_claims = [c for c in obs.claims if is_backup_claim(c)] if req.scope == "cluster" else []
    if not req.delete_claims:
        for c in data:
            patch = keep_claim_patch(c, obs.namespace_obj)
            if patch is not None:
                steps.append(Step("keep-claim", ref("PersistentVolumeClaim", c["metadata"]["name"], ns), *PVC,
                                  c["metadata"]["name"], ns, body=patch))

    pods = [p["metadata"]["name"] for p in obs.pods if not p["metadata"].get("deletionTimestamp")]
    if req.scope == "keyspace":
        ks = req.keyspace
        selector = names.selector({names.CLUSTER: cluster, names.KEYSPACE: ks})
        if obs.vc is None:
            notes.append(Finding(name=f"keyspace {ks}", level="ok", problem=f"{obs.subject} does not exist"))
        elif ks in keyspace_names(obs.vc):
            steps.append(without_keyspace(obs.vc, ks))
        elif not obs.pods and not obs.claims:
            notes.append(Finding(name=f"keyspace {ks}", level="ok",
                                 problem=f"not in {obs.subject} (its keyspaces: "
                                         f"{', '.join(keyspace_names(obs.vc)) or 'none'})"))
        steps += [Step("wait-gone", f"the VitessKeyspace of {ks}", "planetscale.com/v2", "VitessKeyspace",
                       namespace=ns, selector=selector),
                  Step("wait-gone", f"the pods of keyspace {ks}", "v1", "Pod", namespace=ns, selector=selector)]
        if obs.vc is not None:
            others = [k for k in keyspace_names(obs.vc) if k != ks]
            kept.append(f"{obs.subject} and its other keyspaces ({', '.join(others) or 'none'})")
    else:
        if obs.vc is not None:
            steps += [Step("delete", obs.subject + " (with everything the operator made for it)", *VC, cluster, ns),
                      Step("wait-gone", obs.subject, *VC, cluster, ns)]
        steps.append(Step("wait-gone", f"the pods of {obs.subject}", "v1", "Pod", namespace=ns,
                          selector=names.cluster_selector(cluster)))
        for o in obs.made:
            m = o["metadata"]
            steps.append(Step("delete", ref(o["kind"], m["name"], ns), o.get("apiVersion", "v1"), o["kind"], m["name"], ns))
        kept.append(f"Namespace {ns}: vtflow never deletes a namespace (it may hold other things, and the kept claims)")
        if obs.vc is None and not req.delete_backups:
            kept.append("any backups in the cluster's backup location: the VitessCluster is gone, so vtflow can no "
                        "longer list them")

    # claims: data (tablets, etcd) and vtflow's backup claim
    gone: list[Step] = []
    for claims, asked, why in ((data, req.delete_claims, f"the data of a tablet or etcd member; delete it with "
                                                         f"delete_claims and confirm={cluster}"),
                               (backup_claims, req.delete_backups,
                                f"the backups' volume; delete it with delete_backups and confirm={cluster}")):
        for c in claims:
            name = c["metadata"]["name"]
            if asked:
                steps.append(Step("delete", ref("PersistentVolumeClaim", name, ns), *PVC, name, ns))
                gone.append(Step("wait-gone", ref("PersistentVolumeClaim", name, ns), *PVC, name, ns))
            else:
                kept.append(f"{ref('PersistentVolumeClaim', name, ns)}: {why}")
    steps += gone

    if req.remove_operator:
        for o in obs.operator:
            m = o["metadata"]
            steps.append(Step("delete", ref(o["kind"], m["name"], m.get("namespace")), o["apiVersion"], o["kind"],
                              m["name"], m.get("namespace")))
        steps += [Step("wait-gone", f"the vitess-operator pods in {ns}", "v1", "Pod", namespace=ns,
                       selector=names.selector(names.OPERATOR_POD_LABELS))]
        steps += [Step("wait-gone", ref(o["kind"], o["metadata"]["name"]), *CRD, o["metadata"]["name"])
                  for o in obs.operator if o["kind"] == "CustomResourceDefinition"]
    elif req.scope == "cluster":
        kept.append("the vitess-operator and its CRDs: remove_operator not set")

    gone_with = [f"{len(pods)} pod(s) of " + (f"keyspace {req.keyspace}" if req.scope == "keyspace" else obs.subject)
                 + " (the operator and the garbage collector delete them; waited until gone)"] if pods else []
    return Plan(steps=steps, kept=kept, gone_with_it=gone_with, notes=notes)


# ---------------------------------------------------------------- pure: waiting


def still_there(obj: dict | None) -> str | None:
    """None once the object is gone; else why it is still there (its finalizers named)."""
    if obj is None:
        return None
    meta = obj.get("metadata") or {}
    if not meta.get("deletionTimestamp"):
        return "not deleted yet"
    finalizers = meta.get("finalizers") or []
    return (f"deleting since {meta['deletionTimestamp']}"
            + (f", held by finalizer(s) {', '.join(finalizers)}" if finalizers else ""))


WAIT_FIX = ("each finalizer is removed by the controller that set it once its work is done (is the vitess-operator "
            "running? a keyspace with turndownPolicy RequireIdle waits until it is idle; a claim waits for the pods "
            "using it); do not strip finalizers by hand. Re-run the teardown to wait again, or raise timeout_s.")


# ---------------------------------------------------------------- I/O


def _read_backups(k: kube.Kube, obs: Observed, shards: list[tuple[str, str]]) -> None:
    vt = Vtctld(k, obs.namespace, obs.cluster, timeout_s=60)
    try:
        obs.backups = {(ks, sh): sorted(b["name"] for b in vt.get_backups(ks, sh)) for ks, sh in shards}
    except TransientError as e:  # no Ready vtctld pod
        obs.backups, obs.backups_unread = None, f"{e.subject}: {e.problem}"
    except PermanentError as e:
        obs.backups, obs.backups_unread = None, f"{e.subject}: {e.problem}"


def observe(target: TargetContext, req: TeardownRequest) -> Observed:
    """Read what the plan needs, once; nothing here changes the cluster."""
    k, ns, cluster = target.k, target.namespace, target.cluster
    try:
        vc = k.get(*VC, cluster, ns)
    except kube.MissingKindError:
        vc = None  # the CRDs are gone: no VitessCluster can be left
    obs = Observed(namespace=ns, cluster=cluster, vc=vc, namespace_obj=k.get("v1", "Namespace", ns))
    if obs.namespace_obj is None:
        return obs
    labels = {names.CLUSTER: cluster}
    if req.scope == "keyspace":
        labels[names.KEYSPACE] = req.keyspace
    selector = names.selector(labels)
    obs.pods = k.list("v1", "Pod", ns, label_selector=selector)
    obs.claims = k.list(*PVC, ns, label_selector=selector)
    if req.scope == "cluster":
        managed = names.selector(names.managed_labels(cluster))
        obs.made = [{**o, "apiVersion": "v1", "kind": kind} for kind in ("Service", "Secret")
                    for o in k.list("v1", kind, ns, label_selector=managed)]
    if vc is not None and ((vc.get("spec") or {}).get("backup") or {}).get("locations"):
        shards = sorted(s for s in expected_tablets_of(vc) if req.scope == "cluster" or s[0] == req.keyspace)
        if shards:
            _read_backups(k, obs, shards)
    if req.remove_operator:
        try:
            obs.other_clusters = sorted(f"{o['metadata']['namespace']}/{o['metadata']['name']}" for o in k.list(*VC)
                                        if (o["metadata"]["namespace"], o["metadata"]["name"]) != (ns, cluster))
        except kube.MissingKindError:
            obs.other_clusters = []
        for api_version, kind, name, namespaced in OPERATOR_OBJECTS:
            o = k.get(api_version, kind, name, ns if namespaced else None)
            if o is not None:
                obs.operator.append({**o, "apiVersion": api_version, "kind": kind})
        obs.operator += [{**o, "apiVersion": CRD[0], "kind": CRD[1]} for o in k.list(*CRD)
                         if (o.get("spec") or {}).get("group") == OPERATOR_GROUP]
    return obs


def _wait_gone(k: kube.Kube, step: Step, deadline: float, log) -> None:
    """Until the object (or every object of the kind matching the selector) is gone: a watch
    per object, the finalizers of the one still there named when the time is up."""
    while True:
        if step.name:
            name = step.name
        else:
            items = k.list(step.api_version, step.kind, step.namespace, label_selector=step.selector)
            if not items:
                return
            name = items[0]["metadata"]["name"]
            log.info("waiting for %s to go: %d %s(s) left", step.what, len(items), step.kind)
        try:
            k.wait(step.api_version, step.kind, name, step.namespace, still_there, max(1.0, deadline - time.monotonic()))
        except kube.WaitTimeout as e:
            raise kube.WaitTimeout(e.subject, e.problem.replace("not ready", "still there"), WAIT_FIX) from e
        if step.name:
            return


def apply_plan(k: kube.Kube, namespace: str, cluster: str, p: Plan, timeout_s: float, log,
               done: Callable[[Step], None] = lambda s: None) -> None:
    """Run the plan's steps in order (dry-run: each write as a server dry run, no RemoveBackup,
    no waiting). ``done`` hears of each finished step, so that a failure still reports them."""
    deadline = time.monotonic() + timeout_s
    vt = Vtctld(k, namespace, cluster)
    for step in p.steps:
        if step.verb == "wait-gone":
            if not k.dry_run:
                _wait_gone(k, step, deadline, log)
        elif step.verb == "remove-backup":
            if not k.dry_run:
                vt.remove_backup(*step.backup)
        elif step.verb == "apply":
            k.apply(step.body)
        elif step.verb in ("patch", "keep-claim"):
            k.patch(step.api_version, step.kind, step.name, step.namespace, step.body,
                    manager=kube.FIELD_MANAGER + "-teardown")
        elif step.verb == "delete":
            k.delete(step.api_version, step.kind, step.name, step.namespace)
        if step.verb != "wait-gone":
            log.info("%s%s: %s", "(dry run) " if k.dry_run else "", step.verb, step.what)
        done(step)


@task(name="teardown-observe", task_run_name="observe", retries=1, retry_delay_seconds=5,
      retry_condition_fn=retry_transient, cache_policy=NO_CACHE)
async def observe_task(target: TargetContext, req: TeardownRequest) -> Observed:
    return await asyncio.to_thread(observe, target, req)


@task(name="teardown-apply", task_run_name="apply", cache_policy=NO_CACHE)
async def apply_task(target: TargetContext, p: Plan, timeout_s: float, done: Callable[[Step], None]) -> None:
    log = get_run_logger()
    await asyncio.to_thread(apply_plan, target.k, target.namespace, target.cluster, p, timeout_s, log, done)
