"""The scheduled deployments' blocks and schedule state: paused until their blocks exist.

Out of the box the health check (every 5 min) and the backup (daily) name blocks called
``default`` (or ``VTFLOW_BLOCKS``) that may not exist yet: run on schedule, they would fail every
5 minutes. So ``make up`` serves them with their schedules PAUSED while a block they name is
missing, and says so once, one line per deployment (``serve_lines``). ``vtflow schedules use
NAME`` (``use``) points them at existing blocks and resumes their schedules.

A restart of ``make up`` re-serves every deployment, and Prefect's serve replaces a served
deployment's parameters and schedules with the code's. So ``serve_plan`` reads what the server
already has and keeps it: the block names (what ``schedules use`` or the UI set; an explicit
``VTFLOW_BLOCKS`` wins over them) and each schedule's active flag (a schedule the user paused
stays paused, one resumed stays active), except that a schedule whose blocks are missing is
served paused. The deployment-level pause is serve's own (it pauses its deployments when it
stops, and unpauses them when it starts): pause a schedule, not the deployment, to keep it off.

Talks to the Prefect API with Prefect's client; no flow logic.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from vtflow.errors import ConfigError

# a block parameter's name -> (its block class's import, the `vtflow block create` kind)
BLOCK_KINDS = {
    "target_block": ("blocks.target", "VitessTarget", "target"),
    "mysql_block": ("blocks.mysql", "MySQLCredentials", "mysql"),
    "nodes_block": ("blocks.nodes", "SSHNodes", "nodes"),
}


def _slug(param: str) -> str:
    import importlib

    module, cls, _ = BLOCK_KINDS[param]
    return getattr(importlib.import_module(module), cls).get_block_type_slug()


def _name_of(client, value) -> str | None:
    """A block parameter's block name: a name as given, a picked block's reference resolved."""
    if isinstance(value, str):
        return value or None
    ref = value.get("$ref") if isinstance(value, dict) else None
    if isinstance(ref, dict) and ref.get("block_document_id"):
        try:
            return client.read_block_document(ref["block_document_id"]).name
        except Exception:  # noqa: BLE001 - a deleted block: reported as missing by its id
            return f"<block {ref['block_document_id']}>"
    return None


def _exists(client, param: str, name: str) -> bool:
    from prefect.exceptions import ObjectNotFound

    try:
        client.read_block_document_by_name(name, _slug(param), include_secrets=False)
        return True
    except ObjectNotFound:
        return False


def _read(client, name: str):
    from prefect.exceptions import ObjectNotFound

    try:
        return client.read_deployment_by_name(name)
    except ObjectNotFound:
        return None


@dataclass
class Plan:
    """How one scheduled deployment is served."""

    name: str                        # flow/deployment
    blocks: dict[str, str]           # block parameter -> block name
    active: bool
    missing: list[tuple[str, str]] = field(default_factory=list)  # (kind, name) of blocks that do not exist
    existed: bool = False            # the server had it (its state was kept)

    def line(self) -> str | None:
        """make up's line about it: only when its schedule is paused."""
        if self.missing:
            names = ", ".join(f"{kind} block {name!r}" for kind, name in self.missing)
            return (f"{self.name}: schedule paused, {names} missing (runs would fail). Create the blocks (`vtflow "
                    "sandbox up` makes blocks named sandbox; or `vtflow block create ... --name NAME`), then "
                    "`vtflow schedules use NAME`.")
        if not self.active:
            name = sorted(set(self.blocks.values()))[0] if self.blocks else "NAME"
            return f"{self.name}: schedule paused (kept as it was); `vtflow schedules use {name}` resumes it."
        return None


def serve_plan(declared: dict[str, dict[str, str]] | None = None) -> list[Plan]:
    """For each scheduled deployment: the block names and schedule state to serve it with, from
    the server in PREFECT_API_URL (``declared``: the code's block parameters per deployment)."""
    from prefect import get_client

    from deployments import SCHEDULED, scheduled_blocks

    explicit = bool(os.environ.get("VTFLOW_BLOCKS"))
    declared = declared or {name: {k: scheduled_blocks()[k] for k in keys} for name, keys in SCHEDULED.items()}
    plans = []
    with get_client(sync_client=True) as client:
        for name, blocks in declared.items():
            current = _read(client, name)
            plan = Plan(name, dict(blocks), active=True, existed=current is not None)
            if current is not None:
                if not explicit:
                    for param in blocks:
                        if (kept := _name_of(client, (current.parameters or {}).get(param))) is not None:
                            plan.blocks[param] = kept
                plan.active = all(s.active for s in current.schedules) if current.schedules else True
            plan.missing = [(BLOCK_KINDS[p][2], n) for p, n in plan.blocks.items() if not _exists(client, p, n)]
            if plan.missing:
                plan.active = False
            plans.append(plan)
    return plans


def served_deployments() -> tuple[list, list[Plan]]:
    """all_deployments() as ``serve_plan`` says to serve them, and the plans."""
    from deployments import all_deployments

    plans = serve_plan()
    blocks, active = {p.name: p.blocks for p in plans}, {p.name: p.active for p in plans}
    blocks_of, active_of = _opt_in(next(iter(blocks.values()), {}))
    return all_deployments(blocks={**blocks, **blocks_of}, active={**active, **active_of}), plans


