"""kubectl's read path against the double: server-side Table columns, watches, the watch-list
protocol behind ``kubectl wait`` and ``rollout status``. Each test states what a real
kube-apiserver (printers.go columns, the cacher's watch-list bookmark) makes kubectl print."""

from __future__ import annotations

import json
import time


def _deployment(name: str) -> str:
    return json.dumps({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
                       "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                                "template": {"metadata": {"labels": {"app": name}},
                                             "spec": {"containers": [{"name": name, "image": "nginx:1.27"}]}}}})


def _cm(name: str) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"a": "b"}})


def _header(out: str) -> list[str]:
    return out.splitlines()[0].split()


def test_wait_available_rollout_status_and_wide_columns(kubectl, ns):
    """A real server: `wait --for=condition=Available` prints "condition met" and exits 0 once the
    Deployment is Available; `rollout status` prints "successfully rolled out"; `get -o wide`
    shows printers.go's wide columns for deployments and pods."""
    kubectl("apply", "-n", ns, "-f", "-", input=_deployment("web"))
    done = kubectl("wait", "-n", ns, "--for=condition=Available", "deployment/web", "--timeout=30s", timeout=40)
    assert done.stdout.strip() == "deployment.apps/web condition met"
    rolled = kubectl("rollout", "status", "-n", ns, "deployment/web", "--timeout=30s", timeout=40)
    assert rolled.stdout.strip().endswith('deployment "web" successfully rolled out')
    deploy = kubectl("get", "-n", ns, "deployments", "-o", "wide").stdout
    assert _header(deploy) == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]
    assert deploy.splitlines()[1].split()[:2] == ["web", "1/1"]
    assert deploy.splitlines()[1].split()[-3:] == ["web", "nginx:1.27", "app=web"]
    pods = kubectl("get", "-n", ns, "pods", "-o", "wide").stdout
    assert pods.splitlines()[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE",
                                            "NOMINATED", "NODE", "READINESS", "GATES"]
    assert pods.splitlines()[1].split()[1:3] == ["1/1", "Running"]


def test_wide_columns_of_services_and_nodes(kubectl):
    """printers.go: services Name, Type, Cluster-IP, External-IP, Port(s), Age, Selector; nodes
    Name, Status, Roles, Age, Version + Internal-IP, External-IP, OS-Image, Kernel-Version,
    Container-Runtime."""
    svc = kubectl("get", "-n", "default", "services", "-o", "wide").stdout
    assert _header(svc) == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE", "SELECTOR"]
    assert svc.splitlines()[1].split()[:2] == ["kubernetes", "ClusterIP"]
    nodes = kubectl("get", "nodes", "-o", "wide").stdout
    assert _header(nodes) == ["NAME", "STATUS", "ROLES", "AGE", "VERSION", "INTERNAL-IP", "EXTERNAL-IP",
                              "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME"]
    assert nodes.splitlines()[1].split()[1] == "Ready"


def test_get_watch_prints_an_added_object(kubectl, ns):
    """`kubectl get -w` prints the header and then a row for an object created while it watches."""
    proc = kubectl.popen("get", "-n", ns, "configmaps", "-w", "--request-timeout=8s")
    try:
        deadline = time.monotonic() + 8
        kubectl("apply", "-n", ns, "-f", "-", input=_cm("watched"))
        lines = []
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.split())
            if line.startswith("watched"):
                break
    finally:
        proc.kill()
        proc.communicate()
    assert lines[0] == ["NAME", "DATA", "AGE"]
    assert ["watched", "1"] in [row[:2] for row in lines[1:]]


def test_wait_for_delete_returns_when_the_object_goes(kubectl, ns):
    """`kubectl wait --for=delete` exits 0 with "condition met" once the object is deleted."""
    kubectl("apply", "-n", ns, "-f", "-", input=_cm("doomed"))
    waiter = kubectl.popen("wait", "-n", ns, "--for=delete", "configmap/doomed", "--timeout=20s", "-v=6")
    try:
        # delete only once the waiter's watch is open (its -v=6 log names the request), so the
        # deletion arrives as a watch event rather than as a NotFound on its first GET
        for line in waiter.stderr:
            if "watch=true" in line:
                break
        kubectl("delete", "-n", ns, "configmap", "doomed", "--wait=false")
        out, _ = waiter.communicate(timeout=25)
    finally:
        waiter.kill()
    assert waiter.returncode == 0
    assert out.strip() == "configmap/doomed condition met"


def test_watch_list_options_a_real_server_refuses(kubectl, ns):
    """ValidateListOptions: sendInitialEvents on a list is 422 "sendInitialEvents is forbidden for list"."""
    done = kubectl("get", "--raw", f"/api/v1/namespaces/{ns}/configmaps?sendInitialEvents=true", check=False)
    assert done.returncode == 1
    assert "sendInitialEvents: Forbidden: sendInitialEvents is forbidden for list" in done.stderr
