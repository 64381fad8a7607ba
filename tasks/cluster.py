"""Deploy step 4: the VitessCluster, its Secret, backup claim and NodePort Services.

``ClusterSpec`` is the typed input; its defaults reproduce the upstream 101 example (cell
zone1, keyspace commerce, one shard, the same images and resources). ``render`` turns a spec
into the objects vtflow applies, ``preflight`` adds up every request the cluster will make
and compares it with the nodes, ``not_ready``/``diagnose`` read the operator's status and the
pods. The task applies, then waits once: a cluster not ready after the whole timeout fails at
once with the diagnosis, never retried. Differences from upstream's 101 file, all on purpose:
- the gateway users Secret holds the MySQL credentials block's user and password (never the
  example's empty password), and init_db.sql is vtflow's own;
- vtadmin is on, read-only, its ``apiAddresses`` pointing at a node address and NodePort,
  with NodePort Services for its web UI and API (as the user did in Rancher), and, by
  parameter, one for vtgate;
- the backup location is configurable (upstream: a 1Gi ``vitess-backups`` claim, kept as default).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.utilities.annotations import opaque
from pydantic import BaseModel, Field, field_validator

from blocks.mysql import MySQLCredentials
from tasks.common import retry_transient
from tasks.context import TargetContext
from tasks.report import Finding, StepReport, apply_all
from vtflow import crdschema, kube, names
from vtflow.errors import ConfigError, PermanentError
from vtflow.quantity import cpu_millis, memory_bytes
from vtflow.forms import OptionalText

GIB = 1 << 30
MIB = 1 << 20


class Resources(BaseModel):
    cpu: str = Field(default="100m", description="CPU request, e.g. 100m.")
    memory: str = Field(default="128Mi", description="Memory request, e.g. 256Mi.")
    memory_limit: OptionalText = Field(default=None, description="Memory limit, e.g. 256Mi; empty means none.")

    @field_validator("cpu")
    @classmethod
    def _cpu(cls, v: str) -> str:
        cpu_millis(v)
        return v

    @field_validator("memory", "memory_limit")
    @classmethod
    def _mem(cls, v: str | None) -> str | None:
        if v is not None:
            memory_bytes(v)
        return v

    def k8s(self) -> dict:
        out = {"requests": {"cpu": self.cpu, "memory": self.memory}}
        if self.memory_limit:
            out["limits"] = {"memory": self.memory_limit}
        return out


class TabletPool(BaseModel):
    cell: str = Field(default="zone1", description="Cell the tablets run in.")
    type: Literal["replica", "rdonly"] = Field(default="replica", description="Tablet pool type.")
    replicas: int = Field(default=3, ge=1, le=10, description="Tablets per shard (one becomes PRIMARY).")
    vttablet: Resources = Field(default=Resources(cpu="100m", memory="256Mi", memory_limit="256Mi"),
                               description="Resources of each tablet's vttablet container.")
    mysqld: Resources = Field(default=Resources(cpu="100m", memory="512Mi", memory_limit="1024Mi"),
                             description="Resources of each tablet's mysqld container.")
    storage: str = Field(default="10Gi", description="Data volume per tablet.")


class KeyspaceSpec(BaseModel):
    name: str = Field(default="commerce", description="Keyspace (logical database) name.")
    shards: int = Field(default=1, ge=1, le=64, description="Equal partitions; 1 is unsharded (shard '-').")
    durability_policy: str = Field(default="semi_sync", description="semi_sync or none.")
    tablets: TabletPool = Field(default_factory=TabletPool, description="The tablets of each shard.")
    vtorc: Resources | None = Field(default=Resources(cpu="100m", memory="128Mi", memory_limit="128Mi"),
                                    description="VTOrc per shard; empty disables it.")


class BackupSpec(BaseModel):
    engine: Literal["xtrabackup", "builtin", "mysqlshell"] = Field(
        default="xtrabackup", description="How tablets take backups: xtrabackup (upstream's, online), builtin "
                                          "(stops the tablet's mysqld while it copies) or mysqlshell (Vitess 21+).")
    kind: Literal["volume", "s3", "none"] = Field(default="volume", description="Where backups go.")
    volume_claim: str = Field(default="vitess-backups", description="PVC name for kind=volume.")
    volume_size: str = Field(default="1Gi", description="PVC size for kind=volume.")
    s3_bucket: OptionalText = Field(default=None, description="S3 bucket for kind=s3.")
    s3_region: OptionalText = Field(default=None, description="S3 region for kind=s3, e.g. us-east-1.")
    s3_endpoint: OptionalText = Field(default=None, description="S3 endpoint for kind=s3 (MinIO, Ceph); empty: AWS's.")
    s3_key_prefix: OptionalText = Field(default=None, description="Prefix of the backups' keys in the bucket; "
                                                                  "empty: none.")
    s3_auth_secret: OptionalText = Field(default=None, description="Secret with the S3 credentials file (key: "
                                                                   "credentials); empty: the nodes' own AWS credentials.")


class ClusterSpec(BaseModel):
    """The VitessCluster to deploy. Defaults reproduce upstream's 101 example."""

    vitess_image: OptionalText = Field(default=None, description="Image of the Vitess components; empty: the one the "
                                     "version table gives for the operator release (deploy parameter vitess_version).")
    mysqld_image: OptionalText = Field(default=None, description="Image of mysqld; empty: the release's.")
    vtadmin_image: OptionalText = Field(default=None, description="Image of vtadmin; empty: the release's.")
    mysqld_exporter_image: OptionalText = Field(default=None, description="Image of the mysqld-exporter sidecar of each "
                                                "tablet (Prometheus metrics); empty: the release's.")
    cell: str = Field(default="zone1", description="The cell (failure domain).")
    gateway_replicas: int = Field(default=1, ge=1, le=10, description="vtgate pods (the MySQL endpoint).")
    gateway: Resources = Field(default=Resources(cpu="100m", memory="256Mi", memory_limit="256Mi"),
                               description="Resources of each vtgate pod.")
    vtctld_replicas: int = Field(default=1, ge=1, le=5, description="vtctld pods (the control plane vtflow execs into).")
    vtctld: Resources = Field(default=Resources(cpu="100m", memory="128Mi", memory_limit="128Mi"),
                              description="Resources of each vtctld pod.")
    vtadmin: bool = Field(default=True, description="Run vtadmin (read-only) behind NodePorts.")
    vtadmin_web_node_port: int = Field(default=30000, ge=30000, le=32767,
                                       description="NodePort of vtadmin's web UI (at the target's node_address).")
    vtadmin_api_node_port: int = Field(default=30001, ge=30000, le=32767,
                                       description="NodePort of vtadmin's API, which its web UI calls from the browser.")
    vtgate_node_port: int | None = Field(
        default=30306, ge=30000, le=32767,
        description="Expose vtgate's MySQL port on this NodePort, so that flows running outside the cluster reach it "
                    "(data load, verification, health checks); empty: none (then set the target's vtgate_address, "
                    "or run the flows inside the cluster).")
    keyspaces: list[KeyspaceSpec] = Field(default_factory=lambda: [KeyspaceSpec()], min_length=1,
                                          description="The keyspaces (logical databases) and their shards.")
    backup: BackupSpec = Field(default_factory=BackupSpec, description="Where and how backups are taken.")
    size: Literal["upstream", "fit"] = Field(
        default="upstream", description="upstream: the resources above (upstream's 101); fit: the largest that fit "
                                        "the nodes' room with HA where they allow it, no less than each component's "
                                        "floor, with scheduling rules that keep pods off nodes without room.")


