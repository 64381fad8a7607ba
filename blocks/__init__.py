"""Prefect blocks: typed configuration and secrets, at most a client factory each.

Flows take block *names* as parameters and load the blocks at run time, so secrets never
travel in run parameters. Secret fields are ``SecretStr``: redacted in the UI, API reads and
logs. ``ALL_BLOCKS`` is what ``make up`` registers with the Prefect server.
"""

from blocks.harbor import HarborWebhook
from blocks.mysql import MySQLCredentials
from blocks.nodes import NodeSpec, SSHNodes
from blocks.target import VitessTarget

ALL_BLOCKS = (VitessTarget, SSHNodes, MySQLCredentials, HarborWebhook)

__all__ = ["ALL_BLOCKS", "HarborWebhook", "MySQLCredentials", "NodeSpec", "SSHNodes", "VitessTarget"]
