"""SSH to the cluster's nodes: the one module that imports paramiko.

It connects with the key held in the nodes block, verifies every host key against the
block's ``known_hosts`` (nothing is ever trusted on first use), runs commands and returns
their exit status and output. It turns paramiko and socket errors into vtflow errors that
name the node and the fix. It must not decide what to run on a node: that is ``tasks/``.
"""

from __future__ import annotations

import functools
import io
import select
import socket
import time
from dataclasses import dataclass

import paramiko

from vtflow.errors import AuthError, HostKeyError, TransientError, UnreachableError, ConfigError


@dataclass(frozen=True)
class Endpoint:
    """Where one node's sshd listens, and the name people know it by."""

    name: str
    address: str
    port: int = 22

    @property
    def label(self) -> str:
        return f"node {self.name} ({self.address}:{self.port})"

    @property
    def known_hosts_name(self) -> str:
        """The host field OpenSSH writes in known_hosts for this endpoint."""
        return self.address if self.port == 22 else f"[{self.address}]:{self.port}"


@dataclass(frozen=True)
class CommandResult:
    exit_status: int
    stdout: str
    stderr: str
    seconds: float
    started_at: float
    ended_at: float


_KEY_CLASSES = (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey)


@functools.lru_cache(maxsize=16)
def load_private_key(text: str, passphrase: str | None, source: str) -> paramiko.PKey:
    """Parse an OpenSSH/PEM private key. ``source`` names where it came from for errors.

    Cached: an encrypted OpenSSH key costs a bcrypt KDF per parse (tenths of a second), and a
    flow connects to every node with the same key."""
    last: Exception | None = None
    for cls in _KEY_CLASSES:
        try:
            return cls.from_private_key(io.StringIO(text), password=passphrase or None)
        except paramiko.PasswordRequiredException as e:
            raise ConfigError(
                source, "the private key is encrypted and no passphrase was given.",
                "set the passphrase field of the nodes block (vtflow block create nodes --passphrase-env VAR).",
            ) from e
        except (paramiko.SSHException, ValueError) as e:
            last = e
    raise ConfigError(
        source, "the private key could not be read as Ed25519, ECDSA or RSA.",
        "give an OpenSSH or PEM private key file (ssh-keygen -t ed25519 makes one).",
    ) from last


def parse_known_hosts(text: str, source: str) -> paramiko.HostKeys:
    """Read known_hosts lines (OpenSSH format). Bad lines are an error, not skipped."""
    keys = paramiko.HostKeys()
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            entry = paramiko.hostkeys.HostKeyEntry.from_line(line, lineno=number)
        except (paramiko.SSHException, ValueError) as e:
            entry = None
            cause: Exception | None = e
        else:
            cause = None
        if entry is None:
            raise ConfigError(
                f"{source} line {number}", "is not a known_hosts line (host keytype base64).",
                "copy the line from `ssh-keyscan -p PORT HOST` or from ~/.ssh/known_hosts.",
            ) from cause
        for host in entry.hostnames:
            keys.add(host, entry.key.get_name(), entry.key)
    return keys


def known_hosts_line(endpoint: Endpoint, key: paramiko.PKey) -> str:
    return f"{endpoint.known_hosts_name} {key.get_name()} {key.get_base64()}"


def fingerprint(key: paramiko.PKey) -> str:
    return key.fingerprint  # "SHA256:..." as ssh-keygen -l prints it


class _RefuseUnknown(paramiko.MissingHostKeyPolicy):
    def __init__(self, endpoint: Endpoint):
        self.endpoint = endpoint

    def missing_host_key(self, client, hostname, key):
        raise HostKeyError(
            self.endpoint.label,
            f"host key {fingerprint(key)} is not in the nodes block's known_hosts, so the "
            "connection was refused.",
            "check the fingerprint on the node (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub) "
            f"and, if it matches, add this line to the block's known_hosts: "
            f"{known_hosts_line(self.endpoint, key)}",
        )


