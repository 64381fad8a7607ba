"""Benchmark: one health-check run against a sandbox-like stack (the API double in its own
process with three 8 CPU / 16 GiB nodes, vtgate proxying to a throwaway MariaDB, this
benchmark's own Prefect server on SQLite), the cluster deployed first by `vtflow deploy`.

Prints one JSON line:
{"bench":"health_check","wall_s":..,"peak_rss_mb":..,"prefect_overhead_s":..,"checking_s":..,"ratio_flow_vs_checks":..}

wall_s: median wall time of the health_check flow (warm: after one run), REPEAT runs.
checking_s: median wall time of the same three check groups called directly, at once, without
Prefect (the peer run, same process). prefect_overhead_s = wall_s - checking_s.
peak_rss_mb: this process's peak RSS (it runs nothing but the checks and Prefect's client: the
double, MariaDB, the server and the deploy run in other processes). Nodes over SSH are not
checked (optional in the flow).
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from benchenv import PORT, REPEAT, REPO, STATE, UPSTREAM  # noqa: E402  (first: it prepares the environment)

from testbed import MariaDB, free_port, wait_port  # noqa: E402

OPERATOR_YAML = str(UPSTREAM / "vitess-operator-v2.17.0" / "examples" / "operator.yaml")


def main() -> None:
    from vtflow.stack import PrefectServer, StackSettings, register_blocks

    db = MariaDB(root=Path(tempfile.mkdtemp(prefix="vtflow-bench-mariadb-")), port=free_port()).start()
    kube_port = free_port()
    kubeconfig = STATE / "kubeconfig"
    double = subprocess.Popen(
        [sys.executable, "-m", "kubedouble", "--port", str(kube_port), "--kubeconfig", str(kubeconfig),
         "--nodes", "3", "--node-cpu", "8", "--node-memory", "16Gi", "--mysql-backend", f"{db.host}:{db.port}",
         "--mysql-user", db.user, "--pod-start-delay", "0.02"],
        env={**os.environ, "KUBEDOUBLE_MYSQL_PASSWORD": db.password}, cwd=REPO,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = PrefectServer(StackSettings.from_env()).start()
    try:
        wait_port("127.0.0.1", kube_port, 30, double, "kubedouble")
        deadline = time.monotonic() + 15
        while not (kubeconfig.exists() and "current-context" in kubeconfig.read_text()):
            assert time.monotonic() < deadline, "the double wrote no kubeconfig"
            time.sleep(0.05)
        register_blocks()
        from blocks.mysql import MySQLCredentials
        from blocks.target import VitessTarget

        VitessTarget(kubeconfig=kubeconfig.read_text(), node_address="127.0.0.1").save("bench", overwrite=True)
        MySQLCredentials(user=db.user, password=db.password).save("bench", overwrite=True)
        deployed = subprocess.run(
            [sys.executable, "-m", "vtflow.cli", "deploy", "--target", "bench", "--no-node-prep", "--until", "cluster",
             "--operator-manifest", OPERATOR_YAML, "--ready-timeout", "120"],
            cwd=REPO, env={**os.environ, "PREFECT_API_URL": f"http://127.0.0.1:{PORT}/api"},
            capture_output=True, text=True, timeout=600)
        assert deployed.returncode == 0, deployed.stderr[-2000:]
        figures = measure()
    finally:
        server.stop()
        double.terminate()
        double.wait(10)
        db.stop()
        shutil.rmtree(STATE, ignore_errors=True)
    print(json.dumps({"bench": "health_check", **figures}))


def measure() -> dict:
    from blocks.mysql import MySQLCredentials
    from blocks.target import VitessTarget
    from flows.health import health_check
    from tasks.health import backup_age_checks, kubernetes_checks, vitess_checks
    from vtflow import kube

    target, creds = VitessTarget.load("bench"), MySQLCredentials.load("bench")

    def direct() -> float:
        k = kube.Kube(target.api_client(), attempts=2, backoff_s=0.2)
        t = time.perf_counter()
        with ThreadPoolExecutor(3) as pool:
            groups = [pool.submit(kubernetes_checks, k, "example", "example", None),
                      pool.submit(vitess_checks, k, "example", "example", "127.0.0.1", None, creds, 30),
                      pool.submit(backup_age_checks, k, "example", "example", 26)]
            checks = groups[0].result()[0] + groups[1].result() + groups[2].result()
        spent = time.perf_counter() - t
        assert all(c.level == "ok" for c in checks), [c for c in checks if c.level != "ok"]
        return spent

    async def flow_once() -> float:
        t = time.perf_counter()
        state = await health_check(target_block="bench", mysql_block="bench", return_state=True)
        spent = time.perf_counter() - t
        assert state.is_completed(), state.message
        return spent

    async def runs() -> list[float]:
        await flow_once()  # warm-up: imports, the server's first writes
        out = []
        for _ in range(REPEAT):
            await asyncio.sleep(1)
            out.append(await flow_once())
        return out

    direct()
    flow_s = statistics.median(asyncio.run(runs()))
    checking_s = statistics.median(direct() for _ in range(REPEAT))
    return {"wall_s": round(flow_s, 3), "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "prefect_overhead_s": round(flow_s - checking_s, 3), "checking_s": round(checking_s, 3),
            "ratio_flow_vs_checks": round(flow_s / checking_s, 2)}


if __name__ == "__main__":
    main()
