"""``kubectl logs`` and ``kubectl exec`` against the double, each with the outcome a real cluster gives.

Sources: the apiserver's pods/log (pkg/registry/core/pod/rest/log.go: ValidatePodLogOptions, a 422
for PodLogOptions before the pod is read; pkg/registry/core/pod/strategy.go LogLocation: the
container checks), the kubelet's validateContainerLogStatus (pkg/kubelet/kubelet_pods.go), kubectl's
own container defaulting (staging/src/k8s.io/kubectl/pkg/polymorphichelpers/logsforobject.go),
the kubelet's ServeExec (staging/src/k8s.io/kubelet/pkg/cri/streaming/remotecommand/exec.go) with
containerd's exec errors (internal/cri/server/streaming.go, container_execsync.go) and client-go's
errorDecoderV4 (tools/remotecommand), which turns NonZeroExitCode into "command terminated with
exit code N" and any other Failure into its message.

The pods run images the double simulates (its Vitess kubelet programs, registered here on a plain
double: vitess/lite's vtctld writes its start-up lines; vitess-operator without WATCH_NAMESPACE
exits 1), so the logs come from the kubelet path, not from the test.
"""

from __future__ import annotations

import json
import queue
import re
import threading
import time

import pytest

from kubedouble.vitess.processes import vitess_component, vitess_operator

VTCTLD = {"name": "vtctld", "image": "vitess/lite:v23.0.3", "command": ["/vt/bin/vtctld"]}
VTCTLD_LINES = ["Version: 23.0.3", "Starting vtctld", "Listening for gRPC calls on port 15999"]


@pytest.fixture(scope="module", autouse=True)
def programs(double):
    for program in (vitess_component, vitess_operator):
        double.kubelet.add_program(program)


def _pod(kubectl, ns, name, containers, wait=True):
    kubectl("apply", "-n", ns, "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"containers": containers}}))
    if wait:
        kubectl("wait", "-n", ns, "--for=condition=Ready", f"pod/{name}", "--timeout=10s")


@pytest.fixture(scope="module")
def shared(kubectl, programs):
    """One namespace with pods the read-only tests share: ``vtctld`` and ``two`` (vtctld + side)."""
    ns = f"c-logs-{time.monotonic_ns() % 10**8}"
    kubectl("apply", "-f", "-", input="\n".join(json.dumps(doc) for doc in [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "vtctld", "namespace": ns},
         "spec": {"containers": [VTCTLD]}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "two", "namespace": ns},
         "spec": {"containers": [VTCTLD, {"name": "side", "image": "busybox:1.36"}]}}]))
    kubectl("wait", "-n", ns, "--for=condition=Ready", "pod/vtctld", "pod/two", "--timeout=10s")
    return ns


def _glog_text(line):
    # "I0102 03:04:05.000006       1 vtctld.go:64] Starting vtctld" -> "Starting vtctld"
    return line.split("] ", 1)[1]


def test_logs_show_the_start_up_lines_of_the_simulated_process(kubectl, shared):
    out = kubectl("logs", "-n", shared, "vtctld").stdout
    assert [_glog_text(x) for x in out.splitlines()] == VTCTLD_LINES
    assert all(re.match(r"I\d{4} \d\d:\d\d:\d\d\.\d{6} +1 \S+\.go:\d+\] ", x) for x in out.splitlines())


def test_tail_timestamps_and_limit_bytes(kubectl, shared):
    assert [_glog_text(kubectl("logs", "-n", shared, "vtctld", "--tail=1").stdout.rstrip("\n"))] == VTCTLD_LINES[-1:]
    stamped = kubectl("logs", "-n", shared, "vtctld", "--timestamps").stdout.splitlines()
    # the kubelet's fixed-width RFC 3339 nano prefix (kuberuntime/logs: "2006-01-02T15:04:05.000000000Z07:00")
    assert len(stamped) == 3
    assert all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z I\d{4} ", x) for x in stamped)
    # limitBytes cuts mid-line, at exactly that many bytes
    full = kubectl("logs", "-n", shared, "vtctld").stdout
    assert kubectl("logs", "-n", shared, "vtctld", "--limit-bytes=7").stdout == full[:7]


