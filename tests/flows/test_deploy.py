"""The deploy flow (steps 1-4; with data and verification: test_deploy_data.py) against the Kubernetes API double and this session's Prefect server."""

import asyncio
import uuid

import pytest

from blocks.mysql import MySQLCredentials
from blocks.target import VitessTarget
from flows.deploy import DeployParameters, deploy
from vtflow import kube
from kubedouble import DoubleConfig, KubeDouble
from helpers import OPERATOR_YAML



@pytest.fixture
def cluster_double(tmp_path, request):
    cpu, mem, delay = getattr(request, "param", ("8", "16Gi", 0.02))
    d = KubeDouble(DoubleConfig(nodes=3, node_cpu=cpu, node_memory=mem, git_version="v1.33.5+k3s1", operators=True,
                                pod_start_delay=delay))
    d.start()
    tag = uuid.uuid4().hex[:6]
    VitessTarget(kubeconfig=d.kubeconfig(tmp_path / "kubeconfig").read_text(), node_address="127.0.0.1").save(f"tgt-{tag}")
    MySQLCredentials(user="user", password="deploy-pw-1").save(f"my-{tag}")
    d.tag = tag
    d.k = kube.Kube(kube.api_client((tmp_path / "kubeconfig").read_text(), None, "t"))
    yield d
    d.stop()


def params(d, **kw):
    return DeployParameters(target_block=f"tgt-{d.tag}", mysql_block=f"my-{d.tag}", nodes_block=None,
                            operator_manifest=OPERATOR_YAML, **kw)


def run(p):
    state = asyncio.run(deploy(params=p, return_state=True))
    return state, state.result(raise_on_failure=False)


def test_operator_steps_install_then_a_second_run_changes_nothing(prefect_server, cluster_double):
    state, reports = run(params(cluster_double, until="vitess-operator"))
    assert state.is_completed(), state.message
    assert [r.step for r in reports] == ["node-prep", "etcd-operator", "vitess-operator"]
    assert reports[1].skipped and "runs its own etcd" in reports[1].skipped
    assert reports[2].changed
    state, again = run(params(cluster_double, until="vitess-operator"))
    assert state.is_completed() and not any(r.changed for r in again)


def test_dry_run_plans_everything_and_changes_nothing(prefect_server, cluster_double):
    state, reports = run(params(cluster_double, until="cluster", dry_run=True))
    assert state.is_completed(), state.message
    planned = {o["object"]: o["action"] for r in reports for o in r.objects}
    assert planned["Deployment example/vitess-operator"] == "created"
    assert planned["VitessCluster example/example"] == "created"
    assert planned["Secret example/example-cluster-config"] == "created"
    assert cluster_double.k.list("apiextensions.k8s.io/v1", "CustomResourceDefinition") == []


@pytest.mark.parametrize("cluster_double", [("2", "4Gi", 0.02)], indirect=True)
def test_the_users_small_nodes_are_refused_before_any_cluster_object(prefect_server, cluster_double):
    state, _ = run(params(cluster_double, until="cluster"))
    assert state.is_failed()
    assert "preflight refused it before anything was applied" in state.message
    assert "memory limits add up to 6.12 GiB but the nodes have 6.00 GiB free" in state.message
    k = cluster_double.k
    assert k.get("v1", "Secret", "example-cluster-config", "example") is None
    assert k.list("planetscale.com/v2", "VitessCluster", "example") == []


def test_an_invalid_spec_fails_before_any_call(prefect_server, cluster_double):
    bad = params(cluster_double, until="cluster").model_dump()
    bad["cluster"]["keyspaces"] = [{"name": "commerce", "shards": 0}]
    bad["cluster"]["gateway"] = {"cpu": "lots"}
    state = asyncio.run(deploy(params=bad, return_state=True))
    assert state.is_failed()
    assert "shards" in state.message and "greater than or equal to 1" in state.message
    assert cluster_double.k.list("apiextensions.k8s.io/v1", "CustomResourceDefinition") == []


def test_steps_survive_20_percent_transient_errors_without_duplicates(prefect_server, cluster_double):
    cluster_double.faults.error_rate = 0.2
    try:
        state, reports = run(params(cluster_double, until="vitess-operator", etcd_operator=True))
    finally:
        cluster_double.faults.error_rate = 0
    assert state.is_completed(), state.message
    k = cluster_double.k
    assert sorted(d["metadata"]["name"] for d in k.list("apps/v1", "Deployment", "example")) == ["etcd-operator", "vitess-operator"]
    assert len(k.list("apiextensions.k8s.io/v1", "CustomResourceDefinition")) == 9


def test_full_cluster_init_reaches_ready_then_a_rerun_changes_nothing(prefect_server, cluster_double):
    state, reports = run(params(cluster_double, until="cluster", ready_timeout_s=60))
    assert state.is_completed(), state.message
    vc = cluster_double.k.get("planetscale.com/v2", "VitessCluster", "example", "example")
    assert vc["status"]["keyspaces"]["commerce"]["readyTablets"] == 3
    actions = {o["object"]: o["action"] for o in reports[-1].objects}
    assert actions == {"Secret example/example-cluster-config": "created",
                       "PersistentVolumeClaim example/vitess-backups": "created",
                       "VitessCluster example/example": "created",
                       "Service example/example-vtadmin-nodeport": "created",
                       "Service example/example-vtgate-nodeport": "created"}
    state, again = run(params(cluster_double, until="cluster", ready_timeout_s=60))
    assert state.is_completed(), state.message
    assert not any(r.changed for r in again), [o for r in again for o in r.objects if o["action"] != "unchanged"]


def test_readiness_timeout_diagnoses_a_crash_looping_container(prefect_server, cluster_double):
    d = cluster_double
    state, _ = run(params(d, until="cluster", ready_timeout_s=60))
    assert state.is_completed(), state.message
    vtgate = d.list("pods", "example", label_selector="planetscale.com/component=vtgate")[0]["metadata"]["name"]
    d.kubelet.crash_loop(d, "example", vtgate, "vtgate", on=True)
    state, _ = run(params(d, until="cluster", ready_timeout_s=3))
    assert state.is_failed()
    assert "VitessCluster example/example: not ready after 3 s: waiting for vtgate in zone1" in state.message
    assert f"Pod {vtgate} container vtgate: CrashLoopBackOff" in state.message


def test_cluster_step_survives_20_percent_transient_errors(prefect_server, cluster_double):
    cluster_double.faults.error_rate = 0.2
    try:
        state, reports = run(params(cluster_double, until="cluster", ready_timeout_s=90))
    finally:
        cluster_double.faults.error_rate = 0
    assert state.is_completed(), state.message
    k = cluster_double.k
    assert len(k.list("planetscale.com/v2", "VitessCluster", "example")) == 1
    assert len(k.list("v1", "Secret", "example", label_selector="app.kubernetes.io/managed-by=vtflow")) == 1


def test_cluster_step_without_the_operator_names_the_missing_crd(prefect_server, cluster_double):
    from tasks.cluster import ClusterSpec, init_cluster
    from tasks.operators import load_manifest

    creds = MySQLCredentials(user="user", password="pw-123")
    with pytest.raises(kube.MissingKindError, match=r"VitessCluster \(planetscale.com/v2\): the cluster does not serve "
                                                     r"this kind. Fix: apply the vitess-operator first"):
        init_cluster(cluster_double.k, ClusterSpec(), "example", "example", "127.0.0.1", creds,
                     load_manifest(OPERATOR_YAML))
