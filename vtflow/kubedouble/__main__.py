"""Run a kubedouble in the foreground: ``python -m vtflow.kubedouble --port 6443 --kubeconfig PATH``.

Parses the command line, starts the double, writes the kubeconfig and waits for SIGTERM or
SIGINT. Nothing else belongs here.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from .server import DoubleConfig, KubeDouble


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vtflow.kubedouble", description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--kubeconfig", required=True, help="where to write the admin kubeconfig")
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--node-cpu", default="2")
    p.add_argument("--node-memory", default="4Gi")
    p.add_argument("--version", default="v1.33.5+k3s1", help="gitVersion the server reports")
    p.add_argument("--no-local-path", action="store_true", help="start without the default StorageClass")
    args = p.parse_args(argv)
    double = KubeDouble(DoubleConfig(git_version=args.version, nodes=args.nodes, node_cpu=args.node_cpu,
                                     node_memory=args.node_memory, local_path_storage=not args.no_local_path))
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
