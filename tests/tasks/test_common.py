"""tasks/common.py: the retry condition, for sync and async tasks alike."""

import asyncio

from prefect import flow, task
from prefect.states import Completed, Failed

from tasks.common import retry_transient
from vtflow.errors import ConfigError, UnreachableError


def test_only_transient_failures_are_retried():
    assert retry_transient(None, None, Failed(data=UnreachableError("node n1", "down")))
    assert not retry_transient(None, None, Failed(data=ConfigError("block b", "missing")))
    assert not retry_transient(None, None, Failed(data=ValueError("x")))
    assert not retry_transient(None, None, Completed(data=1))


def test_async_and_sync_tasks_retry_transient_errors_only(prefect_server):
    attempts = {"async": 0, "sync": 0, "permanent": 0}

    @task(retries=2, retry_delay_seconds=0, retry_condition_fn=retry_transient)
    async def flaky_async():
        attempts["async"] += 1
        raise UnreachableError("node n1", "down")

    @task(retries=2, retry_delay_seconds=0, retry_condition_fn=retry_transient)
    def flaky_sync():
        attempts["sync"] += 1
        raise UnreachableError("node n1", "down")

    @task(retries=2, retry_delay_seconds=0, retry_condition_fn=retry_transient)
    async def broken():
        attempts["permanent"] += 1
        raise ConfigError("block b", "missing")

    @flow
    async def run_all():
        await flaky_async(return_state=True)
        flaky_sync(return_state=True)
        await broken(return_state=True)

    asyncio.run(run_all())
    assert attempts == {"async": 3, "sync": 3, "permanent": 1}
