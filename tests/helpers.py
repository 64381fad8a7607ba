"""Small helpers shared by tests: blocks pointing at the test bed, artifact reads."""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from pathlib import Path

from blocks.nodes import SSHNodes
from tasks import versions


def nodes_block(bed, nodes, *, key=None, known_hosts=None, passphrase=None, extra_nodes=(), user=None) -> SSHNodes:
    inventory = bed.inventory(nodes)
    return SSHNodes(
        nodes=inventory["nodes"] + list(extra_nodes), user=user or inventory["user"],
        private_key=(key or bed.client_key).read_text(), passphrase=passphrase,
        known_hosts=bed.known_hosts(nodes) if known_hosts is None else known_hosts,
    )


def save_nodes_block(block: SSHNodes, prefix: str = "t") -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    block.save(name, overwrite=True)
    return name


# The ordinary user the tests run user-facing commands as, to prove they need no root: the tests'
# node user (scripts/node-user.sh). The tests run as root, with this checkout's Python under
# /root (pyenv, mode 700), so the user keeps one capability, CAP_DAC_READ_SEARCH, to read it:
# it still cannot write what it does not own, change owners, create users or bind ports below 1024.
ORDINARY_USER = "vtflow-node"


def as_ordinary_user(argv: list[str]) -> list[str]:
    """``argv`` run as ``ORDINARY_USER`` (from root), with its own groups and no other privilege."""
    import pwd

    user = pwd.getpwnam(ORDINARY_USER)
    return ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups",
            "--inh-caps=-all,+dac_read_search", "--ambient-caps=+dac_read_search", "--", *argv]


def give_to_ordinary_user(path: Path) -> Path:
    """Hand ``path`` (a folder the test made) and everything under it to ``ORDINARY_USER``; symlinks
    themselves, never what they point to (the nodes link the machine's tools)."""
    import pwd

    user = pwd.getpwnam(ORDINARY_USER)
    os.chown(path, user.pw_uid, user.pw_gid, follow_symlinks=False)
    for folder, dirs, files in os.walk(path):  # does not descend into symlinked folders
        for name in dirs + files:
            os.chown(os.path.join(folder, name), user.pw_uid, user.pw_gid, follow_symlinks=False)
    return path


def read_table_artifact(key: str) -> list[dict]:
    from prefect.artifacts import Artifact

    artifact = Artifact.get(key)
    assert artifact is not None, f"no artifact {key}"
    data = artifact.data
    return json.loads(data) if isinstance(data, str) else data


# The real upstream files (never copied into the repo): $VTFLOW_UPSTREAM_DIR, else ../shared/upstream.
UPSTREAM = Path(os.environ.get("VTFLOW_UPSTREAM_DIR", Path(__file__).resolve().parents[2] / "shared" / "upstream"))
EXAMPLES = UPSTREAM / "vitess-operator-v2.17.0" / "examples"
OPERATOR_YAML = str(EXAMPLES / "operator.yaml")  # a path string, as flows and the CLI take it
# the images the version table gives the default release (what a deploy at the double's 1.33 renders)
IMAGES = versions.DEFAULT.images().fields()


@contextlib.contextmanager
def deployed_cluster(folder: Path, *, spec=None, registry_mirror: str | None = None, until: str = "cluster",
                     git_version: str = "v1.33.5+k3s1", **params):
    """A VitessCluster deployed by the deploy flow onto the API double, whose vtgate proxies to a
    MariaDB of its own (the session's is shared; these use upstream's keyspace names). Yields
    the double with ``tag`` (blocks ``tgt-<tag>``, ``my-<tag>``), ``db``, ``kubeconfig_text``, ``k``.
    ``git_version`` is the double's Kubernetes; ``params`` more deploy parameters (operator_version ...)."""
    import asyncio
    import tempfile

    from blocks.mysql import MySQLCredentials
    from blocks.target import VitessTarget
    from flows.deploy import DeployParameters, deploy
    from testbed import MariaDB, free_port
    from vtflow import kube
    from kubedouble import DoubleConfig, KubeDouble

    db = MariaDB(root=Path(tempfile.mkdtemp(prefix="vtflow-cluster-")), port=free_port()).start()
    d = KubeDouble(DoubleConfig(nodes=3, node_cpu="8", node_memory="16Gi", git_version=git_version, operators=True,
                                pod_start_delay=0.02, mysql_backend=f"{db.host}:{db.port}", mysql_user=db.user,
                                mysql_password=db.password))
    d.start()
    try:
        tag = uuid.uuid4().hex[:6]
        kubeconfig = d.kubeconfig(folder / "kubeconfig").read_text()
        VitessTarget(kubeconfig=kubeconfig, node_address="127.0.0.1", registry_mirror=registry_mirror).save(f"tgt-{tag}")
        MySQLCredentials(user=db.user, password=db.password).save(f"my-{tag}")
        extra = {"cluster": spec} if spec is not None else {}
        state = asyncio.run(deploy(**DeployParameters(
            target_block=f"tgt-{tag}", mysql_block=f"my-{tag}", **({"operator_manifest": OPERATOR_YAML} | params),
            until=until, ready_timeout_s=60, **extra).flow_kwargs(), return_state=True))
        assert state.is_completed(), state.message
        d.tag, d.db, d.kubeconfig_text = tag, db, kubeconfig
        d.k = kube.Kube(kube.api_client(kubeconfig, None, "t"))
        yield d
    finally:
        d.stop()
        db.stop()


