"""What every task module shares: the retry condition."""

from __future__ import annotations

from vtflow.errors import is_transient


def retry_transient(task, task_run, state) -> bool:
    """Prefect retry condition: retry a task only when it failed with a TransientError."""
    try:
        state.result()
    except Exception as exc:  # noqa: BLE001 - we only classify it
        return is_transient(exc)
    return False
