"""A stand-in for vtadmin: its API and its web UI over real HTTP, so clients of vtadmin can be tested.

``VtadminListeners`` (a Controller) opens one TCP listener per port of every Service that selects
vtadmin pods (``planetscale.com/component=vtadmin``): the api port (target 15001 or "api") and the
web port (target 15000 or "web"), on ``<host>:<nodePort>`` for NodePort/LoadBalancer Services (host
127.0.0.1 by default), on an ephemeral port otherwise (``address(ns, service, port_name)`` tells
tests where). A Service with no Ready endpoints resets new connections, as kube-proxy does when
no pod backs it. It only reads the store and VitessState: it never writes Kubernetes objects.

Checked against upstream (vitessio/vitess go/vt/vtadmin/api.go, http/response.go, http/clusters.go,
http/tablets.go, errors/typed_error.go, cluster/cluster.go, proto/vtadmin.proto,
go/vt/proto/vtadmin/vtadmin.pb.go; planetscale/vitess-operator
pkg/controller/vitesscluster/reconcile_vtadmin.go; vitessio/vitess docker/binaries/vtadmin/default.conf
and web/vtadmin/index.html):
- api: ``GET /health`` -> 200 "ok\\n". Under ``/api``: ``/clusters``, ``/tablets`` and
  ``/tablet/{alias}`` answer vtadmin's envelope ``{"result": ..., "ok": true}`` (Go's
  encoding/json over the protobuf structs: snake_case keys, enums as numbers, empty fields
  omitted), errors ``{"error": {"message", "code"}, "ok": false}`` with the error's status (an
  error that is not typed is code "unknown", 500). The operator names the one cluster of a
  vtadmin after its VitessCluster (id = name = the VitessCluster's name). Tablets are what
  vtadmin parses from vtgate's ``SHOW VITESS_TABLETS``: cluster, tablet {alias, hostname,
  keyspace, shard, type, primary_term_start_time}, state (1 SERVING, 2 NOT_SERVING).
- api, unknown paths: gorilla/mux's default 404 (plain text "404 page not found"), NOT the JSON
  envelope: vtadmin's router sets no NotFoundHandler.
- web: nginx serves the built single-page app for every path (``try_files $uri /index.html``) and
  ``/config/config.js`` (the ``window.env`` the operator writes from ``spec.vtadmin``).
NOT verified, kept minimal: the JSON's Content-Type (response.go sets none, so Go sniffs
"text/plain; charset=utf-8", which is what this sends); exact error message texts; gzip (vtadmin
compresses when asked, this never does); the other /api routes (all 404 here); HTTP methods
besides GET; the page's body (a small placeholder, not the built app).
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from datetime import datetime
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, unquote, urlsplit

from ..controllers import Controller
from ..controllers.common import has_ready_endpoints, reset
from . import names
from .desired import VTADMIN_API, WEB
from .state import Tablet, VitessState

log = logging.getLogger("kubedouble.vtadmin")

# topodata.TabletType and vtadmin.Tablet.ServingState, as numbers (encoding/json writes enums so)
TABLET_TYPES = {"UNKNOWN": 0, "PRIMARY": 1, "MASTER": 1, "REPLICA": 2, "RDONLY": 3, "BATCH": 3, "SPARE": 4,
                "EXPERIMENTAL": 5, "BACKUP": 6, "RESTORE": 7, "DRAINED": 8}
SERVING, NOT_SERVING = 1, 2
GO_TEXT = "text/plain; charset=utf-8"

INDEX_HTML = """<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <script src="/config/config.js"></script>
    <title>VTAdmin</title>
  </head>
  <body>
    <noscript>You need to enable JavaScript to run this app.</noscript>
    <div id="root">VTAdmin (kubedouble stand-in)</div>
  </body>
</html>
"""


def role_of(port: dict) -> str | None:
    """'api' / 'web' for a Service port that reaches vtadmin-api / vtadmin-web, else None."""
    target = port.get("targetPort", port.get("port"))
    if target in (VTADMIN_API, "api"):
        return "api"
    if target in (WEB, "web"):
        return "web"
    return None


def _go_omit(d: dict) -> dict:
    """Drop what Go's ``omitempty`` drops: zero numbers, empty strings, nil, empty maps and lists."""
    return {k: v for k, v in d.items() if v not in (None, "", 0, False, {}, [])}


def tablet_json(t: Tablet, cluster: str) -> dict:
    """A vtadmin.Tablet as vtadmin's HTTP API writes it."""
    tablet = _go_omit({"alias": _go_omit({"cell": t.cell, "uid": t.uid}), "hostname": t.hostname,
                       "keyspace": t.keyspace, "shard": t.shard, "type": TABLET_TYPES.get(t.type, 0)})
    if t.primary_term_start:
        try:
            when = datetime.fromisoformat(t.primary_term_start.replace("Z", "+00:00"))
            tablet["primary_term_start_time"] = _go_omit({"seconds": int(when.timestamp()),
                                                          "nanoseconds": when.microsecond * 1000})
        except ValueError:
            pass
    return {"cluster": {"id": cluster, "name": cluster}, "tablet": tablet,
            "state": SERVING if t.serving else NOT_SERVING}