def test_container_selection_and_kubectls_defaulting(kubectl, shared):
    # kubectl, not the server, picks the first container and says so on stderr
    done = kubectl("logs", "-n", shared, "two")
    assert done.stderr == 'Defaulted container "vtctld" out of: vtctld, side\n'
    assert [_glog_text(x) for x in done.stdout.splitlines()] == VTCTLD_LINES
    assert kubectl("logs", "-n", shared, "two", "-c", "side").stdout == ""
    # kubectl's own check (logsforobject.go) of a container the pod lacks
    missing = kubectl("logs", "-n", shared, "two", "-c", "nope", check=False)
    assert (missing.returncode, missing.stderr) == (1, "error: container nope is not valid for pod two out of: vtctld, side\n")


def test_the_server_wants_a_container_name_for_a_pod_of_two(kubectl, shared):
    """The apiserver ignores kubectl's defaulting: without ``container`` a pod of two is a 400."""
    base = f"/api/v1/namespaces/{shared}/pods/two/log"
    done = kubectl("get", "--raw", base, check=False)
    assert done.returncode == 1
    assert done.stderr == ("Error from server (BadRequest): a container name must be specified for pod two, "
                           "choose one of: [vtctld side]\n")
    done = kubectl("get", "--raw", base + "?container=nope", check=False)
    assert (done.returncode, done.stderr) == (1, "Error from server (BadRequest): container nope is not valid for pod two\n")


def test_previous_without_a_previous_instance(kubectl, shared):
    done = kubectl("logs", "-n", shared, "vtctld", "--previous", check=False)
    assert done.returncode == 1
    assert done.stderr == ('Error from server (BadRequest): previous terminated container "vtctld" in pod "vtctld" '
                           'not found\n')


@pytest.mark.parametrize("query, message", [
    ("tailLines=-1", "tailLines: Invalid value: -1: must be greater than or equal to 0"),
    ("limitBytes=0", "limitBytes: Invalid value: 0: must be greater than 0"),
    ("sinceSeconds=0", "sinceSeconds: Invalid value: 0: must be greater than 0"),
    ("sinceSeconds=5&sinceTime=2026-01-01T00:00:00Z", ": Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified"),
    # kubectl lists several causes itself (StandardErrorMessage), one per line
    ("tailLines=-1&limitBytes=0", ("\n* tailLines: Invalid value: -1: must be greater than or equal to 0"
                                   "\n* limitBytes: Invalid value: 0: must be greater than 0")),
])
def test_pod_log_options_are_validated_before_the_pod_is_read(kubectl, ns, query, message):
    """ValidatePodLogOptions runs first: even a pod that does not exist gives the 422."""
    done = kubectl("get", "--raw", f"/api/v1/namespaces/{ns}/pods/nosuchpod/log?{query}", check=False)
    assert done.returncode == 1
    assert done.stderr == f'The PodLogOptions "nosuchpod" is invalid: {message}\n'


def test_an_unparsable_log_option_is_400(kubectl, ns):
    done = kubectl("get", "--raw", f"/api/v1/namespaces/{ns}/pods/x/log?tailLines=ten", check=False)
    assert (done.returncode, done.stderr) == (
        1, 'Error from server (BadRequest): strconv.ParseInt: parsing "ten": invalid syntax\n')


