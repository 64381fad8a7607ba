"""``KubeDouble``: the HTTP-level double of a K3s API server, and its configuration.

Owns the parts (store, resource registry, REST semantics, users, faults, logs, exec
handlers, events, controllers) and runs the Starlette app under uvicorn in a background
thread. Tests and the sandbox configure it here (nodes, users, faults, exec handlers,
extra controllers) and then talk to it ONLY through a kubeconfig and the official client.
Controllers use the internal API below (``get/list/create/mutate/delete/record_event``),
which skips validation and authorization: it is the cluster's own machinery, not a client.
"""

from __future__ import annotations

import copy
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import base64

import uvicorn
import yaml

from .admission import default_storage_class
from .api import Api
from .asgi import DoubleApp
from .auth import User, Users, bootstrap_policy
from .controllers import Controller, ControllerManager
from .controllers.crd import CRDController
from .controllers.gc import GarbageCollector
from .controllers.kubelet import Kubelet
from .controllers.namespace import NamespaceController
from .controllers.nodes import NodeController
from .controllers.scheduler import Scheduler
from .controllers.service import EndpointsController
from .controllers.volumes import VolumeBinder
from .controllers.workloads import (DaemonSetController, DeploymentController, JobController,
                                    ReplicaSetController, StatefulSetController)
from .defaults import apply_defaults
from .events import EventRecorder
from .execs import ExecHandler, ExecMatch, ExecRegistry
from .faults import Faults
from .logs import PodLogs
from .openapi import OpenAPI, schema_folder, server_minor
from .resources import Registry
from .selectors import parse_label_selector
from .store import Change, Store
from .tls import ServingCerts, issue

ADMIN_TOKEN = "kubedouble-admin-token"


@dataclass
class DoubleConfig:
    """What kind of cluster the double pretends to be.

    ``git_version`` picks the Kubernetes minor: its API groups (resources.py), its schemas
    (openapi.py) and the version-dependent rules (api.py). Nodes are ``nodes`` x ``node_cpu`` /
    ``node_memory``, or one node per ``node_sizes`` entry (cpu, memory) when that is given."""
    git_version: str = "v1.33.5+k3s1"
    nodes: int | None = None              # 3, or one per node_sizes entry
    node_cpu: str = "2"
    node_memory: str = "4Gi"
    node_sizes: list[tuple[str, str]] | None = None
    node_pods: int = 110
    node_name_prefix: str = "node-"
    node_network: str = "127.0.0"         # node i's InternalIP is <node_network>.<i + 2>
    control_plane: bool = True            # K3s servers carry the control-plane role
    local_path_storage: bool = True       # K3s's default StorageClass "local-path"
    pod_start_delay: float = 0.05         # bound pod -> Running
    pod_stop_delay: float = 0.05          # deleted pod -> containers stopped (capped by its grace period)
    job_duration: float = 0.2             # Running Job pod -> Succeeded
    crash_interval: float = 1.0           # CrashLoopBackOff restart period
    history: int = 10000                  # watch resume window, in writes
    bookmark_interval: float = 5.0
    watch_default_timeout: float = 1800.0
    exec_stdin_idle_s: float = 0.2        # v4 exec: stdin ends after this much silence
    # users besides the admin: token -> (name, groups)
    users: dict[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict)
    # the simulated vitess-operator and etcd-operator (vitess/, controllers/etcd_operator.py);
    # off by default here so plain API tests see a bare cluster; `python -m kubedouble` turns them on
    operators: bool = False
    # HOST:PORT of the MariaDB that plays the tablets' mysqld: enables the vtgate proxy's backend
    # and the SQL of the vtctld exec handler (user/password: an account there that may CREATE DATABASE)
    mysql_backend: str | None = None
    mysql_user: str = "root"
    mysql_password: str = ""
    vtgate_host: str = "127.0.0.1"        # where vtgate Services' node ports listen

    def sizes(self) -> list[tuple[str, str]]:
        """(cpu, memory) of each node, in node order."""
        if self.node_sizes is None:
            return [(self.node_cpu, self.node_memory)] * (3 if self.nodes is None else self.nodes)
        if self.nodes is not None and len(self.node_sizes) != self.nodes:
            raise ValueError(f"kubedouble: node_sizes has {len(self.node_sizes)} entries for {self.nodes} nodes; "
                             "fix: give one size per node, or leave nodes out")
        return [(str(cpu), str(memory)) for cpu, memory in self.node_sizes]

    @property
    def minor(self) -> int:
        return server_minor(self.git_version)

    @property
    def server_version(self) -> str:
        """'1.33.5' from 'v1.33.5+k3s1': the schema version validation uses."""
        m = re.match(r"v?(\d+\.\d+(?:\.\d+)?)", self.git_version)
        return m.group(1) if m else "1.33.0"


