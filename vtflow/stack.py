"""The local stack behind ``make up``: a Prefect server, the block types, the served deployments.

``up()`` is a small supervisor: it starts the Prefect server as a child process (SQLite under
the state folder, or PostgreSQL when ``PREFECT_API_DATABASE_CONNECTION_URL`` is set), waits
until it answers, registers vtflow's block types, starts a second child that serves the
deployments and a third, the Harbor webhook receiver (``vtflow webhook serve``), prints the
addresses, and on Ctrl-C (or SIGTERM) stops the children: the receiver, then serve (so that it
can pause its deployments), then the server. It must not hold flow logic.
"""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from vtflow.errors import ConfigError, TransientError

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def state_dir() -> Path:
    """Where vtflow keeps the Prefect database, logs and the sandbox (``VTFLOW_STATE_DIR``)."""
    return Path(os.environ.get("VTFLOW_STATE_DIR") or Path.cwd() / ".vtflow").resolve()


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        # as uvicorn binds: connections left in TIME_WAIT by a previous run do not block it
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _port_from_env(var: str, default: int) -> int:
    try:
        return int(os.environ.get(var) or default)
    except ValueError as e:
        raise ConfigError(var, f"{os.environ[var]!r} is not a port number.", f"set it to e.g. {default}.") from e


@dataclass
class StackSettings:
    host: str
    port: int
    home: Path
    auth_string: str | None
    database_url: str | None
    # the Harbor webhook receiver; port 0 leaves it out of `make up`
    webhook_host: str = "127.0.0.1"
    webhook_port: int = 8088

    @classmethod
    def from_env(cls) -> "StackSettings":
        host = os.environ.get("VTFLOW_HOST", "127.0.0.1")
        return cls(
            host=host,
            port=_port_from_env("VTFLOW_PORT", 4200),
            home=state_dir() / "prefect",
            auth_string=os.environ.get("PREFECT_SERVER_API_AUTH_STRING") or None,
            database_url=os.environ.get("PREFECT_API_DATABASE_CONNECTION_URL") or None,
            # Harbor must reach the receiver, not necessarily the Prefect API (which hands block
            # secrets to whoever reaches it): VTFLOW_WEBHOOK_HOST can expose the receiver alone
            webhook_host=os.environ.get("VTFLOW_WEBHOOK_HOST") or host,
            webhook_port=_port_from_env("VTFLOW_WEBHOOK_PORT", 8088),
        )

    @property
    def webhook_url(self) -> str:
        host = "127.0.0.1" if self.webhook_host in ("0.0.0.0", "::") else self.webhook_host
        return f"http://{host}:{self.webhook_port}/harbor"

    @property
    def client_host(self) -> str:
        return "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host

    @property
    def api_url(self) -> str:
        return f"http://{self.client_host}:{self.port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://{self.client_host}:{self.port}"

    def child_env(self) -> dict[str, str]:
        """Environment for the server and for every Prefect client vtflow starts."""
        env = dict(os.environ)
        env["PREFECT_HOME"] = str(self.home)
        env["PREFECT_API_URL"] = self.api_url
        env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        env.setdefault("DO_NOT_TRACK", "1")
        if self.auth_string:
            # clients must send what the server requires
            env.setdefault("PREFECT_API_AUTH_STRING", self.auth_string)
        return env


def wait_healthy(api_url: str, auth_string: str | None, timeout: float, proc: subprocess.Popen | None = None,
                 log: Path | None = None) -> None:
    """Poll ``/health`` until the server answers 200."""
    request = urllib.request.Request(f"{api_url}/health")
    if auth_string:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth_string.encode()).decode())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text()[-2000:] if log and log.exists() else ""
            raise TransientError("Prefect server", f"exited with status {proc.returncode} while starting.\n{tail}",
                                 f"read {log} for the cause.")
        try:
            with urllib.request.urlopen(request, timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise TransientError("Prefect server", f"did not answer at {api_url} within {timeout:.0f} s.",
                         f"read {log} for the cause." if log else "check the server's log.")


class PrefectServer:
    """A ``prefect server start`` child process."""

    def __init__(self, settings: StackSettings):
        self.settings = settings
        self.proc: subprocess.Popen | None = None
        self.log = settings.home / "server.log"

    def start(self, timeout: float = 90.0) -> "PrefectServer":
        s = self.settings
        if not port_is_free(s.host, s.port):
            raise ConfigError(f"{s.host}:{s.port}", "is already in use.",
                              "stop what listens there, or choose another port with VTFLOW_PORT=PORT.")
        s.home.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "prefect", "server", "start", "--host", s.host, "--port", str(s.port),
                 "--analytics-off"],
                env=s.child_env(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        try:
            wait_healthy(s.api_url, s.auth_string, timeout, self.proc, self.log)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 15.0) -> None:
        stop_process(self.proc, timeout)
        self.proc = None


