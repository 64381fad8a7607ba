"""The ``vtflow`` command line: parses arguments and calls the stack, the blocks and the flows.

Secrets are read from files, environment variables or a prompt, never from the command line
(arguments are visible to every user in ``ps``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import getpass
import os
import sys
from pathlib import Path

import yaml

from vtflow.errors import ConfigError, VtflowError


# ---------------------------------------------------------------- inputs


class InvalidFields(ConfigError):
    """A pydantic ValidationError as one ConfigError per field, each printed on a line of its own.

    pydantic's own text spans several lines per field and quotes the input, which may be a
    secret (a kubeconfig, a key): only the field's name, pydantic's complaint and a fix are kept.
    A validator gives its fix with ``vtflow.errors.invalid_field``; otherwise the field's description is the fix.
    """

    def __init__(self, error, subject: str, options: dict[str, str] | None = None, model=None):
        self.problems: list[ConfigError] = []
        fields = getattr(model, "model_fields", {})
        for err in error.errors(include_url=False, include_input=False):
            loc = [str(part) for part in err["loc"]]
            label = (options or {}).get(loc[0]) if loc else None
            label = " ".join([label, *loc[1:]]) if label else ".".join(loc)
            problem = err["msg"].removeprefix("Value error, ")
            fix = (err.get("ctx") or {}).get("fix", "") if err.get("type") == "vtflow_invalid" else ""
            if not fix:
                described = fields.get(loc[0]).description if loc and loc[0] in fields else None
                fix = f"give {label} as: {described}" if described else f"correct {label or 'it'}."
            self.problems.append(ConfigError(f"{subject} {label}".rstrip(), problem.rstrip(".") + ".", fix))
        first = self.problems[0] if self.problems else ConfigError(subject, "is not valid.", "correct it.")
        super().__init__(first.subject, first.problem, first.fix)

    def __reduce__(self):
        return (ConfigError, (self.subject, self.problem, self.fix))


def _read_file(path: str, what: str) -> str:
    p = Path(path).expanduser()
    try:
        return p.read_text()
    except OSError as e:
        raise ConfigError(f"{what} {p}", f"cannot be read ({e.strerror}).", "give a readable file.") from e


def _secret_from_env(var: str | None, what: str, prompt: bool) -> str | None:
    if var:
        value = os.environ.get(var)
        if value is None:
            raise ConfigError(f"environment variable {var}", f"is not set, so there is no {what}.", f"export {var}=... first.")
        return value
    if prompt and sys.stdin.isatty():
        return getpass.getpass(f"{what}: ")
    return None


def inline_kubeconfig_files(text: str, source: str) -> str:
    """Embed the files a kubeconfig points to (CA, client cert and key) so the block is self-contained."""
    from vtflow import kube

    data = kube.parse_kubeconfig(text, f"kubeconfig {source}")
    base = Path(source).expanduser().parent
    pairs = (("clusters", "cluster", "certificate-authority"), ("users", "user", "client-certificate"),
             ("users", "user", "client-key"))
    for section, inner, field in pairs:
        for item in data.get(section) or []:
            body = item.get(inner) or {}
            if field in body and f"{field}-data" not in body:
                path = Path(str(body.pop(field))).expanduser()
                path = path if path.is_absolute() else base / path
                body[f"{field}-data"] = base64.b64encode(_read_file(str(path), f"{field} of kubeconfig").encode()).decode()
    return yaml.safe_dump(data, sort_keys=False)


def nodes_block_from_inputs(inventory_path: str, key_path: str | None, known_hosts_path: str | None,
                            scan: bool, passphrase: str | None, user: str | None):
    """Build (not save) an SSHNodes block, listing every missing input at once."""
    from pydantic import ValidationError

    from blocks.nodes import SSHNodes
    from vtflow import ssh

    missing: list[str] = []
    try:
        inventory = yaml.safe_load(_read_file(inventory_path, "inventory")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"inventory {inventory_path}", f"is not YAML ({e}).", "see README: the inventory format.") from e
    if not isinstance(inventory, dict) or not inventory.get("nodes"):
        raise ConfigError(f"inventory {inventory_path}", "has no `nodes:` list.",
                          "list each node with name, address and optionally port, role, internal_address.")
    key_text = _read_file(key_path, "private key") if key_path else None
    if key_text is None:
        missing.append("--key FILE: the private key the nodes accept")
    else:
        ssh.load_private_key(key_text, passphrase, f"private key {key_path}")
    known = _read_file(known_hosts_path, "known_hosts") if known_hosts_path else ""
    try:
        draft = SSHNodes(nodes=inventory["nodes"], user=user or inventory.get("user") or "root",
                         private_key=key_text or "-", passphrase=passphrase, known_hosts="")
    except ValidationError as e:
        raise InvalidFields(e, f"inventory {inventory_path}", model=SSHNodes) from e
    trusted = ssh.parse_known_hosts(known, f"known_hosts {known_hosts_path}")
    lines = []
    for n in draft.nodes:
        host = n.endpoint.known_hosts_name
        keys = trusted.trusted(host)
        lines += trusted.lines_for(host)  # its revocations too, so that the block keeps refusing them
        if keys:
            continue
        if scan:
            line = ssh.fetch_host_key(n.endpoint)
            key = ssh.parse_known_hosts(line, "scan").trusted(host)[0]
            revoked = trusted.revoked(host, key)
            if revoked:
                missing.append(f"host key of {n.endpoint.label}: it presented {ssh.fingerprint(key)}, which "
                               f"{trusted.source} line {revoked.number} marks @revoked; give the node a new host key")
                continue
            print(f"scanned {n.endpoint.label}: {key.get_name()} {ssh.fingerprint(key)}"
                  " -- compare it with `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on the node")
            lines.append(line)
            continue
        why = ""
        if any(line.startswith("@revoked ") for line in trusted.lines_for(host)):
            why = " (its key in the known_hosts given is @revoked)"
        elif trusted.authority_for(host):
            why = " (only a @cert-authority line covers it: vtflow does not verify host certificates)"
        missing.append(f"host key of {n.endpoint.label}{why}: `ssh-keyscan -p {n.port} {n.address} >> FILE` "
                       "then --known-hosts FILE (or --scan-host-keys to fetch and print them)")
    if missing:
        raise ConfigError(f"SSH nodes block from {inventory_path}", "cannot be made; missing:\n  - " + "\n  - ".join(missing),
                          "give what is listed, then run the command again.")
    return draft.model_copy(update={"known_hosts": "\n".join(lines) + "\n"})


def _save(block, name: str, overwrite: bool) -> None:
    try:
        block.save(name, overwrite=overwrite)
    except ValueError as e:
        if "already" in str(e).lower():
            raise ConfigError(f"{block.get_block_type_name()} block {name!r}", "already exists.",
                              "pass --overwrite to replace it, or choose another --name.") from e
        raise
    print(f"saved {block.get_block_type_name()} block {name!r}")


# ---------------------------------------------------------------- commands


def cmd_up(args) -> int:
    from vtflow.stack import up
    return up()


def cmd_block_nodes(args) -> int:
    passphrase = _secret_from_env(args.passphrase_env, "key passphrase", prompt=False)
    block = nodes_block_from_inputs(args.inventory, args.key, args.known_hosts, args.scan_host_keys, passphrase, args.user)
    _save(block, args.name, args.overwrite)
    return 0


def cmd_block_target(args) -> int:
    from pydantic import ValidationError

    from blocks.target import VitessTarget
    from vtflow import kube

    fields = {k: getattr(args, k) for k in ("context", "namespace", "cluster_name", "vtgate_address",
                                            "node_address", "registry_mirror") if getattr(args, k) is not None}
    text = inline_kubeconfig_files(_read_file(args.kubeconfig, "kubeconfig"), args.kubeconfig)
    try:
        block = VitessTarget(kubeconfig=text, **fields)
    except ValidationError as e:
        raise InvalidFields(e, f"Vitess target block {args.name!r}", {k: "--" + k.replace("_", "-") for k in fields},
                            VitessTarget) from e
    kube.api_client(text, block.context, f"kubeconfig {args.kubeconfig}")  # usable, and its context there, before we save
    _save(block, args.name, args.overwrite)
    return 0


def cmd_block_mysql(args) -> int:
    from blocks.mysql import MySQLCredentials

    password = _secret_from_env(args.password_env, "MySQL password", prompt=True)
    if not password:
        raise ConfigError("MySQL credentials block", "has no password.",
                          "pass --password-env VAR with VAR exported, or run in a terminal to be prompted.")
    _save(MySQLCredentials(user=args.user, password=password), args.name, args.overwrite)
    return 0


def parse_route(spec: str, target_block: str, mysql_block: str) -> dict:
    """``PROJECT/REPO[:TAGS]=COMPONENT`` (``vitess/lite:v23.*=vitess``) as an ImageRoute's fields."""
    image, sep, component = spec.rpartition("=")
    repository, _, tags = image.partition(":")
    if not sep or not repository or not component:
        raise ConfigError(f"--route {spec}", "must be PROJECT/REPO[:TAG_GLOB]=COMPONENT.",
                          "e.g. --route vitess/lite:v23.*=vitess --route vitess/vtadmin=vtadmin "
                          "--route planetscale/vitess-operator=operator")
    return {"repository": repository, "tags": tags or "*", "component": component,
            "target_block": target_block, "mysql_block": mysql_block}


