"""Small helpers shared by tests: blocks pointing at the test bed, artifact reads."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

from blocks.nodes import SSHNodes


def nodes_block(bed, nodes, *, key=None, known_hosts=None, passphrase=None, extra_nodes=(), user=None) -> SSHNodes:
    inventory = bed.inventory(nodes)
    return SSHNodes(
        nodes=inventory["nodes"] + list(extra_nodes), user=user or inventory["user"],
        private_key=(key or bed.client_key).read_text(), passphrase=passphrase,
        known_hosts=bed.known_hosts(nodes) if known_hosts is None else known_hosts,
    )


def save_nodes_block(block: SSHNodes, prefix: str = "t") -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    block.save(name, overwrite=True)
    return name


def read_table_artifact(key: str) -> list[dict]:
    from prefect.artifacts import Artifact

    artifact = Artifact.get(key)
    assert artifact is not None, f"no artifact {key}"
    data = artifact.data
    return json.loads(data) if isinstance(data, str) else data


# The real upstream files (never copied into the repo): $VTFLOW_UPSTREAM_DIR, else ../shared/upstream.
UPSTREAM = Path(os.environ.get("VTFLOW_UPSTREAM_DIR", Path(__file__).resolve().parents[2] / "shared" / "upstream"))
EXAMPLES = UPSTREAM / "vitess-operator-v2.17.0" / "examples"
OPERATOR_YAML = str(EXAMPLES / "operator.yaml")  # a path string, as flows and the CLI take it
