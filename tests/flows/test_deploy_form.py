"""The deploy deployment as people start it: the UI's form (its JSON, blocks picked as
references, through the API as the form sends it) and `prefect deployment run 'deploy/deploy'
--param ...` (the real Prefect CLI, block names). Both deploy (steps 1-4) onto an API double;
the form's run keeps only block references in its stored parameters, no secret."""

import asyncio
import json
import os
import re
import secrets
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from blocks.mysql import MySQLCredentials
from blocks.target import VitessTarget
from helpers import OPERATOR_YAML, finished_run, served, wait_until
from kubedouble import DoubleConfig, KubeDouble
from vtflow import kube

REPO = Path(__file__).resolve().parents[2]
PREFECT = str(Path(sys.executable).with_name("prefect"))


def _deployment_id() -> str | None:
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    async def read():
        async with get_client() as c:
            try:
                return str((await c.read_deployment_by_name("deploy/deploy")).id)
            except ObjectNotFound:
                return None
    return asyncio.run(read())


@pytest.fixture(scope="module")
def stack(prefect_server, tmp_path_factory):
    folder = tmp_path_factory.mktemp("form")
    d = KubeDouble(DoubleConfig(nodes=3, node_cpu="8", node_memory="16Gi", git_version="v1.33.5+k3s1", operators=True,
                                pod_start_delay=0.02))
    d.start()
    # COLUMNS: the Prefect CLI wraps its messages at the terminal width
    env = {**os.environ, "PREFECT_RUNNER_POLL_FREQUENCY": "1", "PYTHONPATH": str(REPO), "COLUMNS": "300"}
    serve = served(["deploy"], env)
    try:
        d.tag = uuid.uuid4().hex[:6]
        d.kubeconfig_text = d.kubeconfig(folder / "kubeconfig").read_text()
        d.password = "form-pw-" + secrets.token_hex(8)
        d.target_id = VitessTarget(kubeconfig=d.kubeconfig_text, node_address="127.0.0.1").save(f"tgt-{d.tag}")
        d.mysql_id = MySQLCredentials(user="user", password=d.password).save(f"my-{d.tag}")
        d.k = kube.Kube(kube.api_client(d.kubeconfig_text, None, "t"))

        def registered():
            assert serve.poll() is None, f"prefect serve exited with {serve.returncode}"
            return _deployment_id()
        d.deployment_id = wait_until(registered, 120, "prefect serve to register deploy/deploy", interval=0.5)
        d.env = env
        yield d
    finally:
        serve.terminate()
        serve.wait(30)
        d.stop()


def finished(run_id) -> "object":
    return finished_run(run_id)


def secret_texts(d) -> list[str]:
    """What must never be in a run's parameters: the password and every key, token and certificate."""
    values = re.findall(r"(?:-data|token): *(\S{16,})", d.kubeconfig_text)
    assert values, "the double's kubeconfig carries its client credentials"
    return [d.password, *values]


def test_the_forms_run_deploys_and_stores_only_block_references(stack):
    from prefect import get_client
    from tasks.cluster import ClusterSpec
    from tasks.node_prep import NodeRequirements
    from tasks.verify import Verification

    # what the form sends: each block picked from the list, every other field as the form fills it
    form = {
        "target_block": {"$ref": {"block_document_id": str(stack.target_id)}},
        "mysql_block": {"$ref": {"block_document_id": str(stack.mysql_id)}},
        "nodes_block": "", "schemas": [], "data": [],
        "verify": Verification().model_dump(mode="json"),
        "operator_version": "", "vitess_version": "", "operator_manifest": OPERATOR_YAML, "force": False,
        "cluster": ClusterSpec().model_dump(mode="json"),   # its defaults hold nulls: the server takes them
        "node_requirements": NodeRequirements().model_dump(mode="json"),
        "ready_timeout_s": 60, "until": "cluster",
    }

    async def create():
        async with get_client() as c:
            return await c.create_flow_run_from_deployment(stack.deployment_id, parameters=form)
    run = finished(asyncio.run(create()).id)
    assert run.state.is_completed(), run.state.message
    assert stack.k.get("planetscale.com/v2", "VitessCluster", "example", "example") is not None
    stored = json.dumps(run.parameters)
    assert run.parameters["target_block"] == {"$ref": {"block_document_id": str(stack.target_id)}}
    for text in secret_texts(stack):
        assert text not in stored


def test_prefect_deployment_run_with_top_level_params_deploys(stack):
    argv = [PREFECT, "deployment", "run", "deploy/deploy", "--param", f"target_block=tgt-{stack.tag}",
            "--param", f"mysql_block=my-{stack.tag}", "--param", f"operator_manifest={OPERATOR_YAML}",
            "--param", "until=cluster", "--param", "ready_timeout_s=60", "--watch", "--watch-timeout", "180"]
    out = subprocess.run(argv, env=stack.env, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "Flow run finished successfully in 'Completed'" in out.stdout
    assert stack.password not in out.stdout + out.stderr


def test_a_name_that_is_no_block_fails_the_run_naming_it(stack):
    argv = [PREFECT, "deployment", "run", "deploy/deploy", "--param", "target_block=no-such-target",
            "--param", f"mysql_block=my-{stack.tag}", "--watch", "--watch-timeout", "120"]
    out = subprocess.run(argv, env=stack.env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 1, out.stdout[-3000:]
    assert "Flow run finished in state 'Failed'" in out.stdout
    assert "'no-such-target'" in out.stdout


def test_the_server_refuses_a_run_without_its_blocks(stack):
    out = subprocess.run([PREFECT, "deployment", "run", "deploy/deploy"], env=stack.env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 1
    assert "'target_block' is a required property" in out.stdout, out.stdout


def test_the_form_has_no_none_tab_where_a_field_starts_empty(stack):
    """The form shows `X | None` as two tabs, the second reading 'Property is type "None"'; only
    fields whose default is a value (not None) keep that shape, so the form opens on the value."""
    from prefect import get_client

    async def schema():
        async with get_client() as c:
            return (await c.read_deployment(stack.deployment_id)).parameter_openapi_schema

    def nullable(props: dict) -> set[str]:
        return {name for name, p in props.items() if {"type": "null"} in p.get("anyOf", [])}
    s = asyncio.run(schema())
    found, todo, seen = set(), [s], set()
    while todo:   # the form's fields: the parameters and the models under them, not the blocks' own
        node = todo.pop()
        if isinstance(node, dict):
            if "block_type_slug" in node:
                continue
            found |= nullable(node.get("properties", {}))
            ref = node.get("$ref")
            if isinstance(ref, str) and ref not in seen:
                seen.add(ref)
                todo.append(s["definitions"][ref.rsplit("/", 1)[-1]])
            todo += [v for k, v in node.items() if k not in ("definitions", "$ref")]
        elif isinstance(node, list):
            todo += node
    assert found == {"vtgate_node_port", "vtorc"}   # 30306 and upstream's VTOrc: the form opens on them
