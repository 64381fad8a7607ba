"""Deploy steps 2 and 3: the etcd-operator (off by default) and the vitess-operator.

Pure builders turn upstream manifests into exactly what vtflow sends (namespace set, images
moved to the registry mirror, RBAC pointed at the right ServiceAccount); which release runs on
the cluster's Kubernetes version is tasks/versions.py's choice. The tasks are thin: build, apply through
``vtflow.kube``, wait (once: an operator still unavailable after the whole wait fails at once,
with why its pods do not run). The manifest is read by the caller, once per run. Nothing here imports the kubernetes client.
"""

from __future__ import annotations

import copy

import yaml
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.utilities.annotations import opaque

from tasks.cluster import diagnose
from tasks.common import retry_transient
from tasks.context import TargetContext
from tasks import versions
from tasks.report import Finding, StepReport, apply_all
from vtflow import kube, names
from vtflow.errors import ConfigError
from vtflow.sources import read_source

CLUSTER_SCOPED = {"CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "PriorityClass", "Namespace",
                  "StorageClass", "PersistentVolume"}
# Apply order: what others refer to goes first.
_ORDER = ["Namespace", "CustomResourceDefinition", "PriorityClass", "ServiceAccount", "ClusterRole", "Role",
          "ClusterRoleBinding", "RoleBinding", "ConfigMap", "Secret", "Service", "Deployment"]


# ---------------------------------------------------------------- pure: manifests


_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_manifest(source: str, timeout_s: float = 30.0) -> list[dict]:
    """Every YAML document of a local file or an http(s) URL, empty documents dropped."""
    text, _ = read_source(source, "manifest", inline=False, timeout_s=timeout_s,
                          fix="give a readable file (for clusters without internet, download operator.yaml once) "
                              "or a reachable URL.")
    try:
        # libyaml's safe loader when PyYAML has it (the wheels do): the same documents, ~8x faster
        # on operator.yaml's 370 kB of CRD schemas than the pure-Python one
        docs = [d for d in yaml.load_all(text, Loader=_SAFE_LOADER) if d]
    except yaml.YAMLError as e:
        raise ConfigError(f"manifest {source}", f"is not YAML ({e}).", "give the operator.yaml of a release.") from e
    for n, d in enumerate(docs, 1):
        if not isinstance(d, dict) or not d.get("kind") or not d.get("apiVersion"):
            raise ConfigError(f"manifest {source} document {n}", "has no kind or apiVersion.", "give a Kubernetes manifest.")
    return docs


def rewrite_image(image: str, mirror: str | None) -> str:
    """Move an image to the registry mirror: the source registry is dropped, the path kept.

    ``planetscale/vitess-operator:v2.17.0`` -> ``harbor.lan/vitess/planetscale/vitess-operator:v2.17.0``;
    ``quay.io/coreos/etcd-operator:v0.9.4`` -> ``harbor.lan/vitess/coreos/etcd-operator:v0.9.4``.
    """
    if not mirror:
        return image
    first, _, rest = image.partition("/")
    has_registry = bool(rest) and ("." in first or ":" in first or first == "localhost")
    path = rest if has_registry else image
    if "/" not in path.split(":")[0].split("@")[0]:
        path = f"library/{path}"  # Docker Hub's official images live under library/
    return f"{mirror.rstrip('/')}/{path}"


def _containers(obj: dict) -> list[dict]:
    spec = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
    return list(spec.get("initContainers") or []) + list(spec.get("containers") or [])