# ---------------------------------------------------------------- pure: rendering (names: vtflow/names.py)

IMAGE_FIELDS = ("vitess_image", "mysqld_image", "vtadmin_image", "mysqld_exporter_image")


def users_json(user: str, password: str) -> str:
    if not password:
        raise ConfigError("MySQL credentials", "the password is empty.", "set a password in the MySQL credentials block.")
    return json.dumps({user: [{"UserData": user, "Password": password}]}, indent=2)


def init_db_sql() -> str:
    return (Path(__file__).parent / "data" / "init_db.sql").read_text()


VTADMIN_RBAC = """\
rules:
  - resource: "*"
    actions: ["get", "ping"]
    subjects: ["*"]
    clusters: ["*"]
"""


def render(spec: ClusterSpec, namespace: str, cluster: str, node_address: str | None,
           mysql_user: str, mysql_password: str) -> list[dict]:
    """Every object of the cluster-init step, in apply order. ``spec`` has its images set
    (``tasks.versions.with_images``): which ones is the version table's choice, not render's."""
    unset = [f for f in IMAGE_FIELDS if not getattr(spec, f)]
    if unset:
        raise ValueError(f"render: images not chosen: {', '.join(unset)}")
    if spec.vtadmin and not node_address:
        raise ConfigError("Vitess target block", "has no node_address, which vtadmin's apiAddresses need.",
                          "set node_address to an address of a node (vtflow block create target --node-address IP).")
    secret = names.secret_name(cluster)
    labels = names.managed_labels(cluster)
    objects: list[dict] = [{
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": secret, "namespace": namespace, "labels": labels},
        "stringData": {"users.json": users_json(mysql_user, mysql_password), "init_db.sql": init_db_sql(),
                       "rbac.yaml": VTADMIN_RBAC},
    }]
    b = spec.backup
    if b.kind == "volume":
        objects.append({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                        "metadata": {"name": b.volume_claim, "namespace": namespace, "labels": labels},
                        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": b.volume_size}}}})
    vc: dict = {
        "apiVersion": "planetscale.com/v2", "kind": "VitessCluster",
        "metadata": {"name": cluster, "namespace": namespace, "labels": {names.MANAGED_BY: names.MANAGER}},
        "spec": {
            "images": {"vtctld": spec.vitess_image, "vtgate": spec.vitess_image, "vttablet": spec.vitess_image,
                       "vtorc": spec.vitess_image, "vtbackup": spec.vitess_image,
                       "mysqld": {"mysql80Compatible": spec.mysqld_image},
                       "mysqldExporter": spec.mysqld_exporter_image},
            "cells": [{"name": spec.cell, "gateway": {
                "authentication": {"static": {"secret": {"name": secret, "key": "users.json"}}},
                "extraFlags": {"tablet_refresh_interval": "10s"},
                "replicas": spec.gateway_replicas, "resources": spec.gateway.k8s()}}],
            "vitessDashboard": {"cells": [spec.cell], "extraFlags": {"security_policy": "read-only"},
                                "replicas": spec.vtctld_replicas, "resources": spec.vtctld.k8s()},
            "keyspaces": [_keyspace(ks, secret) for ks in spec.keyspaces],
            "updateStrategy": {"type": "Immediate"},
        },
    }
    if b.kind != "none":
        location: dict
        if b.kind == "volume":
            location = {"volume": {"persistentVolumeClaim": {"claimName": b.volume_claim}}}
        else:
            s3 = {k: v for k, v in {"bucket": b.s3_bucket, "region": b.s3_region, "endpoint": b.s3_endpoint,
                                    "keyPrefix": b.s3_key_prefix}.items() if v}
            if not b.s3_bucket or not b.s3_region:
                raise ConfigError("backup spec", "kind s3 needs s3_bucket and s3_region.", "set both, or use kind volume.")
            if b.s3_auth_secret:
                s3["authSecret"] = {"name": b.s3_auth_secret, "key": "credentials"}
            location = {"s3": s3}
        vc["spec"]["backup"] = {"engine": b.engine, "locations": [location]}
    if spec.vtadmin:
        vc["spec"]["images"]["vtadmin"] = spec.vtadmin_image
        vc["spec"]["vtadmin"] = {
            "rbac": {"name": secret, "key": "rbac.yaml"}, "cells": [spec.cell], "replicas": 1, "readOnly": True,
            "apiAddresses": [f"http://{node_address}:{spec.vtadmin_api_node_port}"],
            "apiResources": Resources(memory="128Mi", memory_limit="128Mi").k8s(),
            "webResources": Resources(memory="128Mi", memory_limit="128Mi").k8s(),
        }
    objects.append(vc)
    if spec.vtadmin:
        objects.append(_node_port(names.vtadmin_node_port_name(cluster), namespace, labels,
                                  names.cluster_labels(cluster, names.VTADMIN),
                                  [("web", 15000, spec.vtadmin_web_node_port), ("api", 15001, spec.vtadmin_api_node_port)]))
    if spec.vtgate_node_port:
        objects.append(_node_port(names.vtgate_node_port_name(cluster), namespace, labels,
                                  names.cluster_labels(cluster, names.VTGATE, spec.cell),
                                  [("mysql", 3306, spec.vtgate_node_port)]))
    return objects


def _keyspace(ks: KeyspaceSpec, secret: str) -> dict:
    pool = ks.tablets
    out = {
        "name": ks.name, "durabilityPolicy": ks.durability_policy, "turndownPolicy": "Immediate",
        "partitionings": [{"equal": {"parts": ks.shards, "shardTemplate": {
            "databaseInitScriptSecret": {"name": secret, "key": "init_db.sql"},
            "tabletPools": [{
                "cell": pool.cell, "type": pool.type, "replicas": pool.replicas,
                "vttablet": {"extraFlags": {"db_charset": "utf8mb4"}, "resources": pool.vttablet.k8s()},
                "mysqld": {"resources": pool.mysqld.k8s()},
                "dataVolumeClaimTemplate": {"accessModes": ["ReadWriteOnce"],
                                            "resources": {"requests": {"storage": pool.storage}}},
            }],
        }}}],
    }
    if ks.vtorc:
        out["vitessOrchestrator"] = {"resources": ks.vtorc.k8s(), "extraFlags": {"instance-poll-time": "3s"}}
    return out


def _node_port(name: str, namespace: str, labels: dict, selector: dict, ports: list[tuple[str, int, int]]) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"type": "NodePort", "selector": selector,
                     "ports": [{"name": n, "port": p, "targetPort": p, "nodePort": np, "protocol": "TCP"}
                               for n, p, np in ports]}}


