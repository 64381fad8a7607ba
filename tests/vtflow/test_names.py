"""vtflow/names.py: every name and label pinned with the literal strings the operator and the
deploy use (vitess-operator's pkg/apis/planetscale/v2/labels.go; the upstream operator.yaml)."""

import yaml

from vtflow import names
from helpers import OPERATOR_YAML


def test_label_keys_are_the_operators():
    assert names.CLUSTER == "planetscale.com/cluster"
    assert names.COMPONENT == "planetscale.com/component"
    assert names.CELL == "planetscale.com/cell"
    assert names.KEYSPACE == "planetscale.com/keyspace"
    assert names.SHARD == "planetscale.com/shard"
    assert names.MANAGED_BY == "app.kubernetes.io/managed-by" and names.MANAGER == "vtflow"
    assert names.ROLLOUT_SCHEDULED == "rollout.planetscale.com/scheduled"
    assert names.ROLLOUT_RELEASED == "rollout.planetscale.com/released"


def test_component_values_are_the_operators():
    assert (names.VTCTLD, names.VTGATE, names.VTTABLET, names.VTORC, names.VTADMIN, names.VTBACKUP, names.ETCD) == (
        "vtctld", "vtgate", "vttablet", "vtorc", "vtadmin", "vtbackup", "etcd")


def test_selectors():
    assert names.cluster_selector("example") == "planetscale.com/cluster=example"
    assert names.cluster_selector("example", "vtctld") == "planetscale.com/cluster=example,planetscale.com/component=vtctld"
    assert names.cluster_labels("example", "vtgate", "zone1") == {
        "planetscale.com/cluster": "example", "planetscale.com/component": "vtgate", "planetscale.com/cell": "zone1"}
    assert names.managed_labels("example") == {"app.kubernetes.io/managed-by": "vtflow",
                                               "planetscale.com/cluster": "example"}
    assert names.selector({"app": "vitess-operator"}) == "app=vitess-operator"


def test_object_names():
    assert names.secret_name("example") == "example-cluster-config"
    assert names.vtadmin_node_port_name("example") == "example-vtadmin-nodeport"
    assert names.vtgate_node_port_name("example") == "example-vtgate-nodeport"
    assert names.pushed_at_annotation("vitess") == "vtflow.io/vitess-pushed-at"


def test_the_operator_deployment_and_its_pod_label_are_upstreams():
    assert names.OPERATOR_DEPLOYMENT == "vitess-operator"
    assert names.OPERATOR_POD_LABELS == {"app": "vitess-operator"}
    assert names.ETCD_OPERATOR_LABELS == {"app.kubernetes.io/name": "etcd-operator"}
    with open(OPERATOR_YAML) as f:
        dep = next(d for d in yaml.safe_load_all(f) if d and d.get("kind") == "Deployment")
    assert dep["metadata"]["name"] == names.OPERATOR_DEPLOYMENT
    assert dep["spec"]["template"]["metadata"]["labels"] == names.OPERATOR_POD_LABELS


def test_shards_in_labels_and_key_ranges():
    assert [names.shard_label(s) for s in ("-", "-80", "80-", "40-80")] == ["x-x", "x-80", "80-x", "40-80"]
    assert [names.shard_from_label(s) for s in ("x-x", "x-80", "80-x", "40-80")] == ["-", "-80", "80-", "40-80"]
    assert names.shard_names(1) == ["-"]
    assert names.shard_names(2) == ["-80", "80-"]
    assert names.shard_names(4) == ["-40", "40-80", "80-c0", "c0-"]


def test_no_product_module_spells_out_a_label_key():
    import ast
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    label = re.compile(r"planetscale\.com/(?!v\d)[a-z-]+|app\.kubernetes\.io/")
    spelled = []
    for d in ("flows", "tasks", "blocks", "deployments", "vtflow"):
        for p in (root / d).rglob("*.py"):
            if p == root / "vtflow" / "names.py":
                continue
            tree = ast.parse(p.read_text())
            docs = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr)}  # docstrings may name them
            spelled += [f"{p.relative_to(root)}:{n.lineno}" for n in ast.walk(tree)
                        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs
                        and label.search(n.value)]
    assert sorted(spelled) == []
