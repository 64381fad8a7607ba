"""The teardown flow against a cluster the deploy flow deployed on the Kubernetes API double, run on
this session's Prefect server: refusals and a dry run change nothing; a keyspace, then the whole
cluster, go and leave no pod and no vtflow-made object; claims stay until confirmed; a second
run changes nothing; the operator goes only when no other VitessCluster uses it.

The tests run in order on one cluster (each one's starting point is the one before's end)."""

import asyncio

import pytest
from prefect.artifacts import Artifact

from flows.teardown import teardown
from helpers import deployed_cluster
from tasks.cluster import ClusterSpec, KeyspaceSpec
from vtflow import names

NS = "example"
CLUSTER = "example"
MANAGED = names.selector(names.managed_labels(CLUSTER))


@pytest.fixture(scope="module")
def cluster(prefect_server, tmp_path_factory):
    spec = ClusterSpec(keyspaces=[KeyspaceSpec(), KeyspaceSpec(name="customer")])
    with deployed_cluster(tmp_path_factory.mktemp("teardown"), spec=spec) as d:
        yield d


def run(d, **kw):
    state = asyncio.run(teardown(target_block=f"tgt-{d.tag}", return_state=True, **kw))
    return state, state.result(raise_on_failure=False)


def report() -> str:
    return Artifact.get(f"teardown-{CLUSTER}").data


def claims(d, selector=f"{names.CLUSTER}={CLUSTER}") -> dict[str, str]:
    return {c["metadata"]["name"]: c["metadata"]["resourceVersion"] for c in d.list("persistentvolumeclaims", NS, selector)}


def pods(d, selector=f"{names.CLUSTER}={CLUSTER}") -> list[str]:
    return [p["metadata"]["name"] for p in d.list("pods", NS, selector)]


def vc(d) -> dict | None:
    return d.get("planetscale.com/vitessclusters", NS, CLUSTER)


def test_refusals_and_a_dry_run_change_nothing(cluster):
    before_vc, before_claims, before_pods = vc(cluster)["metadata"]["resourceVersion"], claims(cluster), pods(cluster)
    state, _ = run(cluster, scope="cluster", delete_claims=True, confirm="exampel")
    assert state.is_failed()
    assert state.message.endswith("VitessCluster example/example: delete_claims would delete data for good, and "
                                  "confirm is 'exampel'; nothing was changed. Fix: set confirm to 'example' (the "
                                  "cluster's name) to delete it, or turn delete_claims off to keep it.")
    state, _ = run(cluster, scope="keyspace", keyspace="customer", remove_operator=True)
    assert state.is_failed() and "remove_operator removes the operator every keyspace needs" in state.message

    state, result = run(cluster, scope="cluster", delete_claims=True, confirm=CLUSTER, dry_run=True)
    assert state.is_completed(), state.message
    text = report()
    assert "(dry run)" in text and "## Would remove" in text
    for line in ("VitessCluster example/example", "Service example/example-vtgate-nodeport",
                 "Service example/example-vtadmin-nodeport", "Secret example/example-cluster-config"):
        assert any(r.startswith(line) for r in result.removed), (line, result.removed)
    data = [c for c in before_claims if c != "vitess-backups"]
    assert {f"PersistentVolumeClaim {NS}/{c}" for c in data} <= set(result.removed)
    assert any(k.startswith("PersistentVolumeClaim example/vitess-backups: the backups' volume") for k in result.kept)
    # nothing changed: the same objects at the same versions
    assert vc(cluster)["metadata"]["resourceVersion"] == before_vc
    assert claims(cluster) == before_claims and sorted(pods(cluster)) == sorted(before_pods)


def test_keyspace_teardown_removes_its_backups_when_confirmed_and_keeps_its_claims(cluster):
    customer = f"{names.CLUSTER}={CLUSTER},{names.KEYSPACE}=customer"
    kept_claims = claims(cluster, customer)
    assert kept_claims and pods(cluster, customer)
    backups = [b.name for b in cluster.vitess.list_backups(NS, CLUSTER, "customer", "-")]
    assert backups  # the operator's initial backup
    state, result = run(cluster, scope="keyspace", keyspace="customer", delete_backups=True, confirm=CLUSTER)
    assert state.is_completed(), state.message
    assert pods(cluster, customer) == []
    assert cluster.list("planetscale.com/vitesskeyspaces", NS, customer) == []
    assert [k["name"] for k in vc(cluster)["spec"]["keyspaces"]] == ["commerce"]
    assert cluster.vitess.list_backups(NS, CLUSTER, "customer", "-") == []
    assert set(claims(cluster, customer)) == set(kept_claims)
    # kept because the Namespace owns them too: the garbage collector only dropped their shard as owner
    ns_uid = cluster.get("namespaces", "", NS)["metadata"]["uid"]
    for c in cluster.list("persistentvolumeclaims", NS, customer):
        assert [(r["kind"], r["uid"]) for r in c["metadata"]["ownerReferences"]] == [("Namespace", ns_uid)]
    assert {f"backup customer/- {b}" for b in backups} <= set(result.removed)
    assert pods(cluster, f"{names.CLUSTER}={CLUSTER},{names.KEYSPACE}=commerce")  # the other keyspace runs on
    # vtflow still owns spec.keyspaces alone: a later deploy can put the keyspace back without a conflict
    owners = [(e["manager"], e["operation"]) for e in vc(cluster)["metadata"]["managedFields"]
              if "f:keyspaces" in (e.get("fieldsV1") or {}).get("f:spec", {})]
    assert owners == [("vtflow", "Apply")]

    again_claims, again_vc = claims(cluster), vc(cluster)["metadata"]["resourceVersion"]
    state, result = run(cluster, scope="keyspace", keyspace="customer")
    assert state.is_completed(), state.message
    assert result.removed == [] and "Nothing was removed." in report()
    assert claims(cluster) == again_claims and vc(cluster)["metadata"]["resourceVersion"] == again_vc


