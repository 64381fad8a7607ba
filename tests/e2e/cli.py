"""The `vtflow` command as the real-cluster tier runs it: a subprocess, as a user types it."""

from __future__ import annotations

import os
import subprocess
import sys


def vtflow(*args: str, env: dict[str, str] | None = None, timeout: float = 1800) -> subprocess.CompletedProcess:
    """The `vtflow` command as a user types it, on this session's Prefect server (PREFECT_API_URL)."""
    return subprocess.run([sys.executable, "-m", "vtflow.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL, check=False)


def ok(run: subprocess.CompletedProcess) -> str:
    assert run.returncode == 0, f"`vtflow {' '.join(run.args[3:])}` exited {run.returncode}:\n" \
                                f"{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    return run.stdout