def cmd_block_harbor(args) -> int:
    from pydantic import ValidationError

    from blocks.harbor import HarborWebhook

    routes = [parse_route(r, args.target, args.mysql or args.target) for r in args.route]
    header = _secret_from_env(args.auth_header_env, "Harbor auth header", prompt=True)
    if not header:
        raise ConfigError("Harbor webhook block", "has no auth header.",
                          "pass --auth-header-env VAR with VAR exported (e.g. VAR=$(openssl rand -hex 24)).")
    fields = ({"routes": routes} | ({"deployment": args.deployment} if args.deployment else {})
              | ({"registry": args.registry} if args.registry else {}))
    try:
        block = HarborWebhook(auth_header=header, **fields)
    except ValidationError as e:
        raise InvalidFields(e, f"Harbor webhook block {args.name!r}",
                            {"deployment": "--deployment", "auth_header": "--auth-header-env", "registry": "--registry"},
                            HarborWebhook) from e
    _save(block, args.name, args.overwrite)
    if not routes:
        print("note: no --route given, so the receiver acknowledges every push and redeploys nothing")
    return 0


def cmd_webhook_serve(args) -> int:
    from prefect.settings import get_current_settings

    from vtflow.stack import StackSettings, port_is_free
    from vtflow.webhook import ReceiverSettings, serve

    stack = StackSettings.from_env()
    host = args.host or stack.webhook_host
    port = args.port if args.port is not None else stack.webhook_port
    if not port:
        raise ConfigError("Harbor webhook receiver", "has no port (VTFLOW_WEBHOOK_PORT=0).", "pass --port PORT.")
    if not port_is_free(host, port):
        raise ConfigError(f"{host}:{port}", "is already in use.",
                          "stop what listens there, or choose another port with --port (VTFLOW_WEBHOOK_PORT).")
    api = get_current_settings().api
    serve(host, port, ReceiverSettings(block=args.block, api_url=api.url,
                                       auth_string=api.auth_string.get_secret_value() if api.auth_string else None))
    return 0


def cmd_node_prep(args) -> int:
    from flows.node_prep import node_prep
    from tasks.node_prep import NodeRequirements

    req = NodeRequirements(**{k: v for k, v in {
        "min_cpus": args.min_cpus, "min_memory_gib": args.min_memory_gib, "min_disk_gib": args.min_disk_gib,
    }.items() if v is not None})
    state = asyncio.run(node_prep(nodes_block=args.nodes, requirements=req, install_mysql_client=args.install_mysql_client,
                                  fail_on_unreachable=not args.continue_on_unreachable, return_state=True))
    reports = state.result(raise_on_failure=False)
    if isinstance(reports, list):
        for r in reports:
            print(f"{r.node:<16} {r.worst:<5} " + ("unreachable: " + (r.error or "") if not r.reachable else
                  ", ".join(f"{f.name}={f.level}" for f in r.findings)))
    if not state.is_completed():
        return flow_failed(state, "node prep")
    return 0


