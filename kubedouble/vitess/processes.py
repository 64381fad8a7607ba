"""What the simulated Vitess processes do when the kubelet starts their containers (kubelet programs).

``vitess_operator``: the real binary (planetscale/vitess-operator cmd/manager/main.go) prints its
version, then ``k8sutil.GetWatchNamespace()`` (planetscale/operator-sdk-libs pkg/k8sutil) fails
with ``WATCH_NAMESPACE must be set`` when the variable is absent (an empty value means all
namespaces) and main exits 1 after logging "Failed to get watch namespace" (zap production JSON).
The image's ENTRYPOINT is ``/usr/local/bin/entrypoint`` (build/bin/entrypoint: ``exec ${OPERATOR} $@``),
so a container without ``command`` still runs the operator with its args; a ``command`` that is
neither the operator nor that entrypoint is not in the image: the container cannot start.
The operator controller (operator.py) reads WATCH_NAMESPACE from the environment the kubelet
resolved for the running container. The release is the image's tag (releases.py), or for an
image by digest the tag registered for it (``VitessState.register_image``); a version tag the
double does not simulate (a minor outside v2.8-v2.17) exits 1 at once with a line saying so; an
image naming no version (unregistered digest, ``latest``) runs the newest simulated release and
its first log line says so. Such lines are prefixed ``kubedouble:``: no real operator writes them.
``vitess_component``: start-up lines of vtgate, vtctld, vttablet, vtorc, vtadmin, mysqlctld and
etcd, with the version of their image's tag (or a registered digest's tag); they keep running,
unless the Vitess major of the image rejects a flag the operator passed (vitessflags.py): then
the binary prints its parse error and exits (2 up to Vitess 17, 1 from 18), and the kubelet
restarts it into CrashLoopBackOff, as a real pod would. An image without a version tag is taken
as the newest modelled major. mysqlctld is the binary the tablet pod copies from the vttablet
image into the mysqld container, so its version is the vttablet container's. etcd logs in its own format: capnslog text before 3.5, zap JSON from 3.5
(``--logger`` default). A vttablet that starts restores from the shard's newest backup when
state.py says it does (``VitessState.tablet_started``: a new data volume, a backup location, a
backup) and logs vttablet's restore lines. ``VitessHttp`` is the exec handler for the
vttablet and vtgate containers: ``wget -qO- http://localhost:15000/debug/vars`` (vitess/lite's
Debian base installs wget, docker/lite/install_dependencies.sh; curl is not assumed) prints
``BuildVersion`` and, in vttablet, the expvars a restore sets (RestoredBackupTime,
RestorePosition, RestoreCount); other paths answer 404,
which wget reports with exit 8. Nothing here changes objects.
"""

from __future__ import annotations

import json
import shlex
import time
from datetime import datetime, timezone

from ..controllers.kubelet import Run
from ..execs import not_in_image
from . import vitessflags
from .releases import UnknownRelease, is_operator_image, running_release

OPERATOR_COMMANDS = ("vitess-operator", "/usr/local/bin/vitess-operator", "/usr/local/bin/entrypoint")
# the flags the simulated operator passes whose fate depends on the Vitess major (vitessflags.py)
CHECKED_FLAGS = {"vttablet": {"builtinbackup-incremental-restore-path", "queryserver-config-query-timeout",
                              "mysql_server_version", "tablet-path", "init_keyspace", "init_shard",
                              "init_tablet_type", "port", "grpc_port", "topo_implementation",
                              "topo_global_server_address", "topo_global_root"},
                 "vtctld": {"mysql_server_version", "cell", "port", "grpc_port", "service_map", "topo_implementation",
                            "topo_global_server_address", "topo_global_root"},
                 "vtgate": {"mysql_server_version", "cell", "cells_to_watch", "tablet_types_to_wait",
                            "mysql_server_port", "port", "grpc_port", "topo_implementation",
                            "topo_global_server_address", "topo_global_root", "mysql_auth_server_impl",
                            "mysql_auth_server_static_file"},
                 "vtorc": {"port", "clusters_to_watch", "topo_implementation", "topo_global_server_address",
                           "topo_global_root"},
                 "mysqlctld": {"tablet_uid", "socket_file", "mysql_server_version"}}


def is_operator_container(container: dict) -> bool:
    return is_operator_image(str(container.get("image", "")))


def resolved_image(double, container: dict) -> str:
    """The container's image, by the tag it was pushed as when its digest was registered."""
    image = str(container.get("image", ""))
    state = getattr(double, "vitess", None)
    return state.resolve_image(image) if state is not None else image


