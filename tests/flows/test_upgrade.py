"""The upgrade flow against a cluster deployed by the deploy flow at Kubernetes 1.32 with
vitess-operator v2.15.1 and Vitess 22 (the table's row), on the Kubernetes API double: upstream's
operator-latest.yaml of each release, the double's operator running as the release its
Deployment's image names, tablets rolled one at a time, vtgate proxying to a MariaDB of its own."""

import asyncio
import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from prefect.artifacts import Artifact

from flows.upgrade import upgrade
from helpers import UPSTREAM, deployed_cluster, free_node_ports, sql
from tasks.cluster import ClusterSpec
from tasks.upgrade import VARS_COMMAND, build_version
from vtflow.names import ROLLOUT_SCHEDULED

NS = "example"
REPO = Path(__file__).resolve().parents[2]
K8S_132 = "v1.32.10+k3s1"
MANIFESTS = {v: str(UPSTREAM / f"vitess-operator-{v}" / "examples" / "operator-latest.yaml")
             for v in ("v2.15.1", "v2.16.0", "v2.17.0")}
V23 = "vitess/lite:v23.0.0-mysql80"


def data(d):
    """Row counts and MariaDB's checksums of the commerce tables: what must survive every hop."""
    return sql(d, "SELECT COUNT(*) FROM commerce.customer", "SELECT COUNT(*) FROM commerce.product",
               "CHECKSUM TABLE commerce.customer, commerce.product")


@contextlib.contextmanager
def v22_cluster(folder):
    spec = ClusterSpec(vtadmin=False, vtgate_node_port=free_node_ports(1)[0])   # not 30306: other sessions' doubles
    with deployed_cluster(folder, spec=spec, git_version=K8S_132, operator_version="v2.15.1",
                          operator_manifest=MANIFESTS["v2.15.1"]) as d:
        sql(d, "CREATE DATABASE IF NOT EXISTS commerce",
            "CREATE TABLE commerce.product (sku VARCHAR(32) PRIMARY KEY, price INT)",
            "CREATE TABLE commerce.customer (customer_id INT PRIMARY KEY, email VARCHAR(64))",
            "INSERT INTO commerce.product VALUES ('SKU-1001', 100), ('SKU-1002', 30)",
            "INSERT INTO commerce.customer VALUES (1, 'alice@domain'), (2, 'bob@domain')")
        yield d


@pytest.fixture(scope="module")
def cluster(prefect_server, tmp_path_factory):
    with v22_cluster(tmp_path_factory.mktemp("upgrade")) as d:
        yield d


def run(d, **kw):
    state = asyncio.run(upgrade(target_block=f"tgt-{d.tag}", mysql_block=f"my-{d.tag}",
                                operator_manifests={v: MANIFESTS[v] for v in ("v2.16.0", "v2.17.0")},
                                rollout_timeout_s=60, return_state=True, **kw))
    return state, state.result(raise_on_failure=False)


def operator_image(d):
    return d.k.get("apps/v1", "Deployment", "vitess-operator", NS)["spec"]["template"]["spec"]["containers"][0]["image"]


def pods(d, component):
    return [p for p in d.k.list("v1", "Pod", NS, label_selector=f"planetscale.com/component={component}")
            if not p["metadata"].get("deletionTimestamp")]


def images_of(d, component):
    return {c["image"] for p in pods(d, component) for c in p["spec"]["containers"] if c["name"] in (component, "mysqld")}


def vtgate_version(d):
    return {build_version(d.k.exec(NS, p["metadata"]["name"], "vtgate", VARS_COMMAND)[1]) for p in pods(d, "vtgate")}


def spec_now(d):
    """What a change would change: the operator's image, the VitessCluster's spec and generation (the
    operator's status writes move its resourceVersion at any time)."""
    vc = d.k.get("planetscale.com/v2", "VitessCluster", "example", NS)
    return operator_image(d), vc["spec"], vc["metadata"]["generation"]


