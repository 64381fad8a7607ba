"""SSH to the cluster's nodes: the one module that imports paramiko.

It connects with the key held in the nodes block, verifies every host key against the
block's ``known_hosts`` before logging in (nothing is ever trusted on first use; a key marked
``@revoked`` is refused; ``@cert-authority`` lines trust nothing), runs commands and returns
their exit status and output. It turns paramiko and socket errors into vtflow errors that
name the node and the fix. It must not decide what to run on a node: that is ``tasks/``.
"""

from __future__ import annotations

import base64
import binascii
import functools
import io
import re
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


@dataclass(frozen=True)
class HostKeyLine:
    """One key line of a known_hosts file: the host patterns it is for, its key, its marker."""

    patterns: tuple[str, ...]
    key: paramiko.PKey
    marker: str | None   # None, "@revoked" or "@cert-authority"
    number: int

    def matches(self, host: str) -> bool:
        """OpenSSH's rule: some pattern matches and no negated (``!``) one does; ``|1|`` entries
        are HMAC-SHA1 hashes of the name; names compare case-insensitively."""
        host = host.lower()
        matched = False
        for pattern in self.patterns:
            negated = pattern.startswith("!")
            pattern = pattern[1:] if negated else pattern
            if pattern.startswith("|1|"):
                hit = pattern == paramiko.HostKeys.hash_host(host, pattern)
            else:
                hit = _glob(pattern.lower()).match(host) is not None
            if hit and negated:
                return False
            matched = matched or hit
        return matched


@functools.lru_cache(maxsize=256)
def _glob(pattern: str) -> re.Pattern:
    # OpenSSH patterns know only * and ?; brackets are literal ([host]:port), unlike fnmatch's
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern) + r"\Z")


class KnownHosts:
    """A parsed known_hosts text: trusted keys, ``@revoked`` keys and ``@cert-authority`` lines.

    vtflow verifies plain host keys only. ``@cert-authority`` lines are kept so that errors can
    say a host is covered by one, but they trust nothing here: vtflow does not verify host
    certificates (paramiko cannot), and skipping them rather than refusing the file keeps a
    personal ~/.ssh/known_hosts usable. A ``@revoked`` key is refused for the hosts its line
    names even when another line trusts it, as OpenSSH does.
    """

    def __init__(self, lines: list[HostKeyLine], source: str):
        self.lines = lines
        self.source = source

    def revoked(self, host: str, key: paramiko.PKey) -> HostKeyLine | None:
        for line in self.lines:
            if line.marker == "@revoked" and line.matches(host) and line.key.asbytes() == key.asbytes():
                return line
        return None

    def trusted(self, host: str) -> list[paramiko.PKey]:
        """Keys trusted for ``host``, revoked ones left out."""
        keys = [line.key for line in self.lines if line.marker is None and line.matches(host)]
        return [k for k in keys if not self.revoked(host, k)]

    def authority_for(self, host: str) -> HostKeyLine | None:
        return next((line for line in self.lines if line.marker == "@cert-authority" and line.matches(host)), None)

    def lines_for(self, host: str) -> list[str]:
        """The known_hosts lines a nodes block keeps for ``host``: its trusted keys, then the
        revocations that apply to it (so that a later trusted copy of a revoked key stays refused)."""
        out = [f"{host} {k.get_name()} {k.get_base64()}" for k in self.trusted(host)]
        out += [f"@revoked {host} {line.key.get_name()} {line.key.get_base64()}"
                for line in self.lines if line.marker == "@revoked" and line.matches(host)]
        return list(dict.fromkeys(out))


_MARKERS = ("@revoked", "@cert-authority")


def _is_hashed(name: str) -> bool:
    parts = name.split("|")
    if len(parts) != 4 or parts[:2] != ["", "1"]:
        return False
    try:
        return len(base64.b64decode(parts[2], validate=True)) == 20 and len(base64.b64decode(parts[3], validate=True)) == 20
    except (binascii.Error, ValueError):
        return False


