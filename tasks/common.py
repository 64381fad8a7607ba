"""What every task module shares: the retry condition."""

from __future__ import annotations

from vtflow.errors import is_transient


def retry_transient(task, task_run, state) -> bool:
    """Prefect retry condition: retry a task only when it failed with a TransientError.

    Reads the exception from the state's data rather than ``state.result()``: inside an async
    task that call returns a coroutine, which would silently turn every retry off."""
    data = state.data
    data = getattr(data, "result", data)  # a persisted ResultRecord keeps it in .result
    return isinstance(data, BaseException) and is_transient(data)
