"""The redeploy flow against a deployed cluster on the Kubernetes API double (vtgate proxying to a
MariaDB of this module's own), on this session's Prefect server."""

import asyncio
import hashlib
import threading
import time

import pytest
from prefect.artifacts import Artifact

from flows.redeploy import redeploy
from helpers import IMAGES, deployed_cluster, wait_until
from tasks.redeploy import cluster_images, rollout_pending
from vtflow.names import pushed_at_annotation

NS = "example"
MIRROR = "harbor.lan/vitess"


def digest(seed: str) -> str:
    return "sha256:" + hashlib.sha256(seed.encode()).hexdigest()


@pytest.fixture(scope="module")
def cluster(prefect_server, tmp_path_factory):
    with deployed_cluster(tmp_path_factory.mktemp("redeploy"), registry_mirror=MIRROR) as d:
        yield d


def run(d, **kw):
    kw.setdefault("target_block", f"tgt-{d.tag}")
    kw.setdefault("mysql_block", f"my-{d.tag}")
    state = asyncio.run(redeploy(return_state=True, **kw))
    return state, state.result(raise_on_failure=False)


def vc(d):
    return d.k.get("planetscale.com/v2", "VitessCluster", "example", NS)


def pod_images(d, component):
    return {c["image"] for p in d.k.list("v1", "Pod", NS, label_selector=f"planetscale.com/component={component}")
            for c in p["spec"]["containers"] if c["name"] == component}


def backups(d):
    return len(d.vitess.list_backups(NS, "example", "commerce", "-"))


def test_a_push_rolls_out_by_digest_after_a_backup_and_is_verified(cluster):
    image = f"{MIRROR}/lite@{digest('v24.0.1')}"
    before = backups(cluster)
    state, result = run(cluster, component="vitess", repository=f"{MIRROR}/lite", digest=digest("v24.0.1"),
                        tag="v24.0.1-mysql80", pushed_at=1000.0)
    assert state.is_completed(), state.message
    assert result.action == "changed" and result.previous["images.vttablet"] == IMAGES["vitess_image"]
    assert set(cluster_images(vc(cluster), "vitess").values()) == {image}
    assert pod_images(cluster, "vttablet") == {image} and pod_images(cluster, "vtgate") == {image}
    assert vc(cluster)["metadata"]["annotations"][pushed_at_annotation("vitess")] == "1000.0"
    assert backups(cluster) == before + 1
    assert "# Redeploy of vitess: changed" in Artifact.get("redeploy-example").data

    state, again = run(cluster, component="vitess", repository=f"{MIRROR}/lite", digest=digest("v24.0.1"),
                       pushed_at=1000.0)
    assert state.is_completed() and again.action == "unchanged" and backups(cluster) == before + 1


def test_an_older_push_never_replaces_a_newer_one(cluster):
    state, _ = run(cluster, component="vitess", repository=f"{MIRROR}/lite", digest=digest("new"), pushed_at=2000.0)
    assert state.is_completed(), state.message
    state, result = run(cluster, component="vitess", repository=f"{MIRROR}/lite", digest=digest("old"), pushed_at=1500.0)
    assert state.is_completed() and result.action == "skipped"
    assert "a newer push (at 2000) is already applied" in result.message
    assert set(cluster_images(vc(cluster), "vitess").values()) == {f"{MIRROR}/lite@{digest('new')}"}


@pytest.mark.parametrize("repository,dig,message", [
    ("docker.io/vitess/lite", digest("x"), "is not under the target's registry mirror harbor.lan/vitess"),
    (f"{MIRROR}/lite", "sha256:abc", "is not sha256:<64 hex digits>"),
    (f"{MIRROR}/Lite", digest("x"), "is not an image repository"),
])
def test_image_references_outside_the_mirror_or_malformed_are_refused(cluster, repository, dig, message):
    before = vc(cluster)["metadata"]["resourceVersion"]
    state, _ = run(cluster, component="vitess", repository=repository, digest=dig)
    assert state.is_failed() and message in state.message
    assert vc(cluster)["metadata"]["resourceVersion"] == before


@pytest.mark.parametrize("pushed_at", [time.time() + 3 * 86400, -1.0])
def test_a_push_time_far_in_the_future_or_not_a_time_is_refused_before_anything_changes(cluster, pushed_at):
    # one far-future time would make every later push of the component "older" and skip it
    before = vc(cluster)["metadata"]["resourceVersion"]
    state, _ = run(cluster, component="vitess", repository=f"{MIRROR}/lite", digest=digest("future"),
                   pushed_at=pushed_at)
    assert state.is_failed() and "is not a push time" in state.message
    assert vc(cluster)["metadata"]["resourceVersion"] == before


def test_a_failed_verification_rolls_back_and_reports_both_states(cluster, tmp_path):
    current = cluster_images(vc(cluster), "vitess")
    expected = tmp_path / "expected.tsv"
    expected.write_text("1\n")
    state, _ = run(cluster, component="vitess", repository=f"{MIRROR}/lite", digest=digest("broken"),
                   pushed_at=time.time(), backup_first=False,
                   verify={"script": "select 2 as n;", "expected_output": str(expected)})
    assert state.is_failed()
    assert f"redeploy of vitess to {MIRROR}/lite@{digest('broken')}: failed" in state.message
    assert "output differs" in state.message and "rolled back and the previous images are running again" in state.message
    assert cluster_images(vc(cluster), "vitess") == current
    assert pod_images(cluster, "vttablet") == {current["images.vttablet"]}
    report = Artifact.get("redeploy-example").data
    assert "# Redeploy of vitess: rolled back" in report and digest("broken") in report