def _opt_in(scheduled: dict[str, str]) -> tuple[dict[str, dict[str, str]], dict[str, bool]]:
    """Block names and schedule state of the OPT_IN deployments: as the server has them, else
    the scheduled deployments' blocks and a paused schedule."""
    from prefect import get_client

    from deployments import OPT_IN, scheduled_blocks

    blocks, active = {}, {}
    with get_client(sync_client=True) as client:
        for name, params in OPT_IN.items():
            current = _read(client, name)
            blocks[name] = {p: scheduled.get(p) or scheduled_blocks()[p] for p in params}
            if current is not None:
                for p in params:
                    if (kept := _name_of(client, (current.parameters or {}).get(p))) is not None:
                        blocks[name][p] = kept
            active[name] = bool(current is not None and current.schedules and all(s.active for s in current.schedules))
    return blocks, active


def serve_lines() -> list[str]:
    """make up's lines about paused schedules (one per deployment, none when all are active)."""
    return [line for plan in serve_plan() if (line := plan.line())]


def _describe(schedule) -> str:
    s = schedule.schedule
    if getattr(s, "interval", None) is not None:
        seconds = s.interval.total_seconds()
        return f"every {seconds / 60:g} min" if seconds % 60 == 0 else f"every {seconds:g} s"
    return f"cron {getattr(s, 'cron', None) or s}"


def use(name: str, out=print) -> list[str]:
    """Point the scheduled deployments' block parameters at blocks named ``name`` and resume
    their schedules; returns the changes (empty when there was nothing to change)."""
    from prefect import get_client
    from prefect.client.schemas.actions import DeploymentUpdate
    from prefect.settings import get_current_settings

    from deployments import SCHEDULED

    with get_client(sync_client=True) as client:
        found = {n: d for n in SCHEDULED if (d := _read(client, n)) is not None}
        if not found:
            raise ConfigError("scheduled deployments " + ", ".join(SCHEDULED),
                              f"are not on the Prefect server at {get_current_settings().api.url}.",
                              "start `make up` (it serves them), then run this again.")
        params = sorted({p for n in found for p in SCHEDULED[n]})
        missing = [p for p in params if not _exists(client, p, name)]
        if missing:
            kinds = [BLOCK_KINDS[p][2] for p in missing]
            raise ConfigError(", ".join(f"{k} block {name!r}" for k in kinds), "does not exist on the Prefect server.",
                              "start the sandbox with `vtflow sandbox up` (it saves blocks named sandbox)" if name == "sandbox"
                              else "create it with " + " and ".join(f"`vtflow block create {k} --name {name} ...`"
                                                                     for k in kinds) + ", then run this again.")
        changes = []
        for dep_name, deployment in found.items():
            current = dict(deployment.parameters or {})
            what = []
            for param in SCHEDULED[dep_name]:
                before = _name_of(client, current.get(param))
                if before != name:
                    what.append(f"{param} {before or '(unset)'} -> {name}")
                    current[param] = name
            if what:
                client.update_deployment(deployment.id, DeploymentUpdate(parameters=current))
            for schedule in deployment.schedules:
                if not schedule.active:
                    client.update_deployment_schedule(deployment.id, schedule.id, active=True)
                    what.append(f"schedule resumed ({_describe(schedule)})")
            if what:
                changes.append(f"{dep_name}: " + ", ".join(what))
                out(changes[-1])
            else:
                out(f"{dep_name}: already uses {name!r}, schedule active; nothing to change")
            if deployment.paused:
                out(f"  note: {dep_name} itself is paused (serve pauses its deployments when `make up` stops); "
                    "`make up` resumes it")
    return changes


def pause_using(name: str) -> list[str]:
    """Pause the schedules of the scheduled deployments whose blocks are named ``name`` (their
    blocks are going: ``vtflow sandbox down``), so that they do not fail every 5 minutes; returns
    a line per deployment paused (none when no server answers or none used them)."""
    from prefect import get_client
    from prefect.settings import temporary_settings

    from deployments import SCHEDULED
    from vtflow.stack import client_settings

    lines = []
    try:
        with temporary_settings(updates=client_settings()), get_client(sync_client=True) as client:
            for dep_name, params in SCHEDULED.items():
                deployment = _read(client, dep_name)
                if deployment is None or not any(_name_of(client, (deployment.parameters or {}).get(p)) == name
                                                 for p in params):
                    continue
                paused = [s for s in deployment.schedules if s.active]
                for schedule in paused:
                    client.update_deployment_schedule(deployment.id, schedule.id, active=False)
                if paused:
                    lines.append(f"{dep_name}: schedule paused (its blocks {name!r} are gone); "
                                 f"`vtflow schedules use NAME` points it at others and resumes it.")
    except Exception:  # noqa: BLE001 - no server: the blocks could not be deleted either (said there)
        return lines
    return lines


def offer_line(block_name: str) -> str | None:
    """The line ``vtflow sandbox up`` prints when the scheduled deployments do not use blocks
    named ``block_name`` yet (or their schedules are paused); None when they do, when the server
    does not answer, or when it has no scheduled deployments."""
    from prefect import get_client
    from prefect.settings import temporary_settings

    from deployments import SCHEDULED
    from vtflow.stack import client_settings

    try:
        with temporary_settings(updates=client_settings()), get_client(sync_client=True) as client:
            found = {n: d for n in SCHEDULED if (d := _read(client, n)) is not None}
            uses = all(_name_of(client, (d.parameters or {}).get(p)) == block_name
                       for n, d in found.items() for p in SCHEDULED[n])
            active = all(s.active for d in found.values() for s in d.schedules)
    except Exception:  # noqa: BLE001 - no server, or not reachable: nothing to offer
        return None
    if not found or (uses and active):
        return None
    names = " and ".join(n.split("/")[0] for n in SCHEDULED)
    return (f"The scheduled {names} do not run against {block_name!r} yet: `vtflow schedules use {block_name}` "
            "points them at its blocks and resumes their schedules.")