def cmd_health(args) -> int:
    from flows.health import health_check
    from tasks.health import HealthThresholds

    thresholds = HealthThresholds(**{k: v for k, v in {
        "max_replication_lag_s": args.max_lag, "max_backup_age_h": args.max_backup_age}.items() if v is not None})
    state = asyncio.run(health_check(target_block=args.target, mysql_block=args.mysql or args.target,
                                     nodes_block=args.nodes, thresholds=thresholds, return_state=True))
    checks = state.result(raise_on_failure=False)
    if isinstance(checks, list):
        for c in checks:
            print(c.line)
    if not state.is_completed():
        return flow_failed(state, "health check")
    return 0


def cmd_backup(args) -> int:
    from flows.backup import backup
    from tasks.backup import OperatorSchedule, Retention

    retention = Retention(**{k: v for k, v in {"keep_count": args.keep, "keep_days": args.keep_days}.items()
                             if v is not None})
    schedule = OperatorSchedule(**({"cron": args.operator_cron} if args.operator_cron else {}))
    state = asyncio.run(backup(target_block=args.target, method=args.method, max_parallel=args.max_parallel,
                               retention=retention, prune=not args.no_prune, operator_schedule=schedule,
                               return_state=True))
    results = state.result(raise_on_failure=False)
    if isinstance(results, list):
        for r in results:
            print(f"{r.keyspace}/{r.shard}: " + (f"backup {r.name} ({r.seconds:.1f} s); pruned {len(r.pruned)}"
                                                 if r.ok and not r.error else f"failed: {r.error}")
                  + (f"; {r.note}" if r.note else ""))
    if not state.is_completed():
        return flow_failed(state, "backup")
    return 0


def cmd_restore_drill(args) -> int:
    from flows.restore_drill import restore_drill

    state = asyncio.run(restore_drill(target_block=args.target, shard=args.shard or "",
                                      catchup_timeout_s=args.catchup_timeout, return_state=True))
    results = state.result(raise_on_failure=False)
    if isinstance(results, list):
        for r in results:
            print(f"{r.name}: " + (f"restored {r.backup} in {r.restore_seconds:.1f} s, {len(r.tables)} table(s) equal "
                                   "to the primary's" if r.ok else f"failed: {r.finding.line if r.finding else '?'}"))
    if not state.is_completed():
        return flow_failed(state, "restore-drill")
    return 0


def cmd_teardown(args) -> int:
    from flows.teardown import teardown

    state = asyncio.run(teardown(target_block=args.target, scope=args.scope, keyspace=args.keyspace or "",
                                 delete_claims=args.delete_claims, delete_backups=args.delete_backups,
                                 confirm=args.confirm or "", remove_operator=args.remove_operator,
                                 dry_run=args.dry_run, timeout_s=args.timeout, return_state=True))
    result = state.result(raise_on_failure=False)
    if not isinstance(result, BaseException) and result is not None:
        verb = "would remove" if result.dry_run else "removed"
        for line in result.removed:
            print(f"{verb}: {line}")
        for line in result.kept:
            print(f"kept: {line}")
    if not state.is_completed():
        return flow_failed(state, "teardown")
    return 0


def _workflow_outcome(state, name: str) -> int:
    """Print a resharding flow's stages (and, in a dry run, each step it would take); its exit status."""
    report = state.result(raise_on_failure=False)
    if not isinstance(report, BaseException) and report is not None:
        for st in report.stages:
            print(f"{st.stage}: {st.result}" + (f": {st.detail}" if st.detail else ""))
        for line in report.planned:
            print(f"would: {line}")
    return 0 if state.is_completed() else flow_failed(state, name)


def cmd_move_tables(args) -> int:
    from flows.move_tables import move_tables

    state = asyncio.run(move_tables(target_block=args.target, mysql_block=args.mysql or args.target,
                                    source_keyspace=args.source, target_keyspace=args.to,
                                    tables=[t for t in args.tables.split(",") if t], workflow=args.workflow or "",
                                    complete=args.complete, max_lag_s=args.max_lag, dry_run=args.dry_run,
                                    return_state=True))
    return _workflow_outcome(state, "move-tables")


def cmd_reshard(args) -> int:
    from flows.reshard import reshard
    from tasks.schema import KeyspaceSchema

    prepare = []
    for item in args.prepare or []:
        ks, _, rest = item.partition("=")
        sql, _, vschema = rest.partition(",")
        prepare.append(KeyspaceSchema(keyspace=ks, sql=sql or None, vschema=vschema or None))
    state = asyncio.run(reshard(target_block=args.target, mysql_block=args.mysql or args.target, keyspace=args.keyspace,
                                source_shards=[s for s in args.source_shards.split(",") if s],
                                target_shards=[s for s in args.target_shards.split(",") if s],
                                workflow=args.workflow or "", prepare=prepare, complete=args.complete,
                                max_lag_s=args.max_lag, dry_run=args.dry_run, return_state=True))
    return _workflow_outcome(state, "reshard")


def cmd_upgrade(args) -> int:
    from flows.upgrade import upgrade

    manifests = {}
    for item in args.manifest or []:
        release, sep, source = item.partition("=")
        if not sep or not release or not source:
            print(f"vtflow upgrade: --manifest {item!r}: give it as RELEASE=FILE_OR_URL, e.g. "
                  "v2.16.0=./v2.16.0/operator-latest.yaml", file=sys.stderr)
            return 2
        manifests[release] = source
    state = asyncio.run(upgrade(target_block=args.target, mysql_block=args.mysql or args.target,
                                operator_version=args.operator_version or "", vitess_version=args.vitess_version or "",
                                operator_manifests=manifests, dry_run=args.dry_run, force=args.force,
                                backup_max_age_h=args.backup_max_age, rollout_timeout_s=args.timeout,
                                return_state=True))
    result = state.result(raise_on_failure=False)
    if not isinstance(result, BaseException) and result is not None:
        for hop in result.hops:
            print(f"{hop.hop}: {hop.result}" + (f" ({hop.seconds:.1f} s)" if hop.seconds is not None else ""))
            for change in hop.changes if result.action == "planned" else ():
                print(f"  would change: {change}")
        for w in result.warnings:
            print(f"warning: {w}")
        print(result.message)
    return 0 if state.is_completed() else flow_failed(state, "upgrade")