def _zap(level: str, logger: str, msg: str, **fields) -> str:
    return json.dumps({"level": level, "ts": round(time.time(), 7), "logger": logger, "msg": msg, **fields},
                      separators=(",", ":"))


def start_error(program: str) -> Run:
    """containerd's answer to a command that is not in the image (the container never starts)."""
    return Run(exit_code=128, reason="StartError", message=(
        "failed to create containerd task: failed to create shim task: OCI runtime create failed: runc create "
        f'failed: unable to start container process: exec: "{program}": executable file not found in $PATH: unknown'))


def vitess_operator(double, pod: dict, container: dict, env: dict) -> Run | None:
    image = str(container.get("image", ""))
    if not is_operator_image(image):
        return None
    command = list(container.get("command") or [])
    if command and command[0] not in OPERATOR_COMMANDS:
        return start_error(command[0])
    try:
        release, note = running_release(resolved_image(double, container))
    except UnknownRelease as e:
        return Run([f"kubedouble: {e}"], exit_code=1)
    head = ([f"kubedouble: {note}"] if note else []) + [_zap("info", "manager", f"Operator Version: {release.version}"),
            _zap("info", "manager", "Go Version: go1.26.3"),
            _zap("info", "manager", "Go OS/Arch: linux/amd64")]
    if "WATCH_NAMESPACE" not in env:
        return Run(head + [_zap("error", "manager", "Failed to get watch namespace", error="WATCH_NAMESPACE must be set",
                                stacktrace="main.main\n\t/go/src/planetscale.dev/vitess-operator/cmd/manager/main.go:74\n"
                                           "runtime.main\n\t/usr/local/go/src/runtime/proc.go:283")], exit_code=1)
    return Run(head + [_zap("info", "leader", "Trying to become the leader."),
                       _zap("info", "leader", "No pre-existing lock was found."),
                       _zap("info", "leader", "Became the leader."),
                       _zap("info", "manager", "Starting the manager.")])


def _glog(source: str, msg: str) -> str:
    t = datetime.now(timezone.utc)
    return f"I{t:%m%d %H:%M:%S}.{t.microsecond:06d}       1 {source}] {msg}"


def _etcd(double, container: dict) -> Run:
    args = ["etcd"] + [str(a) for a in container.get("args") or []]
    v = vitessflags.image_version(resolved_image(double, container))
    now = datetime.now(timezone.utc)
    if v is not None and v < (3, 5, 0):
        # etcd 3.3 / 3.4: capnslog ("2019-06-26 06:47:22.014547 I | etcdmain: ...")
        t = f"{now:%Y-%m-%d %H:%M:%S}.{now.microsecond:06d}"
        return Run([f"{t} I | etcdmain: etcd Version: {v[0]}.{v[1]}.{v[2]}",
                    f"{t} I | etcdmain: Git SHA: Not provided (use ./build instead of go build)",
                    f"{t} N | embed: serving insecure client requests on [::]:2379, this is strongly discouraged!"])
    t = now.isoformat(timespec="microseconds").replace("+00:00", "Z")
    version = ".".join(map(str, v)) if v else "3.5.17"
    return Run([json.dumps({"level": "info", "ts": t, "caller": "etcdmain/etcd.go:73", "msg": "Running: ", "args": args}),
                json.dumps({"level": "info", "ts": t, "caller": "embed/etcd.go:308", "msg": "starting an etcd server",
                            "etcd-version": version}),
                json.dumps({"level": "info", "ts": t, "caller": "embed/serve.go:187",
                            "msg": "serving client traffic insecurely; this is strongly discouraged!"})])


