"""kubectl delete against the double: finalizers, pod grace, cascades, namespace termination.

Each test states what a real kube-apiserver (+ controller-manager + kubelet) gives and asserts
that outcome from kubectl's exit code and output only.
"""

from __future__ import annotations

import json
import uuid

HOLD = "example.com/hold"


def _deployment(name: str) -> str:
    labels = {"app": name}
    return json.dumps({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
                       "spec": {"replicas": 2, "selector": {"matchLabels": labels},
                                "template": {"metadata": {"labels": labels},
                                             "spec": {"containers": [{"name": "app", "image": "busybox"}]}}}})


def _deploy(kubectl, ns: str, name: str) -> list[dict]:
    kubectl("apply", "-n", ns, "-f", "-", input=_deployment(name))
    kubectl("rollout", "status", "-n", ns, f"deployment/{name}", "--timeout=20s")
    return kubectl.json("get", "pods", "-n", ns, "-l", f"app={name}")["items"]


def _hold(kubectl, ns: str, ref: str) -> None:
    kubectl("patch", "-n", ns, ref, "--type=merge", "-p", json.dumps({"metadata": {"finalizers": [HOLD]}}))


def _release(kubectl, ns: str, ref: str) -> None:
    kubectl("patch", "-n", ns, ref, "--type=merge", "-p", '{"metadata":{"finalizers":null}}')


def test_background_delete_of_a_deployment_takes_replicaset_and_pods(kubectl, ns):
    """Real: `kubectl delete deployment` (cascade background) removes the Deployment at once and the
    garbage collector then deletes the ReplicaSet and its pods."""
    _deploy(kubectl, ns, "bg")
    done = kubectl("delete", "-n", ns, "deployment", "bg")
    assert done.stdout.startswith('deployment.apps "bg" deleted')
    kubectl("wait", "-n", ns, "--for=delete", "pod", "-l", "app=bg", "--timeout=20s")
    left = kubectl("get", "-n", ns, "replicasets,pods", "-o", "name").stdout
    assert left == ""


def test_foreground_delete_keeps_the_deployment_while_dependents_go(kubectl, ns):
    """Real: with --cascade=foreground the Deployment stays readable with deletionTimestamp and the
    foregroundDeletion finalizer until its dependents are gone (a pod held by a finalizer holds
    the ReplicaSet, which holds the Deployment); then it goes."""
    pods = _deploy(kubectl, ns, "fg")
    _hold(kubectl, ns, f"pod/{pods[0]['metadata']['name']}")
    kubectl("delete", "-n", ns, "deployment", "fg", "--cascade=foreground", "--wait=false")
    dep = kubectl.json("get", "-n", ns, "deployment", "fg")
    assert dep["metadata"]["deletionTimestamp"] and dep["metadata"]["finalizers"] == ["foregroundDeletion"]
    kubectl("wait", "-n", ns, "--for=delete", f"pod/{pods[1]['metadata']['name']}", "--timeout=20s")
    held = kubectl.json("get", "-n", ns, "pod", pods[0]["metadata"]["name"])
    assert held["metadata"]["deletionTimestamp"] and held["status"]["phase"] == "Succeeded"
    _release(kubectl, ns, f"pod/{pods[0]['metadata']['name']}")
    kubectl("wait", "-n", ns, "--for=delete", "deployment/fg", "--timeout=20s")
    assert kubectl("get", "-n", ns, "replicasets,pods", "-o", "name").stdout == ""


def test_orphan_delete_leaves_the_replicaset_unowned(kubectl, ns):
    """Real: --cascade=orphan removes the Deployment and the ownerReferences pointing to it; the
    ReplicaSet and its pods stay."""
    _deploy(kubectl, ns, "or")
    kubectl("delete", "-n", ns, "deployment", "or", "--cascade=orphan")
    (rs,) = kubectl.json("get", "-n", ns, "replicasets", "-l", "app=or")["items"]
    assert "ownerReferences" not in rs["metadata"] and "deletionTimestamp" not in rs["metadata"]
    assert len(kubectl.json("get", "-n", ns, "pods", "-l", "app=or")["items"]) == 2


def test_configmap_with_a_finalizer_waits_for_it(kubectl, ns):
    """Real: `kubectl delete --wait=false` returns at once; the ConfigMap is still there with
    deletionTimestamp; a merge patch that drops the finalizers lets it go (NotFound after)."""
    kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "held", "finalizers": [HOLD]}}))
    done = kubectl("delete", "-n", ns, "configmap", "held", "--wait=false")
    assert done.stdout.startswith('configmap "held" deleted')
    cm = kubectl.json("get", "-n", ns, "configmap", "held")
    assert cm["metadata"]["deletionTimestamp"] and cm["metadata"]["finalizers"] == [HOLD]
    _release(kubectl, ns, "configmap/held")
    gone = kubectl("get", "-n", ns, "configmap", "held", check=False)
    assert gone.returncode == 1
    assert gone.stderr.strip() == 'Error from server (NotFound): configmaps "held" not found'


def test_namespace_terminating_then_gone(kubectl):
    """Real: a deleted namespace shows STATUS Terminating (held here by a ConfigMap's finalizer),
    refuses new content with 403 'unable to create new content in namespace X because it is
    being terminated', and is gone once its content is."""
    name = f"c-{uuid.uuid4().hex[:8]}"
    kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}))
    kubectl("apply", "-n", name, "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "held", "finalizers": [HOLD]}}))
    kubectl("delete", "namespace", name, "--wait=false")
    assert kubectl.json("get", "namespace", name)["status"]["phase"] == "Terminating"
    late = kubectl("apply", "-n", name, "-f", "-", check=False, input=json.dumps(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "late"}}))
    assert late.returncode == 1
    assert (f'configmaps "late" is forbidden: unable to create new content in namespace {name} '
            "because it is being terminated") in late.stderr
    _release(kubectl, name, "configmap/held")
    kubectl("wait", "--for=delete", f"namespace/{name}", "--timeout=20s")


def test_force_delete_of_a_pod(kubectl, ns):
    """Real: `kubectl delete pod --grace-period=0 --force` warns that it does not wait for the
    kubelet and removes the pod from the API at once."""
    kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
         "spec": {"containers": [{"name": "app", "image": "busybox"}]}}))
    kubectl("wait", "-n", ns, "--for=condition=Ready", "pod/p", "--timeout=20s")
    done = kubectl("delete", "-n", ns, "pod", "p", "--grace-period=0", "--force")
    assert done.stdout.startswith('pod "p" force deleted')
    assert "Immediate deletion does not wait for confirmation" in done.stderr
    gone = kubectl("get", "-n", ns, "pod", "p", check=False)
    assert gone.returncode == 1 and 'pods "p" not found' in gone.stderr
