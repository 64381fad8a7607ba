"""The upgrade's planning and judgements (tasks/upgrade.py), pure: the path through the version
table, what a hop writes, when a rollout is done."""

import pytest

from tasks import upgrade as up
from tasks import versions
from vtflow.errors import ConfigError

SCHEDULED = "rollout.planetscale.com/scheduled"


def test_the_path_goes_one_vitess_major_at_a_time_to_the_newest_the_kubernetes_allows():
    path = up.plan_path("v1.32.10+k3s1", "v2.15.1", "v22.0.1")
    assert [(h.operator_from, h.operator, h.vitess_from, h.vitess) for h in path.hops] == [
        ("v2.15.1", "v2.16.0", "v22.0.1", "v23.0.0"), ("v2.16.0", "v2.17.0", "v23.0.0", "v24.0.0")]
    assert "the newest release the table allows on Kubernetes 1.32" in path.reason and path.warnings == ()
    # at 1.31 the newest is v2.16; the next one needs 1.32, and the warning names the K3s line
    at_131 = up.plan_path("v1.31.4+k3s1", "v2.15.1", "v22.0.1")
    assert [h.operator for h in at_131.hops] == ["v2.16.0"]
    assert any("needs Kubernetes 1.32+: upgrade the nodes to K3s v1.32 (a v1.32.x+k3sN release)" in w
               for w in at_131.warnings)


def test_at_the_target_there_is_nothing_to_do_and_a_pinned_patch_is_one_hop():
    assert up.plan_path("v1.33.5+k3s1", "v2.17.0", "v24.0.0").hops == ()
    patch = up.plan_path("v1.33.5+k3s1", "v2.17.0", "v24.0.0", vitess="v24.0.4").hops
    assert [(h.operator_from, h.operator, h.vitess) for h in patch] == [("v2.17.0", "v2.17.0", "v24.0.4")]
    assert not patch[0].changes_operator
    rc = up.plan_path("v1.33.5+k3s1", "v2.17.0-rc1", "v24.0.0").hops
    assert [(h.operator_from, h.operator, h.vitess) for h in rc] == [("v2.17.0-rc1", "v2.17.0", "v24.0.0")]


def test_what_runs_is_never_taken_back_to_an_older_patch():
    # a Vitess patch newer than the table's: the default target keeps it
    assert up.plan_path("v1.33.5+k3s1", "v2.17.0", "v24.0.4").hops == ()
    with pytest.raises(ConfigError, match="is older than the Vitess that runs \\(v24.0.4\\)"):
        up.plan_path("v1.33.5+k3s1", "v2.17.0", "v24.0.4", vitess="v24.0.0")
    # an operator patch newer than the row's stays; the hop changes only the images
    hops = up.plan_path("v1.32.10+k3s1", "v2.16.1", "v22.0.1").hops
    assert [(h.operator_from, h.operator, h.changes_operator) for h in hops] == [
        ("v2.16.1", "v2.16.1", False), ("v2.16.1", "v2.17.0", True)]
    assert up.version_key("v2.17.0-rc1") < up.version_key("v2.17.0") < up.version_key("v2.17.1")


def test_a_release_the_kubernetes_does_not_support_is_refused_with_the_k3s_version_needed():
    with pytest.raises(ConfigError) as e:
        up.plan_path("v1.31.4+k3s1", "v2.15.1", "v22.0.1", operator="v2.17.0")
    msg = str(e.value)
    assert "the hop to Vitess v24.0.0 needs vitess-operator v2.17.0, which supports Kubernetes 1.32-1.35" in msg
    assert "the cluster runs v1.31.4+k3s1" in msg and "upgrade the nodes to K3s v1.32 (a v1.32.x+k3sN release)" in msg
    # force goes on, with the refusal as a warning
    forced = up.plan_path("v1.31.4+k3s1", "v2.15.1", "v22.0.1", operator="v2.17.0", force=True)
    assert [h.operator for h in forced.hops] == ["v2.16.0", "v2.17.0"] and "Going on: force" in forced.warnings[0]
    # too new: no way back
    with pytest.raises(ConfigError, match="newer than that release was tested on"):
        up.plan_path("v1.35.4+k3s1", "v2.15.1", "v22.0.1", operator="v2.16.0")


def test_downgrades_gaps_and_mismatched_pins_are_refused():
    with pytest.raises(ConfigError, match="vtflow upgrades, it does not downgrade"):
        up.plan_path("v1.32.10+k3s1", "v2.16.0", "v23.0.0", operator="v2.15.1")
    # Vitess 18 and 19 have no rows (v2.11 and v2.12 are not checked): no path from 17
    with pytest.raises(ConfigError, match="passes Vitess 18, which has no row"):
        up.plan_path("v1.25.16+k3s4", "v2.10.4", "v17.0.7", operator="v2.13.1")
    with pytest.raises(ConfigError, match="is Vitess 23; vitess-operator v2.17.0 is built for Vitess 24"):
        up.plan_path("v1.32.10+k3s1", "v2.15.1", "v22.0.1", operator="v2.17.0", vitess="v23.0.0")
    assert [h.operator for h in up.plan_path("v1.32.10+k3s1", "v2.15.1", "v22.0.1", vitess="v23").hops] == ["v2.16.0"]


