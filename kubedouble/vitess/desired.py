"""The objects the vitess-operator wants for one VitessCluster, built as plain data.

``plan(cluster)`` returns every child (EtcdLockserver and its etcd pods, claims and Services,
VitessCells, VitessKeyspaces, VitessShards, the vtctld / vtgate / vtadmin / vtorc
Deployments, tablet pods and their claims, Services) with its owner named by key, so the
applier (operator.py) can create them parent first and fill in ownerReferences. Pure
functions over dicts: no store, no clock, no randomness (the same spec gives the same plan).

Ports, labels and naming follow FACTS.md and the real operator's names (see names.py).
NOT known from upstream files, so chosen as plausible and marked where used: default
images, etcd and mysqld-exporter resources, the etcd claim size, flag sets.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass

from . import names

# not in the CRDs or examples: the real operator's defaults are compiled in; these are stand-ins
DEFAULT_VITESS_IMAGE = "vitess/lite:latest"
DEFAULT_ETCD_IMAGE = "quay.io/coreos/etcd:v3.5.17"
DEFAULT_EXPORTER_IMAGE = "prom/mysqld-exporter:v0.14.0"
# chosen so the 101 example totals what FACTS.md measured (~1.3 CPU, ~3.2 GiB of requests)
ETCD_RESOURCES = {"requests": {"cpu": "100m", "memory": "100Mi"}, "limits": {"memory": "256Mi"}}
EXPORTER_RESOURCES = {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}}
ETCD_STORAGE = "1Gi"
DESIRED_HASH = "planetscale.com/desired-state-hash"  # annotation name is ours; the real one may differ

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
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def _meta(name: str, ns: str, labels: dict) -> dict:
    return {"name": name, "namespace": ns, "labels": dict(labels)}


def _probe(path: str, port: int) -> dict:
    return {"httpGet": {"path": path, "port": port, "scheme": "HTTP"}, "initialDelaySeconds": 5,
            "periodSeconds": 10, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3}


def _port(name: str, port: int) -> dict:
    return {"name": name, "containerPort": port, "protocol": "TCP"}


def _flags(flags: dict) -> list[str]:
    return [f"--{k}={v}" for k, v in sorted((flags or {}).items())]


def _deployment(name: str, ns: str, labels: dict, replicas: int, containers: list[dict]) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(name, ns, labels),
            "spec": {"replicas": replicas, "selector": {"matchLabels": dict(labels)},
                     "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                     "template": {"metadata": {"labels": dict(labels)},
                                  "spec": {"containers": containers, "terminationGracePeriodSeconds": 60}}}}


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


def images(vc: dict) -> dict:
    im = (vc.get("spec") or {}).get("images") or {}
    mysqld = im.get("mysqld") or {}
    return {"vtctld": im.get("vtctld", DEFAULT_VITESS_IMAGE), "vtgate": im.get("vtgate", DEFAULT_VITESS_IMAGE),
            "vttablet": im.get("vttablet", DEFAULT_VITESS_IMAGE), "vtorc": im.get("vtorc", DEFAULT_VITESS_IMAGE),
            "vtbackup": im.get("vtbackup", DEFAULT_VITESS_IMAGE), "vtadmin": im.get("vtadmin", "vitess/vtadmin:latest"),
            "mysqld": next(iter(mysqld.values()), DEFAULT_VITESS_IMAGE) if mysqld else DEFAULT_VITESS_IMAGE,
            "mysqldExporter": im.get("mysqldExporter", DEFAULT_EXPORTER_IMAGE)}


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
    out = []
    for part in keyspace.get("partitionings") or []:
        if "equal" in part:
            out += names.equal_shards(int(part["equal"].get("parts", 1)))
        for custom in ((part.get("custom") or {}).get("shards") or []):
            out.append(custom.get("keyRange") or custom.get("name") or "-")
    return out or ["-"]


def shard_templates(keyspace: dict) -> list[tuple[str, dict]]:
    out = []
    for part in keyspace.get("partitionings") or []:
        if "equal" in part:
            for s in names.equal_shards(int(part["equal"].get("parts", 1))):
                out.append((s, part["equal"].get("shardTemplate") or {}))
        for custom in ((part.get("custom") or {}).get("shards") or []):
            out.append((custom.get("keyRange") or "-", custom))
    return out


def plan(vc: dict) -> list[Desired]:
    """Every child object of VitessCluster ``vc``, parents before children."""
    spec = vc.get("spec") or {}
    cluster, ns = vc["metadata"]["name"], vc["metadata"]["namespace"]
    im = images(vc)
    base = {names.CLUSTER: cluster}
    out: list[Desired] = []
    cells = [c["name"] for c in spec.get("cells") or []]
    lock = lockserver_address(vc)

    if manages_etcd(vc):
        out += _etcd(vc, cluster, ns)

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
        vtgate_args = ["--cell=" + c["name"], f"--cells_to_watch={c['name']}", "--tablet_types_to_wait=PRIMARY,REPLICA",
                       f"--mysql_server_port={MYSQL}", f"--port={WEB}", f"--grpc_port={GRPC}",
                       "--topo_implementation=etcd2", f"--topo_global_server_address={lock.get('address', '')}",
                       f"--topo_global_root={lock.get('rootPath', '')}"] + _flags(gw.get("extraFlags"))
        if ((gw.get("authentication") or {}).get("static") or {}).get("secret"):
            vtgate_args.append("--mysql_auth_server_impl=static")
            vtgate_args.append("--mysql_auth_server_static_file=/vt/secrets/mysql-users/users.json")
        container = {"name": "vtgate", "image": im["vtgate"], "command": ["/vt/bin/vtgate"], "args": vtgate_args,
                     "ports": [_port("web", WEB), _port("grpc", GRPC), _port("mysql", MYSQL)],
                     "readinessProbe": _probe("/debug/health", WEB), "livenessProbe": _probe("/debug/status", WEB),
                     "resources": copy.deepcopy(gw.get("resources") or {})}
        out.append(Desired("apps/deployments", _deployment(names.vtgate(cluster, c["name"]), ns, labels,
                                                           int(gw.get("replicas", 1)), [container]),
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
                 "args": [f"--cell={dash_cell}", f"--port={WEB}", f"--grpc_port={GRPC}", "--service_map=grpc-vtctl,grpc-vtctld",
                          "--topo_implementation=etcd2", f"--topo_global_server_address={lock.get('address', '')}",
                          f"--topo_global_root={lock.get('rootPath', '')}"] + _flags(dash.get("extraFlags")),
                 "ports": [_port("web", WEB), _port("grpc", GRPC)],
                 "readinessProbe": _probe("/debug/health", WEB), "livenessProbe": _probe("/debug/status", WEB),
                 "resources": copy.deepcopy(dash.get("resources") or {})}
    out.append(Desired("apps/deployments", _deployment(names.vtctld(cluster, dash_cell), ns, labels,
                                                       int(dash.get("replicas", 1)), [container])))
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
                                                           int(va.get("replicas", 1)), containers)))
        svc_labels = {**base, names.COMPONENT: "vtadmin"}
        out.append(Desired("services", _service(names.vtadmin(cluster, va_cell), ns, svc_labels, svc_labels,
                                                [("web", WEB), ("api", VTADMIN_API)])))

    # the headless service that names tablets
    tl = {**base, names.COMPONENT: "vttablet"}
    out.append(Desired("services", _service(names.tablet_service(cluster), ns, tl, tl,
                                            [("web", WEB), ("grpc", GRPC)], headless=True)))

    backup = spec.get("backup") or {}
    for ks in spec.get("keyspaces") or []:
        out += _keyspace(vc, ks, cluster, ns, im, lock, cells, backup)
    return out


def _etcd(vc: dict, cluster: str, ns: str) -> list[Desired]:
    etcd = ((vc.get("spec") or {}).get("globalLockserver") or {}).get("etcd") or {}
    ls = names.lockserver(cluster)
    out = [Desired("planetscale.com/etcdlockservers", {
        "apiVersion": "planetscale.com/v2", "kind": "EtcdLockserver",
        "metadata": _meta(ls, ns, {names.CLUSTER: cluster}),
        "spec": {"image": etcd.get("image", DEFAULT_ETCD_IMAGE), "resources": etcd.get("resources") or ETCD_RESOURCES,
                 "createClientService": True, "createPeerService": True, "createPDB": True,
                 "dataVolumeClaimTemplate": etcd.get("dataVolumeClaimTemplate") or
                 {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": ETCD_STORAGE}}}}})]
    owner = ("planetscale.com/etcdlockservers", ls)
    sel = {names.COMPONENT: "etcd", names.LOCKSERVER: ls}
    labels = {names.CLUSTER: cluster, **sel}
    peers = ",".join(f"{ls}-{i}=http://{ls}-{i}.{ls}-peer.{ns}.svc:{ETCD_PEER}" for i in (1, 2, 3))
    for i in (1, 2, 3):
        name = f"{ls}-{i}"
        pod_labels = {**labels, names.ETCD_INDEX: str(i)}
        claim = etcd.get("dataVolumeClaimTemplate") or {"accessModes": ["ReadWriteOnce"],
                                                        "resources": {"requests": {"storage": ETCD_STORAGE}}}
        out.append(Desired("persistentvolumeclaims", _pvc(name, ns, pod_labels, claim), owner))
        out.append(Desired("pods", {
            "apiVersion": "v1", "kind": "Pod", "metadata": _meta(name, ns, pod_labels),
            "spec": {"hostname": name, "subdomain": f"{ls}-peer",
                     "containers": [{"name": "etcd", "image": etcd.get("image", DEFAULT_ETCD_IMAGE),
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
                     "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": name}}]}}, owner))
    out.append(Desired("services", _service(f"{ls}-client", ns, labels, sel, [("client", ETCD_CLIENT)]), owner))
    out.append(Desired("services", _service(f"{ls}-peer", ns, labels, sel, [("peer", ETCD_PEER)], headless=True), owner))
    return out


def _keyspace(vc, ks: dict, cluster: str, ns: str, im: dict, lock: dict, cells: list[str], backup: dict) -> list[Desired]:
    out = []
    ks_name = ks["name"]
    kname = names.keyspace(cluster, ks_name)
    base = {names.CLUSTER: cluster, names.KEYSPACE: ks_name}
    locations = copy.deepcopy(backup.get("locations") or [])
    out.append(Desired("planetscale.com/vitesskeyspaces", {
        "apiVersion": "planetscale.com/v2", "kind": "VitessKeyspace", "metadata": _meta(kname, ns, base),
        "spec": {"name": ks_name, "globalLockserver": lock, "images": im, "zoneMap": {c: "" for c in cells},
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
            "spec": {"name": shard, "keyRange": {"start": start, "end": end}, "globalLockserver": lock, "images": im,
                     "zoneMap": {c: "" for c in cells}, "tabletPools": pools,
                     "databaseInitScriptSecret": copy.deepcopy(template.get("databaseInitScriptSecret") or {}),
                     "backupLocations": locations, "backupEngine": backup.get("engine", "builtin"),
                     **({"vitessOrchestrator": copy.deepcopy(ks["vitessOrchestrator"])} if "vitessOrchestrator" in ks else {})}},
            ("planetscale.com/vitesskeyspaces", kname)))
        owner = ("planetscale.com/vitessshards", sname)
        for pool in pools:
            for index in range(int(pool.get("replicas", 0))):
                out += _tablet(cluster, ns, ks_name, shard, pool, index, im, lock, owner)
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
                                                               labels, 1, [container]), owner))
    return out


def _tablet(cluster, ns, ks, shard, pool, index, im, lock, owner) -> list[Desired]:
    cell, ptype = pool.get("cell", "zone1"), pool.get("type", "replica")
    uid = names.tablet_uid(cell, ks, shard, ptype, index)
    a = names.alias(cell, uid)
    name = names.tablet_pod(cluster, a)
    labels = {names.COMPONENT: "vttablet", names.CLUSTER: cluster, names.CELL: cell, names.KEYSPACE: ks,
              names.SHARD: names.safe_shard(shard), names.TABLET_UID: str(uid), names.TABLET_TYPE: ptype,
              names.TABLET_INDEX: str(index)}
    vt, my = pool.get("vttablet") or {}, pool.get("mysqld") or {}
    containers = [
        {"name": "vttablet", "image": im["vttablet"], "command": ["/vt/bin/vttablet"],
         "args": [f"--tablet-path={a}", f"--init_keyspace={ks}", f"--init_shard={shard}",
                  f"--init_tablet_type={ptype}", f"--port={WEB}", f"--grpc_port={GRPC}",
                  "--topo_implementation=etcd2", f"--topo_global_server_address={lock.get('address', '')}",
                  f"--topo_global_root={lock.get('rootPath', '')}"] + _flags(vt.get("extraFlags")),
         "ports": [_port("web", WEB), _port("grpc", GRPC)],
         "readinessProbe": _probe("/healthz", WEB), "livenessProbe": _probe("/debug/status", WEB),
         "resources": copy.deepcopy(vt.get("resources") or {}),
         "volumeMounts": [{"name": "vt", "mountPath": "/vt/vtdataroot"}]},
        {"name": "mysqld", "image": im["mysqld"], "command": ["/vt/bin/mysqlctld"],
         "args": [f"--tablet_uid={uid}", "--socket_file=/vt/socket/mysqlctl.sock"],
         "ports": [_port("mysql", MYSQL)], "resources": copy.deepcopy(my.get("resources") or {}),
         "volumeMounts": [{"name": "vt", "mountPath": "/vt/vtdataroot"}]},
        {"name": "mysqld-exporter", "image": im["mysqldExporter"],
         "args": ["--config.my-cnf=/vt/vtdataroot/exporter.cnf"],
         "ports": [_port("metrics", EXPORTER)], "resources": copy.deepcopy(EXPORTER_RESOURCES)}]
    volumes = [{"name": "vt", "emptyDir": {}}]
    out = []
    if pool.get("dataVolumeClaimTemplate"):
        out.append(Desired("persistentvolumeclaims", _pvc(name, ns, labels, pool["dataVolumeClaimTemplate"]), owner))
        volumes = [{"name": "vt", "persistentVolumeClaim": {"claimName": name}}]
    pod_spec = {"hostname": name, "subdomain": names.tablet_service(cluster), "containers": containers,
                "volumes": volumes, "terminationGracePeriodSeconds": 1800,
                "securityContext": {"runAsUser": 999, "fsGroup": 999}}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": _meta(name, ns, labels), "spec": pod_spec}
    pod["metadata"]["annotations"] = {DESIRED_HASH: spec_hash(pod_spec)}
    out.append(Desired("pods", pod, owner))
    return out
