"""What every benchmark sets up before Prefect is imported: a throwaway state folder, a free
port for its own Prefect server, quiet logs. Import it first; it must not import Prefect."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]  # the repo's packages (blocks, flows, ...) and the test bed

from testbed import free_port  # noqa: E402

STATE = Path(tempfile.mkdtemp(prefix="vtflow-bench-"))
os.environ["VTFLOW_STATE_DIR"] = str(STATE)
os.environ["PREFECT_HOME"] = str(STATE / "client")
os.environ["PREFECT_LOGGING_LEVEL"] = "ERROR"
PORT = free_port()
os.environ["VTFLOW_PORT"] = str(PORT)
os.environ["PREFECT_API_URL"] = f"http://127.0.0.1:{PORT}/api"
REPEAT = int(os.environ.get("BENCH_REPEAT", "3"))
UPSTREAM = Path(os.environ.get("VTFLOW_UPSTREAM_DIR", REPO.parent / "shared" / "upstream"))
