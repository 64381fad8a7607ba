"""What the simulated Vitess keeps outside Kubernetes objects: its "topology server".

Real Vitess keeps VSchemas, backups and tablet records in its lockserver and backup storage,
not in Kubernetes. ``VitessState`` holds the double's stand-ins for those (VSchemas, backup
records, primary term start times), the backend MariaDB that plays every tablet's mysqld,
and the knobs tests turn (replication lag per tablet, shards whose backups fail). It also
reads the tablets' view of the world from the vttablet pods and VitessShard objects, so the
vtctld handler and the vtgate proxy agree with the operator. It writes no Kubernetes object.
Thread-safe: the HTTP threads (exec), the proxy threads and the controller thread share it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from ..controllers.common import is_ready, is_terminal
from . import names


@dataclass(frozen=True)
class Backend:
    """The MariaDB that stands in for the tablets' mysqld (one database per keyspace)."""
    host: str
    port: int
    user: str = "root"
    password: str = ""

    @classmethod
    def parse(cls, hostport: str, user: str = "root", password: str = "") -> "Backend":
        host, _, port = hostport.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"mysql backend {hostport!r}: expected HOST:PORT, e.g. 127.0.0.1:3306")
        return cls(host, int(port), user, password)


@dataclass
class Tablet:
    alias: str
    cell: str
    uid: int
    keyspace: str
    shard: str
    pool_type: str          # replica | rdonly
    type: str               # PRIMARY | REPLICA | RDONLY
    hostname: str           # the pod IP, as the operator registers tablets by IP
    pod: str
    namespace: str
    cluster: str
    ready: bool
    primary_term_start: str = ""

    @property
    def serving(self) -> bool:
        return self.ready


@dataclass
class BackupRecord:
    name: str               # 2026-11-25.031500.zone1-0000000101
    keyspace: str
    shard: str
    tablet: str
    time: str               # RFC 3339
    engine: str
    size: int


@dataclass
class VitessState:
    backend: Backend | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    vschemas: dict[tuple[str, str, str], dict] = field(default_factory=dict)     # (ns, cluster, ks)
    backups: dict[tuple[str, str], list[BackupRecord]] = field(default_factory=dict)  # (ns, cluster)
    replication_lag: dict[str, int] = field(default_factory=dict)                # alias -> seconds
    failing_backups: set[tuple[str, str]] = field(default_factory=set)           # (keyspace, shard)
    primary_terms: dict[str, str] = field(default_factory=dict)                  # alias -> RFC 3339

    # -- knobs for tests ----------------------------------------------------------------------
    def set_replication_lag(self, tablet_alias: str, seconds: int) -> None:
        with self._lock:
            self.replication_lag[tablet_alias] = seconds

    def fail_backups_of(self, keyspace: str, shard: str, fail: bool = True) -> None:
        with self._lock:
            (self.failing_backups.add if fail else self.failing_backups.discard)((keyspace, shard))

    # -- vschema and backups ------------------------------------------------------------------
    def put_vschema(self, ns: str, cluster: str, ks: str, vschema: dict) -> None:
        with self._lock:
            self.vschemas[(ns, cluster, ks)] = vschema

    def get_vschema(self, ns: str, cluster: str, ks: str) -> dict | None:
        with self._lock:
            return self.vschemas.get((ns, cluster, ks))

    def add_backup(self, ns: str, cluster: str, record: BackupRecord) -> None:
        with self._lock:
            self.backups.setdefault((ns, cluster), []).append(record)

    def list_backups(self, ns: str, cluster: str, ks: str, shard: str) -> list[BackupRecord]:
        with self._lock:
            return [b for b in self.backups.get((ns, cluster), []) if b.keyspace == ks and b.shard == shard]

    def is_failing(self, ks: str, shard: str) -> bool:
        with self._lock:
            return (ks, shard) in self.failing_backups

    def lag_of(self, tablet_alias: str) -> int:
        with self._lock:
            return self.replication_lag.get(tablet_alias, 0)

    def set_primary_term(self, tablet_alias: str, when: str) -> None:
        with self._lock:
            self.primary_terms[tablet_alias] = when

    # -- the tablets as Vitess's topology would list them -------------------------------------
    def tablets(self, double, ns: str, cluster: str | None = None) -> list[Tablet]:
        selector = f"{names.COMPONENT}=vttablet" + (f",{names.CLUSTER}={cluster}" if cluster else "")
        primaries: dict[tuple[str, str, str], str] = {}
        for shard in double.list("planetscale.com/vitessshards", ns):
            labels = shard["metadata"].get("labels") or {}
            master = (shard.get("status") or {}).get("masterAlias")
            if master:
                primaries[(labels.get(names.CLUSTER, ""), labels.get(names.KEYSPACE, ""),
                           shard["spec"].get("name", ""))] = master
        out = []
        for pod in double.list("pods", ns, selector):
            if is_terminal(pod) or pod["metadata"].get("deletionTimestamp"):
                continue
            lb = pod["metadata"].get("labels") or {}
            cell, uid = lb.get(names.CELL, ""), int(lb.get(names.TABLET_UID, "0"))
            a = names.alias(cell, uid)
            ks, sh, cl = lb.get(names.KEYSPACE, ""), names.shard_from_safe(lb.get(names.SHARD, "")), lb.get(names.CLUSTER, "")
            pool = lb.get(names.TABLET_TYPE, "replica")
            is_primary = primaries.get((cl, ks, sh)) == a
            ttype = "PRIMARY" if is_primary else pool.upper()
            with self._lock:
                term = self.primary_terms.get(a, "") if is_primary else ""
            out.append(Tablet(a, cell, uid, ks, sh, pool, ttype, (pod.get("status") or {}).get("podIP", ""),
                              pod["metadata"]["name"], ns, cl, is_ready(pod), term))
        return sorted(out, key=lambda t: (t.keyspace, t.shard, t.alias))
