"""The Kubernetes API: the one module that imports the official ``kubernetes`` client.

What it gives the deploy steps:
- ``api_client``: a client from the kubeconfig text held in the target block;
- ``Kube``: server-side apply with vtflow's field manager (reporting created / changed /
  unchanged; taking over fields other managers own only when made with ``force_conflicts``), get, list, delete, and waits that watch (with a timeout and the last reason
  the object was not ready). Dry-run lives here and only here: a ``Kube(dry_run=True)`` sends
  every write with ``dryRun=All``, so the server validates it and nothing is stored.
- retries of transient failures only (5xx, 429 with its Retry-After, timeouts, dropped
  connections), and errors that start with ``Kind namespace/name`` and say the fix
  (RBAC, a missing CRD, an invalid field).

It must not build manifests (``tasks/`` does) nor read blocks (callers pass the kubeconfig).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import time
from dataclasses import dataclass
from typing import Callable, Literal

import urllib3
import yaml
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes import dynamic, watch
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from kubernetes.dynamic.discovery import LazyDiscoverer
from kubernetes.dynamic.exceptions import ResourceNotFoundError
from kubernetes.stream import stream
from kubernetes.stream.ws_client import ERROR_CHANNEL

from vtflow.errors import AuthError, ConfigError, PermanentError, ReadyTimeout, TransientError, UnreachableError

FIELD_MANAGER = "vtflow"
TRANSIENT_STATUS = {429, 500, 502, 503, 504}


class ForbiddenError(PermanentError):
    """RBAC refused a verb on a resource."""


class InvalidObjectError(PermanentError):
    """The server (or its schema) refused an object; the message carries the field paths."""


class MissingKindError(PermanentError):
    """The cluster does not serve a kind: its CRD is not installed (or the version is gone)."""


class FieldConflictError(PermanentError):
    """A server-side apply would change fields another field manager owns (409)."""


class WaitTimeout(ReadyTimeout):
    """An object did not become ready in the whole timeout; the message says what it was waiting
    on. Permanent (see ReadyTimeout): the watch already rode out dropped connections."""


# ---------------------------------------------------------------- kubeconfig


_KUBECONFIG_FIX = "give the file kubectl uses (e.g. /etc/rancher/k3s/k3s.yaml) and check it with `kubectl --kubeconfig FILE get nodes`."


def parse_kubeconfig(text: str, source: str) -> dict:
    """The kubeconfig as a dict, its shape checked (each section a list of named entries), so
    that the kubernetes client never meets a shape it trips over (``api_client`` checks the
    context it uses). Errors never quote the text: it holds credentials."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        # not str(e): PyYAML's message quotes the offending line, which may hold a token or key
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = getattr(e, "problem", None) or type(e).__name__
        raise ConfigError(source, f"the kubeconfig is not YAML ({what}{where}).", _KUBECONFIG_FIX) from e
    if data is None:
        raise ConfigError(source, "the kubeconfig is empty.", _KUBECONFIG_FIX)
    if not isinstance(data, dict):
        raise ConfigError(source, f"the kubeconfig is a YAML {_yaml_kind(data)}, not a mapping with clusters, users "
                          "and contexts.", _KUBECONFIG_FIX)
    if not data.get("clusters") or not data.get("contexts"):
        raise ConfigError(source, "the kubeconfig has no clusters or contexts.", _KUBECONFIG_FIX)
    named: dict[str, list[str]] = {}
    for section, inner in (("clusters", "cluster"), ("users", "user"), ("contexts", "context")):
        items = data.get(section)
        if items is None:
            items = data[section] = []
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise ConfigError(source, f"the kubeconfig's {section} is not a list of entries with a name and a {inner}.",
                              _KUBECONFIG_FIX)
        for number, item in enumerate(items, start=1):
            if not isinstance(item.get("name"), str) or not item["name"]:
                raise ConfigError(source, f"entry {number} of the kubeconfig's {section} has no name.", _KUBECONFIG_FIX)
            if not isinstance(item.get(inner) if item.get(inner) is not None else {}, dict):
                raise ConfigError(source, f"{section[:-1]} {item['name']!r} of the kubeconfig: its {inner} is not a mapping.",
                                  _KUBECONFIG_FIX)
            body = item.get(inner) or {}
            where = f"{section[:-1]} {item['name']!r} of the kubeconfig"
            if section == "clusters" and not (isinstance(body.get("server"), str) and body["server"]):
                raise ConfigError(source, f"{where} has no server URL.", "set its server (e.g. https://10.0.0.11:6443).")
            for field, value in body.items():
                if str(field).endswith("-data") and not _is_base64(value):
                    raise ConfigError(source, f"{where}: its {field} is not base64.",
                                      f"put the file's content there base64-encoded (base64 -w0 FILE), or name the "
                                      f"file with {str(field).removesuffix('-data')}: PATH.")
        named[section] = [i["name"] for i in items]
    current = data.get("current-context")
    if current and current not in named["contexts"]:
        raise ConfigError(source, f"its current-context {current!r} is not among its contexts "
                          f"({', '.join(named['contexts'])}).",
                          "set current-context to one of those (kubectl config use-context NAME), or choose one with --context.")
    return data


