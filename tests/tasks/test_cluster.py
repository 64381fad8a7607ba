"""tasks/cluster.py: rendering against upstream's 101 example, the preflight, readiness, diagnosis."""


import pytest
import yaml

from tasks import cluster as c
from tasks.operators import load_manifest
from vtflow.errors import ConfigError
from helpers import EXAMPLES, IMAGES

SC = [{"metadata": {"name": "local-path", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}}}]


def default_objects(**spec):
    return c.render(c.ClusterSpec(**(IMAGES | spec)), "example", "example", "10.0.0.11", "user", "s3cret-pw")


def diff(a, b, path=""):
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += diff(a.get(k), b.get(k), f"{path}.{k}" if path else k)
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in diff(x, y, f"{path}[{i}]")]
    return [] if a == b else [path]


def test_default_cluster_differs_from_upstream_101_only_on_purpose():
    upstream = next(d for d in yaml.safe_load_all((EXAMPLES / "101_initial_cluster.yaml").read_text())
                    if d and d["kind"] == "VitessCluster")
    upgraded = next(d for d in yaml.safe_load_all((EXAMPLES / "cluster_upgrade.yaml").read_text())
                    if d and d["kind"] == "VitessCluster")
    ours = next(o for o in default_objects() if o["kind"] == "VitessCluster")
    # the README's list: vtflow's label, vtadmin (image and spec) turned on, and the images of the
    # Vitess the release is built for (upstream's 101 starts one major behind, cluster_upgrade
    # moves to it: tasks/versions.py)
    assert diff(ours, upstream)[:2] == ["metadata.labels", "spec.images.mysqld.mysql80Compatible"]
    upstream["spec"]["images"] = upgraded["spec"]["images"]
    assert diff(ours, upstream) == ["metadata.labels", "spec.images.vtadmin", "spec.vtadmin"]
    assert ours["spec"]["vtadmin"]["apiAddresses"] == ["http://10.0.0.11:30001"]
    assert ours["spec"]["vtadmin"]["readOnly"] is True


def test_default_cluster_validates_against_the_operator_crd_and_errors_name_the_field():
    docs = load_manifest(str(EXAMPLES / "operator.yaml"))
    vc = next(o for o in default_objects() if o["kind"] == "VitessCluster")
    c.validate_cluster(vc, docs)
    vc["spec"]["cells"][0]["gateway"]["replicas"] = "two"
    with pytest.raises(ConfigError, match=r"VitessCluster example/example: .*spec.cells\[0\].gateway.replicas: 'two' is not of type 'integer'"):
        c.validate_cluster(vc, docs)


def test_users_secret_carries_the_credentials_never_an_empty_password():
    secret = default_objects()[0]
    assert secret["kind"] == "Secret" and secret["metadata"]["name"] == "example-cluster-config"
    assert yaml.safe_load(secret["stringData"]["users.json"]) == {"user": [{"UserData": "user", "Password": "s3cret-pw"}]}
    assert "CREATE USER 'vt_dba'@'localhost'" in secret["stringData"]["init_db.sql"]
    with pytest.raises(ConfigError, match="password is empty"):
        c.render(c.ClusterSpec(**IMAGES), "example", "example", "10.0.0.11", "user", "")


def test_node_ports_and_backup_locations():
    objs = default_objects(vtgate_node_port=30306)
    services = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Service"}
    assert [p["nodePort"] for p in services["example-vtadmin-nodeport"]["spec"]["ports"]] == [30000, 30001]
    assert services["example-vtgate-nodeport"]["spec"]["selector"]["planetscale.com/component"] == "vtgate"
    s3 = default_objects(backup={"kind": "s3", "s3_bucket": "b", "s3_region": "eu-1"})
    vc = next(o for o in s3 if o["kind"] == "VitessCluster")
    assert vc["spec"]["backup"]["locations"] == [{"s3": {"bucket": "b", "region": "eu-1"}}]
    assert not any(o["kind"] == "PersistentVolumeClaim" for o in s3)
    none = next(o for o in default_objects(backup={"kind": "none"}) if o["kind"] == "VitessCluster")
    assert "backup" not in none["spec"]
    with pytest.raises(ConfigError, match="s3_bucket and s3_region"):
        default_objects(backup={"kind": "s3"})


def test_vtadmin_needs_a_node_address():
    with pytest.raises(ConfigError, match="node_address"):
        c.render(c.ClusterSpec(**IMAGES), "example", "example", None, "user", "pw")
    assert c.render(c.ClusterSpec(vtadmin=False, **IMAGES), "example", "example", None, "user", "pw")


