"""tasks/redeploy.py: image references, patches, plans and rollout judgements are pure (the tasks run
through the flow: tests/flows/test_redeploy.py)."""

import pytest

from tasks.cluster import ClusterSpec, render
from helpers import IMAGES
from tasks.redeploy import (Rollback, cluster_images, cluster_patch, deployment_pending, image_ref, newer_applied,
                            operator_patch, plan_change, pod_images, rollout_pending)
from vtflow.errors import ConfigError

D = "sha256:" + "a" * 64
VC = next(o for o in render(ClusterSpec(**IMAGES), "example", "example", "10.0.0.11", "u", "p") if o["kind"] == "VitessCluster")


def test_image_ref_needs_the_mirror():
    assert image_ref("harbor.lan:8443/vitess/lite", D, "harbor.lan:8443/vitess/") == f"harbor.lan:8443/vitess/lite@{D}"
    with pytest.raises(ConfigError, match="has no registry_mirror"):
        image_ref("harbor.lan/vitess/lite", D, None)
    with pytest.raises(ConfigError, match="not under the target's registry mirror"):
        image_ref("harbor.lan/vitessx/lite", D, "harbor.lan/vitess")
    for digest, repository in ((D + "\n", "harbor.lan/vitess/lite"), (D, "harbor.lan/vitess/lite\n")):  # "$" passed "\n"
        with pytest.raises(ConfigError):
            image_ref(repository, digest, "harbor.lan/vitess")


def test_cluster_patch_writes_every_vitess_image_and_the_push_time():
    images = cluster_images(VC, "vitess")
    assert set(images) == {"images.vtctld", "images.vtgate", "images.vttablet", "images.vtorc", "images.vtbackup",
                           "images.mysqld.mysql80Compatible"}
    patch = cluster_patch("vitess", {p: "x@" + D for p in images}, 12.5)
    assert patch["spec"]["images"]["mysqld"] == {"mysql80Compatible": "x@" + D}
    assert patch["metadata"]["annotations"] == {"vtflow.io/vitess-pushed-at": "12.5"}
    assert "metadata" not in cluster_patch("vtadmin", {"images.vtadmin": "y"}, None)


def test_newer_applied():
    obj = {"metadata": {"annotations": {"vtflow.io/vitess-pushed-at": "200"}}}
    assert newer_applied(obj, "vitess", 100) == 200 and newer_applied(obj, "vitess", 300) is None
    assert newer_applied(obj, "vtadmin", 100) is None and newer_applied(obj, "vitess", None) is None


