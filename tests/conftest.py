"""Session fixtures: one Prefect server, one MariaDB, twenty sshd nodes, shared by all tests.

The Prefect client settings are fixed here, before anything imports prefect, so that every
test talks to this session's server and keeps its state in a temporary folder.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

_STATE = Path(tempfile.mkdtemp(prefix="vtflow-test-state-"))
os.environ["VTFLOW_STATE_DIR"] = str(_STATE)
os.environ["PREFECT_HOME"] = str(_STATE / "client")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ["PREFECT_LOGGING_TO_API_BATCH_INTERVAL"] = "0.3"
# tests call some tasks outside a flow run; their logs have no run to go to
os.environ["PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW"] = "ignore"
sys.path.insert(0, str(Path(__file__).parent))

from testbed import MariaDB, SSHNodeBed, free_port  # noqa: E402

_PORT = free_port()
os.environ["VTFLOW_PORT"] = str(_PORT)
os.environ["PREFECT_API_URL"] = f"http://127.0.0.1:{_PORT}/api"

import pytest  # noqa: E402

NODE_COUNT = 20


@pytest.fixture(scope="session")
def prefect_server():
    """This session's Prefect server, started the way `make up` starts it (SQLite)."""
    from vtflow.stack import PrefectServer, StackSettings, register_blocks

    server = PrefectServer(StackSettings.from_env()).start()
    register_blocks()
    yield server
    # flush what clients still hold (task-run events, logs) before the server goes
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)
    EventsWorker.drain_all(timeout=10)
    server.stop()


@pytest.fixture(scope="session")
def prefect_db(prefect_server) -> Path:
    return prefect_server.settings.home / "prefect.db"


@pytest.fixture(scope="session")
def mariadb():
    db = MariaDB(root=Path(tempfile.mkdtemp(prefix="vtflow-mariadb-")), port=free_port()).start()
    yield db
    db.stop()


@pytest.fixture(scope="session")
def node_bed():
    bed = SSHNodeBed(NODE_COUNT).start()
    yield bed
    bed.stop()


@pytest.fixture
def nodes(node_bed):
    """The twenty nodes, each reset to a healthy K3s server without a mysql client."""
    for n in node_bed.nodes:
        n.reset()
    return node_bed.nodes
