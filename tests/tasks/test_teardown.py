"""tasks/teardown.py's pure parts: what a server-side applier owns, the refusals, the plan's order and
what it keeps, and the operator's object names pinned against every upstream release. The flow
test (tests/flows/test_teardown.py) runs the plan against the double."""

import copy

import pytest

from helpers import IMAGES, UPSTREAM
from tasks import teardown as td
from tasks.cluster import ClusterSpec, KeyspaceSpec, render
from tasks.operators import load_manifest, operator_objects
from vtflow.errors import ConfigError, PermanentError

NS = "example"
NS_OBJ = {"metadata": {"name": NS, "uid": "ns-uid"}}


def deployed_vc(*keyspaces: str, co_owner: str | None = None) -> dict:
    """A VitessCluster as vtflow's deploy leaves it: rendered, with vtflow's managedFields entry
    (spec.keyspaces an atomic list: one leaf), a status and a resourceVersion."""
    objs = render(ClusterSpec(keyspaces=[KeyspaceSpec(name=k) for k in keyspaces], **IMAGES), NS, "example",
                  "10.0.0.11", "user", "pw")
    vc = copy.deepcopy(next(o for o in objs if o["kind"] == "VitessCluster"))
    spec_tree = {f"f:{k}": {} for k in vc["spec"]}
    spec_tree["f:images"] = {f"f:{k}": {} for k in vc["spec"]["images"]}
    vc["metadata"].update(resourceVersion="41", uid="vc-uid", managedFields=[
        {"manager": "vtflow", "operation": "Apply", "apiVersion": "planetscale.com/v2", "fieldsType": "FieldsV1",
         "fieldsV1": {"f:metadata": {"f:labels": {"f:app.kubernetes.io/managed-by": {}}}, "f:spec": spec_tree}},
        {"manager": "vitess-operator", "operation": "Update", "subresource": "status",
         "fieldsV1": {"f:status": {".": {}, "f:observedGeneration": {}}}}])
    if co_owner:
        vc["metadata"]["managedFields"].append({"manager": co_owner, "operation": "Update",
                                                "fieldsV1": {"f:spec": {"f:keyspaces": {}}}})
    vc["status"] = {"observedGeneration": 1}
    return vc


def claim(name: str, keyspace: str | None = "commerce", owners=("shard-uid",), managed: bool = False) -> dict:
    labels = {"planetscale.com/cluster": "example"}
    if keyspace:
        labels["planetscale.com/keyspace"] = keyspace
    if managed:
        labels["app.kubernetes.io/managed-by"] = "vtflow"
    refs = [{"apiVersion": "planetscale.com/v2", "kind": "VitessShard", "name": "s", "uid": u, "controller": True}
            for u in owners]
    meta = {"name": name, "namespace": NS, "labels": labels, "resourceVersion": "7"}
    if refs:
        meta["ownerReferences"] = refs
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta}


def obj(kind: str, name: str, api_version: str = "v1", namespace: str | None = NS, **extra) -> dict:
    return {"apiVersion": api_version, "kind": kind, "metadata": {"name": name, **({"namespace": namespace} if namespace else {})},
            **extra}


def observed(vc=..., **kw) -> td.Observed:
    return td.Observed(namespace=NS, cluster="example", vc=deployed_vc("commerce", "customer") if vc is ... else vc,
                       namespace_obj=NS_OBJ, **kw)


# ---------------------------------------------------------------- managed fields


def test_owned_part_follows_the_fields_tree_maps_list_maps_and_sets():
    live = {"spec": {"replicas": 3, "paused": False,
                     "ports": [{"port": 80, "protocol": "TCP", "name": "web"}, {"port": 81, "protocol": "TCP", "name": "x"}],
                     "finalizers": ["a", "b"], "cells": [{"name": "zone1"}]}}
    tree = {"f:spec": {"f:replicas": {}, "f:ports": {'k:{"port":80,"protocol":"TCP"}': {".": {}, "f:name": {}}},
                       "f:finalizers": {'v:"b"': {}}, "f:cells": {}}}
    assert td.owned_part(live, tree) == {"spec": {"replicas": 3, "ports": [{"port": 80, "protocol": "TCP", "name": "web"}],
                                                  "finalizers": ["b"], "cells": [{"name": "zone1"}]}}


