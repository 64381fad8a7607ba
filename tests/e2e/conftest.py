"""The real-cluster tier's inputs and its one cluster: read from the environment, made, cleaned up.

Every input is read here once (`E2E.from_env`), so the scenario in test_real_cluster.py has no
knob of its own. With VTFLOW_E2E_KUBECONFIG unset, every test marked ``e2e`` is skipped with one
reason; nothing here then touches a cluster or starts anything. The cleanup deletes only what
the run made (its namespace, the operator's cluster-scoped objects that did not exist before,
its blocks); it never deletes an object that was there before it started.
"""

from __future__ import annotations

import os
import secrets
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from e2e.cli import ok, vtflow

SKIP_REASON = ("VTFLOW_E2E_KUBECONFIG is not set: the real-cluster tier runs against a cluster you name "
               "(README: Real-cluster tests)")


@dataclass(frozen=True)
class E2E:
    """The inputs of one run (module docstring of test_real_cluster.py: what each means)."""

    kubeconfig: Path
    namespace: str
    node_address: str | None
    vtgate_address: str | None
    mysql_user: str
    mysql_password: str
    registry_mirror: str | None
    image: str | None
    nodes: str | None
    size: str
    keep: bool
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    @classmethod
    def from_env(cls) -> E2E | None:
        kubeconfig = os.environ.get("VTFLOW_E2E_KUBECONFIG")
        if not kubeconfig:
            return None
        return cls(kubeconfig=Path(kubeconfig).expanduser(),
                   namespace=os.environ.get("VTFLOW_E2E_NAMESPACE") or f"vtflow-e2e-{secrets.token_hex(3)}",
                   node_address=os.environ.get("VTFLOW_E2E_NODE_ADDRESS") or None,
                   vtgate_address=os.environ.get("VTFLOW_E2E_MYSQL") or None,
                   mysql_user=os.environ.get("VTFLOW_E2E_MYSQL_USER") or "user",
                   # the deploy writes this user into the cluster's users.json, so any password does
                   mysql_password=os.environ.get("VTFLOW_E2E_MYSQL_PASSWORD") or secrets.token_hex(12),
                   registry_mirror=os.environ.get("VTFLOW_E2E_REGISTRY_MIRROR") or None,
                   image=os.environ.get("VTFLOW_E2E_IMAGE") or None,
                   nodes=os.environ.get("VTFLOW_E2E_NODES") or None,
                   size=os.environ.get("VTFLOW_E2E_SIZE") or "fit",
                   keep=os.environ.get("VTFLOW_E2E_KEEP") == "1")

    @property
    def block(self) -> str:
        """The name of every block this run saves (target, mysql, nodes)."""
        return f"e2e-{self.tag}"


def pytest_collection_modifyitems(config, items):
    if os.environ.get("VTFLOW_E2E_KUBECONFIG"):
        return
    skip = pytest.mark.skip(reason=SKIP_REASON)
    for item in items:
        if item.get_closest_marker("e2e") is not None:
            item.add_marker(skip)


# The scenario's steps build on each other: after a failed one, the rest say which one failed.
_failed: list[str] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    report = (yield).get_result()
    if report.failed and item.get_closest_marker("e2e") is not None:
        _failed.append(item.name)


def pytest_runtest_setup(item):
    if _failed and item.get_closest_marker("e2e") is not None:
        pytest.skip(f"the earlier step {_failed[0]} failed")


class Cluster:
    """The cluster named by the inputs, reached with the product's own client (vtflow.kube)."""

    def __init__(self, e2e: E2E):
        from vtflow import kube

        self.e2e = e2e
        self.k = kube.Kube(kube.api_client(e2e.kubeconfig.read_text(), None, f"kubeconfig {e2e.kubeconfig}"))

    def first_node_address(self) -> str:
        """A node's InternalIP (else ExternalIP): where the run's NodePorts are reached."""
        for node in self.k.list("v1", "Node"):
            addresses = {a["type"]: a["address"] for a in (node.get("status") or {}).get("addresses") or []}
            if addresses.get("InternalIP") or addresses.get("ExternalIP"):
                return addresses.get("InternalIP") or addresses["ExternalIP"]
        raise AssertionError("no Node reports an InternalIP or ExternalIP: set VTFLOW_E2E_NODE_ADDRESS")

    @property
    def operator_manifest(self) -> str:
        """The upstream file of the release vtflow's version table gives this cluster's Kubernetes
        (passed as a file, as a cluster without internet would; the deploy pins its image)."""
        from helpers import UPSTREAM

        from tasks import versions

        release = versions.choose(self.k.server_version(), force=True).release.operator
        return str(UPSTREAM / f"vitess-operator-{release}" / "examples" / "operator-latest.yaml")

    def cluster_scoped_operator_objects(self) -> list[tuple[str, str, str]]:
        """(apiVersion, kind, name) of the operator's cluster-scoped objects (CRDs, ClusterRoles, ...)."""
        from tasks.operators import load_manifest, operator_objects

        return [(o["apiVersion"], o["kind"], o["metadata"]["name"])
                for o in operator_objects(load_manifest(self.operator_manifest), self.e2e.namespace,
                                          self.e2e.registry_mirror)
                if not o["metadata"].get("namespace")]

    def missing(self, objects):
        return [o for o in objects if self.k.get(o[0], o[1], o[2]) is None]

    def delete_namespace(self, cluster: str, timeout_s: float = 600) -> None:
        ns = self.e2e.namespace
        # the VitessCluster first, while its operator still runs to handle it; then the rest
        for api_version, kind, name in (("planetscale.com/v2", "VitessCluster", cluster), ("v1", "Namespace", ns)):
            if kind == "VitessCluster" and not self.k.get("apiextensions.k8s.io/v1", "CustomResourceDefinition",
                                                          "vitessclusters.planetscale.com"):
                continue
            self.k.delete(api_version, kind, name, None if kind == "Namespace" else ns)
            deadline = time.monotonic() + timeout_s
            while self.k.get(api_version, kind, name, None if kind == "Namespace" else ns) is not None:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{kind} {ns}/{name}: still there {timeout_s:g} s after its delete; see "
                                         f"`kubectl get namespace {ns} -o yaml` (its conditions) and delete it by hand")
                time.sleep(2)


