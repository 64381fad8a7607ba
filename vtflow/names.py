"""Names and labels of the cluster objects vtflow builds or selects on, built here and only here.

The label keys and component values are vitess-operator's conventions (its
``pkg/apis/planetscale/v2/labels.go``): every object the operator makes for a VitessCluster
carries ``planetscale.com/cluster``, and its pods ``planetscale.com/component`` (and, for
tablets, keyspace and shard, the shard written ``x-80`` as in object names). The names of the
objects vtflow adds beside the VitessCluster (the config Secret, the NodePort Services) are
vtflow's own. tests/vtflow/test_names.py pins every one with literal strings, so a change here
is a change a person chose.

Pure: no I/O, no client. Callers pass the results to ``vtflow.kube``; nothing here reads the
cluster.
"""

from __future__ import annotations

# -- label keys (vitess-operator)
LABEL_PREFIX = "planetscale.com"
CLUSTER = f"{LABEL_PREFIX}/cluster"
COMPONENT = f"{LABEL_PREFIX}/component"
CELL = f"{LABEL_PREFIX}/cell"
KEYSPACE = f"{LABEL_PREFIX}/keyspace"
SHARD = f"{LABEL_PREFIX}/shard"
# a VitessBackupSchedule's Jobs: its name as a label, their scheduled time as an annotation
# (vitess-operator pkg/apis/planetscale/v2/labels.go and the schedule controller's constants)
BACKUP_SCHEDULE = f"{LABEL_PREFIX}/backup-schedule"
BACKUP_SCHEDULED_AT = f"{LABEL_PREFIX}/backup-scheduled-at"
# the operator's rollout marks (pkg/operator/rollout/rollout.go): on a tablet pod (or, under
# updateStrategy External, a VitessKeyspace or VitessShard) whose spec change waits to be applied,
# and the one an external tool adds to let it go
ROLLOUT_SCHEDULED = f"rollout.{LABEL_PREFIX}/scheduled"
ROLLOUT_RELEASED = f"rollout.{LABEL_PREFIX}/released"

# -- planetscale.com/component values (vitess-operator)
VTCTLD = "vtctld"
VTGATE = "vtgate"
VTTABLET = "vttablet"
VTORC = "vtorc"
VTADMIN = "vtadmin"
VTBACKUP = "vtbackup"
ETCD = "etcd"

# -- the operator's own Deployment and its pod label (upstream operator.yaml)
OPERATOR_DEPLOYMENT = "vitess-operator"
OPERATOR_POD_LABELS = {"app": "vitess-operator"}
# the etcd-operator vtflow builds (off by default; tasks/operators.py)
ETCD_OPERATOR_LABELS = {"app.kubernetes.io/name": "etcd-operator"}

# -- vtflow's marks on what it creates
MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "vtflow"
# the Prefect worker vtflow runs in the cluster (deployments/kubernetes)
WORKER_LABELS = {"app.kubernetes.io/name": "vtflow-worker", "app.kubernetes.io/part-of": "vtflow"}
WORKER_SELECTOR = {"app.kubernetes.io/name": "vtflow-worker"}


def selector(labels: dict[str, str]) -> str:
    """A label selector (``key=value,...``) matching every label of ``labels``, in the order given."""
    return ",".join(f"{k}={v}" for k, v in labels.items())


def cluster_labels(cluster: str, component: str | None = None, cell: str | None = None) -> dict[str, str]:
    """The operator's labels of a cluster's objects (narrowed to a component and a cell)."""
    labels = {CLUSTER: cluster}
    if component:
        labels[COMPONENT] = component
    if cell:
        labels[CELL] = cell
    return labels


def cluster_selector(cluster: str, component: str | None = None) -> str:
    """``planetscale.com/cluster=<cluster>[,planetscale.com/component=<component>]``."""
    return selector(cluster_labels(cluster, component))


def managed_labels(cluster: str) -> dict[str, str]:
    """The labels of the objects vtflow adds beside a VitessCluster (its Secret, claims, Services)."""
    return {MANAGED_BY: MANAGER, CLUSTER: cluster}


def secret_name(cluster: str) -> str:
    """The Secret with vtgate's users.json, the tablets' init_db.sql and vtadmin's rbac.yaml."""
    return f"{cluster}-cluster-config"


def vtadmin_node_port_name(cluster: str) -> str:
    return f"{cluster}-vtadmin-nodeport"


def vtgate_node_port_name(cluster: str) -> str:
    return f"{cluster}-vtgate-nodeport"


def pushed_at_annotation(component: str) -> str:
    """The annotation holding the push time of the image last redeployed for ``component``."""
    return f"vtflow.io/{component}-pushed-at"


def shard_label(shard: str) -> str:
    """A shard as the operator writes it in label values and names: '-' -> 'x-x', '-80' -> 'x-80'."""
    start, _, end = shard.partition("-")
    return f"{start or 'x'}-{end or 'x'}"


def shard_from_label(label: str) -> str:
    start, _, end = label.partition("-")
    return f"{'' if start == 'x' else start}-{'' if end == 'x' else end}"


def shard_names(shards: int) -> list[str]:
    """The shards of an ``equal`` partitioning, named as Vitess names key ranges: 1 -> ['-'],
    2 -> ['-80', '80-'], 4 -> ['-40', '40-80', '80-c0', 'c0-']."""
    if shards <= 1:
        return ["-"]
    bounds = [""] + [f"{i * 256 // shards:02x}" for i in range(1, shards)] + [""]
    return [f"{bounds[i]}-{bounds[i + 1]}" for i in range(shards)]
