"""End to end: Harbor pushes (Default and CloudEvents formats) reach `vtflow webhook serve`, which
creates runs of the served redeploy deployment; each goes green and the VitessCluster then names
the pushed digest. A redelivery creates nothing. Kubernetes is the API double (vtgate proxying
to a MariaDB of this module's own); the Prefect server is this session's."""

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from blocks.harbor import HarborWebhook, ImageRoute
from helpers import deployed_cluster, deployment_exists, finished_run, wait_until
from tasks.redeploy import cluster_images
from testbed import free_port, wait_port

REPO = Path(__file__).resolve().parents[2]
NS = "example"
AUTH = "harbor-e2e-" + uuid.uuid4().hex


def digest(seed: str) -> str:
    return "sha256:" + hashlib.sha256(seed.encode()).hexdigest()


def default_push(dig: str, tag: str, at: int) -> dict:
    return {"type": "PUSH_ARTIFACT", "occur_at": at, "operator": "ci", "event_data": {
        "resources": [{"digest": dig, "tag": tag, "resource_url": f"harbor.lan/vitess/lite:{tag}"}],
        "repository": {"date_created": at - 100, "name": "lite", "namespace": "vitess", "repo_full_name": "vitess/lite",
                       "repo_type": "private"}}}


def cloudevents_push(dig: str, tag: str, at: int) -> dict:
    return {"specversion": "1.0", "id": str(uuid.uuid4()), "requestid": str(uuid.uuid4()),
            "source": "/projects/2/webhook/policies/7", "type": "harbor.artifact.pushed",
            "datacontenttype": "application/json", "operator": "ci",
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at)),
            "data": default_push(dig, tag, at)["event_data"]}


def post(port: int, body: dict, content_type: str) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/harbor", data=json.dumps(body).encode(), method="POST",
                                 headers={"Authorization": AUTH, "Content-Type": content_type})
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.status == 202
        return json.loads(r.read())


@pytest.fixture(scope="module")
def stack(prefect_server, tmp_path_factory):
    with deployed_cluster(tmp_path_factory.mktemp("e2e"), registry_mirror="harbor.lan/vitess") as d:
        tag = d.tag
        HarborWebhook(auth_header=AUTH, routes=[ImageRoute(repository="vitess/lite", tags="v24.*", component="vitess",
                                                           target_block=f"tgt-{tag}", mysql_block=f"my-{tag}")],
                      ).save(f"harbor-{tag}")
        env = {**os.environ, "PREFECT_RUNNER_POLL_FREQUENCY": "1", "PYTHONPATH": str(REPO)}
        serve = subprocess.Popen(
            [sys.executable, "-c", "from prefect import serve; from deployments import all_deployments; "
                                   "serve(*[d for d in all_deployments() if d.name == 'redeploy'], print_starting_message=False)"],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port = free_port()
        receiver = subprocess.Popen([sys.executable, "-m", "vtflow.cli", "webhook", "serve", "--host", "127.0.0.1",
                                     "--port", str(port), "--block", f"harbor-{tag}"],
                                    cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port("127.0.0.1", port, 30, receiver, "webhook receiver")

            def registered() -> bool:  # else the tests' waits for a run would include serve's start
                assert serve.poll() is None, f"prefect serve exited with {serve.returncode}"
                return redeploy_deployment_exists()
            wait_until(registered, 120, "prefect serve to register the redeploy deployment", interval=0.5)
            d.port = port
            yield d
        finally:
            for p in (receiver, serve):
                p.terminate()
                p.wait(30)


def redeploy_deployment_exists() -> bool:
    return deployment_exists("redeploy/redeploy")


def spooled(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
        return json.loads(r.read())["spooled"]


def finished(run_id: str, timeout: float = 180):
    return finished_run(run_id, timeout)


def redeploy_runs() -> int:
    from prefect import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    async def count():
        async with get_client() as c:
            return len(await c.read_flow_runs(deployment_filter=DeploymentFilter(
                name=DeploymentFilterName(any_=["redeploy"]))))
    return asyncio.run(count())


def test_default_and_cloudevents_pushes_each_redeploy_once(stack):
    before = redeploy_runs()
    now = int(time.time())
    first = post(stack.port, default_push(digest("a"), "v24.0.4-mysql80", now), "application/json")
    assert first["status"] in ("accepted", "queued"), first
    # Harbor delivers again when it did not see an answer in time: nothing new
    again = post(stack.port, default_push(digest("a"), "v24.0.4-mysql80", now), "application/json")
    assert again.get("duplicate") is True or again["status"] == "queued", again
    wait_until(lambda: redeploy_runs() >= before + 1, 30, "the push's redeploy run", interval=0.3)
    run_id = first.get("flow_run_id") or again.get("flow_run_id") or _latest_run_id()
    run = finished(run_id)
    assert run.state.is_completed(), run.state.message
    assert run.parameters["digest"] == digest("a") and run.parameters["repository"] == "harbor.lan/vitess/lite"
    vc = stack.k.get("planetscale.com/v2", "VitessCluster", "example", NS)
    assert set(cluster_images(vc, "vitess").values()) == {f"harbor.lan/vitess/lite@{digest('a')}"}

    second = post(stack.port, cloudevents_push(digest("b"), "v24.0.5-mysql80", now + 60), "application/cloudevents+json")
    assert second["status"] in ("accepted", "queued"), second
    wait_until(lambda: redeploy_runs() >= before + 2, 30, "the CloudEvents push's redeploy run", interval=0.3)
    run = finished(second.get("flow_run_id") or _latest_run_id())
    assert run.state.is_completed(), run.state.message
    vc = stack.k.get("planetscale.com/v2", "VitessCluster", "example", NS)
    assert set(cluster_images(vc, "vitess").values()) == {f"harbor.lan/vitess/lite@{digest('b')}"}
    # the receiver has nothing left to hand over: the redelivery had its chance to make a run
    wait_until(lambda: spooled(stack.port) == 0, 30, "the receiver's spool to be empty")
    assert redeploy_runs() == before + 2


def _latest_run_id() -> str:
    from prefect import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    async def latest():
        async with get_client() as c:
            runs = await c.read_flow_runs(deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["redeploy"])),
                                          sort=FlowRunSort.EXPECTED_START_TIME_DESC, limit=1)
            return runs[0].id
    return str(asyncio.run(latest()))