def _schema_of(obj: dict, operator_docs: list[dict]) -> dict:
    crd = next((d for d in operator_docs if d.get("kind") == "CustomResourceDefinition"
                and d["metadata"]["name"] == "vitessclusters.planetscale.com"), None)
    if crd is None:
        raise ConfigError("operator manifest", "has no vitessclusters.planetscale.com CRD.", "give the operator.yaml of a release.")
    version = obj["apiVersion"].split("/")[1]
    schema = crdschema.crd_schema(crd, version)
    if schema is None:
        raise ConfigError("operator manifest", f"has no VitessCluster version {version} with a schema.",
                          "give the operator.yaml of a v2 release.")
    return schema


def unsupported(obj: dict, operator_docs: list[dict]) -> list[str]:
    """The fields of ``obj`` the release's VitessCluster CRD does not have (the server would drop them)."""
    stored, _ = crdschema.validate(obj, _schema_of(obj, operator_docs))
    return [f for f in crdschema.dropped(obj, stored) if f.split(".")[0] != "metadata"]


def validate_cluster(obj: dict, operator_docs: list[dict]) -> None:
    """Check the VitessCluster against the CRD schema of the operator manifest being applied,
    pruned and defaulted first as the API server does; a field the schema lacks is refused
    (the server would drop it without a word)."""
    lost = unsupported(obj, operator_docs)
    if lost:
        raise ConfigError(kube.ref(obj), f"has fields this operator release's VitessCluster CRD lacks: {', '.join(lost)}"
                          " (the server would drop them, and the cluster run without them).",
                          "leave those settings unset for this release, or deploy a release that has them "
                          "(README: Versions).")
    _, errors = crdschema.validate(obj, _schema_of(obj, operator_docs))
    if errors:
        lines = [f"{crdschema.field_path(e.absolute_path) or '(root)'}: {e.message}" for e in errors[:10]]
        raise ConfigError(kube.ref(obj), "does not match the VitessCluster CRD schema: " + "; ".join(lines),
                          "correct the cluster spec fields named above.")


