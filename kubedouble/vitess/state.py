"""What the simulated Vitess keeps outside Kubernetes objects: its "topology server".

Real Vitess keeps VSchemas, backups and tablet records in its lockserver and backup storage,
not in Kubernetes. ``VitessState`` holds the double's stand-ins for those (VSchemas, backup
records, primary term start times), the backend MariaDB that plays every tablet's mysqld,
and the knobs tests turn (replication lag per tablet, shards whose backups fail, slow
backups, backdated backups), and what the registry knows of images pushed by digest
(``register_image``: the tag each was pushed as). It also reads the tablets' view of the world from the vttablet
pods and VitessShard objects, so the vtctld handler and the vtgate proxy agree with the
operator. It writes no Kubernetes object itself; the one test hook that needs one
(``add_backup``, which also creates the VitessBackup) goes through operator.record_backup.
Thread-safe: the HTTP threads (exec), the proxy threads and the controller thread share it.

Backups and restores (vitess mysqlctl/backup.go, vttablet/tabletmanager/restore.go, as
VITESS-WORKFLOWS.md section 3 reads them):
- BackupShard copies the shard's database into a database of the backup's own
  (``snapshot_backup``): the backup's copy. Backups recorded without one (the operator's
  initial backup, ``add_backup``) restore as an empty database.
- A vttablet whose data volume starts for the first time (``tablet_started``, called by the
  simulated vttablet process) in a cluster with a backup location restores the shard's newest
  backup into a database of its own, and its /debug/vars then say ``RestoredBackupTime`` (the
  backup's time, RFC 3339) and ``RestorePosition``. A restart on the same volume keeps its data
  (nothing restored again), as vttablet does when mysqld already has data. Tablets that started
  before the shard had any backup run on the shard's database (the one the primary writes).
- Until ``catchup_delay_s`` after its restore a restored tablet holds the backup's copy only;
  after it, it has replicated every change the primary made since (its database follows the
  primary's), except rows changed only in the backup's copy (``change_backup_row``, the
  fault) that the primary has not written since: those keep the backup's value, as row-based
  replication leaves a row no event touches.
Per-shard data (``shard_database``): a shard's data is a MariaDB database of its own. The
full-range shard (``-`` or ``0``) is the keyspace's database, named after the keyspace, so an
unsharded keyspace is one database as before; any other shard ``S`` of keyspace ``K`` is the
database ``K@S`` (e.g. ``customer@-80``; always quoted). When a Reshard switches a keyspace's
writes off its full-range shard, that shard's tables move to ``K@-`` (``K@0``) and the keyspace's
database holds, per table, a view ``UNION ALL`` over the serving shards' tables
(``refresh_keyspace_views``): what keyspace-level access (``USE K``) reads. A write through such
a view fails with MySQL's own error (ER_NON_INSERTABLE_TABLE, 1471): stricter than vtgate, which
routes the row by its vindex. ``serving_shards`` says which shards serve a keyspace: the full-range
shard while it has tablets, else every shard with tablets, unless a Reshard's switch set them.
Backups, restores, ExecuteFetchAsDBA, GetSchema and vtgate's ``USE K/S`` all read a tablet's
shard's database.
SIMPLIFIED: with no backup at all a new tablet starts empty (the real one waits, polling every
``wait_for_backup_interval``); no binlog retention (catch-up never fails).
"""

from __future__ import annotations

import hashlib
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterator

from ..controllers.common import is_ready, is_terminal
from . import names


@dataclass(frozen=True)
class Backend:
    """The MariaDB that stands in for the tablets' mysqld (one database per shard, see shard_database)."""
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
    name: str               # 2026-11-25.031500.zone1-0000000101 (the start time, UTC, as vttablet names it)
    keyspace: str
    shard: str
    tablet: str
    time: str               # RFC 3339, the time in the name
    engine: str
    size: int


@dataclass(frozen=True)
class Restored:
    """What one tablet's data volume restored (keyed by the volume in ``VitessState``)."""
    alias: str
    keyspace: str
    shard: str
    backup: str             # the backup's name
    time: str               # its time, RFC 3339 (vttablet's RestoredBackupTime)
    database: str           # the MariaDB database that is this tablet's data
    backup_db: str | None   # the backup's copy it came from (None: the backup had none: empty)
    position: str
    at: float               # time.monotonic() of the restore
    ns: str = ""
    cluster: str = ""


