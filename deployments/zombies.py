"""The automation that ends Crashed a flow run whose process died (Prefect's zombie detection).

Every flow run Prefect 3.9 executes (served, on a worker, or in-process from the CLI) emits a
``prefect.flow-run.heartbeat`` event every ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` seconds (Prefect's
default 180, at least 30) from a thread of its own. The open-source server has no built-in
reaction to missing heartbeats; Prefect's documented answer ("Detect zombie flows") is this
proactive automation: after a heartbeat, expect another one or a final state within a window, else
set the run Crashed (which also releases its deployment concurrency slot, so a re-run is not
blocked). ``make up`` creates or updates it (vtflow/stack.py). Declaration only: this module must
not talk to the server.
"""

from __future__ import annotations

NAME = "vtflow - crash flow runs whose heartbeats stopped"
# a window of three heartbeats (Prefect's docs): one late event on a busy SQLite server is not a crash
MISSED_HEARTBEATS = 3
# Prefect 3.9's default heartbeat (prefect/settings/models/flows.py); a test pins it to Prefect's
PREFECT_DEFAULT_HEARTBEAT_S = 180
MIN_HEARTBEAT_S = 30  # Prefect's MINIMUM_HEARTBEAT_INTERVAL: a smaller setting is raised to it


def crash_zombies(heartbeat_s: int):
    """The automation for runs that heartbeat every ``heartbeat_s`` seconds. Every client must
    heartbeat at least that often (workers elsewhere too), or its long runs are crashed alive."""
    from datetime import timedelta

    from prefect.automations import Automation
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    window = MISSED_HEARTBEATS * max(heartbeat_s, MIN_HEARTBEAT_S)
    return Automation(
        name=NAME,
        description=f"A flow run that sent a heartbeat and then neither another one nor a final state within "
                    f"{window} s lost its process: it is set Crashed. Made by `make up` from "
                    "PREFECT_FLOWS_HEARTBEAT_FREQUENCY; set that alike on every machine that runs flows.",
        enabled=True,
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", "prefect.flow-run.Completed", "prefect.flow-run.Failed",
                    "prefect.flow-run.Cancelled", "prefect.flow-run.Crashed",
                    # a suspended run leaves its process on purpose
                    "prefect.flow-run.Suspended"},
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=window),
        ),
        actions=[ChangeFlowRunState(
            state=StateType.CRASHED,
            message=f"No heartbeat for {window} s: the process running this flow run died "
                    "(killed, out of memory, machine lost). Start it again.")],
    )