def operator_objects(docs: list[dict], namespace: str, mirror: str | None) -> list[dict]:
    """The vitess-operator's objects as vtflow applies them, in apply order.

    On purpose, unlike upstream's file: everything namespaced goes to ``namespace`` (upstream
    mixes ``example`` and the default namespace), the ClusterRoleBinding and WATCH_NAMESPACE
    point at that namespace, images move to the mirror, and duplicates collapse into one.
    """
    out: dict[tuple, dict] = {}
    for doc in docs:
        obj = copy.deepcopy(doc)  # the caller's documents stay as read
        kind = obj["kind"]
        meta = obj.setdefault("metadata", {})
        if kind not in CLUSTER_SCOPED:
            meta["namespace"] = namespace
        if kind == "ClusterRoleBinding":
            for subject in obj.get("subjects") or []:
                if subject.get("kind") == "ServiceAccount":
                    subject["namespace"] = namespace
        if kind == "RoleBinding":
            for subject in obj.get("subjects") or []:
                if subject.get("kind") == "ServiceAccount":
                    subject["namespace"] = namespace
        for c in _containers(obj):
            if c.get("image"):
                c["image"] = rewrite_image(c["image"], mirror)
            for env in c.get("env") or []:
                if env.get("name") == "WATCH_NAMESPACE":
                    env["value"] = namespace
        out[(obj["apiVersion"].split("/")[0], kind, meta.get("namespace"), meta["name"])] = obj
    objects = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}] + list(out.values())
    return sorted(objects, key=lambda o: _ORDER.index(o["kind"]) if o["kind"] in _ORDER else len(_ORDER))


ETCD_CRD = "etcdclusters.etcd.database.coreos.com"
ETCD_OPERATOR_IMAGE = "quay.io/coreos/etcd-operator:v0.9.4"


