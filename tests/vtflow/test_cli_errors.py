"""Expected errors are one line: the CLI's stderr, the run's state message, and no traceback in the
run's logs on the server (a bug keeps its traceback); every flag has help; a typo in a subcommand's
flag shows that subcommand's usage."""

import argparse
import asyncio
import logging
import os
import subprocess
import sys
import uuid

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowFilter, FlowFilterName, LogFilter, LogFilterFlowRunId
from prefect.client.schemas.sorting import FlowRunSort

from vtflow.cli import build_parser
from vtflow.errors import ConfigError, _ExpectedErrorsWithoutTraceback


def vtflow(*args):
    return subprocess.run([sys.executable, "-m", "vtflow.cli", *args], capture_output=True, text=True,
                          env=dict(os.environ), timeout=120, stdin=subprocess.DEVNULL)


def last_run_and_logs(flow_name: str):
    async def read():
        async with get_client() as client:
            runs = await client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
                                               sort=FlowRunSort.EXPECTED_START_TIME_DESC, limit=1)
            logs = await client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[runs[0].id])))
            return runs[0], logs
    return asyncio.run(read())


def assert_one_line(r, name, fix):
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(("error: deploy failed: ", "error: health check failed: ")) and name in lines[0] and fix in lines[0], lines


def test_deploy_missing_target_is_one_line(prefect_server):
    name = f"nope-{uuid.uuid4().hex[:6]}"
    r = vtflow("deploy", "--target", name)
    assert_one_line(r, f"target block {name!r}: does not exist", "vtflow block create target")
    run, logs = last_run_and_logs("deploy")
    assert run.state.is_failed() and name in run.state.message and "\n" not in run.state.message
    assert logs and not any("Traceback" in log.message for log in logs), [log.message for log in logs]
    assert any("ConfigError" in log.message for log in logs), "the error is still in the run's logs, as one line"


def test_health_check_missing_target_is_one_line_and_v_shows_the_traceback(prefect_server):
    name = f"nope-{uuid.uuid4().hex[:6]}"
    r = vtflow("health-check", "--target", name)
    assert_one_line(r, f"target block {name!r}", "vtflow block create target")
    run, logs = last_run_and_logs("health-check")
    assert not any("Traceback" in log.message for log in logs)
    r = vtflow("health-check", "--target", name, "-v")
    assert r.returncode != 0 and "Traceback" in r.stderr
    assert any(line.startswith("error: health check failed: target block") for line in r.stderr.splitlines())


def test_missing_sandbox_block_says_start_the_sandbox(prefect_server):
    r = vtflow("deploy", "--target", "sandbox", "--no-node-prep")
    assert_one_line(r, "target block 'sandbox'", "start it with `vtflow sandbox up`")


def test_a_bug_keeps_its_traceback():
    f = _ExpectedErrorsWithoutTraceback()
    for exc, kept in ((KeyError("bug"), True), (ConfigError("x", "bad.", "fix it."), False)):
        try:
            raise exc
        except Exception:
            record = logging.LogRecord("prefect.flow_runs", logging.ERROR, __file__, 1, "boom", (), sys.exc_info())
        f.filter(record)
        assert (record.exc_info is not None) == kept


def walk(parser, path="vtflow"):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sp in action.choices.items():
                yield from walk(sp, f"{path} {name}")


def test_every_flag_has_help():
    missing = [f"{path} {'/'.join(a.option_strings) or a.dest}" for path, p in walk(build_parser())
               for a in p._actions if not isinstance(a, argparse._SubParsersAction) and not a.help]
    assert not missing, missing


def test_a_typo_in_a_subcommands_flag_shows_its_usage():
    for args, usage in ((["deploy", "--targt", "x"], "usage: vtflow deploy"),
                        (["deploy", "--target", "x", "--dryrun"], "usage: vtflow deploy"),
                        (["sandbox", "status", "--smoll"], "usage: vtflow sandbox status")):
        r = vtflow(*args)
        assert r.returncode == 2 and r.stderr.startswith(usage), r.stderr


def test_an_abbreviated_flag_is_a_typo_not_a_guess():
    # argparse's prefix matching took `sandbox up --smal` for --small and started a sandbox
    r = vtflow("sandbox", "up", "--smal")
    assert r.returncode == 2 and r.stderr.startswith("usage: vtflow sandbox up"), r.stderr
    assert "unrecognized arguments: --smal" in r.stderr
