"""Nodes: created at start from the double's configuration (each node's cpu and memory, the version).

The kubelet and kube-proxy report the server's gitVersion, as on a K3s server node.
"""

from __future__ import annotations

from ..store import now_rfc3339
from . import Controller


class NodeController(Controller):
    name = "nodes"

    def start(self, double) -> None:
        cfg = double.config
        for i, (cpu, memory) in enumerate(cfg.sizes()):
            name = f"{cfg.node_name_prefix}{i + 1}"
            address = f"{cfg.node_network}.{i + 2}"
            if double.get("nodes", "", name) is not None:
                continue
            now = now_rfc3339()
            resources = {"cpu": cpu, "memory": memory, "pods": str(cfg.node_pods), "ephemeral-storage": "50Gi"}
            labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                      "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "amd64",
                      "node.kubernetes.io/instance-type": "k3s"}
            if cfg.control_plane:
                labels.update({"node-role.kubernetes.io/control-plane": "true",
                               "node-role.kubernetes.io/master": "true", "node-role.kubernetes.io/etcd": "true"})
            double.create("nodes", {
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "labels": labels,
                             "annotations": {"k3s.io/internal-ip": address}},
                "spec": {"podCIDR": f"10.42.{i}.0/24", "podCIDRs": [f"10.42.{i}.0/24"],
                         "providerID": f"k3s://{name}"},
                "status": {
                    "capacity": dict(resources), "allocatable": dict(resources),
                    "addresses": [{"type": "InternalIP", "address": address},
                                  {"type": "Hostname", "address": name}],
                    "conditions": [
                        {"type": t, "status": "False", "reason": r, "message": m,
                         "lastHeartbeatTime": now, "lastTransitionTime": now}
                        for t, r, m in (("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                                        ("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                                        ("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"))
                    ] + [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                          "message": "kubelet is posting ready status", "lastHeartbeatTime": now,
                          "lastTransitionTime": now}],
                    "nodeInfo": {"kubeletVersion": cfg.git_version, "kubeProxyVersion": cfg.git_version,
                                 "containerRuntimeVersion": "containerd://2.0.5-k3s1", "operatingSystem": "linux",
                                 "architecture": "amd64", "osImage": "Debian GNU/Linux 12 (bookworm)",
                                 "kernelVersion": "6.1.0-kubedouble", "machineID": "", "systemUUID": "",
                                 "bootID": ""},
                    "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                },
            })