# ---------------------------------------------------------------- pure: preflight

# The operator's own defaults for what the spec does not size (vitess-operator sources):
OPERATOR_POD = (100, 128 * MIB)           # the vitess-operator Deployment (operator.yaml)
ETCD_MEMBER = (100, 256 * MIB)            # each of the 3 EtcdLockserver members
ETCD_MEMBERS = 3
MYSQLD_EXPORTER = (10, 32 * MIB)          # the mysqld-exporter sidecar of every tablet
VTADMIN_DEFAULT = (100, 128 * MIB)


# K3s does not reserve memory for itself in a node's allocatable, yet a server node (API
# server, embedded etcd, controllers) needs about 2 GB and an agent about 512 MB (K3s's
# stated minimums); the preflight takes that off each node.
K3S_SERVER_RESERVE = (1000, 2 * GIB)
K3S_AGENT_RESERVE = (250, 512 * MIB)


class Demand(BaseModel):
    component: str
    pods: int
    cpu_millis: int
    memory_bytes: int
    memory_limit_bytes: int


class NodeRoom(BaseModel):
    node: str
    allocatable_cpu_millis: int
    allocatable_memory_bytes: int
    reserved_cpu_millis: int
    reserved_memory_bytes: int
    used_cpu_millis: int
    used_memory_bytes: int

    @property
    def free_cpu_millis(self) -> int:
        return max(0, self.allocatable_cpu_millis - self.reserved_cpu_millis - self.used_cpu_millis)

    @property
    def free_memory_bytes(self) -> int:
        return max(0, self.allocatable_memory_bytes - self.reserved_memory_bytes - self.used_memory_bytes)


