"""Deploy step 5: each keyspace's SQL schema and VSchema, applied with vtctldclient in the vtctld pod.

``vtctldclient`` runs inside the vtctld pod through the Kubernetes exec API, so the machine
running the flow needs no Vitess binaries. The SQL is split as the mysql client splits it
(``tasks/sqlscript.py``) and sent one statement at a time, so that an error names its file,
line and statement and nothing after it is applied. ``CREATE TABLE`` for a table the keyspace
already has is skipped, and a VSchema equal to the current one is not sent: a re-run with an
unchanged schema changes nothing. While the tablets are not serving yet, ApplySchema fails
with ``"FailedShards": null``; that (and only that) is waited out.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from tasks import sqlscript, vschema
from tasks.common import retry_transient
from tasks.report import StepReport
from vtflow import kube
from vtflow.errors import ConfigError, PermanentError, TransientError

VTCTLD_SERVER = "localhost:15999"


class KeyspaceSchema(BaseModel):
    keyspace: str = Field(default="commerce", description="Keyspace to apply to.")
    sql: str | None = Field(default=None, description="SQL schema: a file path, an http(s) URL, or the SQL itself.")
    vschema: str | None = Field(default=None, description="VSchema: a file path, an http(s) URL, or the JSON itself.")


# ---------------------------------------------------------------- pure


def read_source(value: str, what: str) -> tuple[str, str]:
    """The text a parameter points at, and a name for it in errors: URL, file, or inline text."""
    if re.match(r"^https?://", value):
        try:
            with urllib.request.urlopen(value, timeout=30) as r:
                return r.read().decode(), value
        except (OSError, urllib.error.URLError) as e:
            raise ConfigError(f"{what} {value}", f"cannot be fetched ({e}).", "give a reachable URL or a local file.") from e
    looks_inline = "\n" in value or value.lstrip().startswith(("{", "create", "CREATE")) or ";" in value
    path = Path(value).expanduser()
    if not looks_inline:
        if not path.is_file():
            raise ConfigError(f"{what} {value}", "is not a file.", "give an existing file, a URL, or the text itself.")
        return path.read_text(), str(path)
    return value, f"inline {what}"


_CREATE_TABLE = re.compile(r"^\s*create\s+table\s+(?:if\s+not\s+exists\s+)?(?:`?[\w$]+`?\.)?`?([\w$]+)`?", re.I)


def created_table(sql: str) -> str | None:
    m = _CREATE_TABLE.match(sql)
    return m.group(1) if m else None


def schema_statements(text: str, source: str, keyspace: str) -> tuple[list[sqlscript.Statement], list[str]]:
    """The statements to apply, and notes on what was left out (shell escapes, a ``use``)."""
    statements, notes = [], []
    for part in sqlscript.split(text, source):
        if isinstance(part, sqlscript.Statement):
            statements.append(part)
        elif part.name == "use" and sqlscript.keyspace_of(part.arg) != keyspace:
            raise ConfigError(f"{part.source}:{part.line}", f"switches to keyspace {part.arg!r} but this schema is "
                              f"for {keyspace!r}.", "split the file per keyspace.")
        else:
            notes.append(f"{part.source}:{part.line}: {part.name} {part.arg!r} not run")
    return statements, notes


def failed_shards_null(stderr: str) -> bool:
    """ApplySchema's failure while the keyspace's tablets are not serving yet."""
    return re.search(r'"FailedShards"\s*:\s*null', stderr) is not None


def sql_error(stderr: str) -> str:
    m = re.search(r'"Err"\s*:\s*"((?:[^"\\]|\\.)*)"', stderr)
    return json.loads(f'"{m.group(1)}"') if m else stderr.strip()[-500:]


# ---------------------------------------------------------------- vtctldclient in the vtctld pod


def vtctld_selector(cluster: str) -> str:
    return f"planetscale.com/component=vtctld,planetscale.com/cluster={cluster}"


def vtctldclient(k: kube.Kube, namespace: str, cluster: str, args: list[str], stdin: str | None = None) -> tuple[int, str, str]:
    pod = k.ready_pod(namespace, vtctld_selector(cluster), f"vtctld of {cluster}")
    return k.exec(namespace, pod, "vtctld", ["vtctldclient", "--server", VTCTLD_SERVER, *args], stdin=stdin)


def existing_tables(k: kube.Kube, namespace: str, cluster: str, keyspace: str) -> set[str]:
    rc, out, err = vtctldclient(k, namespace, cluster, ["GetTablets", "--format", "json", "--keyspace", keyspace])
    if rc != 0:
        raise TransientError(f"keyspace {keyspace}", f"GetTablets failed: {err.strip()[-300:]}", "re-run when vtctld answers.")
    tablets = json.loads(out or "[]")
    primary = next((t for t in tablets if str(t.get("type")).upper() == "PRIMARY"), None)
    if primary is None:
        raise TransientError(f"keyspace {keyspace}", "has no PRIMARY tablet yet.", "wait for the cluster to be ready.")
    alias = f"{primary['alias']['cell']}-{int(primary['alias']['uid']):010d}"
    rc, out, err = vtctldclient(k, namespace, cluster, ["GetSchema", "--table-names-only", alias])
    if rc != 0:
        raise TransientError(f"tablet {alias}", f"GetSchema failed: {err.strip()[-300:]}", "re-run when it serves.")
    return {line.strip() for line in out.splitlines() if line.strip()}


def _apply_statement(k, namespace, cluster, keyspace, stmt: sqlscript.Statement, wait_s: float, log) -> None:
    deadline = time.monotonic() + wait_s
    while True:
        rc, _, err = vtctldclient(k, namespace, cluster, ["ApplySchema", "--sql-file=/dev/stdin", keyspace], stdin=stmt.sql)
        if rc == 0:
            return
        if not failed_shards_null(err):
            first = stmt.sql.splitlines()[0][:120]
            raise PermanentError(f"schema {stmt.where}", f"ApplySchema on keyspace {keyspace} failed: {sql_error(err)} "
                                 f"(statement: {first}); nothing after it was applied.",
                                 "correct the statement and re-run; what was applied before it stays.")
        if time.monotonic() >= deadline:
            raise TransientError(f"keyspace {keyspace}", f"tablets were not serving after {wait_s:.0f} s "
                                 "(ApplySchema: FailedShards null).", "check the cluster's tablets, then re-run.")
        log.info("keyspace %s: tablets not serving yet; retrying ApplySchema", keyspace)
        time.sleep(2)


def check_inputs(keyspaces: list[KeyspaceSchema]) -> None:
    """Read and check every schema and VSchema (the deploy does it before step 1, so that a bad
    file stops the run before anything is changed)."""
    for ks in keyspaces:
        if ks.sql:
            schema_statements(*read_source(ks.sql, "SQL schema"), ks.keyspace)
        if ks.vschema:
            vschema.check(*read_source(ks.vschema, "VSchema"))


@task(name="schema-apply", retries=1, retry_delay_seconds=5, retry_condition_fn=retry_transient, cache_policy=NO_CACHE)
def apply_schemas(k: kube.Kube, namespace: str, cluster: str, keyspaces: list[KeyspaceSchema],
                  wait_s: float = 300) -> StepReport:
    """Step 5: for each keyspace, its SQL statements, then its VSchema."""
    log = get_run_logger()
    report = StepReport(step="schema-apply")
    for ks in keyspaces:
        # everything read and checked first: bad input fails before anything is sent
        statements, notes = [], []
        if ks.sql:
            statements, notes = schema_statements(*read_source(ks.sql, "SQL schema"), ks.keyspace)
        vs = None
        if ks.vschema:
            text, source = read_source(ks.vschema, "VSchema")
            vs, warnings = vschema.check(text, source)
            report.warnings += warnings
        for note in notes:
            log.info("%s", note)
        if statements:
            have = existing_tables(k, namespace, cluster, ks.keyspace) if not k.dry_run else set()
            for stmt in statements:
                table = created_table(stmt.sql)
                ref = f"keyspace {ks.keyspace}: {stmt.where}" + (f" table {table}" if table else "")
                if table and table in have:
                    report.objects.append({"object": ref, "action": "unchanged"})
                    continue
                if not k.dry_run:
                    _apply_statement(k, namespace, cluster, ks.keyspace, stmt, wait_s, log)
                report.objects.append({"object": ref, "action": "created" if table else "changed"})
        if vs is not None:
            ref = f"keyspace {ks.keyspace}: VSchema"
            rc, out, _ = vtctldclient(k, namespace, cluster, ["GetVSchema", ks.keyspace]) if not k.dry_run else (1, "", "")
            current = json.loads(out) if rc == 0 and out.strip() else None
            if current == vs:
                report.objects.append({"object": ref, "action": "unchanged"})
                continue
            if not k.dry_run:
                rc, _, err = vtctldclient(k, namespace, cluster, ["ApplyVSchema", "--vschema-file=/dev/stdin", ks.keyspace],
                                          stdin=json.dumps(vs))
                if rc != 0:
                    raise PermanentError(f"VSchema of keyspace {ks.keyspace}", f"ApplyVSchema failed: {err.strip()[-500:]}",
                                         "check that the keyspace exists in the VitessCluster spec.")
            report.objects.append({"object": ref, "action": "changed"})
    return report
