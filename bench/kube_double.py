"""Benchmark: the Kubernetes API double through the official client.

Prints one JSON line:
{"bench":"kube_double","get_rps":..,"apply_rps":..,"list_rps":..,"watch_latency_ms":..}

get/apply/list: sequential requests per second for SECONDS each, with the official
``kubernetes`` client over HTTP: GET of one ConfigMap, server-side apply of one ConfigMap
(alternating data so every apply writes), LIST of a namespace holding 100 ConfigMaps.
watch_latency_ms: median over N of the time from a status change made through the API
(a Deployment's status subresource patched with the official client) to a client watching
with ``kubernetes.watch.Watch`` in another thread seeing it. The double runs in-process
with its built-in controllers, as the tests use it.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from kubernetes import client, config, watch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from kubedouble import DoubleConfig, KubeDouble  # noqa: E402

SECONDS = 3.0
N_WATCH = 50
NS = "bench"


def _rate(fn) -> float:
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < SECONDS:
        fn(n)
        n += 1
    return round(n / (time.perf_counter() - start), 1)


def main() -> None:
    d = KubeDouble(DoubleConfig(nodes=1))
    d.start()
    try:
        path = d.kubeconfig(Path(tempfile.mkdtemp()) / "kubeconfig")
        api = config.new_client_from_config(str(path))
        core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NS)))
        for i in range(100):
            core.create_namespaced_config_map(NS, client.V1ConfigMap(metadata=client.V1ObjectMeta(name=f"cm-{i}"),
                                                                     data={"i": str(i)}))
        get_rps = _rate(lambda n: core.read_namespaced_config_map("cm-0", NS))

        def ssa(n):
            body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied", "namespace": NS},
                    "data": {"n": str(n)}}
            core.patch_namespaced_config_map("applied", NS, body, field_manager="bench", force=True,
                                             _content_type="application/apply-patch+yaml")
        apply_rps = _rate(ssa)
        list_rps = _rate(lambda n: core.list_namespaced_config_map(NS))

        # watch latency: status subresource writes seen by a watcher in another thread
        apps.create_namespaced_deployment(NS, {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w"},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"a": "w"}},
                     "template": {"metadata": {"labels": {"a": "w"}},
                                  "spec": {"containers": [{"name": "c", "image": "x:1"}]}}}})
        time.sleep(0.3)   # let the deployment controller settle before timing
        seen: dict[int, float] = {}
        ready = threading.Event()
        w = watch.Watch()

        def watcher():
            rv = apps.list_namespaced_deployment(NS).metadata.resource_version
            ready.set()
            for ev in w.stream(apps.list_namespaced_deployment, NS, resource_version=rv, timeout_seconds=60):
                cnt = ev["object"].status.collision_count
                if cnt is not None and cnt not in seen:
                    seen[cnt] = time.perf_counter()
                if cnt is not None and cnt >= N_WATCH:
                    w.stop()
        t = threading.Thread(target=watcher, daemon=True)
        t.start()
        ready.wait(5)
        time.sleep(0.1)
        sent: dict[int, float] = {}
        for i in range(1, N_WATCH + 1):
            sent[i] = time.perf_counter()
            apps.patch_namespaced_deployment_status("w", NS, {"status": {"collisionCount": i}})
            deadline = time.perf_counter() + 2
            while i not in seen and time.perf_counter() < deadline:
                time.sleep(0.0002)
        t.join(5)
        lat = [(seen[i] - sent[i]) * 1000 for i in sent if i in seen]
        watch_ms = round(statistics.median(lat), 2) if lat else None
    finally:
        d.stop()
    print(json.dumps({"bench": "kube_double", "get_rps": get_rps, "apply_rps": apply_rps, "list_rps": list_rps,
                      "watch_latency_ms": watch_ms}))


if __name__ == "__main__":
    main()
