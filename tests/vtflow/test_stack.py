"""vtflow/stack.py: `make up`'s stack, started for real as a user starts it."""

import base64
import json
import os
import select
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


from helpers import wait_until
from testbed import free_port
from vtflow.stack import StackSettings, port_is_free, security_warning

REPO = Path(__file__).resolve().parents[2]


def test_non_loopback_without_auth_warns_about_block_secrets():
    s = StackSettings(host="0.0.0.0", port=4200, home=Path("/x"), auth_string=None, database_url=None)
    assert "include_secrets=true" in security_warning(s)
    assert security_warning(StackSettings("0.0.0.0", 4200, Path("/x"), "u:p", None)) is None
    assert security_warning(StackSettings("127.0.0.1", 4200, Path("/x"), None, None)) is None
    assert s.api_url == "http://127.0.0.1:4200/api"


def test_child_env_passes_the_auth_string_to_clients(tmp_path):
    s = StackSettings("127.0.0.1", 4300, tmp_path, "admin:pw", None)
    env = s.child_env()
    assert env["PREFECT_API_AUTH_STRING"] == "admin:pw"
    assert env["PREFECT_API_URL"] == "http://127.0.0.1:4300/api" and env["PREFECT_HOME"] == str(tmp_path)


def _get(url, auth=None):
    req = urllib.request.Request(url)
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, None


CLIENT = r'''
import json, sys
from prefect.deployments import run_deployment
from blocks.nodes import SSHNodes
spec = json.load(open(sys.argv[1]))
SSHNodes(**spec).save("default", overwrite=True)
run = run_deployment("node-prep/node-prep", timeout=180, parameters={"requirements": {
    "min_cpus": 1, "min_memory_gib": 1, "min_available_memory_gib": 0, "min_disk_gib": 0.1}})
print("STATE", run.state.type.value)
'''