@dataclass(frozen=True)
class RowChange:
    """A row changed only in a backup's copy (the fault): the row as the backup took it."""
    backup_db: str
    table: str
    where: str
    assignments: str
    before: tuple


@dataclass(frozen=True)
class BackupRun:
    """One BackupShard call while it ran (``time.monotonic()`` seconds), for concurrency checks."""
    keyspace: str
    shard: str
    start: float
    end: float | None = None   # None while it runs


@dataclass
class VitessState:
    backend: Backend | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    vschemas: dict[tuple[str, str, str], dict] = field(default_factory=dict)     # (ns, cluster, ks)
    backups: dict[tuple[str, str], list[BackupRecord]] = field(default_factory=dict)  # (ns, cluster)
    replication_lag: dict[str, int] = field(default_factory=dict)                # alias -> seconds
    failing_backups: set[tuple[str, str]] = field(default_factory=set)           # (keyspace, shard)
    primary_terms: dict[str, str] = field(default_factory=dict)                  # alias -> RFC 3339
    backup_delay_s: float = 0.0                                                  # see slow_backups
    image_tags: dict[str, str] = field(default_factory=dict)                     # see register_image
    catchup_delay_s: float = 0.3                                                 # see the module docstring
    backup_copies: dict[tuple[str, str, str, str, str], str] = field(default_factory=dict)  # (ns, cluster, ks, shard, name) -> db
    restores: dict[str, Restored] = field(default_factory=dict)                  # volume key -> what it restored
    _volumes: set[str] = field(default_factory=set, repr=False)                  # volume keys a vttablet started on
    row_changes: list[RowChange] = field(default_factory=list)
    _running: dict[tuple[str, str], int] = field(default_factory=dict, repr=False)       # (ns, cluster)
    _max_running: dict[tuple[str, str], int] = field(default_factory=dict, repr=False)   # (ns, cluster)
    _runs: dict[tuple[str, str], list[BackupRun]] = field(default_factory=dict, repr=False)
    shard_dbs: dict[tuple[str, str, str, str], str] = field(default_factory=dict)  # (ns, cluster, ks, shard) -> db
    serving: dict[tuple[str, str, str], list[str]] = field(default_factory=dict)   # (ns, cluster, ks) -> shards
    _double: Any = field(default=None, repr=False)   # set by attach(); add_backup needs it
    _vreplication: Any = field(default=None, repr=False)   # see the vreplication property

    @property
    def vreplication(self):
        """The workflows (MoveTables, Reshard) and their data plane, vreplication.VReplication; its fault
        knobs (fail_stream, set_lag, time_out_switch, pause_copy, change_target_row) are for tests."""
        with self._lock:
            if self._vreplication is None:
                from .vreplication import VReplication
                self._vreplication = VReplication(self._connect, self)
            return self._vreplication

    def attach(self, double) -> None:
        """Give the state its double (the vtctld handler does this), for hooks that create objects."""
        self._double = double

    # -- knobs for tests ----------------------------------------------------------------------
    def register_image(self, by_digest: str, tagged: str) -> None:
        """What a registry knows: ``harbor.lan/vitess/vitess-operator@sha256:...`` was pushed as
        ``harbor.lan/vitess/vitess-operator:v2.10.4``. The simulated processes then run the
        release (operator) or Vitess version (components) of the tag."""
        if "@" not in by_digest:
            raise ValueError(f"register_image: {by_digest!r} is not an image by digest (name@sha256:...)")
        with self._lock:
            self.image_tags[by_digest] = tagged

    def resolve_image(self, image: str) -> str:
        """The tagged reference of ``image`` when it was registered, else ``image``."""
        with self._lock:
            return self.image_tags.get(image, image)

    def set_replication_lag(self, tablet_alias: str, seconds: int) -> None:
        with self._lock:
            self.replication_lag[tablet_alias] = seconds

    def fail_backups_of(self, keyspace: str, shard: str, fail: bool = True) -> None:
        with self._lock:
            (self.failing_backups.add if fail else self.failing_backups.discard)((keyspace, shard))

    def slow_backups(self, seconds: float) -> None:
        """Make every BackupShard take ``seconds`` (0: instant again). The vtctld exec handler runs
        in a worker thread (asgi.py: ``asyncio.to_thread``), so the sleep blocks only that exec:
        other API calls, and other execs up to the loop's default thread pool size, go on."""
        if seconds < 0:
            raise ValueError("slow_backups: seconds must be >= 0")
        with self._lock:
            self.backup_delay_s = float(seconds)

    def add_backup(self, ns: str, cluster: str, ks: str, shard: str, when: datetime,
                   tablet_alias: str | None = None, size: int = 0) -> BackupRecord:
        """A completed backup taken at ``when`` (naive = UTC; whole seconds, as backup names have),
        with the VitessBackup object the operator would keep for it. The tablet defaults to the one
        BackupShard would pick (a serving replica, else any tablet of the shard). Raises ValueError
        for an unknown cluster, a shard without tablets (pass ``tablet_alias``), or a name that exists."""
        from .operator import record_backup   # operator imports this module
        double = self._double
        if double is None:
            raise ValueError("add_backup: this VitessState is not attached to a double")
        vc = double.get("planetscale.com/vitessclusters", ns, cluster)
        if vc is None:
            raise ValueError(f"add_backup: no VitessCluster {ns}/{cluster}")
        if tablet_alias is None:
            tablets = [t for t in self.tablets(double, ns, cluster) if t.keyspace == ks and t.shard == shard]
            if not tablets:
                raise ValueError(f"add_backup: shard {ks}/{shard} has no tablets; pass tablet_alias")
            tablet_alias = sorted(tablets, key=lambda t: (not t.serving, t.type == "PRIMARY", t.alias))[0].alias
        engine = ((vc.get("spec") or {}).get("backup") or {}).get("engine", "builtin")
        return record_backup(double, self, vc, ks, shard, tablet_alias, engine, size, when=when, exact=True)

    # -- backup concurrency (what BackupShard reports; tests read it) -------------------------
    @contextmanager
    def backup_running(self, ns: str, cluster: str, ks: str, shard: str) -> Iterator[None]:
        """Count a BackupShard as running for the ``with`` block (vtctld.py wraps each call)."""
        key = (ns, cluster)
        run = BackupRun(ks, shard, time.monotonic())
        with self._lock:
            self._running[key] = self._running.get(key, 0) + 1
            self._max_running[key] = max(self._max_running.get(key, 0), self._running[key])
            self._runs.setdefault(key, []).append(run)
        try:
            yield
        finally:
            with self._lock:
                self._running[key] -= 1
                runs = self._runs.get(key, [])   # a reset may have replaced the list
                for i, r in enumerate(runs):
                    if r is run:
                        runs[i] = BackupRun(ks, shard, run.start, time.monotonic())

    def running_backups(self, ns: str, cluster: str) -> int:
        """BackupShard calls running now in this cluster."""
        with self._lock:
            return self._running.get((ns, cluster), 0)

    def max_concurrent_backups(self, ns: str, cluster: str) -> int:
        """The most BackupShard calls that ever ran at once in this cluster (since the last reset)."""
        with self._lock:
            return self._max_running.get((ns, cluster), 0)

    def backup_runs(self, ns: str, cluster: str) -> list[BackupRun]:
        """Every BackupShard call in this cluster since the last reset, in start order."""
        with self._lock:
            return list(self._runs.get((ns, cluster), []))

    def reset_backup_runs(self, ns: str, cluster: str) -> None:
        """Forget the high-water mark and the recorded runs (running ones still count down)."""
        with self._lock:
            self._max_running[(ns, cluster)] = self._running.get((ns, cluster), 0)
            self._runs[(ns, cluster)] = [r for r in self._runs.get((ns, cluster), []) if r.end is None]

    # -- vschema and backups ------------------------------------------------------------------
    def put_vschema(self, ns: str, cluster: str, ks: str, vschema: dict) -> None:
        with self._lock:
            self.vschemas[(ns, cluster, ks)] = vschema

    def get_vschema(self, ns: str, cluster: str, ks: str) -> dict | None:
        with self._lock:
            return self.vschemas.get((ns, cluster, ks))

    def store_backup(self, ns: str, cluster: str, record: BackupRecord) -> None:
        """Keep a backup record (operator.record_backup calls this; tests use add_backup)."""
        with self._lock:
            self.backups.setdefault((ns, cluster), []).append(record)

    def remove_backup(self, ns: str, cluster: str, ks: str, shard: str, name: str) -> BackupRecord | None:
        """Drop a backup record; the removed one, or None when there was none of that name."""
        with self._lock:
            items = self.backups.get((ns, cluster), [])
            for i, b in enumerate(items):
                if (b.keyspace, b.shard, b.name) == (ks, shard, name):
                    return items.pop(i)
        return None

    def list_backups(self, ns: str, cluster: str, ks: str, shard: str) -> list[BackupRecord]:
        """The shard's backups sorted by name, oldest first, as backup storage lists them."""
        with self._lock:
            return sorted((b for b in self.backups.get((ns, cluster), []) if b.keyspace == ks and b.shard == shard),
                          key=lambda b: b.name)

    def is_failing(self, ks: str, shard: str) -> bool:
        with self._lock:
            return (ks, shard) in self.failing_backups

    def lag_of(self, tablet_alias: str) -> int:
        with self._lock:
            return self.replication_lag.get(tablet_alias, 0)

    def set_primary_term(self, tablet_alias: str, when: str) -> None:
        with self._lock:
            self.primary_terms[tablet_alias] = when

    # -- backup copies and restores (see the module docstring) ---------------------------------
    def set_catchup_delay(self, seconds: float) -> None:
        """How long a restored tablet holds only the backup's copy before it has caught up."""
        if seconds < 0:
            raise ValueError("set_catchup_delay: seconds must be >= 0")
        with self._lock:
            self.catchup_delay_s = float(seconds)

    # -- per-shard data (see the module docstring) ----------------------------------------------
    @staticmethod
    def is_full_range(shard: str) -> bool:
        return shard in ("-", "0", "")

    def shard_database(self, ns: str, cluster: str, ks: str, shard: str) -> str:
        """The MariaDB database that holds shard ``ks/shard``'s data (the primary's)."""
        with self._lock:
            db = self.shard_dbs.get((ns, cluster, ks, shard))
        if db is not None:
            return db
        return ks if self.is_full_range(shard) else f"{ks}@{shard}"

    def set_shard_database(self, ns: str, cluster: str, ks: str, shard: str, db: str | None) -> None:
        """Move a shard's data elsewhere (None: back to its default database)."""
        with self._lock:
            if db is None:
                self.shard_dbs.pop((ns, cluster, ks, shard), None)
            else:
                self.shard_dbs[(ns, cluster, ks, shard)] = db

    def serving_shards(self, double, ns: str, cluster: str, ks: str) -> list[str]:
        """The shards that serve keyspace ``ks`` (its SrvKeyspace partitions, for the primary)."""
        with self._lock:
            fixed = self.serving.get((ns, cluster, ks))
        if fixed is not None:
            return list(fixed)
        shards = sorted({t.shard for t in self.tablets(double, ns, cluster) if t.keyspace == ks})
        full = [s for s in shards if self.is_full_range(s)]
        return full[:1] if full else shards

    def set_serving_shards(self, ns: str, cluster: str, ks: str, shards: list[str] | None) -> None:
        with self._lock:
            if shards is None:
                self.serving.pop((ns, cluster, ks), None)
            else:
                self.serving[(ns, cluster, ks)] = list(shards)

    def refresh_keyspace_views(self, cur, double, ns: str, cluster: str, ks: str) -> None:
        """When ``ks`` is served by shards that are not its own database: one view per table of
        the first serving shard, ``UNION ALL`` over every serving shard's table of that name."""
        shards = self.serving_shards(double, ns, cluster, ks)
        dbs = [self.shard_database(ns, cluster, ks, s) for s in shards]
        if not dbs or dbs == [ks]:
            return
        cur.execute(f"CREATE DATABASE IF NOT EXISTS `{ks}`")
        cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s AND "
                    "table_type = 'BASE TABLE'", (ks,))
        own = {r[0] for r in cur.fetchall()}   # rows put there directly (no shard's): left alone
        cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s AND "
                    "table_type = 'BASE TABLE' ORDER BY table_name", (dbs[0],))
        for (table,) in cur.fetchall():
            if table in own:
                continue
            union = " UNION ALL ".join(f"SELECT * FROM `{db}`.`{table}`" for db in dbs)
            cur.execute(f"CREATE OR REPLACE VIEW `{ks}`.`{table}` AS {union}")

    def _connect(self, database: str | None = None):
        import pymysql

        b = self.backend
        return pymysql.connect(host=b.host, port=b.port, user=b.user, password=b.password, database=database,
                               autocommit=True, connect_timeout=5)

    @staticmethod
    def _copy_database(cur, source: str, target: str) -> None:
        """``target`` := every base table of ``source`` with its rows (``source`` may not exist: empty)."""
        cur.execute(f"DROP DATABASE IF EXISTS `{target}`")
        cur.execute(f"CREATE DATABASE `{target}`")
        cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s AND "
                    "table_type = 'BASE TABLE'", (source,))
        for (table,) in cur.fetchall():
            cur.execute(f"CREATE TABLE `{target}`.`{table}` LIKE `{source}`.`{table}`")
            cur.execute(f"INSERT INTO `{target}`.`{table}` SELECT * FROM `{source}`.`{table}`")

    def snapshot_backup(self, ns: str, cluster: str, rec: BackupRecord) -> str | None:
        """Copy the shard's database as backup ``rec``'s copy (BackupShard calls this); the copy's
        database, or None without a MySQL backend."""
        if self.backend is None:
            return None
        db = "_vtbk_" + hashlib.sha256("\0".join((ns, cluster, rec.keyspace, rec.shard, rec.name)).encode()).hexdigest()[:16]
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                self._copy_database(cur, self.shard_database(ns, cluster, rec.keyspace, rec.shard), db)
        finally:
            conn.close()
        with self._lock:
            self.backup_copies[(ns, cluster, rec.keyspace, rec.shard, rec.name)] = db
        return db

    def drop_backup_copy(self, ns: str, cluster: str, ks: str, shard: str, name: str) -> None:
        """RemoveBackup: the backup's copy goes with it."""
        with self._lock:
            db = self.backup_copies.pop((ns, cluster, ks, shard, name), None)
        if db and self.backend is not None:
            conn = self._connect()
            try:
                with conn.cursor() as cur:
                    cur.execute(f"DROP DATABASE IF EXISTS `{db}`")
            finally:
                conn.close()

    def change_backup_row(self, ns: str, cluster: str, ks: str, shard: str, table: str, assignments: str,
                          where: str, backup: str | None = None) -> str:
        """The fault: ``UPDATE <table> SET <assignments> WHERE <where>`` in the copy of backup
        ``backup`` (default: the shard's newest) only. The primary's data is untouched, so a tablet
        restored from that backup differs from the primary in ``table`` even after catching up.
        Returns the backup's name; ValueError when the shard has no backup with a copy or no row matches."""
        backups = self.list_backups(ns, cluster, ks, shard)
        rec = next((b for b in reversed(backups) if backup in (None, b.name)), None)
        with self._lock:
            db = self.backup_copies.get((ns, cluster, ks, shard, rec.name)) if rec else None
        if db is None:
            raise ValueError(f"change_backup_row: shard {ks}/{shard} has no backup taken with BackupShard"
                             + (f" named {backup}" if backup else ""))
        conn = self._connect(db)
        try:
            with conn.cursor() as cur:
                cur.execute(f"SELECT * FROM `{table}` WHERE {where}")
                before = tuple(cur.fetchall())
                if not before:
                    raise ValueError(f"change_backup_row: no row of {ks}.{table} matches {where}")
                cur.execute(f"UPDATE `{table}` SET {assignments} WHERE {where}")
        finally:
            conn.close()
        with self._lock:
            self.row_changes.append(RowChange(db, table, where, assignments, before))
        return rec.name

    @staticmethod
    def volume_key(double, pod: dict) -> str:
        """What a tablet's data lives on: its data claim (by uid: a new claim of the same name is new
        data), else the pod itself (emptyDir)."""
        ns = pod["metadata"].get("namespace", "")
        for v in (pod.get("spec") or {}).get("volumes") or []:
            claim = (v or {}).get("persistentVolumeClaim")
            if claim and v.get("name") == "vt":
                pvc = double.get("persistentvolumeclaims", ns, claim["claimName"])
                if pvc is not None:
                    return "pvc:" + pvc["metadata"]["uid"]
        return "pod:" + pod["metadata"]["uid"]

    def tablet_started(self, double, pod: dict) -> list[str]:
        """A vttablet process starts in ``pod``: restore on a new volume when the cluster has a backup
        location and the shard a backup. The log lines it writes (vttablet's wording)."""
        n = names
        labels = pod["metadata"].get("labels") or {}
        ns, cluster = pod["metadata"].get("namespace", ""), labels.get(n.CLUSTER, "")
        ks, shard = labels.get(n.KEYSPACE, ""), n.shard_from_safe(labels.get(n.SHARD, ""))
        alias = n.alias(labels.get(n.CELL, ""), int(labels.get(n.TABLET_UID, "0") or 0))
        key = self.volume_key(double, pod)
        with self._lock:
            seen = key in self._volumes
            self._volumes.add(key)
        vc = double.get("planetscale.com/vitessclusters", ns, cluster) or {}
        if not ((vc.get("spec") or {}).get("backup") or {}).get("locations"):
            return []   # restore_from_backup=false: the operator passes no backup flags
        if seen:
            return ["Attempting to restore, but mysqld already contains data. Assuming vttablet was just restarted."]
        lines = ["Restore: looking for a suitable backup to restore"]
        backups = self.list_backups(ns, cluster, ks, shard)
        if not backups:
            return lines + [f"no backup to restore on BackupStorage for directory {ks}/{shard}. Starting up empty."]
        rec = backups[-1]   # names sort by time: the newest
        with self._lock:
            copy_db = self.backup_copies.get((ns, cluster, ks, shard, rec.name))
        db = "_vt_" + alias.replace("-", "_")
        if self.backend is not None:
            conn = self._connect()
            try:
                with conn.cursor() as cur:
                    self._copy_database(cur, copy_db or "_vtbk_none", db)
            finally:
                conn.close()
        position = f"MySQL56/00000000-0000-0000-0000-{hashlib.sha256(rec.name.encode()).hexdigest()[:12]}:1-1"
        with self._lock:
            self.restores[key] = Restored(alias, ks, shard, rec.name, rec.time, db, copy_db, position, time.monotonic(),
                                          ns, cluster)
        return lines + [f"Restore: found backup {ks}/{shard} {rec.name} to restore",
                        f"Restore: got a restore manifest: {{BackupTime:{rec.time}}}, err=<nil>, waitForBackupInterval=10s",
                        f"Restore: starting replication at position {position}"]

    def restored(self, double, pod: dict) -> Restored | None:
        """What the tablet in ``pod`` restored (None: it runs on its shard's database)."""
        with self._lock:
            return self.restores.get(self.volume_key(double, pod))

    def database_of(self, double, pod: dict, keyspace: str) -> str:
        """The database a tablet's mysqld serves: a restored tablet's own (brought up to the primary's
        once its catch-up delay has passed), else its shard's (``shard_database``)."""
        r = self.restored(double, pod)
        if r is None or self.backend is None:
            labels = pod["metadata"].get("labels") or {}
            return self.shard_database(pod["metadata"].get("namespace", ""), labels.get(names.CLUSTER, ""), keyspace,
                                       names.shard_from_safe(labels.get(names.SHARD, "")))
        if time.monotonic() - r.at >= self.catchup_delay_s:
            self._catch_up(r)
        return r.database

    def _catch_up(self, r: Restored) -> None:
        with self._lock:
            changes = [c for c in self.row_changes if r.backup_db is not None and c.backup_db == r.backup_db]
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                source = self.shard_database(r.ns, r.cluster, r.keyspace, r.shard)
                self._copy_database(cur, source, r.database)
                for c in changes:
                    cur.execute(f"SELECT * FROM `{source}`.`{c.table}` WHERE {c.where}")
                    if tuple(cur.fetchall()) == c.before:   # the primary has not written the row since
                        cur.execute(f"UPDATE `{r.database}`.`{c.table}` SET {c.assignments} WHERE {c.where}")
        finally:
            conn.close()

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
