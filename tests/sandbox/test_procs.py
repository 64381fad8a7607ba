"""Detached processes found again by pid file, and only when they are ours."""

import os
import subprocess
import sys
from pathlib import Path

from helpers import wait_until
from vtflow.sandbox import procs


def test_names_matches_whole_paths_only():
    marker = b"/tmp/x/sandbox"
    assert procs._names(b"/tmp/x/sandbox", marker)
    assert procs._names(b"--datadir=/tmp/x/sandbox/mariadb/data", marker)
    assert procs._names(b"sshd: /usr/sbin/sshd -D -f /tmp/x/sandbox/nodes/node1/sshd_config [listener]", marker)
    assert not procs._names(b"/tmp/x/sandbox2/kubeconfig", marker)
    assert not procs._names(b"/tmp/x/sandboxed", marker)


def test_spawned_process_outlives_its_popen_and_is_found_by_pid_file(tmp_path):
    pid_file, log = tmp_path / "run" / "sleeper.pid", tmp_path / "logs" / "sleeper.log"
    # the child's sleep keeps it alive while the test looks for it
    pid = procs.spawn([sys.executable, "-c", "import time; print('hi', flush=True); time.sleep(60)"], pid_file, log, tmp_path)
    try:
        wait_until(lambda: "hi" in log.read_text(), 10, f"the spawned process's 'hi' in {log}")
        assert "hi" in log.read_text(), "its output goes to the log"
        assert procs.running(pid_file, tmp_path) == pid
        assert os.getsid(pid) == pid, "own session: a Ctrl-C in the user's terminal does not reach it"
        assert procs.sweep(tmp_path) == [pid]
        assert procs.running(pid_file, tmp_path / "other") is None, "another sandbox's marker is not ours"
    finally:
        assert procs.terminate([pid], tmp_path, timeout=5) == [pid]
    wait_until(lambda: not procs.alive(pid), 5, f"process {pid} to be gone after terminate")
    assert procs.running(pid_file, tmp_path) is None


def test_a_recycled_pid_is_never_signalled(tmp_path):
    stranger = subprocess.Popen(["sleep", "30"])  # a process of someone else's, alive for the test
    try:
        pid_file = tmp_path / "x.pid"
        pid_file.write_text(f"{stranger.pid}\n")
        assert procs.running(pid_file, tmp_path) is None
        assert procs.terminate([stranger.pid], tmp_path, timeout=1) == []
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


def test_user_variables_naming_the_sandbox_do_not_make_a_process_ours(tmp_path):
    env = {**os.environ, "KUBECONFIG": str(tmp_path / "kubeconfig")}
    shell = subprocess.Popen(["sleep", "30"], env=env)  # the user's shell, alive for the test
    try:
        assert shell.pid not in procs.sweep(tmp_path)
    finally:
        shell.kill()
        shell.wait()


def test_wait_port_names_the_process_and_its_log_when_it_exits(tmp_path):
    import pytest

    from vtflow.errors import TransientError

    proc = subprocess.Popen(["true"])
    proc.wait()
    with pytest.raises(TransientError) as e:
        procs.wait_port("127.0.0.1", procs.free_port(), 5, proc, "sandbox x", log=Path("/x.log"))
    assert "sandbox x" in str(e.value) and "/x.log" in str(e.value)
