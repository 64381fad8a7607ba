"""Workload controllers: Deployment -> ReplicaSet -> Pods, StatefulSet, DaemonSet, Job.

SIMPLIFIED rollouts: a Deployment whose template changed gets a new ReplicaSet at full size
and scales the old ones to zero once the new one is fully ready (no maxSurge arithmetic). A
StatefulSet creates ``<name>-0..n-1`` in order (OrderedReady waits for each to be Ready;
Parallel does not), makes claims ``<template>-<pod>`` from volumeClaimTemplates, scales down
from the highest ordinal and rolls a changed template by deleting outdated pods from the
highest ordinal, one at a time while the rest are ready. A Job runs one pod per completion,
sequentially. Status fields follow the real ones the clients read.
"""

from __future__ import annotations

import copy

from ..selectors import match_label_selector_obj
from ..store import now_rfc3339
from . import Controller
from .common import (controller_of, is_ready, is_terminal, owned_by, owner_ref, pod_from_template,
                     set_condition, template_hash)


def _owned(double, ref: str, ns: str, owner: dict) -> list[dict]:
    return [o for o in double.list(ref, ns) if owned_by(o, owner)]


def _owner_of(double, obj: dict, ref: str, kind: str) -> dict | None:
    c = controller_of(obj)
    if c and c.get("kind") == kind:
        owner = double.get(ref, obj["metadata"].get("namespace", ""), c["name"])
        if owner and owner["metadata"]["uid"] == c.get("uid"):
            return owner
    return None


class ReplicaSetController(Controller):
    name = "replicaset-controller"
    watches = ("apps/replicasets", "pods")

    def handle(self, double, change) -> None:
        if change.resource == "pods":
            rs = _owner_of(double, change.obj, "apps/replicasets", "ReplicaSet")
            if rs:
                self.reconcile(double, rs)
        elif change.type != "DELETED":
            self.reconcile(double, change.obj)

    def reconcile(self, double, rs: dict) -> None:
        if rs["metadata"].get("deletionTimestamp"):
            return  # being deleted: the real controllers stop managing its pods (the GC takes over)
        ns, name = rs["metadata"]["namespace"], rs["metadata"]["name"]
        want = (rs.get("spec") or {}).get("replicas", 1)
        # controller.FilterActivePods: a terminating pod no longer counts, so a replacement starts
        pods = [p for p in _owned(double, "pods", ns, rs) if not is_terminal(p) and not p["metadata"].get("deletionTimestamp")]
        template = (rs.get("spec") or {}).get("template") or {}
        for _ in range(want - len(pods)):
            double.create("pods", pod_from_template(template, ns, rs, generate_prefix=f"{name}-"))
        if len(pods) > want:
            # not-ready first, then the newest, as the real controller prefers
            victims = sorted(pods, key=lambda p: (is_ready(p), p["metadata"]["creationTimestamp"]), )
            for p in victims[: len(pods) - want]:
                double.delete("pods", ns, p["metadata"]["name"])
        pods = [p for p in _owned(double, "pods", ns, rs) if not is_terminal(p)]
        ready = sum(1 for p in pods if is_ready(p))
        status = {"replicas": len(pods), "fullyLabeledReplicas": len(pods), "readyReplicas": ready,
                  "availableReplicas": ready, "observedGeneration": rs["metadata"]["generation"]}
        status = {k: v for k, v in status.items() if v or k in ("replicas", "observedGeneration")}
        if rs.get("status") != status:
            double.mutate("apps/replicasets", ns, name, lambda r: r.update(status=status))


