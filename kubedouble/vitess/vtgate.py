"""A stand-in for vtgate: a MySQL-protocol proxy from the vtgate Services to a real MariaDB.

``VtgateListeners`` (a Controller) opens one TCP listener per Service that selects vtgate
pods (``planetscale.com/component=vtgate``) and exposes a MySQL port (3306 or named
"mysql"): on ``<host>:<nodePort>`` for NodePort/LoadBalancer Services (host 127.0.0.1 by
default), on an ephemeral port otherwise (``address(ns, name)`` tells tests where). Each
connection goes to the backend MariaDB: the greeting (with TLS and compression switched
off, see mysqlwire.edit_greeting) and the client's authentication pass through, so users
are MariaDB's. The proxy answers only what vtgate adds: ``SHOW VITESS_TABLETS``,
``SHOW VITESS_REPLICATION_STATUS``, refusing ``LOAD DATA`` (vtgate does not take it), and it
rewrites vtgate targets (``USE commerce/0``, ``customer:-80``, ``commerce@primary``, COM_INIT_DB
and the handshake database) to a database: a target naming a shard (``K/S``, ``K:S``) to that
shard's database (state.py ``shard_database``: ``USE customer/-`` still reaches the old shard after
a Reshard), a keyspace alone to the keyspace's database (for a sharded keyspace, its ``UNION ALL``
views: reads see every serving shard; writes fail with MySQL's error, stricter than vtgate). A
Service with no Ready endpoints closes new connections at once, as a down vtgate behind
kube-proxy does. It never writes objects.
"""

from __future__ import annotations

import logging
import re
import select
import socket
import threading

from ..controllers import Controller
from ..controllers.common import has_ready_endpoints, reset
from . import mysqlwire as w
from .state import VitessState

log = logging.getLogger("kubedouble.vtgate")

TABLET_COLUMNS = [("Cell", False), ("Keyspace", False), ("Shard", False), ("TabletType", False), ("State", False),
                  ("Alias", False), ("Hostname", False), ("PrimaryTermStartTime", False)]
REPLICATION_COLUMNS = [("Keyspace", False), ("Shard", False), ("TabletType", False), ("Alias", False),
                       ("Hostname", False), ("ReplicationSource", False), ("ReplicationHealth", False),
                       ("ReplicationLag", True), ("ThrottlerStatus", False)]
_SHOW = re.compile(r"^\s*show\s+vitess_(tablets|replication_status)\b(?:\s+like\s+'([^']*)')?\s*;?\s*$", re.I)
_USE = re.compile(r"^\s*use\s+`?([^`\s;]+)`?\s*;?\s*$", re.I)
_LOAD = re.compile(r"^\s*load\s+data\b", re.I)


def keyspace_of(target: str) -> str:
    """'commerce/0', 'commerce:-80', 'commerce@primary', 'commerce/-@replica' -> 'commerce'."""
    return re.split(r"[/:@]", target, maxsplit=1)[0]


def shard_of(target: str) -> str | None:
    """'customer/-80', 'customer:-80@replica' -> '-80'; 'customer', 'customer@primary' -> None."""
    m = re.match(r"^[^/:@]*[/:]([^@]*)", target)
    return m.group(1) if m else None


