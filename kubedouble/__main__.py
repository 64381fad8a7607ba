"""Run a kubedouble in the foreground: ``python -m kubedouble --port 6443 --kubeconfig PATH``.

Parses the command line, starts the double, writes the kubeconfig and waits for SIGTERM or
SIGINT. The simulated vitess-operator and etcd-operator run unless ``--no-operators``;
``--mysql-backend HOST:PORT`` lets vtgate Services (NodePort: 127.0.0.1:<nodePort>) and
``vtctldclient`` in the vtctld pod reach a real MariaDB. ``--version`` picks the Kubernetes
minor (1.22 and later, as far as kubernetes-validate has schemas); ``--install-schemas`` installs
the older kubernetes-validate release a version before 1.25 needs (``openapi.OLDER_RELEASE``)
and exits. A version without schemas is one line on stderr and exit status 2, before anything
listens. Nothing else belongs here.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import shutil
import signal
import subprocess
import sys
import threading

from vtflow.errors import VtflowError
from vtflow.sandbox.cluster import parse_node_sizes

from . import openapi


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m kubedouble", description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--kubeconfig", help="where to write the admin kubeconfig (required unless --install-schemas)")
    p.add_argument("--nodes", type=int, help="number of nodes (default 3, or one per --node-sizes entry)")
    p.add_argument("--node-cpu", default="2", help="CPUs of every node (without --node-sizes)")
    p.add_argument("--node-memory", default="4Gi", help="memory of every node (without --node-sizes)")
    p.add_argument("--node-sizes", metavar="CPU/MEM,...", type=_sizes,
                   help="one CPU/memory per node, e.g. 2/4Gi,1/2Gi,2/4Gi (overrides --node-cpu/--node-memory)")
    p.add_argument("--version", default="v1.33.5+k3s1", help="gitVersion the server reports; its minor picks "
                   "the API groups and schemas served")
    p.add_argument("--install-schemas", action="store_true",
                   help="install the schemas --version needs when no installed package has them "
                        f"({openapi.OLDER_RELEASE} for 1.22-1.24), then exit")
    p.add_argument("--no-local-path", action="store_true", help="start without the default StorageClass")
    p.add_argument("--no-operators", action="store_true",
                   help="do not simulate the vitess-operator and the etcd-operator (on by default: they act "
                        "only once their Deployments from the real manifests run in the double)")
    p.add_argument("--mysql-backend", metavar="HOST:PORT",
                   help="MariaDB/MySQL that plays every tablet's mysqld (database = keyspace): vtgate Services "
                        "proxy to it and `vtctldclient ApplySchema` runs there")
    p.add_argument("--mysql-user", default="root",
                   help="account on --mysql-backend used by vtctldclient's SQL (needs CREATE DATABASE); its "
                        "password comes from the environment variable KUBEDOUBLE_MYSQL_PASSWORD")
    p.add_argument("--node-network", default="127.0.0", metavar="A.B.C", type=_network,
                   help="the nodes' InternalIPs are A.B.C.2, A.B.C.3, ... (the sandbox's sshd nodes listen there)")
    p.add_argument("--vtgate-host", default="127.0.0.1",
                   help="address the vtgate proxy listens on for NodePort Services (port = the nodePort)")
    p.add_argument("--pod-start-delay", type=float, default=0.05, help="seconds from bound pod to Running")
    return p


def _network(text: str) -> str:
    try:
        if ipaddress.ip_address(f"{text}.2").version == 4 and text.count(".") == 2:
            return text
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"{text!r} is not the first three parts of an IPv4 address (e.g. 127.0.0)")


def _sizes(text: str) -> list[tuple[str, str]]:
    try:
        return parse_node_sizes(text)
    except VtflowError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def install_schemas(version: str) -> int:
    """Install the older kubernetes-validate release into its own folder when ``version`` needs it.

    pip --target into a temporary sibling first, renamed when complete: an interrupted install
    leaves no half folder that would look installed."""
    try:
        openapi.schema_folder(version)
        return 0
    except openapi.SchemaVersionError as e:
        target = openapi.older_release_dir()
        installable = openapi.server_minor_or_none(version) in openapi.OLDER_MINORS
        if not installable or (target / "kubernetes_validate").is_dir():
            print(e, file=sys.stderr)
            return 2
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                           "--no-deps", "--no-compile", "--target", str(partial), openapi.OLDER_RELEASE],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["pip failed"])[-1]
        print(f"kubedouble: pip could not install {openapi.OLDER_RELEASE} into {target}: {last}; fix: make sure "
              f"PyPI is reachable, then run python -m kubedouble --install-schemas --version {version} again",
              file=sys.stderr)
        return 1
    partial.rename(target)
    openapi.forget_folders()
    print(f"installed {openapi.OLDER_RELEASE} (the schemas of Kubernetes {version}) into {target}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if args.install_schemas:
        return install_schemas(args.version)
    if not args.kubeconfig:
        p.error("the following arguments are required: --kubeconfig")
    from .server import DoubleConfig, KubeDouble

    try:
        double = KubeDouble(DoubleConfig(git_version=args.version, nodes=args.nodes, node_cpu=args.node_cpu,
                                         node_memory=args.node_memory, node_sizes=args.node_sizes,
                                         node_network=args.node_network,
                                         local_path_storage=not args.no_local_path,
                                         operators=not args.no_operators, mysql_backend=args.mysql_backend,
                                         mysql_user=args.mysql_user,
                                         mysql_password=os.environ.get("KUBEDOUBLE_MYSQL_PASSWORD", ""),
                                         vtgate_host=args.vtgate_host, pod_start_delay=args.pod_start_delay))
    except (openapi.SchemaVersionError, ValueError) as e:
        print(e, file=sys.stderr)
        return 2
    url = double.start(args.host, args.port)
    double.kubeconfig(args.kubeconfig)
    print(f"kubedouble serving {url} as Kubernetes {args.version} (kubeconfig {args.kubeconfig})", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    double.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
