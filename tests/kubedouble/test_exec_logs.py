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


def test_exec_without_handler_is_an_internal_error_without_exit_code(core, ns):
    """containerd cannot start a program the image lacks: the kubelet's ServeExec sends an
    InternalError status (no ExitCode cause), so the Python client's ``returncode`` cannot parse it."""
    _running_pod(core, ns, "bare")
    resp = stream(core.connect_get_namespaced_pod_exec, "bare", ns, command=["mysql", "-e", "select 1"],
                  stderr=True, stdin=False, stdout=True, tty=False, _preload_content=False)
    resp.run_forever(timeout=5)
    st = json.loads(resp.read_channel(3))
    assert (st["status"], st["reason"], st["code"]) == ("Failure", "InternalError", 500)
    assert st["message"].startswith("Internal error occurred: error executing command in container: failed to exec "
                                    "in container: failed to start exec ")
    assert st["message"].endswith('exec: "mysql": executable file not found in $PATH: unknown')
    assert resp.read_stderr() == "" and resp.read_stdout() == ""


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


def _env_pod(core, ns, name, env):
    core.create_namespaced_pod(ns, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                                    "spec": {"containers": [{"name": "c", "image": "i:1", "env": env}]}})


def _waiting(core, ns, name):
    p = core.read_namespaced_pod(name, ns)
    cs = (p.status.container_statuses or [None])[0]
    return cs and cs.state.waiting and (p, cs.state.waiting)


def test_a_missing_configmap_key_keeps_the_container_in_create_container_config_error(core, ns):
    """kubelet makeEnvironmentVariables: the API error, or "couldn't find key k in ConfigMap ns/name"."""
    _env_pod(core, ns, "cfg", [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "a"}}}])
    p, w = wait_for(lambda: _waiting(core, ns, "cfg"), what="waiting")
    assert (w.reason, w.message, p.status.phase) == ("CreateContainerConfigError", 'configmap "settings" not found', "Pending")
    core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="settings"), data={"b": "1"}))
    wait_for(lambda: (lambda x: x and x[1].message == f"couldn't find key a in ConfigMap {ns}/settings")(_waiting(core, ns, "cfg")),
             what="missing key message")
    core.patch_namespaced_config_map("settings", ns, {"data": {"a": "1"}})
    wait_for(lambda: core.read_namespaced_pod("cfg", ns).status.phase == "Running", what="running once the key exists")


def test_an_optional_secret_key_ref_does_not_stop_the_container(core, ns):
    _env_pod(core, ns, "opt", [{"name": "S", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k", "optional": True}}},
                               {"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}])
    wait_for(lambda: core.read_namespaced_pod("opt", ns).status.phase == "Running", what="running")


def test_previous_log_of_a_container_that_never_restarted_is_400(core, ns):
    """kubelet validateContainerLogStatus: previous terminated container "x" in pod "y" not found."""
    _running_pod(core, ns, "fresh")
    with pytest.raises(ApiException) as e:
        core.read_namespaced_pod_log("fresh", ns, previous=True)
    assert e.value.status == 400
    assert json.loads(e.value.body)["message"] == 'previous terminated container "main" in pod "fresh" not found'


def test_multi_container_log_without_container_is_400_even_with_kubectls_annotation(core, ns):
    """apiserver LogLocation ignores kubectl.kubernetes.io/default-container (kubectl reads it)."""
    _running_pod(core, ns, "two", containers=("a", "b"))
    core.patch_namespaced_pod("two", ns, {"metadata": {"annotations": {"kubectl.kubernetes.io/default-container": "b"}}})
    with pytest.raises(ApiException) as e:
        core.read_namespaced_pod_log("two", ns)
    assert json.loads(e.value.body)["message"] == "a container name must be specified for pod two, choose one of: [a b]"