class Preflight(BaseModel):
    demands: list[Demand]
    nodes: list[NodeRoom]
    default_storage_class: str | None
    problems: list[str]

    @property
    def cpu_millis(self) -> int:
        return sum(d.cpu_millis for d in self.demands)

    @property
    def memory_bytes(self) -> int:
        return sum(d.memory_bytes for d in self.demands)

    @property
    def memory_limit_bytes(self) -> int:
        return sum(d.memory_limit_bytes for d in self.demands)

    @property
    def free_cpu_millis(self) -> int:
        return sum(n.free_cpu_millis for n in self.nodes)

    @property
    def free_memory_bytes(self) -> int:
        return sum(n.free_memory_bytes for n in self.nodes)

    def table(self) -> str:
        g = lambda b: f"{b / GIB:6.2f} GiB"  # noqa: E731
        rows = [f"  {'component':<26} {'pods':>4} {'CPU req':>8} {'mem req':>10} {'mem limit':>10}"]
        rows += [f"  {d.component:<26} {d.pods:>4} {d.cpu_millis:>7}m {g(d.memory_bytes)} {g(d.memory_limit_bytes)}"
                 for d in self.demands]
        rows.append(f"  {'cluster total':<26} {'':>4} {self.cpu_millis:>7}m {g(self.memory_bytes)} {g(self.memory_limit_bytes)}")
        for n in self.nodes:
            rows.append(f"  node {n.node:<21} allocatable {n.allocatable_cpu_millis}m/{g(n.allocatable_memory_bytes)}, "
                        f"K3s {n.reserved_cpu_millis}m/{g(n.reserved_memory_bytes)}, running pods "
                        f"{n.used_cpu_millis}m/{g(n.used_memory_bytes)}, free {n.free_cpu_millis}m/{g(n.free_memory_bytes)}")
        rows.append(f"  {'free on all nodes':<26} {'':>4} {self.free_cpu_millis:>7}m {g(self.free_memory_bytes)}")
        return "\n".join(rows)


def _req(r: Resources) -> tuple[int, int, int]:
    mem = memory_bytes(r.memory)
    return cpu_millis(r.cpu), mem, memory_bytes(r.memory_limit) if r.memory_limit else mem


def _demand(component: str, pods: int, each: tuple[int, int, int]) -> Demand:
    return Demand(component=component, pods=pods, cpu_millis=each[0] * pods, memory_bytes=each[1] * pods,
                  memory_limit_bytes=each[2] * pods)


def demands(spec: ClusterSpec) -> list[Demand]:
    """Every request (and memory limit) the deployed cluster makes, per component."""
    out = [_demand("vitess-operator", 1, (*OPERATOR_POD, 512 * MIB)),
           _demand("etcd lockserver", ETCD_MEMBERS, (*ETCD_MEMBER, ETCD_MEMBER[1])),
           _demand("vtctld", spec.vtctld_replicas, _req(spec.vtctld)),
           _demand(f"vtgate ({spec.cell})", spec.gateway_replicas, _req(spec.gateway))]
    if spec.vtadmin:
        out.append(_demand("vtadmin (api + web)", 1, (2 * VTADMIN_DEFAULT[0], 2 * VTADMIN_DEFAULT[1], 2 * VTADMIN_DEFAULT[1])))
    for ks in spec.keyspaces:
        if ks.vtorc:
            out.append(_demand(f"vtorc ({ks.name})", ks.shards, _req(ks.vtorc)))
        t, m = _req(ks.tablets.vttablet), _req(ks.tablets.mysqld)
        tablet = (t[0] + m[0] + MYSQLD_EXPORTER[0], t[1] + m[1] + MYSQLD_EXPORTER[1], t[2] + m[2] + 128 * MIB)
        out.append(_demand(f"tablets ({ks.name})", ks.shards * ks.tablets.replicas, tablet))
    return out


