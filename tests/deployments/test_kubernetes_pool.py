"""deployments/kubernetes (issue 14 item 9): the Kubernetes work pool's worker and the Job it
creates for a flow run, validated by the Kubernetes API double (the real OpenAPI schemas, strict
field validation, RBAC) as a real API server would."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from kubernetes.client.exceptions import ApiException

from deployments.kubernetes import NAMESPACE, base_job_template, render_job, worker_manifests

REPO = Path(__file__).resolve().parents[2]
PLURAL = {"Namespace": "namespaces", "ServiceAccount": "serviceaccounts", "Role": "roles", "RoleBinding": "rolebindings",
          "ConfigMap": "configmaps", "Deployment": "deployments", "Job": "jobs",
          "SubjectAccessReview": "subjectaccessreviews"}


@pytest.fixture
def cluster(tmp_path):
    from kubedouble import DoubleConfig, KubeDouble
    from vtflow import kube

    d = KubeDouble(DoubleConfig(nodes=1, git_version="v1.33.5+k3s1"))
    d.start()
    d.client = kube.api_client(d.kubeconfig(tmp_path / "kubeconfig").read_text(), None, "the double")
    yield d
    d.stop()


def post(api, obj, *, dry_run=False):
    """POST as kubectl create (and Prefect's worker) does, with strict field validation: an unknown
    or misplaced field is a 400, not a warning."""
    group_version, kind = obj["apiVersion"], obj["kind"]
    base = f"/api/{group_version}" if "/" not in group_version else f"/apis/{group_version}"
    namespace = (obj.get("metadata") or {}).get("namespace")
    path = f"{base}/namespaces/{namespace}/{PLURAL[kind]}" if namespace else f"{base}/{PLURAL[kind]}"
    query = [("fieldValidation", "Strict")] + ([("dryRun", "All")] if dry_run else [])
    request = api.param_serialize("POST", path, query_params=query, body=obj, auth_settings=["BearerToken"],
                                  header_params={"Content-Type": "application/json", "Accept": "application/json"})
    response = api.call_api(*request)
    body = response.read()
    if not 200 <= response.status < 300:
        raise ApiException(status=response.status, reason=body.decode())
    return json.loads(body)


def test_the_worker_and_a_flow_runs_job_are_valid_and_the_worker_may_run_jobs_only_in_its_namespace(cluster):
    for obj in worker_manifests():
        post(cluster.client, obj)
    job = render_job({"image": "harbor.example.com/vtflow/vtflow:1", "env": {"EXTRA": "1"}},
                     "2f1e0d2c-1111-4a4a-9b9b-000000000001", "brave-otter",
                     {"PREFECT_API_URL": "http://prefect.vtflow:4200/api"})
    created = post(cluster.client, job, dry_run=True)
    assert created["metadata"]["name"].startswith("brave-otter-"), created["metadata"]
    pod = created["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env == {"PREFECT_API_URL": "http://prefect.vtflow:4200/api", "EXTRA": "1", "VTFLOW_CHECKOUT": "/opt/vtflow",
                   "PREFECT__FLOW_RUN_ID": "2f1e0d2c-1111-4a4a-9b9b-000000000001"}
    assert pod["containers"][0]["args"] == ["prefect", "flow-run", "execute"]
    assert pod["serviceAccountName"] == "vtflow-flow-runs" and created["spec"]["backoffLimit"] == 0
    assert created["metadata"]["namespace"] == NAMESPACE

    # prefect-kubernetes' own default puts parallelism and completions in the pod spec: strict validation refuses it
    upstream = base_job_template()
    spec = upstream["job_configuration"]["job_manifest"]["spec"]
    spec["template"]["spec"]["parallelism"] = spec.pop("parallelism")
    with pytest.raises(ApiException) as refused:
        post(cluster.client, render_job({"image": "x:1"}, "2f1e0d2c-1111-4a4a-9b9b-000000000002", "r", {}, upstream),
             dry_run=True)
    assert refused.value.status == 400 and "parallelism" in refused.value.reason
    with pytest.raises(ValueError, match="image"):
        render_job({}, "id", "r", {})

    def allowed(user, verb, resource, namespace=NAMESPACE, group="", subresource=None):
        review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                  "spec": {"user": f"system:serviceaccount:{NAMESPACE}:{user}",
                           "groups": ["system:serviceaccounts", f"system:serviceaccounts:{NAMESPACE}"],
                           "resourceAttributes": {"namespace": namespace, "verb": verb, "group": group,
                                                  "resource": resource, **({"subresource": subresource} if subresource else {})}}}
        return post(cluster.client, review)["status"]["allowed"]

    assert allowed("vtflow-worker", "create", "jobs", group="batch")
    assert allowed("vtflow-worker", "watch", "pods") and allowed("vtflow-worker", "get", "pods", subresource="log")
    assert allowed("vtflow-worker", "list", "events")
    assert not allowed("vtflow-worker", "create", "jobs", namespace="default", group="batch"), "its namespace only"
    assert not allowed("vtflow-worker", "get", "secrets"), "no secrets"
    assert not allowed("vtflow-flow-runs", "list", "pods"), "the flow runs' account has no rights"

    worker = next(o for o in worker_manifests() if o["kind"] == "Deployment")
    args = worker["spec"]["template"]["spec"]["containers"][0]["args"]
    template = next(o for o in worker_manifests() if o["kind"] == "ConfigMap")["data"]["base-job-template.json"]
    assert json.loads(template) == base_job_template() and "/etc/vtflow/base-job-template.json" in args


def test_python_m_deployments_kubernetes_prints_the_manifests():
    import yaml

    r = subprocess.run([sys.executable, "-m", "deployments.kubernetes", "worker"], cwd=REPO, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert [o["kind"] for o in yaml.safe_load_all(r.stdout)] == [o["kind"] for o in worker_manifests()]
    r = subprocess.run([sys.executable, "-m", "deployments.kubernetes", "job", "reg/vtflow:1"], cwd=REPO,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and yaml.safe_load(r.stdout)["kind"] == "Job", r.stderr