def test_what_runs_is_read_from_the_deployment_and_the_tablet_image():
    dep = {"kind": "Deployment",
           "spec": {"template": {"spec": {"containers": [{"image": "harbor.lan/v/planetscale/vitess-operator:v2.15.1"}]}}}}
    vc = {"spec": {"images": {"vttablet": "vitess/lite:v22.0.1"}}}
    assert up.installed(dep, vc, "VitessCluster example/example") == ("v2.15.1", "v22.0.1")
    assert up.vitess_of("harbor.lan/vitess/vitess/lite:v23.0.0-mysql80") == "v23.0.0"
    by_digest = {"spec": {"images": {"vttablet": "harbor.lan/vitess/lite@sha256:" + "a" * 64}}}
    with pytest.raises(ConfigError, match="spec.images.vttablet.*cannot tell which Vitess release"):
        up.installed(dep, by_digest, "VitessCluster example/example")


def test_a_hop_writes_the_release_images_in_every_field_the_cluster_sets():
    vc = {"spec": {"images": {k: "vitess/lite:v22.0.1" for k in ("vtctld", "vtgate", "vttablet", "vtorc", "vtbackup")}
                   | {"mysqld": {"mysql80Compatible": "vitess/lite:v22.0.1"}, "vtadmin": "vitess/vtadmin:v22.0.1",
                      "mysqldExporter": "prom/mysqld-exporter:v0.14.0"}}}
    hop = up.plan_path("v1.32.10+k3s1", "v2.15.1", "v22.0.1").hops[0]
    new = up.hop_images(vc, hop)
    assert new["images.vttablet"] == new["images.mysqld.mysql80Compatible"] == "vitess/lite:v23.0.0-mysql80"
    assert new["images.vtadmin"] == "vitess/vtadmin:v23.0.0" and new["images.mysqldExporter"] == "prom/mysqld-exporter:v0.14.0"
    assert set(new) == set(up.image_fields(vc))


def _pod(name, component, images, ready=True, annotations=None, waiting=None):
    return {"metadata": {"name": name, "labels": {"planetscale.com/component": component},
                         "annotations": annotations or {}},
            "spec": {"containers": [{"name": f"c{i}", "image": im} for i, im in enumerate(images)]},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                       "containerStatuses": [{"name": "c0", "state": {"waiting": {"reason": waiting}} if waiting else {}}]}}


def test_a_rollout_is_done_only_when_every_pod_runs_the_images_and_none_is_scheduled():
    vc = {"metadata": {"generation": 1}, "spec": {"cells": [], "keyspaces": []},
          "status": {"observedGeneration": 1, "globalLockserver": {"etcd": {"available": "True"}},
                     "vitessDashboard": {"available": "True"}}}
    images = {"images.vttablet": "new", "images.mysqld.mysql80Compatible": "new", "images.vtgate": "new"}
    done = [_pod("t1", "vttablet", ["new", "new"]), _pod("g1", "vtgate", ["new"])]
    assert up.rollout_pending(vc, done, images) is None
    assert "t2" in up.rollout_pending(vc, done + [_pod("t2", "vttablet", ["old", "old"])], images)
    assert "not yet on the new images and ready: t3" in up.rollout_pending(
        vc, done + [_pod("t3", "vttablet", ["new", "new"], ready=False)], images)
    assert SCHEDULED in up.rollout_pending(vc, done + [_pod("t4", "vttablet", ["new", "new"], annotations={SCHEDULED: "x"})],
                                           images)
    crash = _pod("t5", "vttablet", ["new", "new"], ready=False, waiting="CrashLoopBackOff")
    assert up.stuck_pods(done + [crash, _pod("t6", "vttablet", ["old"], ready=False, waiting="CrashLoopBackOff")],
                         images) == ["t5"]


def test_build_version_of_debug_vars():
    assert up.build_version('{"BuildVersion": "24.0.0", "x": 1}') == "24.0.0"
    assert up.build_version("wget: error") == "" == up.build_version("[]")
    assert up.same_release("24.0.0", "v24.0.0") and up.same_release("23.0.0", "v23.0.0-mysql80")
    assert not up.same_release("23.0.0", "v24.0.0") and not up.same_release("", "v24.0.0")
    assert versions.release("v2.16.0").images("v23.0.0").vitess == "vitess/lite:v23.0.0-mysql80"


def test_a_cluster_whose_rollouts_wait_for_an_outside_release_is_refused():
    up.held_by_strategy({"spec": {"updateStrategy": {"type": "Immediate"}}}, "VitessCluster example/example")
    for spec in ({"updateStrategy": {"type": "External"}}, {}):
        with pytest.raises(ConfigError, match="updateStrategy.type: is External.*set spec.updateStrategy.type: Immediate"):
            up.held_by_strategy({"spec": spec}, "VitessCluster example/example")

