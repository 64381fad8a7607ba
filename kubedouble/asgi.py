"""The HTTP face of the double: a Starlette app with the real Kubernetes API paths.

Discovery (/version, /api, /apis, group versions), resource CRUD (delegated to ``api.py``),
watch streams (newline-delimited JSON events with resume, timeouts, bookmarks and 410),
pod logs (text/plain) and pod exec over the channel.k8s.io websocket protocols (v5/v4, and
plain channel.k8s.io). Every request is authenticated, may be delayed or failed by the
configured ``Faults``, and is authorized by RBAC. This module translates HTTP to calls and
results to HTTP; it holds no cluster state and must not implement resource semantics.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from .api import Call
from .auth import Attributes, authorize
from .resources import ResourceType
from .status import ApiError, bad_request, status_body

if TYPE_CHECKING:  # pragma: no cover
    from .server import KubeDouble

log = logging.getLogger("kubedouble")
_NOT_FOUND = ApiError(404, "NotFound", "the server could not find the requested resource", {})
_EXEC_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io", "channel.k8s.io")


def _json(body: Any, code: int = 200, headers: dict | None = None) -> Response:
    return Response(json.dumps(body, separators=(",", ":")), code, headers, media_type="application/json")


def _error(e: ApiError) -> Response:
    return _json(e.status(), e.code, e.headers)


@dataclass
class Target:
    """What a URL names: a discovery document or a resource (collection, item, subresource)."""
    discovery: str = ""          # "api" | "apis" | "group" | "resources" | "version" | ""
    group: str = ""
    version: str = ""
    rt: ResourceType | None = None
    namespace: str = ""
    name: str = ""
    subresource: str = ""


def parse_path(double: "KubeDouble", path: str) -> Target:
    segs = [s for s in path.strip("/").split("/") if s]
    if segs == ["version"]:
        return Target("version")
    if not segs or segs[0] not in ("api", "apis"):
        raise _NOT_FOUND
    if segs[0] == "api":
        if len(segs) == 1:
            return Target("api")
        group, version, rest = "", segs[1], segs[2:]
    else:
        if len(segs) == 1:
            return Target("apis")
        if len(segs) == 2:
            if segs[1] not in double.registry.groups():
                raise _NOT_FOUND
            return Target("group", segs[1])
        group, version, rest = segs[1], segs[2], segs[3:]
    reg = double.registry
    if version not in reg.groups().get(group, []):
        raise _NOT_FOUND
    if not rest:
        return Target("resources", group, version)
    ns = ""
    if rest[0] == "namespaces" and len(rest) >= 3:
        inner = reg.lookup(group, version, rest[2])
        if inner is not None and inner.namespaced:
            ns, rest = rest[1], rest[2:]
    rt = reg.lookup(group, version, rest[0])
    if rt is None or len(rest) > 3:
        raise _NOT_FOUND
    if ns and not rt.namespaced:
        raise _NOT_FOUND
    name = rest[1] if len(rest) > 1 else ""
    sub = rest[2] if len(rest) > 2 else ""
    if sub and sub not in rt.subresources:
        raise _NOT_FOUND
    return Target("", group, version, rt, ns, name, sub)


def _verb(method: str, t: Target, query) -> str:
    if method == "GET":
        if t.name:
            return "get"
        return "watch" if query.get("watch") in ("true", "1", "True") else "list"
    return {"POST": "create", "PUT": "update", "PATCH": "patch",
            "DELETE": "delete" if t.name else "deletecollection"}.get(method, method.lower())


class DoubleApp:
    def __init__(self, double: "KubeDouble"):
        self.d = double
        self.app = Starlette(routes=[
            Route("/{path:path}", self.http, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
            WebSocketRoute("/{path:path}", self.websocket),
        ])

    # -- plain HTTP -------------------------------------------------------------------------
    async def http(self, request: Request) -> Response:
        faults = self.d.faults
        if faults.latency_ms:
            await asyncio.sleep(faults.latency_ms / 1000)
        path = request.url.path
        if path in ("/healthz", "/readyz", "/livez"):
            return PlainTextResponse("ok")
        try:
            user = self.d.users.authenticate(request.headers.get("authorization"))
            t = parse_path(self.d, path)
            query = request.query_params
            verb = _verb(request.method, t, query)
            if t.discovery:
                faults.maybe_fail(discovery=True)
                if request.method != "GET":
                    raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
                return _json(self.discovery(t, request))
            if verb != "watch":
                faults.maybe_fail(discovery=False)
            assert t.rt is not None
            if t.rt.namespaced and not t.namespace and verb not in ("list", "watch"):
                raise _NOT_FOUND
            authorize(self.d.store, user, Attributes(verb if t.subresource != "exec" else "create", t.group, t.rt.plural,
                                                     t.subresource, t.namespace, t.name))
            if t.subresource == "log":
                return self.pod_log(t, query)
            if t.subresource == "exec":
                raise bad_request("Upgrade request required")
            body = await request.body()
            call = Call(verb, t.rt, t.namespace, t.name, t.subresource, dict(query), user,
                        request.headers.get("user-agent", ""), body, request.headers.get("content-type", ""))
            if "dryRun" in query and query.get("dryRun") != "All":
                raise bad_request(f'dryRun: Unsupported value: "{query.get("dryRun")}": supported values: "All"')
            api = self.d.api
            if verb == "get":
                return _json(api.get(call))
            if verb == "list":
                return _json(api.list(call))
            if verb == "watch":
                return await self.watch(call)
            if verb == "create":
                if t.name:
                    raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
                code, obj = api.create(call)
            elif verb == "update":
                code, obj = api.update(call)
            elif verb == "patch":
                code, obj = api.patch(call)
            elif verb == "delete":
                code, obj = api.delete(call)
            elif verb == "deletecollection":
                code, obj = api.delete_collection(call)
            else:
                raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
            return _json(obj, code)
        except ApiError as e:
            return _error(e)

    def discovery(self, t: Target, request: Request) -> dict:
        reg = self.d.registry
        if t.discovery == "version":
            return self.d.version_info()
        if t.discovery == "api":
            return {"kind": "APIVersions", "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": request.url.netloc}]}
        if t.discovery == "apis":
            return {"kind": "APIGroupList", "apiVersion": "v1",
                    "groups": [self._group(g, vs) for g, vs in reg.groups().items() if g]}
        if t.discovery == "group":
            return {"kind": "APIGroup", "apiVersion": "v1", **self._group(t.group, reg.groups()[t.group])}
        resources = []
        for rt in sorted(reg.in_version(t.group, t.version), key=lambda r: r.plural):
            resources.extend(rt.discovery_entries())
        gv = f"{t.group}/{t.version}" if t.group else t.version
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}

    @staticmethod
    def _group(group: str, versions: list[str]) -> dict:
        entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {"name": group, "versions": entries, "preferredVersion": entries[0]}

    # -- logs -------------------------------------------------------------------------------
    def pod_log(self, t: Target, query) -> Response:
        pod = self.d.store.get(("", "pods"), t.namespace, t.name)
        if pod is None:
            raise ApiError(404, "NotFound", f'pods "{t.name}" not found', {"name": t.name, "kind": "pods"})
        container = self._container(pod, query.get("container"))
        statuses = {c["name"]: c for c in (pod.get("status") or {}).get("containerStatuses") or []}
        if container not in statuses or "waiting" in (statuses[container].get("state") or {}) and \
                statuses[container].get("restartCount", 0) == 0:
            raise bad_request(f'container "{container}" in pod "{t.name}" is waiting to start: ContainerCreating')
        tail = query.get("tailLines")
        text = self.d.logs.read(t.namespace, t.name, container, int(tail) if tail is not None else None)
        return PlainTextResponse(text)

    @staticmethod
    def _container(pod: dict, wanted: str | None) -> str:
        names = [c["name"] for c in (pod.get("spec") or {}).get("containers") or []]
        name = pod["metadata"]["name"]
        if not wanted:
            if len(names) == 1:
                return names[0]
            default = (pod["metadata"].get("annotations") or {}).get("kubectl.kubernetes.io/default-container")
            if default in names:
                return default
            raise bad_request(f"a container name must be specified for pod {name}, choose one of: [{' '.join(names)}]")
        init = [c["name"] for c in (pod.get("spec") or {}).get("initContainers") or []]
        if wanted not in names and wanted not in init:
            raise bad_request(f"container {wanted} is not valid for pod {name}")
        return wanted

    # -- watch ------------------------------------------------------------------------------
    async def watch(self, call: Call) -> Response:
        store, rt = self.d.store, call.rt
        predicate = self.d.api.predicate(call)
        ns = call.namespace if rt.namespaced else ""
        query = call.query
        timeout = float(query.get("timeoutSeconds") or self.d.config.watch_default_timeout)
        bookmarks = query.get("allowWatchBookmarks") in ("true", "1", "True")
        drop = self.d.faults.watch_drop_after_s
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()

        def feed(change) -> None:
            if change.gr == rt.gr:
                loop.call_soon_threadsafe(queue.put_nowait, change)

        rv = query.get("resourceVersion")
        initial: list[dict] = []
        try:
            with store.lock:
                if not rv or rv == "0":
                    items, _ = store.list(rt.gr, ns or None, predicate)
                    initial = [{"type": "ADDED", "object": o} for o in items]
                    token, backlog = store.subscribe(feed)
                else:
                    try:
                        since = int(rv)
                    except ValueError as e:
                        raise bad_request(f'invalid resource version "{rv}"') from e
                    token, backlog = store.subscribe(feed, since=since)
        except ApiError as e:
            if e.code != 410:
                raise
            body = json.dumps({"type": "ERROR", "object": status_body(410, "Expired", e.message)}) + "\n"
            return Response(body, 200, media_type="application/json")

        def translate(change) -> dict | None:
            if ns and change.obj["metadata"].get("namespace") != ns:
                return None
            if change.type == "DELETED":
                return {"type": "DELETED", "object": change.obj} if predicate(change.obj) else None
            now = predicate(change.obj)
            before = change.old is not None and predicate(change.old)
            if change.type == "ADDED":
                return {"type": "ADDED", "object": change.obj} if now else None
            if now and before:
                return {"type": "MODIFIED", "object": change.obj}
            if now:
                return {"type": "ADDED", "object": change.obj}
            if before:
                return {"type": "DELETED", "object": change.obj}
            return None

        interval = self.d.config.bookmark_interval

        async def stream():
            deadline = time.monotonic() + timeout
            drop_at = time.monotonic() + drop if drop else None
            next_bookmark = time.monotonic() + interval
            try:
                for ev in initial:
                    yield (json.dumps(ev, separators=(",", ":")) + "\n").encode()
                for change in backlog:
                    ev = translate(change)
                    if ev:
                        yield (json.dumps(ev, separators=(",", ":")) + "\n").encode()
                while True:
                    now = time.monotonic()
                    if drop_at is not None and now >= drop_at:
                        # a dropped connection, not a clean end: the client sees a broken stream
                        raise ConnectionAbortedError("kubedouble: watch dropped by fault injection")
                    if now >= deadline:
                        return
                    wait = deadline - now
                    if drop_at is not None:
                        wait = min(wait, drop_at - now)
                    if bookmarks:
                        wait = min(wait, max(0.0, next_bookmark - now))
                    try:
                        change = await asyncio.wait_for(queue.get(), timeout=max(wait, 0.001))
                    except asyncio.TimeoutError:
                        if bookmarks and time.monotonic() >= next_bookmark:
                            next_bookmark = time.monotonic() + interval
                            yield (json.dumps({"type": "BOOKMARK", "object": {
                                "kind": rt.kind, "apiVersion": rt.api_version,
                                "metadata": {"resourceVersion": str(store.resource_version)}}}) + "\n").encode()
                        continue
                    ev = translate(change)
                    if ev:
                        yield (json.dumps(ev, separators=(",", ":")) + "\n").encode()
            finally:
                store.unsubscribe(token)

        return StreamingResponse(stream(), media_type="application/json")

    # -- exec -------------------------------------------------------------------------------
    async def websocket(self, ws: WebSocket) -> None:
        try:
            user = self.d.users.authenticate(ws.headers.get("authorization"))
            t = parse_path(self.d, ws.url.path)
            if t.rt is None or t.rt.gr != ("", "pods") or t.subresource not in ("exec", "attach"):
                raise bad_request("websocket upgrade is only served for pods/exec")
            if t.subresource == "attach":
                raise bad_request("attach is not supported by kubedouble")
            authorize(self.d.store, user, Attributes("create", "", "pods", "exec", t.namespace, t.name))
            pod = self.d.store.get(("", "pods"), t.namespace, t.name)
            if pod is None:
                raise ApiError(404, "NotFound", f'pods "{t.name}" not found', {"name": t.name, "group": "", "kind": "pods"})
            params = ws.query_params
            container = self._container(pod, params.get("container"))
            if not (pod.get("spec") or {}).get("nodeName"):
                raise bad_request(f"pod {t.name} does not have a host assigned")
            status = next((c for c in (pod.get("status") or {}).get("containerStatuses") or [] if c["name"] == container), None)
            if (pod.get("status") or {}).get("phase") != "Running" or status is None or \
                    "running" not in (status.get("state") or {}):
                raise bad_request(f'unable to upgrade connection: container not found ("{container}")')
            argv = params.getlist("command")
            if not argv:
                raise bad_request("you must specify at least 1 command")
        except ApiError as e:
            try:
                await ws.send_denial_response(_error(e))
            except RuntimeError:
                await ws.close(code=1008, reason=e.message[:120])
            return
        offered = [p.strip() for p in (ws.headers.get("sec-websocket-protocol") or "").split(",") if p.strip()]
        proto = next((p for p in _EXEC_PROTOCOLS if p in offered), None)
        await ws.accept(subprotocol=proto)
        try:
            stdin = await self._read_stdin(ws, proto) if params.get("stdin") in ("true", "1", "True") else None
            code, out, err = await asyncio.to_thread(self.d.execs.run, pod, container, argv, stdin)
            if out and params.get("stdout", "true") in ("true", "1", "True"):
                await ws.send_bytes(b"\x01" + out)
            if err and params.get("stderr", "true") in ("true", "1", "True"):
                await ws.send_bytes(b"\x02" + err)
            if proto in ("v5.channel.k8s.io", "v4.channel.k8s.io"):
                if code == 0:
                    st = {"metadata": {}, "status": "Success"}
                else:
                    st = {"metadata": {}, "status": "Failure",
                          "message": f"command terminated with non-zero exit code: error executing command "
                                     f"[{' '.join(argv)}], exit code {code}",
                          "reason": "NonZeroExitCode",
                          "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}
                await ws.send_bytes(b"\x03" + json.dumps(st).encode())
            elif code != 0:
                await ws.send_bytes(b"\x03" + f"command terminated with non-zero exit code: exit code {code}".encode())
            await ws.close()
        except WebSocketDisconnect:
            return

    async def _read_stdin(self, ws: WebSocket, proto: str | None) -> bytes:
        """Collect stdin frames: until the v5 close signal for channel 0, the client closing, or
        ``config.exec_stdin_idle_s`` without a new frame (v4 has no half-close, and the Python
        client rarely sends the v5 one)."""
        data = b""
        idle = self.d.config.exec_stdin_idle_s
        while True:
            try:
                msg = await asyncio.wait_for(ws.receive(), timeout=idle)
            except asyncio.TimeoutError:
                return data
            if msg["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(msg.get("code", 1000))
            raw = msg.get("bytes")
            if raw is None and msg.get("text") is not None:
                raw = msg["text"].encode("utf-8")
            if not raw:
                continue
            if raw[0] == 255 and proto == "v5.channel.k8s.io":
                if raw[1:2] == b"\x00":
                    return data
                continue
            if raw[0] == 0:
                data += raw[1:]
