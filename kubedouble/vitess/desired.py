"""The objects the vitess-operator wants for one VitessCluster, built as plain data.

``plan(cluster)`` returns every child (EtcdLockserver and its etcd pods, claims and Services,
VitessCells, VitessKeyspaces, VitessShards, the vtctld / vtgate / vtadmin / vtorc
Deployments, tablet pods and their claims, Services) with its owner named by key, so the
applier (operator.py) can create them parent first and fill in ownerReferences. Pure
functions over dicts: no store, no clock, no randomness (the same spec gives the same plan).

The plan follows the operator release that runs (``release``, releases.py): its default
images (Vitess, mysqld, mysqld-exporter, etcd unless the operator was started with
``--default_etcd_image``) and the flags whose spelling or presence changed between releases
(vttablet's query timeout and incremental restore path, ``--mysql_server_version``), formatted
as the operator's FormatArgs does: ``--key=value`` sorted by key, extraFlags merged in.
Ports, labels and naming follow FACTS.md and the real operator's names (see names.py).
NOT known from upstream files, so chosen as plausible and marked where used: etcd and
mysqld-exporter resources, the etcd claim size, the flags whose values are not version-bound.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass

from . import names
from .releases import DATA_ROOT, Release, mysql_server_version
from .rollout import DRAIN_SUPPORTED, TABLET_DRAIN_SUPPORTED

# chosen so the 101 example totals what FACTS.md measured (~1.3 CPU, ~3.2 GiB of requests)
ETCD_RESOURCES = {"requests": {"cpu": "100m", "memory": "100Mi"}, "limits": {"memory": "256Mi"}}
# pkg/operator/vttablet constants.go: the exporter's resources unless the pool sets its own
EXPORTER_RESOURCES = {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"cpu": "100m", "memory": "128Mi"}}
ETCD_STORAGE = "1Gi"
DESIRED_HASH = "planetscale.com/desired-state-hash"  # annotation name is ours; the real one may differ
HOSTNAME = "kubernetes.io/hostname"
ZONE = "failure-domain.beta.kubernetes.io/zone"  # pkg/operator/k8s ZoneFailureDomainLabel

WEB, GRPC, MYSQL, VTADMIN_API, EXPORTER, ETCD_CLIENT, ETCD_PEER = 15000, 15999, 3306, 15001, 9104, 2379, 2380


@dataclass
class Desired:
    ref: str                 # internal API ref: "pods", "apps/deployments", "planetscale.com/vitessshards"
    obj: dict
    owner: tuple[str, str] | None = None   # (ref, name) of the owner in this plan; None = the cluster

    @property
    def key(self) -> tuple[str, str]:
        return (self.ref, self.obj["metadata"]["name"])


def spec_hash(obj: dict) -> str:
    """The desired-state hash of a pod spec. Affinity is left out, as the operator's hash leaves
    it out (pod.go hashes containers, tolerations, topologySpreadConstraints): a new affinity
    reaches a pod only when something else recreates it."""
    return hashlib.sha256(json.dumps({k: v for k, v in obj.items() if k != "affinity"},
                                     sort_keys=True).encode()).hexdigest()[:16]


def _scheduling(pod_spec: dict, affinity: dict | None, spread: list | None = None) -> dict:
    """Set a pod spec's affinity and topologySpreadConstraints as the operator does: the given
    affinity replaces the pod's (None leaves none), constraints copied as given."""
    if affinity:
        pod_spec["affinity"] = copy.deepcopy(affinity)
    if spread:
        pod_spec["topologySpreadConstraints"] = copy.deepcopy(spread)
    return pod_spec


def _meta(name: str, ns: str, labels: dict) -> dict:
    return {"name": name, "namespace": ns, "labels": dict(labels)}


def _probe(path: str, port: int) -> dict:
    return {"httpGet": {"path": path, "port": port, "scheme": "HTTP"}, "initialDelaySeconds": 5,
            "periodSeconds": 10, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3}


def _port(name: str, port: int) -> dict:
    return {"name": name, "containerPort": port, "protocol": "TCP"}


def _flags(flags: dict) -> list[str]:
    return [f"--{k}={v}" for k, v in sorted((flags or {}).items())]