class Session:
    """One authenticated SSH connection to one node."""

    def __init__(self, endpoint: Endpoint, client: paramiko.SSHClient):
        self.endpoint = endpoint
        self._client = client

    def run(self, command: str, stdin: str | None = None, timeout: float = 60.0) -> CommandResult:
        """Run ``command`` through the login shell; feed ``stdin``; wait at most ``timeout``."""
        transport = self._client.get_transport()
        if transport is None or not transport.is_active():
            raise UnreachableError(self.endpoint.label, "the SSH connection was lost.", "re-run the step.")
        started = time.time()
        try:
            chan = transport.open_session(timeout=timeout)
            chan.exec_command(command)
            if stdin is not None:
                chan.sendall(stdin.encode())
            chan.shutdown_write()
            out, err = bytearray(), bytearray()
            deadline = time.monotonic() + timeout
            while True:
                progressed = False
                if chan.recv_ready():
                    out += chan.recv(65536)
                    progressed = True
                if chan.recv_stderr_ready():
                    err += chan.recv_stderr(65536)
                    progressed = True
                if progressed:
                    continue
                # EOF comes after all data of both streams; exit status may come before it
                if chan.eof_received and chan.exit_status_ready():
                    break
                left = deadline - time.monotonic()
                if chan.eof_received and left > 0:
                    chan.status_event.wait(left)  # the select pipe does not fire for exit-status
                    continue
                if left <= 0:
                    chan.close()
                    raise TransientError(
                        self.endpoint.label, f"command did not finish within {timeout:.0f} s.",
                        "check the node's load, or raise the step's timeout.",
                    )
                select.select([chan], [], [], min(left, 0.5))
            status = chan.recv_exit_status()
            chan.close()
        except (paramiko.SSHException, OSError, EOFError) as e:
            raise UnreachableError(
                self.endpoint.label, f"the SSH channel failed ({type(e).__name__}: {e}).",
                "check that the node is up, then re-run.",
            ) from e
        ended = time.time()
        return CommandResult(
            status, out.decode(errors="replace"), err.decode(errors="replace"),
            ended - started, started, ended,
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def connect(
    endpoint: Endpoint,
    user: str,
    key: paramiko.PKey,
    known_hosts: paramiko.HostKeys,
    timeout: float = 10.0,
) -> Session:
    """Open an SSH session, verifying the host key against ``known_hosts``."""
    client = paramiko.SSHClient()
    for host, entries in known_hosts.items():
        for keytype, hostkey in entries.items():
            client.get_host_keys().add(host, keytype, hostkey)
    client.set_missing_host_key_policy(_RefuseUnknown(endpoint))
    try:
        sock = socket.create_connection((endpoint.address, endpoint.port), timeout=timeout)
        # SSH sends many small packets; Nagle plus delayed ACKs cost ~40 ms per channel open
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client.connect(
            endpoint.address, port=endpoint.port, username=user, pkey=key, sock=sock,
            timeout=timeout, banner_timeout=timeout, auth_timeout=timeout,
            allow_agent=False, look_for_keys=False,
        )
    except HostKeyError:
        client.close()
        raise
    except paramiko.BadHostKeyException as e:
        client.close()
        raise HostKeyError(
            endpoint.label,
            f"host key changed: the block trusts {fingerprint(e.expected_key)} but the node "
            f"presented {fingerprint(e.key)}. This can be a reinstalled node or someone in between.",
            "verify the node's key on its console; if it was reinstalled, replace its line in the "
            f"nodes block's known_hosts with: {known_hosts_line(endpoint, e.key)}",
        ) from e
    except paramiko.AuthenticationException as e:
        client.close()
        raise AuthError(
            endpoint.label, f"user {user!r} was refused with the nodes block's private key.",
            f"add the block's public key to ~{user}/.ssh/authorized_keys on the node, or set the "
            "block's user to the account that has it.",
        ) from e
    except (socket.timeout, TimeoutError) as e:
        client.close()
        raise UnreachableError(
            endpoint.label, f"no answer within {timeout:.0f} s.",
            "check that the node is up and that the address and port in the nodes block are right.",
        ) from e
    except (paramiko.ssh_exception.NoValidConnectionsError, OSError, paramiko.SSHException, EOFError) as e:
        client.close()
        raise UnreachableError(
            endpoint.label, f"cannot connect ({type(e).__name__}: {e}).",
            "check that sshd runs on the node and that the address and port in the nodes block are right.",
        ) from e
    return Session(endpoint, client)


def fetch_host_key(endpoint: Endpoint, timeout: float = 10.0) -> str:
    """Read the host key a node presents, as a known_hosts line (for an explicit opt-in scan)."""
    try:
        sock = socket.create_connection((endpoint.address, endpoint.port), timeout=timeout)
    except OSError as e:
        raise UnreachableError(endpoint.label, f"cannot connect ({e}).", "check the address and port.") from e
    transport = paramiko.Transport(sock)
    try:
        transport.start_client(timeout=timeout)
        return known_hosts_line(endpoint, transport.get_remote_server_key())
    except (paramiko.SSHException, EOFError) as e:
        raise UnreachableError(endpoint.label, f"SSH handshake failed ({e}).", "check that sshd runs there.") from e
    finally:
        transport.close()
