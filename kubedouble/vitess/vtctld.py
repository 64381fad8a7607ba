"""A stand-in for ``vtctldclient`` run inside a vtctld pod (an exec handler).

Registered for pods labelled ``planetscale.com/component=vtctld``; answers
``vtctldclient [--server localhost:15999] <Command> [flags] <args>`` for the commands vtflow
uses: ApplySchema, ApplyVSchema, GetVSchema, GetSchema, GetTablets, GetShard, BackupShard, GetBackups,
RemoveBackup, ExecuteFetchAsDBA, and the VReplication commands (MoveTables, Reshard, Workflow,
VDiff, GetRoutingRules, GetShardRoutingRules), which vreplication.py answers.
Tablets come from the double's vttablet pods and VitessShards (state.py), SQL goes to the
backend MariaDB (one database per shard: state.py ``shard_database``; ApplySchema runs on every
shard's database, then refreshes the keyspace-level views of a sharded keyspace), VSchemas and
backups live in ``VitessState``. Output and
errors are worded like the real client's where known; where not, plausibly and marked. Unknown
commands or flags exit 1 with a usage error. It changes no Kubernetes object except the
VitessBackups the operator keeps for backups (created with a backup, deleted with RemoveBackup).

Backups, as checked against vitessio/vitess (go/cmd/vtctldclient/command/backups.go,
grpcvtctldserver/server.go, mysqlctl/mysqlctlproto, mysqlctl/{file,s3}backupstorage,
cmd/vtctldclient/cli/json.go) and planetscale/vitess-operator (vtctld gets the cluster's
backup storage flags only when spec.backup has a location):
- ``GetBackups [--limit|-l N] [--json|-j] <keyspace/shard>``: names oldest first, one a line
  (none: one empty line); ``--limit`` keeps the newest N; ``--json`` prints the
  GetBackupsResponse with protojson (proto field names, unpopulated fields included, enums by
  name): per backup name, directory, keyspace, shard, tablet_alias {cell, uid},
  time {seconds: "<int64 as string>", nanoseconds}, engine and status. BackupInfo has no size.
  vtctld never fills engine or status (vitessio/vitess#8321, #8332): always "" and "UNKNOWN".
- ``RemoveBackup <keyspace/shard> <backup name>`` prints nothing. Backup storage decides what an
  unknown name does: the file storage (volume locations) removes with os.RemoveAll, so it
  succeeds silently; S3 sends a DeleteObjects with no keys, which S3 rejects (MalformedXML).
- Without a backup location vtctld has no storage: GetBackups and RemoveBackup fail with
  "no registered implementation of BackupStorage".
- BackupShard prints the tablet's streamed log events as ``<ks>/<shard> (<alias>): <event>``,
  the event in protobuf text format.
- BackupShard keeps a copy of the shard's database as the backup's data (state.py
  ``snapshot_backup``); RemoveBackup drops it. Tablets restore from it (state.py).

ExecuteFetchAsDBA (go/cmd/vtctldclient/command/tablets.go): ``[--max-rows N] [--disable-binlogs]
[--reload-schema] [--json] <tablet alias> <query>``, exactly two arguments. The query runs on
that tablet's mysqld (here: the tablet's database, state.py ``database_of``: a restored tablet's
own, else its shard's, state.py ``shard_database``) as the DBA user, in the tablet's database. ``--json`` prints the
sqltypes.Result with encoding/json (Go json tags: fields, rows_affected, rows_read, insert_id,
rows, session_state_changes, status_flags); sqltypes.Value marshals quoted types as JSON
strings, numbers as bare JSON numbers, NULL as null. Without ``--json`` a mysql-client-like
table. More rows than ``--max-rows`` (default 10000) fail.
NOT VERIFIED: the field entries' exact contents (here name and a querypb type number), the
wording of the max-rows error, and the wording of the events BackupShard streams (vttablet's log lines), the exact
S3 error text (aws-sdk-go-v2's, as printed through gRPC), what GCS/Azure/Ceph storage do with
an unknown name (taken as success, like the file storage), and the glog prefix of errors.
"""

from __future__ import annotations

import base64
import decimal
import json
import re
import shlex
import time
from dataclasses import dataclass
from datetime import datetime, timezone

import pymysql

from ..execs import not_in_image
from . import names
from .operator import forget_backup, record_backup
from .state import BackupRecord, Tablet, VitessState
from .vreplication import Commands

COMMANDS = ("ApplySchema", "ApplyVSchema", "GetVSchema", "GetSchema", "GetTablets", "GetShard", "BackupShard",
            "GetBackups", "RemoveBackup", "ExecuteFetchAsDBA", "MoveTables", "Reshard", "Workflow", "VDiff",
            "GetRoutingRules", "GetShardRoutingRules")
