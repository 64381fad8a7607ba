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


def test_the_zombie_window_assumes_prefects_own_heartbeat():
    from prefect.flow_engine import MINIMUM_HEARTBEAT_INTERVAL
    from prefect.settings.models.flows import FlowsSettings

    from deployments.zombies import MIN_HEARTBEAT_S, PREFECT_DEFAULT_HEARTBEAT_S, crash_zombies

    assert PREFECT_DEFAULT_HEARTBEAT_S == FlowsSettings.model_fields["heartbeat_frequency"].default
    assert MIN_HEARTBEAT_S == MINIMUM_HEARTBEAT_INTERVAL
    assert crash_zombies(30).trigger.within.total_seconds() == 90


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
    up, output = start_up(env)
    try:
        read_until(up, output, "vtflow is up", 120)
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
        ctrl_c(up, output)
    assert up.returncode == 0, "".join(output)
    assert "Stopped." in "".join(output)
    assert port_is_free("127.0.0.1", port)
    assert processes_with_env("VTFLOW_STATE_DIR", str(tmp_path / "state")) == [], "a child of `up` outlived it"
    assert (tmp_path / "state" / "prefect" / "prefect.db").exists(), "SQLite under the state folder by default"


def start_up(env):
    """`vtflow up` as a user starts it (its own session, so that a test can Ctrl-C all of it)."""
    up = subprocess.Popen([sys.executable, "-m", "vtflow.cli", "up"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, start_new_session=True)
    return up, []


def read_until(up, output, text, timeout):
    """Read `up`'s output into ``output`` until a line contains ``text``; return that line."""
    deadline = time.monotonic() + timeout
    seen = len(output)
    while True:
        for line in output[seen:]:
            if text in line:
                return line
        seen = len(output)
        assert time.monotonic() < deadline, f"no line with {text!r} within {timeout} s:\n" + "".join(output)
        ready, _, _ = select.select([up.stdout], [], [], 1)
        if ready:
            line = up.stdout.readline()
            assert line or up.poll() is None, "".join(output)
            output.append(line)


def ctrl_c(up, output):
    os.killpg(up.pid, signal.SIGINT)
    try:
        rest, _ = up.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(up.pid, signal.SIGKILL)
        rest, _ = up.communicate()
    output.append(rest or "")


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


def _call(method, url, auth=None, body=None, headers=None):
    """(status, JSON body, response headers) of one HTTP request; auth is a `user:password` string.
    A 503 (the server's "retry me": SQLite was busy) is retried as Prefect's own client retries it."""
    for attempt in range(6):
        status, answer, got = _call_once(method, url, auth, body, headers)
        if status != 503:
            break
        time.sleep(0.2 * 2 ** attempt)
    return status, answer, got


def _call_once(method, url, auth, body, headers):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null"), r.headers
    except urllib.error.HTTPError as e:
        return e.code, None, e.headers


def answers(url):
    try:
        return _get(url)[0] == 200
    except (urllib.error.URLError, OSError):  # not listening (yet)
        return False


def bare_env(state, port, **extra):
    """What a user's shell has: no PREFECT_* at all, only where the stack lives (and its port)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "VTFLOW_"))}
    return {**env, "VTFLOW_STATE_DIR": str(state), "VTFLOW_PORT": str(port), "PYTHONUNBUFFERED": "1", **extra}


def vtflow(env, *argv, **kw):
    return subprocess.run([sys.executable, "-m", "vtflow.cli", *argv], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=180, **kw)


def child_pid(state, argv_part):
    """The stack child (same VTFLOW_STATE_DIR) whose command line contains ``argv_part``."""
    for pid in processes_with_env("VTFLOW_STATE_DIR", str(state)):
        try:
            if argv_part in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode():
                return pid
        except OSError:
            pass
    return None


def test_default_make_up_needs_its_generated_auth_string_and_restarts_a_dead_receiver(tmp_path):
    """Issue items 3 and 9: no auth env at all, yet block secrets are not readable without the
    generated auth string, other sites get no CORS answer, every command finds the string by
    itself; a SIGKILLed receiver comes back; Ctrl-C stops everything."""
    state, port, webhook_port = tmp_path / "state", free_port(), free_port()
    env = bare_env(state, port, VTFLOW_WEBHOOK_PORT=str(webhook_port))
    up, output = start_up(env)
    try:
        read_until(up, output, "vtflow is up", 120)
        auth_path = state / "api-auth-string"
        assert auth_path.stat().st_mode & 0o777 == 0o600, "readable only by the user"
        auth = auth_path.read_text().strip()
        printed = "".join(output)
        assert printed.count(auth) == 1 and str(auth_path) in printed, "printed once, with where it is kept"
        api, ui = f"http://127.0.0.1:{port}/api", f"http://127.0.0.1:{port}"

        # a DNS-rebinding page (or anyone else on the machine) reads no block secrets
        assert _call("POST", f"{api}/block_documents/filter", body={"include_secrets": True})[0] == 401
        assert _call("GET", f"{api}/block_documents/{'0' * 8}-0000-0000-0000-{'0' * 12}?include_secrets=true")[0] == 401
        assert _call("POST", f"{api}/block_documents/filter", auth, body={"include_secrets": False})[0] == 200
        # and other origins get no CORS grant, while the UI's own origin does
        evil = {"Origin": "http://rebind.example", "Access-Control-Request-Method": "POST"}
        for method, path in (("GET", "/health"), ("OPTIONS", "/block_documents/filter")):
            headers = _call(method, api + path, headers=evil)[2]
            assert headers.get("Access-Control-Allow-Origin") is None, (method, path, dict(headers))
        assert _call("GET", f"{api}/health", headers={"Origin": ui})[2].get("Access-Control-Allow-Origin") == ui

        # documented commands work with nothing but where the stack lives
        shell = {**bare_env(state, port), "PW": "pw-in-env"}
        r = vtflow(shell, "block", "create", "mysql", "--name", "app", "--password-env", "PW")
        assert r.returncode == 0, r.stdout + r.stderr
        assert _call("GET", f"{api}/block_types/slug/vtflow-mysql-credentials/block_documents/name/app", auth)[0] == 200
        r = vtflow(shell, "backup", "--target", "no-such-block")  # a flow run in the CLI's process
        assert r.returncode == 1 and "backup failed" in r.stderr and "401" not in r.stderr + r.stdout, r.stderr[-2000:]
        assert "no-such-block" in r.stderr, r.stderr[-2000:]

        # item 9: a receiver killed outright is started again, with one line naming its status
        receiver = child_pid(state, "webhook serve")
        assert receiver and _get(f"http://127.0.0.1:{webhook_port}/healthz")[0] == 200
        os.killpg(receiver, signal.SIGKILL)
        line = read_until(up, output, "The Harbor webhook receiver exited", 20)
        assert "status -9" in line and "starting it again in 1 s" in line, line
        wait_until(lambda: answers(f"http://127.0.0.1:{webhook_port}/healthz"), 60,
                   "the receiver to answer again", interval=0.5, detail=lambda: "".join(output))
        assert child_pid(state, "webhook serve") not in (None, receiver)

        # the string travels in environments only: no command line, no log
        for pid in processes_with_env("VTFLOW_STATE_DIR", str(state)):
            assert auth.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
    finally:
        ctrl_c(up, output)
    assert up.returncode == 0 and "Stopped." in "".join(output), "".join(output)
    assert processes_with_env("VTFLOW_STATE_DIR", str(state)) == [], "a child of `up` outlived it"
    for log in (state / "prefect").glob("*.log"):
        assert auth not in log.read_text(), log

    # a second start uses the same string and does not show it again
    up, output = start_up(env)
    try:
        read_until(up, output, "vtflow is up", 120)
        assert auth not in "".join(output) and "Generated" not in "".join(output)
        assert _call("POST", f"{api}/block_documents/filter", auth, body={})[0] == 200
        assert _call("POST", f"{api}/block_documents/filter", body={})[0] == 401
    finally:
        ctrl_c(up, output)
    assert up.returncode == 0, "".join(output)


def test_a_served_run_killed_with_its_serve_ends_crashed_and_does_not_block_the_next(tmp_path):
    """Issue item 12: a backup run hangs (its Kubernetes API never answers); serve and the run's
    process group are SIGKILLed, so nothing of Prefect's client side is left to report it. The
    zombie automation `make up` created sets it Crashed, which frees the deployment's one slot:
    a second run of the same deployment (concurrency 1, ENQUEUE) runs; serve comes back (item 9)."""
    import socket

    import yaml

    state, port = tmp_path / "state", free_port()
    # Prefect's minimum heartbeat: the automation's window is three of them (90 s)
    env = bare_env(state, port, VTFLOW_WEBHOOK_PORT="0", PREFECT_FLOWS_HEARTBEAT_FREQUENCY="30",
                   PREFECT_RUNNER_POLL_FREQUENCY="1")
    silent = socket.socket()  # a "Kubernetes API" that accepts connections and never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "clusters": [{"name": "c", "cluster": {"server": f"https://127.0.0.1:{silent.getsockname()[1]}",
                                               "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}], "current-context": "x"}))
    up, output = start_up(env)
    try:
        read_until(up, output, "vtflow is up", 120)
        auth = (state / "api-auth-string").read_text().strip()
        api = f"http://127.0.0.1:{port}/api"
        found = _call("POST", f"{api}/automations/filter", auth, body={})[1]
        zombie = [a for a in found if a["name"] == "vtflow - crash flow runs whose heartbeats stopped"]
        assert len(zombie) == 1 and zombie[0]["trigger"]["within"] == 90.0, found

        r = vtflow(bare_env(state, port), "block", "create", "target", "--name", "silent", "--kubeconfig", str(kubeconfig))
        assert r.returncode == 0, r.stdout + r.stderr
        deployment = wait_until(lambda: _call("GET", f"{api}/deployments/name/backup/backup", auth)[1], 60,
                                "the backup deployment to be served", interval=0.5)

        def run_backup(target):
            status, run, _ = _call("POST", f"{api}/deployments/{deployment['id']}/create_flow_run", auth,
                                   body={"parameters": {"target_block": target}})
            assert status == 201, status
            return run["id"]

        def state_of(run_id):
            return _call("GET", f"{api}/flow_runs/{run_id}", auth)[1]["state"]

        hung = run_backup("silent")
        wait_until(lambda: state_of(hung)["type"] == "RUNNING", 90, "the backup run to start", interval=0.5,
                   detail=lambda: "".join(output))
        # the automation starts watching a run at its first heartbeat, which the engine sends on entering the flow
        wait_until(lambda: _call("POST", f"{api}/events/filter", auth, body={"filter": {
            "event": {"name": ["prefect.flow-run.heartbeat"]}, "resource": {"id": [f"prefect.flow-run.{hung}"]}}}
        )[1]["events"], 60, "the run's first heartbeat", interval=0.5)
        serve = child_pid(state, "vtflow.stack serve")
        run_process = processes_with_env("PREFECT__FLOW_RUN_ID", hung)
        assert serve and run_process
        for pid in {serve, *run_process}:
            os.killpg(os.getpgid(pid), signal.SIGKILL)
        line = read_until(up, output, "Serving the deployments exited", 20)
        assert "status -9" in line, line

        blocked = run_backup("no-such-block")  # same deployment: waits while the hung run holds the slot
        crashed = wait_until(lambda: (s := state_of(hung))["type"] == "CRASHED" and s, 200,
                             "the killed run to be set Crashed", interval=1, detail=lambda: "".join(output))
        assert "No heartbeat for 90 s" in crashed["message"], crashed
        after = wait_until(lambda: (s := state_of(blocked))["type"] in ("FAILED", "COMPLETED", "CRASHED") and s, 120,
                           "the next run of the deployment to run", interval=1, detail=lambda: "".join(output))
        assert after["type"] == "FAILED" and "no-such-block" in after["message"], after
    finally:
        ctrl_c(up, output)
        silent.close()
    assert up.returncode == 0, "".join(output)
    assert processes_with_env("VTFLOW_STATE_DIR", str(state)) == [], "a child of `up` outlived it"


def _write_kubeconfig(path, server="https://127.0.0.1:1"):
    import yaml

    path.write_text(yaml.safe_dump({
        "clusters": [{"name": "c", "cluster": {"server": server, "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}], "current-context": "x"}))
    return path


def offer_line(env, name):
    r = subprocess.run([sys.executable, "-c", f"from vtflow.schedules import offer_line; print(offer_line({name!r}))"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout.strip()


def test_make_up_without_blocks_pauses_the_schedules_and_schedules_use_resumes_them_for_good(tmp_path):
    """Issue 14 item 2: out of the box the scheduled health check and backup name blocks that do
    not exist: they are served with paused schedules (no run at all, so none fails), make up says
    so once per deployment with the fix; `vtflow schedules use NAME` refuses missing blocks, then
    points them at existing ones and resumes them; a restart of make up keeps what it set, and a
    schedule the user paused in the UI stays paused."""
    state, port = tmp_path / "state", free_port()
    # the scheduler looks every second: an active schedule would have its runs at once
    env = bare_env(state, port, VTFLOW_WEBHOOK_PORT="0", PREFECT_RUNNER_POLL_FREQUENCY="1",
                   PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="1")
    api = f"http://127.0.0.1:{port}/api"
    names = ("health-check/health-check", "backup/backup")

    def read(auth):
        return {n: _call("GET", f"{api}/deployments/name/{n}", auth)[1] for n in names}

    def served(auth, since):
        """The scheduled deployments once this start's serve has (re)applied them (serve unpauses them)."""
        found = read(auth)
        return found if all(d and not d["paused"] and d["updated"] >= since for d in found.values()) else None

    up, output = start_up(env)
    try:
        read_until(up, output, "vtflow is up", 120)
        auth = (state / "api-auth-string").read_text().strip()
        found = wait_until(lambda: served(auth, ""), 60, "the scheduled deployments to be served", interval=0.5)
        printed = "".join(output)
        for name in names:
            lines = [line for line in printed.splitlines() if line.startswith(f"{name}: schedule paused")]
            assert len(lines) == 1, printed
            assert "target block 'default'" in lines[0] and "vtflow schedules use NAME" in lines[0], lines[0]
        assert "mysql block 'default'" in printed and "vtflow sandbox up" in printed
        assert all(not s["active"] for d in found.values() for s in d["schedules"]), found
        time.sleep(3)  # three scheduler loops: a paused schedule makes no runs
        ids = [d["id"] for d in found.values()]
        runs = _call("POST", f"{api}/flow_runs/filter", auth, body={"deployments": {"id": {"any_": ids}}})[1]
        assert runs == [], [(r["name"], r["state_type"]) for r in runs]
        failed = _call("POST", f"{api}/flow_runs/filter", auth, body={"flow_runs": {"state": {"type": {"any_": ["FAILED"]}}}})[1]
        assert failed == [], failed

        shell = {**bare_env(state, port), "PW": "pw-in-env"}
        r = vtflow(shell, "schedules", "use", "mine")
        assert r.returncode == 2 and "target block 'mine'" in r.stderr and "mysql block 'mine'" in r.stderr, r.stderr
        assert "vtflow block create target --name mine" in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert vtflow(shell, "block", "create", "mysql", "--name", "mine", "--password-env", "PW").returncode == 0
        kubeconfig = _write_kubeconfig(tmp_path / "kubeconfig")
        assert vtflow(shell, "block", "create", "target", "--name", "mine", "--kubeconfig", str(kubeconfig)).returncode == 0
        assert "`vtflow schedules use mine`" in offer_line(shell, "mine")  # what `vtflow sandbox up` prints
        r = vtflow(shell, "schedules", "use", "mine")
        assert r.returncode == 0, r.stdout + r.stderr
        assert offer_line(shell, "mine") == "None"
        assert "health-check/health-check: target_block default -> mine, mysql_block default -> mine, schedule " \
               "resumed (every 5 min)" in r.stdout, r.stdout
        assert "backup/backup: target_block default -> mine, schedule resumed (cron 0 3 * * *)" in r.stdout, r.stdout
        r = vtflow(shell, "schedules", "use", "mine")
        assert r.returncode == 0 and r.stdout.count("nothing to change") == 2, r.stdout + r.stderr
        found = read(auth)
        assert found[names[0]]["parameters"] == {"target_block": "mine", "mysql_block": "mine"}
        assert found[names[1]]["parameters"] == {"target_block": "mine"}
        assert all(s["active"] for d in found.values() for s in d["schedules"]), found
        # the user pauses the backup's schedule in the UI
        backup = found[names[1]]
        assert _call("PATCH", f"{api}/deployments/{backup['id']}/schedules/{backup['schedules'][0]['id']}", auth,
                     body={"active": False})[0] == 204
        # serve pauses the deployments when it stops: served() waits for the next start's serve
        since = max(d["updated"] for d in read(auth).values())
    finally:
        ctrl_c(up, output)
    assert up.returncode == 0, "".join(output)

    up, output = start_up(env)
    try:
        read_until(up, output, "vtflow is up", 120)
        found = wait_until(lambda: served(auth, since), 60, "the deployments to be served again", interval=0.5)
        assert found[names[0]]["parameters"] == {"target_block": "mine", "mysql_block": "mine"}, found
        assert found[names[1]]["parameters"] == {"target_block": "mine"}, found
        assert found[names[0]]["schedules"][0]["active"], "the resumed schedule stays active"
        assert not found[names[1]]["schedules"][0]["active"], "the schedule the user paused stays paused"
        printed = "".join(output)
        assert "health-check/health-check: schedule" not in printed, printed
        assert "backup/backup: schedule paused (kept as it was); `vtflow schedules use mine` resumes it" in printed
    finally:
        ctrl_c(up, output)
    assert up.returncode == 0, "".join(output)