def node(name, cpu, mem, server=True):
    labels = {"node-role.kubernetes.io/control-plane": "true"} if server else {}
    return {"metadata": {"name": name, "labels": labels}, "status": {"allocatable": {"cpu": cpu, "memory": mem}}}


def test_preflight_refuses_the_users_2cpu_4gib_nodes_with_numbers():
    check = c.preflight(c.ClusterSpec(), [node(f"n{i}", "2", "4Gi") for i in range(3)], [], SC, "example")
    assert len(check.problems) == 1
    assert "memory limits add up to 6.12 GiB but the nodes have 6.00 GiB free" in check.problems[0]
    table = check.table()
    assert "tablets (commerce)" in table and "1530m" in table and "3.97 GiB" in table
    # the same nodes, accepting the risk, or with one tablet fewer, pass
    assert c.preflight(c.ClusterSpec(), [node(f"n{i}", "2", "4Gi") for i in range(3)], [], SC, "example",
                       allow_memory_overcommit=True).problems == []
    fewer = c.ClusterSpec(keyspaces=[{"tablets": {"replicas": 2}}])
    assert c.preflight(fewer, [node(f"n{i}", "2", "4Gi") for i in range(3)], [], SC, "example").problems == []


def test_preflight_counts_pods_already_running_but_not_the_clusters_own():
    nodes = [node(f"n{i}", "4", "8Gi") for i in range(3)]
    rancher = [{"metadata": {"name": f"rancher-{i}", "labels": {"app": "rancher"}}, "spec": {"nodeName": f"n{i}",
                "containers": [{"name": "r", "resources": {"requests": {"cpu": "1", "memory": "4Gi"}}}]},
                "status": {"phase": "Running"}} for i in range(3)]
    assert "pods would stay Pending" not in " ".join(c.preflight(c.ClusterSpec(), nodes, [], SC, "example").problems)
    loaded = c.preflight(c.ClusterSpec(), nodes, rancher, SC, "example")
    assert loaded.problems and "running pods 1000m/  4.00 GiB" in loaded.table()
    own = [{**p, "metadata": {"name": p["metadata"]["name"], "labels": {"planetscale.com/cluster": "example"}}} for p in rancher]
    assert c.preflight(c.ClusterSpec(), nodes, own, SC, "example").problems == [], "a re-run must see the same room"


def test_preflight_wants_a_default_storage_class():
    check = c.preflight(c.ClusterSpec(), [node(f"n{i}", "8", "32Gi") for i in range(3)], [], [], "example")
    assert check.problems == [check.problems[0]] and "no default StorageClass" in check.problems[0]


def test_not_ready_names_what_is_missing():
    vc = next(o for o in default_objects() if o["kind"] == "VitessCluster")
    vc["metadata"]["generation"] = 2
    assert "has not observed" in c.not_ready({**vc, "status": {"observedGeneration": 1}})
    status = {"observedGeneration": 2, "globalLockserver": {"etcd": {"available": "True"}},
              "vitessDashboard": {"available": "True"}, "vtadmin": {"available": "False"},
              "cells": {"zone1": {"gatewayAvailable": "True"}},
              "keyspaces": {"commerce": {"desiredTablets": 3, "readyTablets": 1}}}
    assert c.not_ready({**vc, "status": status}) == "waiting for vtadmin, keyspace commerce tablets 1/3"
    status["vtadmin"]["available"] = "True"
    status["keyspaces"]["commerce"]["readyTablets"] = 3
    assert c.not_ready({**vc, "status": status}) is None
    assert c.not_ready(None) == "VitessCluster not created yet"


def test_diagnose_reports_pending_pods_crash_loops_and_unbound_claims():
    pods = [{"metadata": {"name": "example-vttablet-zone1-1"}, "status": {"phase": "Pending"}},
            {"metadata": {"name": "example-zone1-vtgate-1"}, "status": {"phase": "Running", "containerStatuses": [
                {"name": "vtgate", "restartCount": 7, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}}]
    events = [{"involvedObject": {"kind": "Pod", "name": "example-vttablet-zone1-1"}, "reason": "FailedScheduling",
               "message": "0/3 nodes are available: 3 Insufficient memory."}]
    claims = [{"metadata": {"name": "vitess-backups"}, "status": {"phase": "Pending"}}]
    found = c.diagnose(pods, events, claims)
    assert found[0] == "Pod example-vttablet-zone1-1 is Pending: FailedScheduling: 0/3 nodes are available: 3 Insufficient memory."
    assert "CrashLoopBackOff (restarts 7)" in found[1]
    assert "PersistentVolumeClaim vitess-backups is Pending" in found[2]