USAGE = ("Usage:\n  vtctldclient [command]\n\nAvailable Commands:\n" +
         "".join(f"  {c}\n" for c in COMMANDS) + "\nFlags:\n      --server string   server to use for the connection\n")
# cobra's Use lines (backups.go), printed as the usage of a command whose arguments are wrong
USES = {"GetShard": "GetShard <keyspace/shard>",
        "BackupShard": "BackupShard [--concurrency <concurrency>] [--allow-primary] [--upgrade-safe] <keyspace/shard>",
        "GetBackups": "GetBackups [--limit <limit>] [--json] <keyspace/shard>",
        "RemoveBackup": "RemoveBackup <keyspace/shard> <backup name>",
        "ExecuteFetchAsDBA": "ExecuteFetchAsDBA [--max-rows <max-rows>] [--json|-j] [--disable-binlogs] "
                             "[--reload-schema] <tablet alias> <query>"}
VREPLICATION = {"MoveTables": "movetables", "Reshard": "reshard", "Workflow": "workflow", "VDiff": "vdiff",
                "GetRoutingRules": "get_routing_rules", "GetShardRoutingRules": "get_shard_routing_rules"}
GLOG_E = "E0000 00:00:00.000000       1 main.go:56] "   # how main.go logs the error a command returns
NO_STORAGE = "no registered implementation of BackupStorage"
S3_EMPTY_DELETE = ("operation error S3: DeleteObjects, https response error StatusCode: 400, RequestID: "
                   "0000000000000000, HostID: kubedouble, api error MalformedXML: The XML you provided was not "
                   "well-formed or did not validate against our published schema")


class UsageError(Exception):
    def __init__(self, message: str, use: str | None = None):
        super().__init__(message)
        self.use = use


def _rpc_error(code: str, desc: str, out: str = "") -> "Result":
    return Result(1, out, f"{GLOG_E}rpc error: code = {code} desc = {desc}\n")


@dataclass
class Result:
    code: int
    out: str = ""
    err: str = ""


def _parse(args: list[str], flags: dict[str, bool], stdin: bytes | None,
           short: dict[str, str] | None = None) -> tuple[dict[str, str], list[str]]:
    """Parse ``--flag=value``/``--flag value``/``--bool``; ``flags`` maps name -> takes a value.
    ``short`` maps one-letter shorthands (``-j``, ``-l 5``, ``-l=5``, ``-l5``) to flag names."""
    opts: dict[str, str] = {}
    pos: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a.startswith("-") and a not in ("-",):
            name, eq, value = a.lstrip("-").partition("=")
            if short and not a.startswith("--") and name[:1] in short:
                if len(name) > 1 and flags.get(short[name[0]]) and not eq:
                    name, eq, value = name[0], "=", name[1:]          # -l5
                if len(name) == 1:
                    name = short[name]
            name = name.replace("_", "-")
            if name not in flags:
                raise UsageError(f"unknown flag: --{name}")
            if flags[name] and not eq:
                i += 1
                if i >= len(args):
                    raise UsageError(f"flag needs an argument: --{name}")
                value = args[i]
            opts[name] = value if flags[name] else (value or "true")
        else:
            pos.append(a)
        i += 1
    return opts, pos


def _read_file(path: str, stdin: bytes | None) -> str:
    if path in ("/dev/stdin", "-"):
        return (stdin or b"").decode()
    # files inside the pod are not simulated; /dev/stdin is how vtflow hands content over
    raise UsageError(f"open {path}: no such file or directory")


def split_sql(sql: str) -> list[str]:
    """Statements separated by ';' outside quotes and comments (what vtctld's parser splits)."""
    out, buf, i, quote = [], [], 0, ""
    while i < len(sql):
        ch = sql[i]
        if quote:
            buf.append(ch)
            if ch == "\\" and quote != "`" and i + 1 < len(sql):
                buf.append(sql[i + 1])
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "'\"`":
            quote = ch
            buf.append(ch)
        elif sql.startswith("--", i) or ch == "#":
            end = sql.find("\n", i)
            i = len(sql) if end < 0 else end
            continue
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = len(sql) if end < 0 else end + 2
            continue
        elif ch == ";":
            stmt = "".join(buf).strip()
            if stmt:
                out.append(stmt)
            buf = []
        else:
            buf.append(ch)
        i += 1
    stmt = "".join(buf).strip()
    if stmt:
        out.append(stmt)
    return out


