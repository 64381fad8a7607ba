"""What the flows share: loading a block by the name a parameter gives."""

from __future__ import annotations


async def load_block(block_cls, name: str, what: str):
    """The saved block, or a ConfigError that says which command creates it."""
    from vtflow.errors import ConfigError

    try:
        return await block_cls.aload(name)
    except ValueError as e:
        fix = ("start it with `vtflow sandbox up` (it saves the sandbox's blocks)." if name == "sandbox" else
               f"create it with `vtflow block create {what.split()[0].lower()} --name {name} ...`.")
        raise ConfigError(f"{what} block {name!r}", "does not exist on the Prefect server.", fix) from e
