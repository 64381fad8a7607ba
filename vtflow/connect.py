"""The way into a deployed cluster from the operator's machine: vtgate's MySQL port (found as the
flows find it, tasks/gateway.py), the mysql client with the credentials block's password, and
vtadmin's URL.

The password never reaches a command line (every user sees argv in ``ps``): the client reads it
from a temporary option file (mode 0600, removed when the client exits); without a client, a
minimal prompt talks through vtflow.mysql. This module must not print or log the password.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass

from vtflow.errors import ConfigError, PermanentError, VtflowError


@dataclass(frozen=True)
class Connection:
    host: str
    port: int
    user: str
    credentials_block: str
    how: str

    def lines(self, target_block: str) -> list[str]:
        """How to connect, for a person: never the password, only where it is."""
        return [f"connect: vtflow mysql --target {target_block}"
                + (f" --mysql {self.credentials_block}" if self.credentials_block != target_block else ""),
                f"  vtgate {self.host}:{self.port} ({self.how}), user {self.user}, "
                f"password in the MySQL credentials block {self.credentials_block!r}"]


def gateway_of(target):
    """vtgate's address for a target block, as the flows find it."""
    from tasks import gateway

    if target.vtgate_address:
        return gateway.choose([], target.cluster_name, target.node_address, target.vtgate_address)
    from vtflow import kube

    k = kube.Kube(target.api_client(), attempts=2, backoff_s=0.2)
    return gateway.discover(k, target.namespace, target.cluster_name, target.node_address, None)


def connection(target, credentials, credentials_block: str) -> Connection:
    gw = gateway_of(target)
    return Connection(gw.host, gw.port, credentials.user, credentials_block, gw.how)


def vtadmin_url(target) -> str:
    """vtadmin's web UI: the target's node_address and the web NodePort of the Service the deploy creates."""
    from vtflow import kube, names

    name = names.vtadmin_node_port_name(target.cluster_name)
    if not target.node_address:
        raise ConfigError("Vitess target block", f"has no node_address, needed to reach vtadmin through Service {name}.",
                          "set node_address to a node's address (vtflow block create target --node-address IP).")
    k = kube.Kube(target.api_client(), attempts=2, backoff_s=0.2)
    svc = k.get("v1", "Service", name, target.namespace)
    ports = [p for p in ((svc or {}).get("spec") or {}).get("ports") or [] if p.get("name") == "web" and p.get("nodePort")]
    if not ports:
        raise PermanentError(f"Service {target.namespace}/{name}", "does not exist or has no web NodePort.",
                             "deploy the cluster with vtadmin on (vtflow deploy --target ...).")
    return f"http://{target.node_address}:{ports[0]['nodePort']}"


def client_binary() -> str | None:
    return shutil.which("mariadb") or shutil.which("mysql")


def _option_value(text: str) -> str:
    # an option file value in double quotes: backslash and quote escaped, as the client unescapes them
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@contextmanager
def defaults_file(password: str):
    """A [client] option file holding the password, readable by this user only, removed afterwards."""
    fd, path = tempfile.mkstemp(prefix="vtflow-mysql-", suffix=".cnf")  # mkstemp creates it 0600
    try:
        with os.fdopen(fd, "w") as f:
            f.write(f"[client]\npassword={_option_value(password)}\n")
        yield path
    finally:
        os.unlink(path)


def client_argv(binary: str, defaults: str, conn: Connection, execute: str | None, database: str | None) -> list[str]:
    """The client's command line: no password on it (it is in ``defaults``, which must come first)."""
    argv = [binary, f"--defaults-extra-file={defaults}", "--protocol=TCP", "-h", conn.host, "-P", str(conn.port),
            "-u", conn.user]
    if database:
        argv += ["-D", database]
    if execute is not None:
        argv += ["-e", execute]
    return argv


def run_client(conn: Connection, password: str, execute: str | None, database: str | None,
               binary: str | None) -> int:
    with defaults_file(password) as path:
        return subprocess.call(client_argv(binary, path, conn, execute, database))


def _batch_value(v) -> str:
    # as `mysql -B` prints a value: NULL, and tab, newline, backslash and NUL escaped
    if v is None:
        return "NULL"
    if isinstance(v, (bytes, bytearray)):
        v = bytes(v).decode("utf-8", "replace")
    return str(v).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\0", "\\0")


def print_result(cols, rows, out=sys.stdout) -> None:
    if cols is None:
        return
    print("\t".join(cols), file=out)
    for row in rows:
        print("\t".join(_batch_value(v) for v in row), file=out)


def run_prompt(conn: Connection, credentials, execute: str | None, database: str | None) -> int:
    """The minimal prompt when no client is installed: ``-e`` runs one statement; otherwise one
    statement per line (a trailing ``;`` optional), ``exit`` or end of input leaves."""
    from vtflow import mysql

    db = credentials.connect(conn.host, conn.port, database=database, conv=mysql.TEXT_CONVERSIONS)
    try:
        if execute is not None:
            print_result(*mysql.run(db, execute, where="-e"))
            return 0
        interactive = sys.stdin.isatty()
        if interactive:
            print(f"no mysql client installed: vtflow's minimal prompt on {conn.host}:{conn.port} (exit to leave)")
        while True:
            try:
                line = input("mysql> " if interactive else "").strip().rstrip(";").strip()
            except EOFError:
                return 0
            if line.lower() in ("exit", "quit", "\\q"):
                return 0
            if not line:
                continue
            try:
                print_result(*mysql.run(db, line, where="statement"))
            except VtflowError as e:
                print(f"error: {e}", file=sys.stderr)
    finally:
        db.close()