def _args(base: dict, extra: dict | None, last: dict | None = None) -> list[str]:
    """The operator's FormatArgs: base flags with extraFlags merged over them (leading dashes
    trimmed, as the operator does), then ``last`` (what it sets after them, over any extraFlag),
    ``--key=value`` sorted by key."""
    merged = dict(base)
    for k, v in (extra or {}).items():
        merged[str(k).lstrip("-")] = v
    return _flags({**merged, **(last or {})})


def _deployment(name: str, ns: str, labels: dict, replicas: int, containers: list[dict],
                affinity: dict | None = None, spread: list | None = None) -> dict:
    """``affinity``: the component's spec.affinity, set on the pod template when given (vtgate,
    vtctld, vtadmin, vtorc deployment.go; with no cell zone they set none otherwise);
    ``spread``: vtgate's topologySpreadConstraints."""
    pod_spec = _scheduling({"containers": containers, "terminationGracePeriodSeconds": 60}, affinity, spread)
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(name, ns, labels),
            "spec": {"replicas": replicas, "selector": {"matchLabels": dict(labels)},
                     "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                     "template": {"metadata": {"labels": dict(labels)}, "spec": pod_spec}}}


def _service(name: str, ns: str, labels: dict, selector: dict, ports: list[tuple[str, int]],
             headless: bool = False) -> dict:
    spec = {"type": "ClusterIP", "selector": dict(selector),
            "ports": [{"name": n, "port": p, "targetPort": n, "protocol": "TCP"} for n, p in ports]}
    if headless:
        spec["clusterIP"] = "None"
        spec["publishNotReadyAddresses"] = True
    return {"apiVersion": "v1", "kind": "Service", "metadata": _meta(name, ns, labels), "spec": spec}


def _pvc(name: str, ns: str, labels: dict, template: dict) -> dict:
    spec = copy.deepcopy(template)
    spec.setdefault("accessModes", ["ReadWriteOnce"])
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": _meta(name, ns, labels), "spec": spec}


def images(vc: dict, release: Release) -> dict:
    """The cluster's images, the release's defaults (DefaultImages) where it names none."""
    im = (vc.get("spec") or {}).get("images") or {}
    mysqld = im.get("mysqld") or {}
    lite = release.vitess_image
    return {"vtctld": im.get("vtctld", lite), "vtgate": im.get("vtgate", lite),
            "vttablet": im.get("vttablet", lite), "vtorc": im.get("vtorc", lite),
            "vtbackup": im.get("vtbackup", lite), "vtadmin": im.get("vtadmin", "vitess/vtadmin:latest"),
            "mysqld": next(iter(mysqld.values()), release.mysqld_image) if mysqld else release.mysqld_image,
            "mysqldExporter": im.get("mysqldExporter", release.exporter_image)}


def _child_images(vc: dict, im: dict, release: Release) -> dict:
    """``spec.images`` of a VitessKeyspace / VitessShard (VitessKeyspaceImages): mysqld is an
    object keyed by flavor (DefaultImages: ``mysql80Compatible``), as the CRD's schema says."""
    mysqld = ((vc.get("spec") or {}).get("images") or {}).get("mysqld") or {"mysql80Compatible": release.mysqld_image}
    return {"vttablet": im["vttablet"], "vtorc": im["vtorc"], "vtbackup": im["vtbackup"],
            "mysqld": copy.deepcopy(mysqld), "mysqldExporter": im["mysqldExporter"]}


def _server_version(release: Release, im: dict) -> dict:
    """``mysql_server_version`` as pkg/operator/mysql sets it (v2.12 on), from the mysqld image."""
    value = mysql_server_version(im["mysqld"]) if release.mysql_server_version else None
    return {"mysql_server_version": value} if value else {}


def manages_etcd(vc: dict) -> bool:
    """The operator runs its own etcd unless the cluster names an external lockserver."""
    gl = (vc.get("spec") or {}).get("globalLockserver")
    return not gl or "external" not in gl


def lockserver_address(vc: dict) -> dict:
    cluster, ns = vc["metadata"]["name"], vc["metadata"]["namespace"]
    gl = (vc.get("spec") or {}).get("globalLockserver") or {}
    if "external" in gl:
        return copy.deepcopy(gl["external"])
    return {"implementation": "etcd2", "address": f"{names.lockserver(cluster)}-client.{ns}.svc:{ETCD_CLIENT}",
            "rootPath": f"/vitess/{cluster}/global"}


def shard_names(keyspace: dict) -> list[str]:
    return [s for s, _ in shard_templates(keyspace)] or ["-"]


def _key_range(custom: dict) -> str:
    """A custom shard's ``keyRange`` ({start, end}, hex) as a shard name: {} -> '-', {end: 80} -> '-80'."""
    kr = custom.get("keyRange") or {}
    return f"{kr.get('start', '')}-{kr.get('end', '')}" if isinstance(kr, dict) else str(kr)


def shard_templates(keyspace: dict) -> list[tuple[str, dict]]:
    """Every shard of the keyspace's partitionings with its template, as ShardTemplates()
    (vitesskeyspace_methods.go): deduplicated by key range, a later partitioning's shard
    replacing an earlier one's, sorted by key range."""
    out: dict[str, dict] = {}
    for part in keyspace.get("partitionings") or []:
        if "equal" in part:
            for s in names.equal_shards(int(part["equal"].get("parts", 1))):
                out[s] = part["equal"].get("shardTemplate") or {}
        for custom in ((part.get("custom") or {}).get("shards") or []):
            out[_key_range(custom)] = custom
    return sorted(out.items(), key=lambda kv: (kv[0].partition("-")[0], kv[0].partition("-")[2] or "~"))


def plan(vc: dict, release: Release, default_etcd_image: str | None = None) -> list[Desired]:
    """Every child object of VitessCluster ``vc`` as operator ``release`` makes them, parents
    before children. ``default_etcd_image``: the operator's ``--default_etcd_image``, if given."""
    spec = vc.get("spec") or {}
    cluster, ns = vc["metadata"]["name"], vc["metadata"]["namespace"]
    im = images(vc, release)
    base = {names.CLUSTER: cluster}
    out: list[Desired] = []
    cells = [c["name"] for c in spec.get("cells") or []]
    lock = lockserver_address(vc)

    if manages_etcd(vc):
        out += _etcd(vc, cluster, ns, default_etcd_image or release.etcd_image)

    # cells, their gateways and the cluster-wide services
    for c in spec.get("cells") or []:
        cname = names.cell(cluster, c["name"])
        cell_spec = {"name": c["name"], "zone": c.get("zone", ""), "allCells": cells, "globalLockserver": lock,
                     "gateway": copy.deepcopy(c.get("gateway") or {}), "images": {"vtgate": im["vtgate"]}}
        out.append(Desired("planetscale.com/vitesscells", {
            "apiVersion": "planetscale.com/v2", "kind": "VitessCell",
            "metadata": _meta(cname, ns, {**base, names.CELL: c["name"]}), "spec": cell_spec}))
        gw = c.get("gateway") or {}
        labels = {**base, names.COMPONENT: "vtgate", names.CELL: c["name"]}
        vtgate_flags = {"cell": c["name"], "cells_to_watch": c["name"], "tablet_types_to_wait": "PRIMARY,REPLICA",
                        "mysql_server_port": MYSQL, "port": WEB, "grpc_port": GRPC, "topo_implementation": "etcd2",
                        "topo_global_server_address": lock.get("address", ""),
                        "topo_global_root": lock.get("rootPath", ""), **_server_version(release, im)}
        if ((gw.get("authentication") or {}).get("static") or {}).get("secret"):
            vtgate_flags["mysql_auth_server_impl"] = "static"
            vtgate_flags["mysql_auth_server_static_file"] = "/vt/secrets/mysql-users/users.json"
        vtgate_args = _args(vtgate_flags, gw.get("extraFlags"))
        container = {"name": "vtgate", "image": im["vtgate"], "command": ["/vt/bin/vtgate"], "args": vtgate_args,
                     "ports": [_port("web", WEB), _port("grpc", GRPC), _port("mysql", MYSQL)],
                     "readinessProbe": _probe("/debug/health", WEB), "livenessProbe": _probe("/debug/status", WEB),
                     "resources": copy.deepcopy(gw.get("resources") or {})}
        out.append(Desired("apps/deployments", _deployment(names.vtgate(cluster, c["name"]), ns, labels,
                                                           int(gw.get("replicas", 1)), [container],
                                                           gw.get("affinity"), gw.get("topologySpreadConstraints")),
                           ("planetscale.com/vitesscells", cname)))
        out.append(Desired("services", _service(names.vtgate(cluster, c["name"]), ns, labels, labels,
                                                [("web", WEB), ("grpc", GRPC), ("mysql", MYSQL)]),
                           ("planetscale.com/vitesscells", cname)))
    gw_labels = {**base, names.COMPONENT: "vtgate"}
    out.append(Desired("services", _service(names.vtgate_service(cluster), ns, gw_labels, gw_labels,
                                            [("web", WEB), ("grpc", GRPC), ("mysql", MYSQL)])))

    # vtctld (the "Vitess dashboard")
    dash = spec.get("vitessDashboard") or {}
    dash_cell = (dash.get("cells") or cells or ["zone1"])[0]
    labels = {**base, names.COMPONENT: "vtctld", names.CELL: dash_cell}
    container = {"name": "vtctld", "image": im["vtctld"], "command": ["/vt/bin/vtctld"],
                 "args": _args({"cell": dash_cell, "port": WEB, "grpc_port": GRPC, "service_map": "grpc-vtctl,grpc-vtctld",
                                "topo_implementation": "etcd2", "topo_global_server_address": lock.get("address", ""),
                                "topo_global_root": lock.get("rootPath", "")},
                               dash.get("extraFlags"), _server_version(release, im)),
                 "ports": [_port("web", WEB), _port("grpc", GRPC)],
                 "readinessProbe": _probe("/debug/health", WEB), "livenessProbe": _probe("/debug/status", WEB),
                 "resources": copy.deepcopy(dash.get("resources") or {})}
    out.append(Desired("apps/deployments", _deployment(names.vtctld(cluster, dash_cell), ns, labels,
                                                       int(dash.get("replicas", 1)), [container], dash.get("affinity"))))
    svc_labels = {**base, names.COMPONENT: "vtctld"}
    out.append(Desired("services", _service(names.vtctld_service(cluster), ns, svc_labels, svc_labels,
                                            [("web", WEB), ("grpc", GRPC)])))

    # vtadmin, only when the spec asks for it
    if spec.get("vtadmin"):
        va = spec["vtadmin"]
        va_cell = (va.get("cells") or cells or ["zone1"])[0]
        labels = {**base, names.COMPONENT: "vtadmin", names.CELL: va_cell}
        containers = [
            {"name": "vtadmin-api", "image": im["vtadmin"], "command": ["/vt/bin/vtadmin"],
             "args": [f"--addr=:{VTADMIN_API}", "--http-origin=*", "--rbac", "--rbac-config=/vt/vtadmin_config/rbac.yaml"],
             "ports": [_port("api", VTADMIN_API)], "readinessProbe": _probe("/health", VTADMIN_API),
             "resources": copy.deepcopy(va.get("apiResources") or {})},
            {"name": "vtadmin-web", "image": im["vtadmin"], "command": ["/bin/sh", "-c"],
             "args": ["serve --listen " + str(WEB)],
             "env": [{"name": "VITE_VTADMIN_API_ADDRESS", "value": ",".join(va.get("apiAddresses") or [])}],
             "ports": [_port("web", WEB)], "resources": copy.deepcopy(va.get("webResources") or {})}]
        out.append(Desired("apps/deployments", _deployment(names.vtadmin(cluster, va_cell), ns, labels,
                                                           int(va.get("replicas", 1)), containers, va.get("affinity"))))
        svc_labels = {**base, names.COMPONENT: "vtadmin"}
        out.append(Desired("services", _service(names.vtadmin(cluster, va_cell), ns, svc_labels, svc_labels,
                                                [("web", WEB), ("api", VTADMIN_API)])))

    # the headless service that names tablets
    tl = {**base, names.COMPONENT: "vttablet"}
    out.append(Desired("services", _service(names.tablet_service(cluster), ns, tl, tl,
                                            [("web", WEB), ("grpc", GRPC)], headless=True)))

    backup = spec.get("backup") or {}
    for ks in spec.get("keyspaces") or []:
        out += _keyspace(vc, ks, cluster, ns, im, lock, cells, backup, release)
    return out


def _etcd(vc: dict, cluster: str, ns: str, default_image: str) -> list[Desired]:
    etcd = ((vc.get("spec") or {}).get("globalLockserver") or {}).get("etcd") or {}
    ls = names.lockserver(cluster)
    out = [Desired("planetscale.com/etcdlockservers", {
        "apiVersion": "planetscale.com/v2", "kind": "EtcdLockserver",
        "metadata": _meta(ls, ns, {names.CLUSTER: cluster}),
        "spec": {"image": etcd.get("image") or default_image, "resources": etcd.get("resources") or ETCD_RESOURCES,
                 "createClientService": True, "createPeerService": True, "createPDB": True,
                 **({"affinity": copy.deepcopy(etcd["affinity"])} if etcd.get("affinity") else {}),
                 "dataVolumeClaimTemplate": etcd.get("dataVolumeClaimTemplate") or
                 {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": ETCD_STORAGE}}}}})]
    owner = ("planetscale.com/etcdlockservers", ls)
    sel = {names.COMPONENT: "etcd", names.LOCKSERVER: ls}
    labels = {names.CLUSTER: cluster, **sel}
    # pkg/operator/etcd pod.go: the template's affinity replaces the default, which prefers a
    # node (weight 2), then a zone (weight 1, as no zone is set), without another member
    member = {"labelSelector": {"matchLabels": {names.LOCKSERVER: ls}}}
    affinity = etcd.get("affinity") or {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 2, "podAffinityTerm": {**member, "topologyKey": HOSTNAME}},
        {"weight": 1, "podAffinityTerm": {**member, "topologyKey": ZONE}}]}}
    peers = ",".join(f"{ls}-{i}=http://{ls}-{i}.{ls}-peer.{ns}.svc:{ETCD_PEER}" for i in (1, 2, 3))
    for i in (1, 2, 3):
        name = f"{ls}-{i}"
        pod_labels = {**labels, names.ETCD_INDEX: str(i)}
        claim = etcd.get("dataVolumeClaimTemplate") or {"accessModes": ["ReadWriteOnce"],
                                                        "resources": {"requests": {"storage": ETCD_STORAGE}}}
        out.append(Desired("persistentvolumeclaims", _pvc(name, ns, pod_labels, claim), owner))
        out.append(Desired("pods", {
            "apiVersion": "v1", "kind": "Pod", "metadata": _meta(name, ns, pod_labels),
            "spec": _scheduling({"hostname": name, "subdomain": f"{ls}-peer",
                     "containers": [{"name": "etcd", "image": etcd.get("image") or default_image,
                                     "command": ["etcd"],
                                     "args": [f"--name={name}", "--data-dir=/var/etcd/data",
                                              f"--listen-client-urls=http://0.0.0.0:{ETCD_CLIENT}",
                                              f"--advertise-client-urls=http://{name}.{ls}-peer.{ns}.svc:{ETCD_CLIENT}",
                                              f"--listen-peer-urls=http://0.0.0.0:{ETCD_PEER}",
                                              f"--initial-advertise-peer-urls=http://{name}.{ls}-peer.{ns}.svc:{ETCD_PEER}",
                                              f"--initial-cluster={peers}", "--initial-cluster-state=new"],
                                     "ports": [_port("client", ETCD_CLIENT), _port("peer", ETCD_PEER)],
                                     "readinessProbe": _probe("/health", ETCD_CLIENT),
                                     "resources": copy.deepcopy(etcd.get("resources") or ETCD_RESOURCES),
                                     "volumeMounts": [{"name": "data", "mountPath": "/var/etcd"}]}],
                     "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": name}}]}, affinity)},
                              owner))
    out.append(Desired("services", _service(f"{ls}-client", ns, labels, sel, [("client", ETCD_CLIENT)]), owner))
    out.append(Desired("services", _service(f"{ls}-peer", ns, labels, sel, [("peer", ETCD_PEER)], headless=True), owner))
    return out