def _is_base64(value) -> bool:
    # whitespace allowed: the client's decoder skips it (a wrapped base64 block)
    if not isinstance(value, str):
        return False
    try:
        base64.b64decode("".join(value.split()), validate=True)
        return True
    except (binascii.Error, ValueError):
        return False


def _yaml_kind(value) -> str:
    return {list: "list", str: "string"}.get(type(value), type(value).__name__)


def context_names(config: dict) -> list[str]:
    return [c.get("name") for c in config.get("contexts") or [] if c.get("name")]


def api_client(kubeconfig_text: str, context: str | None, source: str) -> k8s_client.ApiClient:
    """An ApiClient for ``context`` (or the kubeconfig's current context)."""
    config = parse_kubeconfig(kubeconfig_text, source)
    if context and context not in context_names(config):
        raise ConfigError(
            source, f"context {context!r} is not in the kubeconfig (it has {', '.join(context_names(config))}).",
            "set the block's context to one of those, or leave it empty for the current context.",
        )
    chosen = context or config.get("current-context")
    if not chosen:
        raise ConfigError(
            source, f"the kubeconfig has no current-context and no context was chosen (it has "
            f"{', '.join(context_names(config))}).",
            "choose one with the block's context (vtflow block create target --context NAME).",
        )
    body = next(c.get("context") or {} for c in config["contexts"] if c["name"] == chosen)
    for section, key in (("clusters", "cluster"), ("users", "user")):
        have = [i["name"] for i in config.get(section) or []]
        if key == "cluster" and not body.get(key):
            raise ConfigError(source, f"context {chosen!r} of the kubeconfig names no cluster.", _KUBECONFIG_FIX)
        if body.get(key) and body[key] not in have:
            raise ConfigError(source, f"context {chosen!r} names {key} {body[key]!r}, which the kubeconfig does not "
                              f"have (it has {', '.join(have) or 'none'}).", _KUBECONFIG_FIX)
    try:
        return k8s_config.new_client_from_config_dict(config, context=context or None, persist_config=False)
    except ConfigException as e:
        # the client's message names the field that is wrong, never its value
        raise ConfigError(source, f"the kubeconfig cannot be used ({e}).", _KUBECONFIG_FIX) from e
    except (ValueError, TypeError, AttributeError, OSError) as e:
        # a base64 field that is not base64, a value of the wrong type: the client has no error of
        # its own for those; its text may quote the value, so only the type is named
        raise ConfigError(source, f"the kubeconfig cannot be used ({type(e).__name__} while reading it).",
                          _KUBECONFIG_FIX) from e


# ---------------------------------------------------------------- identity and errors


def ref(obj: dict) -> str:
    """``Kind namespace/name`` (or ``Kind name`` when cluster-scoped): how errors name objects."""
    meta = obj.get("metadata") or {}
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj.get('kind', '?')} {where}{meta.get('name', '?')}"


def _status_body(e: ApiException) -> dict:
    try:
        body = json.loads(e.body or "{}")
        return body if isinstance(body, dict) else {}
    except (TypeError, ValueError):
        return {}