def rolled_out(d, images):
    return rollout_pending(vc(d), d.k.list("v1", "Pod", NS, label_selector="planetscale.com/cluster=example"),
                           "vitess", images) is None


def cordon(d, on: bool):
    for n in d.k.list("v1", "Node"):
        d.k.patch("v1", "Node", n["metadata"]["name"], None, {"spec": {"unschedulable": True if on else None}})


def test_a_rollback_whose_rollout_times_out_does_not_claim_the_previous_images_run(cluster, tmp_path):
    current = cluster_images(vc(cluster), "vitess")
    broken = f"{MIRROR}/lite@{digest('no-way-back')}"
    expected = tmp_path / "expected.tsv"
    expected.write_text("1\n")

    def no_pod_starts_once_rolled_out():
        # the flow's own wait ends at this same condition; the verify script then sleeps 3 s, so the
        # nodes are cordoned before the rollback replaces its first pod, which then can never start
        wait_until(lambda: rolled_out(cluster, broken), 120, f"every pod on {broken}")
        cordon(cluster, True)

    cordoner = threading.Thread(target=no_pod_starts_once_rolled_out, daemon=True)
    cordoner.start()
    try:
        state, result = run(cluster, component="vitess", repository=f"{MIRROR}/lite", digest=digest("no-way-back"),
                            pushed_at=time.time(), backup_first=False, rollout_timeout_s=20,
                            verify={"script": "select sleep(3) as s;\nselect 2 as n;", "expected_output": str(expected)})
        cordoner.join(timeout=5)
        assert not cordoner.is_alive()
        # read while still cordoned: once the nodes are back the rollback's pods start at once
        tablet_images = pod_images(cluster, "vttablet")
    finally:
        cordon(cluster, False)
    assert state.is_failed()
    assert f"redeploy of vitess to {broken}: failed" in state.message and "output differs" in state.message
    assert "running again" not in state.message, state.message
    assert ("rolled back: the previous images were written back but their rollout was not confirmed "
            "(VitessCluster example/example: not ready after 20 s: ") in state.message
    assert "Fix: watch the cluster's pods until they run the images of the artifact's 'before' column" in state.message
    assert cluster_images(vc(cluster), "vitess") == current          # written back ...
    assert broken in tablet_images                                    # ... but not running
    report = Artifact.get("redeploy-example").data
    assert "# Redeploy of vitess: rolled back" in report and "rollback: fail: the previous images were written back" in report
    assert "running again" not in report
    # once pods can start again, the operator finishes the rollback on its own
    wait_until(lambda: rolled_out(cluster, current), 120, "the previous images running again")


def test_a_rollback_to_mixed_images_waits_for_each_pod_before_saying_they_run_again(cluster, tmp_path):
    # vtctld on an image of its own (a partial upgrade by hand): the rollback has no one image to wait for
    own = f"{MIRROR}/lite@{digest('vtctld-only')}"
    cluster.k.patch("planetscale.com/v2", "VitessCluster", "example", NS, {"spec": {"images": {"vtctld": own}}})
    current = cluster_images(vc(cluster), "vitess")
    wait_until(lambda: rolled_out(cluster, current), 120, "vtctld on its own image")
    expected = tmp_path / "expected.tsv"
    expected.write_text("1\n")
    state, _ = run(cluster, component="vitess", repository=f"{MIRROR}/lite", digest=digest("mixed"),
                   pushed_at=time.time(), backup_first=False,
                   verify={"script": "select 2 as n;", "expected_output": str(expected)})
    assert state.is_failed() and "rolled back and the previous images are running again" in state.message
    # said only once every pod runs its own previous image again
    assert pod_images(cluster, "vtctld") == {own}
    assert pod_images(cluster, "vttablet") == pod_images(cluster, "vtgate") == {current["images.vttablet"]}


def test_vtadmin_and_operator_components(cluster):
    state, result = run(cluster, component="vtadmin", repository=f"{MIRROR}/vtadmin", digest=digest("adm"),
                        backup_first=False)
    assert state.is_completed(), state.message
    assert vc(cluster)["spec"]["images"]["vtadmin"] == f"{MIRROR}/vtadmin@{digest('adm')}"
    before = cluster.k.get("apps/v1", "Deployment", "vitess-operator", NS)["spec"]["template"]["spec"]["containers"]
    state, result = run(cluster, component="operator", repository=f"{MIRROR}/vitess-operator", digest=digest("op"),
                        backup_first=False)
    assert state.is_completed(), state.message
    dep = cluster.k.get("apps/v1", "Deployment", "vitess-operator", NS)
    after = dep["spec"]["template"]["spec"]["containers"]
    assert after[0]["image"] == f"{MIRROR}/vitess-operator@{digest('op')}"
    # only the image changed: a merge patch of the containers list would have dropped the
    # operator's command, env (WATCH_NAMESPACE) and resources
    assert before[0]["env"] and before[0]["command"]
    assert [{**c, "image": None} for c in after] == [{**c, "image": None} for c in before]
