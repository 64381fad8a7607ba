"""tasks/operators.py: the builders, then the steps against the Kubernetes API double."""


import pytest

from tasks.operators import (etcd_operator_objects, install_etcd_operator, install_vitess_operator, load_manifest,
                             operator_objects, rewrite_image)
from tasks import versions
from tasks.versions import manifest_version
from tasks.context import TargetContext
from vtflow import kube
from vtflow.errors import ConfigError, ReadyTimeout, is_transient
from kubedouble import DoubleConfig, Faults, KubeDouble
from helpers import OPERATOR_YAML



@pytest.mark.parametrize("image,expected", [
    ("planetscale/vitess-operator:v2.17.0", "harbor.lan/v/planetscale/vitess-operator:v2.17.0"),
    ("quay.io/coreos/etcd-operator:v0.9.4", "harbor.lan/v/coreos/etcd-operator:v0.9.4"),
    ("busybox:1.36", "harbor.lan/v/library/busybox:1.36"),
    ("localhost:5000/x/y@sha256:abc", "harbor.lan/v/x/y@sha256:abc"),
])
def test_images_move_to_the_mirror(image, expected):
    assert rewrite_image(image, "harbor.lan/v/") == expected
    assert rewrite_image(image, None) == image


def test_upstream_operator_is_namespaced_deduplicated_and_ordered():
    objects = operator_objects(load_manifest(str(OPERATOR_YAML)), "vitess", "harbor.lan/v")
    kinds = [o["kind"] for o in objects]
    assert kinds[0] == "Namespace" and kinds[-1] == "Deployment"
    assert kinds.count("CustomResourceDefinition") == 8
    assert kinds.count("ServiceAccount") == 1, "upstream's two vitess-operator ServiceAccounts become one"
    for o in objects:
        if o["kind"] not in ("Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "PriorityClass"):
            assert o["metadata"]["namespace"] == "vitess", o["kind"]
    crb = next(o for o in objects if o["kind"] == "ClusterRoleBinding")
    assert crb["subjects"][0]["namespace"] == "vitess"
    container = next(o for o in objects if o["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"].startswith("harbor.lan/v/planetscale/vitess-operator:v2.17.0")
    assert {"name": "WATCH_NAMESPACE", "value": "vitess"} in container["env"]
    # upstream's end-to-end operator.yaml runs the release candidate the release's upgrade test starts from
    assert manifest_version(objects) == "v2.17.0-rc1"


def test_manifest_reads_as_the_safe_loader_reads_it_and_the_builder_leaves_it_as_read(tmp_path):
    """libyaml (when PyYAML has it) gives the very documents the pure-Python safe loader gives;
    the builder works on its own copy, so a second build from the same documents is the same."""
    import copy
    from pathlib import Path

    import yaml
    docs = load_manifest(str(OPERATOR_YAML))
    assert docs == [d for d in yaml.safe_load_all(Path(OPERATOR_YAML).read_text()) if d]
    before = copy.deepcopy(docs)
    first = operator_objects(docs, "vitess", "harbor.lan/v")
    assert docs == before
    assert operator_objects(docs, "vitess", "harbor.lan/v") == first
    (tmp_path / "broken.yaml").write_text("kind: [unclosed\n")
    with pytest.raises(ConfigError, match=f"manifest {tmp_path}/broken.yaml: is not YAML"):
        load_manifest(str(tmp_path / "broken.yaml"))


def test_missing_manifest_names_the_file(tmp_path):
    with pytest.raises(ConfigError, match=f"manifest {tmp_path}/nope.yaml: cannot be read"):
        load_manifest(str(tmp_path / "nope.yaml"))
    (tmp_path / "bad.yaml").write_text("kind: X\n---\nfoo: bar\n")
    with pytest.raises(ConfigError, match="document 1: has no kind or apiVersion"):
        load_manifest(str(tmp_path / "bad.yaml"))


def test_etcd_operator_objects_are_valid_for_current_kubernetes():
    import kubernetes_validate
    for obj in etcd_operator_objects("vitess", None):
        if obj["kind"] != "CustomResourceDefinition":
            kubernetes_validate.validate(obj, "1.33.0", strict=True)
    deploy = etcd_operator_objects("vitess", None)[-1]
    assert deploy["apiVersion"] == "apps/v1" and deploy["spec"]["selector"]["matchLabels"]
    assert "-create-crd=false" in deploy["spec"]["template"]["spec"]["containers"][0]["command"]


# ---------------------------------------------------------------- against the double

@pytest.fixture
def double(tmp_path):
    d = KubeDouble(DoubleConfig(nodes=3, node_cpu="4", node_memory="8Gi", git_version="v1.33.5+k3s1"), faults=Faults(seed=7))
    d.start()
    d.kubeconfig_path = d.kubeconfig(tmp_path / "config")
    yield d
    d.stop()


@pytest.fixture
def k(double):
    return kube.Kube(kube.api_client(double.kubeconfig_path.read_text(), None, "test"), sleep=lambda s: None)


def at(k, namespace="vitess", mirror=None):
    return TargetContext(k=k, namespace=namespace, cluster="example", registry_mirror=mirror)


MANIFEST = load_manifest(str(OPERATOR_YAML))
CHOICE = versions.choose("v1.33.5+k3s1")


def test_vitess_operator_step_installs_then_changes_nothing(prefect_server, double, k):
    first = install_vitess_operator(at(k), MANIFEST, str(OPERATOR_YAML), CHOICE, timeout_s=30)
    assert first.changed and all(o["action"] == "created" for o in first.objects)
    assert k.get("apps/v1", "Deployment", "vitess-operator", "vitess")["status"]["availableReplicas"] == 1
    assert k.resource("planetscale.com/v2", "VitessCluster")
    second = install_vitess_operator(at(k), MANIFEST, str(OPERATOR_YAML), CHOICE, timeout_s=30)
    assert not second.changed, [o for o in second.objects if o["action"] != "unchanged"]


def test_vitess_operator_step_survives_20_percent_transient_errors(prefect_server, double, k):
    double.faults.error_rate = 0.2
    report = install_vitess_operator(at(k), MANIFEST, str(OPERATOR_YAML), CHOICE, timeout_s=60)
    double.faults.error_rate = 0
    assert report.changed
    deployments = k.list("apps/v1", "Deployment", "vitess")
    assert [d["metadata"]["name"] for d in deployments] == ["vitess-operator"]
    assert len(k.list("apiextensions.k8s.io/v1", "CustomResourceDefinition")) == 8


def test_the_choices_warnings_reach_the_report(prefect_server, tmp_path):
    # the refusal itself comes before step 1 (tests/flows/test_deploy.py): here, what force lets through
    with KubeDouble(DoubleConfig(nodes=1, git_version="v1.28.4+k3s1")) as d:
        k = kube.Kube(kube.api_client(d.kubeconfig(tmp_path / "c").read_text(), None, "t"))
        forced = versions.choose("v1.28.4+k3s1", "v2.17.0", force=True)
        report = install_vitess_operator(at(k), MANIFEST, str(OPERATOR_YAML), forced, timeout_s=30)
        assert report.changed
        assert report.warnings == list(forced.warnings) and "supports Kubernetes 1.32-1.35" in report.warnings[0]


def test_dry_run_creates_nothing(prefect_server, double, k):
    dry = kube.Kube(k.api, dry_run=True)
    report = install_vitess_operator(at(dry), MANIFEST, str(OPERATOR_YAML), CHOICE)
    assert report.objects and all(o["action"] == "created" for o in report.objects)
    assert k.list("apiextensions.k8s.io/v1", "CustomResourceDefinition") == []


def test_etcd_operator_is_skipped_by_default_and_runs_when_enabled(prefect_server, double, k):
    skipped = install_etcd_operator(at(k), False)
    assert skipped.skipped and "runs its own etcd" in skipped.skipped
    report = install_etcd_operator(at(k), True, timeout_s=30)
    assert report.changed
    assert k.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", "etcdclusters.etcd.database.coreos.com")
    assert k.get("apps/v1", "Deployment", "etcd-operator", "vitess")["status"].get("availableReplicas") == 1


def test_an_operator_that_never_becomes_available_fails_at_once_with_its_pods_diagnosis(prefect_server, double, k):
    install_vitess_operator(at(k), MANIFEST, str(OPERATOR_YAML), CHOICE, timeout_s=30)
    pod = double.list("pods", "vitess", label_selector="app=vitess-operator")[0]["metadata"]["name"]
    double.kubelet.crash_loop(double, "vitess", pod, "vitess-operator", on=True)
    with pytest.raises(ReadyTimeout) as e:
        install_vitess_operator(at(k), MANIFEST, str(OPERATOR_YAML), CHOICE, timeout_s=2)
    assert isinstance(e.value, kube.WaitTimeout) and not is_transient(e.value)
    text = str(e.value)
    assert text.startswith("Deployment vitess/vitess-operator: not ready after 2 s: 0/1 replicas available.")
    assert f"Pod {pod} container vitess-operator: CrashLoopBackOff" in text
