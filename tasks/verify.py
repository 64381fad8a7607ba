"""Deploy step 7: is the cluster serving what was deployed and loaded?

Checks, each a ``Finding`` (tasks/report.py: a level, the problem and its fix kept apart):
- tablets (``SHOW VITESS_TABLETS`` through vtgate): every shard of the spec has exactly one
  PRIMARY and the expected REPLICA/RDONLY tablets, all SERVING;
- rows: ``COUNT(*)`` of every table the data step loads, against what its files hold;
- the verify script (e.g. upstream's ``select_commerce_data.sql``) runs through vtgate; its
  output is rendered as ``mysql -B`` prints it (tab-separated, escaped, ``NULL``; ``\\! echo``
  lines printed, never run by a shell), so an expected-output file is simply what
  ``mysql -B < script`` printed on a known-good cluster;
- vtadmin answers on its NodePorts (API ``/health`` and ``/api/clusters``, web ``/``).
Pure functions build expectations and judge answers; the task reaches vtgate only through
``vtflow.mysql`` and vtadmin only through ``vtflow.vtadmin``. It changes nothing.
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass, field

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from blocks.mysql import MySQLCredentials
from tasks import gateway, sqlscript
from tasks.cluster import ClusterSpec
from tasks.common import retry_transient
from tasks.report import Finding, error_finding, failed
from tasks.context import TargetContext
from vtflow import mysql, vtadmin
from vtflow.errors import ConfigError, PermanentError, TransientError, VtflowError
from vtflow import names
from vtflow.names import shard_names
from vtflow.sources import read_source
from vtflow.forms import OptionalText

TABLET_TYPES = ("PRIMARY", "REPLICA", "RDONLY")


class Verification(BaseModel):
    """What the verify step checks beyond tablets and row counts."""

    enabled: bool = Field(default=True, description="Run the verify step.")
    script: OptionalText = Field(default=None, description="SQL run through vtgate (file, URL or text), e.g. "
                               "select_commerce_data.sql; its output goes into the report.")
    expected_output: OptionalText = Field(default=None, description="What `mysql -B < script` prints on a good cluster "
                                        "(file, URL or text); the script's output must equal it.")
    vtadmin: bool = Field(default=True, description="Check that vtadmin answers on its NodePorts (when the spec runs it).")
    wait_s: float = Field(default=120, ge=0, description="How long tablets may take to all be SERVING.")


@dataclass
class VerifyReport:
    gateway: str = ""
    tablets: list[list[str]] = field(default_factory=list)        # SHOW VITESS_TABLETS rows
    rows: list[tuple[str, int, int | None]] = field(default_factory=list)   # table, expected, found
    script_output: str | None = None
    findings: list[Finding] = field(default_factory=list)

    @property
    def failed(self) -> list[Finding]:
        return failed(self.findings)

    @property
    def markdown(self) -> str:
        return markdown(self)


# ---------------------------------------------------------------- pure: expectations and judgement


def expected_tablets_of(vc: dict) -> dict[tuple[str, str], dict[str, int]]:
    """(keyspace, shard) -> tablets per type, from the VitessCluster object as deployed (the one
    source for the deploy's verification, the health check and the redeploy): a replica pool of n
    is 1 PRIMARY and n-1 REPLICAs."""
    out = {}
    for ks in (vc.get("spec") or {}).get("keyspaces") or []:
        for part in ks.get("partitionings") or []:
            if "equal" in part:
                pools = (part["equal"].get("shardTemplate") or {}).get("tabletPools") or []
                shards = [(s, pools) for s in shard_names(int(part["equal"].get("parts", 1)))]
            else:
                shards = [(f"{(s.get('keyRange') or {}).get('start', '')}-{(s.get('keyRange') or {}).get('end', '')}"
                           if s.get("keyRange") else s.get("name", "-"), s.get("tabletPools") or [])
                          for s in (part.get("custom") or {}).get("shards") or []]
            for shard, pools in shards:
                want = {"PRIMARY": 0, "REPLICA": 0, "RDONLY": 0}
                for pool in pools:
                    n = int(pool.get("replicas", 0))
                    if pool.get("type", "replica") == "replica" and n:
                        want["PRIMARY"] = 1
                        want["REPLICA"] += n - 1
                    elif pool.get("type") == "rdonly":
                        want["RDONLY"] += n
                    elif pool.get("type") == "externalmaster":
                        want["PRIMARY"] = 1
                out[(ks["name"], shard)] = want
    return out


def tablet_checks(rows: list[dict], expected: dict[tuple[str, str], dict[str, int]]) -> list[Finding]:
    """One check per shard. ``rows`` are SHOW VITESS_TABLETS rows keyed by column name."""
    checks = []
    for (ks, shard), want in sorted(expected.items()):
        mine = [r for r in rows if r["Keyspace"] == ks and r["Shard"] == shard]
        serving = {t: sum(1 for r in mine if r["TabletType"] == t and r["State"] == "SERVING") for t in TABLET_TYPES}
        down = [f"{r['Alias']} ({r['TabletType']}, {r['State']})" for r in mine if r["State"] != "SERVING"]
        name = f"tablets {ks}/{shard}"
        problems = []
        if want["PRIMARY"] and serving["PRIMARY"] != 1:
            problems.append("no serving PRIMARY" if serving["PRIMARY"] == 0 else f"{serving['PRIMARY']} PRIMARY tablets")
        for t in ("REPLICA", "RDONLY"):
            if serving[t] < want[t]:
                problems.append(f"{serving[t]} of {want[t]} {t} tablets serving")
        if down:
            problems.append("not serving: " + ", ".join(down))
        if problems:
            fix = ("read the vttablet and vtorc logs of the shard (vtorc elects a PRIMARY), then re-run"
                   if not serving["PRIMARY"] else "check the named tablets' pods, then re-run")
            checks.append(Finding(name=name, level="fail", problem="; ".join(problems), fix=fix))
        else:
            counts = ", ".join(f"{serving[t]} {t}" for t in TABLET_TYPES if serving[t])
            checks.append(Finding(name=name, level="ok", problem=f"{counts} serving"))
    known = set(expected)
    for r in rows:
        if (r["Keyspace"], r["Shard"]) not in known and r["Keyspace"] in {k for k, _ in known}:
            checks.append(Finding(name=f"tablets {r['Keyspace']}/{r['Shard']}", level="warn",
                                  problem=f"tablet {r['Alias']} serves shard {r['Shard']}, which the spec does not have "
                                  "(left from a reshard?)"))
    return checks


def row_checks(rows: list[tuple[str, int, int | None]], exact: frozenset[str] | set[str] | list[str] = ()) -> list[Finding]:
    """(table, rows the files hold, rows found) -> checks: fewer is a failure; more is a warning,
    except in the ``exact`` tables (empty before the data step loaded them: every row is one of
    the files', so more means rows loaded twice), where it is a failure."""
    checks = []
    for table, want, found in rows:
        name = f"rows {table}"
        if found is None:
            checks.append(Finding(name=name, level="fail", problem="the table cannot be read",
                                  fix="run the schema and data steps"))
        elif found < want:
            checks.append(Finding(name=name, level="fail", problem=f"{found} rows, the data files hold {want}",
                                  fix="re-run the data step (it resumes from its checkpoint)"))
        elif found > want and table in exact:
            checks.append(Finding(name=name, level="fail", problem=f"{found} rows, more than the {want} the data files "
                                  "hold, in a table that was empty before they were loaded: rows were loaded twice",
                                  fix=f"empty {table} and re-run the data step, then report the duplicate load as a bug"))
        elif found > want:
            checks.append(Finding(name=name, level="warn", problem=f"{found} rows, more than the {want} the data files "
                                  "hold (rows written since, or loaded by other means)"))
        else:
            checks.append(Finding(name=name, level="ok", problem=f"{found} rows, as loaded"))
    return checks


def _escape_batch(value) -> str:
    """A value as ``mysql -B`` prints it: NULL, and \\ \\t \\n \\0 escaped."""
    if value is None:
        return "NULL"
    text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\0", "\\0")


def batch_result(columns: list[str] | None, rows: list[tuple]) -> list[str]:
    """Output lines of one statement in batch mode: nothing for an empty or row-less result."""
    if not columns or not rows:
        return []
    return ["\t".join(_escape_batch(c) for c in columns)] + ["\t".join(_escape_batch(v) for v in r) for r in rows]


def echo_line(arg: str) -> str | None:
    """What ``\\! echo ...`` prints (the shell's word splitting, without running a shell); None
    for any other shell command."""
    try:
        words = shlex.split(arg)
    except ValueError:
        return None
    if not words or words[0] != "echo":
        return None
    return " ".join(words[1:])


def output_check(actual: str, expected: str, source: str) -> Finding:
    a, e = actual.rstrip("\n").split("\n"), expected.rstrip("\n").split("\n")
    if a == e:
        return Finding(name="verify script", level="ok", problem=f"output matches {source} ({len(a)} lines)")
    for i in range(max(len(a), len(e))):
        got = a[i] if i < len(a) else "(end of output)"
        want = e[i] if i < len(e) else "(end of expected)"
        if got != want:
            return Finding(name="verify script", level="fail",
                           problem=f"output differs from {source} at line {i + 1}: got {got!r}, expected {want!r}",
                           fix="check the data loaded, or regenerate the expected file with "
                           "`mysql -B < script` on a good cluster")
    raise AssertionError("unreachable")


def markdown(report: VerifyReport) -> str:
    icon = {"ok": "ok", "warn": "WARN", "fail": "FAIL"}
    lines = ["## Verification", "", f"vtgate: {report.gateway}", "", "| check | result | problem | fix |",
             "|---|---|---|---|"]
    lines += [f"| {c.name} | {icon[c.level]} | {_cell(c.problem)} | {_cell(c.fix)} |" for c in report.findings]
    if report.tablets:
        lines += ["", "### Tablets", "", "| Cell | Keyspace | Shard | Type | State | Alias |", "|---|---|---|---|---|---|"]
        lines += ["| " + " | ".join(r[:6]) + " |" for r in report.tablets]
    if report.rows:
        lines += ["", "### Rows", "", "| table | in the data files | in the cluster |", "|---|---|---|"]
        lines += [f"| {t} | {w} | {'unreadable' if f is None else f} |" for t, w, f in report.rows]
    if report.script_output is not None:
        lines += ["", "### Verify script output", "", "```", report.script_output.rstrip("\n"), "```"]
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "/")


def read_inputs(options: Verification) -> tuple[tuple[str, str] | None, tuple[str, str] | None]:
    """The verify script (checked by splitting it) and the expected output, read before anything runs."""
    script = read_source(options.script, "verify script") if options.script else None
    if script:
        sqlscript.split(*script)
    expected = read_source(options.expected_output, "expected output") if options.expected_output else None
    if expected and not script:
        raise ConfigError("verify.expected_output", "is given without a verify script.",
                          "give verify.script too (the output compared is the script's).")
    return script, expected


# ---------------------------------------------------------------- I/O


def show_tablets(conn) -> tuple[list[str], list[dict]]:
    columns, rows = mysql.run(conn, "SHOW VITESS_TABLETS", where="vtgate: SHOW VITESS_TABLETS")
    columns = columns or []
    return columns, [dict(zip(columns, (v.decode() if isinstance(v, bytes) else v for v in r))) for r in rows]


def count_rows(conn, tables: list[str]) -> dict[str, int | None]:
    out = {}
    for table in tables:
        ks, _, name = table.partition(".")
        try:
            _, rows = mysql.run(conn, f"SELECT COUNT(*) FROM `{ks}`.`{name}`", where=f"table {table}")
            out[table] = int(rows[0][0])
        except PermanentError:
            out[table] = None
    return out


def run_script(conn, text: str, source: str, log) -> str:
    """The script's output as ``mysql -B`` prints it. Statements run one by one; ``use`` switches
    the keyspace; ``\\! echo`` prints; other client commands are logged and skipped."""
    lines: list[str] = []
    for part in sqlscript.split(text, source):
        if isinstance(part, sqlscript.Statement):
            lines += batch_result(*mysql.run(conn, part.sql, where=f"verify script {part.where}"))
        elif part.name == "use":
            mysql.use(conn, part.arg, where=f"verify script {part.source}:{part.line}")
        elif part.name == "shell" and (said := echo_line(part.arg)) is not None:
            lines.append(said)
        else:
            log.info("%s:%s: %s %r not run", part.source, part.line, part.name, part.arg)
    return "\n".join(lines) + ("\n" if lines else "")


def vtadmin_ports(spec: ClusterSpec) -> tuple[int, int] | None:
    """(web, API) NodePorts of vtadmin as the deploy renders them; None when the spec has no vtadmin."""
    return (spec.vtadmin_web_node_port, spec.vtadmin_api_node_port) if spec.vtadmin else None


def check_vtadmin(node_address: str | None, ports: tuple[int, int] | None, cluster: str) -> list[Finding]:
    if ports is None:
        return []
    if not node_address:
        return [Finding(name="vtadmin", level="fail",
                        problem="the target block has no node_address to reach vtadmin's NodePorts on",
                        fix="set node_address")]
    api = f"http://{node_address}:{ports[1]}"
    web = f"http://{node_address}:{ports[0]}/"
    try:
        status, _ = vtadmin.get(api + "/health")
        if status != 200:
            return [Finding(name="vtadmin", level="fail", problem=f"API {api}/health answered {status}",
                            fix="read the vtadmin-api container's log")]
        status, body = vtadmin.api(api, "/api/clusters")
        names = [c.get("name") for c in ((body or {}).get("result") or {}).get("clusters") or []]
        if status != 200 or cluster not in names:
            return [Finding(name="vtadmin", level="fail",
                            problem=f"API {api}/api/clusters answered {status} without cluster {cluster!r} (found {names})",
                            fix="check the vtadmin cluster configuration")]
        status, _ = vtadmin.get(web)
        if status != 200:
            return [Finding(name="vtadmin", level="fail", problem=f"web {web} answered {status}",
                            fix="read the vtadmin-web container's log")]
    except VtflowError as e:
        return [error_finding("vtadmin", e)]
    return [Finding(name="vtadmin", level="ok", problem=f"web {web} and API {api} answer; the API lists cluster {cluster}")]


@task(name="verify", task_run_name="verify", retries=1, retry_delay_seconds=5,
      retry_condition_fn=retry_transient, cache_policy=NO_CACHE)
def verify_cluster(target: TargetContext, credentials: MySQLCredentials,
                   tablets_wanted: dict[tuple[str, str], dict[str, int]],
                   vtadmin_at: tuple[int, int] | None, expected_rows: dict[str, int],
                   options: Verification,
                   inputs: tuple[tuple[str, str] | None, tuple[str, str] | None],
                   exact_tables: list[str] | None = None) -> VerifyReport:
    """Step 7: tablets, row counts, the verify script and vtadmin. Every check runs; the report
    is published as the artifact ``verify-<cluster>``; then the task fails if any check failed.
    ``inputs``: the script and expected output as ``read_inputs`` read them (before step 1);
    ``exact_tables``: the tables the data step found empty (see ``row_checks``)."""
    log = get_run_logger()
    k, namespace, cluster = target.k, target.namespace, target.cluster
    node_address, vtgate_address = target.node_address, target.vtgate_address
    script, expected_output = inputs
    gw = gateway.discover(k, namespace, cluster, node_address, vtgate_address)
    report = VerifyReport(gateway=f"{gw.address} (from {gw.how})")
    log.info("verifying through vtgate at %s", report.gateway)
    try:
        conn = credentials.connect(gw.host, gw.port, conv=mysql.TEXT_CONVERSIONS)
    except TransientError as e:
        raise TransientError(e.subject, e.problem, gateway.UNREACHABLE_FIX) from e
    try:
        want = tablets_wanted
        deadline = time.monotonic() + options.wait_s
        while True:  # right after the cluster turns ready, a replica can still be NOT_SERVING for a moment
            columns, tablets = show_tablets(conn)
            checks = tablet_checks(tablets, want)
            if not failed(checks) or time.monotonic() >= deadline:
                break
            time.sleep(2)
        report.tablets = [[str(t.get(c, "")) for c in ("Cell", "Keyspace", "Shard", "TabletType", "State", "Alias")]
                          for t in tablets]
        report.findings += checks
        counts = count_rows(conn, sorted(expected_rows))
        report.rows = [(t, expected_rows[t], counts[t]) for t in sorted(expected_rows)]
        report.findings += row_checks(report.rows, set(exact_tables or ()))
        if script:
            report.script_output = run_script(conn, *script, log)
            if expected_output:
                report.findings.append(output_check(report.script_output, expected_output[0], expected_output[1]))
            else:
                report.findings.append(Finding(name="verify script", level="ok", problem=f"{script[1]} ran"))
    finally:
        conn.close()
    if options.vtadmin:
        report.findings += check_vtadmin(node_address, vtadmin_at, cluster)
    for c in report.findings:
        (log.info if c.level == "ok" else log.warning)("%s", c.line)
    create_markdown_artifact(markdown=report.markdown, key=f"verify-{cluster}",
                             description=f"Verification of VitessCluster {namespace}/{cluster}: checks, tablets, rows")
    if report.failed:
        raise PermanentError(f"VitessCluster {namespace}/{cluster}",
                             f"{len(report.failed)} verification check(s) failed: "
                             + "; ".join(c.short for c in report.failed),
                             f"see the artifact verify-{cluster} for every check, the tablets and the rows.")
    return report


def deployed_vtadmin_ports(target: TargetContext, vc: dict) -> tuple[int, int] | None:
    """vtadmin's (web, API) NodePorts as its Service has them; None without vtadmin."""
    if not (vc.get("spec") or {}).get("vtadmin"):
        return None
    svc = target.k.get("v1", "Service", names.vtadmin_node_port_name(target.cluster), target.namespace)
    ports = {p.get("name"): p.get("nodePort") for p in ((svc or {}).get("spec") or {}).get("ports") or []}
    return (ports["web"], ports["api"]) if ports.get("web") and ports.get("api") else None


def verify_deployed(target: TargetContext, credentials: MySQLCredentials, options: Verification, inputs,
                    vc: dict | None = None) -> list[Finding]:
    """The deploy's verification against the cluster as the operator has it now (after a redeploy
    or an upgrade hop): its tablets and vtadmin's NodePorts read from the objects; [] when turned
    off. Raises when a check fails (verify_cluster)."""
    if not options.enabled:
        return []
    vc = target.k.get("planetscale.com/v2", "VitessCluster", target.cluster, target.namespace) or vc or {}
    return verify_cluster(target, credentials, expected_tablets_of(vc),
                          deployed_vtadmin_ports(target, vc) if options.vtadmin else None, {}, options, inputs).findings

