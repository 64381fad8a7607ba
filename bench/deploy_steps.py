"""Benchmark: vtflow's own overhead in deploy steps 2-4 (etcd-operator, vitess-operator, cluster
init) against the Kubernetes API double with no simulated latency, and how long the cluster step
takes to notice that the operator reported the cluster ready.

Prints one JSON line: {"bench":"deploy_steps","overhead_s":..,"ready_to_done_s":..}

overhead_s: wall time of the deploy flow (until=cluster, no node prep) against a double whose
pods start at once, i.e. the flow, its API calls and waits, not a cluster's own start-up; the
median of REPEAT fresh deploys, each on a new double. ready_to_done_s: from the moment a watching
client (official client, own thread) sees the VitessCluster's status turn ready to the moment
the flow returns (so it also counts the artifact and the flow's own end: an upper bound).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from benchenv import REPEAT, STATE, UPSTREAM  # noqa: E402  (first: it prepares the environment for Prefect)

OPERATOR_YAML = str(UPSTREAM / "vitess-operator-v2.17.0" / "examples" / "operator.yaml")


def main() -> None:
    from blocks.mysql import MySQLCredentials
    from blocks.target import VitessTarget
    from flows.deploy import DeployParameters, deploy
    from tasks.cluster import not_ready
    from vtflow import kube
    from kubedouble import DoubleConfig, KubeDouble
    from vtflow.stack import PrefectServer, StackSettings

    server = PrefectServer(StackSettings.from_env()).start()
    MySQLCredentials(user="user", password="bench-pw").save("bench", overwrite=True)

    async def one() -> tuple[float, float]:
        d = KubeDouble(DoubleConfig(nodes=3, node_cpu="8", node_memory="16Gi", operators=True, pod_start_delay=0.0))
        d.start()
        try:
            kc = d.kubeconfig(STATE / f"kubeconfig-{uuid.uuid4().hex[:6]}").read_text()
            await VitessTarget(kubeconfig=kc, node_address="127.0.0.1").asave("bench", overwrite=True)
            k = kube.Kube(kube.api_client(kc, None, "bench"))
            ready_at: list[float] = []
            stop = threading.Event()

            def watch_ready():
                while not stop.is_set() and not ready_at:
                    try:
                        k.wait("planetscale.com/v2", "VitessCluster", "example", "example", not_ready, timeout_s=2)
                        ready_at.append(time.perf_counter())
                    except Exception:  # noqa: BLE001 - the CRD is not there yet: look again
                        time.sleep(0.01)
            watcher = threading.Thread(target=watch_ready, daemon=True)
            watcher.start()
            params = DeployParameters(target_block="bench", mysql_block="bench", operator_manifest=OPERATOR_YAML,
                                      until="cluster", ready_timeout_s=120)
            t = time.perf_counter()
            state = await deploy(**params.flow_kwargs(), return_state=True)
            done = time.perf_counter()
            stop.set()
            watcher.join(5)
            assert state.is_completed(), state.message
            assert ready_at, "the watcher never saw the cluster ready"
            return done - t, done - ready_at[0]
        finally:
            d.stop()

    async def measure():
        await one()  # warm-up: imports, the server's first writes
        runs = []
        for _ in range(REPEAT):
            await asyncio.sleep(2)  # let the server write the previous run's events
            runs.append(await one())
        return runs

    try:
        runs = asyncio.run(measure())
    finally:
        server.stop()
        shutil.rmtree(STATE, ignore_errors=True)
    print(json.dumps({"bench": "deploy_steps",
                      "overhead_s": round(statistics.median(r[0] for r in runs), 3),
                      "ready_to_done_s": round(statistics.median(r[1] for r in runs), 3)}))


if __name__ == "__main__":
    main()