class DeploymentController(Controller):
    name = "deployment-controller"
    watches = ("apps/deployments", "apps/replicasets")

    def handle(self, double, change) -> None:
        if change.resource == "replicasets":
            dep = _owner_of(double, change.obj, "apps/deployments", "Deployment")
            if dep:
                self.reconcile(double, dep)
        elif change.type != "DELETED":
            self.reconcile(double, change.obj)

    def reconcile(self, double, dep: dict) -> None:
        if dep["metadata"].get("deletionTimestamp"):
            return  # being deleted: the real controllers stop managing its pods (the GC takes over)
        ns, name = dep["metadata"]["namespace"], dep["metadata"]["name"]
        spec = dep.get("spec") or {}
        want = spec.get("replicas", 1)
        template = copy.deepcopy(spec.get("template") or {})
        h = template_hash(template)
        rs_name = f"{name}-{h}"
        owned = _owned(double, "apps/replicasets", ns, dep)
        revision = 1 + max((int((r["metadata"].get("annotations") or {}).get("deployment.kubernetes.io/revision", "0"))
                            for r in owned), default=0)
        new_rs = next((r for r in owned if r["metadata"]["name"] == rs_name), None)
        if new_rs is None:
            template.setdefault("metadata", {}).setdefault("labels", {})["pod-template-hash"] = h
            selector = copy.deepcopy(spec.get("selector") or {})
            selector.setdefault("matchLabels", {})["pod-template-hash"] = h
            new_rs = double.create("apps/replicasets", {
                "apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {"name": rs_name, "namespace": ns,
                             "labels": {**(template["metadata"].get("labels") or {})},
                             "annotations": {"deployment.kubernetes.io/revision": str(revision),
                                             "deployment.kubernetes.io/desired-replicas": str(want)},
                             "ownerReferences": [owner_ref(dep)]},
                "spec": {"replicas": want, "selector": selector, "template": template,
                         "minReadySeconds": spec.get("minReadySeconds", 0)}})
        elif new_rs["spec"].get("replicas") != want:
            double.mutate("apps/replicasets", ns, rs_name, lambda r: r["spec"].update(replicas=want))
        new_ready = (new_rs.get("status") or {}).get("readyReplicas", 0)
        olds = [r for r in owned if r["metadata"]["name"] != rs_name]
        if new_ready >= want:
            for r in olds:
                if r["spec"].get("replicas"):
                    double.mutate("apps/replicasets", ns, r["metadata"]["name"], lambda x: x["spec"].update(replicas=0))
        self._status(double, dep, rs_name, want)

    def _status(self, double, dep: dict, rs_name: str, want: int) -> None:
        ns, name = dep["metadata"]["namespace"], dep["metadata"]["name"]
        owned = _owned(double, "apps/replicasets", ns, dep)
        total = sum((r.get("status") or {}).get("replicas", 0) for r in owned)
        ready = sum((r.get("status") or {}).get("readyReplicas", 0) for r in owned)
        new = next((r for r in owned if r["metadata"]["name"] == rs_name), {})
        updated = (new.get("status") or {}).get("replicas", 0)
        new_ready = (new.get("status") or {}).get("readyReplicas", 0)
        now = now_rfc3339()
        old_status = dep.get("status") or {}
        conds = old_status.get("conditions") or []
        if ready >= want:
            conds = set_condition(conds, "Available", "True", "MinimumReplicasAvailable",
                                  "Deployment has minimum availability.", now)
        else:
            conds = set_condition(conds, "Available", "False", "MinimumReplicasUnavailable",
                                  "Deployment does not have minimum availability.", now)
        if new_ready >= want and updated == want and total == want:
            conds = set_condition(conds, "Progressing", "True", "NewReplicaSetAvailable",
                                  f'ReplicaSet "{rs_name}" has successfully progressed.', now)
        else:
            conds = set_condition(conds, "Progressing", "True", "ReplicaSetUpdated",
                                  f'ReplicaSet "{rs_name}" is progressing.', now)
        status = {"observedGeneration": dep["metadata"]["generation"], "replicas": total,
                  "updatedReplicas": updated, "readyReplicas": ready, "availableReplicas": ready,
                  "unavailableReplicas": max(0, want - ready), "conditions": conds}
        status = {k: v for k, v in status.items() if v or k in ("observedGeneration", "conditions", "replicas")}
        # fields this controller does not own (collisionCount, ...) survive its writes
        mine = {"observedGeneration", "replicas", "updatedReplicas", "readyReplicas", "availableReplicas",
                "unavailableReplicas", "conditions"}
        status = {**{k: v for k, v in old_status.items() if k not in mine}, **status}
        if _strip_times(old_status) != _strip_times(status):
            double.mutate("apps/deployments", ns, name, lambda d: d.update(status=status))


def _strip_times(status: dict) -> dict:
    out = dict(status)
    out["conditions"] = [{k: v for k, v in c.items() if not k.endswith("Time")} for c in status.get("conditions") or []]
    return out


