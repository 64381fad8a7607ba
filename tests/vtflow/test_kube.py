"""vtflow/kube.py: the official client against the Kubernetes API double."""

import hashlib
import json
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
import yaml
from kubernetes import dynamic
from kubernetes.dynamic.exceptions import ResourceNotFoundError

from vtflow import kube
from vtflow.errors import AuthError, ConfigError, PermanentError, ReadyTimeout, TransientError, is_transient
from kubedouble import DoubleConfig, Faults, KubeDouble


@pytest.fixture(scope="module")
def double(tmp_path_factory):
    d = KubeDouble(DoubleConfig(nodes=3, node_cpu="4", node_memory="8Gi"), faults=Faults())
    d.start()
    d.kubeconfig_path = d.kubeconfig(tmp_path_factory.mktemp("kube") / "config")
    yield d
    d.stop()


@pytest.fixture
def k(double) -> kube.Kube:
    double.faults.error_rate = 0
    return kube.Kube(kube.api_client(double.kubeconfig_path.read_text(), None, "test kubeconfig"), sleep=lambda s: None)


@pytest.fixture
def ns(k) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    k.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


def cm(ns, data, name="settings"):
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}, "data": data}


def test_apply_reports_created_changed_unchanged(k, ns):
    assert k.apply(cm(ns, {"a": "1"})).action == "created"
    assert k.apply(cm(ns, {"a": "1"})).action == "unchanged"
    second = k.apply(cm(ns, {"a": "2"}))
    assert second.action == "changed" and second.object["data"] == {"a": "2"}
    assert second.ref == f"ConfigMap {ns}/settings"
    managers = [m["manager"] for m in k.get("v1", "ConfigMap", "settings", ns)["metadata"]["managedFields"]]
    assert managers == [kube.FIELD_MANAGER]


def test_dry_run_validates_and_stores_nothing(k, ns):
    dry = kube.Kube(k.api, dry_run=True)
    assert dry.apply(cm(ns, {"a": "1"}, name="dry")).action == "created"
    assert k.get("v1", "ConfigMap", "dry", ns) is None
    k.apply(cm(ns, {"a": "1"}, name="dry"))
    assert dry.apply(cm(ns, {"a": "1"}, name="dry")).action == "unchanged"
    assert dry.apply(cm(ns, {"a": "9"}, name="dry")).action == "changed"
    assert k.get("v1", "ConfigMap", "dry", ns)["data"] == {"a": "1"}
    assert dry.delete("v1", "ConfigMap", "dry", ns) is True
    assert k.get("v1", "ConfigMap", "dry", ns) is not None


