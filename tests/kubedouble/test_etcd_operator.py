"""The simulated coreos etcd-operator v0.9.4: crash-loops on K8s >= 1.22 unless fixed as FACTS.md says."""

from __future__ import annotations

import pytest
from kubernetes import client

from vitess_helpers import start_double, wait_for

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "etcdclusters.etcd.database.coreos.com"},
    "spec": {"group": "etcd.database.coreos.com", "scope": "Namespaced",
             "names": {"plural": "etcdclusters", "singular": "etcdcluster", "kind": "EtcdCluster",
                       "listKind": "EtcdClusterList", "shortNames": ["etcd"]},
             "versions": [{"name": "v1beta2", "served": True, "storage": True,
                           "schema": {"openAPIV3Schema": {"type": "object",
                                                          "x-kubernetes-preserve-unknown-fields": True}}}]}}


def _deployment(args):
    container = {"name": "etcd-operator", "image": "quay.io/coreos/etcd-operator:v0.9.4", "command": ["etcd-operator"]}
    if args:
        container["args"] = args
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "etcd-operator"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "etcd-operator"}},
                     "template": {"metadata": {"labels": {"app": "etcd-operator"}}, "spec": {"containers": [container]}}}}


@pytest.fixture
def cluster(tmp_path):
    d, api = start_double(tmp_path, operators=True, crash_interval=0.2)
    yield d, api
    d.stop()


def _pod(api):
    pods = client.CoreV1Api(api).list_namespaced_pod("default", label_selector="app=etcd-operator").items
    return pods[0] if pods else None


def _crash_looping(api):
    p = _pod(api)
    if not p or not p.status.container_statuses:
        return False
    cs = p.status.container_statuses[0]
    return cs.state.waiting and cs.state.waiting.reason == "CrashLoopBackOff" and cs.restart_count >= 1 and p


def _available(api):
    dep = client.AppsV1Api(api).read_namespaced_deployment("etcd-operator", "default")
    return (dep.status.available_replicas or 0) >= 1


def test_without_create_crd_false_it_crash_loops_on_v1beta1(cluster):
    d, api = cluster
    client.AppsV1Api(api).create_namespaced_deployment("default", _deployment(None))
    pod = wait_for(lambda: _crash_looping(api), what="CrashLoopBackOff")
    log = client.CoreV1Api(api).read_namespaced_pod_log(pod.metadata.name, "default")
    assert "etcd-operator Version: 0.9.4" in log
    assert "level=fatal" in log and "customresourcedefinitions.apiextensions.k8s.io" in log
    assert not _available(api)


def test_even_with_the_v1_crd_the_default_args_still_fail(cluster):
    d, api = cluster
    client.ApiextensionsV1Api(api).create_custom_resource_definition(CRD)
    client.AppsV1Api(api).create_namespaced_deployment("default", _deployment(["-cluster-wide"]))
    wait_for(lambda: _crash_looping(api), what="CrashLoopBackOff")
    assert not _available(api)


def test_v1_crd_and_create_crd_false_runs(cluster):
    d, api = cluster
    client.ApiextensionsV1Api(api).create_custom_resource_definition(CRD)
    client.AppsV1Api(api).create_namespaced_deployment("default", _deployment(["-create-crd=false"]))
    wait_for(lambda: _available(api), what="etcd-operator available")

    def ready_pod():  # the Deployment's status and the pod's are written separately
        p = _pod(api)
        return p and p.status.container_statuses and p.status.container_statuses[0].ready and p
    pod = wait_for(ready_pod, what="etcd-operator pod ready")
    assert "start running" in client.CoreV1Api(api).read_namespaced_pod_log(pod.metadata.name, "default")


def test_create_crd_false_waits_for_the_crd_then_recovers(cluster):
    d, api = cluster
    client.AppsV1Api(api).create_namespaced_deployment("default", _deployment(["-create-crd=false"]))
    pod = wait_for(lambda: _crash_looping(api), what="CrashLoopBackOff without the CRD")
    assert "get etcdclusters.etcd.database.coreos.com" in client.CoreV1Api(api).read_namespaced_pod_log(
        pod.metadata.name, "default")
    client.ApiextensionsV1Api(api).create_custom_resource_definition(CRD)
    wait_for(lambda: _available(api), what="available once the CRD exists")