def test_make_up_serves_node_prep_behind_auth_and_stops_on_ctrl_c(node_bed, nodes, tmp_path):
    port, webhook_port = free_port(), free_port()
    auth = "admin:up-test-secret"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(VTFLOW_PORT=str(port), VTFLOW_STATE_DIR=str(tmp_path / "state"), PREFECT_SERVER_API_AUTH_STRING=auth,
               PREFECT_RUNNER_POLL_FREQUENCY="1", PYTHONUNBUFFERED="1",
               VTFLOW_WEBHOOK_PORT=str(webhook_port))
    up = subprocess.Popen([sys.executable, "-m", "vtflow.cli", "up"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, start_new_session=True)
    output = []
    try:
        deadline = time.monotonic() + 120
        while not any("vtflow is up" in line for line in output):
            assert time.monotonic() < deadline, "".join(output)
            ready, _, _ = select.select([up.stdout], [], [], 1)
            if ready:
                line = up.stdout.readline()
                assert line or up.poll() is None, "".join(output)
                output.append(line)
        assert f"http://127.0.0.1:{port}" in "".join(output)
        api = f"http://127.0.0.1:{port}/api"

        assert _get(f"{api}/block_types/slug/vtflow-ssh-nodes")[0] == 401, "the API must require the auth string"
        for slug in ("vtflow-ssh-nodes", "vtflow-vitess-target", "vtflow-mysql-credentials", "vtflow-harbor-webhook"):
            assert _get(f"{api}/block_types/slug/{slug}", auth)[0] == 200, slug

        def node_prep_deployment():
            found = _get(f"{api}/deployments/name/node-prep/node-prep", auth)
            return found if found[0] == 200 else None
        found = wait_until(node_prep_deployment, 60, "the node-prep deployment to appear", interval=0.5)
        schema = found[1]["parameter_openapi_schema"]
        assert {"nodes_block", "requirements", "install_mysql_client"} <= set(schema["properties"])
        assert "min_memory_gib" in json.dumps(schema["definitions"]), "the UI form shows the requirements"
        status, deploy = _get(f"{api}/deployments/name/deploy/deploy", auth)
        assert status == 200, "the deploy flow is served too"
        form = json.dumps(deploy["parameter_openapi_schema"])
        assert "target_block" in form and "dry_run" in form and "tabletPools" not in form
        assert "expected_output" in form and "DataFile" in form, "the data and verify steps have their form"
        # serve registers its deployments one after another, in all_deployments() order: deploy came
        # before node-prep (read above without a wait), health-check and backup before redeploy
        wait_until(lambda: _get(f"{api}/deployments/name/redeploy/redeploy", auth)[0] == 200, 30,
                   "the redeploy deployment to appear", interval=0.5)
        assert _get(f"http://127.0.0.1:{webhook_port}/healthz")[0] == 200, "make up starts the Harbor receiver"
        status, health = _get(f"{api}/deployments/name/health-check/health-check", auth)
        assert status == 200 and [s["schedule"].get("interval") for s in health["schedules"]] == [300.0]
        assert health["concurrency_limit"] == 1 or (health.get("global_concurrency_limit") or {}).get("limit") == 1
        status, backup = _get(f"{api}/deployments/name/backup/backup", auth)
        assert status == 200 and [s["schedule"].get("cron") for s in backup["schedules"]] == ["0 3 * * *"]
        assert (backup["concurrency_options"] or {}).get("collision_strategy") == "ENQUEUE"

        spec = tmp_path / "nodes.json"
        block = {**node_bed.inventory(nodes[:2]), "private_key": node_bed.client_key.read_text(),
                 "known_hosts": node_bed.known_hosts(nodes[:2])}
        spec.write_text(json.dumps(block))
        client_env = {**env, "PREFECT_API_URL": api, "PREFECT_API_AUTH_STRING": auth,
                      "PREFECT_HOME": str(tmp_path / "client")}
        r = subprocess.run([sys.executable, "-c", CLIENT, str(spec)], cwd=REPO, env=client_env,
                           capture_output=True, text=True, timeout=240)
        assert "STATE COMPLETED" in r.stdout, r.stdout[-2000:] + r.stderr[-3000:]
        assert len(processes_with_env("VTFLOW_STATE_DIR", str(tmp_path / "state"))) >= 3, "up, server, serve"
    finally:
        os.killpg(up.pid, signal.SIGINT)
        try:
            rest, _ = up.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(up.pid, signal.SIGKILL)
            rest, _ = up.communicate()
        output.append(rest or "")
    assert up.returncode == 0, "".join(output)
    assert "Stopped." in "".join(output)
    assert port_is_free("127.0.0.1", port)
    assert processes_with_env("VTFLOW_STATE_DIR", str(tmp_path / "state")) == [], "a child of `up` outlived it"
    assert (tmp_path / "state" / "prefect" / "prefect.db").exists(), "SQLite under the state folder by default"


def processes_with_env(name, value):
    """PIDs of live processes whose environment has name=value (the stack's children inherit it)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if f"{name}={value}".encode() in (proc / "environ").read_bytes().split(b"\0"):
                    found.append(int(proc.name))
            except OSError:
                pass
    return found


def test_prefect_server_runs_on_postgresql_when_told(tmp_path):
    """PREFECT_API_DATABASE_CONNECTION_URL moves the server to PostgreSQL: no SQLite file appears."""
    from postgres import PostgreSQL
    from vtflow.stack import PrefectServer

    pg = PostgreSQL(free_port()).start()
    try:
        settings = StackSettings("127.0.0.1", free_port(), tmp_path / "prefect", None, pg.url)
        os.environ["PREFECT_API_DATABASE_CONNECTION_URL"] = pg.url
        try:
            server = PrefectServer(settings).start(timeout=180)
        finally:
            del os.environ["PREFECT_API_DATABASE_CONNECTION_URL"]
        try:
            env = {**settings.child_env(), "PREFECT_HOME": str(tmp_path / "client")}
            env.pop("PREFECT_API_DATABASE_CONNECTION_URL", None)
            r = subprocess.run([sys.executable, "-m", "vtflow.stack", "register"], cwd=REPO, env=env,
                               capture_output=True, text=True, timeout=120)
            assert r.returncode == 0, r.stderr[-2000:]
            slugs = pg.sql("SELECT slug FROM block_type WHERE slug LIKE 'vtflow-%' ORDER BY slug", database="prefect")
            assert slugs.split() == ["vtflow-harbor-webhook", "vtflow-mysql-credentials", "vtflow-ssh-nodes",
                                     "vtflow-vitess-target"]
            assert not (tmp_path / "prefect" / "prefect.db").exists()
        finally:
            server.stop()
    finally:
        pg.stop()