def test_invalid_object_names_the_object_and_the_field(k, ns):
    bad = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": ns},
           "spec": {"replicas": "three", "selector": {"matchLabels": {"app": "w"}},
                    "template": {"metadata": {"labels": {"app": "w"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}}}
    with pytest.raises(kube.InvalidObjectError) as e:
        k.apply(bad)
    # refused by the decoder (400, not 422): the product passes the server's words through, which
    # name the field
    assert str(e.value).startswith(f"Deployment {ns}/web: invalid: ")
    assert "spec.replicas" in str(e.value) and "Fix: correct the field named above" in str(e.value)


def test_missing_crd_says_to_apply_the_operator(k):
    with pytest.raises(kube.MissingKindError, match="apply the vitess-operator first"):
        k.get("planetscale.com/v2", "VitessCluster", "example", "example")


def _stale_crd_cache_for(host: str, tmp_path) -> Path:
    """What the library's default discovery leaves in the shared temp directory after seeing a
    cluster with a planetscale.com CRD, filed under ``host``'s name: the state a machine is in
    when an earlier cluster (or another test's) answered at this same address."""
    other = KubeDouble(DoubleConfig(nodes=1))
    other.start()
    try:
        api = kube.api_client(other.kubeconfig(tmp_path / "other").read_text(), None, "other")
        kube.Kube(api).apply({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "vitessclusters.planetscale.com"},
            "spec": {"group": "planetscale.com", "scope": "Namespaced",
                     "names": {"plural": "vitessclusters", "singular": "vitesscluster", "kind": "VitessCluster",
                               "listKind": "VitessClusterList"},
                     "versions": [{"name": "v2", "served": True, "storage": True,
                                   "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]}})
        library_default = Path(tempfile.gettempdir()) / f"osrcp-{hashlib.md5(api.configuration.host.encode()).hexdigest()}.json"
        for _ in range(50):  # the CRD is served once Established
            try:
                dynamic.DynamicClient(api).resources.get(api_version="planetscale.com/v2", kind="VitessCluster")
                break
            except ResourceNotFoundError:
                time.sleep(0.1)
        stale = json.loads(library_default.read_text())
        library_default.unlink()
    finally:
        other.stop()
    planted = Path(tempfile.gettempdir()) / f"osrcp-{hashlib.md5(host.encode()).hexdigest()}.json"
    planted.write_text(json.dumps(stale))
    return planted


def test_discovery_is_asked_of_the_server_not_of_a_shared_cache_file(double, k, tmp_path):
    # CI failed on this once: a double started earlier at the same port left the library's cache,
    # and the product was served a VitessCluster kind this cluster does not have
    planted = _stale_crd_cache_for(k.api.configuration.host, tmp_path)
    try:
        fooled = dynamic.DynamicClient(k.api).resources.get(api_version="planetscale.com/v2", kind="VitessCluster")
        assert fooled.kind == "VitessCluster", "the planted file must be what the library's default reads"
        with pytest.raises(kube.MissingKindError, match="apply the vitess-operator first"):
            kube.Kube(k.api).get("planetscale.com/v2", "VitessCluster", "example", "example")
        before = planted.read_text()
        kube.Kube(k.api).get("v1", "ConfigMap", "x", "default")
        assert planted.read_text() == before, "the product writes no discovery cache"
    finally:
        planted.unlink(missing_ok=True)


def test_removed_api_version_is_a_missing_kind(k):
    with pytest.raises(kube.MissingKindError, match="no longer serves|still serves"):
        k.resource("rbac.authorization.k8s.io/v1beta1", "ClusterRole")


def test_forbidden_fails_at_once_naming_verb_and_resource(double, k, ns, tmp_path):
    double.add_user("viewer", "viewer-token-0001")
    config = yaml.safe_load(double.kubeconfig_path.read_text())
    config["users"][0]["user"] = {"token": "viewer-token-0001"}
    calls = []
    limited = kube.Kube(kube.api_client(yaml.safe_dump(config), None, "viewer"), sleep=calls.append)
    with pytest.raises(kube.ForbiddenError) as e:
        limited.apply(cm(ns, {"a": "1"}, name="nope"))
    text = str(e.value)
    assert text.startswith(f"ConfigMap {ns}/nope: forbidden:")
    assert "kubectl auth can-i get configmaps" in text or "kubectl auth can-i patch configmaps" in text
    assert calls == [], "a 403 is not retried"


def test_bad_token_is_an_auth_error(double):
    config = yaml.safe_load(double.kubeconfig_path.read_text())
    config["users"][0]["user"] = {"token": "wrong"}
    with pytest.raises(AuthError, match="refresh the kubeconfig"):
        kube.Kube(kube.api_client(yaml.safe_dump(config), None, "x")).server_version()


def test_transient_errors_are_retried_and_nothing_is_duplicated(double, k, ns):
    double.faults.error_rate = 0.2
    try:
        for i in range(30):
            assert k.apply(cm(ns, {"i": str(i)}, name=f"c{i}")).action == "created"
        for i in range(30):
            assert k.apply(cm(ns, {"i": str(i)}, name=f"c{i}")).action == "unchanged"
    finally:
        double.faults.error_rate = 0
    assert len([c for c in k.list("v1", "ConfigMap", ns) if c["metadata"]["name"].startswith("c")]) == 30


def test_persistent_5xx_gives_up_as_transient(double, k, ns):
    double.faults.error_rate = 1.0
    try:
        with pytest.raises(TransientError, match="answered (500|429)"):
            k.get("v1", "ConfigMap", "x", ns)
    finally:
        double.faults.error_rate = 0


def test_wait_returns_when_ready_and_times_out_with_the_reason(k, ns):
    k.apply(cm(ns, {"phase": "starting"}, name="w"))

    def not_ready(obj):
        return None if obj and obj["data"].get("phase") == "ready" else f"phase is {obj['data']['phase'] if obj else 'absent'}"

    seen = []

    def progress(message):
        # the change follows a read that saw "starting": the wait must then pick it up from its watch
        seen.append(message)
        if len(seen) == 1:
            threading.Thread(target=lambda: k.apply(cm(ns, {"phase": "ready"}, name="w"))).start()

    t = time.monotonic()
    obj = k.wait("v1", "ConfigMap", "w", ns, not_ready, timeout_s=10, progress=progress)
    assert obj["data"]["phase"] == "ready" and time.monotonic() - t < 5
    assert seen and seen[0] == f"ConfigMap {ns}/w: phase is starting"

    with pytest.raises(kube.WaitTimeout, match=f"ConfigMap {ns}/never: not ready after 1 s: phase is absent") as e:
        k.wait("v1", "ConfigMap", "never", ns, not_ready, timeout_s=1)
    # a whole wait is over: permanent, so that no task retry waits as long again
    assert isinstance(e.value, ReadyTimeout) and not is_transient(e.value)


def test_a_field_another_manager_owns_is_a_conflict_naming_it_until_force_conflicts(double, k, ns):
    k.apply(cm(ns, {"image": "a"}, name="owned"))
    k.patch("v1", "ConfigMap", "owned", ns, {"data": {"image": "b"}}, manager="vtflow-redeploy")
    with pytest.raises(kube.FieldConflictError) as e:
        k.apply(cm(ns, {"image": "a"}, name="owned"))
    text = str(e.value)
    assert text.startswith(f"ConfigMap {ns}/owned: conflict: the apply would change fields another manager set: "
                           "field manager 'vtflow-redeploy' owns .data.image.")
    assert "put the image the redeploy wrote" in text and "re-run the deploy with --force-conflicts" in text
    assert not is_transient(e.value)
    assert k.get("v1", "ConfigMap", "owned", ns)["data"] == {"image": "b"}
    forcing = kube.Kube(k.api, force_conflicts=True)
    assert forcing.apply(cm(ns, {"image": "a"}, name="owned")).action == "changed"
    assert k.get("v1", "ConfigMap", "owned", ns)["data"] == {"image": "a"}
    assert k.apply(cm(ns, {"image": "a"}, name="owned")).action == "unchanged", "vtflow owns it again"


def test_api_client_checks_the_context():
    text = yaml.safe_dump({"clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:1"}}],
                           "users": [{"name": "u", "user": {}}], "contexts": [{"name": "a", "context": {"cluster": "c", "user": "u"}}]})
    assert kube.api_client(text, "a", "t").configuration.host == "http://127.0.0.1:1"
    with pytest.raises(ConfigError, match="context 'b' is not in the kubeconfig"):
        kube.api_client(text, "b", "t")


def test_exec_runs_in_a_ready_pod_with_stdin_and_exit_status(double, k, ns):
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "tools", "namespace": ns, "labels": {"app": "tools"}},
           "spec": {"containers": [{"name": "main", "image": "busybox"}]}}
    k.apply(pod)
    seen = []
    remove = double.register_exec(lambda argv, stdin, p: (seen.append(argv) or 4, b"echo:" + (stdin or b""), b"warn\n"),
                                  namespace=ns)
    try:
        k.wait("v1", "Pod", "tools", ns, lambda o: None if o and (o.get("status") or {}).get("phase") == "Running" else "starting", 10)
        name = k.ready_pod(ns, "app=tools", "tools")
        assert name == "tools"
        rc, out, err = k.exec(ns, name, "main", ["sh", "-c", "cat"], stdin="payload")
        assert (rc, out, err) == (4, "echo:payload", "warn\n")
        assert seen == [["sh", "-c", "cat"]]
    finally:
        remove()
    with pytest.raises(TransientError, match="no Running and Ready pod matches app=nothing"):
        k.ready_pod(ns, "app=nothing", "vtctld")
    # no handler: the program is not in the image, and a real kubelet+containerd answer with an
    # InternalError status and no exit code; one clear line, not the client's ValueError
    with pytest.raises(PermanentError, match=r"`vtctldclient` could not run: .*executable file not found"):
        k.exec(ns, name, "main", ["vtctldclient", "GetTablets"])