def _retry_after(e: ApiException) -> float | None:
    headers = e.headers or {}
    value = headers.get("Retry-After") or headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def translate(e: ApiException, subject: str, verb: str, resource: str, group: str, namespace: str | None) -> Exception:
    """An ApiException as a vtflow error naming ``subject`` and the fix."""
    body = _status_body(e)
    message = body.get("message") or e.reason or "no message"
    scope = f" -n {namespace}" if namespace else ""
    qualified = f"{resource}.{group}" if group else resource
    if e.status in TRANSIENT_STATUS:
        return TransientError(subject, f"the API server answered {e.status} ({message}).", "re-run; vtflow retried already.")
    if e.status == 401:
        return AuthError(subject, "the API server refused the kubeconfig's credentials (401).",
                         "refresh the kubeconfig in the target block (vtflow block create target --overwrite ...).")
    if e.status == 403:
        return ForbiddenError(subject, f"forbidden: {message}",
                              f"grant `{verb}` on `{qualified}` to the kubeconfig's user (check with "
                              f"`kubectl auth can-i {verb} {qualified}{scope}`), or use an admin kubeconfig.")
    if e.status == 400 and body.get("reason") == "BadRequest":
        # the decoder's refusal (a value of the wrong type, an unknown field under Strict): the
        # message names the field, e.g. "json: cannot unmarshal string into Go struct field
        # DeploymentSpec.spec.replicas of type int32"
        return InvalidObjectError(subject, f"invalid: {message}", "correct the field named above in the spec vtflow was given.")
    if e.status == 422:
        causes = (body.get("details") or {}).get("causes") or []
        fields = "; ".join(f"{c.get('field', '?')}: {c.get('message', '')}" for c in causes)
        return InvalidObjectError(subject, f"invalid: {fields or message}",
                                  "correct the field(s) named above in the spec vtflow was given.")
    if e.status == 409:
        causes = (body.get("details") or {}).get("causes") or []
        owned = [c for c in causes if c.get("reason") == "FieldManagerConflict"]
        if owned:
            return field_conflict(subject, owned)
        return PermanentError(subject, f"conflict: {message}", "re-read the object and re-run.")
    if e.status == 404:
        return PermanentError(subject, f"not found: {message}", "check the namespace and name; create the namespace first.")
    return PermanentError(subject, f"the API server answered {e.status}: {message}", "see the message above.")


def field_conflict(subject: str, causes: list[dict]) -> FieldConflictError:
    """A server-side apply's 409: which field manager owns which fields, and both ways out."""
    by_manager: dict[str, list[str]] = {}
    for c in causes:
        m = re.search(r'conflict with "([^"]+)"', c.get("message") or "")
        by_manager.setdefault(m.group(1) if m else "another field manager", []).append(c.get("field") or "?")
    owners = "; ".join(f"field manager {m!r} owns {', '.join(fields)}" for m, fields in by_manager.items())
    redeploy = FIELD_MANAGER + "-redeploy" in by_manager
    keep = ("put the image the redeploy wrote (repository@sha256:...) in the cluster spec" if redeploy else
            "give the spec the values the cluster has now")
    return FieldConflictError(
        subject, f"conflict: the apply would change fields another manager set: {owners}.",
        f"to keep them, {keep}; to take them over as {FIELD_MANAGER!r}, re-run the deploy with --force-conflicts "
        "(parameter force_conflicts).")


# ---------------------------------------------------------------- the client


def exit_status(subject: str, program: str, status_text: str) -> int:
    """The exit status from the exec stream's status channel (a metav1.Status, kubelet's
    remotecommand.ServeExec): Success is 0, NonZeroExitCode carries the code in its ExitCode
    cause; any other failure means the command never ran (containerd: "executable file not
    found in $PATH") and is a PermanentError naming the program. The client's own ``returncode``
    would raise a bare ValueError for that one."""
    try:
        st = yaml.safe_load(status_text or "") or {}
    except yaml.YAMLError:
        st = {}
    if not isinstance(st, dict):
        st = {}
    if st.get("status") == "Success":
        return 0
    if st.get("reason") == "NonZeroExitCode":
        for cause in (st.get("details") or {}).get("causes") or []:
            if cause.get("reason") == "ExitCode" and str(cause.get("message", "")).isdigit():
                return int(cause["message"])
    message = st.get("message") or (status_text or "the stream ended without a status").strip()
    raise PermanentError(subject, f"`{program}` could not run: {message}",
                         f"check that the container's image has `{program}` (the image or the component may be wrong).")


@dataclass(frozen=True)
class Applied:
    """What one apply did (or, in dry-run, would do)."""

    ref: str
    action: Literal["created", "changed", "unchanged"]
    object: dict

    @property
    def changed(self) -> bool:
        return self.action != "unchanged"


