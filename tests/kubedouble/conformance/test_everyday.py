"""Everyday kubectl commands against the double, each with the outcome a real kube-apiserver gives.

Messages of kubectl's own checks come from staging/src/k8s.io/kubectl: label.go / annotate.go
(an existing key without --overwrite), scale.go with pkg/scale/scale.go
("Expected %s to be %s, was %s"). Short names and categories are those of the real discovery.
"""

from __future__ import annotations

import json

from kubedouble_helpers import OPERATOR_DIR

CRDS = OPERATOR_DIR / "crds"


def _deployment(kubectl, ns, name="web", replicas=1):
    kubectl("apply", "-n", ns, "-f", "-", input=json.dumps({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}}}}))


def _configmap(kubectl, ns, name="cm1", *flags):
    return kubectl("apply", "-n", ns, *flags, "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}}), check=False)


def test_version_shows_the_server(kubectl):
    assert "Server Version: v1.33.5+k3s1" in kubectl("version").stdout
    assert kubectl.json("version")["serverVersion"]["gitVersion"] == "v1.33.5+k3s1"


def test_cluster_info_names_the_control_plane(kubectl, double):
    assert f"Kubernetes control plane is running at {double.base_url}" in kubectl("cluster-info").stdout


def test_healthz_and_nodes(kubectl):
    assert kubectl("get", "--raw", "/healthz").stdout == "ok"
    names = [line.split()[0] for line in kubectl("get", "nodes").stdout.splitlines()[1:]]
    assert names == ["node-1", "node-2", "node-3"]


def test_api_resources_has_the_real_short_names_and_the_crds(kubectl):
    kubectl("apply", "--validate=false", "-f", str(CRDS))   # setup; OpenAPI is another area's
    rows = {}
    for line in kubectl("api-resources", "--no-headers").stdout.splitlines():
        cols = line.split()
        # NAME [SHORTNAMES] APIVERSION NAMESPACED KIND
        rows[(cols[0], cols[-3])] = (cols[1:-3], cols[-2], cols[-1])
    expect = {("deployments", "apps/v1"): (["deploy"], "true", "Deployment"),
              ("services", "v1"): (["svc"], "true", "Service"), ("pods", "v1"): (["po"], "true", "Pod"),
              ("configmaps", "v1"): (["cm"], "true", "ConfigMap"),
              ("namespaces", "v1"): (["ns"], "false", "Namespace"),
              ("serviceaccounts", "v1"): (["sa"], "true", "ServiceAccount"),
              ("persistentvolumeclaims", "v1"): (["pvc"], "true", "PersistentVolumeClaim"),
              ("statefulsets", "apps/v1"): (["sts"], "true", "StatefulSet"),
              ("replicasets", "apps/v1"): (["rs"], "true", "ReplicaSet"),
              ("nodes", "v1"): (["no"], "false", "Node"),
              ("selfsubjectaccessreviews", "authorization.k8s.io/v1"): ([], "false", "SelfSubjectAccessReview"),
              ("vitessclusters", "planetscale.com/v2"): (["vt"], "true", "VitessCluster")}
    assert {k: rows.get(k) for k in expect} == expect
    # the "all" category: what `kubectl get all` lists
    all_names = kubectl("api-resources", "--categories=all", "-o", "name").stdout.split()
    assert {"pods", "services", "deployments.apps", "statefulsets.apps", "replicasets.apps"} <= set(all_names)
    assert "configmaps" not in all_names


def test_get_by_short_name_and_output_formats(kubectl, ns):
    _deployment(kubectl, ns)
    assert kubectl("get", "deploy", "-n", ns, "-o", "name").stdout == "deployment.apps/web\n"
    assert kubectl.json("get", "deploy", "web", "-n", ns)["spec"]["replicas"] == 1
    assert "kind: Deployment\n" in kubectl("get", "deploy", "web", "-n", ns, "-o", "yaml").stdout
    assert kubectl("get", "deploy", "web", "-n", ns, "-o", "jsonpath={.spec.template.spec.containers[0].image}"
                   ).stdout == "nginx:1.27"


def test_describe_reads_events_by_field_selector(kubectl, ns):
    _deployment(kubectl, ns)
    out = kubectl("describe", "deployment", "web", "-n", ns).stdout
    assert out.startswith("Name:") and "Replicas:" in out
    pod = kubectl("get", "pods", "-n", ns, "-o", "name").stdout.split()[0]
    assert kubectl("describe", pod, "-n", ns).stdout.startswith("Name:")
    assert "Capacity:" in kubectl("describe", "node", "node-1").stdout


def test_label_and_annotate_need_overwrite_for_an_existing_key(kubectl, ns):
    assert _configmap(kubectl, ns).returncode == 0
    # the refusals are kubectl's own, worded differently by label.go and annotate.go
    for verb, field, refusal in (
            ("label", "labels", "error: 'tier' already has a value (a), and --overwrite is false\n"),
            ("annotate", "annotations",
             "error: --overwrite is false but found the following declared annotation(s): "
             "'tier' already has a value (a)\n")):
        kubectl(verb, "cm", "cm1", "-n", ns, "tier=a")
        clash = kubectl(verb, "cm", "cm1", "-n", ns, "tier=b", check=False)
        assert (clash.returncode, clash.stderr) == (1, refusal)
        kubectl(verb, "cm", "cm1", "-n", ns, "tier=b", "--overwrite")
        assert kubectl.json("get", "cm", "cm1", "-n", ns)["metadata"][field]["tier"] == "b"
        kubectl(verb, "cm", "cm1", "-n", ns, "tier-")
        assert "tier" not in (kubectl.json("get", "cm", "cm1", "-n", ns)["metadata"].get(field) or {})


def test_scale_through_the_scale_subresource(kubectl, ns):
    _deployment(kubectl, ns)
    assert kubectl("scale", "deployment", "web", "-n", ns, "--replicas=2").stdout == "deployment.apps/web scaled\n"
    assert kubectl.json("get", "deploy", "web", "-n", ns)["spec"]["replicas"] == 2
    # --current-replicas is a precondition kubectl checks on the Scale it read: exit 1, nothing changes
    miss = kubectl("scale", "deployment", "web", "-n", ns, "--current-replicas=5", "--replicas=3", check=False)
    assert miss.returncode == 1
    assert miss.stderr == "error: Expected replicas to be 5, was 2\n"
    assert kubectl.json("get", "deploy", "web", "-n", ns)["spec"]["replicas"] == 2
    kubectl("scale", "deployment", "web", "-n", ns, "--current-replicas=2", "--replicas=3")
    assert kubectl.json("get", "deploy", "web", "-n", ns)["spec"]["replicas"] == 3


def test_server_dry_run_stores_nothing(kubectl, ns):
    done = _configmap(kubectl, ns, "dry", "--dry-run=server")
    assert (done.returncode, done.stdout) == (0, "configmap/dry created (server dry run)\n")
    manifest = json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dry2"}})
    created = kubectl("create", "-n", ns, "--dry-run=server", "-f", "-", input=manifest, check=False)
    assert (created.returncode, created.stdout) == (0, "configmap/dry2 created (server dry run)\n")
    for name in ("dry", "dry2"):
        gone = kubectl("get", "cm", name, "-n", ns, check=False)
        assert (gone.returncode, gone.stderr) == (1, f'Error from server (NotFound): configmaps "{name}" not found\n')