def _keyspace(vc, ks: dict, cluster: str, ns: str, im: dict, lock: dict, cells: list[str], backup: dict,
              release: Release) -> list[Desired]:
    out = []
    ks_name = ks["name"]
    kname = names.keyspace(cluster, ks_name)
    base = {names.CLUSTER: cluster, names.KEYSPACE: ks_name}
    locations = copy.deepcopy(backup.get("locations") or [])
    child_images = _child_images(vc, im, release)
    out.append(Desired("planetscale.com/vitesskeyspaces", {
        "apiVersion": "planetscale.com/v2", "kind": "VitessKeyspace", "metadata": _meta(kname, ns, base),
        "spec": {"name": ks_name, "globalLockserver": lock, "images": child_images, "zoneMap": {c: "" for c in cells},
                 "partitionings": copy.deepcopy(ks.get("partitionings") or []),
                 "durabilityPolicy": ks.get("durabilityPolicy", "none"),
                 "turndownPolicy": ks.get("turndownPolicy", "RequireIdle"),
                 "backupLocations": locations, "backupEngine": backup.get("engine", "builtin"),
                 **({"vitessOrchestrator": copy.deepcopy(ks["vitessOrchestrator"])} if "vitessOrchestrator" in ks else {})}}))
    for shard, template in shard_templates(ks):
        sname = names.shard(cluster, ks_name, shard)
        start, _, end = shard.partition("-")
        slabels = {**base, names.SHARD: names.safe_shard(shard)}
        pools = copy.deepcopy(template.get("tabletPools") or [])
        out.append(Desired("planetscale.com/vitessshards", {
            "apiVersion": "planetscale.com/v2", "kind": "VitessShard", "metadata": _meta(sname, ns, slabels),
            "spec": {"name": shard, "keyRange": {"start": start, "end": end}, "globalLockserver": lock,
                     "images": child_images,
                     "zoneMap": {c: "" for c in cells}, "tabletPools": pools,
                     "databaseInitScriptSecret": copy.deepcopy(template.get("databaseInitScriptSecret") or {}),
                     "backupLocations": locations, "backupEngine": backup.get("engine", "builtin"),
                     **({"vitessOrchestrator": copy.deepcopy(ks["vitessOrchestrator"])} if "vitessOrchestrator" in ks else {})}},
            ("planetscale.com/vitesskeyspaces", kname)))
        owner = ("planetscale.com/vitessshards", sname)
        for pool in pools:
            for index in range(int(pool.get("replicas", 0))):
                out += _tablet(cluster, ns, ks_name, shard, pool, index, im, lock, owner, release)
        if "vitessOrchestrator" in ks:
            orc = ks["vitessOrchestrator"] or {}
            orc_cell = (pools[0].get("cell") if pools else None) or (cells or ["zone1"])[0]
            labels = {**slabels, names.COMPONENT: "vtorc", names.CELL: orc_cell}
            container = {"name": "vtorc", "image": im["vtorc"], "command": ["/vt/bin/vtorc"],
                         "args": [f"--port={WEB}", f"--clusters_to_watch={ks_name}/{shard}", "--topo_implementation=etcd2",
                                  f"--topo_global_server_address={lock.get('address', '')}",
                                  f"--topo_global_root={lock.get('rootPath', '')}"] + _flags(orc.get("extraFlags")),
                         "ports": [_port("web", WEB)], "readinessProbe": _probe("/debug/health", WEB),
                         "resources": copy.deepcopy(orc.get("resources") or {})}
            out.append(Desired("apps/deployments", _deployment(names.vtorc(cluster, ks_name, shard, orc_cell), ns,
                                                               labels, 1, [container], orc.get("affinity")), owner))
    return out


