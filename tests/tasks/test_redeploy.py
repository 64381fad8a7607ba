"""tasks/redeploy.py: image references, patches and rollout judgements are pure."""

import pytest

from tasks.cluster import ClusterSpec, render
from tasks.redeploy import (cluster_images, cluster_patch, deployment_pending, image_ref, newer_applied,
                            operator_patch, rollout_pending)
from vtflow.errors import ConfigError

D = "sha256:" + "a" * 64
VC = next(o for o in render(ClusterSpec(), "example", "example", "10.0.0.11", "u", "p") if o["kind"] == "VitessCluster")


def test_image_ref_needs_the_mirror():
    assert image_ref("harbor.lan:8443/vitess/lite", D, "harbor.lan:8443/vitess/") == f"harbor.lan:8443/vitess/lite@{D}"
    with pytest.raises(ConfigError, match="has no registry_mirror"):
        image_ref("harbor.lan/vitess/lite", D, None)
    with pytest.raises(ConfigError, match="not under the target's registry mirror"):
        image_ref("harbor.lan/vitessx/lite", D, "harbor.lan/vitess")


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
