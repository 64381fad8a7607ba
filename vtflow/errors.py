"""The project's own errors.

Two families: ``TransientError`` (worth retrying: a node that is rebooting, an API that
answered 503) and ``PermanentError`` (bad input, a refused key, a failed check: retrying
cannot help). Library errors are wrapped with ``raise ... from e`` at the client modules so
that callers never need to import paramiko, pymysql or kubernetes to tell them apart.

Every message names the object it is about and says what to do. Messages never carry a
secret value: callers pass names (block names, hosts, files), never the secrets themselves.
"""

from __future__ import annotations

import logging
import os


class VtflowError(Exception):
    """Base of every error vtflow raises on purpose."""

    def __init__(self, subject: str, problem: str, fix: str | None = None):
        self.subject = subject
        self.problem = problem
        self.fix = fix
        text = f"{subject}: {problem}"
        if fix:
            text += f" Fix: {fix}"
        super().__init__(text)

    def __reduce__(self):
        # pickled with its three parts (Prefect may persist a failed task's exception)
        return (self.__class__, (self.subject, self.problem, self.fix))


class PermanentError(VtflowError):
    """Retrying will not help; a person has to change something first."""


class TransientError(VtflowError):
    """Likely to pass on a later attempt."""


class ConfigError(PermanentError):
    """Bad or missing input (a block, a file, a parameter), found before anything changed."""


class HostKeyError(PermanentError):
    """A node's SSH host key is not the one the nodes block trusts."""


class AuthError(PermanentError):
    """Credentials were refused (SSH key, MySQL password)."""


class ReadyTimeout(PermanentError):
    """Something did not become ready within the whole timeout the caller gave, and the message
    says why (the last reason, and a diagnosis where the step makes one). Permanent on purpose:
    a retry would only wait as long again for the same diagnosis (a crash-looping pod stays so).
    The API calls made while waiting keep their own transient retries."""


class UnreachableError(TransientError):
    """The host did not answer or refused the connection."""


class CommandError(PermanentError):
    """A remote command ran and failed."""


def is_transient(exc: BaseException) -> bool:
    """True when a retry may succeed: used as the tasks' retry condition."""
    return isinstance(exc, TransientError)


def invalid_field(problem: str, fix: str):
    """What a pydantic field validator raises: the problem as pydantic's message and the fix kept
    apart in its context, so that the CLI shows both without parsing one out of the other."""
    from pydantic_core import PydanticCustomError

    return PydanticCustomError("vtflow_invalid", "{problem}", {"problem": problem, "fix": fix})


class _ExpectedErrorsWithoutTraceback(logging.Filter):
    """Drops the traceback from a run-log record whose exception is a VtflowError: the user caused
    it and its message says what to do, so Prefect's engine logs one line (the run's state holds the
    message); a bug keeps its traceback. ``VTFLOW_TRACEBACKS=1`` (the CLI's ``-v``) keeps them all.
    The record is marked ``vtflow_expected`` so that the CLI can leave it to its own ``error:`` line."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if isinstance(record.exc_info, tuple) else None
        if isinstance(exc, VtflowError):
            record.vtflow_expected = True
            if os.environ.get("VTFLOW_TRACEBACKS") != "1":
                record.exc_info = None
                record.exc_text = None
        return True


def quiet_expected_errors() -> None:
    """Install the filter on Prefect's run loggers (idempotent). Prefect's logging setup configures
    these same logger objects later without removing filters, so importing this module is enough:
    every flow imports it."""
    for name in ("prefect.flow_runs", "prefect.task_runs"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _ExpectedErrorsWithoutTraceback) for f in logger.filters):
            logger.addFilter(_ExpectedErrorsWithoutTraceback())


quiet_expected_errors()
