"""`vtflow mysql` and `vtflow vtadmin` as a user runs them (subprocesses) against this session's
server and MariaDB standing in for vtgate: the password reaches no process's argv."""

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pymysql
import pytest
import yaml

from blocks.mysql import MySQLCredentials
from blocks.target import VitessTarget

KUBECONFIG = yaml.safe_dump({"clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:9"}}],
                             "users": [{"name": "u", "user": {"token": "t"}}],
                             "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                             "current-context": "x"})


@pytest.fixture(scope="module")
def blocks(prefect_server, mariadb):
    conn = pymysql.connect(host=mariadb.host, port=mariadb.port, user=mariadb.user, password=mariadb.password,
                           autocommit=True)
    with conn.cursor() as cur:
        cur.execute("CREATE DATABASE IF NOT EXISTS connect_t")
        cur.execute("CREATE TABLE IF NOT EXISTS connect_t.customer (id INT PRIMARY KEY, email TEXT)")
        cur.execute("REPLACE INTO connect_t.customer VALUES (1, 'a@x'), (2, 'tab\there'), (3, NULL)")
    conn.close()
    name = f"conn-{uuid.uuid4().hex[:6]}"
    VitessTarget(kubeconfig=KUBECONFIG, vtgate_address=f"{mariadb.host}:{mariadb.port}").save(name)
    MySQLCredentials(user=mariadb.user, password=mariadb.password).save(name)
    return name


def vtflow(*args, path=None, **kw):
    env = {**os.environ, **({"PATH": path} if path is not None else {})}
    return subprocess.run([sys.executable, "-m", "vtflow.cli", *args], capture_output=True, text=True, env=env,
                          timeout=60, stdin=subprocess.DEVNULL, **kw)


SQL = "select count(*) from connect_t.customer"
BATCH = ["id\temail", "1\ta@x", "2\ttab\\there", "3\tNULL"]


def test_mysql_e_with_the_client(blocks):
    r = vtflow("mysql", "--target", blocks, "-e", SQL)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == "3"
    r = vtflow("mysql", "--target", blocks, "-e", "select id, email from connect_t.customer order by id")
    assert r.stdout.splitlines() == BATCH, "the client's -e output, which the minimal prompt copies"


@pytest.mark.parametrize("how", ["no client on PATH", "--no-client"])
def test_mysql_e_without_a_client_prints_as_batch_mode(blocks, tmp_path, how):
    args = ("mysql", "--target", blocks, "-e", "select id, email from connect_t.customer order by id")
    r = vtflow(*args, path=str(tmp_path)) if how == "no client on PATH" else vtflow(*args, "--no-client")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == BATCH
    r = vtflow("mysql", "--target", blocks, "-e", SQL, path=str(tmp_path))
    assert r.stdout.splitlines() == ["count(*)", "3"], r.stderr


def test_mysql_prompt_reads_statements(blocks, tmp_path):
    r = subprocess.run([sys.executable, "-m", "vtflow.cli", "mysql", "--target", blocks, "--no-client"],
                       input=f"{SQL};\nexit\n", capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.splitlines() == ["count(*)", "3"], r.stdout + r.stderr


FAKE_CLIENT = """#!/bin/sh
for a in "$@"; do echo "arg:$a"; done > "$REC"
for a in "$@"; do case "$a" in --defaults-extra-file=*)
  f="${a#*=}"; stat -c "mode:%a" "$f" >> "$REC"; echo "file:$f" >> "$REC"; cat "$f" >> "$REC";; esac; done
"""


def test_the_password_is_in_no_argv_and_its_file_goes(blocks, mariadb, tmp_path):
    # a stand-in client that records its argv and the option file (the real one scrubs its own
    # argv of a password, so reading its /proc/<pid>/cmdline could not catch one passed there)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "mariadb").write_text(FAKE_CLIENT)
    (bin_dir / "mariadb").chmod(0o755)
    rec = tmp_path / "rec"
    r = subprocess.run([sys.executable, "-m", "vtflow.cli", "mysql", "--target", blocks, "-e", SQL], capture_output=True,
                       text=True, timeout=60, env={**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin", "REC": str(rec)})
    assert r.returncode == 0, r.stderr
    lines = rec.read_text().splitlines()
    args = [line for line in lines if line.startswith("arg:")]
    assert args and not any(mariadb.password in a for a in args), args
    assert "mode:600" in lines
    assert any(mariadb.password in line for line in lines if not line.startswith("arg:")), "the client gets it by file"
    defaults = next(line for line in lines if line.startswith("file:")).removeprefix("file:")
    assert not os.path.exists(defaults), "the option file with the password is removed"
    assert mariadb.password not in r.stdout + r.stderr


def test_deploy_prints_how_to_connect_and_vtadmin_and_mysql_reach_the_cluster(prefect_server, tmp_path):
    import tempfile

    from helpers import OPERATOR_YAML
    from kubedouble import DoubleConfig, KubeDouble
    from testbed import MariaDB, free_port

    db = MariaDB(root=Path(tempfile.mkdtemp(prefix="vtflow-connect-")), port=free_port()).start()
    try:
        with KubeDouble(DoubleConfig(nodes=3, node_cpu="8", node_memory="16Gi", git_version="v1.33.5+k3s1",
                                     operators=True, pod_start_delay=0.02, mysql_backend=f"{db.host}:{db.port}",
                                     mysql_user=db.user, mysql_password=db.password)) as d:
            name = f"dc-{uuid.uuid4().hex[:6]}"
            VitessTarget(kubeconfig=d.kubeconfig(tmp_path / "kubeconfig").read_text(), node_address="127.0.0.1").save(name)
            MySQLCredentials(user=db.user, password=db.password).save(name)
            r = vtflow("deploy", "--target", name, "--no-node-prep", "--until", "cluster", "--operator-manifest",
                       OPERATOR_YAML, "--ready-timeout", "60")
            assert r.returncode == 0, r.stderr[-3000:]
            assert f"connect: vtflow mysql --target {name}" in r.stdout, r.stdout
            line = next(line for line in r.stdout.splitlines() if line.startswith("  vtgate "))
            assert f"user {db.user}" in line and f"MySQL credentials block {name!r}" in line, line
            assert db.password not in r.stdout + r.stderr
            assert_task_runs_are_named_by_their_steps()
            r = vtflow("vtadmin", "--target", name)
            assert r.returncode == 0 and r.stdout.strip() == "http://127.0.0.1:30000", r.stdout + r.stderr
            from prefect.artifacts import Artifact

            link = Artifact.get("deploy-example-vtadmin")  # the deploy's link to it, beside its report
            assert link is not None, "no vtadmin link artifact"  # Prefect stores links as markdown
            assert "(http://127.0.0.1:30000)" in link.data, link.data
            r = vtflow("mysql", "--target", name, "-e", "select 1 as one", "--no-client")
            assert r.returncode == 0 and r.stdout.splitlines() == ["one", "1"], r.stdout + r.stderr
    finally:
        db.stop()


def assert_task_runs_are_named_by_their_steps():
    """Task run names without Prefect's random suffixes: the step's name (task history comes from
    events, so it can lag the run by a moment)."""
    import asyncio

    from helpers import wait_until
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import FlowRunSort

    async def names():
        async with get_client() as client:
            run = (await client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["deploy"])),
                                               sort=FlowRunSort.EXPECTED_START_TIME_DESC, limit=1))[0]
            tasks = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
            return sorted(t.name for t in tasks)
    wait_until(lambda: len(asyncio.run(names())) >= 3, 15, "the deploy's task runs")
    assert asyncio.run(names()) == ["cluster", "etcd-operator", "vitess-operator"]