def test_cluster_teardown_waits_on_finalizers_and_a_rerun_finishes_it(cluster):
    held = pods(cluster, f"{names.CLUSTER}={CLUSTER},{names.COMPONENT}=vttablet")[0]
    cluster.k.patch("v1", "Pod", held, NS, {"metadata": {"finalizers": ["example.com/hold"]}}, manager="test")
    state, _ = run(cluster, scope="cluster", timeout_s=1)
    assert state.is_failed()
    assert f"Pod {NS}/{held}: still there after 1 s: deleting since" in state.message
    assert "held by finalizer(s) example.com/hold" in state.message and "do not strip finalizers" in state.message
    text = report()
    assert "**Failed**: Pod" in text and "- VitessCluster example/example" in text  # what went before the wait
    assert "Service example/example-vtgate-nodeport" not in text.split("## Kept")[0]
    assert vc(cluster) is None and held in pods(cluster)
    cluster.k.patch("v1", "Pod", held, NS, {"metadata": {"finalizers": None}}, manager="test")  # what its controller does


def test_cluster_teardown_leaves_no_pod_nor_vtflow_object_and_keeps_the_claims(cluster):
    before = claims(cluster)
    state, result = run(cluster, scope="cluster")
    assert state.is_completed(), state.message
    assert vc(cluster) is None
    assert pods(cluster) == []
    assert cluster.list("services", NS, MANAGED) == [] and cluster.list("secrets", NS, MANAGED) == []
    assert cluster.list("services", NS, f"{names.CLUSTER}={CLUSTER}") == []  # the operator's too, with it
    assert set(claims(cluster)) == set(before)
    text = report()
    assert "## Removed" in text and "- Secret example/example-cluster-config" in text
    assert all(f"PersistentVolumeClaim {NS}/{c}:" in text for c in before)
    assert cluster.get("apps/deployments", NS, names.OPERATOR_DEPLOYMENT) is not None

    versions = claims(cluster)
    state, result = run(cluster, scope="cluster")
    assert state.is_completed(), state.message
    assert result.removed == [] and claims(cluster) == versions


def test_claims_go_only_with_confirm_and_the_operator_only_when_no_cluster_uses_it(cluster):
    data = [c for c in claims(cluster) if c != "vitess-backups"]
    state, result = run(cluster, scope="cluster", delete_claims=True, confirm=CLUSTER)
    assert state.is_completed(), state.message
    assert list(claims(cluster)) == ["vitess-backups"]  # the backups' claim: delete_backups not set
    assert {f"PersistentVolumeClaim {NS}/{c}" for c in data} <= set(result.removed)
    assert cluster.list("persistentvolumes") == [pv for pv in cluster.list("persistentvolumes")
                                                 if pv["spec"]["claimRef"]["name"] == "vitess-backups"]

    # another VitessCluster (no operator watches its namespace: an object is enough)
    cluster.create("namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}})
    cluster.create("planetscale.com/vitessclusters", {"apiVersion": "planetscale.com/v2", "kind": "VitessCluster",
                                                      "metadata": {"name": "shop", "namespace": "other"},
                                                      "spec": {"cells": [{"name": "zone1"}]}})
    state, _ = run(cluster, scope="cluster", remove_operator=True)
    assert state.is_failed()
    assert "other VitessClusters still use the vitess-operator and its CRDs (other/shop); nothing was changed" \
        in state.message
    assert cluster.get("apps/deployments", NS, names.OPERATOR_DEPLOYMENT) is not None

    cluster.delete("planetscale.com/vitessclusters", "other", "shop")
    state, result = run(cluster, scope="cluster", remove_operator=True, delete_backups=True, confirm=CLUSTER)
    assert state.is_completed(), state.message
    assert cluster.get("apps/deployments", NS, names.OPERATOR_DEPLOYMENT) is None
    assert pods(cluster, "app=vitess-operator") == []
    assert [c for c in cluster.list("apiextensions.k8s.io/customresourcedefinitions")
            if c["spec"]["group"] == "planetscale.com"] == []
    assert claims(cluster) == {}
    assert "CustomResourceDefinition vitessclusters.planetscale.com" in result.removed
    assert cluster.get("namespaces", "", NS) is not None  # never deleted

    state, result = run(cluster, scope="cluster", remove_operator=True, delete_claims=True, delete_backups=True,
                        confirm=CLUSTER)
    assert state.is_completed(), state.message
    assert result.removed == []