def test_applied_config_is_what_vtflow_applied_with_the_identity_and_no_status():
    vc = deployed_vc("commerce")
    vc["spec"]["images"]["vttablet"] = "elsewhere"  # another manager's field stays out only if vtflow lost it
    vc["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"]["f:images"].pop("f:vttablet")
    out = td.applied_config(vc)
    assert out["apiVersion"] == "planetscale.com/v2" and out["kind"] == "VitessCluster"
    assert out["metadata"] == {"labels": {"app.kubernetes.io/managed-by": "vtflow"}, "name": "example", "namespace": NS}
    assert "status" not in out and "vttablet" not in out["spec"]["images"]
    assert out["spec"]["keyspaces"] == vc["spec"]["keyspaces"] and out["spec"]["cells"] == vc["spec"]["cells"]


def test_field_owners_names_every_manager_of_a_field():
    assert td.field_owners(deployed_vc("commerce"), ("spec", "keyspaces")) == {("vtflow", "Apply")}
    assert td.field_owners(deployed_vc("commerce", co_owner="kubectl-edit"), ("spec", "keyspaces")) == {
        ("vtflow", "Apply"), ("kubectl-edit", "Update")}
    assert td.field_owners(deployed_vc("commerce"), ("spec", "nothing")) == set()


# ---------------------------------------------------------------- the keyspace's removal


def test_a_keyspace_goes_by_applying_what_vtflow_applied_less_the_keyspace():
    vc = deployed_vc("commerce", "customer")
    step = td.without_keyspace(vc, "customer")
    assert step.verb == "apply" and step.name == "example" and step.namespace == NS
    assert [k["name"] for k in step.body["spec"]["keyspaces"]] == ["commerce"]
    assert step.body["spec"]["cells"] == vc["spec"]["cells"] and "managedFields" not in step.body["metadata"]
    assert [k["name"] for k in vc["spec"]["keyspaces"]] == ["commerce", "customer"]  # the input is left as read
    # the last keyspace: the field goes, as in upstream's 102_keyspace_teardown.yaml
    assert "keyspaces" not in td.without_keyspace(deployed_vc("commerce"), "commerce").body["spec"]


def test_a_keyspace_list_someone_else_wrote_is_patched_guarded_by_its_version():
    step = td.without_keyspace(deployed_vc("commerce", "customer", co_owner="kubectl-edit"), "commerce")
    assert step.verb == "patch"
    assert step.body["metadata"] == {"resourceVersion": "41"}
    assert [k["name"] for k in step.body["spec"]["keyspaces"]] == ["customer"]
    assert td.without_keyspace(deployed_vc("commerce", co_owner="x"), "commerce").body["spec"] == {"keyspaces": None}


def test_a_claim_is_kept_by_its_namespace_as_a_second_owner():
    patch = td.keep_claim_patch(claim("c1"), NS_OBJ)
    refs = patch["metadata"]["ownerReferences"]
    assert [r["uid"] for r in refs] == ["shard-uid", "ns-uid"] and refs[1]["kind"] == "Namespace"
    assert patch["metadata"]["resourceVersion"] == "7"
    kept = claim("c1")
    kept["metadata"]["ownerReferences"] = refs
    assert td.keep_claim_patch(kept, NS_OBJ) is None        # kept already: a second run writes nothing
    assert td.keep_claim_patch(claim("c2", owners=()), NS_OBJ) is None  # nothing would collect it


# ---------------------------------------------------------------- refusals (before any change)


@pytest.mark.parametrize("req, text", [
    (td.TeardownRequest(scope="keyspace"), "scope keyspace needs the keyspace to remove. Fix: set keyspace to one of "
                                           "commerce, customer"),
    (td.TeardownRequest(scope="cluster", delete_claims=True),
     "VitessCluster example/example: delete_claims would delete data for good, and confirm is empty; nothing was "
     "changed. Fix: set confirm to 'example'"),
    (td.TeardownRequest(scope="cluster", delete_claims=True, delete_backups=True, confirm="Example"),
     "delete_claims and delete_backups would delete data for good, and confirm is 'Example'"),
    (td.TeardownRequest(scope="keyspace", keyspace="customer", remove_operator=True), "it needs scope cluster"),
])
def test_requests_that_may_not_run_are_refused_naming_the_fix(req, text):
    with pytest.raises(ConfigError) as e:
        td.plan(observed(), req)
    assert text in str(e.value)


