"""Helpers for the Vitess simulation tests: apply the real upstream manifests, wait for status.

Everything goes through the official client (dynamic client, server-side apply).
"""

from __future__ import annotations

import copy
import time

import pytest
import yaml
from kubernetes import client, dynamic

from vtflow.kube import discovery_client

from kubedouble_helpers import OPERATOR_DIR, api_client_for

from kubedouble import DoubleConfig, KubeDouble

NS = "example"


def docs(name: str) -> list[dict]:
    path = OPERATOR_DIR / "examples" / name
    if not path.exists():
        pytest.skip(f"upstream file {path} is not present (set VTFLOW_UPSTREAM_DIR)")
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def apply(dyn: dynamic.DynamicClient, doc: dict, namespace: str = NS):
    rc = dyn.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
    doc = copy.deepcopy(doc)
    if rc.namespaced:
        doc["metadata"]["namespace"] = namespace
        return rc.server_side_apply(body=doc, namespace=namespace, field_manager="vtflow", force_conflicts=True)
    return rc.server_side_apply(body=doc, field_manager="vtflow", force_conflicts=True)


def apply_file(dyn: dynamic.DynamicClient, name: str, namespace: str = NS) -> list[dict]:
    applied = docs(name)
    for d in applied:
        apply(dyn, d, namespace)
    dyn.resources.invalidate_cache()
    return applied


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except client.ApiException as e:
            last = e
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def cluster_status(dyn: dynamic.DynamicClient, name: str = "example", namespace: str = NS) -> dict:
    rc = dyn.resources.get(api_version="planetscale.com/v2", kind="VitessCluster")
    return (rc.get(name=name, namespace=namespace).to_dict().get("status")) or {}


def cluster_ready(status: dict) -> bool:
    """Every readiness field of a VitessCluster's status (vtadmin only when it has one)."""
    if not status:
        return False
    ks = status.get("keyspaces") or {}
    return (((status.get("globalLockserver") or {}).get("etcd") or {}).get("available") == "True"
            and (status.get("vitessDashboard") or {}).get("available") == "True"
            and (status.get("vtadmin") or {"available": "True"}).get("available") == "True"
            and bool(status.get("cells")) and all(c.get("gatewayAvailable") == "True" for c in status["cells"].values())
            and bool(ks) and all(k["desiredTablets"] == k["readyTablets"] and k["desiredShards"] == k["readyShards"]
                                 for k in ks.values())
            and bool(status.get("gatewayServiceName")))


def start_double(tmp, **config) -> tuple[KubeDouble, client.ApiClient]:
    config.setdefault("pod_start_delay", 0.02)
    d = KubeDouble(DoubleConfig(**config))
    d.start()
    return d, api_client_for(d, tmp)


def make_namespace(api: client.ApiClient, name: str = NS) -> None:
    client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))


def deploy_101(api: client.ApiClient, example: str = "101_initial_cluster.yaml", timeout: float = 15.0) -> dynamic.DynamicClient:
    """operator.yaml then the example, into namespace "example"; waits until the cluster is ready."""
    dyn = discovery_client(api)
    make_namespace(api)
    apply_file(dyn, "operator.yaml")
    apply_file(dyn, example)
    wait_for(lambda: cluster_ready(cluster_status(dyn)), timeout=timeout, what="VitessCluster ready")
    return dyn
