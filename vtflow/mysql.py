"""MySQL protocol (vtgate, or MariaDB standing in for it): the one module that imports pymysql.

It opens connections with the credentials block's user and password and maps driver errors
to vtflow errors naming the server and the fix. It must not know what SQL a step runs.

Connections are in autocommit mode for the read-only users (verify, health) unless opened
``transactional``: the data loader's guarantee (a batch and its checkpoint row commit
together) holds only without autocommit, so that mode is set and checked here, whatever the
caller passed (``transactional``).
"""

from __future__ import annotations

import re

import pymysql
from pymysql.constants import ER

from vtflow.errors import AuthError, PermanentError, TransientError, UnreachableError

# Server error codes that a retry can fix (lock waits, deadlocks, vtgate not serving yet, and a
# server at its connection limit: 1040 too many connections, 1203 too many for the user, 1226 a
# user's resource limit such as max_user_connections).
_TRANSIENT_CODES = {ER.LOCK_WAIT_TIMEOUT, ER.LOCK_DEADLOCK, 1105, ER.CON_COUNT_ERROR, ER.TOO_MANY_USER_CONNECTIONS,
                    ER.USER_LIMIT_REACHED}
_AUTH_CODES = {ER.ACCESS_DENIED_ERROR, ER.DBACCESS_DENIED_ERROR}


def connect(host: str, port: int, user: str, password: str, database: str | None = None,
            timeout: float = 10.0, transactional: bool = False, **kwargs) -> pymysql.connections.Connection:
    """A connection in autocommit mode, or with ``transactional`` one where nothing is
    committed before ``commit()`` (an ``autocommit`` keyword cannot turn that off)."""
    subject = f"MySQL {user}@{host}:{port}"
    autocommit = kwargs.pop("autocommit", True)
    try:
        conn = pymysql.connect(
            host=host, port=port, user=user, password=password, database=database,
            connect_timeout=timeout, read_timeout=kwargs.pop("read_timeout", 300),
            charset="utf8mb4", autocommit=autocommit and not transactional, **kwargs,
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
    return transactional_mode(conn) if transactional else conn


def transactional_mode(conn):
    """``conn`` with autocommit off, checked with the server: from here every statement waits
    for ``commit()``, and a connection that dies first leaves nothing behind (the server rolls
    back). Any connection object with pymysql's ``autocommit``/``get_autocommit`` methods."""
    try:
        conn.autocommit(False)
        on = conn.get_autocommit()
    except pymysql.err.MySQLError as e:
        raise classify(e)("MySQL connection", f"cannot turn autocommit off: {e.args[-1] if e.args else e}",
                          "re-run; if it persists, check that the server (vtgate) accepts SET AUTOCOMMIT.") from e
    if on:
        raise PermanentError("MySQL connection", "the server kept autocommit on after SET AUTOCOMMIT = 0.",
                             "load data only through a server that supports transactions (vtgate, MySQL, MariaDB).")
    return conn


def backslash_escapes(conn) -> bool:
    """Whether the server reads a backslash in a string literal as an escape (it does unless
    its sql_mode has NO_BACKSLASH_ESCAPES, which the server reports on every reply)."""
    from pymysql.constants import SERVER_STATUS
    return not (getattr(conn, "server_status", 0) & SERVER_STATUS.SERVER_STATUS_NO_BACKSLASH_ESCAPES)


_ESCAPES = str.maketrans({"\\": "\\\\", "'": "\\'", "\0": "\\0", "\n": "\\n", "\r": "\\r", "\x1a": "\\Z"})
_DOUBLED = str.maketrans({"'": "''"})


def string_literal_quoter(backslash_escapes: bool = True):
    """``quote(text) -> 'text'``, an SQL string literal as pymysql's escape_string writes one
    (backslash escapes), or with quotes doubled only, for a server in NO_BACKSLASH_ESCAPES mode.
    Only ASCII characters are changed, so it quotes a file's bytes viewed as latin-1 as well."""
    table = _ESCAPES if backslash_escapes else _DOUBLED
    return lambda text: "'" + text.translate(table) + "'"


_NEEDS_QUOTING = re.compile(r"[\\'\0\n\r\x1a]")


def needs_no_quoting_pattern():
    """``search(text)``: None when no character of ``text`` needs an escape in a string literal
    (in either mode)."""
    return _NEEDS_QUOTING.search


# decoders dropped, encoders kept: every value comes back as the server's text (bytes for binary
# columns), as the mysql client prints it; DECIMAL 1.50 stays "1.50", FLOAT 0.1 stays "0.1"
TEXT_CONVERSIONS = {k: v for k, v in pymysql.converters.conversions.items() if not isinstance(k, int)}


def run(conn, sql: str, args=None, where: str = "statement") -> tuple[list[str] | None, list[tuple]]:
    """Execute one statement: its column names (None when it returns no result set) and rows.
    A lost connection is transient; the server refusing the statement is permanent, named by ``where``."""
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            if cur.description is None:
                return None, []
            return [d[0] for d in cur.description], list(cur.fetchall())
    except pymysql.err.MySQLError as e:
        if classify(e) is TransientError:
            raise TransientError(where, f"the connection failed during the statement ({e.args[-1] if e.args else e}).",
                                 "re-run; vtflow's steps resume where they stopped.") from e
        raise PermanentError(where, f"the server refused it: {e.args[-1] if e.args else e}", "correct the statement.") from e


def use(conn, target: str, where: str = "use") -> None:
    """Switch the default database as the mysql client's ``use`` does (COM_INIT_DB): through
    vtgate the target may name a shard or tablet type, e.g. ``commerce/0`` or ``commerce@replica``."""
    try:
        conn.select_db(target)
    except pymysql.err.MySQLError as e:
        raise PermanentError(where, f"cannot use {target!r}: {e.args[-1] if e.args else e}",
                             "name an existing keyspace.") from e


# The connection broke or the server could not take the statement now: 2002/2003 cannot connect,
# 2006 gone away, 2013/2055 lost during a query, 1053 shutting down, 1927 connection killed (MariaDB).
_RETRYABLE_CODES = {2002, 2003, 2006, 2013, 2055, 1053, 1927} | _TRANSIENT_CODES


def classify(exc: BaseException) -> type[TransientError] | type[PermanentError]:
    """What a driver error means to a step that is retried: ``TransientError`` when the
    connection was lost or the server asked for a retry (a step that checkpoints resumes),
    ``PermanentError`` when the server refused the statement. For callers that must not import
    pymysql and wrap the error with their own subject."""
    if isinstance(exc, pymysql.err.InterfaceError):
        return TransientError  # the connection was closed under the driver
    if isinstance(exc, pymysql.err.MySQLError):
        code = exc.args[0] if exc.args else None
        return TransientError if code in _RETRYABLE_CODES else PermanentError
    return TransientError if isinstance(exc, (ConnectionError, TimeoutError)) else PermanentError
