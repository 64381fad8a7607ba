"""prefect.yaml (issue 14 item 9): the deployments of deployments/__init__.py on a work pool, run
by a real process worker against this session's Prefect server."""

import os
import subprocess
import sys
import uuid
from pathlib import Path

import yaml

from helpers import OPERATOR_YAML

REPO = Path(__file__).resolve().parents[2]


def test_prefect_yaml_is_rendered_from_all_deployments(monkeypatch):
    from deployments import all_deployments
    from deployments.prefect_yaml import render

    monkeypatch.delenv("VTFLOW_BLOCKS", raising=False)
    assert (REPO / "prefect.yaml").read_text() == render(), \
        "prefect.yaml is stale: run `python -m deployments.prefect_yaml > prefect.yaml`"
    config = yaml.safe_load((REPO / "prefect.yaml").read_text())
    by_name = {d["name"]: d for d in config["deployments"]}
    assert list(by_name) == [d.name for d in all_deployments()] == ["deploy", "node-prep", "health-check", "backup",
                                                                    "restore-drill", "teardown", "move-tables", "reshard",
                                                                    "upgrade", "redeploy"]
    assert by_name["health-check"]["schedules"] == [{"interval": 300.0, "active": False}]
    assert by_name["backup"]["schedules"] == [{"cron": "0 3 * * *", "active": False}]
    assert by_name["restore-drill"]["schedules"] == [{"cron": "0 4 * * 0", "active": False}]
    assert "schedules" not in by_name["teardown"] or not by_name["teardown"]["schedules"]
    assert by_name["health-check"]["concurrency_limit"] == {"limit": 1, "collision_strategy": "CANCEL_NEW"}
    assert {d["work_pool"]["name"] for d in config["deployments"]} == {"vtflow"}


def _prefect(*argv, env, timeout=180):
    r = subprocess.run([sys.executable, "-m", "prefect", *argv], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, f"prefect {' '.join(argv)}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout


def test_deploy_all_then_a_process_worker_runs_the_deploy_flow(prefect_server, tmp_path):
    """`prefect work-pool create`, `prefect deploy --all` from the checkout, `prefect worker start`:
    the deploy flow (up to the vitess-operator step) runs in the worker's subprocess against a
    Kubernetes API double, and completes; the operator is then in the double."""
    from prefect import get_client
    from prefect.client.schemas.filters import WorkPoolFilter, WorkPoolFilterName
    from prefect.deployments import run_deployment

    from blocks.mysql import MySQLCredentials
    from blocks.target import VitessTarget
    from kubedouble import DoubleConfig, KubeDouble

    POOL = WorkPoolFilter(name=WorkPoolFilterName(any_=["vtflow"]))
    d = KubeDouble(DoubleConfig(nodes=3, node_cpu="8", node_memory="16Gi", git_version="v1.33.5+k3s1", operators=True,
                                pod_start_delay=0.02))
    d.start()
    tag = uuid.uuid4().hex[:6]
    VitessTarget(kubeconfig=d.kubeconfig(tmp_path / "kubeconfig").read_text(), node_address="127.0.0.1").save(f"tgt-{tag}")
    MySQLCredentials(user="user", password="worker-pw-1").save(f"my-{tag}")
    env = {**os.environ, "VTFLOW_CHECKOUT": str(REPO), "PREFECT_WORKER_QUERY_SECONDS": "1",
           "PREFECT_WORKER_PREFETCH_SECONDS": "5"}
    env.pop("VTFLOW_BLOCKS", None)
    worker = None
    try:
        _prefect("work-pool", "create", "vtflow", "--type", "process", "--overwrite", env=env)
        out = _prefect("deploy", "--all", env=env, timeout=300)
        assert "deploy/deploy" in out, out[-3000:]
        with get_client(sync_client=True) as client:
            pooled = client.read_deployments(work_pool_filter=POOL)
            assert sorted(f"{x.name}" for x in pooled) == ["backup", "deploy", "health-check", "move-tables",
                                                                    "node-prep", "redeploy", "reshard", "restore-drill",
                                                                    "teardown", "upgrade"]
            health = client.read_deployment_by_name("health-check/health-check")
            assert [s.active for s in health.schedules] == [False], "scheduled deployments start paused"
        worker = subprocess.Popen([sys.executable, "-m", "prefect", "worker", "start", "--pool", "vtflow",
                                   "--name", f"test-{tag}"], cwd=tmp_path, env=env,
                                  stdout=open(tmp_path / "worker.log", "w"), stderr=subprocess.STDOUT,
                                  start_new_session=True)
        run = run_deployment("deploy/deploy", timeout=240, parameters={
            "target_block": f"tgt-{tag}", "mysql_block": f"my-{tag}", "operator_manifest": OPERATOR_YAML,
            "until": "vitess-operator"})
        log = (tmp_path / "worker.log").read_text()
        assert run.state.is_completed(), f"{run.state.message}\n{log[-4000:]}"
        assert run.work_pool_name == "vtflow" and f"test-{tag}" in log, log[-3000:]
        from kubernetes.client import AppsV1Api

        from vtflow import kube

        api = kube.api_client((tmp_path / "kubeconfig").read_text(), None, "the double")
        names = [x.metadata.name for x in AppsV1Api(api).list_deployment_for_all_namespaces().items]
        assert "vitess-operator" in names, names
    finally:
        try:
            if worker is not None:
                os.killpg(worker.pid, 15)
                try:
                    worker.wait(30)
                except subprocess.TimeoutExpired:   # a worker that ignores SIGTERM must not outlive the test
                    os.killpg(worker.pid, 9)
                    worker.wait(30)
        finally:
            # the deployments go, whatever happened above: other tests serve deployments of the same
            # names on this server, and a leftover pooled deployment (or worker) takes their runs
            with get_client(sync_client=True) as client:
                for x in client.read_deployments(work_pool_filter=POOL):
                    client.delete_deployment(x.id)
                client.delete_work_pool("vtflow")
            d.stop()
