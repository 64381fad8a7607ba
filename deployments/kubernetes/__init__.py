"""The Kubernetes work pool: vtflow's flows as Jobs inside the cluster vtflow manages (next to vtgate).

``base-job-template.json`` is prefect-kubernetes' default base job template (``prefect work-pool
get-default-base-job-template --type kubernetes``, prefect-kubernetes 0.8.0) with vtflow's
defaults: namespace ``vtflow``, the Jobs' service account ``vtflow-flow-runs`` (no rights: the
flows reach the cluster with the target block's kubeconfig, as everywhere else),
``VTFLOW_CHECKOUT=/opt/vtflow`` (prefect.yaml's pull step), finished Jobs kept an hour, and an
``image`` that must be given (vtflow's checkout at /opt/vtflow with its dependencies).

``worker_manifests()`` renders the worker: Namespace, the two ServiceAccounts, the Role and
RoleBinding it needs (Jobs; Pods, their logs and Events to watch them, in its namespace only),
the template as a ConfigMap and the worker's Deployment, which creates the pool from it on its
first start. ``render_job()`` fills the template as the worker fills it for a flow run (the
tests validate both against the Kubernetes API double). Print them: ``python -m
deployments.kubernetes worker|job IMAGE``.
"""

from __future__ import annotations

import copy
import json
import shlex
from pathlib import Path

from vtflow import names

HERE = Path(__file__).parent
POOL = "vtflow-kubernetes"
NAMESPACE = "vtflow"
# Prefect's own image with prefect-kubernetes, at the Prefect vtflow pins
WORKER_IMAGE = "prefecthq/prefect:3.9.1-python3.11-kubernetes"
API_SECRET = "vtflow-prefect-api"  # keys api-url, auth-string: made by the user (README)


def base_job_template() -> dict:
    return json.loads((HERE / "base-job-template.json").read_text())


def render_job(job_variables: dict, flow_run_id: str, flow_run_name: str, settings_env: dict[str, str],
               template: dict | None = None) -> dict:
    """The Job the worker creates for one flow run: the template's variables (defaults, then the
    deployment's ``job_variables``) filled in, then what prefect-kubernetes' worker adds
    (KubernetesWorkerJobConfiguration.prepare_for_flow_run): its Prefect settings and the run's id
    in ``env`` as a list, the run's labels, ``prefect flow-run execute`` as args, a generateName."""
    from prefect.utilities.templating import apply_values

    template = copy.deepcopy(template or base_job_template())
    props = template["variables"].get("properties", {})
    missing = [k for k in template["variables"].get("required", []) if k not in job_variables]
    if missing:
        raise ValueError(f"job variables {missing} are required by the work pool's template")
    # as BaseJobConfiguration._get_base_config_defaults: a None default is no value (its key goes)
    values = {k: v["default"] for k, v in props.items() if v.get("default") is not None}
    env = {**values.get("env", {}), **job_variables.get("env", {})}
    values.update(job_variables)
    values["env"] = env
    config = apply_values(template["job_configuration"], values)
    manifest = config["job_manifest"]
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    run_env = {**settings_env, "PREFECT__FLOW_RUN_ID": flow_run_id, **config.get("env", {})}
    container["env"] = [{"name": k, "value": v} for k, v in run_env.items() if v is not None]
    if not container.get("args"):
        container["args"] = shlex.split("prefect flow-run execute")
    elif isinstance(container["args"], str):
        container["args"] = shlex.split(container["args"])
    labels = {**(manifest["metadata"].get("labels") or {}), "prefect.io/flow-run-id": flow_run_id,
              "prefect.io/flow-run-name": flow_run_name}
    manifest["metadata"]["labels"] = labels
    manifest["spec"]["template"].setdefault("metadata", {})["labels"] = dict(labels)
    if manifest["metadata"].get("generateName") in (None, "", "-", "None-"):
        manifest["metadata"]["generateName"] = f"{flow_run_name}-"
    for key in ("annotations",):
        if not manifest["metadata"].get(key):
            manifest["metadata"].pop(key, None)
    resources = container.get("resources", {})
    for part in ("limits", "requests"):
        if not resources.get(part):
            resources.pop(part, None)
    return manifest


def worker_manifests(namespace: str = NAMESPACE, image: str = WORKER_IMAGE, pool: str = POOL) -> list[dict]:
    """The worker and what it needs, in ``namespace``."""
    labels = dict(names.WORKER_LABELS)
    meta = {"namespace": namespace, "labels": labels}
    secret_env = [{"name": name, "valueFrom": {"secretKeyRef": {"name": API_SECRET, "key": key}}}
                  for name, key in (("PREFECT_API_URL", "api-url"), ("PREFECT_API_AUTH_STRING", "auth-string"))]
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace, "labels": labels}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "vtflow-worker", **meta}},
        # the flow runs' own: no Role binds it (the flows use the target block's kubeconfig)
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "vtflow-flow-runs", **meta},
         "automountServiceAccountToken": False},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "vtflow-worker", **meta},
         "rules": [
             {"apiGroups": ["batch"], "resources": ["jobs"],
              "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
             {"apiGroups": [""], "resources": ["pods", "pods/log", "pods/status"], "verbs": ["get", "list", "watch"]},
             {"apiGroups": [""], "resources": ["events"], "verbs": ["get", "list", "watch"]},
         ]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "vtflow-worker", **meta},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "vtflow-worker"},
         "subjects": [{"kind": "ServiceAccount", "name": "vtflow-worker", "namespace": namespace}]},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "vtflow-base-job-template", **meta},
         "data": {"base-job-template.json": json.dumps(base_job_template(), indent=2)}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "vtflow-worker", **meta},
         "spec": {
             "replicas": 1,
             "selector": {"matchLabels": dict(names.WORKER_SELECTOR)},
             "template": {
                 "metadata": {"labels": labels},
                 "spec": {
                     "serviceAccountName": "vtflow-worker",
                     "containers": [{
                         "name": "worker",
                         "image": image,
                         "args": ["prefect", "worker", "start", "--pool", pool, "--type", "kubernetes",
                                  "--base-job-template", "/etc/vtflow/base-job-template.json"],
                         "env": [*secret_env,
                                 # watch this namespace only: the Role grants no more
                                 {"name": "PREFECT_INTEGRATIONS_KUBERNETES_OBSERVER_NAMESPACES", "value": namespace}],
                         "volumeMounts": [{"name": "template", "mountPath": "/etc/vtflow", "readOnly": True}],
                         "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
                         "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True, "runAsUser": 1000},
                     }],
                     "volumes": [{"name": "template", "configMap": {"name": "vtflow-base-job-template"}}],
                 },
             },
         }},
    ]

