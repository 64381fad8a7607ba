"""Deploy step 5: each keyspace's SQL schema and VSchema, applied with vtctldclient in the vtctld pod.

``vtctldclient`` runs inside the vtctld pod through ``vtflow.vtctld`` (the exec API), so the
machine running the flow needs no Vitess binaries. The SQL is split as the mysql client splits it
(``tasks/sqlscript.py``) and sent one statement at a time, so that an error names its file,
line and statement and nothing after it is applied. ``CREATE TABLE`` for a table the keyspace
already has is skipped, and a VSchema equal to the current one is not sent: a re-run with an
unchanged schema changes nothing. While the tablets are not serving yet, ApplySchema fails
with ``"FailedShards": null``; that (and only that) is waited out.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from tasks import sqlscript, vschema
from tasks.common import retry_transient
from tasks.context import TargetContext
from tasks.report import StepReport
from vtflow import kube
from vtflow.errors import ConfigError, PermanentError, ReadyTimeout, TransientError
from vtflow.sources import read_source
from vtflow.vtctld import CommandFailed, NotServing, Vtctld, tablet_alias
from vtflow.forms import OptionalText


class KeyspaceSchema(BaseModel):
    keyspace: str = Field(default="commerce", description="Keyspace to apply to.")
    sql: OptionalText = Field(default=None, description="SQL schema: a file path, an http(s) URL, or the SQL itself.")
    vschema: OptionalText = Field(default=None, description="VSchema: a file path, an http(s) URL, or the JSON itself.")


# ---------------------------------------------------------------- pure


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


# ---------------------------------------------------------------- through vtctld (vtflow/vtctld.py)


def existing_tables(k: kube.Kube, namespace: str, cluster: str, keyspace: str) -> set[str]:
    """The tables the keyspace's PRIMARY tablet has."""
    vt = Vtctld(k, namespace, cluster)
    primary = next((t for t in vt.get_tablets(keyspace) if str(t.get("type")).upper() == "PRIMARY"), None)
    if primary is None:
        raise TransientError(f"keyspace {keyspace}", "has no PRIMARY tablet yet.", "wait for the cluster to be ready.")
    return vt.table_names(tablet_alias(primary))


def _apply_statement(k, namespace, cluster, keyspace, stmt: sqlscript.Statement, wait_s: float, log) -> None:
    vt = Vtctld(k, namespace, cluster)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            vt.apply_schema(keyspace, stmt.sql)
            return
        except CommandFailed as e:
            first = stmt.sql.splitlines()[0][:120]
            raise PermanentError(f"schema {stmt.where}", f"ApplySchema on keyspace {keyspace} failed: {e.detail} "
                                 f"(statement: {first}); nothing after it was applied.",
                                 "correct the statement and re-run; what was applied before it stays.") from e
        except NotServing:
            pass  # waited out below
        if time.monotonic() >= deadline:
            # a whole wait already: a retry would only wait as long again
            raise ReadyTimeout(f"keyspace {keyspace}", f"tablets were not serving after {wait_s:.0f} s "
                                 "(ApplySchema: FailedShards null).", "check the cluster's tablets, then re-run.")
        log.info("keyspace %s: tablets not serving yet; retrying ApplySchema", keyspace)
        time.sleep(2)


@dataclass(frozen=True)
class SchemaInput:
    """One keyspace's schema as read and checked before step 1: what the step sends, nothing to re-read."""

    keyspace: str
    statements: list[sqlscript.Statement]
    notes: list[str]                  # client commands left out (shell escapes, a ``use``)
    vschema: dict | None
    warnings: list[str]               # what the VSchema check found worth saying


def check_inputs(keyspaces: list[KeyspaceSchema]) -> list[SchemaInput]:
    """Read and check every schema and VSchema once (the deploy does it before step 1, so that a
    bad file stops the run before anything is changed); the step sends what this returns."""
    out = []
    for ks in keyspaces:
        statements, notes = schema_statements(*read_source(ks.sql, "SQL schema"), ks.keyspace) if ks.sql else ([], [])
        vs, warnings = vschema.check(*read_source(ks.vschema, "VSchema")) if ks.vschema else (None, [])
        out.append(SchemaInput(ks.keyspace, statements, notes, vs, list(warnings)))
    return out


@task(name="schema", task_run_name="schema", retries=1, retry_delay_seconds=5,
      retry_condition_fn=retry_transient, cache_policy=NO_CACHE)
def apply_schemas(target: TargetContext, schemas: list[SchemaInput], wait_s: float = 300) -> StepReport:
    """Step 5: for each keyspace, its SQL statements, then its VSchema (as ``check_inputs`` read them)."""
    log = get_run_logger()
    k, namespace, cluster = target.k, target.namespace, target.cluster
    report = StepReport(step="schema")
    for ks in schemas:
        statements, notes, vs = ks.statements, ks.notes, ks.vschema
        report.warnings += ks.warnings
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
            current = Vtctld(k, namespace, cluster).get_vschema(ks.keyspace) if not k.dry_run else None
            if current == vs:
                report.objects.append({"object": ref, "action": "unchanged"})
                continue
            if not k.dry_run:
                Vtctld(k, namespace, cluster).apply_vschema(ks.keyspace, vs)
            report.objects.append({"object": ref, "action": "changed"})
    return report
