"""Local processes of the sandbox and the test bed: ports, detached starts, pid files, stops.

A sandbox process is started detached (own session, output to a log file, stdin closed) so
that it outlives the command that started it, and is found again through its pid file. A pid
file alone is not trusted: the process must still carry the sandbox folder in its command line
or environment (``is_ours``), so a recycled pid is never signalled. This module must not know
what the processes are (MariaDB, sshd, the API double); callers pass their command lines.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from vtflow.errors import ConfigError, TransientError

# Every process the sandbox starts carries this variable; a sweep finds stragglers by it (or by
# the node folder that sshd gives each SSH session).
MARKER_VAR = "VTFLOW_SANDBOX_DIR"
SWEEP_VARS = (MARKER_VAR, "VTFLOW_NODE_DIR")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_port(host: str, port: int, timeout: float, proc: subprocess.Popen | None = None, what: str = "",
              pid: int | None = None, log: Path | None = None) -> None:
    """Wait until ``host:port`` accepts connections; fail early when the process exits."""
    deadline = time.monotonic() + timeout
    fix = f"read {log} for the cause." if log else "read its log for the cause."
    while time.monotonic() < deadline:
        exited = (proc is not None and proc.poll() is not None) or (pid is not None and not alive(pid))
        if exited:
            raise TransientError(what or f"{host}:{port}", f"exited before listening on {host}:{port}.", fix)
        if port_open(host, port):
            return
        time.sleep(0.05)
    raise TransientError(what or f"{host}:{port}", f"did not listen on {host}:{port} within {timeout:.0f} s.", fix)


def missing_tools(*names: str) -> list[str]:
    return [n for n in names if not shutil.which(n) and not Path("/usr/sbin", n).exists()]


def require_tools(*names: str, fix: str) -> None:
    if missing := missing_tools(*names):
        raise ConfigError("this machine", f"{', '.join(missing)} not installed.", fix)


# ---------------------------------------------------------------- detached processes


def spawn(argv: list[str], pid_file: Path, log: Path, marker: Path, env: dict | None = None) -> int:
    """Start ``argv`` detached, record its pid in ``pid_file``; returns the pid.

    The child is reaped by init once this command exits; ``marker`` (the sandbox folder) goes
    into its environment so that ``is_ours`` and ``sweep`` can recognise it later.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    full_env = {**(env if env is not None else os.environ), MARKER_VAR: str(marker)}
    with open(log, "ab") as out:
        # cwd: not the caller's folder, which the user may delete while the sandbox runs
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=marker,
                                env=full_env, start_new_session=True, close_fds=True)
    pid_file.write_text(f"{proc.pid}\n")
    # keep the Popen from warning at exit; the child is detached and outlives us on purpose
    proc.returncode = 0
    return proc.pid


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")  # a zombie has exited; only its parent's wait is missing


def _under(value: bytes, marker: bytes) -> bool:
    return value == marker or value.startswith(marker + b"/")


def _names(text: bytes, marker: bytes) -> bool:
    """Whether ``text`` mentions ``marker`` as a whole path (sshd rewrites its argv into one string)."""
    at = text.find(marker)
    while at >= 0:
        end = at + len(marker)
        if (at == 0 or text[at - 1:at] in b" =") and (end == len(text) or text[end:end + 1] in b"/ "):
            return True
        at = text.find(marker, at + 1)
    return False


def carries(pid: int, marker: Path, cmdline: bool = True) -> bool:
    """True when the process's environment has ``SWEEP_VARS`` at or under ``marker`` or, with
    ``cmdline``, its command line names ``marker`` or a path under it.

    Only those variables count: a user's shell with ``KUBECONFIG=<sandbox>/kubeconfig`` is not
    ours. The command line counts for pid files only (sshd overwrites its environment with its
    process title, so its marker variable is gone), not for the sweep: ``tail -f <sandbox>/logs/x``
    is the user's.
    """
    needle = str(marker).encode()
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        env = []
    for item in env:
        name, _, value = item.partition(b"=")
        if name.decode(errors="replace") in SWEEP_VARS and _under(value, needle):
            return True
    if cmdline:
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        return any(_names(a, needle) for a in args)
    return False


def owner(pid: int) -> str:
    """The user name a process runs as ("?" once it is gone)."""
    import pwd

    try:
        uid = os.stat(f"/proc/{pid}").st_uid
        return pwd.getpwuid(uid).pw_name
    except (OSError, KeyError):
        return "?"


def read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def is_ours(pid: int | None, marker: Path, cmdline: bool = True) -> bool:
    return pid is not None and pid != os.getpid() and alive(pid) and carries(pid, marker, cmdline)


def running(pid_file: Path, marker: Path) -> int | None:
    """The pid in ``pid_file`` if that process is alive and ours, else None."""
    pid = read_pid(pid_file)
    return pid if is_ours(pid, marker) else None


def terminate(pids: list[int], marker: Path, timeout: float = 15.0) -> list[int]:
    """SIGTERM each of ``pids`` still ours, SIGKILL what is left after ``timeout``; returns those signalled."""
    signalled = []
    for pid in pids:
        if is_ours(pid, marker):
            try:
                os.kill(pid, signal.SIGTERM)
                signalled.append(pid)
            except (ProcessLookupError, PermissionError):  # gone, or another user's: the caller sees it left
                pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(is_ours(p, marker) for p in signalled):
        time.sleep(0.05)
    for pid in signalled:
        if is_ours(pid, marker):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return signalled


def sweep(marker: Path) -> list[int]:
    """Pids of live processes, other than this one and its parent, whose environment carries ``marker``."""
    mine = {os.getpid(), os.getppid()}
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) not in mine and is_ours(int(entry.name), marker, cmdline=False):
            found.append(int(entry.name))
    return sorted(found)