def _bootstrap_of(obj: dict, minor: int) -> dict:
    """The bootstrap object as that minor writes it: system:basic-user may create selfsubjectreviews
    only from 1.27, when the APISelfSubjectReview gate went on (bootstrappolicy/policy.go)."""
    if minor >= 27 or obj.get("kind") != "ClusterRole":
        return obj
    rules = [r for r in obj.get("rules") or [] if "selfsubjectreviews" not in (r.get("resources") or [])]
    return {**obj, "rules": rules}


def builtin_controllers() -> list[Controller]:
    return [NamespaceController(), NodeController(), VolumeBinder(), Scheduler(), Kubelet(),
            ReplicaSetController(), DeploymentController(), StatefulSetController(), DaemonSetController(),
            JobController(), EndpointsController(), CRDController(), GarbageCollector()]


class KubeDouble:
    def __init__(self, config: DoubleConfig | None = None, *, faults: Faults | None = None,
                 controllers: Iterable[Controller] = (), builtin: bool = True):
        self.config = config or DoubleConfig()
        # at once, not on the first write: a version without schemas is one clear line (SchemaVersionError)
        schema_folder(self.config.server_version)
        self.config.sizes()
        self.faults = faults or Faults()
        self.store = Store(history=self.config.history)
        self.registry = Registry(self.config.minor)
        self.api = Api(self.store, self.registry, self.config.server_version)
        self.openapi = OpenAPI(self.registry, self.config.server_version, self.config.git_version)
        for gr, obj in bootstrap_policy():  # the default RBAC policy a new cluster starts with
            self.store.create(gr, _bootstrap_of(obj, self.config.minor))
        self.users = Users()
        self.users.add(User("admin", ("system:masters", "system:authenticated"), ADMIN_TOKEN))
        for token, (name, groups) in self.config.users.items():
            self.add_user(name, token, groups)
        self.logs = PodLogs()
        self.execs = ExecRegistry()
        self.events = EventRecorder(self.store)
        self.controllers = ControllerManager(self)
        self.kubelet: Kubelet | None = None
        for c in (builtin_controllers() if builtin else []) + list(controllers):
            self.add_controller(c)
        self.vitess = None      # VitessState when the Vitess simulation is installed
        self.vtgate = None      # its vtgate proxy listeners
        self.vtadmin = None     # its vtadmin HTTP listeners
        if self.config.operators or self.config.mysql_backend:
            from .vitess import install
            install(self, operators=self.config.operators)
        # CRDs become routable the moment they are stored, not when a controller gets to them
        self.store.subscribe(self._crd_listener)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._certs: ServingCerts | None = None
        self.base_url = ""

    # -- lifecycle --------------------------------------------------------------------------
    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Start controllers and the HTTP server; return the base URL."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # accepted sockets inherit it: without it a response split into header and body
        # writes waits for the client's delayed ACK (~40 ms per request)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        port = sock.getsockname()[1]
        self._certs = issue(host)
        self.controllers.start()
        cfg = uvicorn.Config(DoubleApp(self).app, log_level="critical", access_log=False,
                             ws="websockets-sansio", lifespan="off", timeout_graceful_shutdown=1,
                             ssl_certfile=self._certs.certfile, ssl_keyfile=self._certs.keyfile)
        self._server = uvicorn.Server(cfg)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name="kubedouble-http", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"kubedouble: the HTTP server did not start on {host}:{port}")
            time.sleep(0.01)
        self.base_url = f"https://{host}:{port}"
        self.wait_ready()
        return self.base_url

    def wait_ready(self, timeout: float = 5.0) -> None:
        """Until the start-up objects exist (namespaces, nodes, storage class)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            nodes = len(self.list("nodes"))
            ns = self.get("namespaces", "", "default")
            if nodes >= len(self.config.sizes()) and ns and (ns.get("status") or {}).get("phase") == "Active":
                return
            time.sleep(0.01)
        raise RuntimeError("kubedouble: start-up objects did not appear")

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.controllers.stop()
        if self._certs is not None:
            self._certs.remove()
        for listeners in (self.vtgate, self.vtadmin):
            if listeners is not None:
                listeners.close()

    def __enter__(self) -> "KubeDouble":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- clients' view ----------------------------------------------------------------------
    def add_user(self, name: str, token: str, groups: Iterable[str] = ()) -> User:
        user = User(name, tuple(groups) + ("system:authenticated",), token)
        self.users.add(user)
        return user

    def token_of(self, user: str) -> str:
        for token, u in self.users.by_token.items():
            if u.name == user:
                return token
        raise KeyError(f"kubedouble has no user {user!r}; add it with add_user()")

    def kubeconfig(self, path: str | Path, user: str = "admin") -> Path:
        """Write a kubeconfig (context "kubedouble") for ``user``; returns the path."""
        if not self.base_url:
            raise RuntimeError("kubedouble: start() before writing a kubeconfig")
        doc = {"apiVersion": "v1", "kind": "Config", "current-context": "kubedouble",
               "clusters": [{"name": "kubedouble", "cluster": {
                   "server": self.base_url,
                   "certificate-authority-data": base64.b64encode(self.ca_pem).decode()}}],
               "users": [{"name": user, "user": {"token": self.token_of(user)}}],
               "contexts": [{"name": "kubedouble", "context": {"cluster": "kubedouble", "user": user,
                                                               "namespace": "default"}}],
               "preferences": {}}
        path = Path(path)
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    @property
    def ca_pem(self) -> bytes:
        """The PEM of the CA that signed this double's serving certificate (in every kubeconfig)."""
        if self._certs is None:
            raise RuntimeError("kubedouble: start() before asking for its CA")
        return self._certs.ca_pem

    def version_info(self) -> dict:
        major, minor = (self.config.server_version.split(".") + ["0"])[:2]
        return {"major": major, "minor": minor, "gitVersion": self.config.git_version,
                "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
                "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.24.6", "compiler": "gc",
                "platform": "linux/amd64"}

    # -- extension points -------------------------------------------------------------------
    def add_controller(self, controller: Controller) -> None:
        if isinstance(controller, Kubelet):
            self.kubelet = controller
        self.controllers.add(controller)

    def register_exec(self, handler: ExecHandler, *, namespace: str | None = None,
                      label_selector: str | None = None, container: str | None = None) -> Callable[[], None]:
        """Serve exec in matching pods with ``handler(argv, stdin, pod) -> (code, out, err)``.

        Returns a function that unregisters it. Later registrations win over earlier ones.
        """
        return self.execs.register(ExecMatch(namespace, label_selector, container), handler)

    def log(self, namespace: str, pod: str, container: str, line: str) -> None:
        """Append a line to a container's log (what ``GET pods/{pod}/log`` returns)."""
        self.logs.append(namespace, pod, container, line)

    def record_event(self, obj: dict, type_: str, reason: str, message: str, component: str = "kubedouble") -> dict:
        """A core/v1 Event about ``obj`` (repeats are aggregated into ``count``)."""
        return self.events.record(obj, type_, reason, message, component)

    # -- internal API for controllers (no validation, no authorization) -----------------------
    def _gr(self, ref: str) -> tuple[str, str]:
        group, _, plural = ref.rpartition("/")
        return (group, plural)

    def get(self, ref: str, namespace: str, name: str) -> dict | None:
        """Stored object or None; read-only (use ``mutate`` to change it)."""
        return self.store.get(self._gr(ref), namespace, name)

    def list(self, ref: str, namespace: str | None = None, label_selector: str | None = None) -> list[dict]:
        pred = None
        if label_selector:
            match = parse_label_selector(label_selector)
            pred = lambda o: match(o["metadata"].get("labels") or {})  # noqa: E731
        items, _ = self.store.list(self._gr(ref), namespace, pred)
        return items

    def create(self, ref: str, obj: dict) -> dict:
        group, plural = self._gr(ref)
        obj = copy.deepcopy(obj)
        rt = self.registry.by_gr(group, plural)
        if rt is not None:
            obj.setdefault("apiVersion", rt.api_version)
            obj.setdefault("kind", rt.kind)
        apply_defaults(group, plural, obj)
        if (group, plural) == ("", "pods"):
            obj.setdefault("status", {"phase": "Pending", "qosClass": "BestEffort"})
        ns = obj.get("metadata", {}).get("namespace", "") if (rt is None or rt.namespaced) else ""
        return self.store.create((group, plural), obj, namespace=ns)

    def mutate(self, ref: str, namespace: str, name: str, fn: Callable[[dict], object]) -> dict | None:
        return self.store.mutate(self._gr(ref), namespace, name, fn)

    def delete(self, ref: str, namespace: str, name: str) -> dict | None:
        try:
            return self.store.delete(self._gr(ref), namespace, name)
        except Exception:  # noqa: BLE001 - gone already is what the caller wanted
            return None

    def default_storage_class(self) -> str | None:
        return default_storage_class(self.store)

    def _crd_listener(self, change: Change) -> None:
        if change.gr != ("apiextensions.k8s.io", "customresourcedefinitions"):
            return
        if change.type == "DELETED":
            self.registry.unregister_crd(change.obj["metadata"]["name"])
        elif change.old is None or (change.old.get("spec") != change.obj.get("spec")):
            self.registry.register_crd(change.obj)