def _pod_requests(pod: dict) -> tuple[int, int]:
    cpu = mem = 0
    for c in (pod.get("spec") or {}).get("containers") or []:
        req = (c.get("resources") or {}).get("requests") or {}
        cpu += cpu_millis(req.get("cpu", "0"))
        mem += memory_bytes(req.get("memory", "0"))
    return cpu, mem


def node_room(nodes: list[dict], pods: list[dict], cluster: str) -> list[NodeRoom]:
    """Each node's room: allocatable, less K3s's own share, less the pods already running
    there (this cluster's own pods excepted, so that a re-run sees the same room)."""
    out = []
    for n in nodes:
        name = n["metadata"]["name"]
        alloc = (n.get("status") or {}).get("allocatable") or {}
        labels = n["metadata"].get("labels") or {}
        server = labels.get("node-role.kubernetes.io/control-plane") == "true" or labels.get("node-role.kubernetes.io/master") == "true"
        reserve = K3S_SERVER_RESERVE if server else K3S_AGENT_RESERVE
        used_cpu = used_mem = 0
        for p in pods:
            if (p.get("spec") or {}).get("nodeName") != name or (p.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                continue
            plabels = p["metadata"].get("labels") or {}
            if plabels.get(names.CLUSTER) == cluster or names.OPERATOR_POD_LABELS.items() <= plabels.items():
                continue
            c, m = _pod_requests(p)
            used_cpu, used_mem = used_cpu + c, used_mem + m
        out.append(NodeRoom(node=name, allocatable_cpu_millis=cpu_millis(alloc.get("cpu", "0")),
                            allocatable_memory_bytes=memory_bytes(alloc.get("memory", "0")),
                            reserved_cpu_millis=reserve[0], reserved_memory_bytes=reserve[1],
                            used_cpu_millis=used_cpu, used_memory_bytes=used_mem))
    return out


def preflight(spec: ClusterSpec, nodes: list[dict], pods: list[dict], storage_classes: list[dict],
              cluster: str, allow_memory_overcommit: bool = False, sized: list[Demand] | None = None) -> Preflight:
    """Compare what the cluster will ask for with the room on the nodes.

    Requests beyond the room: the scheduler would leave pods Pending. Memory limits beyond
    the room: pods can grow until the nodes run out of memory, which is what happened on the
    user's 2 CPU / 4 GiB nodes; refused unless ``allow_memory_overcommit``. ``sized``: the
    demands of the cluster's sizing (tasks/sizing.py), which also counts etcd, vtadmin and
    the exporters at the sizes it renders and each new shard's vtbackup-init pod."""
    ds = sized if sized is not None else demands(spec)
    room = node_room(nodes, pods, cluster)
    default_sc = next((s["metadata"]["name"] for s in storage_classes
                       if (s["metadata"].get("annotations") or {}).get("storageclass.kubernetes.io/is-default-class") == "true"), None)
    check = Preflight(demands=ds, nodes=room, default_storage_class=default_sc, problems=[])
    fix = ("Lower tablets.replicas or gateway/vtctld replicas, shrink the mysqld and vttablet requests and "
           "limits, turn vtadmin off, or use bigger or more nodes.")
    if check.cpu_millis > check.free_cpu_millis or check.memory_bytes > check.free_memory_bytes:
        check.problems.append(
            f"the cluster requests {check.cpu_millis}m CPU and {check.memory_bytes / GIB:.2f} GiB; the nodes have "
            f"{check.free_cpu_millis}m CPU and {check.free_memory_bytes / GIB:.2f} GiB free, so pods would stay "
            f"Pending. {fix}")
    elif check.memory_limit_bytes > check.free_memory_bytes and not allow_memory_overcommit:
        check.problems.append(
            f"the cluster's memory limits add up to {check.memory_limit_bytes / GIB:.2f} GiB but the nodes have "
            f"{check.free_memory_bytes / GIB:.2f} GiB free: under load the nodes can run out of memory. {fix} "
            "(Or set allow_memory_overcommit to accept the risk.)")
    biggest = max((r.free_memory_bytes for r in room), default=0)
    tablet = max((d.memory_bytes // max(d.pods, 1) for d in ds if d.component.startswith("tablets")), default=0)
    if room and tablet > biggest:
        check.problems.append(f"one tablet pod requests {tablet / GIB:.2f} GiB but no node has more than "
                              f"{biggest / GIB:.2f} GiB free; shrink mysqld's memory request or free a node.")
    if default_sc is None:
        check.problems.append("no default StorageClass: the tablets' volume claims would stay Pending. Install one "
                              "(K3s ships local-path) or mark one with storageclass.kubernetes.io/is-default-class=true.")
    return check


# ---------------------------------------------------------------- pure: readiness and diagnosis


def pod_ready(pod: dict) -> bool:
    """The pod's Ready condition is True."""
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def not_ready(vc: dict | None) -> str | None:
    """None when the operator reports every part ready; otherwise what is still missing."""
    if vc is None:
        return "VitessCluster not created yet"
    status = vc.get("status") or {}
    if status.get("observedGeneration", 0) < vc["metadata"].get("generation", 1):
        return "the operator has not observed the latest spec (is the vitess-operator running?)"
    missing = []
    if not ((status.get("globalLockserver") or {}).get("etcd") or {}).get("available") == "True":
        missing.append("etcd lockserver")
    if (status.get("vitessDashboard") or {}).get("available") != "True":
        missing.append("vtctld")
    if (vc.get("spec") or {}).get("vtadmin") and (status.get("vtadmin") or {}).get("available") != "True":
        missing.append("vtadmin")
    for cell in (vc.get("spec") or {}).get("cells") or []:
        if ((status.get("cells") or {}).get(cell["name"]) or {}).get("gatewayAvailable") != "True":
            missing.append(f"vtgate in {cell['name']}")
    for ks in (vc.get("spec") or {}).get("keyspaces") or []:
        s = (status.get("keyspaces") or {}).get(ks["name"]) or {}
        want, ready = s.get("desiredTablets"), s.get("readyTablets", 0)
        if not want or ready < want:
            missing.append(f"keyspace {ks['name']} tablets {ready}/{want or '?'}")
    return ("waiting for " + ", ".join(missing)) if missing else None


def diagnose(pods: list[dict], events: list[dict], claims: list[dict]) -> list[str]:
    """Why a cluster is not ready: Pending pods with their scheduling events, unbound claims,
    crash-looping containers."""
    out = []
    by_pod: dict[str, list[str]] = {}
    for e in events:
        io = e.get("involvedObject") or {}
        if io.get("kind") == "Pod" and e.get("reason") in ("FailedScheduling", "FailedMount", "BackOff", "Failed"):
            by_pod.setdefault(io.get("name"), []).append(f"{e.get('reason')}: {e.get('message')}")
    for p in pods:
        name, status = p["metadata"]["name"], p.get("status") or {}
        if status.get("phase") == "Pending":
            why = by_pod.get(name) or ["no scheduling event yet"]
            out.append(f"Pod {name} is Pending: {why[-1]}")
        for cs in status.get("containerStatuses") or []:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in ("CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError"):
                out.append(f"Pod {name} container {cs.get('name')}: {waiting['reason']} "
                           f"(restarts {cs.get('restartCount', 0)}); read `kubectl logs {name} -c {cs.get('name')} --previous`")
    for c in claims:
        if (c.get("status") or {}).get("phase") != "Bound":
            out.append(f"PersistentVolumeClaim {c['metadata']['name']} is {(c.get('status') or {}).get('phase', 'Pending')}: "
                       "check that a (default) StorageClass exists")
    return out


# ---------------------------------------------------------------- the task


def init_cluster(target: TargetContext, spec: ClusterSpec, credentials: MySQLCredentials, operator_docs: list[dict],
                 allow_memory_overcommit: bool = False, timeout_s: float = 900) -> StepReport:
    """Step 4: preflight, apply, then wait for the operator to report the cluster ready.

    A cluster not ready after the whole ``timeout_s`` fails the step at once (a ReadyTimeout,
    permanent) with the diagnosis: a retry would wait as long again for the same crash loop.
    ``retries`` is for API errors that outlast the client's own retries. Runs as the Prefect
    task ``cluster``; ``operator_docs`` (the manifest, for its VitessCluster CRD schema) goes
    to it ``opaque``, so that Prefect does not walk every node of it looking for futures."""
    return _init_cluster(target, spec, credentials, opaque(operator_docs), allow_memory_overcommit, timeout_s)


@task(name="cluster", task_run_name="cluster", retries=1, retry_delay_seconds=5,
      retry_condition_fn=retry_transient, cache_policy=NO_CACHE)
def _init_cluster(target: TargetContext, spec: ClusterSpec, credentials: MySQLCredentials, operator_docs: list[dict],
                  allow_memory_overcommit: bool, timeout_s: float) -> StepReport:
    from tasks import sizing  # it builds on this module's spec and room types

    log = get_run_logger()
    k, namespace, cluster = target.k, target.namespace, target.cluster
    if not k.dry_run:  # a plan may add the CRD itself; a real run needs the operator's CRDs before anything
        k.resource("planetscale.com/v2", "VitessCluster")
    nodes, pods = k.list("v1", "Node"), k.list("v1", "Pod")
    rooms = node_room(nodes, pods, cluster)
    operator_node = next(((p.get("spec") or {}).get("nodeName") for p in pods
                          if names.OPERATOR_POD_LABELS.items() <= (p["metadata"].get("labels") or {}).items()), None)
    sized = sizing.size_cluster(spec, rooms, spec.size, operator_node)  # fit refuses nodes too small for the floors
    log.info("%s", sized.report())
    objects = render(sized.spec, namespace, cluster, target.node_address, credentials.user,
                     credentials.password.get_secret_value())
    at = next(i for i, o in enumerate(objects) if o["kind"] == "VitessCluster")
    vc = sizing.apply_to(objects[at], sized, cluster)
    if any(f.endswith(".mysqldExporter") for f in unsupported(vc, operator_docs)):
        vc = sizing.apply_to(objects[at], sized, cluster, exporter=False)
    objects[at] = vc
    validate_cluster(vc, operator_docs)
    check = preflight(sized.spec, nodes, pods, k.list("storage.k8s.io/v1", "StorageClass"), cluster,
                      allow_memory_overcommit, sizing.demands(sized))
    log.info("preflight:\n%s", check.table())
    if check.problems:
        raise PermanentError(f"VitessCluster {namespace}/{cluster}", "preflight refused it before anything was applied:\n"
                             + check.table() + "\n- " + "\n- ".join(check.problems))
    report = apply_all(k, objects, "cluster", log)
    kept = f"kept: {'; '.join(sized.ha_kept)}" if sized.ha_kept else "as the spec gives it"
    report.findings.append(Finding(name=f"size {sized.size}", level="warn" if sized.ha_lost else "ok",
                                   problem=kept + (f"; lost: {'; '.join(sized.ha_lost)}" if sized.ha_lost else "")))
    for need in sizing.later_steps(sized, rooms):
        report.findings.append(Finding(name=f"room for {need.step}", level="ok" if need.fits else "warn",
                                       problem=need.line()))
    if k.dry_run:
        return report
    try:
        k.wait("planetscale.com/v2", "VitessCluster", cluster, namespace, not_ready, timeout_s,
               progress=_throttled(lambda m: log.info("%s", m)))
    except kube.WaitTimeout as e:
        selector = names.cluster_selector(cluster)
        findings = diagnose(k.list("v1", "Pod", namespace, label_selector=selector), k.list("v1", "Event", namespace),
                            k.list("v1", "PersistentVolumeClaim", namespace))
        raise kube.WaitTimeout(e.subject, e.problem + ("\n- " + "\n- ".join(findings) if findings else ""),
                               "act on the findings above (see also the preflight table in the log), then re-run.") from e
    log.info("VitessCluster %s/%s is ready", namespace, cluster)
    return report


def _throttled(fn, every_s: float = 10.0):
    """Log a progress message when it changes, or every ``every_s`` while it does not."""
    import time

    last = {"msg": None, "at": 0.0}

    def call(msg: str) -> None:
        now = time.monotonic()
        if msg != last["msg"] or now - last["at"] >= every_s:
            last.update(msg=msg, at=now)
            fn(msg)
    return call
