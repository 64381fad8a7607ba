"""Block parameters as the flows take them: a saved block picked in the UI's form, or its name.

Prefect's form offers a parameter typed as a Block subclass as a choice of the saved blocks of
that type, and stores the choice as a reference (``{"$ref": {"block_document_id": ...}}``),
never the block's data: Prefect resolves the reference when the run starts. A name (what
``prefect deployment run --param target_block=sandbox``, the schedules and the webhook
receiver pass) is accepted too: the schema is ``anyOf [the block, a string]``, so the server's
parameter check takes both, and the form shows the two as tabs. Either way the flow body gets
the block's NAME and loads it (flows/common.py), so a missing block fails there with its fix,
and no secret ever sits in a run's parameters or in a subflow's.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field

from blocks.mysql import MySQLCredentials
from blocks.nodes import SSHNodes
from blocks.target import VitessTarget

# the form's label for the string tab (the block tab is labelled by the block's class name)
BlockName = Annotated[str, Field(title="block name")]


def name_of(value: Any) -> str:
    """The block's name: a name as given, a saved block's own name."""
    if isinstance(value, str):
        return value
    name = getattr(value, "_block_document_name", None)
    if not name:
        raise ValueError(f"a {type(value).__name__} that is not saved has no name to load it by: save it, then "
                         "give its name or pick it in the form")
    return name


TargetBlock = Annotated[VitessTarget | BlockName, AfterValidator(name_of)]
MySQLBlock = Annotated[MySQLCredentials | BlockName, AfterValidator(name_of)]
# optional: "" means none (and None from a Python caller, kept out of the schema: no "None" tab in the form)
NodesBlock = Annotated[SSHNodes | BlockName, BeforeValidator(lambda v: "" if v is None else v), AfterValidator(name_of)]