def _restarts(kubectl, ns, name, at_least):
    """The pod's (STATUS, RESTARTS) columns once RESTARTS reaches ``at_least``."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        cols = kubectl("get", "pod", "-n", ns, name, "--no-headers").stdout.split()
        if int(cols[3]) >= at_least:
            return cols
        time.sleep(0.1)
    raise AssertionError(f"pod {ns}/{name} did not restart {at_least} times: {cols}")


def test_a_crash_looping_operator_shows_why_in_its_previous_log(kubectl, ns):
    """vitess-operator without WATCH_NAMESPACE logs "Failed to get watch namespace" and exits 1;
    the kubelet restarts it into CrashLoopBackOff."""
    _pod(kubectl, ns, "op", [{"name": "vitess-operator", "image": "planetscale/vitess-operator:v2.17.0",
                              "command": ["vitess-operator"]}], wait=False)
    cols = _restarts(kubectl, ns, "op", 2)
    # NAME READY STATUS RESTARTS (AGE ago) AGE: the status reason of the waiting container
    assert cols[1:3] == ["0/1", "CrashLoopBackOff"]
    prev = kubectl("logs", "-n", ns, "op", "--previous").stdout.splitlines()
    last = json.loads(prev[-1])
    assert (last["level"], last["msg"], last["error"]) == ("error", "Failed to get watch namespace",
                                                           "WATCH_NAMESPACE must be set")
    assert json.loads(prev[0])["msg"] == "Operator Version: 2.17.0"
    pod = kubectl.json("get", "pod", "-n", ns, "op")
    term = pod["status"]["containerStatuses"][0]["lastState"]["terminated"]
    assert (term["exitCode"], term["reason"]) == (1, "Error")


def _reader(proc):
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
    return lines


def test_follow_streams_new_lines_and_ends_when_the_container_stops(kubectl, double, ns):
    _pod(kubectl, ns, "vtctld", [VTCTLD])
    proc = kubectl.popen("logs", "-f", "-n", ns, "vtctld")
    try:
        lines = _reader(proc)
        assert [_glog_text(lines.get(timeout=10).rstrip("\n")) for _ in VTCTLD_LINES] == VTCTLD_LINES
        double.log(ns, "vtctld", "vtctld", "a line written after the stream opened")
        assert lines.get(timeout=10) == "a line written after the stream opened\n"
        kubectl("delete", "pod", "-n", ns, "vtctld", "--wait=false")
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
        proc.wait()


def test_exec_runs_the_registered_program(kubectl, double, shared):
    seen = []

    def vtctldclient(argv, stdin, pod):
        seen.append((argv, pod["metadata"]["name"]))
        return 0, b'{"tablets": []}\n', b""
    remove = double.register_exec(vtctldclient, namespace=shared)
    try:
        done = kubectl("exec", "-n", shared, "vtctld", "--", "vtctldclient", "GetTablets")
        assert (done.stdout, done.stderr) == ('{"tablets": []}\n', "")
        assert seen == [(["vtctldclient", "GetTablets"], "vtctld")]
    finally:
        remove()


def test_exec_passes_the_exit_code_through(kubectl, double, shared):
    remove = double.register_exec(lambda argv, stdin, pod: (3, b"partial\n", b"boom\n"), namespace=shared)
    try:
        done = kubectl("exec", "-n", shared, "vtctld", "--", "sh", "-c", "exit 3", check=False)
        assert done.returncode == 3
        assert done.stdout == "partial\n"
        assert done.stderr == "boom\ncommand terminated with exit code 3\n"
    finally:
        remove()


def test_exec_of_a_program_the_image_lacks_is_an_internal_error(kubectl, shared):
    """containerd cannot start the exec: no exit code, the kubelet sends InternalError and kubectl
    prints its message and exits 1 (not 126: that was dockershim)."""
    done = kubectl("exec", "-n", shared, "vtctld", "--", "mysql", "-e", "select 1", check=False)
    assert (done.returncode, done.stdout) == (1, "")
    assert re.fullmatch(
        r'error: Internal error occurred: error executing command in container: failed to exec in container: '
        r'failed to start exec "[0-9a-f]{64}": OCI runtime exec failed: exec failed: unable to start container '
        r'process: exec: "mysql": executable file not found in \$PATH: unknown\n', done.stderr), done.stderr