def cmd_deploy(args) -> int:
    from flows.deploy import DeployParameters, deploy

    fields = {
        "target_block": args.target,
        "nodes_block": "" if args.no_node_prep else (args.nodes or args.target),
        "mysql_block": args.mysql or args.target,
        "until": args.until, "dry_run": args.dry_run, "force": args.force, "force_conflicts": args.force_conflicts,
        "etcd_operator": args.etcd_operator,
        "allow_memory_overcommit": args.allow_memory_overcommit,
    }
    for name in ("operator_manifest", "operator_version", "vitess_version"):
        if getattr(args, name):
            fields[name] = getattr(args, name)
    if args.ready_timeout:
        fields["ready_timeout_s"] = args.ready_timeout
    schemas = []
    for item in args.schema:
        keyspace, _, rest = item.partition(":")
        sql, _, vs = rest.partition(":") if not rest.startswith(("http://", "https://")) else (rest, "", "")
        if not keyspace or not (sql or vs):
            raise ConfigError(f"--schema {item}", "must be KEYSPACE:SQL_FILE[:VSCHEMA_FILE].",
                              "e.g. --schema commerce:create_commerce_schema.sql:vschema_commerce_initial.json")
        schemas.append({"keyspace": keyspace, "sql": sql or None, "vschema": vs or None})
    fields["schemas"] = schemas
    data = []
    for item in args.data:
        keyspace, _, source = item.partition(":")
        if not keyspace or not source:
            raise ConfigError(f"--data {item}", "must be KEYSPACE:FILE (an .sql file, or a .csv file named after its table).",
                              "e.g. --data commerce:insert_commerce_data.sql or --data commerce:customer.csv")
        data.append({"keyspace": keyspace, "source": source})
    fields["data"] = data
    if args.data_parallel:
        fields["data_parallel"] = args.data_parallel
    fields["verify"] = {"enabled": not args.no_verify, "script": args.verify_script,
                        "expected_output": args.verify_expected}
    params = DeployParameters(**fields)
    if args.vtgate_node_port:
        params.cluster.vtgate_node_port = args.vtgate_node_port
    if args.size:
        params.cluster.size = args.size
    state = asyncio.run(deploy(**params.flow_kwargs(), return_state=True))
    reports = state.result(raise_on_failure=False)
    if not state.is_completed():
        return flow_failed(state, "deploy")
    verb = "would be" if args.dry_run else ""
    for r in reports:
        if r.skipped:
            print(f"{r.step}: skipped ({r.skipped})")
            continue
        changed = [o for o in r.objects if o["action"] != "unchanged"]
        if r.objects or not r.findings:
            print(f"{r.step}: {len(changed)} of {len(r.objects)} objects {'would change' if args.dry_run else 'changed'}")
        else:
            print(f"{r.step}:")
        for o in r.objects:
            if o["action"] != "unchanged" or args.verbose:
                print(f"  {o['object']}: {o['action']}{' (' + verb + ')' if verb and o['action'] != 'unchanged' else ''}")
        for w in r.warnings:
            print(f"  warning: {w}")
        for f in r.findings:
            print(f"  {f.line}")
    if not any(r.changed for r in reports):
        print("nothing changed" if not args.dry_run else "nothing would change")
    if not args.dry_run:
        print_connection(args.target, args.mysql or args.target)
    return 0


def print_connection(target_block: str, mysql_block: str) -> None:
    """After a deploy: how to connect (host, port, user, and which block holds the password)."""
    from vtflow import connect

    try:
        target, creds = _blocks(target_block, mysql_block)
        for line in connect.connection(target, creds, mysql_block).lines(target_block):
            print(line)
        print(f"vtadmin: vtflow vtadmin --target {target_block} --open")
    except VtflowError as e:
        print(f"connect: vtgate's address is not known yet ({e})")


def cmd_schedules_use(args) -> int:
    from vtflow.schedules import use

    use(args.name)
    return 0


def cmd_run_deployment(args) -> int:
    """Start a run of a served deployment through the Prefect API (what Jenkins does), wait for
    it, and exit 0 only when it Completed; otherwise print its state and message and exit 1."""
    import json
    import time

    from prefect import get_client
    from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError

    parameters = {}
    for item in args.param:
        key, sep, value = item.partition("=")
        if not key or not sep:
            raise ConfigError(f"--param {item}", "is not NAME=VALUE.", "e.g. --param target_block=prod")
        try:  # as `prefect deployment run --param` reads it: JSON when it parses, else the text
            parameters[key] = json.loads(value)
        except ValueError:
            parameters[key] = value

    async def run():
        async with get_client() as client:
            try:
                deployment = await client.read_deployment_by_name(args.name)
            except ObjectNotFound:
                raise ConfigError(f"deployment {args.name}", "is not on the Prefect server.",
                                  "start `make up` (it serves deploy/deploy, redeploy/redeploy, ...), or check "
                                  "PREFECT_API_URL.") from None
            try:
                flow_run = await client.create_flow_run_from_deployment(deployment.id, parameters=parameters)
            except PrefectHTTPStatusError as e:
                raise ConfigError(f"deployment {args.name}", f"refused the run: {e.response.json().get('detail')}",
                                  "fix the --param values.") from None
            print(f"{args.name}: flow run {flow_run.name} ({flow_run.id})", flush=True)
            deadline, seen = time.monotonic() + args.timeout, None
            while True:
                flow_run = await client.read_flow_run(flow_run.id)
                state = flow_run.state
                if state is not None and state.name != seen:
                    seen = state.name
                    print(f"{args.name}: {state.name}", flush=True)
                if state is not None and state.is_final():
                    return flow_run
                if time.monotonic() > deadline:
                    print(f"{args.name}: flow run {flow_run.name} still {seen} after {args.timeout:g} s; it goes on "
                          "in Prefect", file=sys.stderr)
                    return None
                await asyncio.sleep(args.poll)

    flow_run = asyncio.run(run())
    if flow_run is None:
        return 1
    if flow_run.state.is_completed():
        return 0
    print(f"{args.name}: flow run {flow_run.name} ended {flow_run.state.name}: {flow_run.state.message}", file=sys.stderr)
    return 1


def cmd_sandbox_up(args) -> int:
    from vtflow import sandbox
    from vtflow.sandbox.cluster import SMALL_NODE_CPU, SMALL_NODE_MEMORY

    cpu, memory = (SMALL_NODE_CPU, SMALL_NODE_MEMORY) if args.small else (None, None)
    return sandbox.up(node_cpu=args.node_cpu or cpu, node_memory=args.node_memory or memory,
                      node_sizes=args.node_sizes, kubernetes_version=args.kubernetes_version)


