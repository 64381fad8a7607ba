"""Run a kubedouble in the foreground: ``python -m kubedouble --port 6443 --kubeconfig PATH``.

Parses the command line, starts the double, writes the kubeconfig and waits for SIGTERM or
SIGINT. The simulated vitess-operator and etcd-operator run unless ``--no-operators``;
``--mysql-backend HOST:PORT`` lets vtgate Services (NodePort: 127.0.0.1:<nodePort>) and
``vtctldclient`` in the vtctld pod reach a real MariaDB. Nothing else belongs here.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from .server import DoubleConfig, KubeDouble


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m kubedouble", description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--kubeconfig", required=True, help="where to write the admin kubeconfig")
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--node-cpu", default="2")
    p.add_argument("--node-memory", default="4Gi")
    p.add_argument("--version", default="v1.33.5+k3s1", help="gitVersion the server reports")
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
    p.add_argument("--vtgate-host", default="127.0.0.1",
                   help="address the vtgate proxy listens on for NodePort Services (port = the nodePort)")
    p.add_argument("--pod-start-delay", type=float, default=0.05, help="seconds from bound pod to Running")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    double = KubeDouble(DoubleConfig(git_version=args.version, nodes=args.nodes, node_cpu=args.node_cpu,
                                     node_memory=args.node_memory, local_path_storage=not args.no_local_path,
                                     operators=not args.no_operators, mysql_backend=args.mysql_backend,
                                     mysql_user=args.mysql_user,
                                     mysql_password=os.environ.get("KUBEDOUBLE_MYSQL_PASSWORD", ""),
                                     vtgate_host=args.vtgate_host, pod_start_delay=args.pod_start_delay))
    url = double.start(args.host, args.port)
    double.kubeconfig(args.kubeconfig)
    print(f"kubedouble serving {url} (kubeconfig {args.kubeconfig})", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    double.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