def _pod(name, comp, image, ready=True):
    return {"metadata": {"name": name, "labels": {"planetscale.com/component": comp}},
            "spec": {"containers": [{"name": comp, "image": image}]},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def test_rollout_pending_until_every_pod_runs_the_image_and_is_ready():
    ready_vc = {"metadata": {"generation": 1}, "spec": {"cells": [], "keyspaces": []},
                "status": {"observedGeneration": 1, "globalLockserver": {"etcd": {"available": "True"}},
                           "vitessDashboard": {"available": "True"}}}
    pods = [_pod("t1", "vttablet", "new"), _pod("g1", "vtgate", "old"), _pod("a1", "vtadmin", "adm")]
    assert "g1" in rollout_pending(ready_vc, pods, "vitess", "new")
    pods[1] = _pod("g1", "vtgate", "new", ready=False)
    assert "g1" in rollout_pending(ready_vc, pods, "vitess", "new")
    pods[1] = _pod("g1", "vtgate", "new")
    assert rollout_pending(ready_vc, pods, "vitess", "new") is None
    assert rollout_pending(None, pods, "vitess", "new") == "VitessCluster not created yet"


def test_operator_patch_and_deployment_pending():
    dep = {"metadata": {"generation": 2}, "spec": {"replicas": 1, "template": {"spec": {"containers": [
        {"name": "vitess-operator", "image": "new"}]}}},
           "status": {"observedGeneration": 2, "updatedReplicas": 1, "availableReplicas": 1, "replicas": 1}}
    assert operator_patch(dep, "new", None) == {"spec": {"template": {"spec": {"containers": [
        {"name": "vitess-operator", "image": "new"}]}}}}
    assert deployment_pending(dep, "new") is None
    assert deployment_pending({**dep, "status": {**dep["status"], "replicas": 2}}, "new").startswith("1/1 updated")
    assert deployment_pending(dep, "other") == "the Deployment does not name the new image"


def test_a_rollback_writes_an_unset_field_as_null_so_it_is_removed_again():
    assert cluster_patch("vitess", {"images.vtorc": "", "images.vtgate": "g"}, None) == {
        "spec": {"images": {"vtorc": None, "vtgate": "g"}}}


def test_each_pod_waits_for_its_own_fields_when_the_previous_images_differ():
    previous = {**{f"images.{k}": "old" for k in ("vtctld", "vtgate", "vtorc", "vtbackup")},
                "images.vttablet": "tablet", "images.mysqld.mysql80Compatible": "mysql"}
    assert pod_images("vitess", previous) == {"vtctld": {"old"}, "vtgate": {"old"}, "vtorc": {"old"},
                                              "vttablet": {"tablet", "mysql"}}
    assert pod_images("vitess", "x")["vttablet"] == {"x"}
    ready_vc = {"metadata": {"generation": 1}, "spec": {"cells": [], "keyspaces": []},
                "status": {"observedGeneration": 1, "globalLockserver": {"etcd": {"available": "True"}},
                           "vitessDashboard": {"available": "True"}}}
    tablet = _pod("t1", "vttablet", "tablet")
    assert "t1" in rollout_pending(ready_vc, [tablet, _pod("g1", "vtgate", "old")], "vitess", previous)
    tablet["spec"]["containers"].append({"name": "mysqld", "image": "mysql"})
    assert rollout_pending(ready_vc, [tablet, _pod("g1", "vtgate", "old")], "vitess", previous) is None


def test_plan_change_from_what_runs():
    change = plan_change(VC, None, "vitess", "x@" + D, 5.0)
    assert change.previous == cluster_images(VC, "vitess") and set(change.new.values()) == {"x@" + D}
    assert not change.unchanged and change.newer_push is None
    newer = {**VC, "metadata": {**VC["metadata"], "annotations": {"vtflow.io/vitess-pushed-at": "9"}}}
    assert plan_change(newer, None, "vitess", "x@" + D, 5.0).newer_push == 9.0
    dep = {"spec": {"template": {"spec": {"containers": [{"name": "vitess-operator", "image": "op@" + D}]}}}}
    op = plan_change(VC, dep, "operator", "op@" + D, None)
    assert op.previous == {"image": "op@" + D} and op.unchanged


def test_only_a_confirmed_rollback_says_the_previous_images_run_again():
    assert Rollback(written=True, waited=True, confirmed=True).summary == (
        "rolled back and the previous images are running again")
    timed_out = Rollback(written=True, waited=True, reason="VitessCluster a/b: not ready after 5 s: 1 pod(s)")
    assert timed_out.summary == ("rolled back: the previous images were written back but their rollout was not "
                                 "confirmed (VitessCluster a/b: not ready after 5 s: 1 pod(s))")
    assert timed_out.finding.level == "fail" and "watch the cluster's pods" in timed_out.finding.fix
    unwritten = Rollback(reason="VitessCluster a/b: forbidden")
    assert unwritten.summary == "not rolled back: the previous images could not be written back (VitessCluster a/b: forbidden)"
    for r in (timed_out, unwritten, Rollback(written=True, reason="images.vtorc had no image before")):
        assert "running again" not in r.summary and "running again" not in r.finding.line


def test_a_push_time_must_be_a_time_at_most_a_day_ahead():
    from tasks.redeploy import check_pushed_at

    now = 1_800_000_000.0
    for fine in (None, 0.0, 1000.0, now, now + 86_000):
        check_pushed_at(fine, now)
    for bad in (now + 90_000, -1.0, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="is not a push time"):
            check_pushed_at(bad, now)