class StatefulSetController(Controller):
    name = "statefulset-controller"
    watches = ("apps/statefulsets", "pods")

    def handle(self, double, change) -> None:
        if change.resource == "pods":
            sts = _owner_of(double, change.obj, "apps/statefulsets", "StatefulSet")
            if sts:
                self.reconcile(double, sts)
        elif change.type != "DELETED":
            self.reconcile(double, change.obj)

    def reconcile(self, double, sts: dict) -> None:
        if sts["metadata"].get("deletionTimestamp"):
            return  # being deleted: the real controllers stop managing its pods (the GC takes over)
        ns, name = sts["metadata"]["namespace"], sts["metadata"]["name"]
        spec = sts.get("spec") or {}
        want = spec.get("replicas", 1)
        ordered = spec.get("podManagementPolicy", "OrderedReady") == "OrderedReady"
        revision = f"{name}-{template_hash(spec.get('template') or {})}"
        pods = {p["metadata"]["name"]: p for p in _owned(double, "pods", ns, sts)}
        for i in range(want):
            pod_name = f"{name}-{i}"
            if pod_name in pods:
                if ordered and not is_ready(pods[pod_name]):
                    break
                continue
            self._create_pod(double, sts, i, revision)
            if ordered:
                break
        # scale down from the highest ordinal
        extra = sorted((p for n, p in pods.items() if _ordinal(name, n) >= want),
                       key=lambda p: -_ordinal(name, p["metadata"]["name"]))
        for p in extra[:1] if ordered else extra:
            double.delete("pods", ns, p["metadata"]["name"])
        # rolling update: replace one outdated pod (highest ordinal first) while the rest are ready
        current = [p for n, p in pods.items() if _ordinal(name, n) < want]
        if not extra and len(current) == want and all(is_ready(p) for p in current):
            outdated = sorted((p for p in current if (p["metadata"].get("labels") or {}).get("controller-revision-hash") != revision),
                              key=lambda p: -_ordinal(name, p["metadata"]["name"]))
            if outdated:
                double.delete("pods", ns, outdated[0]["metadata"]["name"])
        pods = [p for p in _owned(double, "pods", ns, sts)]
        ready = sum(1 for p in pods if is_ready(p))
        updated = sum(1 for p in pods if (p["metadata"].get("labels") or {}).get("controller-revision-hash") == revision)
        status = {"observedGeneration": sts["metadata"]["generation"], "replicas": len(pods), "readyReplicas": ready,
                  "currentReplicas": updated, "updatedReplicas": updated, "availableReplicas": ready,
                  "currentRevision": revision, "updateRevision": revision, "collisionCount": 0}
        if sts.get("status") != status:
            double.mutate("apps/statefulsets", ns, name, lambda s: s.update(status=status))

    def _create_pod(self, double, sts: dict, i: int, revision: str) -> None:
        ns, name = sts["metadata"]["namespace"], sts["metadata"]["name"]
        spec = sts["spec"]
        pod_name = f"{name}-{i}"
        pod = pod_from_template(spec.get("template") or {}, ns, sts, name=pod_name, extra_labels={
            "statefulset.kubernetes.io/pod-name": pod_name, "apps.kubernetes.io/pod-index": str(i),
            "controller-revision-hash": revision})
        pod["spec"]["hostname"] = pod_name
        if spec.get("serviceName"):
            pod["spec"]["subdomain"] = spec["serviceName"]
        volumes = pod["spec"].setdefault("volumes", [])
        for tpl in spec.get("volumeClaimTemplates") or []:
            claim = f"{tpl['metadata']['name']}-{pod_name}"
            if double.get("persistentvolumeclaims", ns, claim) is None:
                pvc_spec = copy.deepcopy(tpl.get("spec") or {})
                if pvc_spec.get("storageClassName") is None:
                    default = double.default_storage_class()
                    if default:
                        pvc_spec["storageClassName"] = default
                double.create("persistentvolumeclaims", {
                    "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                    "metadata": {"name": claim, "namespace": ns,
                                 "labels": {**((spec.get("selector") or {}).get("matchLabels") or {}),
                                            **((tpl.get("metadata") or {}).get("labels") or {})}},
                    "spec": pvc_spec})
            if not any(v.get("name") == tpl["metadata"]["name"] for v in volumes):
                volumes.append({"name": tpl["metadata"]["name"], "persistentVolumeClaim": {"claimName": claim}})
        double.create("pods", pod)


def _ordinal(sts_name: str, pod_name: str) -> int:
    suffix = pod_name[len(sts_name) + 1:]
    return int(suffix) if suffix.isdigit() else -1