def cmd_sandbox_down(args) -> int:
    from vtflow import sandbox
    return sandbox.down()


def cmd_sandbox_status(args) -> int:
    from vtflow import sandbox
    return sandbox.status()


def _blocks(target_name: str, mysql_name: str | None = None):
    from blocks.mysql import MySQLCredentials
    from blocks.target import VitessTarget
    from flows.common import load_block

    async def load():
        target = await load_block(VitessTarget, target_name, "target")
        creds = await load_block(MySQLCredentials, mysql_name, "mysql credentials") if mysql_name else None
        return target, creds
    return asyncio.run(load())


def cmd_mysql(args) -> int:
    from vtflow import connect

    mysql_name = args.mysql or args.target
    target, creds = _blocks(args.target, mysql_name)
    conn = connect.connection(target, creds, mysql_name)
    binary = None if args.no_client else connect.client_binary()
    if binary:
        return connect.run_client(conn, creds.password.get_secret_value(), args.execute, args.database, binary)
    return connect.run_prompt(conn, creds, args.execute, args.database)


def cmd_vtadmin(args) -> int:
    from vtflow import connect

    target, _ = _blocks(args.target)
    url = connect.vtadmin_url(target)
    print(url)
    if args.open:
        import webbrowser

        webbrowser.open(url)
    return 0


def cmd_redeploy(args) -> int:
    from flows.redeploy import redeploy

    state = asyncio.run(redeploy(component=args.component, repository=args.repository, digest=args.digest, tag=args.tag,
                                 target_block=args.target, mysql_block=args.mysql or args.target,
                                 backup_first=not args.no_backup, return_state=True))
    result = state.result(raise_on_failure=False)
    if not state.is_completed():
        return flow_failed(state, "redeploy")
    print(f"{result.component}: {result.action} ({result.image}): {result.message}")
    return 0


