"""vtctld through ``vtctldclient``: the one module that runs it.

``vtctldclient`` runs inside a Ready vtctld pod of the VitessCluster through the Kubernetes exec
API (``vtflow.kube``), so the machine running a flow needs no Vitess binaries and no route to
vtctld's gRPC port. ``Vtctld(k, namespace, cluster)`` gives ``run`` (any command: exit status,
stdout, stderr) and typed helpers for the commands the steps use, which parse the answer and
raise an error named after the command and the cluster when it fails. Which failures are
worth a retry is decided per command (a read while vtctld or the tablets come up: transient;
a write vtctld refused: permanent).

It must not import the kubernetes client (``vtflow.kube`` does that), nor decide what to do with
the answers (skip a table, prune a backup): that is for ``tasks/``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from vtflow import kube, names
from vtflow.errors import PermanentError, TransientError, VtflowError

SERVER = "localhost:15999"      # vtctld's gRPC port, as seen from inside its own pod
CONTAINER = names.VTCTLD
CLIENT = "vtctldclient"   # the binary; also the operator's backupMethod that runs it
NO_STREAMS = "no streams found"   # a workflow that does not exist (workflow.ErrNoStreams)


@dataclass(frozen=True)
class Reply:
    """What one vtctldclient command printed."""

    rc: int
    out: str
    err: str

    @property
    def ok(self) -> bool:
        return self.rc == 0

    @property
    def said(self) -> str:
        """The last line it printed (stderr first): what a failure says, kept short."""
        lines = (self.err.strip() or self.out.strip()).splitlines()
        return lines[-1][-400:] if lines else "(no output)"


class _Failed:
    """What a failed command was and said, kept apart from the message so that callers that name
    a file or a shard themselves never parse it out of prose."""

    def __init__(self, subject: str, problem: str, fix: str | None = None, command: str = "", rc: int | None = None,
                 detail: str = ""):
        super().__init__(subject, problem, fix)  # type: ignore[call-arg]
        self.command, self.rc, self.detail = command, rc, detail

    def __reduce__(self):
        return (self.__class__, (self.subject, self.problem, self.fix, self.command, self.rc, self.detail))


class CommandFailed(_Failed, PermanentError):
    """vtctld refused the command; the same command would be refused again."""


class CommandUnavailable(_Failed, TransientError):
    """The command failed while vtctld or the tablets were not answering yet."""


class NotServing(TransientError):
    """ApplySchema found no serving tablet in the keyspace (``"FailedShards": null``)."""


# ---------------------------------------------------------------- pure: what vtctldclient prints


def failed_shards_null(stderr: str) -> bool:
    """ApplySchema's failure while the keyspace's tablets are not serving yet."""
    return re.search(r'"FailedShards"\s*:\s*null', stderr) is not None


def sql_error(stderr: str) -> str:
    """The MySQL error inside ApplySchema's failure, or the end of what it printed."""
    m = re.search(r'"Err"\s*:\s*"((?:[^"\\]|\\.)*)"', stderr)
    return json.loads(f'"{m.group(1)}"') if m else stderr.strip()[-500:]


def tablet_alias(tablet: dict) -> str:
    """A GetTablets entry's alias as Vitess prints it: ``zone1-0000000100``."""
    return f"{tablet['alias']['cell']}-{int(tablet['alias']['uid']):010d}"


# ---------------------------------------------------------------- the client


