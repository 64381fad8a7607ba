"""kubectl explain / apply (client-side and --server-side) / diff / patch against the double.

Each test names the outcome kubectl 1.37 gets from a real kube-apiserver."""

from __future__ import annotations

import json

import pytest



def _deployment(ns: str, ports=(80, 443), mounts=("/a", "/b")) -> str:
    container = {"name": "web", "image": "nginx:1.25",
                 "ports": [{"containerPort": p} for p in ports],
                 "volumeMounts": [{"name": m.strip("/"), "mountPath": m} for m in mounts]}
    return json.dumps({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": ns},
                       "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}},
                                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                                    "containers": [container],
                                    "volumes": [{"name": m.strip("/"), "emptyDir": {}} for m in mounts]}}}})


def _service(ns: str, port: int) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc", "namespace": ns},
                       "spec": {"selector": {"app": "web"}, "ports": [{"name": f"p{port}", "port": port}]}})


def test_explain_builtin_field(kubectl):
    """Real: the v3 document's Container model, with its fields."""
    out = kubectl("explain", "deployment.spec.template.spec.containers").stdout
    assert "KIND:       Deployment" in out and "FIELD: containers <[]Container>" in out
    assert "volumeMounts\t<[]VolumeMount>" in out


def test_explain_crd_after_applying_the_operator_crds(kubectl, operator_release):
    """Real: a CRD's schema is published in /openapi/v3/apis/planetscale.com/v2 once established."""
    kubectl("apply", "--server-side", "-f", str(operator_release / "crds"))
    kubectl("wait", "--for=condition=Established", "crd/vitessclusters.planetscale.com", "--timeout=10s")
    out = kubectl("explain", "vitesscluster.spec").stdout
    assert "KIND:       VitessCluster" in out and "GROUP:      planetscale.com" in out
    assert "keyspaces\t<[]Object>" in out


def test_client_side_apply_of_the_operator_then_unchanged(kubectl, operator_release):
    """Real: default --validate=strict passes; the second apply of the same file is all "unchanged"."""
    manifest = str(operator_release / "examples" / "operator.yaml")
    kubectl("apply", "-f", "-", input='{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "example"}}')
    first = kubectl("apply", "-f", manifest)
    assert "deployment.apps/vitess-operator created" in first.stdout, first.stdout
    second = kubectl("apply", "-f", manifest).stdout
    assert second.strip() and all(line.endswith(" unchanged") for line in second.strip().splitlines()), second


def test_client_side_apply_removes_one_container_port_and_one_volume_mount(kubectl, ns):
    """Real: the three-way strategic patch deletes 443 by containerPort and /b by mountPath;
    80 and /a stay, and no `$patch` literal is stored."""
    kubectl("apply", "-f", "-", input=_deployment(ns))
    out = kubectl("apply", "-f", "-", input=_deployment(ns, ports=(80,), mounts=("/a",)))
    assert "deployment.apps/web configured" in out.stdout
    live = kubectl.json("get", "deployment", "web", "-n", ns, "-o", "json")
    container = live["spec"]["template"]["spec"]["containers"][0]
    assert container["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    assert container["volumeMounts"] == [{"name": "a", "mountPath": "/a"}]
    assert [v["name"] for v in live["spec"]["template"]["spec"]["volumes"]] == ["a"]


def test_server_side_apply_two_managers_on_service_ports(kubectl, ns):
    """Real: ports are keyed by port+protocol, so two managers' ports 80 and 443 both stay."""
    kubectl("apply", "--server-side", "--field-manager=one", "-f", "-", input=_service(ns, 80))
    kubectl("apply", "--server-side", "--field-manager=two", "-f", "-", input=_service(ns, 443))
    live = kubectl.json("get", "service", "svc", "-n", ns, "-o", "json")
    assert sorted(p["port"] for p in live["spec"]["ports"]) == [80, 443]


def test_server_side_apply_conflict_then_force(kubectl, ns):
    """Real: exit 1 with the conflict message naming the manager and field; --force-conflicts wins."""
    kubectl("apply", "--server-side", "--field-manager=one", "-f", "-", input=_service(ns, 80))
    changed = _service(ns, 80).replace('"p80"', '"web"')
    r = kubectl("apply", "--server-side", "--field-manager=two", "-f", "-", input=changed, check=False)
    assert r.returncode == 1
    assert 'Apply failed with 1 conflict: conflict with "one": .spec.ports[port=80,protocol="TCP"].name' in r.stderr
    kubectl("apply", "--server-side", "--field-manager=two", "--force-conflicts", "-f", "-", input=changed)
    live = kubectl.json("get", "service", "svc", "-n", ns, "-o", "json")
    assert live["spec"]["ports"][0]["name"] == "web"


def test_diff_exit_codes(kubectl, ns):
    """Real: `kubectl diff` exits 0 when the live object equals the manifest, 1 with a diff."""
    kubectl("apply", "--server-side", "-f", "-", input=_service(ns, 80))
    assert kubectl("diff", "--server-side", "-f", "-", input=_service(ns, 80), check=False).returncode == 0
    r = kubectl("diff", "--server-side", "-f", "-", input=_service(ns, 80).replace('"p80"', '"x"'), check=False)
    assert r.returncode == 1
    assert "-  - name: p80" in r.stdout and "+  - name: x" in r.stdout, r.stdout


@pytest.mark.parametrize("kind,patch,expect", [
    ("json", '[{"op":"replace","path":"/data/a","value":"2"}]', {"a": "2", "b": "1"}),
    ("merge", '{"data":{"a":null}}', {"b": "1"}),
    ("strategic", '{"data":{"c":"3"}}', {"a": "1", "b": "1", "c": "3"}),
])
def test_kubectl_patch_types(kubectl, ns, kind, patch, expect):
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": ns}, "data": {"a": "1", "b": "1"}}
    kubectl("apply", "-f", "-", input=json.dumps(cm))
    kubectl("patch", "configmap", "cm", "-n", ns, "--type", kind, "-p", patch)
    assert kubectl.json("get", "configmap", "cm", "-n", ns, "-o", "json")["data"] == expect


def test_a_list_is_validated_with_the_v2_protobuf_document(kubectl, ns):
    """Real: kubectl validates the items of a `kind: List` against /openapi/v2, which it asks for
    in gnostic's protobuf only; an unknown field is refused client-side, naming the model."""
    items = [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "in-list", "namespace": ns}, "data": {"a": "1"}},
             {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "in-list", "namespace": ns},
              "spec": {"ports": [{"port": 80}]}}]
    doc = {"apiVersion": "v1", "kind": "List", "items": items}
    out = kubectl("apply", "-f", "-", input=json.dumps(doc)).stdout
    assert "configmap/in-list created" in out and "service/in-list created" in out
    items[0]["bogus"] = 1
    done = kubectl("apply", "-f", "-", input=json.dumps(doc), check=False)
    assert done.returncode == 1
    assert 'ValidationError(ConfigMap): unknown field "bogus" in io.k8s.api.core.v1.ConfigMap' in done.stderr