def parse_known_hosts(text: str, source: str) -> KnownHosts:
    """Read known_hosts lines (sshd(8) "SSH_KNOWN_HOSTS FILE FORMAT": ``[marker] hosts keytype
    base64 [comment]``). A malformed line is an error naming its number, never skipped; a key
    type paramiko does not know is skipped (it could never be negotiated, so it can match no
    connection). paramiko's own reader is not used: it reads a marker as the host field and
    then fails on the key ("Incorrect padding"), and it knows no host patterns."""
    lines: list[HostKeyLine] = []
    fix = "copy the line from `ssh-keyscan -p PORT HOST` or from ~/.ssh/known_hosts."
    for number, raw in enumerate(text.splitlines(), start=1):
        fields = raw.split()
        if not fields or fields[0].startswith("#"):
            continue
        where = f"{source} line {number}"
        marker = None
        if fields[0].startswith("@"):
            marker = fields.pop(0)
            if marker not in _MARKERS:
                raise ConfigError(where, f"has an unknown marker {marker!r} (known: {', '.join(_MARKERS)}).",
                                  "remove the marker or correct it.")
        if len(fields) < 3:
            raise ConfigError(where, "is not a known_hosts line ([marker] host keytype base64).", fix)
        hosts, keytype, blob = fields[:3]
        try:
            data = base64.b64decode(blob, validate=True)
        except (binascii.Error, ValueError) as e:
            raise ConfigError(where, f"has a {keytype} key that is not base64.", fix) from e
        try:
            key = paramiko.PKey.from_type_string(keytype, data)
        except paramiko.pkey.UnknownKeyType:
            continue
        except (paramiko.SSHException, ValueError, TypeError, IndexError) as e:
            raise ConfigError(where, f"has a key that is not a valid {keytype} key.", fix) from e
        patterns = tuple(h for h in hosts.split(",") if h)
        if not patterns:
            raise ConfigError(where, "names no host.", fix)
        if any(h.lstrip("!").startswith("|") and not _is_hashed(h.lstrip("!")) for h in patterns):
            raise ConfigError(where, "has a hashed host name that is not |1|SALT|HASH.", fix)
        lines.append(HostKeyLine(patterns, key, marker, number))
    return KnownHosts(lines, source)


def known_hosts_line(endpoint: Endpoint, key: paramiko.PKey) -> str:
    return f"{endpoint.known_hosts_name} {key.get_name()} {key.get_base64()}"


def fingerprint(key: paramiko.PKey) -> str:
    return key.fingerprint  # "SHA256:..." as ssh-keygen -l prints it


def _revoked_error(endpoint: Endpoint, key: paramiko.PKey, line: HostKeyLine, known: KnownHosts) -> HostKeyError:
    return HostKeyError(
        endpoint.label,
        f"host key {fingerprint(key)} is revoked ({known.source} line {line.number} marks it @revoked), so the "
        "connection was refused before logging in.",
        "give the node a new host key (ssh-keygen -A after removing the old one) and trust that key instead; "
        "never remove the @revoked line to get in.",
    )


class _Verify(paramiko.MissingHostKeyPolicy):
    """Called by paramiko, before authentication, when the host has no trusted key of the type
    it presented (revoked keys are never in paramiko's table, so they always arrive here)."""

    def __init__(self, endpoint: Endpoint, known: KnownHosts):
        self.endpoint = endpoint
        self.known = known

    def missing_host_key(self, client, hostname, key):
        revoked = self.known.revoked(self.endpoint.known_hosts_name, key)
        if revoked:
            raise _revoked_error(self.endpoint, key, revoked, self.known)
        authority = self.known.authority_for(self.endpoint.known_hosts_name)
        note = (f" ({self.known.source} line {authority.number} is a @cert-authority line for this host, but vtflow "
                "does not verify host certificates: it needs the host's own key.)") if authority else ""
        raise HostKeyError(
            self.endpoint.label,
            f"host key {fingerprint(key)} is not in the nodes block's known_hosts, so the "
            f"connection was refused.{note}",
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
    known_hosts: KnownHosts,
    timeout: float = 10.0,
) -> Session:
    """Open an SSH session, verifying the host key against ``known_hosts`` before logging in."""
    client = paramiko.SSHClient()
    # paramiko's table holds this endpoint's trusted, unrevoked keys only; everything else
    # (a revoked key, an unknown one) reaches _Verify before authentication
    for hostkey in known_hosts.trusted(endpoint.known_hosts_name):
        client.get_host_keys().add(endpoint.known_hosts_name, hostkey.get_name(), hostkey)
    client.set_missing_host_key_policy(_Verify(endpoint, known_hosts))
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
        revoked = known_hosts.revoked(endpoint.known_hosts_name, e.key)
        if revoked:
            raise _revoked_error(endpoint, e.key, revoked, known_hosts) from e
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
