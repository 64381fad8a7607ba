"""The local stack behind ``make up``: a Prefect server, the block types, the served deployments.

``up()`` is a small supervisor: it starts the Prefect server as a child process (SQLite under
the state folder, or PostgreSQL when ``PREFECT_API_DATABASE_CONNECTION_URL`` is set), waits
until it answers, registers vtflow's block types and the zombie-run automation, starts a second
child that serves the deployments and a third, the Harbor webhook receiver (``vtflow webhook
serve``), prints the addresses, restarts any child that dies (with a capped backoff and one line
each time), and on Ctrl-C (or SIGTERM) stops the children: the receiver, then serve (so that it
can pause its deployments), then the server.

It also owns the API's auth string: ``PREFECT_SERVER_API_AUTH_STRING`` when the user sets it,
else one generated on the first ``up`` into ``<state dir>/api-auth-string`` (mode 0600).
``client_settings()`` is the one place every vtflow client finds it. The value travels only in
children's environments and that file: never on a command line, never in a log. This module
must not hold flow logic.
"""

from __future__ import annotations

import base64
import os
import secrets
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from vtflow.errors import ConfigError, TransientError

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
AUTH_FILE = "api-auth-string"
# a child that dies is started again after 1, 2, 4 ... s, at most this long; a child that ran
# this long before it died starts again at once (the cause was not its start)
RESTART_BACKOFF_CAP_S = 60.0


def state_dir() -> Path:
    """Where vtflow keeps the Prefect database, logs and the sandbox (``VTFLOW_STATE_DIR``)."""
    return Path(os.environ.get("VTFLOW_STATE_DIR") or Path.cwd() / ".vtflow").resolve()


def auth_file() -> Path:
    return state_dir() / AUTH_FILE


def read_auth_file() -> str | None:
    """The generated auth string, or None before the first ``up``. Refuses a file others can read."""
    path = auth_file()
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"auth string file {path}", "can be read by other users, who could then read every "
                          "block's secrets.", f"chmod 600 {path} (or delete it: the next `make up` makes a new one).")
    try:
        value = path.read_text().strip()
    except OSError as e:
        raise ConfigError(f"auth string file {path}", f"cannot be read ({e.strerror}).",
                          "run as the user who ran `make up`, or set PREFECT_API_AUTH_STRING.") from e
    return value or None


def ensure_auth_file() -> tuple[str, bool]:
    """The generated auth string, made on first use (readable by the owner only); True when made now."""
    if existing := read_auth_file():
        return existing, False
    path = auth_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = "vtflow:" + secrets.token_urlsafe(24)
    # O_EXCL with the mode at creation: there is no moment where the file is readable by others
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # an empty file, or another `up` made it just now
        if existing := read_auth_file():
            return existing, False
        path.unlink()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return value, True


def _heartbeat_from_env() -> int:
    from deployments.zombies import MIN_HEARTBEAT_S, PREFECT_DEFAULT_HEARTBEAT_S

    for var in ("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", "PREFECT_RUNNER_HEARTBEAT_FREQUENCY"):
        if raw := os.environ.get(var):
            try:
                value = int(raw)
            except ValueError as e:
                raise ConfigError(var, f"{raw!r} is not a whole number of seconds.", "set it to e.g. 30.") from e
            if value < MIN_HEARTBEAT_S:
                raise ConfigError(var, f"is {value}; Prefect requires at least {MIN_HEARTBEAT_S} s.",
                                  f"set it to {MIN_HEARTBEAT_S} or more.")
            return value
    return PREFECT_DEFAULT_HEARTBEAT_S


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
    # seconds between flow-run heartbeats; the zombie automation allows three missed
    heartbeat_s: int = 180

    @classmethod
    def from_env(cls) -> "StackSettings":
        host = os.environ.get("VTFLOW_HOST", "127.0.0.1")
        return cls(
            host=host,
            port=_port_from_env("VTFLOW_PORT", 4200),
            home=state_dir() / "prefect",
            # the user's own wins; else the one the first `up` generated (None before it)
            auth_string=os.environ.get("PREFECT_SERVER_API_AUTH_STRING") or read_auth_file(),
            database_url=os.environ.get("PREFECT_API_DATABASE_CONNECTION_URL") or None,
            # Harbor must reach the receiver, not necessarily the Prefect API (which hands block
            # secrets to whoever reaches it): VTFLOW_WEBHOOK_HOST can expose the receiver alone
            webhook_host=os.environ.get("VTFLOW_WEBHOOK_HOST") or host,
            webhook_port=_port_from_env("VTFLOW_WEBHOOK_PORT", 8088),
            heartbeat_s=_heartbeat_from_env(),
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
            # the server requires it, and its clients (all of them talk to this server) send it
            env["PREFECT_SERVER_API_AUTH_STRING"] = self.auth_string
            env["PREFECT_API_AUTH_STRING"] = self.auth_string
        # the UI is served from the API's own origin: no other site's page gets a CORS answer
        env.setdefault("PREFECT_SERVER_API_CORS_ALLOWED_ORIGINS", self.ui_url)
        # the zombie automation's window is three of these: every run vtflow starts beats this often
        env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] = str(self.heartbeat_s)
        return env