def stop_process(proc: subprocess.Popen | None, timeout: float = 15.0, sig: int = signal.SIGTERM) -> None:
    """Stop a child started with ``start_new_session`` and everything in its process group."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def register_blocks() -> list[str]:
    """Register vtflow's block types and schemas with the server in ``PREFECT_API_URL``."""
    from blocks import ALL_BLOCKS

    for block in ALL_BLOCKS:
        block.register_type_and_schema()
    return [b.get_block_type_slug() for b in ALL_BLOCKS]


def serve_deployments() -> None:
    """Serve every deployment in ``deployments/`` (blocks until interrupted)."""
    from prefect import serve

    from deployments import all_deployments

    serve(*all_deployments(), print_starting_message=False)


def security_warning(s: StackSettings) -> str | None:
    if s.host not in LOOPBACK and not s.auth_string:
        return (f"WARNING: the Prefect API listens on {s.host} without PREFECT_SERVER_API_AUTH_STRING. Anyone who "
                "reaches it can read every block's secrets (kubeconfig, SSH key, passwords) with "
                "include_secrets=true. Set PREFECT_SERVER_API_AUTH_STRING=user:password.")
    return None


def up(out=print) -> int:
    """Run the stack until interrupted. Returns the exit status."""
    s = StackSettings.from_env()
    if warning := security_warning(s):
        out(warning)
    server = PrefectServer(s)
    serve_proc: subprocess.Popen | None = None
    webhook_proc: subprocess.Popen | None = None
    stopping = False

    def _stop(signum, frame):
        nonlocal stopping
        stopping = True
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        if s.webhook_port and not port_is_free(s.webhook_host, s.webhook_port):
            raise ConfigError(f"{s.webhook_host}:{s.webhook_port}", "is already in use (the Harbor webhook receiver's port).",
                              "stop what listens there, or choose another port with VTFLOW_WEBHOOK_PORT=PORT "
                              "(0 leaves the receiver out).")
        db = "PostgreSQL/other (PREFECT_API_DATABASE_CONNECTION_URL)" if s.database_url else f"SQLite in {s.home}"
        out(f"Starting the Prefect server on {s.host}:{s.port} ({db}) ...")
        server.start()
        env = s.child_env()
        subprocess.run([sys.executable, "-m", "vtflow.stack", "register"], env=env, check=True)
        serve_log = s.home / "serve.log"
        with open(serve_log, "ab") as log:
            serve_proc = subprocess.Popen([sys.executable, "-m", "vtflow.stack", "serve"], env=env,
                                          stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          start_new_session=True)
        webhook_log = s.home / "webhook.log"
        if s.webhook_port:
            # it starts without a Harbor webhook block too: it answers 503 until one exists
            with open(webhook_log, "ab") as log:
                webhook_proc = subprocess.Popen(
                    [sys.executable, "-m", "vtflow.cli", "webhook", "serve", "--host", s.webhook_host,
                     "--port", str(s.webhook_port)], env=env, stdout=log, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, start_new_session=True)
        out(f"vtflow is up. Prefect UI: {s.ui_url}  (API {s.api_url})")
        if webhook_proc is not None:
            out(f"Harbor webhook receiver: {s.webhook_url} (log: {webhook_log})")
        out(f"Blocks registered; deployments served (log: {serve_log}). Press Ctrl-C to stop.")
        while True:
            if server.proc.poll() is not None:
                out(f"The Prefect server stopped (status {server.proc.returncode}); see {server.log}.")
                return 1
            if serve_proc.poll() is not None:
                out(f"Serving the deployments stopped (status {serve_proc.returncode}); see {serve_log}.")
                return 1
            if webhook_proc is not None and webhook_proc.poll() is not None:
                out(f"The Harbor webhook receiver stopped (status {webhook_proc.returncode}); see {webhook_log}.")
                return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        return 0
    finally:
        out("Stopping ...")
        stop_process(webhook_proc, timeout=10)
        # serve first, with SIGINT: it pauses its deployments on the way out
        stop_process(serve_proc, timeout=20, sig=signal.SIGINT)
        server.stop()
        signal.signal(signal.SIGTERM, previous)
        out("Stopped.")


if __name__ == "__main__":  # the children `up` starts
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "register":
        print("registered block types:", ", ".join(register_blocks()))
    elif command == "serve":
        serve_deployments()
    else:
        sys.exit("usage: python -m vtflow.stack register|serve")