class _Parser(argparse.ArgumentParser):
    """No abbreviated flags: argparse took `sandbox up --smal` for `--small` and started a sandbox.
    Subcommands' parsers are of the same class (argparse makes them with type(parent))."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="vtflow", description="Deploy and operate Vitess on K3s with Prefect flows.")
    sub = p.add_subparsers(dest="command", required=True)

    sub.add_parser("up", help="start the Prefect server, register blocks, serve deployments (Ctrl-C stops)").set_defaults(func=cmd_up)

    block = sub.add_parser("block", help="create vtflow's blocks from ordinary files").add_subparsers(dest="block", required=True)
    create = block.add_parser("create", help="create a block").add_subparsers(dest="kind", required=True)

    def common(sp, default_name="default"):
        sp.add_argument("--name", default=default_name, help=f"block name (default {default_name})")
        sp.add_argument("--overwrite", action="store_true", help="replace an existing block of that name")

    n = create.add_parser("nodes", help="SSH nodes from an inventory file, a key file and host keys")
    common(n)
    n.add_argument("--inventory", required=True, help="YAML: user, nodes: [{name, address, port, role, internal_address}]")
    n.add_argument("--key", help="private key file the nodes accept")
    n.add_argument("--passphrase-env", help="environment variable holding the key's passphrase")
    n.add_argument("--known-hosts", help="known_hosts file with each node's host key")
    n.add_argument("--scan-host-keys", action="store_true", help="fetch missing host keys from the nodes and print their fingerprints")
    n.add_argument("--user", help="SSH user (overrides the inventory's)")
    n.set_defaults(func=cmd_block_nodes)

    t = create.add_parser("target", help="the cluster target from a kubeconfig")
    common(t)
    t.add_argument("--kubeconfig", required=True, help="kubeconfig file (e.g. /etc/rancher/k3s/k3s.yaml); its certificate files are inlined")
    t.add_argument("--context", help="kubeconfig context (default: its current context)")
    t.add_argument("--namespace", help="namespace of the operator and the VitessCluster (default example)")
    t.add_argument("--cluster-name", help="metadata.name of the VitessCluster (default example)")
    t.add_argument("--vtgate-address", help="host:port of vtgate's MySQL port (default: found from its Service)")
    t.add_argument("--node-address", help="a node address NodePorts are reached on (vtadmin web and API)")
    t.add_argument("--registry-mirror", help="registry prefix mirroring upstream images, e.g. harbor.lan/vitess")
    t.set_defaults(func=cmd_block_target)

    m = create.add_parser("mysql", help="MySQL credentials used through vtgate")
    common(m)
    m.add_argument("--user", default="user", help="MySQL user vtgate accepts (default user)")
    m.add_argument("--password-env", help="environment variable holding the password (else prompted)")
    m.set_defaults(func=cmd_block_mysql)

    h = create.add_parser("harbor", help="the Harbor webhook receiver: auth header, and which pushes redeploy what")
    common(h)
    h.add_argument("--auth-header-env", help="environment variable holding the header value (else prompted)")
    h.add_argument("--route", action="append", default=[], metavar="PROJECT/REPO[:TAG_GLOB]=COMPONENT",
                   help="pushes that redeploy a component (vitess, vtadmin, operator), e.g. vitess/lite:v23.*=vitess; "
                        "repeatable, the first match wins")
    h.add_argument("--target", default="default", help="Vitess target block the routes redeploy (default: default)")
    h.add_argument("--mysql", help="MySQL credentials block the routes verify with (default: the target's name)")
    h.add_argument("--deployment", help="deployment whose runs the receiver creates (default: redeploy/redeploy)")
    h.add_argument("--registry", help="Harbor's registry host as its resource_url names it (e.g. harbor.lan); "
                                      "pushes naming another host are ignored (default: any host)")
    h.set_defaults(func=cmd_block_harbor)

    wh = sub.add_parser("webhook", help="the Harbor webhook receiver").add_subparsers(dest="webhook", required=True)
    ws = wh.add_parser("serve", help="receive Harbor's webhooks on POST /harbor and create redeploy runs (make up starts it)")
    ws.add_argument("--host", help="address to listen on (default VTFLOW_WEBHOOK_HOST, else VTFLOW_HOST, else 127.0.0.1)")
    ws.add_argument("--port", type=int, help="port (default VTFLOW_WEBHOOK_PORT, else 8088)")
    ws.add_argument("--block", default="default", help="Harbor webhook block name (default: default)")
    ws.set_defaults(func=cmd_webhook_serve)

    dp = sub.add_parser("deploy", help="run the deploy flow now (all seven steps), or show its plan with --dry-run")
    dp.add_argument("--target", required=True, help="Vitess target block name")
    dp.add_argument("--nodes", help="SSH nodes block (default: the target's name)")
    dp.add_argument("--no-node-prep", action="store_true", help="skip node prep")
    dp.add_argument("--mysql", help="MySQL credentials block (default: the target's name)")
    # flows.deploy.STEPS, spelled out so that `vtflow --help` need not import Prefect (a test pins them equal)
    dp.add_argument("--until", default="verify", choices=["node-prep", "etcd-operator", "vitess-operator", "cluster",
                                                          "schema", "data", "verify"],
                    help="the last step to run (default verify, all of them)")
    dp.add_argument("--schema", action="append", default=[], metavar="KEYSPACE:SQL[:VSCHEMA]",
                    help="a keyspace's SQL schema and VSchema (files or URLs); repeatable")
    dp.add_argument("--data", action="append", default=[], metavar="KEYSPACE:FILE",
                    help="a data file loaded through vtgate: SQL (mysql-client dialect, or a mysqldump) or CSV named "
                         "TABLE.csv, either maybe gzipped (.gz); repeatable")
    dp.add_argument("--data-parallel", type=int, metavar="N",
                    help="connections per data file: its tables load at once (default: two per shard, at most four)")
    dp.add_argument("--verify-script", help="SQL run through vtgate at the end, its output in the report "
                                            "(e.g. select_commerce_data.sql)")
    dp.add_argument("--verify-expected", help="what `mysql -B < script` prints on a good cluster; the output must match")
    dp.add_argument("--no-verify", action="store_true", help="skip the verify step")
    dp.add_argument("--dry-run", action="store_true", help="validate and print what would change; change nothing")
    dp.add_argument("--operator-version", metavar="vX.Y.Z",
                    help="vitess-operator release (default: the newest in vtflow's version table for the cluster's "
                         "Kubernetes; README: Versions)")
    dp.add_argument("--vitess-version", metavar="vN.0.P", help="Vitess release (default: the operator release's)")
    dp.add_argument("--operator-manifest", help="operator.yaml file or URL (default: the chosen release's, from GitHub)")
    dp.add_argument("--etcd-operator", action="store_true", help="also install coreos/etcd-operator v0.9.4")
    dp.add_argument("--force", action="store_true", help="go on with versions outside the version table (warned)")
    dp.add_argument("--force-conflicts", action="store_true",
                    help="take over fields another field manager set (a redeploy's image, a kubectl edit)")
    dp.add_argument("--allow-memory-overcommit", action="store_true",
                    help="go on when the cluster's memory requests exceed the nodes' allocatable memory")
    dp.add_argument("--vtgate-node-port", type=int, help="expose vtgate's MySQL port on this NodePort")
    dp.add_argument("--size", choices=["upstream", "fit"],
                    help="upstream: upstream 101's resources (default); fit: sized to the nodes' room, HA where they allow")
    dp.add_argument("--ready-timeout", type=float, help="seconds to wait for the cluster to be ready")
    dp.add_argument("-v", "--verbose", action="store_true",
                    help="also list unchanged objects; show Prefect's log lines and an error's traceback")
    dp.set_defaults(func=cmd_deploy)

    np = sub.add_parser("node-prep", help="run the node-prep flow now")
    np.add_argument("--nodes", default="default", help="SSH nodes block name")
    np.add_argument("--install-mysql-client", action="store_true", help="also install the MySQL client on the nodes")
    np.add_argument("--continue-on-unreachable", action="store_true", help="report an unreachable node instead of failing")
    np.add_argument("--min-cpus", type=int, help="CPUs a node needs")
    np.add_argument("--min-memory-gib", type=float, help="memory a node needs, GiB")
    np.add_argument("--min-disk-gib", type=float, help="free disk a node needs, GiB")
    np.set_defaults(func=cmd_node_prep)

    hc = sub.add_parser("health-check", help="run the health-check flow now")
    hc.add_argument("--target", required=True, help="Vitess target block name")
    hc.add_argument("--mysql", help="MySQL credentials block (default: the target's name)")
    hc.add_argument("--nodes", help="SSH nodes block: also check the nodes' memory and disk")
    hc.add_argument("--max-lag", type=float, help="replication lag that fails, seconds (default 30)")
    hc.add_argument("--max-backup-age", type=float, help="age of the newest backup that fails, hours (default 26)")
    hc.set_defaults(func=cmd_health)

    bk = sub.add_parser("backup", help="run the backup flow now")
    bk.add_argument("--target", required=True, help="Vitess target block name")
    bk.add_argument("--max-parallel", type=int, default=2, help="shards backed up at once")
    bk.add_argument("--keep", type=int, help="backups kept per shard (default 7)")
    bk.add_argument("--keep-days", type=float, help="backups older than this are removed (default 14)")
    bk.add_argument("--no-prune", action="store_true", help="keep every backup")
    bk.add_argument("--method", choices=["flow", "operator"], default="flow",
                    help="flow: vtflow runs BackupShard; operator: write a VitessBackupSchedule into the cluster "
                         "(vitess-operator v2.13+), then only prune and report")
    bk.add_argument("--operator-cron", help="with --method operator: when the operator backs up (cron, default "
                                            "'0 2 * * *')")
    bk.set_defaults(func=cmd_backup)
    rd = sub.add_parser("restore-drill", help="prove the newest backup of each shard restores (a scratch tablet, "
                                              "compared with the primary, then removed)")
    rd.add_argument("--target", required=True, help="Vitess target block name")
    rd.add_argument("--shard", help="one shard, KEYSPACE/SHARD (default: every shard in turn)")
    rd.add_argument("--catchup-timeout", type=float, default=300,
                    help="seconds the restored tablet may take to match the primary")
    rd.set_defaults(func=cmd_restore_drill)
    td = sub.add_parser("teardown", help="remove a keyspace or the whole cluster (claims and backups kept unless "
                                         "confirmed)")
    td.add_argument("--target", required=True, help="Vitess target block name")
    td.add_argument("--scope", choices=["keyspace", "cluster"], required=True, help="what to remove")
    td.add_argument("--keyspace", help="the keyspace to remove (with --scope keyspace)")
    td.add_argument("--delete-claims", action="store_true", help="also delete the tablets' and etcd's volume claims")
    td.add_argument("--delete-backups", action="store_true", help="also remove the backups")
    td.add_argument("--confirm", metavar="CLUSTER", help="the VitessCluster's name again (needed by --delete-claims "
                                                         "and --delete-backups)")
    td.add_argument("--remove-operator", action="store_true", help="also remove the vitess-operator and its CRDs "
                                                                   "(refused while another VitessCluster exists)")
    td.add_argument("--dry-run", action="store_true", help="list what would be removed and kept; change nothing")
    td.add_argument("--timeout", type=float, default=600, help="seconds to wait, in all, for what goes to be gone")
    td.set_defaults(func=cmd_teardown)

    mt = sub.add_parser("move-tables", help="move tables to another keyspace (MoveTables): tablets, create, copy, "
                                            "VDiff, switches, verify, complete; a re-run resumes")
    mt.add_argument("--target", required=True, help="Vitess target block name")
    mt.add_argument("--mysql", help="MySQL credentials block name (default: the target's name)")
    mt.add_argument("--source", default="commerce", help="the keyspace the tables are in (default commerce)")
    mt.add_argument("--to", default="customer", help="the keyspace they move to (default customer)")
    mt.add_argument("--tables", default="customer,corder", help="comma-separated tables (default customer,corder)")
    mt.add_argument("--workflow", help="the workflow's name (default <source>2<to>)")
    mt.add_argument("--complete", action="store_true", help="complete the workflow after the verification")
    mt.add_argument("--max-lag", type=int, default=30, help="replication lag allowed, seconds (default 30)")
    mt.add_argument("--dry-run", action="store_true", help="list every step and object change; change nothing")
    mt.set_defaults(func=cmd_move_tables)
    rs = sub.add_parser("reshard", help="split a keyspace's shards (Reshard): schema first, new shards, create, copy, "
                                        "VDiff, switches, verify, complete, old shards removed; a re-run resumes")
    rs.add_argument("--target", required=True, help="Vitess target block name")
    rs.add_argument("--mysql", help="MySQL credentials block name (default: the target's name)")
    rs.add_argument("--keyspace", default="customer", help="the keyspace to reshard (default customer)")
    rs.add_argument("--source-shards", default="-", help="its shards now, comma-separated (default -)")
    rs.add_argument("--target-shards", default="-80,80-", help="the shards it becomes (default -80,80-)")
    rs.add_argument("--workflow", help="the workflow's name (default <keyspace>2<keyspace>)")
    rs.add_argument("--prepare", action="append", metavar="KEYSPACE=SQL,VSCHEMA",
                    help="a schema (file, URL) and/or VSchema applied first, in the order given; repeatable")
    rs.add_argument("--complete", action="store_true", help="complete the workflow, then remove the old shards")
    rs.add_argument("--max-lag", type=int, default=30, help="replication lag allowed, seconds (default 30)")
    rs.add_argument("--dry-run", action="store_true", help="list every step and object change; change nothing")
    rs.set_defaults(func=cmd_reshard)

    ug = sub.add_parser("upgrade", help="upgrade vitess-operator and Vitess one major at a time (the version table): "
                                        "backup, operator, images, verify; a failed hop is rolled back")
    ug.add_argument("--target", required=True, help="Vitess target block name")
    ug.add_argument("--mysql", help="MySQL credentials block name (default: the target's name)")
    ug.add_argument("--operator-version", help="the release to reach (default: the newest the cluster's Kubernetes allows)")
    ug.add_argument("--vitess-version", help="the Vitess to reach, e.g. v24.0.4 (default: the release's)")
    ug.add_argument("--manifest", action="append", metavar="RELEASE=FILE",
                    help="a release's operator-latest.yaml (file or URL); repeatable; a release left out is fetched "
                         "from GitHub")
    ug.add_argument("--backup-max-age", type=float, default=24, help="hours; an older newest backup: one is taken first")
    ug.add_argument("--timeout", type=float, default=900, help="seconds each hop may take to roll out (default 900)")
    ug.add_argument("--force", action="store_true", help="go on outside the table's Kubernetes windows")
    ug.add_argument("--dry-run", action="store_true", help="show every hop and object change; change nothing")
    ug.set_defaults(func=cmd_upgrade)

    sc = sub.add_parser("schedules", help="the scheduled deployments (health check, backup)")
    scu = sc.add_subparsers(dest="schedules", required=True).add_parser(
        "use", help="point the scheduled deployments at blocks named NAME and resume their schedules")
    scu.add_argument("name", metavar="NAME", help="the target and MySQL block name, e.g. sandbox or default")
    scu.set_defaults(func=cmd_schedules_use)

    rd = sub.add_parser("run-deployment", help="start a served deployment's run through the Prefect API and wait "
                                               "for it: exit 0 when it Completed, 1 otherwise (for CI: Jenkins)")
    rd.add_argument("name", metavar="FLOW/DEPLOYMENT", help="e.g. redeploy/redeploy or deploy/deploy")
    rd.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                    help="a parameter (JSON when it parses, else text), e.g. --param target_block=prod; repeatable")
    rd.add_argument("--timeout", type=float, default=3600, help="seconds to wait for the run (default 3600)")
    rd.add_argument("--poll", type=float, default=2, help="seconds between looks at the run's state (default 2)")
    rd.set_defaults(func=cmd_run_deployment)

    sb = sub.add_parser("sandbox", help="a SIMULATED local cluster to run every flow against (needs root)")
    sbs = sb.add_subparsers(dest="sandbox", required=True)
    su = sbs.add_parser("up", help="start the Kubernetes API double, MariaDB and 3 sshd nodes; save blocks named sandbox")
    su.add_argument("--node-cpu", help="CPUs per simulated node (default 4)")
    su.add_argument("--node-memory", help="memory per simulated node, e.g. 4Gi (default 8Gi)")
    su.add_argument("--small", action="store_true", help="2 CPU / 4Gi nodes, as on the original blog's cluster")
    su.add_argument("--node-sizes", metavar="CPU/MEM,...",
                    help="one size per node, e.g. 2/4Gi,1/2Gi,2/4Gi (instead of --node-cpu/--node-memory)")
    su.add_argument("--kubernetes-version", metavar="1.MINOR",
                    help="the Kubernetes minor the cluster plays, 1.24 ... 1.35 (default 1.33): its API groups, "
                         "schemas and the nodes' K3s version")
    su.set_defaults(func=cmd_sandbox_up)
    sbs.add_parser("down", help="stop the sandbox, delete its blocks and its folder").set_defaults(func=cmd_sandbox_down)
    sbs.add_parser("status", help="say what of the sandbox runs").set_defaults(func=cmd_sandbox_status)

    my = sub.add_parser("mysql", help="open the mysql client on vtgate with the credentials block's password "
                                      "(never on the command line); a minimal prompt when no client is installed")
    my.add_argument("--target", required=True, help="Vitess target block name")
    my.add_argument("--mysql", help="MySQL credentials block (default: the target's name)")
    my.add_argument("-e", "--execute", metavar="SQL", help="run one statement, print its rows tab-separated with a header")
    my.add_argument("-D", "--database", help="default database (keyspace), e.g. commerce")
    my.add_argument("--no-client", action="store_true", help="use the minimal prompt even when a client is installed")
    my.set_defaults(func=cmd_mysql)

    va = sub.add_parser("vtadmin", help="print vtadmin's URL (its web NodePort at the target's node_address)")
    va.add_argument("--target", required=True, help="Vitess target block name")
    va.add_argument("--open", action="store_true", help="also open it in a web browser")
    va.set_defaults(func=cmd_vtadmin)

    rdc = sub.add_parser("redeploy", help="run the redeploy flow now: roll a component to an image, verify, roll back on failure")
    rdc.add_argument("--target", default="default", help="Vitess target block name (default: default)")
    rdc.add_argument("--mysql", help="MySQL credentials block (default: the target's name)")
    rdc.add_argument("--component", required=True, choices=["vitess", "vtadmin", "operator"], help="what to roll")
    rdc.add_argument("--repository", required=True, help="image repository, e.g. harbor.lan/vitess/lite")
    rdc.add_argument("--digest", required=True, help="image digest, sha256:...")
    rdc.add_argument("--tag", help="the pushed tag, for the report")
    rdc.add_argument("--no-backup", action="store_true", help="skip the backup taken before a vitess roll")
    rdc.set_defaults(func=cmd_redeploy)

    p.add_argument("-v", "--verbose", dest="verbose_all", action="store_true",
                   help="show Prefect's log lines and the traceback of an error")
    for name in RUNS_FLOWS - {"deploy"}:
        sub.choices[name].add_argument("-v", "--verbose", action="store_true",
                                       help="show Prefect's log lines and the traceback of an error")
    return p


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """parse_args, but an unknown option is reported by the (sub)command it was given to, with
    that command's usage (argparse's own parse_args reports it with the top parser's usage)."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        command = parser
        while True:
            action = next((a for a in command._actions if isinstance(a, argparse._SubParsersAction)), None)
            if action is None or getattr(args, action.dest, None) not in action.choices:
                break
            command = action.choices[getattr(args, action.dest)]
        command.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


