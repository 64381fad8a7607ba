"""The data loader's exactly-once guarantee through the user's path: `vtflow deploy --until data
--data-parallel 2` as a subprocess, killed with SIGKILL at random points while it streams an SQL
file, a CSV file and a gzip-compressed SQL file, each kill followed by a re-run (bench/data_kill.py: the same with 30 kills over 200,000
rows). After every kill the table holds exactly the rows the checkpoint counts; at the end its
count and checksum equal the file's."""

import importlib.util
import random
import sys
from pathlib import Path

import pytest

from helpers import deployed_cluster

_spec = importlib.util.spec_from_file_location("data_kill", Path(__file__).resolve().parents[2] / "bench" / "data_kill.py")
data_kill = sys.modules["data_kill"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(data_kill)


@pytest.fixture(scope="module")
def cluster(prefect_server, tmp_path_factory):
    with deployed_cluster(tmp_path_factory.mktemp("kill")) as d:
        yield d


def test_sigkilled_deploys_then_reruns_load_every_row_exactly_once(cluster, tmp_path):
    files = data_kill.write_files(tmp_path, 6_000)
    server = data_kill.Server(cluster.db.host, cluster.db.port, cluster.db.user, cluster.db.password)
    seed = random.randrange(1 << 30)
    # every kill while the server runs one of the loader's INSERTs: the window an autocommit
    # connection loses (that batch commits without its checkpoint row, and the re-run repeats it)
    fig = data_kill.kill_loads(server, files, {"sql": 1, "csv": 1, "gz": 1}, data_kill.deploy_args(cluster),
                               random.Random(seed), in_batch_share=1.0)
    assert fig.mismatches == [], f"seed {seed}"
    assert (fig.kills, fig.reruns, fig.rows) == (3, 3, 18_000)
