"""Where vtgate's MySQL port is reachable from where the flow runs (data load, verification, health).

Order: the target block's ``vtgate_address`` when set; else a NodePort (or LoadBalancer)
Service of this cluster that selects vtgate pods (the deploy creates ``<cluster>-vtgate-nodeport``
by default), reached at the target's ``node_address``; else the operator's gateway Service by its
cluster DNS name, which only resolves when the flow runs inside the cluster (a Prefect worker
pod). Reads Services through ``vtflow.kube``; never connects to anything itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from vtflow import kube, names
from vtflow.address import parse_address
from vtflow.errors import ConfigError, TransientError

MYSQL_PORT = 3306


@dataclass(frozen=True)
class Gateway:
    host: str
    port: int
    how: str      # where the address came from, for logs and errors

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def _mysql_port(svc: dict) -> dict | None:
    for p in (svc.get("spec") or {}).get("ports") or []:
        if p.get("name") == "mysql" or p.get("port") == MYSQL_PORT or p.get("targetPort") in (MYSQL_PORT, "mysql"):
            return p
    return None


def _selects_vtgate(svc: dict, cluster: str) -> bool:
    sel = (svc.get("spec") or {}).get("selector") or {}
    return sel.get(names.COMPONENT) == names.VTGATE and sel.get(names.CLUSTER) == cluster


def choose(services: list[dict], cluster: str, node_address: str | None, override: str | None,
           gateway_service: str | None = None) -> Gateway:
    """Pure: the address to use, from the Services of the cluster's namespace."""
    if override:
        host, port = parse_address(override, "Vitess target block: vtgate_address")
        return Gateway(host, port, "the target block's vtgate_address")
    candidates = [s for s in services if _selects_vtgate(s, cluster) and _mysql_port(s)]
    for svc in sorted(candidates, key=lambda s: s["metadata"]["name"]):
        spec, port = svc.get("spec") or {}, _mysql_port(svc)
        name = f"Service {svc['metadata']['namespace']}/{svc['metadata']['name']}"
        ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        if spec.get("type") == "LoadBalancer" and ingress:
            host = ingress[0].get("ip") or ingress[0].get("hostname")
            return Gateway(host, int(port["port"]), f"{name} (load balancer)")
        if spec.get("type") in ("NodePort", "LoadBalancer") and port.get("nodePort"):
            if not node_address:
                raise ConfigError("Vitess target block", f"has no node_address, needed to reach vtgate through {name}.",
                                  "set node_address to a node's address (vtflow block create target --node-address IP).")
            return Gateway(node_address, int(port["nodePort"]), f"{name} (NodePort)")
    named = [s for s in candidates if s["metadata"]["name"] == gateway_service] or \
        [s for s in candidates if (s.get("spec") or {}).get("type", "ClusterIP") == "ClusterIP"]
    if named:
        svc = named[0]
        ns = svc["metadata"]["namespace"]
        return Gateway(f"{svc['metadata']['name']}.{ns}.svc", int(_mysql_port(svc)["port"]),
                       f"Service {ns}/{svc['metadata']['name']} (cluster DNS: reachable from inside the cluster only)")
    raise TransientError(f"VitessCluster {cluster}", "has no vtgate Service yet.",
                         "wait for the cluster to be ready (the deploy flow's cluster step), then re-run.")


def discover(k: kube.Kube, namespace: str, cluster: str, node_address: str | None, override: str | None) -> Gateway:
    if override:
        return choose([], cluster, node_address, override)
    vc = k.get("planetscale.com/v2", "VitessCluster", cluster, namespace) or {}
    return choose(k.list("v1", "Service", namespace), cluster, node_address, None,
                  (vc.get("status") or {}).get("gatewayServiceName"))


UNREACHABLE_FIX = ("check that vtgate is ready; from outside the cluster, give the cluster spec a vtgate_node_port "
                   "(the default, 30306) or set the target block's vtgate_address.")