def client_settings() -> dict:
    """Prefect settings a vtflow client needs to reach ``make up``'s server: its address when no
    ``PREFECT_API_URL`` is set (environment or profile), and its auth string when the address is
    that server's and no ``PREFECT_API_AUTH_STRING`` is set. Another server never gets it."""
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, get_current_settings

    current = get_current_settings()
    stack = StackSettings.from_env()
    updates: dict = {}
    url = current.api.url
    if not url:
        url = updates[PREFECT_API_URL] = stack.api_url
    if url.rstrip("/") == stack.api_url and not current.api.auth_string and stack.auth_string:
        updates[PREFECT_API_AUTH_STRING] = stack.auth_string
    return updates


def heartbeat_settings() -> dict:
    """For a client that runs flows in-process (``vtflow deploy``, ...): beat as often as the
    server's zombie automation expects (``make up`` may have been started with another
    ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` than this shell has), so a slow run is never crashed alive.
    Call it with the client settings in place."""
    from prefect import get_client
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, get_current_settings

    from deployments.zombies import MISSED_HEARTBEATS, NAME

    try:
        with get_client(sync_client=True) as client:
            found = client.read_automations_by_name(NAME)
    except Exception:  # noqa: BLE001 - no server or no automation: Prefect's own setting stands
        return {}
    if not found or not found[0].enabled:
        return {}
    expected = int(found[0].trigger.within.total_seconds() // MISSED_HEARTBEATS)
    current = get_current_settings().flows.heartbeat_frequency
    return {PREFECT_FLOWS_HEARTBEAT_FREQUENCY: expected} if current is None or current > expected else {}


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


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Child:
    """One supervised child: started in a session of its own (so that its whole process group
    can be stopped), its output appended to its log, started again when it dies."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path,
                 stop_signal: int = signal.SIGTERM, stop_timeout: float = 15.0):
        self.name, self.argv, self.env, self.log = name, argv, env, log
        self.stop_signal, self.stop_timeout = stop_signal, stop_timeout
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0
        self.failures = 0
        self.restart_at: float | None = None

    def spawn(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            # SIGINT back to its default in the child: a `make up &` from a script starts with SIGINT
            # ignored, which children inherit, and serve, which stops on SIGINT (pausing its
            # deployments), would then sit out its stop timeout and be killed
            self.proc = subprocess.Popen(self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True,
                                         preexec_fn=_default_sigint)
        self.started_at = time.monotonic()
        self.restart_at = None

    def supervise(self, out) -> None:
        """Called in the supervisor's loop: notice a death, start again when the backoff is over."""
        now = time.monotonic()
        if self.proc is not None and self.proc.poll() is not None:
            code = self.proc.returncode
            self.proc = None
            self.failures = 0 if now - self.started_at >= RESTART_BACKOFF_CAP_S else self.failures + 1
            delay = min(2.0 ** (self.failures - 1), RESTART_BACKOFF_CAP_S) if self.failures else 0.0
            self.restart_at = now + delay
            out(f"{self.name} exited with status {code}; starting it again in {delay:.0f} s (log: {self.log}).")
        if self.proc is None and self.restart_at is not None and now >= self.restart_at:
            self.spawn()

    def stop(self) -> bool:
        """Stop it; True when it had to be killed (it did not stop within its timeout)."""
        killed = stop_process(self.proc, self.stop_timeout, self.stop_signal)
        self.proc = None
        return killed


class PrefectServer(Child):
    """A ``prefect server start`` child process."""

    def __init__(self, settings: StackSettings):
        self.settings = settings
        s = settings
        super().__init__("The Prefect server",
                         [sys.executable, "-m", "prefect", "server", "start", "--host", s.host, "--port", str(s.port),
                          "--analytics-off"], s.child_env(), settings.home / "server.log")

    def start(self, timeout: float = 90.0) -> "PrefectServer":
        s = self.settings
        if not port_is_free(s.host, s.port):
            raise ConfigError(f"{s.host}:{s.port}", "is already in use.",
                              "stop what listens there, or choose another port with VTFLOW_PORT=PORT.")
        self.spawn()
        try:
            wait_healthy(s.api_url, s.auth_string, timeout, self.proc, self.log)
        except BaseException:
            self.stop()
            raise
        return self


def stop_process(proc: subprocess.Popen | None, timeout: float = 15.0, sig: int = signal.SIGTERM) -> bool:
    """Stop a child started with ``start_new_session`` and everything in its process group;
    True when it did not stop within ``timeout`` and was killed."""
    if proc is None or proc.poll() is not None:
        return False
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        return False
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
        return True
    return False


def register_blocks() -> list[str]:
    """Register vtflow's block types and schemas with the server in ``PREFECT_API_URL``."""
    from blocks import ALL_BLOCKS

    for block in ALL_BLOCKS:
        block.register_type_and_schema()
    return [b.get_block_type_slug() for b in ALL_BLOCKS]


def ensure_automation(automation) -> bool:
    """Create ``automation`` on the server in ``PREFECT_API_URL``, or update the one of its name
    when it differs; True when it changed."""
    from prefect import get_client
    from prefect.events.schemas.automations import AutomationCore

    # owner_resource left unset: Prefect 3.9's update endpoint refuses the field (extra_forbidden),
    # and its client sends only the fields that were set
    desired = AutomationCore(**automation.model_dump(exclude={"id", "owner_resource"}))
    fields = ("description", "enabled", "trigger", "actions", "actions_on_trigger", "actions_on_resolve")
    with get_client(sync_client=True) as client:
        found = client.read_automations_by_name(desired.name)
        if not found:
            client.create_automation(desired)
            return True
        current = found[0]
        # compared as models, not as JSON: the trigger's sets (expect, after) dump in each
        # process's hash order, so equal automations could dump as different lists
        if all(getattr(current, f) == getattr(desired, f) for f in fields):
            return False
        client.update_automation(current.id, desired)
        return True


def serve_deployments() -> None:
    """Serve every deployment in ``deployments/`` (blocks until interrupted)."""
    # Prefect's runner keeps its runs' files in <tmp>/runner_storage, which the first user of a
    # machine to serve owns: anyone else's serve then dies on it. Temporary files go under the
    # state folder instead (this process and the flow runs it starts).
    tmp = state_dir() / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    os.environ["TMPDIR"] = str(tmp)
    tempfile.tempdir = None  # read TMPDIR again

    from prefect import serve

    from vtflow.schedules import served_deployments

    # the scheduled ones keep the block names and schedule state the server has (vtflow.schedules),
    # and are served paused while a block they name is missing
    deployments, plans = served_deployments()
    for plan in plans:
        print(plan.line() or f"{plan.name}: schedule active, blocks {plan.blocks}", flush=True)
    serve(*deployments, print_starting_message=False)


def security_warning(s: StackSettings) -> str | None:
    if s.host not in LOOPBACK and not s.auth_string:
        return (f"WARNING: the Prefect API listens on {s.host} without PREFECT_SERVER_API_AUTH_STRING. Anyone who "
                "reaches it can read every block's secrets (kubeconfig, SSH key, passwords) with "
                "include_secrets=true. Set PREFECT_SERVER_API_AUTH_STRING=user:password.")
    return None


def up(out=print) -> int:
    """Run the stack until interrupted. Returns the exit status."""
    s = StackSettings.from_env()
    if not s.auth_string:
        s.auth_string, made = ensure_auth_file()
        if made:
            # the one time it is shown: the UI asks for it; vtflow's commands read the file
            out(f"Generated the Prefect API's auth string: {s.auth_string}\n"
                f"  kept in {auth_file()} (readable only by you); the UI asks for it once, vtflow's commands "
                "read it from there. Set PREFECT_SERVER_API_AUTH_STRING to use your own.")
    if warning := security_warning(s):
        out(warning)
    server = PrefectServer(s)
    children: list[Child] = []

    def _stop(signum, frame):
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
        children.append(server)
        env = s.child_env()
        subprocess.run([sys.executable, "-m", "vtflow.stack", "register"], env=env, check=True)
        # serve stops with SIGINT: it pauses its deployments on the way out
        serve = Child("Serving the deployments", [sys.executable, "-m", "vtflow.stack", "serve"], env,
                      s.home / "serve.log", stop_signal=signal.SIGINT, stop_timeout=20)
        serve.spawn()
        children.append(serve)
        if s.webhook_port:
            # it starts without a Harbor webhook block too: it answers 503 until one exists
            receiver = Child("The Harbor webhook receiver",
                             [sys.executable, "-m", "vtflow.cli", "webhook", "serve", "--host", s.webhook_host,
                              "--port", str(s.webhook_port)], env, s.home / "webhook.log", stop_timeout=10)
            receiver.spawn()
            children.append(receiver)
        out(f"vtflow is up. Prefect UI: {s.ui_url}  (API {s.api_url})")
        if s.webhook_port:
            out(f"Harbor webhook receiver: {s.webhook_url} (log: {receiver.log})")
        out(f"Blocks registered; deployments served (log: {serve.log}). Press Ctrl-C to stop.")
        out("Next: in another terminal, `.venv/bin/vtflow sandbox up` (a simulated cluster), then "
            "`.venv/bin/vtflow deploy --target sandbox` (the README's deploy).")
        # only the user stops the stack: a child that dies is started again
        while True:
            for child in children:
                child.supervise(out)
            time.sleep(0.5)
    except KeyboardInterrupt:
        return 0
    finally:
        out("Stopping ...")
        # a second Ctrl-C or SIGTERM must not cut the clean stop short (each stop has its timeout)
        previous_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        # the receiver, then serve, then the server: each one's clients go before it
        for child in reversed(children):
            if child.stop():
                out(f"{child.name} did not stop within {child.stop_timeout:.0f} s; killed it (log: {child.log}).")
        server.stop()
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
        out("Stopped.")


def register() -> None:
    """``make up``'s set-up step, on the server in ``PREFECT_API_URL``: block types, zombie
    automation; and the lines about scheduled deployments served paused (vtflow.schedules)."""
    from prefect.settings import get_current_settings

    from deployments.zombies import MIN_HEARTBEAT_S, PREFECT_DEFAULT_HEARTBEAT_S, crash_zombies

    print("registered block types:", ", ".join(register_blocks()))
    heartbeat = get_current_settings().flows.heartbeat_frequency or PREFECT_DEFAULT_HEARTBEAT_S
    automation = crash_zombies(max(heartbeat, MIN_HEARTBEAT_S))
    changed = ensure_automation(automation)
    print(f"automation {automation.name!r}: {'saved' if changed else 'unchanged'}")
    from vtflow.schedules import serve_lines

    # said once per start, one line per scheduled deployment whose schedule is served paused
    for line in serve_lines():
        print(line)


if __name__ == "__main__":  # the children `up` starts
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "register":
        register()
    elif command == "serve":
        serve_deployments()
    else:
        sys.exit("usage: python -m vtflow.stack register|serve")