@pytest.fixture(scope="session")
def e2e() -> E2E:
    inputs = E2E.from_env()
    assert inputs is not None  # collection skips every e2e test otherwise
    return inputs


@pytest.fixture(scope="module")
def cluster(e2e, request):
    """The run's blocks, made with `vtflow block create` as a user makes them; its cleanup at the end."""
    from prefect.exceptions import ObjectNotFound

    from blocks.mysql import MySQLCredentials
    from blocks.nodes import SSHNodes
    from blocks.target import VitessTarget

    c = Cluster(e2e)
    # the run deletes its namespace at the end: never one that holds something already
    assert c.k.get("v1", "Namespace", e2e.namespace) is None, \
        f"Namespace {e2e.namespace}: exists already, and this run would delete it at the end. Fix: name a new one " \
        "in VTFLOW_E2E_NAMESPACE, or unset it for a fresh vtflow-e2e-<hex>"
    # vtflow's deploy points the one cluster-wide ClusterRoleBinding at its namespace's operator
    binding = c.k.get("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "vitess-operator")
    bound = {s.get("namespace") for s in (binding or {}).get("subjects") or [] if s.get("kind") == "ServiceAccount"}
    assert not bound, (f"ClusterRoleBinding vitess-operator: binds the operator of namespace {', '.join(sorted(bound))}; "
                       f"this run's deploy would re-point it at {e2e.namespace} and leave that operator without its "
                       "cluster-wide rights. Fix: run the tier on a cluster without vitess-operator")
    c.node_address = e2e.node_address or c.first_node_address()
    request.getfixturevalue("prefect_server")  # only now: a refusal above costs no server start
    created_here = c.missing(c.cluster_scoped_operator_objects())
    target = ["block", "create", "target", "--name", e2e.block, "--kubeconfig", str(e2e.kubeconfig),
              "--namespace", e2e.namespace, "--node-address", c.node_address]
    target += ["--vtgate-address", e2e.vtgate_address] if e2e.vtgate_address else []
    target += ["--registry-mirror", e2e.registry_mirror] if e2e.registry_mirror else []
    try:
        ok(vtflow(*target))
        ok(vtflow("block", "create", "mysql", "--name", e2e.block, "--user", e2e.mysql_user,
                  "--password-env", "VTFLOW_E2E_MYSQL_PASSWORD", env={"VTFLOW_E2E_MYSQL_PASSWORD": e2e.mysql_password}))
        if e2e.nodes:
            inventory, key, known_hosts = e2e.nodes.split(":")
            ok(vtflow("block", "create", "nodes", "--name", e2e.block, "--inventory", inventory, "--key", key,
                      "--known-hosts", known_hosts))
        yield c
    finally:
        if e2e.keep:
            print(f"\nVTFLOW_E2E_KEEP=1: kept Namespace {e2e.namespace}, blocks {e2e.block}, "
                  f"cluster-scoped {', '.join(f'{k} {n}' for _, k, n in created_here) or 'nothing'}")
        else:
            for block_type in (VitessTarget, MySQLCredentials, SSHNodes):
                try:
                    block_type.delete(e2e.block)
                except (ValueError, ObjectNotFound):
                    pass
            c.delete_namespace("example")  # the target block's default cluster_name
            # only what this run created: on a cluster that had the operator, its CRDs hold other clusters
            for api_version, kind, name in reversed(created_here):
                c.k.delete(api_version, kind, name)
