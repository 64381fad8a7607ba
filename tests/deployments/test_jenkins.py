"""The Jenkinsfile example's redeploy stage: the very lines between its `vtflow-run` markers run in
a shell, with the environment Jenkins gives them, against this session's Prefect server and a
served redeploy deployment: a push the cluster takes exits 0, a refused one exits 1 (the build
fails) and prints why, and neither prints the API's auth string."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import deployed_cluster, deployment_exists, served, wait_until

REPO = Path(__file__).resolve().parents[2]
JENKINSFILE = REPO / "deployments" / "jenkins" / "Jenkinsfile"


def stage_lines() -> str:
    text = JENKINSFILE.read_text()
    body = text.split("# vtflow-run: begin", 1)[1].split("\n", 1)[1].split("# vtflow-run: end", 1)[0]
    assert "vtflow run-deployment" in body
    return body


def redeploy_served() -> bool:
    return deployment_exists("redeploy/redeploy")


@pytest.fixture(scope="module")
def stack(prefect_server, tmp_path_factory):
    with deployed_cluster(tmp_path_factory.mktemp("jenkins"), registry_mirror="harbor.lan/vitess") as d:
        env = {**os.environ, "PREFECT_RUNNER_POLL_FREQUENCY": "1", "PYTHONPATH": str(REPO), "COLUMNS": "300"}
        serve = served(["redeploy"], env)
        try:
            def registered():
                assert serve.poll() is None, f"prefect serve exited with {serve.returncode}"
                return redeploy_served()
            wait_until(registered, 120, "prefect serve to register redeploy/redeploy", interval=0.5)
            yield d
        finally:
            serve.terminate()
            serve.wait(30)


def run_stage(d, repository: str, seed: str) -> subprocess.CompletedProcess:
    # what Jenkins sets: the pipeline's environment, the credentials (withCredentials), the digest
    env = {**os.environ, "COLUMNS": "300", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "PREFECT_DEPLOYMENT": "redeploy/redeploy", "HARBOR_REPOSITORY": repository, "IMAGE_TAG": "v24.0.4-7",
           "IMAGE_DIGEST": "sha256:" + hashlib.sha256(seed.encode()).hexdigest(),
           "TARGET_BLOCK": f"tgt-{d.tag}", "MYSQL_BLOCK": f"my-{d.tag}"}
    env["PREFECT_API_URL"] = os.environ["PREFECT_API_URL"]
    if os.environ.get("PREFECT_API_AUTH_STRING"):
        env["PREFECT_API_AUTH_STRING"] = os.environ["PREFECT_API_AUTH_STRING"]
    out = subprocess.run(["sh", "-ec", stage_lines()], env=env, capture_output=True, text=True, timeout=300)
    if env.get("PREFECT_API_AUTH_STRING"):
        assert env["PREFECT_API_AUTH_STRING"] not in out.stdout + out.stderr
    return out


def test_a_redeploy_that_succeeds_passes_the_build(stack):
    out = run_stage(stack, "harbor.lan/vitess/lite", "jenkins-ok")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert out.stdout.splitlines()[-1] == "redeploy/redeploy: Completed", out.stdout
    vc = stack.k.get("planetscale.com/v2", "VitessCluster", "example", "example")
    assert hashlib.sha256(b"jenkins-ok").hexdigest() in str(vc["spec"]["images"])


def test_a_redeploy_that_fails_fails_the_build_saying_why(stack):
    out = run_stage(stack, "docker.io/someone/lite", "jenkins-bad")   # not under the target's mirror
    assert out.returncode == 1, out.stdout[-3000:] + out.stderr[-2000:]
    assert "redeploy/redeploy: Failed" in out.stdout
    last = out.stderr.strip().splitlines()[-1]
    assert " ended Failed: " in last and "harbor.lan/vitess" in last, out.stderr   # why: not under the mirror


def test_a_parameter_the_deployment_refuses_is_one_line(stack):
    out = subprocess.run([sys.executable, "-m", "vtflow.cli", "run-deployment", "redeploy/redeploy", "--param",
                          "component=everything", "--param", "repository=r", "--param", "digest=d"],
                         env={**os.environ, "COLUMNS": "300"}, capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.returncode == 2
    assert out.stderr.startswith("error: deployment redeploy/redeploy: refused the run: "), out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
