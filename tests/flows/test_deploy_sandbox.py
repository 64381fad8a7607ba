"""`vtflow deploy --target sandbox` as a user runs it: the sandbox, then a plan, a deploy (to the upstream
commerce schema and VSchema) and a re-run."""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from helpers import UPSTREAM, OPERATOR_YAML


pytestmark = pytest.mark.skipif(os.getuid() != 0, reason="the sandbox's sshd nodes need root")


def vtflow(*args, state: Path):
    return subprocess.run([sys.executable, "-m", "vtflow.cli", *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "VTFLOW_STATE_DIR": str(state)}, stdin=subprocess.DEVNULL)


@pytest.fixture
def sandbox(prefect_server):
    state = Path(tempfile.mkdtemp(prefix="vtflow-deploy-sandbox-"))
    state.chmod(0o755)  # the node user must enter it
    up = vtflow("sandbox", "up", state=state)
    assert up.returncode == 0, up.stderr[-3000:]
    yield state
    vtflow("sandbox", "down", state=state)
    shutil.rmtree(state, ignore_errors=True)


def test_plan_deploy_and_rerun_against_the_sandbox(sandbox):
    examples = UPSTREAM / "vitess-operator-v2.17.0" / "examples"
    args = ("deploy", "--target", "sandbox", "--operator-manifest", OPERATOR_YAML, "--schema",
            f"commerce:{examples / 'create_commerce_schema.sql'}:{examples / 'vschema_commerce_initial.json'}",
            "--data", f"commerce:{examples / 'insert_commerce_data.sql'}",
            "--verify-script", str(examples / "select_commerce_data.sql"))
    plan = vtflow(*args, "--dry-run", state=sandbox)
    assert plan.returncode == 0, plan.stderr[-3000:]
    assert "etcd-operator: skipped (not needed: vitess-operator runs its own etcd" in plan.stdout
    assert "VitessCluster example/example: created (would be)" in plan.stdout
    assert "Deployment example/vitess-operator: created (would be)" in plan.stdout

    first = vtflow(*args, state=sandbox)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "cluster: 5 of 5 objects changed" in first.stdout
    assert "VitessCluster example/example: created" in first.stdout
    assert "schema: 4 of 4 objects changed" in first.stdout
    assert "keyspace commerce: VSchema: changed" in first.stdout
    assert "insert_commerce_data.sql (12 rows): created" in first.stdout
    assert "tablets commerce/-: ok: 1 PRIMARY, 2 REPLICA serving" in first.stdout
    assert "rows commerce.customer: ok: 5 rows, as loaded" in first.stdout
    assert "vtadmin: ok" in first.stdout

    again = vtflow(*args, state=sandbox)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "nothing changed" in again.stdout
    assert "cluster: 0 of 5 objects changed" in again.stdout
    assert "schema: 0 of 4 objects changed" in again.stdout
    assert "data: 0 of 1 objects changed" in again.stdout

    # day two against the same sandbox: both scheduled flows, run from the shell
    health = vtflow("health-check", "--target", "sandbox", state=sandbox)
    assert health.returncode == 0, health.stdout[-3000:] + health.stderr[-3000:]
    assert "tablets commerce/-: ok: 1 PRIMARY, 2 REPLICA serving" in health.stdout  # Finding.line
    assert "backup commerce/-: ok: " in health.stdout
    backup = vtflow("backup", "--target", "sandbox", state=sandbox)
    assert backup.returncode == 0, backup.stdout[-3000:] + backup.stderr[-3000:]
    assert backup.stdout.startswith("commerce/-: backup ")