def test_exit_status_reads_the_status_channel():
    assert kube.exit_status("p", "x", "status: Success\nmetadata: {}\n") == 0
    st = {"status": "Failure", "reason": "NonZeroExitCode", "message": "command terminated with non-zero exit code",
          "details": {"causes": [{"reason": "ExitCode", "message": "3"}]}}
    assert kube.exit_status("p", "x", json.dumps(st)) == 3
    with pytest.raises(PermanentError, match="`x` could not run: the stream ended without a status"):
        kube.exit_status("p", "x", "")


def test_delete_takes_a_jobs_pods_with_it(double, k, ns):
    # batch/v1 Jobs orphan their pods by default (pkg/registry/batch/job/strategy.go); delete asks
    # for Background as kubectl does, so the garbage collector removes the pods after the Job
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "once", "namespace": ns},
           "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}
    k.apply(job)
    deadline = time.monotonic() + 10
    while not k.list("v1", "Pod", ns, label_selector="job-name=once"):
        assert time.monotonic() < deadline, "the Job's pod never appeared"
        time.sleep(0.05)
    assert k.delete("batch/v1", "Job", "once", ns) is True
    while k.list("v1", "Pod", ns, label_selector="job-name=once"):
        assert time.monotonic() < deadline, "the Job's pod was left behind (orphaned)"
        time.sleep(0.05)
    assert k.delete("batch/v1", "Job", "once", ns) is False
