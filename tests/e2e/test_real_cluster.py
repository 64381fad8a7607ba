"""The sandbox's scenario, unchanged, against a cluster you name: a real K3s/Kubernetes cluster, or
anything that answers as one (the Kubernetes API double run as its own process: README,
Real-cluster tests; the normal suite checks only that it is skipped when unset, test_tier.py).

Run it: ``VTFLOW_E2E_KUBECONFIG=~/.kube/config .venv/bin/python -m pytest tests/e2e -m e2e``.
Unset, every test here is skipped with one reason. It goes the user's way: blocks made with
``vtflow block create``, the ``vtflow`` command for deploy, re-run, health check and backup, and
the redeploy flow called as its deployment calls it (there is no ``vtflow redeploy``), all on the
test session's Prefect server. The steps run in order; after a failed one the rest are skipped.

Inputs (environment):

- ``VTFLOW_E2E_KUBECONFIG`` (required): the cluster. Its current context is used, with rights to
  create a namespace and the operator's CRDs, ClusterRoles and PriorityClasses.
- ``VTFLOW_E2E_NAMESPACE``: default ``vtflow-e2e-<hex>``, new on every run. The run deletes it at
  the end, so it refuses to start when the namespace exists.
- ``VTFLOW_E2E_NODE_ADDRESS``: where NodePorts are reached (vtgate 30306, vtadmin 30000/30001;
  they must be free in the cluster); default the first Node's InternalIP.
- ``VTFLOW_E2E_MYSQL``: vtgate's host:port when the NodePort is not reachable from here (a
  ``kubectl port-forward``); default: discovered as the product does (the NodePort).
- ``VTFLOW_E2E_MYSQL_USER`` / ``VTFLOW_E2E_MYSQL_PASSWORD``: the vtgate user the deploy creates
  (default ``user`` and a random password).
- ``VTFLOW_E2E_REGISTRY_MIRROR`` and ``VTFLOW_E2E_IMAGE``: the target's registry mirror (it must
  hold ``planetscale/vitess-operator:<release>`` of the release vtflow's version table gives the
  cluster's Kubernetes; unset, upstream's images are pulled) and a
  ``vitess/lite`` image under it by digest, ``REPOSITORY@sha256:<64 hex>``. Without both the two
  redeploy steps are skipped.
- ``VTFLOW_E2E_NODES``: ``INVENTORY:KEY:KNOWN_HOSTS`` (files, as ``vtflow block create nodes``
  takes them): the deploy runs node prep on those nodes; unset, it is skipped (``--no-node-prep``).
- ``VTFLOW_E2E_SIZE``: the cluster spec's ``size``, ``fit`` (default: sized to the nodes) or
  ``upstream`` (upstream 101's resources). The operator manifest is the upstream file of the
  release the version table gives the cluster's Kubernetes.
- ``VTFLOW_E2E_KEEP=1``: keep the namespace, the operator's new cluster-scoped objects and the
  blocks at the end (they are listed).

It must not assume the API double: everything it checks is what the product prints or what any
API server returns.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from e2e.cli import ok, vtflow
from helpers import EXAMPLES

# a real cluster pulls images and starts pods: a step may take many minutes, not the suite's 300 s
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(3600)]

CLUSTER = "example"  # the target block's default cluster_name


def deploy_args(e2e, cluster) -> tuple[str, ...]:
    nodes = ("--nodes", e2e.block) if e2e.nodes else ("--no-node-prep",)
    return ("deploy", "--target", e2e.block, *nodes, "--operator-manifest", cluster.operator_manifest,
            "--size", e2e.size, "--schema",
            f"commerce:{EXAMPLES / 'create_commerce_schema.sql'}:{EXAMPLES / 'vschema_commerce_initial.json'}",
            "--data", f"commerce:{EXAMPLES / 'insert_commerce_data.sql'}",
            "--verify-script", str(EXAMPLES / "select_commerce_data.sql"))


def test_the_plan_changes_nothing(e2e, cluster):
    plan = ok(vtflow(*deploy_args(e2e, cluster), "--dry-run"))
    assert f"VitessCluster {e2e.namespace}/{CLUSTER}: created (would be)" in plan
    assert f"Deployment {e2e.namespace}/vitess-operator: created (would be)" in plan
    assert cluster.k.get("v1", "Namespace", e2e.namespace) is None


def test_deploy_with_the_upstream_commerce_files(e2e, cluster):
    out = ok(vtflow(*deploy_args(e2e, cluster)))
    assert f"VitessCluster {e2e.namespace}/{CLUSTER}: created" in out
    assert "keyspace commerce: VSchema: changed" in out
    assert "insert_commerce_data.sql (12 rows): created" in out
    assert "tablets commerce/-: ok: 1 PRIMARY, 2 REPLICA serving" in out
    assert "rows commerce.customer: ok: 5 rows, as loaded" in out
    assert "vtadmin: ok" in out
    if e2e.nodes:
        assert "node-prep:" in out and "node-prep: skipped" not in out


def test_a_rerun_changes_nothing(e2e, cluster):
    out = ok(vtflow(*deploy_args(e2e, cluster)))
    assert "nothing changed" in out
    assert "cluster: 0 of 5 objects changed" in out
    assert "schema: 0 of 4 objects changed" in out
    assert "data: 0 of 1 objects changed" in out


def test_the_health_check_finds_it_healthy(e2e, cluster):
    nodes = ("--nodes", e2e.block) if e2e.nodes else ()
    out = ok(vtflow("health-check", "--target", e2e.block, *nodes))
    assert "tablets commerce/-: ok: 1 PRIMARY, 2 REPLICA serving" in out
    assert "vtgate: ok" in out


def test_a_backup_is_taken_and_listed(e2e, cluster):
    from vtflow.vtctld import Vtctld

    out = ok(vtflow("backup", "--target", e2e.block))
    assert out.startswith("commerce/-: backup "), out
    name = out.split()[2]
    listed = Vtctld(cluster.k, e2e.namespace, CLUSTER).get_backups("commerce", "-")
    assert any(name in str(b) for b in listed), f"backup {name} is not in GetBackups commerce/-: {listed}"


def images(cluster, e2e) -> dict[str, str]:
    from tasks.redeploy import cluster_images

    return cluster_images(cluster.k.get("planetscale.com/v2", "VitessCluster", CLUSTER, e2e.namespace), "vitess")


def redeploy(e2e, **kw):
    if not (e2e.image and e2e.registry_mirror):
        pytest.skip("VTFLOW_E2E_IMAGE and VTFLOW_E2E_REGISTRY_MIRROR are not both set: no image to redeploy to")
    from flows.redeploy import redeploy as flow

    repository, _, digest = e2e.image.partition("@")
    state = asyncio.run(flow(component="vitess", repository=repository, digest=digest, pushed_at=time.time(),
                             target_block=e2e.block, mysql_block=e2e.block, return_state=True, **kw))
    return state, state.result(raise_on_failure=False)


def test_a_redeploy_that_fails_its_verification_is_rolled_back(e2e, cluster, tmp_path):
    # first, while the cluster still runs the 101 images: the rollback then goes back to upstream's
    # own images, which any cluster can pull, and the next step has a change to make
    before = images(cluster, e2e)
    expected = tmp_path / "expected.tsv"
    expected.write_text("1\n")
    state, _ = redeploy(e2e, backup_first=False, verify={"script": "select 2 as n;", "expected_output": str(expected)})
    assert state.is_failed(), state.message
    assert f"redeploy of vitess to {e2e.image}: failed" in state.message
    assert "rolled back and the previous images are running again" in state.message, state.message
    assert images(cluster, e2e) == before


def test_a_redeploy_by_digest_rolls_out_and_is_verified(e2e, cluster):
    state, result = redeploy(e2e)
    assert state.is_completed(), state.message
    assert result.action == "changed", result
    assert set(images(cluster, e2e).values()) == {e2e.image}
    state, again = redeploy(e2e)
    assert state.is_completed() and again.action == "unchanged", state.message