class Vtctld:
    """The exec handler: ``Vtctld(double, state)(argv, stdin, pod)``."""

    def __init__(self, double, state: VitessState):
        self.double = double
        self.state = state
        state.attach(double)   # for VitessState.add_backup, which creates a VitessBackup

    def __call__(self, argv: list[str], stdin: bytes | None, pod: dict) -> tuple[int, bytes, bytes]:
        shell_argv0 = argv[0] if argv else ""
        shell = len(argv) == 3 and shell_argv0 in ("sh", "/bin/sh", "bash", "/bin/bash") and argv[1] == "-c"
        if shell:
            argv = shlex.split(argv[2])    # `sh -c 'vtctldclient ...'`, as scripts often exec it
        if not argv or argv[0].rsplit("/", 1)[-1] != "vtctldclient":
            if shell and not argv:
                return 0, b"", b""
            if shell:   # the image's shell runs and cannot find it (vitess/lite's Debian base: dash, bash)
                bash = shell_argv0.endswith("bash")
                return 127, b"", (f"bash: line 1: {argv[0]}: command not found\n" if bash
                                  else f"sh: 1: {argv[0]}: not found\n").encode()
            raise not_in_image(argv[0] if argv else "")
        try:
            r = self.run(argv[1:], stdin, pod)
        except UsageError as e:
            usage = f"Usage:\n  vtctldclient {e.use}\n" if e.use else USAGE
            r = Result(1, "", f"Error: {e}\n{usage}")
        return r.code, r.out.encode(), r.err.encode()

    # -- dispatch -------------------------------------------------------------------------------
    def run(self, args: list[str], stdin: bytes | None, pod: dict) -> Result:
        server = "localhost:15999"
        while args and args[0].startswith("-"):
            name, eq, value = args[0].lstrip("-").partition("=")
            if name == "server":
                if not eq:
                    if len(args) < 2:
                        raise UsageError("flag needs an argument: --server")
                    value, args = args[1], args[1:]
                server = value
            elif name in ("action_timeout", "action-timeout"):
                if not eq:
                    args = args[1:]
            elif name not in ("logtostderr", "alsologtostderr"):
                raise UsageError(f"unknown flag: --{name}")
            args = args[1:]
        if not args:
            raise UsageError("a command is required")
        if not server.endswith(":15999"):
            return Result(1, "", f"E0000 00:00:00.000000       1 main.go:56] rpc error: code = Unavailable desc = "
                                 f"connection error: desc = \"transport: Error while dialing: dial tcp {server}: "
                                 f"connect: connection refused\"\n")
        cmd, rest = args[0], args[1:]
        handler = getattr(self, f"cmd_{cmd}", None) if cmd in COMMANDS else None
        if cmd in VREPLICATION:   # the workflows live in vreplication.py
            handler = getattr(Commands(self), VREPLICATION[cmd])
        if handler is None:
            raise UsageError(f'unknown command "{cmd}" for "vtctldclient"')
        meta = pod["metadata"]
        return handler(rest, stdin, meta.get("namespace", ""), (meta.get("labels") or {}).get(names.CLUSTER, ""))

    # -- commands ----------------------------------------------------------------------------
    def cmd_ApplySchema(self, args, stdin, ns, cluster) -> Result:
        opts, pos = _parse(args, {"sql": True, "sql-file": True, "ddl-strategy": True, "caller-id": True,
                                  "wait-replicas-timeout": True, "migration-context": True, "uuid": True,
                                  "batch-size": True}, stdin)
        if len(pos) != 1:
            raise UsageError("ApplySchema requires exactly one argument: <keyspace>")
        ks = pos[0]
        if "sql" in opts:
            sql = opts["sql"]
        elif "sql-file" in opts:
            sql = _read_file(opts["sql-file"], stdin)
        else:
            raise UsageError("either --sql or --sql-file must be specified")
        statements = split_sql(sql)
        tablets = [t for t in self.state.tablets(self.double, ns, cluster) if t.keyspace == ks]
        shards = sorted({t.shard for t in tablets})
        serving = bool(shards) and all(any(t.type == "PRIMARY" and t.serving for t in tablets if t.shard == s)
                                       for s in shards)
        if not serving:
            # the real client's failure while tablets are not up yet (see FACTS.md: retry it)
            result = {"FailedShards": None, "SuccessShards": None, "CurSQLIndex": 0, "Sqls": statements,
                      "UUIDs": None}
            return Result(1, "", "E0000 00:00:00.000000       1 main.go:56] rpc error: code = Unknown desc = "
                                 f"schema change failed, ExecuteResult: {json.dumps(result, indent=2)}\n")
        if self.state.backend is None:
            return Result(1, "", "kubedouble: no MySQL backend configured (--mysql-backend HOST:PORT)\n")
        try:
            conn = self._connect()
        except pymysql.MySQLError as e:
            return Result(1, "", f"rpc error: code = Unavailable desc = mysqld not reachable: {e}\n")
        # every shard's own database (one database for shards that share it)
        databases = list(dict.fromkeys(self.state.shard_database(ns, cluster, ks, s) for s in shards))
        try:
            with conn.cursor() as cur:
                for i, stmt in enumerate(statements):
                    for db in databases:
                        cur.execute(f"CREATE DATABASE IF NOT EXISTS `{db}`")
                        cur.execute(f"USE `{db}`")
                        try:
                            cur.execute(stmt)
                        except pymysql.MySQLError as e:
                            code, msg = (e.args + ("",))[:2]
                            failed = [{"Shard": s, "Err": f"{msg} (errno {code}) (sqlstate HY000) during query: {stmt}"}
                                      for s in shards]
                            result = {"FailedShards": failed, "SuccessShards": None, "CurSQLIndex": i,
                                      "Sqls": statements, "UUIDs": None}
                            return Result(1, "", "E0000 00:00:00.000000       1 main.go:56] rpc error: code = "
                                                 "Unknown desc = schema change failed, ExecuteResult: "
                                                 f"{json.dumps(result, indent=2)}\n")
                self.state.refresh_keyspace_views(cur, self.double, ns, cluster, ks)
        finally:
            conn.close()
        return Result(0, "")   # direct DDL prints no UUIDs

    def cmd_ApplyVSchema(self, args, stdin, ns, cluster) -> Result:
        opts, pos = _parse(args, {"vschema": True, "vschema-file": True, "dry-run": False, "skip-rebuild": False,
                                  "cells": True, "sql": True, "sql-file": True, "strict": False}, stdin)
        if len(pos) != 1:
            raise UsageError("ApplyVSchema requires exactly one argument: <keyspace>")
        ks = pos[0]
        if "vschema" in opts:
            text = opts["vschema"]
        elif "vschema-file" in opts:
            text = _read_file(opts["vschema-file"], stdin)
        else:
            raise UsageError("either --vschema, --vschema-file, --sql, or --sql-file must be specified")
        if not self._keyspace_exists(ns, cluster, ks):
            return Result(1, "", f"rpc error: code = NotFound desc = node doesn't exist: keyspaces/{ks}/Keyspace\n")
        try:
            vschema = json.loads(text)
            if not isinstance(vschema, dict):
                raise ValueError("a VSchema is a JSON object")
        except ValueError as e:
            return Result(1, "", f"Error: invalid VSchema JSON: {e}\n")
        if opts.get("dry-run") != "true":
            self.state.put_vschema(ns, cluster, ks, vschema)
        return Result(0, "New VSchema object:\n" + json.dumps(vschema, indent=2) +
                      "\nIf this is not what you expected, check the input data (as JSON parsing will skip "
                      "unexpected fields).\n")

    def cmd_GetVSchema(self, args, stdin, ns, cluster) -> Result:
        _, pos = _parse(args, {}, stdin)
        if len(pos) != 1:
            raise UsageError("GetVSchema requires exactly one argument: <keyspace>")
        if not self._keyspace_exists(ns, cluster, pos[0]):
            return Result(1, "", f"rpc error: code = NotFound desc = node doesn't exist: keyspaces/{pos[0]}/VSchema\n")
        return Result(0, json.dumps(self.state.get_vschema(ns, cluster, pos[0]) or {}, indent=2) + "\n")

    def cmd_GetSchema(self, args, stdin, ns, cluster) -> Result:
        """``GetSchema [--table-names-only] <tablet-alias>``: the tablet's tables, one name a line with
        --table-names-only, else JSON (table_definitions with name and schema). Approximates the
        real output: the names and CREATE statements come from the tablet's database (its shard's)."""
        opts, pos = _parse(args, {"table-names-only": False, "tables": True, "exclude-tables": True,
                                  "include-views": False, "table-sizes-only": False, "table-schema-only": False}, stdin)
        if len(pos) != 1:
            raise UsageError("GetSchema requires exactly one argument: <tablet-alias>")
        tablet = next((t for t in self.state.tablets(self.double, ns, cluster) if t.alias == pos[0]), None)
        if tablet is None:
            return Result(1, "", f"rpc error: code = NotFound desc = tablet {pos[0]} not found\n")
        if self.state.backend is None:
            return Result(1, "", "kubedouble: no MySQL backend configured (--mysql-backend HOST:PORT)\n")
        pod = self.double.get("pods", ns, tablet.pod)
        database = self.state.database_of(self.double, pod, tablet.keyspace) if pod else \
            self.state.shard_database(ns, cluster, tablet.keyspace, tablet.shard)
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s ORDER BY 1",
                            (database,))
                names = [r[0] for r in cur.fetchall()]
                if opts.get("table-names-only") == "true":
                    return Result(0, "".join(f"{n}\n" for n in names))
                defs = []
                for n in names:
                    cur.execute(f"SHOW CREATE TABLE `{database}`.`{n}`")
                    defs.append({"name": n, "schema": cur.fetchone()[1], "type": "BASE TABLE"})
        finally:
            conn.close()
        return Result(0, json.dumps({"database_schema": f"CREATE DATABASE /*!32312 IF NOT EXISTS*/ {{{{.DatabaseName}}}}",
                                     "table_definitions": defs}, indent=2) + "\n")

    def cmd_GetTablets(self, args, stdin, ns, cluster) -> Result:
        opts, pos = _parse(args, {"format": True, "keyspace": True, "shard": True, "cell": True,
                                  "tablet-alias": True, "tablet-type": True, "strict": False}, stdin)
        if pos:
            raise UsageError(f"unexpected argument {pos[0]!r}")
        fmt = opts.get("format", "awk")
        if fmt not in ("awk", "json"):
            raise UsageError(f"invalid output format, got {fmt}")
        tablets = self.state.tablets(self.double, ns, cluster)
        if "shard" in opts and "keyspace" not in opts:
            raise UsageError("--shard (= " + opts["shard"] + ") cannot be passed without also passing --keyspace")
        tablets = [t for t in tablets if ("keyspace" not in opts or t.keyspace == opts["keyspace"])
                   and ("shard" not in opts or t.shard == opts["shard"])
                   and ("cell" not in opts or t.cell in opts["cell"].split(","))
                   and ("tablet-type" not in opts or t.type == opts["tablet-type"].upper())
                   and ("tablet-alias" not in opts or t.alias in opts["tablet-alias"].split(","))]
        if fmt == "json":
            return Result(0, json.dumps([tablet_json(t) for t in tablets], indent=2) + "\n")
        return Result(0, "".join(f"{t.alias} {t.keyspace} {t.shard} {t.type.lower()} {t.hostname}:15000 "
                                 f"{t.hostname}:3306 [] {t.primary_term_start or '<null>'}\n" for t in tablets))

    def cmd_GetShard(self, args, stdin, ns, cluster) -> Result:
        """``GetShard <keyspace/shard>`` (command/shards.go): ``cli.MarshalJSON(resp.Shard)``, a
        vtctldata.Shard {keyspace, name, shard: topodata.Shard} with proto names; key_range's bytes
        print as base64 (protojson). ``is_primary_serving`` is false for a shard a Reshard switched
        writes away from, and for new shards until one switches to them (state.py serving_shards).
        A shard "exists" while it has tablet pods (the double keeps no topo records of its own)."""
        _parse(args, {}, stdin)
        ks, shard = self._ks_shard([a for a in args if not a.startswith("-")], "GetShard")
        tablets = [t for t in self.state.tablets(self.double, ns, cluster) if t.keyspace == ks and t.shard == shard]
        if not tablets:
            return _rpc_error("NotFound", f"node doesn't exist: keyspaces/{ks}/shards/{shard}/Shard")
        primary = next((t for t in tablets if t.type == "PRIMARY"), None)
        start, _, end = ("", "", "") if self.state.is_full_range(shard) else shard.partition("-")
        term = None
        if primary is not None and primary.primary_term_start:
            when = datetime.strptime(primary.primary_term_start, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
            term = {"seconds": str(int(when.timestamp())), "nanoseconds": 0}
        record = {"primary_alias": {"cell": primary.cell, "uid": primary.uid} if primary else None,
                  "primary_term_start_time": term,
                  "key_range": {"start": _b64(start), "end": _b64(end)} if (start or end) else None,
                  "source_shards": [], "tablet_controls": [],
                  "is_primary_serving": shard in self.state.serving_shards(self.double, ns, cluster, ks)}
        return Result(0, json.dumps({"keyspace": ks, "name": shard, "shard": record}, indent=2) + "\n")

    def cmd_BackupShard(self, args, stdin, ns, cluster) -> Result:
        opts, pos = _parse(args, {"allow-primary": False, "concurrency": True, "upgrade-safe": False,
                                  "incremental-from-pos": True}, stdin)
        ks, shard = self._ks_shard(pos, "BackupShard")
        vc = self.double.get("planetscale.com/vitessclusters", ns, cluster)
        tablets = [t for t in self.state.tablets(self.double, ns, cluster) if t.keyspace == ks and t.shard == shard]
        if vc is None or not tablets:
            return _rpc_error("NotFound", f"node doesn't exist: keyspaces/{ks}/shards/{shard}/Shard")
        allow_primary = opts.get("allow-primary") == "true"
        candidates = [t for t in tablets if t.serving and (t.type != "PRIMARY" or allow_primary)]
        if not candidates:
            return _rpc_error("FailedPrecondition", f"no tablet available for backup in shard {ks}/{shard}")
        tablet = sorted(candidates, key=lambda t: (t.type == "PRIMARY", t.alias))[0]
        backup = (vc.get("spec") or {}).get("backup") or {}
        if not backup.get("locations"):
            # vttablet runs without --backup_storage_implementation when the cluster has no location
            return _rpc_error("Unknown", f"TabletManager.Backup on {tablet.alias}: {NO_STORAGE} (the VitessCluster "
                                         "has no spec.backup.locations; add one, e.g. a volume or s3 location)")
        engine = backup.get("engine", "builtin")

        def event(msg: str, file: str, line: int, level: str = "") -> str:
            now = time.time()
            lvl = f" level:{level}" if level else ""
            stamp = f"time:{{seconds:{int(now)} nanoseconds:{int(now % 1 * 1e9)}}}"
            return f"{ks}/{shard} ({tablet.alias}): {stamp}{lvl} file:\"{file}\" line:{line} value:{json.dumps(msg)}\n"

        with self.state.backup_running(ns, cluster, ks, shard):
            start = datetime.now(timezone.utc)
            out = [event(f"Starting backup of {ks}/{shard} on tablet {tablet.alias} (engine {engine})", "backup.go", 165),
                   event(f"Stopping replication on {tablet.alias}", "backup.go", 312),
                   event("Copying files to backup storage", f"{engine}engine.go", 210)]
            delay = self.state.backup_delay_s
            if delay > 0:
                time.sleep(delay)   # a worker thread (asgi.py runs execs in asyncio.to_thread)
            if self.state.is_failing(ks, shard):
                out.append(event(f"backup failed: {engine}: exit status 1", "backup.go", 201, "ERROR"))
                return _rpc_error("Unknown", f"TabletManager.Backup on {tablet.alias} error: {engine} failed: "
                                             "exit status 1", "".join(out))
            size = self._database_size(self.state.shard_database(ns, cluster, ks, shard))
            rec = record_backup(self.double, self.state, vc, ks, shard, tablet.alias, engine, size, when=start)
            self.state.snapshot_backup(ns, cluster, rec)
            out += [event(f"Backup {rec.name} completed ({size} bytes)", "backup.go", 250),
                    event(f"Restarting replication on {tablet.alias}", "backup.go", 320)]
        return Result(0, "".join(out))

    def cmd_GetBackups(self, args, stdin, ns, cluster) -> Result:
        opts, pos = _parse(args, {"json": False, "limit": True}, stdin, short={"j": "json", "l": "limit"})
        ks, shard = self._ks_shard(pos, "GetBackups")
        limit = opts.get("limit", "0")
        if not limit.isdigit() or int(limit) >= 2 ** 32:
            raise UsageError(f'invalid argument "{limit}" for "-l, --limit" flag: strconv.ParseUint: parsing '
                             f'"{limit}": ' + ("value out of range" if limit.isdigit() else "invalid syntax"),
                             USES["GetBackups"])
        err = self._storage_error(ns, cluster)
        if err:
            return err
        backups = self.state.list_backups(ns, cluster, ks, shard)
        if int(limit) > 0:
            backups = backups[-int(limit):]
        if opts.get("json", "false") != "false":
            return Result(0, json.dumps({"backups": [backup_json(ks, shard, b) for b in backups]}, indent=2) + "\n")
        return Result(0, "\n".join(b.name for b in backups) + "\n")

    def cmd_RemoveBackup(self, args, stdin, ns, cluster) -> Result:
        _, pos = _parse(args, {}, stdin)
        if len(pos) != 2:
            raise UsageError(f"accepts 2 arg(s), received {len(pos)}", USES["RemoveBackup"])
        ks, shard = self._ks_shard(pos[:1], "RemoveBackup")
        name = pos[1]
        err = self._storage_error(ns, cluster)
        if err:
            return err
        vc = self.double.get("planetscale.com/vitessclusters", ns, cluster)
        self.state.drop_backup_copy(ns, cluster, ks, shard, name)
        if forget_backup(self.double, self.state, vc, ks, shard, name) is None and self._location_kind(vc) == "s3":
            # S3's RemoveBackup lists the prefix and sends a DeleteObjects without keys
            return _rpc_error("Unknown", S3_EMPTY_DELETE)
        return Result(0, "")

    def cmd_ExecuteFetchAsDBA(self, args, stdin, ns, cluster) -> Result:
        opts, pos = _parse(args, {"max-rows": True, "disable-binlogs": False, "reload-schema": False, "json": False},
                           stdin, short={"j": "json"})
        if len(pos) != 2:
            raise UsageError(f"accepts 2 arg(s), received {len(pos)}", USES["ExecuteFetchAsDBA"])
        alias, query = pos
        if not re.fullmatch(r"[A-Za-z0-9_]+-\d+", alias):
            return Result(1, "", f"{GLOG_E}invalid tablet alias {alias!r}\n")
        max_rows = opts.get("max-rows", "10000")
        if not max_rows.isdigit():
            raise UsageError(f'invalid argument "{max_rows}" for "--max-rows" flag: strconv.ParseInt: parsing '
                             f'"{max_rows}": invalid syntax', USES["ExecuteFetchAsDBA"])
        tablet = next((t for t in self.state.tablets(self.double, ns, cluster) if t.alias == alias), None)
        if tablet is None:
            return _rpc_error("NotFound", f"node doesn't exist: tablets/{alias}/Tablet")
        if self.state.backend is None:
            return Result(1, "", "kubedouble: no MySQL backend configured (--mysql-backend HOST:PORT)\n")
        pod = self.double.get("pods", ns, tablet.pod)
        database = self.state.database_of(self.double, pod, tablet.keyspace) if pod else \
            self.state.shard_database(ns, cluster, tablet.keyspace, tablet.shard)
        try:
            conn = self._connect()
        except pymysql.MySQLError as e:
            return _rpc_error("Unavailable", f"mysqld not reachable: {e}")
        try:
            with conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE IF NOT EXISTS `{database}`")
                cur.execute(f"USE `{database}`")
                try:
                    cur.execute(query)
                except pymysql.MySQLError as e:
                    code, msg = (e.args + ("",))[:2]
                    return _rpc_error("Unknown", f"TabletManager.ExecuteFetchAsDba on {alias}: {msg} (errno {code}) "
                                                 f"(sqlstate HY000) during query: {query}")
                fields = [d[0] for d in cur.description or []]
                types = [d[1] for d in cur.description or []]
                rows = list(cur.fetchall()) if cur.description else []
                affected = cur.rowcount if not cur.description else 0
        finally:
            conn.close()
        if len(rows) > int(max_rows):
            return _rpc_error("Unknown", f"TabletManager.ExecuteFetchAsDba on {alias}: Row count exceeded {max_rows}")
        if opts.get("json", "false") != "false":
            return Result(0, result_json(fields, types, rows, affected) + "\n")
        return Result(0, result_table(fields, rows))

    # -- helpers -------------------------------------------------------------------------------
    @staticmethod
    def _ks_shard(pos: list[str], cmd: str) -> tuple[str, str]:
        """cobra.ExactArgs(1), then topoproto.ParseKeyspaceShard (exactly one '/')."""
        if len(pos) != 1:
            raise UsageError(f"accepts 1 arg(s), received {len(pos)}", USES.get(cmd))
        parts = pos[0].split("/")
        if len(parts) != 2:
            raise UsageError(f"invalid shard path: {pos[0]}", USES.get(cmd))
        return parts[0], parts[1]

    @staticmethod
    def _location_kind(vc: dict | None) -> str | None:
        """The kind of the backup location vtctld is given (the first), or None without one."""
        locations = (((vc or {}).get("spec") or {}).get("backup") or {}).get("locations") or []
        if not locations:
            return None
        return next((k for k in ("volume", "s3", "gcs", "azblob", "ceph") if k in locations[0]), "volume")

    def _storage_error(self, ns: str, cluster: str) -> Result | None:
        vc = self.double.get("planetscale.com/vitessclusters", ns, cluster)
        if self._location_kind(vc) is None:
            return _rpc_error("Unknown", NO_STORAGE)
        return None

    def _keyspace_exists(self, ns: str, cluster: str, ks: str) -> bool:
        vc = self.double.get("planetscale.com/vitessclusters", ns, cluster) or {}
        return any(k.get("name") == ks for k in (vc.get("spec") or {}).get("keyspaces") or [])

    def _connect(self):
        b = self.state.backend
        return pymysql.connect(host=b.host, port=b.port, user=b.user, password=b.password, autocommit=True,
                               connect_timeout=5)

    def _database_size(self, database: str) -> int:
        if self.state.backend is None:
            return 0
        try:
            conn = self._connect()
        except pymysql.MySQLError:
            return 0
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT COALESCE(SUM(data_length + index_length), 0) FROM information_schema.tables "
                            "WHERE table_schema = %s", (database,))
                return int(cur.fetchone()[0])
        finally:
            conn.close()


