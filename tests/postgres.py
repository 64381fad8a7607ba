"""A throwaway PostgreSQL for the test that runs the Prefect server on it (the production path)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from helpers import wait_until


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError("test bed: PostgreSQL is not installed; run `make test` as root (it installs postgresql)")
    return found[-1]


class PostgreSQL:
    def __init__(self, port: int, password: str = "prefect-pg-test-pw"):
        self.port = port
        self.password = password
        self.root = Path(tempfile.mkdtemp(prefix="vtflow-pg-"))
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://prefect:{self.password}@127.0.0.1:{self.port}/prefect"

    def _as_postgres(self, *args: str, **kw) -> subprocess.CompletedProcess:
        # initdb and postgres refuse to run as root
        return subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True, capture_output=True, text=True, **kw)

    def start(self) -> "PostgreSQL":
        pw = pwd.getpwnam("postgres")
        os.chown(self.root, pw.pw_uid, pw.pw_gid)
        data = self.root / "data"
        self._as_postgres(_bin("initdb"), "-D", str(data), "-A", "trust", "-U", "postgres")
        self.proc = subprocess.Popen(["runuser", "-u", "postgres", "--", _bin("postgres"), "-D", str(data),
                                      "-p", str(self.port), "-h", "127.0.0.1", "-k", str(self.root)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def accepting() -> bool:
            assert self.proc.poll() is None, f"postgres exited with {self.proc.returncode} before accepting connections"
            return subprocess.run([_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                                  capture_output=True).returncode == 0
        wait_until(accepting, 30, f"PostgreSQL on 127.0.0.1:{self.port} to accept connections", interval=0.1)
        self.sql(f"CREATE USER prefect PASSWORD '{self.password}'")
        self.sql("CREATE DATABASE prefect OWNER prefect")
        return self

    def sql(self, statement: str, database: str = "postgres") -> str:
        return self._as_postgres(_bin("psql"), "-h", str(self.root), "-p", str(self.port), "-d", database,
                                 "-tA", "-c", statement).stdout.strip()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)
        shutil.rmtree(self.root, ignore_errors=True)
