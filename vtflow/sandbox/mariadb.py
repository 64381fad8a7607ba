"""A throwaway MariaDB standing in for vtgate's MySQL protocol (sandbox and tests).

It creates a data folder, builds the server's command line, and runs SQL over the server's own
Unix socket as the account of the user running it (the ``mariadb`` client, no password: the
socket vouches for the OS user; no root needed), to create or re-key the one user that vtflow
logs in with. Started either as a child of the test
session (``start``) or detached by the sandbox (``command`` + ``procs.spawn``). It must not
hold vtflow's SQL: that belongs to the steps, which reach the server through ``vtflow.mysql``.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from vtflow.errors import CommandError, ConfigError
from vtflow.sandbox.procs import require_tools, wait_port

TOOLS_FIX = "install them: apt-get install mariadb-server mariadb-client (or run `make test` as root)."
_NAME = re.compile(r"^[A-Za-z0-9_]{1,32}$")


def _me() -> str:
    return pwd.getpwuid(os.getuid()).pw_name


def has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def user_sql(user: str, password: str) -> str:
    """Create (or re-key) ``user`` with every privilege, as the upstream example's gateway user has."""
    if not _NAME.match(user):
        raise ConfigError(f"MySQL user {user!r}", "is not a plain name.", "use letters, digits and '_' only.")
    if not password or "'" in password or "\\" in password:
        raise ConfigError(f"MySQL user {user!r}", "needs a non-empty password without quotes or backslashes.",
                          "generate one with secrets.token_urlsafe().")
    return (f"CREATE USER IF NOT EXISTS '{user}'@'%' IDENTIFIED BY '{password}';"
            f"ALTER USER '{user}'@'%' IDENTIFIED BY '{password}';"
            f"GRANT ALL ON *.* TO '{user}'@'%' WITH GRANT OPTION; FLUSH PRIVILEGES;")


@dataclass
class MariaDB:
    root: Path
    port: int
    host: str = "127.0.0.1"
    user: str = "vtflow"
    password: str = ""
    proc: subprocess.Popen | None = None

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def socket(self) -> Path:
        return self.root / "mysqld.sock"

    @property
    def log(self) -> Path:
        return self.root / "error.log"

    def install(self) -> None:
        """Create the data folder and the system tables (once)."""
        require_tools("mariadbd", "mariadb-install-db", "mariadb", fix=TOOLS_FIX)
        if (self.data / "mysql").is_dir():
            return
        self.data.mkdir(parents=True, exist_ok=True)
        # root runs the server as the mysql system user, as Debian's does; anyone else runs it as themselves
        owner = "mysql" if os.getuid() == 0 and has_user("mysql") else _me()
        if owner != _me():
            shutil.chown(self.root, owner, owner)
            shutil.chown(self.data, owner, owner)
        r = subprocess.run(["mariadb-install-db", f"--datadir={self.data}", "--auth-root-authentication-method=socket",
                            "--skip-test-db", f"--user={owner}"], capture_output=True, text=True)
        if r.returncode != 0:
            raise CommandError(f"mariadb-install-db {self.data}", f"failed: {r.stderr.strip()[-500:]}",
                               "check that the folder is writable and the disk not full.")

    def command(self) -> list[str]:
        args = ["mariadbd", "--no-defaults", f"--datadir={self.data}", f"--socket={self.socket}", f"--port={self.port}",
                f"--bind-address={self.host}", f"--pid-file={self.root / 'mysqld.pid'}", "--skip-log-bin",
                "--innodb-buffer-pool-size=64M", "--innodb-log-file-size=16M", "--max-connections=200",
                "--innodb-flush-log-at-trx-commit=2", f"--log-error={self.log}"]
        if os.getuid() == 0:
            args.append("--user=mysql" if has_user("mysql") else "--user=root")
        return args

    def run_sql(self, sql: str, attempts: int = 50) -> None:
        """Run ``sql`` over the socket as the account of the user running this (mariadb-install-db
        makes root@localhost and one for the server's user, both authenticated by the socket, so
        the OS user is the password); retried while the server finishes starting."""
        for _ in range(attempts):
            r = subprocess.run(["mariadb", f"--socket={self.socket}", f"-u{_me()}", "-e", sql],
                               capture_output=True, text=True)
            if r.returncode == 0:
                return
            time.sleep(0.1)
        # the SQL may carry a password: report the server's answer only
        raise CommandError(f"MariaDB {self.host}:{self.port}", f"refused the setup SQL: {r.stderr.strip()[-300:]}",
                           f"read {self.log}.")

    def create_user(self) -> None:
        self.run_sql(user_sql(self.user, self.password))

    def start(self) -> "MariaDB":
        """Start as a child of this process (the test session) and create the user."""
        self.install()
        self.proc = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.host, self.port, 30, self.proc, "mariadbd", log=self.log)
        self.create_user()
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