def test_the_operator_is_not_removed_while_other_clusters_use_it():
    with pytest.raises(ConfigError) as e:
        td.plan(observed(other_clusters=["other/shop", "prod/main"]), td.TeardownRequest(scope="cluster", remove_operator=True))
    assert "other VitessClusters still use the vitess-operator and its CRDs (other/shop, prod/main)" in str(e.value)
    assert "Fix: tear those down first, or turn remove_operator off." in str(e.value)


def test_backups_that_cannot_be_listed_are_not_deleted_blind():
    obs = observed(backups=None, backups_unread="no Running and Ready pod matches planetscale.com/component=vtctld")
    with pytest.raises(PermanentError, match="delete_backups: the backups cannot be listed"):
        td.plan(obs, td.TeardownRequest(scope="cluster", delete_backups=True, confirm="example"))
    p = td.plan(obs, td.TeardownRequest(scope="cluster"))  # kept either way: a note, no refusal
    assert [n.name for n in p.notes] == ["backups"] and p.notes[0].level == "warn"


# ---------------------------------------------------------------- the plan


def _cluster_obs(**kw) -> td.Observed:
    return observed(pods=[obj("Pod", "p1"), obj("Pod", "p2")],
                    claims=[claim("data-1"), claim("etcd-1", keyspace=None), claim("vitess-backups", None, (), True)],
                    made=[obj("Service", "example-vtgate-nodeport"), obj("Secret", "example-cluster-config")],
                    backups={("commerce", "-"): ["b1", "b2"]}, **kw)


def test_cluster_plan_keeps_claims_and_backups_and_orders_the_steps():
    p = td.plan(_cluster_obs(), td.TeardownRequest(scope="cluster"))
    assert [(s.verb, s.what.split(" (")[0]) for s in p.steps] == [
        ("keep-claim", "PersistentVolumeClaim example/data-1"),
        ("keep-claim", "PersistentVolumeClaim example/etcd-1"),
        ("delete", "VitessCluster example/example"),
        ("wait-gone", "VitessCluster example/example"),
        ("wait-gone", "the pods of VitessCluster example/example"),
        ("delete", "Service example/example-vtgate-nodeport"),
        ("delete", "Secret example/example-cluster-config")]
    assert p.steps[4].selector == "planetscale.com/cluster=example"
    assert p.removals[-1].startswith("2 pod(s) of VitessCluster example/example")
    kept = "\n".join(p.kept)
    for line in ("2 backup(s) of shard commerce/- (newest b2): delete_backups not set",
                 "PersistentVolumeClaim example/data-1: the data of a tablet or etcd member; delete it with "
                 "delete_claims and confirm=example",
                 "PersistentVolumeClaim example/etcd-1:",
                 "PersistentVolumeClaim example/vitess-backups: the backups' volume",
                 "Namespace example: vtflow never deletes a namespace",
                 "the vitess-operator and its CRDs: remove_operator not set"):
        assert line in kept


def test_confirmed_deletes_remove_backups_first_and_claims_after_the_pods():
    operator = [obj("Deployment", "vitess-operator", "apps/v1"),
                obj("CustomResourceDefinition", "vitessclusters.planetscale.com", "apiextensions.k8s.io/v1", None)]
    p = td.plan(_cluster_obs(operator=operator), td.TeardownRequest(scope="cluster", delete_claims=True,
                                                                    delete_backups=True, confirm="example",
                                                                    remove_operator=True))
    verbs = [(s.verb, s.what.split(" (")[0]) for s in p.steps]
    assert verbs[:2] == [("remove-backup", "backup commerce/- b1"), ("remove-backup", "backup commerce/- b2")]
    assert p.steps[0].backup == ("commerce", "-", "b1")
    assert "keep-claim" not in [v for v, _ in verbs]
    pods_gone = verbs.index(("wait-gone", "the pods of VitessCluster example/example"))
    claim_deletes = [i for i, v in enumerate(verbs) if v[0] == "delete" and "PersistentVolumeClaim" in v[1]]
    assert len(claim_deletes) == 3 and min(claim_deletes) > pods_gone
    assert ("wait-gone", "PersistentVolumeClaim example/vitess-backups") in verbs
    assert verbs.index(("delete", "Deployment example/vitess-operator")) > max(claim_deletes)
    assert verbs[-1] == ("wait-gone", "CustomResourceDefinition vitessclusters.planetscale.com")
    assert not any("PersistentVolumeClaim" in k for k in p.kept)