# commands that run a flow in this process: their runs must heartbeat as the server expects
RUNS_FLOWS = {"deploy", "node-prep", "health-check", "backup", "redeploy"}


def _on_make_up_server(func, args) -> int:
    """Run a command against PREFECT_API_URL (environment or profile), else `make up`'s server,
    rather than the throwaway in-process server Prefect would start; with `make up`'s auth string
    when it is that server (vtflow.stack.client_settings)."""
    if args.command == "up":
        return func(args)
    from prefect.settings import temporary_settings

    from vtflow.stack import client_settings, heartbeat_settings

    with temporary_settings(updates=client_settings()):
        if args.command not in RUNS_FLOWS:
            return func(args)
        with temporary_settings(updates=heartbeat_settings()):
            return func(args)


class _ConsoleOnlyProblems:
    """What the CLI shows of Prefect's console logs without ``-v``: the runs' warnings and bugs'
    errors. An expected error (a VtflowError) and the "Finished in state" lines are left to the
    CLI's own one-line ``error: ...``; progress lines (INFO) stay in the run's logs on the server,
    and Prefect's background services (loggers named after their class, e.g. EventsWorker "Still
    processing items" at exit) are not the user's business."""

    @staticmethod
    def filter(record) -> bool:
        import logging

        if record.levelno < logging.WARNING or getattr(record, "vtflow_expected", False):
            return False
        if not record.name.startswith("prefect") and record.levelno < logging.ERROR:
            return False
        return not str(record.msg).startswith("Finished in state")