class _Listener:
    def __init__(self, sock: socket.socket, port: int, node_port: int, role: str):
        self.sock, self.port, self.node_port, self.role = sock, port, node_port, role
        self.conns: set[socket.socket] = set()
        self.lock = threading.Lock()

    def close(self) -> None:
        _close_socket(self.sock)
        with self.lock:
            conns, self.conns = list(self.conns), set()
        for c in conns:
            _close_socket(c)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30                       # idle keep-alive connections end
    server: "_Context"

    def log_message(self, fmt, *args) -> None:   # quiet, like the rest of the double
        log.debug("vtadmin %s: " + fmt, self.server.role, *args)

    def send_response(self, code, message=None) -> None:
        # Go's net/http and nginx do not say "BaseHTTP/Python": only the Date header is common
        self.log_request(code)
        self.send_response_only(code, message)
        self.send_header("Date", self.date_time_string())
        if self.server.role == "web":
            self.send_header("Server", "nginx")

    def _send(self, status: int, body: bytes, content_type: str, extra: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        ctx = self.server
        if ctx.role == "web":
            status, body, ctype = ctx.owner.web(ctx.namespace, ctx.service, url.path)
            return self._send(status, body, ctype)
        if url.path == "/health":
            return self._send(200, b"ok\n", GO_TEXT)
        routed = ctx.owner.api(ctx.namespace, ctx.service, url.path, parse_qs(url.query))
        if routed is None:   # gorilla/mux's NotFoundHandler
            return self._send(404, b"404 page not found\n", GO_TEXT, {"X-Content-Type-Options": "nosniff"})
        status, envelope = routed
        self._send(status, json.dumps(envelope, separators=(",", ":")).encode(), GO_TEXT)


class _Context:
    """What a handler needs to know about the listener it came through (BaseRequestHandler's "server")."""

    def __init__(self, owner: "VtadminListeners", namespace: str, service: str, role: str):
        self.owner, self.namespace, self.service, self.role = owner, namespace, service, role


class VtadminListeners(Controller):
    """Keeps one HTTP listener per vtadmin port of each vtadmin Service, for as long as the Service exists."""
    name = "vtadmin-http"
    watches = ("services",)

    def __init__(self, double, state: VitessState, host: str = "127.0.0.1"):
        self.double, self.state, self.host = double, state, host
        self._lock = threading.Lock()
        self._listeners: dict[tuple[str, str, str], _Listener] = {}   # (ns, service, port name) ->

    # -- controller side -----------------------------------------------------------------------
    def reconcile(self, double, svc: dict) -> None:
        ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
        spec = svc.get("spec") or {}
        if (spec.get("selector") or {}).get(names.COMPONENT) != "vtadmin":
            return self.deleted(double, svc)
        node_ports = spec.get("type") in ("NodePort", "LoadBalancer")
        wanted: dict[str, tuple[str, int]] = {}
        for p in spec.get("ports") or []:
            role = role_of(p)
            if role:
                wanted[p.get("name") or role] = (role, (p.get("nodePort") or 0) if node_ports else 0)
        with self._lock:     # closed before address() stops naming them: a None address is a closed port
            current = {k[2]: v for k, v in self._listeners.items() if k[:2] == (ns, name)}
            for pn, lst in current.items():
                if wanted.get(pn) != (lst.role, lst.node_port):
                    self._listeners.pop((ns, name, pn)).close()
        for port_name, (role, node_port) in wanted.items():
            with self._lock:
                if (ns, name, port_name) in self._listeners:
                    continue
            self._open(double, svc, port_name, role, node_port)

    def _open(self, double, svc: dict, port_name: str, role: str, node_port: int) -> None:
        ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, node_port))
        except OSError as e:
            sock.close()
            double.record_event(svc, "Warning", "NodePortUnavailable",
                                f"kubedouble: cannot listen on {self.host}:{node_port} for vtadmin {role}: {e}",
                                "kubedouble-vtadmin")
            return
        sock.listen(64)
        lst = _Listener(sock, sock.getsockname()[1], node_port, role)
        with self._lock:
            self._listeners[(ns, name, port_name)] = lst
        ctx = _Context(self, ns, name, role)
        threading.Thread(target=self._accept, args=(lst, ctx), daemon=True, name=f"vtadmin-{role}-{name}").start()

    def deleted(self, double, svc: dict) -> None:
        key = (svc["metadata"]["namespace"], svc["metadata"]["name"])
        with self._lock:
            for k in [k for k in self._listeners if k[:2] == key]:
                self._listeners.pop(k).close()

    def close(self) -> None:
        with self._lock:
            for lst in self._listeners.values():
                lst.close()
            self._listeners.clear()

    # -- for tests and the sandbox -------------------------------------------------------------
    def address(self, namespace: str, service: str, port_name: str) -> tuple[str, int] | None:
        """Where the Service's port ``port_name`` ("web", "api") listens, or None."""
        with self._lock:
            lst = self._listeners.get((namespace, service, port_name))
        return (self.host, lst.port) if lst else None

    # -- serving side --------------------------------------------------------------------------
    def _accept(self, lst: _Listener, ctx: _Context) -> None:
        while True:
            try:
                conn, addr = lst.sock.accept()
            except OSError:
                return
            if not has_ready_endpoints(self.double, ctx.namespace, ctx.service):
                # no vtadmin pod behind the Service: reset, as kube-proxy rejects it
                reset(conn)
                continue
            with lst.lock:
                lst.conns.add(conn)
            threading.Thread(target=self._serve, args=(lst, conn, addr, ctx), daemon=True,
                             name=f"vtadmin-{ctx.role}-conn").start()

    @staticmethod
    def _serve(lst: _Listener, conn: socket.socket, addr, ctx: _Context) -> None:
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _Handler(conn, addr, ctx)
        except (OSError, ValueError) as e:
            log.debug("vtadmin connection ended: %s", e)
        finally:
            with lst.lock:
                lst.conns.discard(conn)
            _close_socket(conn)

    def _clusters(self, ns: str, service: str) -> list[str]:
        """The vtadmin's clusters: the VitessCluster the Service selects, else every one in the namespace."""
        svc = self.double.get("services", ns, service) or {}
        cluster = ((svc.get("spec") or {}).get("selector") or {}).get(names.CLUSTER)
        if cluster:
            return [cluster]
        return sorted(vc["metadata"]["name"] for vc in self.double.list("planetscale.com/vitessclusters", ns))

    def api(self, ns: str, service: str, path: str, query: dict[str, list[str]]) -> tuple[int, dict] | None:
        """(status, envelope) for an /api path, or None for a path vtadmin has no route for."""
        clusters = self._clusters(ns, service)
        wanted = query.get("cluster_id", []) + query.get("cluster", [])
        picked = [c for c in clusters if c in wanted] if wanted else clusters
        if path == "/api/clusters":
            return 200, _ok({"clusters": [{"id": c, "name": c} for c in clusters]})
        if path == "/api/tablets":
            return 200, _ok(_go_omit({"tablets": [tablet_json(t, c) for c in picked
                                                   for t in self.state.tablets(self.double, ns, c)]}))
        if path.startswith("/api/tablet/") and path.count("/") == 3:
            alias = unquote(path.rsplit("/", 1)[1])
            found = [tablet_json(t, c) for c in picked for t in self.state.tablets(self.double, ns, c)
                     if t.alias == alias]
            if len(found) == 1:
                return 200, _ok(found[0])
            what = "no such tablet" if not found else "multiple tablets found"
            return 500, _error(f"{what}: {alias}, searched clusters = [{' '.join(wanted or clusters)}]", "unknown")
        return None

    def web(self, ns: str, service: str, path: str) -> tuple[int, bytes, str]:
        if path == "/config/config.js":
            return 200, self._config_js(ns, service).encode(), "application/javascript"
        return 200, INDEX_HTML.encode(), "text/html"

    def _config_js(self, ns: str, service: str) -> str:
        """The ``window.env`` the operator puts in the web container (from the VitessCluster's spec.vtadmin)."""
        va: dict = {}
        for c in self._clusters(ns, service):
            vc = self.double.get("planetscale.com/vitessclusters", ns, c) or {}
            va = (vc.get("spec") or {}).get("vtadmin") or {}
            if va:
                break
        env = [("REACT_APP_VTADMIN_API_ADDRESS", json.dumps((va.get("apiAddresses") or [""])[0])),
               ("REACT_APP_FETCH_CREDENTIALS", '"omit"'),
               ("REACT_APP_ENABLE_EXPERIMENTAL_TABLET_DEBUG_VARS", "false"),
               ("REACT_APP_BUGSNAG_API_KEY", '""'),
               ("REACT_APP_DOCUMENT_TITLE", '""'),
               ("REACT_APP_READONLY_MODE", "true" if va.get("readOnly") else "false")]
        return "window.env = {\n" + "".join(f"     '{k}': {v},\n" for k, v in env) + " };"


def _ok(result: dict) -> dict:
    return {"result": result, "ok": True}


def _error(message: str, code: str) -> dict:
    return {"error": {"message": message, "code": code}, "ok": False}


def _close_socket(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