def vitess_component(double, pod: dict, container: dict, env: dict) -> Run | None:
    command = str((container.get("command") or [""])[0])
    prog = command.rsplit("/", 1)[-1]
    raw_args = [str(a) for a in container.get("args") or []]
    if prog == "etcd":
        return _etcd(double, container)
    if prog not in ("vtgate", "vtctld", "vttablet", "vtorc", "vtadmin", "mysqlctld"):
        return None
    source = container
    if prog == "mysqlctld":
        source = next((c for c in (pod.get("spec") or {}).get("containers") or [] if c.get("name") == "vttablet"),
                      container)
    v = vitessflags.image_version(resolved_image(double, source)) or (vitessflags.NEWEST_KNOWN, 0, 0)
    version = f"{v[0]}.{v[1]}.{v[2]}"
    parsed = vitessflags.parse(prog, v[0], raw_args, CHECKED_FLAGS.get(prog, set()))
    if parsed.error is not None:
        lines, code = vitessflags.failure_lines(prog, command, v[0], parsed.error)
        return Run(vitessflags.warning_lines(prog, parsed.warnings) + lines, exit_code=code)
    tablet_path = next((a.split("=", 1)[1] for a in raw_args if a.startswith("--tablet-path=")), "")
    lines = {
        "vtgate": [_glog("servenv.go:98", f"Version: {version}"), _glog("vtgate.go:343", "Starting vtgate"),
                   _glog("plugin_mysql_server.go:543", "Listening for MySQL connections on port 3306")],
        "vtctld": [_glog("servenv.go:98", f"Version: {version}"), _glog("vtctld.go:64", "Starting vtctld"),
                   _glog("grpc_server.go:272", "Listening for gRPC calls on port 15999")],
        "vttablet": [_glog("servenv.go:98", f"Version: {version}"),
                     _glog("tm_init.go:400", f"Initializing tablet manager ({tablet_path})"),
                     _glog("state_manager.go:230", "Starting tabletserver")],
        "vtorc": [_glog("servenv.go:98", f"Version: {version}"), _glog("vtorc.go:110", "Starting VTOrc")],
        "vtadmin": [_glog("main.go:168", "vtadmin-api listening on :15001")],
        "mysqlctld": [_glog("mysqlctld.go:121", "mysqlctl socket file path: /vt/socket/mysqlctl.sock"),
                      _glog("mysqld.go:337", "Mysqld.Start: starting mysqld")],
    }[prog]
    state = getattr(double, "vitess", None)
    if prog == "vttablet" and state is not None:
        lines += [_glog("restore.go:140", line) for line in state.tablet_started(double, pod)]
    return Run(vitessflags.warning_lines(prog, parsed.warnings) + lines)


class VitessHttp:
    """``wget`` in a vttablet or vtgate container (``program``), against the process's own HTTP
    port (15000): /debug/vars. Every Vitess binary exports ``BuildVersion`` there (servenv's
    buildinfo.go: ``stats.NewString("BuildVersion")``, the release's versionName, "24.0.0"):
    here the version of the container's image, as the process logs it at start; vttablet adds
    what its restore set."""

    def __init__(self, double, state, program: str = "vttablet"):
        self.double, self.state, self.program = double, state, program

    def __call__(self, argv: list[str], stdin: bytes | None, pod: dict) -> tuple[int, bytes, bytes]:
        if len(argv) == 3 and argv[0] in ("sh", "/bin/sh", "bash", "/bin/bash") and argv[1] == "-c":
            argv = shlex.split(argv[2])
        if not argv or argv[0].rsplit("/", 1)[-1] != "wget":
            raise not_in_image(argv[0] if argv else "")
        urls = [a for a in argv[1:] if not a.startswith("-")]
        to_stdout = any(a in ("-qO-", "-O-", "-qO", "--output-document=-") for a in argv) or \
            any(a in ("-O", "--output-document") and b == "-" for a, b in zip(argv, argv[1:]))
        if len(urls) != 1 or not to_stdout:
            return 1, b"", b"kubedouble: only `wget -qO- http://localhost:15000/<path>` is simulated\n"
        url = urls[0] if urls[0] != "-" else ""
        host, _, path = url.removeprefix("http://").partition("/")
        if host not in ("localhost:15000", "127.0.0.1:15000"):
            return 4, b"", f"wget: can't connect to remote host ({host}): Connection refused\n".encode()
        if path.split("?")[0] != "debug/vars":
            return 8, b"", b"wget: server returned error: HTTP/1.1 404 Not Found\n"
        container = next((c for c in (pod.get("spec") or {}).get("containers") or [] if c.get("name") == self.program), {})
        v = vitessflags.image_version(resolved_image(self.double, container)) or (vitessflags.NEWEST_KNOWN, 0, 0)
        body: dict = {"BuildVersion": f"{v[0]}.{v[1]}.{v[2]}"}
        if self.program == "vttablet":
            r = self.state.restored(self.double, pod)
            body |= {"RestoredBackupTime": r.time if r else "", "RestorePosition": r.position if r else "",
                     "RestoreCount": {"-.-.Restore": 1} if r else {}}
        return 0, (json.dumps(body, indent=1) + "\n").encode(), b""
