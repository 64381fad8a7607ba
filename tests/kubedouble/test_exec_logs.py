"""Pod exec over the websocket protocol of kubernetes.stream, and pod logs."""

import json

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException
from kubernetes.stream import stream

from kubedouble_helpers import wait_for


def _running_pod(core, ns, name, labels=None, containers=("main",)):
    pod = client.V1Pod(metadata=client.V1ObjectMeta(name=name, labels=labels or {"app": name}),
                       spec=client.V1PodSpec(containers=[client.V1Container(name=c, image="vitess/lite:v23") for c in containers]))
    core.create_namespaced_pod(ns, pod)
    wait_for(lambda: core.read_namespaced_pod(name, ns).status.phase == "Running", what=f"pod {name} running")


def test_exec_dispatches_to_registered_handler(double, core, ns):
    _running_pod(core, ns, "vtctld", labels={"planetscale.com/component": "vtctld"})
    seen = {}

    def vtctldclient(argv, stdin, pod):
        seen["argv"], seen["pod"] = argv, pod["metadata"]["name"]
        return 0, b'{"tablets": []}\n', b""
    remove = double.register_exec(vtctldclient, namespace=ns, label_selector="planetscale.com/component=vtctld")
    try:
        out = stream(core.connect_get_namespaced_pod_exec, "vtctld", ns,
                     command=["vtctldclient", "--server", "localhost:15999", "GetTablets"],
                     stderr=True, stdin=False, stdout=True, tty=False)
        assert json.loads(out) == {"tablets": []}
        assert seen == {"argv": ["vtctldclient", "--server", "localhost:15999", "GetTablets"], "pod": "vtctld"}
    finally:
        remove()


def test_exec_exit_code_and_stdin(double, core, ns):
    _running_pod(core, ns, "shell")
    remove = double.register_exec(lambda argv, stdin, pod: (3, b"got:" + (stdin or b""), b"boom\n"), namespace=ns)
    try:
        resp = stream(core.connect_get_namespaced_pod_exec, "shell", ns, command=["sh", "-c", "cat; exit 3"],
                      stderr=True, stdin=True, stdout=True, tty=False, _preload_content=False)
        resp.write_stdin("hello")
        resp.run_forever(timeout=5)
        assert resp.read_stdout() == "got:hello"
        assert resp.read_stderr() == "boom\n"
        assert resp.returncode == 3
    finally:
        remove()


def test_exec_without_handler_is_command_not_found(core, ns):
    _running_pod(core, ns, "bare")
    resp = stream(core.connect_get_namespaced_pod_exec, "bare", ns, command=["mysql", "-e", "select 1"],
                  stderr=True, stdin=False, stdout=True, tty=False, _preload_content=False)
    resp.run_forever(timeout=5)
    assert resp.returncode == 126
    assert 'executable file not found in $PATH' in resp.read_stderr()


def test_exec_into_pending_pod_is_400(api, core, ns):
    pod = client.V1Pod(metadata=client.V1ObjectMeta(name="huge"), spec=client.V1PodSpec(containers=[
        client.V1Container(name="c", image="i:1", resources=client.V1ResourceRequirements(requests={"memory": "64Gi"}))]))
    core.create_namespaced_pod(ns, pod)
    with pytest.raises(ApiException) as e:
        stream(core.connect_get_namespaced_pod_exec, "huge", ns, command=["true"], stderr=True, stdin=False,
               stdout=True, tty=False)
    assert "400" in str(e.value)


def test_pod_logs_with_tail_and_container(double, core, ns):
    _running_pod(core, ns, "logger", containers=("a", "b"))
    for i in range(5):
        double.log(ns, "logger", "a", f"line {i}")
    assert core.read_namespaced_pod_log("logger", ns, container="a", tail_lines=2) == "line 3\nline 4\n"
    assert core.read_namespaced_pod_log("logger", ns, container="b") == ""
    with pytest.raises(ApiException) as e:
        core.read_namespaced_pod_log("logger", ns)
    assert e.value.status == 400 and "a container name must be specified" in e.value.body