class DaemonSetController(Controller):
    name = "daemonset-controller"
    watches = ("apps/daemonsets", "pods", "nodes")

    def handle(self, double, change) -> None:
        if change.resource == "pods":
            ds = _owner_of(double, change.obj, "apps/daemonsets", "DaemonSet")
            if ds:
                self.reconcile(double, ds)
        elif change.resource == "nodes":
            for ds in double.list("apps/daemonsets"):
                self.reconcile(double, ds)
        elif change.type != "DELETED":
            self.reconcile(double, change.obj)

    def reconcile(self, double, ds: dict) -> None:
        if ds["metadata"].get("deletionTimestamp"):
            return  # being deleted: the real controllers stop managing its pods (the GC takes over)
        ns, name = ds["metadata"]["namespace"], ds["metadata"]["name"]
        spec = ds.get("spec") or {}
        selector = (spec.get("template") or {}).get("spec", {}).get("nodeSelector") or {}
        nodes = [n for n in double.list("nodes")
                 if match_label_selector_obj({"matchLabels": selector}, n["metadata"].get("labels") or {})]
        pods = _owned(double, "pods", ns, ds)
        by_node = {p["spec"].get("nodeName"): p for p in pods}
        revision = template_hash(spec.get("template") or {})
        for n in nodes:
            if n["metadata"]["name"] not in by_node:
                pod = pod_from_template(spec.get("template") or {}, ns, ds, generate_prefix=f"{name}-",
                                        extra_labels={"controller-revision-hash": revision, "pod-template-generation":
                                                      str(ds["metadata"]["generation"])})
                pod["spec"]["nodeName"] = n["metadata"]["name"]
                double.create("pods", pod)
        pods = _owned(double, "pods", ns, ds)
        ready = sum(1 for p in pods if is_ready(p))
        status = {"desiredNumberScheduled": len(nodes), "currentNumberScheduled": len(pods), "numberReady": ready,
                  "numberAvailable": ready, "updatedNumberScheduled": len(pods), "numberMisscheduled": 0,
                  "observedGeneration": ds["metadata"]["generation"]}
        if ds.get("status") != status:
            double.mutate("apps/daemonsets", ns, name, lambda d: d.update(status=status))


class JobController(Controller):
    name = "job-controller"
    watches = ("batch/jobs", "pods")

    def handle(self, double, change) -> None:
        if change.resource == "pods":
            job = _owner_of(double, change.obj, "batch/jobs", "Job")
            if job:
                self.reconcile(double, job)
        elif change.type != "DELETED":
            self.reconcile(double, change.obj)

    def reconcile(self, double, job: dict) -> None:
        if job["metadata"].get("deletionTimestamp"):
            return  # being deleted: the real controllers stop managing its pods (the GC takes over)
        ns, name = job["metadata"]["namespace"], job["metadata"]["name"]
        spec, old = job.get("spec") or {}, job.get("status") or {}
        if any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True" for c in old.get("conditions") or []):
            return
        completions = spec.get("completions", 1)
        pods = _owned(double, "pods", ns, job)
        succeeded = sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Succeeded")
        failed = sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Failed")
        active = [p for p in pods if not is_terminal(p)]
        uid = job["metadata"]["uid"]
        now = now_rfc3339()
        status = {k: v for k, v in old.items() if k not in ("active", "succeeded", "failed", "ready")}
        status.setdefault("startTime", now)
        conds = old.get("conditions") or []
        if succeeded >= completions:
            conds = set_condition(conds, "SuccessCriteriaMet", "True", "CompletionsReached", "Reached expected number of succeeded pods", now)
            conds = set_condition(conds, "Complete", "True", "CompletionsReached", "Reached expected number of succeeded pods", now)
            status["completionTime"] = now
        elif failed > spec.get("backoffLimit", 6):
            conds = set_condition(conds, "FailureTarget", "True", "BackoffLimitExceeded", "Job has reached the specified backoff limit", now)
            conds = set_condition(conds, "Failed", "True", "BackoffLimitExceeded", "Job has reached the specified backoff limit", now)
        elif not active:
            template = copy.deepcopy(spec.get("template") or {})
            labels = {"batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": name,
                      "controller-uid": uid, "job-name": name}
            double.create("pods", pod_from_template(template, ns, job, generate_prefix=f"{name}-", extra_labels=labels))
            active = [True]
        if conds:
            status["conditions"] = conds
        status.update(active=len(active), succeeded=succeeded, failed=failed,
                      ready=sum(1 for p in active if isinstance(p, dict) and is_ready(p)))
        status = {k: v for k, v in status.items() if v or k in ("startTime",)}
        if _strip_times(old) != _strip_times(status):
            double.mutate("batch/jobs", ns, name, lambda j: j.update(status=status))
