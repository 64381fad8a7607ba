"""kubedouble: an HTTP-level double of the Kubernetes (K3s) API for tests and the sandbox.

The official ``kubernetes`` client talks to it through an ordinary kubeconfig and sees real
API semantics: discovery, CRUD, patches and server-side apply, watches, validation against
the real schemas, RBAC, events, logs, exec, plus simulated nodes, scheduler, kubelet and
workload controllers. Start with::

    double = KubeDouble(DoubleConfig(nodes=3, node_memory="4Gi"))
    double.start(); double.kubeconfig("/tmp/kubeconfig")

Nothing outside tests and the sandbox should import it.
"""

from .controllers import Controller
from .faults import Faults
from .server import ADMIN_TOKEN, DoubleConfig, KubeDouble
from .status import ApiError
from .store import Change

__all__ = ["ADMIN_TOKEN", "ApiError", "Change", "Controller", "DoubleConfig", "Faults", "KubeDouble"]