_VOLATILE_META = ("managedFields", "resourceVersion", "generation", "creationTimestamp", "uid", "selfLink")


def _comparable(obj: dict | None) -> dict | None:
    if obj is None:
        return None
    out = {k: v for k, v in obj.items() if k != "status"}
    out["metadata"] = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in _VOLATILE_META}
    return out


class _Discovery(LazyDiscoverer):
    """The library's discoverer, with its cache in memory only. By default it keeps discovery in
    ``<tmp>/osrcp-<md5 of the server URL>.json``, shared by every process and user of the machine
    and never expired, and answers from that file before asking the server: a cluster rebuilt at
    the same address (its CRDs deleted, or upgraded to other versions) would be served another
    cluster's kinds, and a file planted there would steer every client."""

    def _write_cache(self):
        pass


# the cache file the discoverer reads first: a path below /dev/null, which can never exist
_NO_CACHE_FILE = os.path.join(os.devnull, "vtflow-discovery")


def discovery_client(api: k8s_client.ApiClient) -> dynamic.DynamicClient:
    """A dynamic client whose discovery starts from the server and lives as long as it does."""
    return dynamic.DynamicClient(api, cache_file=_NO_CACHE_FILE, discoverer=_Discovery)


class Kube:
    """One cluster, through the official client. ``dry_run`` makes every write a server dry-run;
    ``force_conflicts`` makes every server-side apply take over fields other managers own."""

    def __init__(self, api: k8s_client.ApiClient, *, dry_run: bool = False, force_conflicts: bool = False,
                 attempts: int = 6, backoff_s: float = 0.2, sleep: Callable[[float], None] = time.sleep):
        self.api = api
        self.dry_run = dry_run
        # every apply of this client takes over fields other managers own (the deploy's
        # force_conflicts); one place, as dry_run, so that no step can forget to pass it on
        self.force_conflicts = force_conflicts
        self.attempts = attempts
        self.backoff_s = backoff_s
        self._sleep = sleep
        self._dyn: dynamic.DynamicClient | None = None
        self._namespaces: dict[str | None, bool] = {}  # dry-run only: which namespaces exist
        self._planned_kinds: set[tuple[str, str]] = set()  # dry-run only: kinds whose CRD the plan adds

    # -- plumbing

    @property
    def dyn(self) -> dynamic.DynamicClient:
        if self._dyn is None:
            self._dyn = self._retry(lambda: discovery_client(self.api), "Kubernetes API", "get", "discovery", "", None)
        return self._dyn

    def _retry(self, call, subject: str, verb: str, resource: str, group: str, namespace: str | None):
        """Run ``call``, retrying transient failures with backoff (honouring Retry-After)."""
        delay = self.backoff_s
        for attempt in range(1, self.attempts + 1):
            try:
                return call()
            except ApiException as e:
                error = translate(e, subject, verb, resource, group, namespace)
                wait = _retry_after(e) or delay
            except (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError) as e:
                error = UnreachableError(subject, f"the API server did not answer ({type(e).__name__}).",
                                         "check that the cluster is up and the kubeconfig's server address is right.")
                error.__cause__ = e
                wait = delay
            if not isinstance(error, TransientError) or attempt == self.attempts:
                raise error
            self._sleep(min(wait, 5.0))
            delay = min(delay * 2, 5.0)
        raise AssertionError("unreachable")

    def resource(self, api_version: str, kind: str):
        try:
            return self.dyn.resources.get(api_version=api_version, kind=kind)
        except ResourceNotFoundError as e:
            group = api_version.split("/")[0] if "/" in api_version else "core"
            fix = ("apply the vitess-operator first (its operator.yaml installs the planetscale.com CRDs)."
                   if group == "planetscale.com" else
                   f"install the CRD that defines {kind}, or use an apiVersion this Kubernetes version still serves.")
            raise MissingKindError(f"{kind} ({api_version})", "the cluster does not serve this kind.", fix) from e

    def server_version(self) -> str:
        info = self._retry(lambda: k8s_client.VersionApi(self.api).get_code(), "Kubernetes API", "get", "version", "", None)
        return info.git_version

    # -- reads

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict | None:
        res = self.resource(api_version, kind)
        subject = ref({"kind": kind, "metadata": {"name": name, "namespace": namespace}})

        def call():
            try:
                return res.get(name=name, namespace=namespace).to_dict()
            except ApiException as e:
                if e.status == 404:
                    return None
                raise
        return self._retry(call, subject, "get", res.name, res.group, namespace)

    def list(self, api_version: str, kind: str, namespace: str | None = None,
             label_selector: str | None = None, field_selector: str | None = None) -> list[dict]:
        res = self.resource(api_version, kind)
        result = self._retry(lambda: res.get(namespace=namespace, label_selector=label_selector,
                                             field_selector=field_selector).to_dict(),
                             f"{kind} list{' in ' + namespace if namespace else ''}", "list", res.name, res.group, namespace)
        return result.get("items") or []

    # -- writes

    def apply(self, obj: dict, *, force: bool = False) -> Applied:
        """Server-side apply ``obj`` as vtflow; says whether it created or changed anything.
        ``force`` (or the client's ``force_conflicts``) takes over fields other managers own."""
        api_version, kind = obj["apiVersion"], obj["kind"]
        meta = obj.get("metadata") or {}
        name, namespace = meta.get("name"), meta.get("namespace")
        subject = ref(obj)
        if self.dry_run and kind == "CustomResourceDefinition":
            spec = obj.get("spec") or {}
            self._planned_kinds.add((spec.get("group"), (spec.get("names") or {}).get("kind")))
        try:
            res = self.resource(api_version, kind)
        except MissingKindError:
            if self.dry_run and (api_version.split("/")[0], kind) in self._planned_kinds:
                return Applied(subject, "created", obj)  # its CRD is new in this same plan
            raise
        if self.dry_run and res.namespaced and not self._namespace_exists(namespace):
            # The server cannot dry-run into a namespace that does not exist yet (nor can
            # kubectl --dry-run=server): the object is new with its namespace.
            return Applied(subject, "created", obj)
        before = self.get(api_version, kind, name, namespace if res.namespaced else None)
        params = {"field_manager": FIELD_MANAGER, "force_conflicts": force or self.force_conflicts}
        if self.dry_run:
            params["dry_run"] = "All"
        after = self._retry(lambda: self.dyn.server_side_apply(res, body=obj, name=name,
                                                               namespace=namespace if res.namespaced else None,
                                                               **params).to_dict(),
                            subject, "patch", res.name, res.group, namespace)
        if before is None:
            action = "created"
        elif self.dry_run:
            action = "unchanged" if _comparable(before) == _comparable(after) else "changed"
        else:
            same = (before["metadata"].get("resourceVersion") == after["metadata"].get("resourceVersion"))
            action = "unchanged" if same else "changed"
        return Applied(subject, action, after)

    def patch(self, api_version: str, kind: str, name: str, namespace: str | None, patch: dict,
              manager: str = FIELD_MANAGER + "-redeploy", strategic: bool = False) -> dict:
        """A JSON merge patch as field manager ``manager`` (a change of a few fields, e.g. images,
        without taking over the whole object as a server-side apply would). A merge patch
        replaces every list it names whole (RFC 7386): to change one container of a built-in
        kind, pass ``strategic`` (a strategic merge patch merges ``containers`` by name; custom
        resources refuse it with 415)."""
        res = self.resource(api_version, kind)
        subject = ref({"kind": kind, "metadata": {"name": name, "namespace": namespace}})
        content_type = "application/strategic-merge-patch+json" if strategic else "application/merge-patch+json"
        return self._retry(lambda: res.patch(name=name, namespace=namespace, body=patch, field_manager=manager,
                                             content_type=content_type,
                                             dry_run="All" if self.dry_run else None).to_dict(),
                           subject, "patch", res.name, res.group, namespace)

    def _namespace_exists(self, namespace: str | None) -> bool:
        if namespace not in self._namespaces:
            self._namespaces[namespace] = self.get("v1", "Namespace", namespace) is not None
        return self._namespaces[namespace]

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
        """Delete if present, its dependents after it (Background, as kubectl sends: a server's
        default for batch/v1 Jobs would orphan their pods). Returns whether something was (or,
        in dry-run, would be) deleted."""
        res = self.resource(api_version, kind)
        subject = ref({"kind": kind, "metadata": {"name": name, "namespace": namespace}})

        def call():
            try:
                res.delete(name=name, namespace=namespace, dry_run="All" if self.dry_run else None,
                           body={"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"})
                return True
            except ApiException as e:
                if e.status == 404:
                    return False
                raise
        return self._retry(call, subject, "delete", res.name, res.group, namespace)

    # -- exec

    def exec(self, namespace: str, pod: str, container: str | None, argv: list[str], stdin: str | None = None,
             timeout_s: float = 300) -> tuple[int, str, str]:
        """Run ``argv`` in a container (the pod exec API, as kubectl exec): exit status, stdout, stderr."""
        subject = f"Pod {namespace}/{pod}" + (f" container {container}" if container else "")

        def call():
            # an ApiClient of its own: stream() swaps the client's request method while it connects,
            # which would turn other threads' calls through a shared client into websocket requests
            api = k8s_client.ApiClient(self.api.configuration)
            try:
                resp = stream(k8s_client.CoreV1Api(api).connect_get_namespaced_pod_exec, pod, namespace, command=argv,
                              container=container, stdin=stdin is not None, stdout=True, stderr=True, tty=False,
                              _preload_content=False)
            except BaseException:
                api.close()
                raise
            try:
                if stdin is not None:
                    resp.write_stdin(stdin)
                    resp.close_channel(0)  # EOF on stdin (v5 protocol; older servers end it themselves)
                resp.run_forever(timeout=timeout_s)
                if resp.is_open():
                    raise TransientError(subject, f"`{argv[0]}` did not finish within {timeout_s:.0f} s.",
                                         "check the pod's load, or raise the step's timeout.")
                out, err = resp.read_stdout() or "", resp.read_stderr() or ""
                return exit_status(subject, argv[0], resp.read_channel(ERROR_CHANNEL)), out, err
            finally:
                resp.close()
                api.close()
        return self._retry(call, subject, "create", "pods/exec", "", namespace)

    def ready_pod(self, namespace: str, label_selector: str, what: str) -> str:
        """The name of a Running, Ready pod matching ``label_selector``."""
        for p in self.list("v1", "Pod", namespace, label_selector=label_selector):
            status = p.get("status") or {}
            ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
            if status.get("phase") == "Running" and ready:
                return p["metadata"]["name"]
        raise TransientError(f"{what} in namespace {namespace}", f"no Running and Ready pod matches {label_selector}.",
                             "wait for the cluster to be ready (the deploy's cluster step), or check its pods.")

    # -- waiting

    def wait(self, api_version: str, kind: str, name: str, namespace: str | None,
             not_ready: Callable[[dict | None], str | None], timeout_s: float,
             progress: Callable[[str], None] | None = None) -> dict:
        """Watch one object until ``not_ready(obj)`` returns None (ready); ``not_ready`` returns
        the reason while it is not. On timeout raises WaitTimeout with the last reason."""
        res = self.resource(api_version, kind)
        subject = ref({"kind": kind, "metadata": {"name": name, "namespace": namespace}})
        deadline = time.monotonic() + timeout_s
        reason = "not seen yet"
        while True:
            current = self.get(api_version, kind, name, namespace)
            reason = not_ready(current)
            if reason is None:
                return current
            if progress:
                progress(f"{subject}: {reason}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise WaitTimeout(subject, f"not ready after {timeout_s:.0f} s: {reason}.",
                                  "see the diagnosis that follows, or raise the timeout.")
            rv = (current or {}).get("metadata", {}).get("resourceVersion")
            if rv is None:  # absent: watch the collection from now on
                listing = self._retry(lambda: res.get(namespace=namespace).to_dict(), subject, "list", res.name, res.group, namespace)
                rv = listing.get("metadata", {}).get("resourceVersion")
            w = watch.Watch()
            try:
                for event in self.dyn.watch(res, namespace=namespace, name=name, resource_version=rv,
                                            timeout=max(1, int(min(left, 60))), watcher=w):
                    if event["type"] == "ERROR":
                        break  # e.g. 410 Gone: re-read and watch again
                    if event["type"] == "BOOKMARK":
                        continue
                    obj = event.get("raw_object") or event["object"].to_dict()
                    reason = not_ready(None if event["type"] == "DELETED" else obj)
                    if reason is None:
                        return obj
                    if progress:
                        progress(f"{subject}: {reason}")
                    if time.monotonic() >= deadline:
                        break
            except ApiException as e:
                if e.status != 410 and e.status not in TRANSIENT_STATUS:
                    raise translate(e, subject, "watch", res.name, res.group, namespace) from e
            except (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError):
                pass  # a dropped watch: re-read and watch again
            finally:
                w.stop()