class Vtctld:
    """vtctldclient in a Ready vtctld pod of VitessCluster ``namespace/cluster``."""

    def __init__(self, k: kube.Kube, namespace: str, cluster: str, timeout_s: float = 300):
        self.k, self.namespace, self.cluster, self.timeout_s = k, namespace, cluster, timeout_s

    @property
    def where(self) -> str:
        return f"VitessCluster {self.namespace}/{self.cluster}"

    def run(self, args: list[str], stdin: str | None = None) -> Reply:
        """Run ``vtctldclient --server <vtctld> <args>``; a non-zero exit is returned, not raised."""
        pod = self.k.ready_pod(self.namespace, names.cluster_selector(self.cluster, names.VTCTLD),
                               f"vtctld of {self.where}")
        rc, out, err = self.k.exec(self.namespace, pod, CONTAINER, [CLIENT, "--server", SERVER, *args],
                                   stdin=stdin, timeout_s=self.timeout_s)
        return Reply(rc, out, err)

    def _check(self, args: list[str], target: str, fix: str, *, stdin: str | None = None, transient: bool = False,
               detail=None) -> Reply:
        reply = self.run(args, stdin)
        if reply.ok:
            return reply
        said = detail(reply) if detail else reply.said
        kind: type[VtflowError] = CommandUnavailable if transient else CommandFailed
        raise kind(f"vtctldclient {args[0]} {target} in {self.where}", f"exited {reply.rc}: {said}", fix,
                   args[0], reply.rc, said)

    # -- reads

    def get_tablets(self, keyspace: str | None = None) -> list[dict]:
        args = ["GetTablets", "--format", "json"] + (["--keyspace", keyspace] if keyspace else [])
        reply = self._check(args, f"of keyspace {keyspace}" if keyspace else "", "re-run when vtctld answers.",
                            transient=True)
        return json.loads(reply.out or "[]")

    def table_names(self, alias: str) -> set[str]:
        """The tables of tablet ``alias`` (GetSchema --table-names-only)."""
        reply = self._check(["GetSchema", "--table-names-only", alias], f"of tablet {alias}",
                            "re-run when the tablet serves.", transient=True)
        return {line.strip() for line in reply.out.splitlines() if line.strip()}

    def get_vschema(self, keyspace: str) -> dict | None:
        """The keyspace's VSchema; None when vtctld has none to give (then any VSchema differs)."""
        reply = self.run(["GetVSchema", keyspace])
        return json.loads(reply.out) if reply.ok and reply.out.strip() else None

    def get_schema(self, alias: str) -> str:
        """Tablet ``alias``'s schema: GetSchema's protojson SchemaDefinition, as it printed it."""
        return self._check(["GetSchema", alias], f"of tablet {alias}", "re-run when the tablet serves.").out

    def get_backups(self, keyspace: str, shard: str) -> list[dict]:
        reply = self._check(["GetBackups", "--json", f"{keyspace}/{shard}"], f"{keyspace}/{shard}",
                            "check vtctld's log and the backup location.")
        return json.loads(reply.out or "{}").get("backups") or []

    # -- writes

    def apply_schema(self, keyspace: str, sql: str) -> None:
        """One ApplySchema of ``sql`` (sent on stdin). NotServing while no tablet of the keyspace
        serves; CommandFailed with MySQL's error as ``detail`` otherwise."""
        reply = self.run(["ApplySchema", "--sql-file=/dev/stdin", keyspace], stdin=sql)
        if reply.ok:
            return
        if failed_shards_null(reply.err):
            raise NotServing(f"keyspace {keyspace} of {self.where}", "has no serving tablet (ApplySchema: "
                             "FailedShards null).", "wait for the cluster to be ready.")
        said = sql_error(reply.err)
        raise CommandFailed(f"vtctldclient ApplySchema {keyspace} in {self.where}", f"exited {reply.rc}: {said}",
                            "correct the statement and re-run.", "ApplySchema", reply.rc, said)

    def apply_vschema(self, keyspace: str, vschema: dict) -> None:
        self._check(["ApplyVSchema", "--vschema-file=/dev/stdin", keyspace], keyspace,
                    "check that the keyspace exists in the VitessCluster spec.", stdin=json.dumps(vschema),
                    detail=lambda r: r.err.strip()[-500:] or r.said)

    def backup_shard(self, keyspace: str, shard: str) -> None:
        """BackupShard (the tablet it picks stops replicating while it copies)."""
        self._check(["BackupShard", f"{keyspace}/{shard}"], f"{keyspace}/{shard}",
                    "read the shard's vttablet log and the backup location, then re-run.")

    def remove_backup(self, keyspace: str, shard: str, name: str) -> None:
        self._check(["RemoveBackup", f"{keyspace}/{shard}", name], f"{keyspace}/{shard} {name}",
                    "check the backup location's permissions, then re-run.",
                    detail=lambda r: r.err.strip()[-300:] or r.said)

    # -- VReplication workflows (MoveTables, Reshard: VITESS-WORKFLOWS.md section 1)

    def workflow_names(self, keyspace: str) -> list[str]:
        """``Workflow --keyspace K list``: the names of the keyspace's open workflows."""
        reply = self._check(["Workflow", "--keyspace", keyspace, "list"], f"of keyspace {keyspace}",
                            "check that the keyspace exists and its tablets serve.", transient=True)
        return json.loads(reply.out or "[]")

    def workflow_status(self, kind: str, keyspace: str, workflow: str) -> dict | None:
        """``<kind> status --format json`` of workflow ``keyspace.workflow``; None when it has no
        streams (never created, or completed or cancelled)."""
        reply = self.run([kind, "--target-keyspace", keyspace, "--workflow", workflow, "status", "--format", "json"])
        if reply.ok:
            return json.loads(reply.out)
        if NO_STREAMS in reply.err:
            return None
        raise CommandUnavailable(f"vtctldclient {kind} status {keyspace}.{workflow} in {self.where}",
                                 f"exited {reply.rc}: {reply.said}", "re-run when vtctld and the tablets answer.",
                                 kind, reply.rc, reply.said)

    def workflow_show(self, keyspace: str, workflow: str) -> dict | None:
        """``Workflow --keyspace K show --workflow W --include-logs=false``: the workflow, or None."""
        reply = self.run(["Workflow", "--keyspace", keyspace, "show", "--workflow", workflow, "--include-logs=false"])
        if reply.ok:
            return (json.loads(reply.out).get("workflows") or [None])[0]
        if NO_STREAMS in reply.err:
            return None
        raise CommandUnavailable(f"vtctldclient Workflow show {keyspace}.{workflow} in {self.where}",
                                 f"exited {reply.rc}: {reply.said}", "re-run when vtctld and the tablets answer.",
                                 "Workflow", reply.rc, reply.said)

    def workflow_command(self, kind: str, keyspace: str, workflow: str, action: str, flags: list[str],
                         fix: str) -> str:
        """One ``<kind> --target-keyspace K --workflow W <action> <flags>`` that changes something
        (create, switchtraffic, reversetraffic, complete, cancel); its output, or CommandFailed
        with ``fix``."""
        return self._check([kind, "--target-keyspace", keyspace, "--workflow", workflow, action, *flags],
                           f"{action} {keyspace}.{workflow}", fix).out

    def vdiff(self, keyspace: str, workflow: str, action: str, *args: str) -> dict | list:
        """``VDiff --target-keyspace K --workflow W <action> <args> --format json``."""
        reply = self._check(["VDiff", "--target-keyspace", keyspace, "--workflow", workflow, action, *args,
                             "--format", "json"], f"{action} {keyspace}.{workflow}",
                            "read the target tablets' vttablet log, then re-run.")
        return json.loads(reply.out or "{}")

    def get_shard(self, keyspace: str, shard: str) -> dict | None:
        """``GetShard K/S``: the shard record (``is_primary_serving``, ``key_range``...), or None
        when it does not exist."""
        reply = self.run(["GetShard", f"{keyspace}/{shard}"])
        if reply.ok:
            return json.loads(reply.out).get("shard") or {}
        if "node doesn't exist" in reply.err:
            return None
        raise CommandUnavailable(f"vtctldclient GetShard {keyspace}/{shard} in {self.where}", f"exited {reply.rc}: "
                                 f"{reply.said}", "re-run when vtctld answers.", "GetShard", reply.rc, reply.said)

    def routing_rules(self) -> list[dict]:
        """``GetRoutingRules``: the global routing rules (MoveTables writes them)."""
        reply = self._check(["GetRoutingRules"], "", "re-run when vtctld answers.", transient=True)
        return json.loads(reply.out or "{}").get("rules") or []