def served(names: list[str], env: dict):
    """`make up`'s deployments of these names (deployments/), served by `prefect serve` in a
    process of its own with ``env``; the caller waits for them to be registered, and stops it."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    return subprocess.Popen(
        [sys.executable, "-c", "from prefect import serve; from deployments import all_deployments; "
                               f"serve(*[d for d in all_deployments() if d.name in {names!r}], print_starting_message=False)"],
        cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def deployment_exists(name: str) -> bool:
    """Whether the session's Prefect server has the deployment ``flow/name`` (served ones register a moment in)."""
    import asyncio

    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    async def read() -> bool:
        async with get_client() as c:
            try:
                await c.read_deployment_by_name(name)
            except ObjectNotFound:
                return False
            return True
    return asyncio.run(read())


def finished_run(run_id, timeout: float = 180):
    """The flow run once it reaches a final state."""
    import asyncio

    from prefect import get_client

    async def read():
        async with get_client() as c:
            return await c.read_flow_run(run_id)

    def final():
        run = asyncio.run(read())
        return run if run.state and run.state.is_final() else None
    return wait_until(final, timeout, f"flow run {run_id} to reach a final state", interval=0.5)


def wait_until(predicate, timeout: float, what: str, *, interval: float = 0.05, detail=None):
    """Call ``predicate`` until it returns something truthy, and return that value.

    After ``timeout`` seconds it fails naming ``what`` it waited for, the last value, and
    ``detail()`` when given (a process's output, say). An exception from ``predicate`` ends the
    wait at once: that is how a predicate says what must hold meanwhile (the server still runs).
    To assert that something did NOT happen, wait here for an event that proves the system had
    its chance (a later request answered, a later object handled), then assert the absence."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            extra = f"\n{detail()}" if detail is not None else ""
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what} (last: {value!r}){extra}")
        time.sleep(interval)  # the poll interval: the deadline above bounds the wait


@contextlib.contextmanager
def keyspace_cluster(db, folder: Path, namespace: str = "example", cluster: str = "example"):
    """A VitessCluster on a fresh API double with ``db`` as every tablet's mysqld, under a keyspace
    of its own (the session's MariaDB is shared, and keyspace = database there). Renders no
    NodePorts: their listeners are fixed ports on 127.0.0.1, which other test sessions may hold.
    Yields (double, kube client, keyspace)."""
    from kubedouble import DoubleConfig, KubeDouble
    from tasks.cluster import ClusterSpec, not_ready, render
    from tasks.operators import load_manifest, operator_objects
    from vtflow import kube

    d = KubeDouble(DoubleConfig(nodes=3, node_cpu="8", node_memory="16Gi", operators=True, pod_start_delay=0.02,
                                mysql_backend=f"{db.host}:{db.port}", mysql_user=db.user, mysql_password=db.password))
    d.start()
    try:
        k = kube.Kube(kube.api_client(d.kubeconfig(folder / "kubeconfig").read_text(), None, "t"))
        for o in operator_objects(load_manifest(str(EXAMPLES / "operator.yaml")), namespace, None):
            k.apply(o)
        keyspace = f"ks{uuid.uuid4().hex[:8]}"
        spec = ClusterSpec(keyspaces=[{"name": keyspace}], vtadmin=False, vtgate_node_port=None, **IMAGES)
        for o in render(spec, namespace, cluster, "127.0.0.1", "user", "pw"):
            k.apply(o)
        k.wait("planetscale.com/v2", "VitessCluster", cluster, namespace, not_ready, 60)
        yield d, k, keyspace
    finally:
        d.stop()


def free_node_ports(n: int = 2) -> list[int]:
    """Node ports free on 127.0.0.1 (other doubles in other processes may hold 30000 and 30001)."""
    import socket

    import pytest

    out = []
    for port in range(31500, 32767):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        out.append(port)
        if len(out) == n:
            return out
    pytest.skip("no free node port on 127.0.0.1")


def sql(d, *statements, database=None) -> list[tuple]:
    """Run ``statements`` on a deployed cluster's MariaDB (``d.db``: what vtgate proxies to), as
    root; each one's rows, in order."""
    import pymysql

    with pymysql.connect(host=d.db.host, port=d.db.port, user=d.db.user, password=d.db.password, database=database,
                         autocommit=True) as c, c.cursor() as cur:
        out = []
        for s in statements:
            cur.execute(s)
            out.append(cur.fetchall())
        return out

