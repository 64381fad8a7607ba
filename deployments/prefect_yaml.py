"""``prefect.yaml``: the deployments of ``all_deployments()`` on a work pool (``prefect deploy --all``).

``make up`` serves the deployments in its own process; to run the flows on other machines,
``prefect deploy --all`` registers the same seven (names, descriptions, tags, parameters,
schedules, concurrency) on the work pool ``vtflow`` (``--pool NAME`` for another), and a worker
of that pool runs them. The file is rendered from ``all_deployments()`` (``python -m
deployments.prefect_yaml > prefect.yaml``); tests/deployments/test_prefect_yaml.py pins it equal.

Its schedules are paused: they name blocks that may not exist yet (vtflow.schedules); ``vtflow
schedules use NAME`` points them at blocks and resumes them. Re-running ``prefect deploy`` sets
the deployments back to this file, as Prefect does. The worker runs each flow from the checkout
its environment names in ``VTFLOW_CHECKOUT`` (the pull step), with the project's dependencies.
"""

from __future__ import annotations

import yaml

WORK_POOL = "vtflow"
HEADER = ("# Rendered from deployments/__init__.py by `python -m deployments.prefect_yaml > prefect.yaml`;\n"
          "# edit that file, not this one (tests/deployments/test_prefect_yaml.py pins them equal).\n"
          "# Run on a work pool: prefect work-pool create vtflow --type process; prefect deploy --all;\n"
          "# VTFLOW_CHECKOUT=$PWD prefect worker start --pool vtflow. README: More machines.\n")


def _schedule(s) -> dict:
    """A deployment schedule as prefect.yaml writes it (paused: see the module's note)."""
    inner = s.schedule
    if getattr(inner, "interval", None) is not None:
        out = {"interval": inner.interval.total_seconds()}
    else:
        out = {"cron": inner.cron}
        if inner.timezone:
            out["timezone"] = inner.timezone
    return {**out, "active": False}


def deployment_config(d) -> dict:
    """One RunnerDeployment as a prefect.yaml deployment entry."""
    entry = {"name": d.name, "entrypoint": d.entrypoint, "description": d.description, "tags": list(d.tags),
             "parameters": dict(d.parameters)}
    if d.concurrency_limit:
        entry["concurrency_limit"] = {"limit": d.concurrency_limit}
        if d.concurrency_options:
            entry["concurrency_limit"]["collision_strategy"] = d.concurrency_options.collision_strategy.value
    if d.schedules:
        entry["schedules"] = [_schedule(s) for s in d.schedules]
    entry["work_pool"] = {"name": WORK_POOL, "work_queue_name": None, "job_variables": {}}
    return entry


def render() -> str:
    from deployments import all_deployments

    config = {
        "name": "vtflow",
        "prefect-version": "3.9.1",
        "build": None,
        "push": None,
        # where the worker finds the code: the checkout named in its environment (resolved when a
        # run starts, on the machine that runs it)
        "pull": [{"prefect.deployments.steps.set_working_directory": {"directory": "{{ $VTFLOW_CHECKOUT }}"}}],
        "deployments": [deployment_config(d) for d in all_deployments()],
    }
    return HEADER + yaml.safe_dump(config, sort_keys=False, width=110)


if __name__ == "__main__":
    import os
    import sys

    os.environ.pop("VTFLOW_BLOCKS", None)  # the file carries the defaults, not this shell's choice
    sys.stdout.write(render())