def test_a_second_cluster_run_removes_nothing():
    kept_claim = claim("data-1")
    kept_claim["metadata"]["ownerReferences"].append({"kind": "Namespace", "uid": "ns-uid"})
    p = td.plan(observed(vc=None, claims=[kept_claim]), td.TeardownRequest(scope="cluster"))
    assert p.removals == []
    assert [s.verb for s in p.steps] == ["wait-gone"]  # the pods: none left, so no wait
    assert "vtflow can no longer list them" in "\n".join(p.kept)


def test_keyspace_plan_removes_it_from_the_spec_and_waits_for_what_the_operator_deletes():
    obs = observed(pods=[obj("Pod", "t1")], claims=[claim("data-1", keyspace="customer")],
                   backups={("customer", "-"): ["b1"]})
    p = td.plan(obs, td.TeardownRequest(scope="keyspace", keyspace="customer"))
    assert [s.verb for s in p.steps] == ["keep-claim", "apply", "wait-gone", "wait-gone"]
    assert [s.selector for s in p.steps[2:]] == ["planetscale.com/cluster=example,planetscale.com/keyspace=customer"] * 2
    assert [s.kind for s in p.steps[2:]] == ["VitessKeyspace", "Pod"]
    assert "VitessCluster example/example and its other keyspaces (commerce)" in p.kept
    assert "1 backup(s) of shard customer/- (newest b1): delete_backups not set" in p.kept
    # once it is out of the spec and its pods and claims are gone, a run finds nothing to do
    gone = td.plan(observed(vc=deployed_vc("commerce")), td.TeardownRequest(scope="keyspace", keyspace="customer"))
    assert gone.removals == [] and "not in VitessCluster example/example (its keyspaces: commerce)" in gone.notes[0].line


def test_still_there_names_the_finalizers_that_hold_an_object():
    assert td.still_there(None) is None
    assert td.still_there(obj("Pod", "p")) == "not deleted yet"
    held = obj("VitessKeyspace", "k")
    held["metadata"].update(deletionTimestamp="2026-12-02T10:00:00Z", finalizers=["planetscale.com/x"])
    assert td.still_there(held) == "deleting since 2026-12-02T10:00:00Z, held by finalizer(s) planetscale.com/x"


def test_the_report_lists_removed_and_kept_and_says_when_nothing_went():
    r = td.TeardownResult(namespace=NS, cluster="example", scope="cluster", removed=["VitessCluster example/example"],
                          kept=["PersistentVolumeClaim example/c1: data"])
    text = r.markdown()
    assert text.startswith("# Teardown of VitessCluster example/example: the whole cluster\n")
    assert "## Removed\n\n- VitessCluster example/example\n\n## Kept\n\n- PersistentVolumeClaim example/c1: data" in text
    dry = td.TeardownResult(namespace=NS, cluster="example", scope="keyspace", keyspace="customer", dry_run=True)
    assert "keyspace customer (dry run)" in dry.markdown() and "## Would remove\n\nNothing would be removed." in dry.markdown()


@pytest.mark.parametrize("release", sorted(p.name for p in UPSTREAM.glob("vitess-operator-v*")))
def test_the_operator_objects_removed_are_those_each_release_installs(release):
    """Every object vtflow's deploy applies from a release's operator.yaml goes with remove_operator
    (its CRDs by their group), except the Namespace, which vtflow never deletes."""
    installed = operator_objects(load_manifest(str(UPSTREAM / release / "examples" / "operator.yaml")), NS, None)
    removed = {(kind, name) for _, kind, name, _ in td.OPERATOR_OBJECTS}
    for o in installed:
        if o["kind"] == "Namespace":
            continue
        if o["kind"] == "CustomResourceDefinition":
            assert o["spec"]["group"] == td.OPERATOR_GROUP, o["metadata"]["name"]
        else:
            assert (o["kind"], o["metadata"]["name"]) in removed, (release, o["kind"], o["metadata"]["name"])


def test_every_operator_object_name_is_one_a_release_installs():
    installed = {(o["kind"], o["metadata"]["name"])
                 for release in UPSTREAM.glob("vitess-operator-v*")
                 for o in operator_objects(load_manifest(str(release / "examples" / "operator.yaml")), NS, None)}
    assert {(kind, name) for _, kind, name, _ in td.OPERATOR_OBJECTS} <= installed