def test_the_dry_run_shows_both_hops_and_every_change_and_changes_nothing(cluster):
    before = spec_now(cluster)
    # through the CLI, as a user runs it
    r = subprocess.run([sys.executable, "-m", "vtflow.cli", "upgrade", "--target", f"tgt-{cluster.tag}", "--mysql",
                        f"my-{cluster.tag}", "--dry-run", *(f"--manifest={v}={MANIFESTS[v]}" for v in ("v2.16.0", "v2.17.0"))],
                       cwd=REPO, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "v2.15.1 -> v2.16.0, Vitess v22.0.1 -> v23.0.0: planned"
    assert f"  would change: VitessCluster example/example spec.images.vttablet: vitess/lite:v22.0.1 -> {V23}" in lines
    assert lines[-1] == ("2 hop(s) to vitess-operator v2.17.0, the newest release the table allows on Kubernetes 1.32; "
                         "nothing changed (dry run)")
    assert spec_now(cluster) == before
    state, result = run(cluster, dry_run=True)
    assert state.is_completed(), state.message
    assert result.action == "planned" and [h.hop for h in result.hops] == [
        "v2.15.1 -> v2.16.0, Vitess v22.0.1 -> v23.0.0", "v2.16.0 -> v2.17.0, Vitess v23.0.0 -> v24.0.0"]
    first = result.hops[0].changes
    assert "Deployment example/vitess-operator: changed (compared with what runs now)" in first
    assert f"VitessCluster example/example spec.images.vttablet: vitess/lite:v22.0.1 -> {V23}" in first
    assert any(c.startswith("CustomResourceDefinition vitessclusters.planetscale.com: changed") for c in first)
    # the second hop's images change from what the first leaves
    assert ("VitessCluster example/example spec.images.vttablet: vitess/lite:v23.0.0-mysql80 -> "
            "vitess/lite:v24.0.0-mysql80") in result.hops[1].changes
    assert spec_now(cluster) == before
    text = Artifact.get("upgrade-example").data
    assert text.startswith("# Upgrade plan (dry run)") and "node-1 v1.32.10+k3s1" in text


def test_a_downgrade_is_refused_before_anything_changes(cluster):
    before = spec_now(cluster)
    state, _ = run(cluster, operator_version="v2.14.0")
    assert state.is_failed() and "vtflow upgrades, it does not downgrade" in state.message
    assert Artifact.get("upgrade-example").data.startswith("# Upgrade refused\n\n- upgrade to vitess-operator v2.14.0")
    assert spec_now(cluster) == before


def test_a_replica_far_behind_refuses_the_hop_in_its_preflight_and_nothing_changes(cluster):
    replica = next(p for p in pods(cluster, "vttablet")
                   if p["metadata"]["labels"].get("planetscale.com/tablet-type") == "replica")
    alias = f"zone1-{int(replica['metadata']['labels']['planetscale.com/tablet-uid']):010d}"
    cluster.vitess.set_replication_lag(alias, 120)
    try:
        before = spec_now(cluster)
        state, result = run(cluster)
    finally:
        cluster.vitess.set_replication_lag(alias, 0)
    assert state.is_failed()
    assert f"upgrade preflight of VitessCluster example/example: 1 check(s) failed: replication commerce/- {alias}" \
        in state.message
    assert "the hop changed nothing: vitess-operator v2.15.1 with Vitess v22.0.1 runs" in state.message
    assert spec_now(cluster) == before


def test_a_cluster_with_the_external_update_strategy_is_refused_before_anything_changes(cluster):
    def patch(kind):
        cluster.k.patch("planetscale.com/v2", "VitessCluster", "example", NS,
                        {"spec": {"updateStrategy": {"type": kind}}}, manager="test")
    patch("External")
    try:
        before = spec_now(cluster)
        state, _ = run(cluster)
        assert state.is_failed() and "spec.updateStrategy.type: is External" in state.message
        assert spec_now(cluster) == before
    finally:
        patch("Immediate")


def test_a_tablet_that_never_gets_ready_on_the_new_images_rolls_the_hop_back_and_fails_naming_both(cluster):
    before_data = data(cluster)
    cluster.rollout.never_ready(V23)
    try:
        state, result = run(cluster)
    finally:
        cluster.rollout.clear()
    assert state.is_failed()
    msg = state.message
    assert "upgrade hop v2.15.1 -> v2.16.0, Vitess v22.0.1 -> v23.0.0: failed (" in msg
    assert "crash-loop on the new images" in msg
    assert "rolled back: vitess-operator v2.15.1 with Vitess v22.0.1 runs again" in msg
    assert operator_image(cluster) == "planetscale/vitess-operator:v2.15.1"
    assert images_of(cluster, "vttablet") == {"vitess/lite:v22.0.1"} == images_of(cluster, "vtgate")
    assert not any(ROLLOUT_SCHEDULED in (p["metadata"].get("annotations") or {}) for p in pods(cluster, "vttablet"))
    assert vtgate_version(cluster) == {"22.0.1"}
    assert data(cluster) == before_data
    assert "# Upgrade FAILED (rolled back)" in Artifact.get("upgrade-example").data


def test_the_upgrade_goes_hop_by_hop_to_the_newest_and_a_rerun_changes_nothing(cluster):
    before_data = data(cluster)
    backups = len(cluster.vitess.list_backups(NS, "example", "commerce", "-"))
    state, result = run(cluster, backup_max_age_h=1e-9)   # every backup is too old: each hop takes one
    assert state.is_completed(), state.message
    assert result.action == "upgraded" and [h.result for h in result.hops] == ["done", "done"]
    assert result.operator == ("v2.15.1", "v2.17.0") and result.vitess == ("v22.0.1", "v24.0.0")
    assert len(cluster.vitess.list_backups(NS, "example", "commerce", "-")) == backups + 2
    for hop in result.hops:
        names = {c.name: c for c in hop.checks}
        assert names["backups"].problem.startswith("took a backup of every shard before the hop")
        assert names["rollout"].level == names["vtgate version"].level == "ok"
        assert names["tablets commerce/-"].level == "ok"   # the deploy's verification ran after the rollout
    assert operator_image(cluster) == "planetscale/vitess-operator:v2.17.0"
    assert images_of(cluster, "vttablet") == {"vitess/lite:v24.0.0-mysql80"} == images_of(cluster, "vtgate")
    assert not any(ROLLOUT_SCHEDULED in (p["metadata"].get("annotations") or {}) for p in pods(cluster, "vttablet"))
    assert vtgate_version(cluster) == {"24.0.0"}
    assert data(cluster) == before_data
    text = Artifact.get("upgrade-example").data
    assert "| v2.15.1 -> v2.16.0 | v2.15.1 -> v2.16.0 | v22.0.1 -> v23.0.0 | done |" in text

    after = spec_now(cluster)
    state, result = run(cluster)
    assert state.is_completed(), state.message
    assert result.action == "unchanged" and result.hops == []
    assert "nothing to do: vitess-operator v2.17.0 with Vitess v24.0.0 is the target" in result.message
    assert spec_now(cluster) == after


def test_after_the_upgrade_the_deploy_keeps_it_or_names_the_conflict(cluster):
    """A deploy pinning the old release would undo the upgrade: refused, naming vtflow-upgrade; one
    that leaves the versions empty picks the same row and changes no image."""
    if operator_image(cluster) != "planetscale/vitess-operator:v2.17.0":
        pytest.skip("needs the upgraded cluster of the test before")
    from flows.deploy import DeployParameters, deploy

    vc = cluster.k.get("planetscale.com/v2", "VitessCluster", "example", NS)
    spec = ClusterSpec(vtadmin=False, vtgate_node_port=next(
        p["nodePort"] for p in cluster.k.get("v1", "Service", "example-vtgate-nodeport", NS)["spec"]["ports"]))

    def run_deploy(**kw):
        return asyncio.run(deploy(**DeployParameters(target_block=f"tgt-{cluster.tag}", mysql_block=f"my-{cluster.tag}",
                                                     until="cluster", ready_timeout_s=60, cluster=spec,
                                                     **kw).flow_kwargs(), return_state=True))
    old = run_deploy(operator_version="v2.15.1", operator_manifest=MANIFESTS["v2.15.1"])
    assert old.is_failed() and "field manager 'vtflow-upgrade' owns" in old.message and "spec.images" in old.message
    assert spec_now(cluster)[1]["images"]["vttablet"] == "vitess/lite:v24.0.0-mysql80"
    same = run_deploy(operator_manifest=MANIFESTS["v2.17.0"])
    assert same.is_completed(), same.message
    assert cluster.k.get("planetscale.com/v2", "VitessCluster", "example", NS)["spec"]["images"] == vc["spec"]["images"]


def test_when_the_second_hop_fails_the_first_stays_and_the_run_says_why(prefect_server, tmp_path):
    with v22_cluster(tmp_path) as d:
        d.rollout.never_ready("vitess/lite:v24.0.0-mysql80")
        state, result = run(d)
        assert state.is_failed()
        msg = state.message
        assert "upgrade hop v2.16.0 -> v2.17.0, Vitess v23.0.0 -> v24.0.0: failed (" in msg
        assert "rolled back: vitess-operator v2.16.0 with Vitess v23.0.0 runs again" in msg
        assert "the hop(s) before it finished and stay (a Vitess major that finished is not rolled back" in msg
        assert "restore the backup the upgrade took before that hop" in msg
        assert operator_image(d) == "planetscale/vitess-operator:v2.16.0"
        assert images_of(d, "vttablet") == {V23} == images_of(d, "vtgate") and vtgate_version(d) == {"23.0.0"}
        text = Artifact.get("upgrade-example").data
        assert "| v2.15.1 -> v2.16.0 | v2.15.1 -> v2.16.0 | v22.0.1 -> v23.0.0 | done |" in text
        assert "| v2.16.0 -> v2.17.0 | v2.16.0 -> v2.17.0 | v23.0.0 -> v24.0.0 | rolled back |" in text

