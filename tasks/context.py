"""Where the steps act: one value for the Kubernetes API client and the target's names and addresses.

Every step of the deploy (and the flows that reuse them) takes a ``TargetContext`` whole, so
that a step's parameter list says what it does, not where: the client (with its dry-run and
force-conflicts settings), the namespace and VitessCluster name, the node address NodePorts
are reached on, vtgate's address override and the registry mirror. It holds no secret itself
(the client does, as the target block's kubeconfig made it) and makes no call.
"""

from __future__ import annotations

from dataclasses import dataclass

from blocks.target import VitessTarget
from vtflow import kube


@dataclass(frozen=True)
class TargetContext:
    k: kube.Kube
    namespace: str
    cluster: str
    node_address: str | None = None
    vtgate_address: str | None = None
    registry_mirror: str | None = None

    @classmethod
    def of(cls, target: VitessTarget, k: kube.Kube) -> TargetContext:
        """The context of a target block, acting through ``k`` (made by the caller: dry-run,
        force-conflicts and retries are the caller's choice)."""
        return cls(k=k, namespace=target.namespace, cluster=target.cluster_name, node_address=target.node_address,
                   vtgate_address=target.vtgate_address, registry_mirror=target.registry_mirror)

    @property
    def subject(self) -> str:
        return f"VitessCluster {self.namespace}/{self.cluster}"