def _tablet(cluster, ns, ks, shard, pool, index, im, lock, owner, release: Release) -> list[Desired]:
    cell, ptype = pool.get("cell", "zone1"), pool.get("type", "replica")
    uid = names.tablet_uid(cell, ks, shard, ptype, index)
    a = names.alias(cell, uid)
    name = names.tablet_pod(cluster, a)
    labels = {names.COMPONENT: "vttablet", names.CLUSTER: cluster, names.CELL: cell, names.KEYSPACE: ks,
              names.SHARD: names.safe_shard(shard), names.TABLET_UID: str(uid), names.TABLET_TYPE: ptype,
              names.TABLET_INDEX: str(index)}
    vt, my = pool.get("vttablet") or {}, pool.get("mysqld") or {}
    # pkg/operator/vttablet flags.go + pod.go: extraFlags merged over the base flags, then the
    # incremental restore path unless extraFlags set one, then the advertised MySQL version
    extra = {str(k).lstrip("-"): v for k, v in (vt.get("extraFlags") or {}).items()}
    if release.incremental_restore_path and "builtinbackup-incremental-restore-path" not in extra:
        extra["builtinbackup-incremental-restore-path"] = DATA_ROOT
    vt_args = _args({"tablet-path": a, "init_keyspace": ks, "init_shard": shard, "init_tablet_type": ptype,
                     "port": WEB, "grpc_port": GRPC, "topo_implementation": "etcd2",
                     "topo_global_server_address": lock.get("address", ""), "topo_global_root": lock.get("rootPath", ""),
                     "queryserver-config-query-timeout": release.query_timeout},
                    extra, _server_version(release, im))
    containers = [
        {"name": "vttablet", "image": im["vttablet"], "command": ["/vt/bin/vttablet"],
         "args": vt_args,
         "ports": [_port("web", WEB), _port("grpc", GRPC)],
         "readinessProbe": _probe("/healthz", WEB), "livenessProbe": _probe("/debug/status", WEB),
         "resources": copy.deepcopy(vt.get("resources") or {}),
         "volumeMounts": [{"name": "vt", "mountPath": "/vt/vtdataroot"}]},
        {"name": "mysqld", "image": im["mysqld"], "command": ["/vt/bin/mysqlctld"],
         "args": _flags({"tablet_uid": uid, "socket_file": "/vt/socket/mysqlctl.sock", **_server_version(release, im)}),
         "ports": [_port("mysql", MYSQL)], "resources": copy.deepcopy(my.get("resources") or {}),
         "volumeMounts": [{"name": "vt", "mountPath": "/vt/vtdataroot"}]},
        {"name": "mysqld-exporter", "image": im["mysqldExporter"],
         "args": ["--config.my-cnf=/vt/vtdataroot/exporter.cnf"],
         "ports": [_port("metrics", EXPORTER)],
         "resources": copy.deepcopy(((pool.get("mysqldExporter") or {}).get("resources")) or EXPORTER_RESOURCES)}]
    volumes = [{"name": "vt", "emptyDir": {}}]
    out = []
    if pool.get("dataVolumeClaimTemplate"):
        out.append(Desired("persistentvolumeclaims", _pvc(name, ns, labels, pool["dataVolumeClaimTemplate"]), owner))
        volumes = [{"name": "vt", "persistentVolumeClaim": {"claimName": name}}]
    # pkg/operator/vttablet pod.go: the pool's affinity replaces the default, which prefers a node
    # without another tablet of the shard (weight 2), then of the pool (weight 1)
    shard_sel = {k: labels[k] for k in (names.COMPONENT, names.CLUSTER, names.KEYSPACE, names.SHARD)}
    pool_sel = {**shard_sel, names.CELL: cell, names.TABLET_TYPE: ptype}
    affinity = pool.get("affinity") or {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 2, "podAffinityTerm": {"labelSelector": {"matchLabels": shard_sel}, "topologyKey": HOSTNAME}},
        {"weight": 1, "podAffinityTerm": {"labelSelector": {"matchLabels": pool_sel}, "topologyKey": HOSTNAME}}]}}
    pod_spec = _scheduling({"hostname": name, "subdomain": names.tablet_service(cluster), "containers": containers,
                            "volumes": volumes, "terminationGracePeriodSeconds": 1800,
                            "securityContext": {"runAsUser": 999, "fsGroup": 999}},
                           affinity, pool.get("topologySpreadConstraints"))
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": _meta(name, ns, labels), "spec": pod_spec}
    # reconcile_tablets.go vttabletSpecs: tablets drain (a planned reparent) before a rolling delete
    pod["metadata"]["annotations"] = {DESIRED_HASH: spec_hash(pod_spec), DRAIN_SUPPORTED: TABLET_DRAIN_SUPPORTED}
    out.append(Desired("pods", pod, owner))
    return out