def tablet_json(t: Tablet) -> dict:
    """One tablet as ``vtctldclient GetTablets --format json`` prints it (proto field names)."""
    start, _, end = t.shard.partition("-") if t.shard != "0" else ("", "", "")
    out = {"alias": {"cell": t.cell, "uid": t.uid}, "hostname": t.hostname,
           "port_map": {"grpc": 15999, "vt": 15000}, "keyspace": t.keyspace, "shard": t.shard,
           "type": t.type, "db_name_override": "", "tags": {}, "mysql_hostname": t.hostname, "mysql_port": 3306,
           "default_conn_collation": 255}
    if start or end:   # topodata.KeyRange's bytes: protojson prints them base64, not hex
        out["key_range"] = {"start": _b64(start), "end": _b64(end)}
    if t.primary_term_start:
        when = datetime.strptime(t.primary_term_start, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        out["primary_term_start_time"] = {"seconds": str(int(when.timestamp())), "nanoseconds": 0}
    return out


def _b64(hex_bytes: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_bytes)).decode()


def backup_json(ks: str, shard: str, b: BackupRecord) -> dict:
    """One BackupInfo as ``vtctldclient GetBackups --json`` prints it (protojson: proto names,
    unpopulated fields included; vttime.Time's int64 seconds as a string). vtctld sets keyspace
    and shard from the request and name, directory, time and tablet alias from the backup's name;
    engine and status it leaves unset."""
    cell, _, uid = b.tablet.rpartition("-")
    when = datetime.strptime(b.time, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    return {"name": b.name, "directory": f"{ks}/{shard}", "keyspace": ks, "shard": shard,
            "tablet_alias": {"cell": cell, "uid": int(uid)},
            "time": {"seconds": str(int(when.timestamp())), "nanoseconds": 0},
            "engine": "", "status": "UNKNOWN"}


# MySQL column type (pymysql's description) -> querypb.Type number (query.proto), for the fields list
_QUERY_TYPES = {1: 257, 2: 259, 3: 263, 8: 265, 9: 261, 4: 1036, 5: 1035, 246: 18, 7: 2061, 10: 2062, 12: 2064,
                11: 2063, 13: 2065, 253: 6165, 254: 8207, 252: 10262, 16: 2073, 245: 2078}
_QUOTED_TYPES = {7, 10, 11, 12, 13, 253, 254, 252, 245, 15, 16}


def _json_value(v, mysql_type: int) -> str:
    """sqltypes.Value.MarshalJSON: quoted types (text, blobs, dates) as JSON strings, NULL as
    null, numbers bare."""
    if v is None:
        return "null"
    if isinstance(v, (bytes, bytearray)):
        v = v.decode("utf-8", "replace")
    if mysql_type in _QUOTED_TYPES or not isinstance(v, (int, float, decimal.Decimal)):
        return json.dumps(str(v))
    return str(v)


def result_json(fields: list[str], types: list[int], rows: list[tuple], affected: int) -> str:
    """``ExecuteFetchAsDBA --json``: a sqltypes.Result through encoding/json (indented, as cli.MarshalJSON)."""
    f = ",\n".join(f'    {{\n      "name": {json.dumps(n)},\n      "type": {_QUERY_TYPES.get(t, 10262)}\n    }}'
                   for n, t in zip(fields, types))
    r = ",\n".join("    [\n" + ",\n".join(f"      {_json_value(v, t)}" for v, t in zip(row, types)) + "\n    ]"
                   for row in rows)
    return ("{\n" + f'  "fields": [\n{f}\n  ],\n' + f'  "rows_affected": {max(affected, 0)},\n  "rows_read": 0,\n'
            + '  "insert_id": 0,\n' + (f'  "rows": [\n{r}\n  ],\n' if rows else '  "rows": null,\n')
            + '  "session_state_changes": "",\n  "status_flags": 0\n}')


def result_table(fields: list[str], rows: list[tuple]) -> str:
    """cli.WriteQueryResultTable: a mysql-client-like table."""
    cells = [[("NULL" if v is None else v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)) for v in row]
             for row in rows]
    widths = [max([len(n)] + [len(r[i]) for r in cells]) for i, n in enumerate(fields)]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+\n"
    row = lambda vals: "|" + "|".join(f" {v:<{w}} " for v, w in zip(vals, widths)) + "|\n"  # noqa: E731
    return line + row(fields) + line + "".join(row(c) for c in cells) + line
