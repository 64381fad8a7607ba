"""The sandbox's Prefect blocks: one ``VitessTarget``, ``SSHNodes`` and ``MySQLCredentials`` named ``sandbox``.

Builds them from what the sandbox started (pure), saves each only when it differs from what the
server holds (so a second ``up`` changes nothing), and deletes them on ``down``. The server is
the one in ``PREFECT_API_URL`` (or the Prefect profile), else the one ``make up`` runs (with its
auth string, found by vtflow.stack.client_settings). It must
not start processes, and never prints a block's secret fields.
"""

from __future__ import annotations

import contextlib

from pydantic import BaseModel, SecretStr

from vtflow.errors import UnreachableError

BLOCK_NAME = "sandbox"


def api_url() -> str:
    """Where the blocks go: ``PREFECT_API_URL`` (environment or profile), else ``make up``'s address."""
    from prefect.settings import get_current_settings

    from vtflow.stack import StackSettings

    return get_current_settings().api.url or StackSettings.from_env().api_url


@contextlib.contextmanager
def prefect_api(url: str):
    """Point Prefect's client at ``url`` for the duration (it may come from the fallback above),
    with ``make up``'s auth string when ``url`` is its server."""
    from prefect.events.worker import EventsWorker
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from vtflow.stack import client_settings

    with temporary_settings(updates={PREFECT_API_URL: url}), temporary_settings(updates=client_settings()):
        try:
            yield
        finally:
            # send the block events now, to this server, rather than warn about them at exit
            EventsWorker.drain_all(timeout=5)


def check_reachable(url: str, timeout: float = 5.0) -> None:
    from prefect.settings import get_current_settings

    from vtflow.stack import wait_healthy

    auth = get_current_settings().api.auth_string
    try:
        wait_healthy(url, auth.get_secret_value() if auth else None, timeout)
    except Exception as e:
        raise UnreachableError(f"Prefect server {url}", "does not answer, so the sandbox blocks cannot be saved.",
                               "start it with `make up` in another terminal (or point PREFECT_API_URL at yours), "
                               "then run this again; a `make up` started with VTFLOW_PORT or VTFLOW_STATE_DIR "
                               "is found with the same settings here.") from e


def block_types():
    from blocks import MySQLCredentials, SSHNodes, VitessTarget

    return VitessTarget, SSHNodes, MySQLCredentials


def target_block(kubeconfig: str, node_address: str, vtgate_address: str | None):
    from blocks import VitessTarget

    return VitessTarget(kubeconfig=kubeconfig, namespace="example", cluster_name="example",
                        node_address=node_address, vtgate_address=vtgate_address)


def nodes_block(inventory: dict, private_key: str, known_hosts: str):
    from blocks import SSHNodes

    return SSHNodes(nodes=inventory["nodes"], user=inventory["user"], private_key=private_key, known_hosts=known_hosts)


def mysql_block(user: str, password: str):
    from blocks import MySQLCredentials

    return MySQLCredentials(user=user, password=password)


def _plain(value):
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, BaseModel):
        return value.model_dump()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def same(a, b) -> bool:
    """Whether two blocks of one type hold the same field values, secrets included."""
    return type(a) is type(b) and all(_plain(getattr(a, f)) == _plain(getattr(b, f)) for f in type(a).model_fields)


def load(block_type):
    """The saved ``sandbox`` block of ``block_type``, or None."""
    try:
        return block_type.load(BLOCK_NAME)
    except ValueError:
        return None


def ensure(block) -> bool:
    """Save ``block`` as ``sandbox`` unless an equal one is saved; True when it changed."""
    existing = load(type(block))
    if existing is not None and same(existing, block):
        return False
    block.save(BLOCK_NAME, overwrite=True)
    return True


def delete_all() -> list[str]:
    """Delete every ``sandbox`` block there is; returns the slugs deleted."""
    from prefect.exceptions import ObjectNotFound

    deleted = []
    for block_type in block_types():
        try:
            block_type.delete(BLOCK_NAME)
            deleted.append(block_type.get_block_type_slug())
        except (ValueError, ObjectNotFound):
            pass
    return deleted


def existing() -> list[str]:
    return [f"{t.get_block_type_slug()}/{BLOCK_NAME}" for t in block_types() if load(t) is not None]


def labels() -> list[str]:
    return [f"{t.get_block_type_slug()}/{BLOCK_NAME}" for t in block_types()]

