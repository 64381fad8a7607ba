"""`vtflow deploy --target sandbox` as a user runs it, without root: the sandbox, then a plan, a deploy
(to the upstream commerce schema and VSchema), a re-run, the health check and the backup."""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from helpers import UPSTREAM, as_ordinary_user, give_to_ordinary_user


pytestmark = pytest.mark.skipif(os.getuid() != 0, reason="the test switches to an ordinary user, which needs root")


def vtflow(*args, state: Path):
    env = {**os.environ, "VTFLOW_STATE_DIR": str(state), "PREFECT_HOME": str(state / "prefect-home"),
           "HOME": str(state)}
    return subprocess.run(as_ordinary_user([sys.executable, "-m", "vtflow.cli", *args]), capture_output=True,
                          text=True, timeout=600, env=env, stdin=subprocess.DEVNULL)


@pytest.fixture
def sandbox(prefect_server):
    state = give_to_ordinary_user(Path(tempfile.mkdtemp(prefix="vtflow-deploy-sandbox-")))
    # the user's cluster: K3s v1.24.6, nodes of 2 CPU / 4 GiB, 1 CPU / 2 GiB, 2 CPU / 4 GiB
    up = vtflow("sandbox", "up", "--kubernetes-version", "1.24", "--node-sizes", "2/4Gi,1/2Gi,2/4Gi", state=state)
    assert up.returncode == 0, up.stderr[-3000:]
    yield state
    vtflow("sandbox", "down", state=state)
    shutil.rmtree(state, ignore_errors=True)


def test_plan_deploy_and_rerun_against_the_sandbox(sandbox):
    # the commerce files of the newest release (v2.10.4 has no insert/select scripts); the operator
    # manifest of the release the version table gives for 1.24, as a file (no internet here)
    examples = UPSTREAM / "vitess-operator-v2.17.0" / "examples"
    manifest = UPSTREAM / "vitess-operator-v2.10.4" / "examples" / "operator-latest.yaml"
    args = ("deploy", "--target", "sandbox", "--operator-manifest", str(manifest), "--size", "fit", "--schema",
            f"commerce:{examples / 'create_commerce_schema.sql'}:{examples / 'vschema_commerce_initial.json'}",
            "--data", f"commerce:{examples / 'insert_commerce_data.sql'}",
            "--verify-script", str(examples / "select_commerce_data.sql"))
    plan = vtflow(*args, "--dry-run", state=sandbox)
    assert plan.returncode == 0, plan.stderr[-3000:]
    assert "etcd-operator: skipped (not needed: vitess-operator runs its own etcd" in plan.stdout
    assert "VitessCluster example/example: created (would be)" in plan.stdout
    assert "Deployment example/vitess-operator: created (would be)" in plan.stdout
    assert ("versions: warn: vitess-operator v2.10.4: the newest release in vtflow's table that supports Kubernetes "
            "1.24 (1.22-1.25); Vitess v17.0.7, the release's recommended") in plan.stdout
    assert "warning: Vitess 17 is past its end of life" in plan.stdout

    first = vtflow(*args, state=sandbox)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "cluster: 5 of 5 objects changed" in first.stdout
    assert "VitessCluster example/example: created" in first.stdout
    assert "schema: 4 of 4 objects changed" in first.stdout
    assert "keyspace commerce: VSchema: changed" in first.stdout
    assert "insert_commerce_data.sql (12 rows): created" in first.stdout
    # fit on these nodes: a primary and a replica on the two nodes with room (the 1 CPU / 2 GiB
    # node has none beside K3s's own share), etcd on those two, and what the later steps need
    assert "tablets commerce/-: ok: 1 PRIMARY, 1 REPLICA serving" in first.stdout
    assert "size fit: warn: kept: keyspace commerce: 2 tablets per shard on 2 different nodes" in first.stdout
    assert "; lost: node(s) node-2 have no room after K3s's reserve" in first.stdout
    assert "etcd: 3 members on 2 node(s) (node-1, node-3)" in first.stdout
    assert "room for 201_customer_tablets: warn: " in first.stdout and "does NOT fit on these nodes" in first.stdout
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
    assert "tablets commerce/-: ok: 1 PRIMARY, 1 REPLICA serving" in health.stdout  # Finding.line
    assert "backup commerce/-: ok: " in health.stdout
    backup = vtflow("backup", "--target", "sandbox", state=sandbox)
    assert backup.returncode == 0, backup.stdout[-3000:] + backup.stderr[-3000:]
    assert backup.stdout.startswith("commerce/-: backup ")