def etcd_operator_objects(namespace: str, mirror: str | None) -> list[dict]:
    """coreos/etcd-operator v0.9.4 made to run on current Kubernetes (../shared/FACTS.md):
    its CRD at apiextensions v1 (it would create a v1beta1 one itself, which 1.22+ refuse),
    RBAC at v1, an apps/v1 Deployment with a selector, started with ``-create-crd=false``."""
    labels = dict(names.ETCD_OPERATOR_LABELS)
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": ETCD_CRD},
         "spec": {"group": "etcd.database.coreos.com", "scope": "Namespaced",
                  "names": {"kind": "EtcdCluster", "listKind": "EtcdClusterList", "plural": "etcdclusters",
                            "singular": "etcdcluster", "shortNames": ["etcd"]},
                  "versions": [{"name": "v1beta2", "served": True, "storage": True,
                                "subresources": {"status": {}},
                                "schema": {"openAPIV3Schema": {"type": "object",
                                                               "x-kubernetes-preserve-unknown-fields": True}}}]}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "etcd-operator", "namespace": namespace}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "etcd-operator"},
         "rules": [
             {"apiGroups": ["etcd.database.coreos.com"], "resources": ["etcdclusters", "etcdbackups", "etcdrestores"],
              "verbs": ["*"]},
             {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"], "verbs": ["*"]},
             {"apiGroups": [""], "resources": ["pods", "services", "endpoints", "persistentvolumeclaims", "events"],
              "verbs": ["*"]},
             {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["*"]},
             {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "etcd-operator"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "etcd-operator"},
         "subjects": [{"kind": "ServiceAccount", "name": "etcd-operator", "namespace": namespace}]},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "etcd-operator", "namespace": namespace},
         "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels}, "spec": {
                      "serviceAccountName": "etcd-operator",
                      "containers": [{"name": "etcd-operator", "image": rewrite_image(ETCD_OPERATOR_IMAGE, mirror),
                                      "command": ["etcd-operator", "-create-crd=false"],
                                      "env": [{"name": "MY_POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                                              {"name": "MY_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                                      "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}}}]}}}},
    ]


# ---------------------------------------------------------------- readiness predicates


def crd_not_established(obj: dict | None) -> str | None:
    if obj is None:
        return "not created yet"
    conditions = {c.get("type"): c.get("status") for c in (obj.get("status") or {}).get("conditions") or []}
    return None if conditions.get("Established") == "True" else "not Established yet"


def deployment_not_available(obj: dict | None) -> str | None:
    if obj is None:
        return "not created yet"
    status = obj.get("status") or {}
    want = (obj.get("spec") or {}).get("replicas", 1)
    if status.get("observedGeneration", 0) < obj["metadata"].get("generation", 1):
        return "the new spec is not observed yet"
    available = status.get("availableReplicas", 0)
    if available < want or status.get("updatedReplicas", 0) < want:
        return f"{available}/{want} replicas available"
    return None


# ---------------------------------------------------------------- applying


def wait_operator(k: kube.Kube, objects: list[dict], timeout_s: float, log) -> None:
    """CRDs Established, then each Deployment available. A Deployment still unavailable after the
    whole wait fails at once with why its pods do not run (a retry would wait as long again)."""
    for obj in objects:
        if obj["kind"] == "CustomResourceDefinition":
            k.wait(obj["apiVersion"], obj["kind"], obj["metadata"]["name"], None, crd_not_established, timeout_s)
    for obj in objects:
        if obj["kind"] == "Deployment":
            meta = obj["metadata"]
            try:
                k.wait("apps/v1", "Deployment", meta["name"], meta["namespace"], deployment_not_available, timeout_s,
                       progress=lambda m: log.info("waiting: %s", m))
            except kube.WaitTimeout as e:
                labels = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
                selector = ",".join(f"{key}={value}" for key, value in sorted(labels.items()))
                findings = diagnose(k.list("v1", "Pod", meta["namespace"], label_selector=selector or None),
                                    k.list("v1", "Event", meta["namespace"]), [])
                raise kube.WaitTimeout(e.subject, e.problem + "".join(f"\n- {f}" for f in findings),
                                       "act on the findings above (an image the nodes cannot pull: check the "
                                       "registry mirror), then re-run.") from e


@task(name="etcd-operator", task_run_name="etcd-operator", retries=2, retry_delay_seconds=5,
      retry_condition_fn=retry_transient, cache_policy=NO_CACHE)
def install_etcd_operator(target: TargetContext, enabled: bool, timeout_s: float = 300) -> StepReport:
    """Step 2. Off by default: the vitess-operator runs its own etcd (EtcdLockserver)."""
    log = get_run_logger()
    if not enabled:
        reason = ("not needed: vitess-operator runs its own etcd for each cluster (EtcdLockserver); "
                  "coreos/etcd-operator was archived in 2020 and was only used by the old Vitess Helm chart")
        log.info("etcd-operator skipped: %s", reason)
        return StepReport(step="etcd-operator", skipped=reason)
    k = target.k
    objects = etcd_operator_objects(target.namespace, target.registry_mirror)
    report = apply_all(k, objects, "etcd-operator", log)
    if not k.dry_run:
        wait_operator(k, objects, timeout_s, log)
    report.warnings.append("etcd-operator v0.9.4's EtcdClusters do not start on Kubernetes >= 1.21 "
                           "(tolerate-unready-endpoints); vitess-operator does not use it.")
    return report


def install_vitess_operator(target: TargetContext, manifest: list[dict], source: str, choice: versions.Choice,
                            timeout_s: float = 300) -> StepReport:
    """Step 3: the operator's CRDs, RBAC and Deployment (``manifest``: the documents of
    ``source``, read once by the caller) of the release ``choice`` picked for the cluster's
    Kubernetes version (tasks/versions.py); its warnings go into the report. Runs as the
    Prefect task ``vitess-operator``."""
    # opaque: Prefect would otherwise walk every node of the manifest's CRD schemas (twice per
    # call) looking for futures; the documents are plain data, handed over whole
    return _install_vitess_operator(target, opaque(manifest), source, choice, timeout_s)


@task(name="vitess-operator", task_run_name="vitess-operator", retries=2, retry_delay_seconds=5,
      retry_condition_fn=retry_transient, cache_policy=NO_CACHE)
def _install_vitess_operator(target: TargetContext, manifest: list[dict], source: str, choice: versions.Choice,
                             timeout_s: float) -> StepReport:
    log = get_run_logger()
    k = target.k
    if versions.manifest_version(manifest) is None:
        raise ConfigError(f"manifest {source}", "has no vitess-operator Deployment with a versioned image.",
                          "give the operator.yaml of a vitess-operator release.")
    objects = operator_objects(manifest, target.namespace, target.registry_mirror)
    for warning in choice.warnings:
        log.warning("%s", warning)
    report = apply_all(k, objects, "vitess-operator", log)
    report.warnings += list(choice.warnings)
    report.findings.append(Finding(name="versions", level="warn" if choice.warnings else "ok", problem=choice.reason))
    if not k.dry_run:
        wait_operator(k, objects, timeout_s, log)
    return report
