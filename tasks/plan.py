"""The deploy's inputs, read once into one plan before step 1.

``build_plan`` reads every input a deploy names, once: each keyspace's SQL schema and VSchema
(the operator manifest comes read by the deploy flow, whose release depends on the cluster's
Kubernetes version; a URL is fetched once), the data files (as streams: each is checked and cut
without being held in memory, and a URL is downloaded once, to a temporary file), the verify script
and its expected output; and checks them all (parsed whole, as the steps will use them), so a
missing file or a malformed CSV stops the run before anything is changed. The steps then take
what the plan holds and never read a file or URL again. This module reads inputs only: it
talks to no cluster and no database, and loads no block.
"""

from __future__ import annotations

from dataclasses import dataclass

from tasks.data import DataFile, DataInputs, read_files
from tasks.schema import KeyspaceSchema, SchemaInput, check_inputs
from tasks.verify import Verification, read_inputs


@dataclass(frozen=True)
class DeployPlan:
    operator_source: str
    operator_docs: list[dict]          # every document of operator.yaml (its CRDs check the VitessCluster too)
    schemas: list[SchemaInput]
    data: DataInputs
    verify_inputs: tuple[tuple[str, str] | None, tuple[str, str] | None]   # (script, expected output), each (text, name)


def build_plan(operator_source: str, operator_docs: list[dict], schemas: list[KeyspaceSchema], data: list[DataFile],
               verify: Verification, data_parallel: int | None = None) -> DeployPlan:
    """Every input read and checked; a ConfigError names the first bad one and its fix. The
    operator manifest comes read (flows/deploy.py ``choose_versions``: which release's it is
    depends on the cluster's Kubernetes version)."""
    return DeployPlan(
        operator_source=operator_source,
        operator_docs=operator_docs,
        schemas=check_inputs(schemas),
        data=read_files(data, data_parallel),
        verify_inputs=read_inputs(verify) if verify.enabled else (None, None),
    )
