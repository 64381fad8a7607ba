"""MySQL protocol (vtgate, or MariaDB standing in for it): the one module that imports pymysql.

It opens connections with the credentials block's user and password and maps driver errors
to vtflow errors naming the server and the fix. It must not know what SQL a step runs.
"""

from __future__ import annotations

import pymysql
from pymysql.constants import ER

from vtflow.errors import AuthError, TransientError, UnreachableError

# Server error codes that a retry can fix (lock waits, deadlocks, vtgate not serving yet).
_TRANSIENT_CODES = {ER.LOCK_WAIT_TIMEOUT, ER.LOCK_DEADLOCK, 1105}
_AUTH_CODES = {ER.ACCESS_DENIED_ERROR, ER.DBACCESS_DENIED_ERROR}


def connect(host: str, port: int, user: str, password: str, database: str | None = None,
            timeout: float = 10.0, **kwargs) -> pymysql.connections.Connection:
    subject = f"MySQL {user}@{host}:{port}"
    try:
        return pymysql.connect(
            host=host, port=port, user=user, password=password, database=database,
            connect_timeout=timeout, read_timeout=kwargs.pop("read_timeout", 300),
            charset="utf8mb4", autocommit=kwargs.pop("autocommit", True), **kwargs,
        )
    except pymysql.err.OperationalError as e:
        code = e.args[0] if e.args else None
        if code in _AUTH_CODES:
            raise AuthError(
                subject, "the server refused the user and password.",
                "check the MySQL credentials block against the users the cluster was deployed with.",
            ) from None  # the driver's message can echo the user; never the password, but keep it short
        if code == 2003:
            raise UnreachableError(subject, "cannot connect.", "check that vtgate runs and that its address and port are right.") from e
        raise TransientError(subject, f"connection failed (MySQL error {code}).", "re-run; if it persists, check vtgate's logs.") from e