class _Conn:
    """One client connection: handshake pass-through, then command inspection."""

    def __init__(self, client: socket.socket, backend: tuple[str, int], svc: tuple[str, str], owner: "VtgateListeners"):
        self.client, self.backend_addr, self.svc, self.owner = client, backend, svc, owner
        self.server: socket.socket | None = None
        self.deprecate_eof = False
        self.query_attrs = False
        self.wlock = threading.Lock()

    def run(self) -> None:
        try:
            self.server = socket.create_connection(self.backend_addr, timeout=10)
            self.server.settimeout(None)
            for s in (self.server, self.client):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._handshake()
            pump = threading.Thread(target=self._pump_server, daemon=True, name="vtgate-server-pump")
            pump.start()
            self._client_loop()
        except (OSError, ConnectionError, ValueError, IndexError) as e:
            log.debug("vtgate connection ended: %s", e)
        finally:
            # shutdown first: close() alone leaves the backend session open while the pump thread
            # is blocked in recv() on it, and a real vtgate ends (rolls back) a client's session
            # when the client goes
            for s in (self.client, self.server):
                for end in (lambda: s.shutdown(socket.SHUT_RDWR), s.close) if s else ():
                    try:
                        end()
                    except OSError:
                        pass

    # -- framing -------------------------------------------------------------------------------
    @staticmethod
    def _recv_exact(s: socket.socket, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = s.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("peer closed")
            buf += chunk
        return buf

    def _read(self, s: socket.socket) -> tuple[int, bytes]:
        head = self._recv_exact(s, 4)
        n = int.from_bytes(head[:3], "little")
        return head[3], self._recv_exact(s, n)

    def _to_client(self, data: bytes) -> None:
        with self.wlock:
            self.client.sendall(data)

    # -- phases --------------------------------------------------------------------------------
    def _handshake(self) -> None:
        seq, greeting = self._read(self.server)
        if greeting[:1] == b"\xff":           # the backend refused us (too many connections, ...)
            self._to_client(w.packet(seq, greeting))
            raise ConnectionError("backend refused the connection")
        self._to_client(w.packet(seq, w.edit_greeting(greeting)))
        seq, resp = self._read(self.client)
        info = w.parse_handshake_response(resp)
        self.deprecate_eof = bool(info["caps"] & w.CLIENT_DEPRECATE_EOF)
        self.query_attrs = bool(info["caps"] & w.CLIENT_QUERY_ATTRIBUTES)
        if info.get("db"):
            resp = w.replace_db(resp, info["db_span"], self.owner.database(self.svc, info["db"]))
        self.server.sendall(w.packet(seq, resp))
        # authentication: relay both ways until the server says OK or ERR
        while True:
            r, _, _ = select.select([self.server, self.client], [], [], 30)
            if not r:
                raise ConnectionError("authentication timed out")
            if self.client in r:
                seq, p = self._read(self.client)
                self.server.sendall(w.packet(seq, p))
            if self.server in r:
                seq, p = self._read(self.server)
                self._to_client(w.packet(seq, p))
                if p[:1] in (b"\x00", b"\xff"):
                    if p[:1] == b"\xff":
                        raise ConnectionError("authentication failed")
                    return

    def _pump_server(self) -> None:
        try:
            while True:
                data = self.server.recv(65536)
                if not data:
                    break
                self._to_client(data)
        except OSError:
            pass
        finally:
            try:
                self.client.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _client_loop(self) -> None:
        while True:
            seq, p = self._read(self.client)
            if seq == 0 and p:
                reply, p = self._inspect(p)
                if reply is not None:
                    self._to_client(reply)
                    continue
                if p[0] == w.COM_QUIT:
                    self.server.sendall(w.packet(seq, p))
                    return
            self.server.sendall(w.packet(seq, p))

    def _inspect(self, p: bytes) -> tuple[bytes | None, bytes]:
        """(our own reply or None, the packet to forward)."""
        cmd = p[0]
        if cmd == w.COM_INIT_DB:
            return None, bytes([cmd]) + self.owner.database(self.svc, p[1:].decode(errors="replace")).encode()
        if cmd != w.COM_QUERY:
            return None, p
        body = p[1:]
        prefix = b""
        if self.query_attrs:           # parameter count and set count precede the query text
            _, pos = w.read_lenenc_int(body, 0)
            _, pos = w.read_lenenc_int(body, pos)
            prefix, body = body[:pos], body[pos:]
        sql = body.decode(errors="replace")
        m = _SHOW.match(sql)
        if m:
            return self.owner.show(m.group(1).lower(), m.group(2), self.svc, self.deprecate_eof), p
        m = _USE.match(sql)
        if m and self.owner.database(self.svc, m.group(1)) != m.group(1):
            return None, bytes([cmd]) + prefix + f"USE `{self.owner.database(self.svc, m.group(1))}`".encode()
        if _LOAD.match(sql):
            # exact text of vtgate's refusal is not known here
            return w.err_packet(1235, "42000", "VT12001: unsupported: LOAD DATA"), p
        return None, p


class VtgateListeners(Controller):
    """Keeps one listener per MySQL-carrying vtgate Service, for as long as the Service exists."""
    name = "vtgate-proxy"
    watches = ("services",)

    def __init__(self, double, state: VitessState, host: str = "127.0.0.1"):
        self.double, self.state, self.host = double, state, host
        self._lock = threading.Lock()
        self._listeners: dict[tuple[str, str], tuple[socket.socket, int, int]] = {}   # -> (sock, port, node port)

    # -- controller side -----------------------------------------------------------------------
    def reconcile(self, double, svc: dict) -> None:
        key = (svc["metadata"]["namespace"], svc["metadata"]["name"])
        spec = svc.get("spec") or {}
        if (spec.get("selector") or {}).get("planetscale.com/component") != "vtgate":
            return
        port = next((p for p in spec.get("ports") or [] if p.get("name") == "mysql" or p.get("targetPort") in (3306, "mysql")
                     or p.get("port") == 3306), None)
        if port is None:
            return self.deleted(double, svc)
        node_port = port.get("nodePort") if spec.get("type") in ("NodePort", "LoadBalancer") else 0
        with self._lock:
            cur = self._listeners.get(key)
            if cur and cur[2] == (node_port or 0):
                return
        self.deleted(double, svc)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, node_port or 0))
        except OSError as e:
            sock.close()
            double.record_event(svc, "Warning", "NodePortUnavailable",
                                f"kubedouble: cannot listen on {self.host}:{node_port} for the vtgate proxy: {e}",
                                "kubedouble-vtgate")
            return
        sock.listen(64)
        with self._lock:
            self._listeners[key] = (sock, sock.getsockname()[1], node_port or 0)
        threading.Thread(target=self._accept, args=(sock, key), daemon=True, name=f"vtgate-{key[1]}").start()

    def deleted(self, double, svc: dict) -> None:
        key = (svc["metadata"]["namespace"], svc["metadata"]["name"])
        with self._lock:
            cur = self._listeners.pop(key, None)
        if cur:
            _close_listener(cur[0])

    def close(self) -> None:
        with self._lock:
            items = list(self._listeners.values())
            self._listeners.clear()
        for sock, _, _ in items:
            _close_listener(sock)

    # -- for tests and the sandbox -------------------------------------------------------------
    def address(self, namespace: str, service: str) -> tuple[str, int] | None:
        with self._lock:
            cur = self._listeners.get((namespace, service))
        return (self.host, cur[1]) if cur else None

    # -- proxy side ----------------------------------------------------------------------------
    def _accept(self, sock: socket.socket, key: tuple[str, str]) -> None:
        while True:
            try:
                client, _ = sock.accept()
            except OSError:
                return
            if self.state.backend is None or not has_ready_endpoints(self.double, *key):
                # no vtgate behind the Service: reset, as kube-proxy rejects it
                reset(client)
                continue
            conn = _Conn(client, (self.state.backend.host, self.state.backend.port), key, self)
            threading.Thread(target=conn.run, daemon=True, name="vtgate-conn").start()

    def _cluster(self, svc: tuple[str, str]) -> str | None:
        obj = self.double.get("services", svc[0], svc[1]) or {}
        return ((obj.get("spec") or {}).get("selector") or {}).get("planetscale.com/cluster")

    def database(self, svc: tuple[str, str], target: str) -> str:
        """The backend database a vtgate target means (see the module docstring)."""
        ks, shard = keyspace_of(target), shard_of(target)
        if shard is None:
            return ks
        return self.state.shard_database(svc[0], self._cluster(svc) or "", ks, shard)

    def show(self, what: str, like: str | None, svc: tuple[str, str], deprecate_eof: bool) -> bytes:
        ns, name = svc
        cluster = self._cluster(svc)
        tablets = self.state.tablets(self.double, ns, cluster)
        if what == "tablets":
            rows = [[t.cell, t.keyspace, t.shard, t.type, "SERVING" if t.serving else "NOT_SERVING", t.alias,
                     t.hostname, t.primary_term_start] for t in tablets]
            if like:
                pat = re.compile("^" + re.escape(like).replace("%", ".*").replace("_", ".") + "$")
                rows = [r for r in rows if pat.match(r[5])]
            return w.result_set(TABLET_COLUMNS, rows, deprecate_eof)
        rows = []
        for t in tablets:
            if t.type == "PRIMARY":
                continue
            primary = next((p for p in tablets if p.keyspace == t.keyspace and p.shard == t.shard and p.type == "PRIMARY"), None)
            healthy = t.serving and primary is not None
            health = ('{"EventStreamRunning":"Yes","EventApplierRunning":"Yes","LastError":""}' if healthy else
                      '{"EventStreamRunning":"No","EventApplierRunning":"No","LastError":"replication is not running"}')
            rows.append([t.keyspace, t.shard, t.type, t.alias, t.hostname,
                         f"{primary.hostname}:3306" if primary else "", health, self.state.lag_of(t.alias),
                         "OK" if healthy else "NOT_OK"])
        return w.result_set(REPLICATION_COLUMNS, rows, deprecate_eof)


def _close_listener(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