def _quiet_console() -> None:
    import prefect.main  # noqa: F401  (configures Prefect's logging: its console handler exists from here)
    import logging

    for handler in logging.getLogger().handlers:
        handler.addFilter(_ConsoleOnlyProblems)


def flow_failed(state, what: str) -> int:
    """The end of a command whose flow run did not complete (exit status 1): a VtflowError as the
    one `error:` line main prints for it (a traceback before it with -v), any other failure as the
    run's state message."""
    exc = state.result(raise_on_failure=False)
    if isinstance(exc, VtflowError):
        print_error(exc, f"{what} failed: ")
    else:
        print(f"error: {what} failed: {state.message}", file=sys.stderr)
    return 1


def print_error(e: VtflowError, prefix: str = "") -> None:
    if os.environ.get("VTFLOW_TRACEBACKS") == "1":
        import traceback

        traceback.print_exception(e, file=sys.stderr)
    for problem in getattr(e, "problems", None) or [e]:
        print(f"error: {prefix}{problem}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    if args.verbose_all or getattr(args, "verbose", False):
        os.environ["VTFLOW_TRACEBACKS"] = "1"
    elif args.command in RUNS_FLOWS:
        _quiet_console()
    try:
        try:
            return _on_make_up_server(args.func, args)
        except Exception as e:
            from pydantic import ValidationError  # here, not at the top: `vtflow --help` stays light

            if isinstance(e, ValidationError):
                raise InvalidFields(e, e.title) from e
            raise
    except VtflowError as e:
        print_error(e)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
