"""`make up` by a user who is not the first on the machine to serve Prefect deployments."""

import base64
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from helpers import as_ordinary_user, give_to_ordinary_user
from vtflow.sandbox.procs import free_port

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(os.getuid() != 0, reason="the test switches to an ordinary user, which needs root")


def _deployments(port: int, auth: str) -> list[str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/deployments/filter", data=b"{}", method="POST",
                                     headers={"Content-Type": "application/json",
                                              "Authorization": "Basic " + base64.b64encode(auth.encode()).decode()})
    with urllib.request.urlopen(request, timeout=5) as r:
        return sorted(d["name"] for d in json.load(r))


def bare_env(state: Path, port: int, **extra) -> dict:
    """A user's shell: no PREFECT_* or VTFLOW_*, only where this stack lives."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "VTFLOW_"))}
    return {**env, "VTFLOW_STATE_DIR": str(state), "VTFLOW_PORT": str(port), "VTFLOW_WEBHOOK_PORT": "0",
            "PYTHONUNBUFFERED": "1", **extra}


def served_names(port: int, state: Path, timeout: float = 90) -> list[str]:
    """The deployments' names once all of them are served (or what there is after ``timeout``)."""
    from deployments import all_deployments

    want = len(all_deployments())
    deadline = time.monotonic() + timeout
    names: list[str] = []
    while time.monotonic() < deadline and len(names) < want:
        time.sleep(1)
        if (state / "api-auth-string").exists():
            try:
                names = _deployments(port, (state / "api-auth-string").read_text().strip())
            except OSError:
                pass
    return names


def test_serve_keeps_its_files_out_of_another_users_runner_storage():
    # the first user to serve on a machine owns <tmp>/runner_storage; Prefect's runner makes its
    # folders there, so everyone else's serve died on a PermissionError, restarted, died again
    work = Path(tempfile.mkdtemp(prefix="vtflow-users-"))
    machine_tmp = work / "tmp"
    (machine_tmp / "runner_storage").mkdir(parents=True)
    machine_tmp.chmod(0o1777)
    (work / "state").mkdir()
    state = give_to_ordinary_user(work / "state")
    port = free_port()
    env = bare_env(state, port, TMPDIR=str(machine_tmp), HOME=str(state), PREFECT_HOME=str(state / "client"))
    up = subprocess.Popen(as_ordinary_user([sys.executable, "-m", "vtflow.cli", "up"]), cwd=REPO, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        names = served_names(port, state)
        log = (state / "prefect" / "serve.log").read_text() if (state / "prefect" / "serve.log").exists() else ""
        assert names == ["backup", "deploy", "health-check", "move-tables", "node-prep", "redeploy", "reshard",
                         "restore-drill", "teardown", "upgrade"], \
            log[-3000:]
        assert "PermissionError" not in log and "runner_storage" not in log
        assert list((machine_tmp / "runner_storage").iterdir()) == [], "nothing of this user's in the shared folder"
    finally:
        os.killpg(up.pid, signal.SIGINT)
        try:
            up.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(up.pid, signal.SIGKILL)
            up.communicate()
        subprocess.run(["rm", "-rf", str(work)])


def test_make_up_started_with_sigint_ignored_still_stops_serve_cleanly(tmp_path):
    # `make up &` in a script starts with SIGINT ignored, and children inherit that: serve, which
    # stops on SIGINT (pausing its deployments on the way out), sat out its timeout and was killed
    import signal as sig

    from deployments import all_deployments

    port = free_port()
    state = tmp_path / "state"
    up = subprocess.Popen([sys.executable, "-m", "vtflow.cli", "up"], cwd=REPO, env=bare_env(state, port),
                          stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, start_new_session=True,
                          preexec_fn=lambda: sig.signal(sig.SIGINT, sig.SIG_IGN))
    try:
        names = served_names(port, state)
        assert sorted(names) == sorted(d.name for d in all_deployments()), names
        up.send_signal(sig.SIGTERM)
        output, _ = up.communicate(timeout=90)
    finally:
        if up.poll() is None:
            os.killpg(up.pid, sig.SIGKILL)
            up.communicate()
    assert "Stopped." in output
    # serve ran its own shutdown (it pauses its deployments), rather than being killed at the timeout
    assert "did not stop within" not in output, output
