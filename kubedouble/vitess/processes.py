"""What the simulated Vitess processes do when the kubelet starts their containers (kubelet programs).

``vitess_operator``: the real binary (planetscale/vitess-operator cmd/manager/main.go) prints its
version, then ``k8sutil.GetWatchNamespace()`` (planetscale/operator-sdk-libs pkg/k8sutil) fails
with ``WATCH_NAMESPACE must be set`` when the variable is absent (an empty value means all
namespaces) and main exits 1 after logging "Failed to get watch namespace" (zap production JSON).
The image's ENTRYPOINT is ``/usr/local/bin/entrypoint`` (build/bin/entrypoint: ``exec ${OPERATOR} $@``),
so a container without ``command`` still runs the operator with its args; a ``command`` that is
neither the operator nor that entrypoint is not in the image: the container cannot start.
The operator controller (operator.py) reads WATCH_NAMESPACE from the environment the kubelet
resolved for the running container. ``vitess_component``: start-up lines of vtgate, vtctld,
vttablet, vtorc, vtadmin, mysqlctld and etcd; they keep running. Nothing here changes objects.
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timezone

from ..controllers.kubelet import Run

OPERATOR_IMAGE = re.compile(r"(^|/)vitess-operator:([^/]+)$")
OPERATOR_COMMANDS = ("vitess-operator", "/usr/local/bin/vitess-operator", "/usr/local/bin/entrypoint")


def is_operator_container(container: dict) -> bool:
    return bool(OPERATOR_IMAGE.search(str(container.get("image", ""))))


def _zap(level: str, logger: str, msg: str, **fields) -> str:
    return json.dumps({"level": level, "ts": round(time.time(), 7), "logger": logger, "msg": msg, **fields},
                      separators=(",", ":"))


def start_error(program: str) -> Run:
    """containerd's answer to a command that is not in the image (the container never starts)."""
    return Run(exit_code=128, reason="StartError", message=(
        "failed to create containerd task: failed to create shim task: OCI runtime create failed: runc create "
        f'failed: unable to start container process: exec: "{program}": executable file not found in $PATH: unknown'))


def vitess_operator(double, pod: dict, container: dict, env: dict) -> Run | None:
    m = OPERATOR_IMAGE.search(str(container.get("image", "")))
    if m is None:
        return None
    command = list(container.get("command") or [])
    if command and command[0] not in OPERATOR_COMMANDS:
        return start_error(command[0])
    version = m.group(2).lstrip("v")
    head = [_zap("info", "manager", f"Operator Version: {version}"),
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


def vitess_component(double, pod: dict, container: dict, env: dict) -> Run | None:
    prog = str((container.get("command") or [""])[0]).rsplit("/", 1)[-1]
    args = " ".join(container.get("args") or [])
    if prog == "etcd":
        t = datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")
        return Run([json.dumps({"level": "info", "ts": t, "caller": "etcdmain/etcd.go:73", "msg": "Running: ",
                                "args": [prog] + list(container.get("args") or [])}),
                    json.dumps({"level": "info", "ts": t, "caller": "embed/serve.go:187",
                                "msg": "serving client traffic insecurely; this is strongly discouraged!"})])
    lines = {
        "vtgate": [_glog("servenv.go:98", "Version: 23.0.3"), _glog("vtgate.go:343", "Starting vtgate"),
                   _glog("plugin_mysql_server.go:543", "Listening for MySQL connections on port 3306")],
        "vtctld": [_glog("servenv.go:98", "Version: 23.0.3"), _glog("vtctld.go:64", "Starting vtctld"),
                   _glog("grpc_server.go:272", "Listening for gRPC calls on port 15999")],
        "vttablet": [_glog("servenv.go:98", "Version: 23.0.3"),
                     _glog("tm_init.go:400", f"Initializing tablet manager ({args.split(' ')[0]})"),
                     _glog("state_manager.go:230", "Starting tabletserver")],
        "vtorc": [_glog("servenv.go:98", "Version: 23.0.3"), _glog("vtorc.go:110", "Starting VTOrc")],
        "vtadmin": [_glog("main.go:168", "vtadmin-api listening on :15001")],
        "mysqlctld": [_glog("mysqlctld.go:121", "mysqlctl socket file path: /vt/socket/mysqlctl.sock"),
                      _glog("mysqld.go:337", "Mysqld.Start: starting mysqld")],
    }.get(prog)
    return Run(lines) if lines is not None else None
