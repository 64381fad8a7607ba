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

from . import table
from .api import WATCH_LIST_OPTION, Call, validate_list_options
from .auth import Attributes, authorize
from .execs import ExecStartError
from .logs import LogOptions, format_entry, log_options
from . import openapi_pb
from .openapi import accepts_json, v2_media
from .resources import ResourceType
from .semantics import GoValue
from .status import ApiError, bad_request, invalid, method_not_allowed, status_body, unsupported_value

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


def _flag(value: str | None) -> bool:
    return value in ("true", "1", "True")


def _bool_param(query, name: str) -> bool:
    value = query.get(name)
    if value in ("true", "1", "True", "TRUE", "t", "T"):
        return True
    if value in ("false", "0", "False", "FALSE", "f", "F"):
        return False
    raise bad_request(f'strconv.ParseBool: parsing "{value}": invalid syntax')


class DoubleApp:
    def __init__(self, double: "KubeDouble"):
        self.d = double
        self.app = Starlette(routes=[
            Route("/{path:path}", self.http, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
            WebSocketRoute("/{path:path}", self.websocket),
        ])

    # -- plain HTTP -------------------------------------------------------------------------
    def _authorize_path(self, user, method: str, path: str) -> None:
        """A non-resource request (health, version, discovery, OpenAPI) by the stored RBAC policy."""
        authorize(self.d.store, user, Attributes(method.lower(), "", "", path=path))

    async def http(self, request: Request) -> Response:
        faults = self.d.faults
        if faults.latency_ms:
            await asyncio.sleep(faults.latency_ms / 1000)
        path = request.url.path
        try:
            user = self.d.users.authenticate(request.headers.get("authorization"))
            if path in ("/healthz", "/readyz", "/livez"):
                self._authorize_path(user, request.method, path)
                return PlainTextResponse("ok")
            if path == "/openapi" or path.startswith("/openapi/"):
                self._authorize_path(user, request.method, path)
                return self.openapi(path, request)
            try:
                t = parse_path(self.d, path)
            except ApiError:
                self._authorize_path(user, request.method, path)  # a path nobody may read is 403 before it is 404
                raise
            query = request.query_params
            verb = _verb(request.method, t, query)
            if t.discovery:
                self._authorize_path(user, request.method, path)
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
            # a verb the resource does not serve (GET of a review, DELETE of all namespaces) has no route
            if verb not in (t.rt.subresources.get(t.subresource, ()) if t.subresource else t.rt.verbs):
                raise method_not_allowed()
            if t.subresource == "log":
                return self.pod_log(t, query)
            if t.subresource == "exec":
                raise bad_request("Upgrade request required")
            body = await request.body()
            call = Call(verb, t.rt, t.namespace, t.name, t.subresource, dict(query), user,
                        request.headers.get("user-agent", ""), body, request.headers.get("content-type", ""))
            if "dryRun" in query and query.get("dryRun") != "All":
                # ValidateDryRun on the verb's options kind (apimachinery meta/v1 validation): 422
                options = {"create": "CreateOptions", "update": "UpdateOptions", "patch": "PatchOptions"}.get(
                    verb, "DeleteOptions")
                raise invalid(options, "meta.k8s.io", "",
                              [unsupported_value("dryRun", GoValue('[]string{"%s"}' % query.get("dryRun")), ["All"])])
            api = self.d.api
            if verb in ("get", "list", "watch"):
                as_table = table.negotiate(request.headers.get("accept"))
            if verb == "get":
                obj = api.get(call)
                if as_table and t.subresource != "scale":
                    return _json(table.to_table([obj], {}, t.rt.gr, query, as_table, api.printer(t.rt)))
                return _json(obj)
            if verb == "list":
                listed = api.list(call)
                if as_table:
                    return _json(table.to_table(listed["items"], listed["metadata"], t.rt.gr, query, as_table,
                                                api.printer(t.rt)))
                return _json(listed)
            if verb == "watch":
                return await self.watch(call, as_table)
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
            response = _json(obj, code)
            for text in call.warnings:  # one Warning header each, as k8s.io/apiserver/pkg/warning writes them
                response.headers.append("Warning", f"299 - {json.dumps(text)}")
            return response
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

    def openapi(self, path: str, request: Request) -> Response:
        """/openapi/v2 and /openapi/v3[/<group-version>] as kube-openapi's handlers serve them."""
        if request.method != "GET":
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        docs = self.d.openapi
        media = "json"
        if path == "/openapi/v2":
            media = v2_media(request.headers.get("accept"))
            if media is None:
                return Response(b"", 406)
            found = docs.v2_protobuf() if media == "protobuf" else docs.v2_document()
        elif path == "/openapi/v3":
            found = docs.v3_index()
        elif path.startswith("/openapi/v3/"):
            gv = path[len("/openapi/v3/"):]
            found = docs.v3_document(gv)
            if found and not accepts_json(request.headers.get("accept")):
                return Response(b"", 406, {"Vary": "Accept"})
            if found and request.query_params.get("hash") not in (None, found[1]):
                return Response(b"", 301, {"Location": f"/openapi/v3/{gv}?hash={found[1]}"})
        else:
            found = None
        if found is None:
            raise _NOT_FOUND
        body, etag = found
        headers = {"Etag": f'"{etag}"', "Vary": "Accept"}
        if path.startswith("/openapi/v3/") and request.query_params.get("hash"):
            headers["Cache-Control"] = "public, immutable"
        if request.headers.get("if-none-match") == headers["Etag"]:
            return Response(b"", 304, headers)
        return Response(body, 200, headers, media_type=openapi_pb.RETURNED_TYPE if media == "protobuf" else "application/json")

    @staticmethod
    def _group(group: str, versions: list[str]) -> dict:
        entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {"name": group, "versions": entries, "preferredVersion": entries[0]}

    # -- logs -------------------------------------------------------------------------------
    def pod_log(self, t: Target, query) -> Response:
        """``pods/{name}/log`` as the apiserver (pkg/registry/core/pod/strategy.go LogLocation) and the
        kubelet (pkg/kubelet/kubelet_pods.go validateContainerLogStatus) answer it."""
        opts = log_options(query, t.name)
        pod = self.d.store.get(("", "pods"), t.namespace, t.name)
        if pod is None:
            raise ApiError(404, "NotFound", f'pods "{t.name}" not found', {"name": t.name, "kind": "pods"})
        container = self._container(pod, opts.container)
        previous = opts.previous
        cs = next((c for c in ((pod.get("status") or {}).get("containerStatuses") or [])
                   + ((pod.get("status") or {}).get("initContainerStatuses") or []) if c["name"] == container), None)
        if cs is None:
            if not (pod.get("spec") or {}).get("nodeName"):
                raise bad_request(f'container "{container}" in pod "{t.name}" is waiting to start: ContainerCreating')
            raise bad_request(f'container "{container}" in pod "{t.name}" is not available')
        state, last = cs.get("state") or {}, (cs.get("lastState") or {}).get("terminated")
        if previous:
            if not last or not last.get("containerID"):
                raise bad_request(f'previous terminated container "{container}" in pod "{t.name}" not found')
        elif "running" not in state and "terminated" not in state and not (last and last.get("containerID")):
            raise bad_request(f'container "{container}" in pod "{t.name}" is waiting to start: '
                              f'{(state.get("waiting") or {}).get("reason", "ContainerCreating")}')
        # the instance read: previous, the running/terminated one, or else the last terminated one
        from_previous = previous or ("running" not in state and "terminated" not in state)
        text, seen = self.d.logs.read(t.namespace, t.name, container, opts.tail, previous=from_previous,
                                      since=opts.since, timestamps=opts.timestamps)
        text = text.encode()
        # limitBytes: the kubelet's LimitWriter cuts the stream at exactly that many bytes, mid-line
        if opts.limit_bytes is not None and len(text) >= opts.limit_bytes:
            return Response(text[:opts.limit_bytes], media_type="text/plain")
        if not opts.follow or from_previous:
            return Response(text, media_type="text/plain")
        return StreamingResponse(self._follow(t, container, pod["metadata"]["uid"], cs.get("containerID"), text, seen,
                                              opts), media_type="text/plain")

    async def _follow(self, t: Target, container: str, uid: str, cid: str | None, first: bytes, seen: int,
                      opts: LogOptions):
        """``follow=true``: what is there, then the lines after sequence ``seen`` until this instance
        of the container stops (or ``limitBytes`` are sent)."""
        yield first
        left = None if opts.limit_bytes is None else opts.limit_bytes - len(first)
        while True:
            await asyncio.sleep(0.05)
            for e in self.d.logs.entries(t.namespace, t.name, container, after=seen):
                seen = e[0]
                line = format_entry(e, opts.timestamps).encode()
                if left is not None:
                    line, left = line[:left], left - len(line)
                yield line
                if left is not None and left <= 0:
                    return
            pod = self.d.store.get(("", "pods"), t.namespace, t.name)
            cs = next((c for c in ((pod or {}).get("status") or {}).get("containerStatuses") or []
                       if c["name"] == container), None)
            if pod is None or pod["metadata"]["uid"] != uid or cs is None or cs.get("containerID") != cid \
                    or "running" not in (cs.get("state") or {}):
                return

    @staticmethod
    def _container(pod: dict, wanted: str | None) -> str:
        # the server never reads kubectl's default-container annotation: kubectl does, client side
        spec = pod.get("spec") or {}
        names = [c["name"] for c in spec.get("containers") or []]
        init = [c["name"] for c in spec.get("initContainers") or []]
        ephemeral = [c["name"] for c in spec.get("ephemeralContainers") or []]
        name = pod["metadata"]["name"]
        if not wanted:
            if len(names) == 1:
                return names[0]
            if not names:
                raise bad_request(f"a container name must be specified for pod {name}")
            msg = f"a container name must be specified for pod {name}, choose one of: [{' '.join(names)}]"
            if init:
                msg += f" or one of the init containers: [{' '.join(init)}]"
            if ephemeral:
                msg += f" or one of the ephemeral containers: [{' '.join(ephemeral)}]"
            raise bad_request(msg)
        if wanted not in names + init + ephemeral:
            raise bad_request(f"container {wanted} is not valid for pod {name}")
        return wanted

    # -- watch ------------------------------------------------------------------------------
    async def watch(self, call: Call, as_table: str | None = None) -> Response:
        """A watch as a real server's watch cache serves it (apiserver pkg/storage/cacher).

        Where it starts: ``resourceVersion`` unset or "0" lists the current objects as ADDED
        events first; N resumes after N (410 Expired when N left the history). The watch-list
        protocol (``sendInitialEvents=true``, which validation ties to
        ``resourceVersionMatch=NotOlderThan``) lists the current objects and then, when bookmarks
        are allowed, one BOOKMARK annotated ``k8s.io/initial-events-end``; ``sendInitialEvents=false``
        sends no initial objects. Only the watched resource's changes are replayed and streamed, each
        object in the watched version. Before 1.27 ``sendInitialEvents`` is no option of the server
        (ignored, as an unknown parameter), and 1.27-1.31 refuse it (``validate_list_options``).
        """
        store, rt, api = self.d.store, call.rt, self.d.api
        query = call.query
        send_initial = None if query.get("sendInitialEvents") is None or api.minor < WATCH_LIST_OPTION \
            else _bool_param(query, "sendInitialEvents")
        validate_list_options(query, watch=True, minor=api.minor)
        predicate = self.d.api.predicate(call)
        ns = call.namespace if rt.namespaced else ""
        timeout = float(query.get("timeoutSeconds") or self.d.config.watch_default_timeout)
        bookmarks = _flag(query.get("allowWatchBookmarks"))
        drop = self.d.faults.watch_drop_after_s
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        # changes handed to the loop vs taken from the queue: a bookmark may only claim the
        # store's version when every change up to it has been sent (fed under the store lock)
        counts = {"fed": 0, "taken": 0}

        def feed(change) -> None:
            counts["fed"] += 1
            loop.call_soon_threadsafe(queue.put_nowait, change)

        rv = query.get("resourceVersion") or ""
        since: int | None = None
        if rv:
            try:
                since = int(rv)
            except ValueError as e:
                raise bad_request(f'invalid resource version "{rv}"') from e
        initial: list[dict] = []
        try:
            with store.lock:
                current = store.resource_version
                if since is not None and since > current:
                    # the real cacher waits ~3 s for the version, then fails the watch with this
                    raise ApiError(504, "Timeout", f"Too large resource version: {since}, current: {current}",
                                   {"causes": [{"reason": "ResourceVersionTooLarge",
                                                "message": "Too large resource version"}], "retryAfterSeconds": 1})
                if send_initial or (send_initial is None and since in (None, 0)):
                    items, _ = store.list(rt.gr, ns or None, predicate)
                    initial = [{"type": "ADDED", "object": api.view(rt, o)} for o in items]
                    token, backlog = store.subscribe(feed, gr=rt.gr)
                elif since in (None, 0):
                    token, backlog = store.subscribe(feed, gr=rt.gr)
                else:
                    token, backlog = store.subscribe(feed, since=since, gr=rt.gr)
        except ApiError as e:
            if e.code not in (410, 504):
                raise
            reason = "Expired" if e.code == 410 else e.reason
            body = json.dumps({"type": "ERROR", "object": status_body(e.code, reason, e.message, e.details or None)}) + "\n"
            return Response(body, 200, media_type="application/json")
        if send_initial and bookmarks:
            initial.append({"type": "BOOKMARK", "object": {
                "kind": rt.kind, "apiVersion": rt.api_version,
                "metadata": {"resourceVersion": str(current),
                             "annotations": {"k8s.io/initial-events-end": "true"}}}})

        def translate(change) -> dict | None:
            ev = _translate(change)
            return ev if ev is None else {"type": ev["type"], "object": api.view(rt, ev["object"])}

        def _translate(change) -> dict | None:
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
        printer = self.d.api.printer(rt) if as_table else None
        headers_sent = [False]

        def encode(ev: dict) -> bytes:
            if as_table and ev["type"] != "BOOKMARK":
                # each event carries a one-row Table; the columns come with the first one only
                tbl = table.to_table([ev["object"]], {}, rt.gr, query, as_table, printer)
                if headers_sent[0]:
                    tbl["columnDefinitions"] = []
                headers_sent[0] = True
                ev = {"type": ev["type"], "object": tbl}
            return (json.dumps(ev, separators=(",", ":")) + "\n").encode()

        async def stream():
            deadline = time.monotonic() + timeout
            drop_at = time.monotonic() + drop if drop else None
            next_bookmark = time.monotonic() + interval
            try:
                for ev in initial:
                    yield encode(ev)
                for change in backlog:
                    ev = translate(change)
                    if ev:
                        yield encode(ev)
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
                        counts["taken"] += 1
                    except asyncio.TimeoutError:
                        if bookmarks and time.monotonic() >= next_bookmark:
                            with store.lock:
                                caught_up = counts["fed"] == counts["taken"]
                                at = store.resource_version
                            if not caught_up:
                                continue
                            next_bookmark = time.monotonic() + interval
                            yield encode({"type": "BOOKMARK", "object": {
                                "kind": rt.kind, "apiVersion": rt.api_version,
                                "metadata": {"resourceVersion": str(at)}}})
                        continue
                    ev = translate(change)
                    if ev:
                        yield encode(ev)
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
            # the kubelet's ServeExec (pkg/cri/streaming/remotecommand/exec.go) with containerd's errors
            try:
                code, out, err = await asyncio.to_thread(self.d.execs.run, pod, container, argv, stdin)
            except ExecStartError as e:
                code, out, err = None, b"", b""
                cause = f"error executing command in container: {e}"
                st = {"metadata": {}, "status": "Failure", "message": f"Internal error occurred: {cause}",
                      "reason": "InternalError", "details": {"causes": [{"message": cause}]}, "code": 500}
            if out and params.get("stdout", "true") in ("true", "1", "True"):
                await ws.send_bytes(b"\x01" + out)
            if err and params.get("stderr", "true") in ("true", "1", "True"):
                await ws.send_bytes(b"\x02" + err)
            if code == 0:
                st = {"metadata": {}, "status": "Success"}
            elif code is not None:
                st = {"metadata": {}, "status": "Failure",
                      "message": f"command terminated with non-zero exit code: error executing command "
                                 f"[{' '.join(argv)}], exit code {code}",
                      "reason": "NonZeroExitCode",
                      "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}
            if proto in ("v5.channel.k8s.io", "v4.channel.k8s.io"):
                await ws.send_bytes(b"\x03" + json.dumps(st).encode())
            elif code != 0:   # v1-v3 (v1WriteStatus): the message as plain text, nothing on success
                await ws.send_bytes(b"\x03" + st["message"].encode())
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
