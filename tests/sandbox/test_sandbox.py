"""`vtflow sandbox up` / `down` / `status`, run as a user runs them: subprocesses against this session's
server, as an ordinary user (no root: tests/helpers.py ``as_ordinary_user``)."""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from kubernetes import client, config

from blocks import MySQLCredentials, SSHNodes, VitessTarget
from helpers import ORDINARY_USER, as_ordinary_user, give_to_ordinary_user
from vtflow import sandbox
from vtflow.errors import ConfigError
from vtflow.sandbox import cluster
from vtflow.sandbox.procs import free_port, port_open

pytestmark = pytest.mark.skipif(os.getuid() != 0, reason="the tests switch to an ordinary user, which needs root")


@pytest.fixture
def state_dir():
    # not pytest's tmp_path: its folders are closed to other users, and the ordinary user owns this one
    d = give_to_ordinary_user(Path(tempfile.mkdtemp(prefix="vtflow-sandbox-test-")))
    yield d
    vtflow("sandbox", "down", state=d)
    shutil.rmtree(d, ignore_errors=True)


def vtflow(*args, state: Path, api_url: str | None = None):
    """`vtflow ARGS` as the ordinary user, with the state folder it owns."""
    env = {**os.environ, "VTFLOW_STATE_DIR": str(state), "PREFECT_HOME": str(state / "prefect-home"),
           "HOME": str(state)}
    if api_url:
        env["PREFECT_API_URL"] = api_url
    give_to_ordinary_user(state)  # what a test wrote there as root
    return subprocess.run(as_ordinary_user([sys.executable, "-m", "vtflow.cli", *args]), capture_output=True,
                          text=True, env=env, timeout=180, stdin=subprocess.DEVNULL)


def uid_of(pid: str | int) -> int:
    line = next(ln for ln in Path(f"/proc/{pid}/status").read_text().splitlines() if ln.startswith("Uid:"))
    return int(line.split()[1])


def leftovers(root: Path) -> list[str]:
    """Processes whose environment or command line mentions the sandbox folder (independent of procs.sweep)."""
    needle = str(root).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            data = (entry / "cmdline").read_bytes() + b"\0" + (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in data and state != "Z":
            found.append(f"{entry.name}: {(entry / 'cmdline').read_bytes()[:120]!r}")
    return found


def blocks_saved() -> list[str]:
    saved = []
    for block_type in (VitessTarget, SSHNodes, MySQLCredentials):
        try:
            block_type.load("sandbox")
            saved.append(block_type.get_block_type_slug())
        except ValueError:
            pass
    return saved


UPSTREAM = Path(os.environ.get("VTFLOW_UPSTREAM_DIR", Path(__file__).resolve().parents[3] / "shared" / "upstream"))


def kubectl_from_the_printed_line(printed: str, home: Path) -> None:
    """What a user does with the `export KUBECONFIG=` line `sandbox up` prints: the real kubectl
    applies the upstream operator.yaml (client-side, default validation), waits for its CRDs and
    the operator's rollout, as on a real cluster."""
    line = next((ln for ln in printed.splitlines() if "export KUBECONFIG=" in ln), None)
    assert line, f"sandbox up printed no export KUBECONFIG= line:\n{printed}"
    shell = line.split("export ", 1)[1].split("   ")[0]
    env = {"PATH": os.environ["PATH"], "HOME": str(home)}
    kubectl = str(Path(sys.executable).with_name("kubectl"))

    def run(*args, input=None):
        done = subprocess.run(["sh", "-c", f'export {shell}; exec "$@"', "sh", kubectl, *args], input=input,
                              capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}{done.stdout}"
        return done.stdout
    run("apply", "-f", "-", input='{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "example"}}')
    applied = run("apply", "-n", "example", "-f", str(UPSTREAM / "vitess-operator-v2.17.0" / "examples" / "operator.yaml"))
    assert "deployment.apps/vitess-operator created" in applied, applied
    assert "condition met" in run("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    assert "successfully rolled out" in run("rollout", "status", "-n", "example", "deployment/vitess-operator",
                                            "--timeout=90s")


def test_up_then_down_twice_leaves_nothing_behind(prefect_server, state_dir):
    root = state_dir / "sandbox"
    for round_ in (1, 2):
        up = vtflow("sandbox", "up", state=state_dir)
        assert up.returncode == 0, up.stdout + up.stderr
        assert "SIMULATED" in up.stdout and "started kubedouble" in up.stdout
        info = json.loads((root / "sandbox.json").read_text())

        target = VitessTarget.load("sandbox")
        network = info["network"]
        assert (target.namespace, target.cluster_name, target.node_address) == ("example", "example", f"{network}.2")
        # every process runs as the user who ran `up`: no root anywhere
        import pwd
        uid = pwd.getpwnam(ORDINARY_USER).pw_uid
        assert {p.stem: uid_of(p.read_text().strip()) for p in (root / "run").glob("*.pid")} == \
            {name: uid for name in ["mariadb", "kubedouble", *cluster.NODE_NAMES]}
        core = client.CoreV1Api(config.new_client_from_config(str(root / "kubeconfig")))
        # one description of the nodes: the same names and addresses over SSH and in Kubernetes
        kube_nodes = {n.metadata.name: next(a.address for a in n.status.addresses if a.type == "InternalIP")
                      for n in core.list_node().items}
        assert kube_nodes == {f"node-{i}": f"{network}.{i + 1}" for i in (1, 2, 3)}
        assert len(client.CoreV1Api(target.api_client()).list_node().items) == 3
        double_pid = (root / "run" / "kubedouble.pid").read_text().strip()
        double_argv = Path(f"/proc/{double_pid}/cmdline").read_bytes().decode().split("\0")
        assert double_argv[double_argv.index("--mysql-backend") + 1] == f"127.0.0.1:{info['mysql_port']}"
        assert target.vtgate_address is None, "flows find vtgate's NodePort, which the double proxies"

        creds = MySQLCredentials.load("sandbox")
        assert creds.user == "user" and creds.password.get_secret_value()
        assert creds.password.get_secret_value() not in up.stdout + up.stderr, "the password is never printed"
        with creds.connect("127.0.0.1", info["mysql_port"]) as conn, conn.cursor() as cur:
            cur.execute("SELECT CURRENT_USER()")
            assert cur.fetchone() == ("user@%",)

        nodes = SSHNodes.load("sandbox")
        assert {n.name: n.address for n in nodes.nodes} == kube_nodes
        for n in nodes.nodes:
            session = nodes.connect(n.name)
            try:
                out = session.run("id -un; k3s --version | head -n1; nproc; "
                                  "awk '/^MemTotal:/ {print $2}' /proc/meminfo")
                user, k3s, _nproc, mem_kb = out.stdout.splitlines()
                assert user == ORDINARY_USER and "v1.33.5+k3s1" in k3s
                assert int(mem_kb) == 8 * 1024 * 1024, "the node reports the size Kubernetes gives it (8Gi)"
            finally:
                session.close()
        assert sorted(blocks_saved()) == sorted(["vtflow-vitess-target", "vtflow-ssh-nodes", "vtflow-mysql-credentials"])

        if round_ == 1:
            kubectl_from_the_printed_line(up.stdout, state_dir)

        status = vtflow("sandbox", "status", state=state_dir)
        assert status.returncode == 0 and status.stdout.count("running (pid") == 5, status.stdout

        down = vtflow("sandbox", "down", state=state_dir)
        assert down.returncode == 0, down.stdout + down.stderr
        assert "stopped 5 processes" in down.stdout and "Deleted blocks" in down.stdout
        assert blocks_saved() == [], f"round {round_}: blocks left"
        assert leftovers(root) == [], f"round {round_}: processes left"
        assert not root.exists()
        ports = [("127.0.0.1", info["kube_port"]), ("127.0.0.1", info["mysql_port"])]
        ports += [(f"{network}.{i + 2}", p) for i, p in enumerate(info["node_ports"])]
        assert [hp for hp in ports if port_open(*hp)] == [], f"round {round_}: ports still open"


def test_up_twice_changes_nothing_and_repairs_what_is_missing(prefect_server, state_dir):
    first = vtflow("sandbox", "up", "--small", state=state_dir)
    assert first.returncode == 0, first.stderr
    assert "2 CPU / 4Gi" in first.stdout
    pids = {p.stem: p.read_text() for p in (state_dir / "sandbox" / "run").glob("*.pid")}

    # the scheduled deployments (as `make up` serves them, blocks `default` missing): up offers to point them here
    from deployments import all_deployments

    scheduled = [d for d in all_deployments() if d.name in ("health-check", "backup")]
    ids = [d.apply() for d in scheduled]
    try:
        again = vtflow("sandbox", "up", state=state_dir)
        assert again.returncode == 0, again.stderr
        assert "already up; nothing changed" in again.stdout
        assert "`vtflow schedules use sandbox` points them at its blocks" in again.stdout
        use = vtflow("schedules", "use", "sandbox", state=state_dir)
        assert use.returncode == 0, use.stdout + use.stderr
        assert "schedules use" not in vtflow("sandbox", "up", state=state_dir).stdout, "offered once pointed"
        # down deletes the blocks those schedules use: they are paused, not left to fail every 5 minutes
        down = vtflow("sandbox", "down", state=state_dir)
        assert down.returncode == 0, down.stdout + down.stderr
        assert "health-check/health-check: schedule paused (its blocks 'sandbox' are gone)" in down.stdout
        from prefect import get_client

        with get_client(sync_client=True) as c:
            assert [s.active for i in ids for s in c.read_deployment(i).schedules] == [False, False]
        first = vtflow("sandbox", "up", "--small", state=state_dir)  # up again for the repair below
        assert first.returncode == 0, first.stderr
        pids = {p.stem: p.read_text() for p in (state_dir / "sandbox" / "run").glob("*.pid")}
    finally:
        from prefect import get_client

        with get_client(sync_client=True) as c:
            for deployment_id in ids:
                c.delete_deployment(deployment_id)
    assert {p.stem: p.read_text() for p in (state_dir / "sandbox" / "run").glob("*.pid")} == pids

    resize = vtflow("sandbox", "up", "--node-memory", "8Gi", state=state_dir)
    assert resize.returncode == 2 and "vtflow sandbox down" in resize.stderr

    os.kill(int(pids["node-2"]), 15)
    MySQLCredentials.delete("sandbox")
    repair = vtflow("sandbox", "up", state=state_dir)
    assert repair.returncode == 0, repair.stderr
    assert "started node-2" in repair.stdout and "saved block vtflow-mysql-credentials/sandbox" in repair.stdout
    assert "started node-1" not in repair.stdout and "started kubedouble" not in repair.stdout
    info = json.loads((state_dir / "sandbox" / "sandbox.json").read_text())
    with MySQLCredentials.load("sandbox").connect("127.0.0.1", info["mysql_port"]) as conn:
        assert conn.open


def test_down_with_nothing_up_says_so(state_dir):
    r = vtflow("sandbox", "down", state=state_dir)
    assert r.returncode == 0 and "No sandbox is up" in r.stdout
    status = vtflow("sandbox", "status", state=state_dir)
    assert status.returncode == 1 and "No sandbox is up" in status.stdout


def test_up_without_a_prefect_server_starts_nothing(state_dir):
    url = f"http://127.0.0.1:{free_port()}/api"
    r = vtflow("sandbox", "up", state=state_dir, api_url=url)
    assert r.returncode == 2
    assert url in r.stderr and "make up" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (state_dir / "sandbox").exists()
    assert leftovers(state_dir / "sandbox") == []


def test_a_failure_half_way_stops_what_that_run_started(prefect_server, state_dir):
    # a sandbox record whose node2 port another program holds: up starts MariaDB, the double and
    # node1, then fails at node2 and must stop those three
    root = state_dir / "sandbox"
    root.mkdir()
    blocker = socket.socket()
    blocker.bind(("127.0.0.3", 0))
    blocker.listen()
    ports = [free_port("127.0.0.2"), blocker.getsockname()[1], free_port("127.0.0.4")]
    (root / "sandbox.json").write_text(json.dumps({"kube_port": free_port(), "mysql_port": free_port(),
                                                   "node_ports": ports, "node_cpu": "4", "node_memory": "8Gi"}))
    try:
        r = vtflow("sandbox", "up", state=state_dir)
    finally:
        blocker.close()
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"node-2 port 127.0.0.3:{ports[1]}: is taken" in r.stderr
    assert "Stopping what this run started" in r.stdout
    assert leftovers(root) == []


# -- version and node sizes (no process started: refusals come before the Prefect check) ------------

def _saved_state(state: Path, **fields) -> Path:
    root = state / "sandbox"
    root.mkdir()
    (root / "sandbox.json").write_text(json.dumps({"kube_port": free_port(), "mysql_port": free_port(),
                                                   "node_ports": [2201, 2202, 2203], **fields}))
    return root


def test_a_state_file_of_an_older_vtflow_loads_with_the_version_it_ran(state_dir):
    root = _saved_state(state_dir, node_cpu="2", node_memory="4Gi")
    state = sandbox.Sandbox(root).load()
    assert state.sizes() == [("2", "4Gi")] * 3 and state.kubernetes_version == "v1.33.5+k3s1"
    assert state.sizes_text() == "3 nodes of 2 CPU / 4Gi"


def test_up_refuses_another_version_or_other_sizes_while_up(state_dir, monkeypatch):
    _saved_state(state_dir, node_sizes=[["2", "4Gi"], ["1", "2Gi"], ["2", "4Gi"]], kubernetes_version="v1.24.6+k3s1")
    monkeypatch.setenv("VTFLOW_STATE_DIR", str(state_dir))
    with pytest.raises(ConfigError) as e:
        sandbox.up(kubernetes_version="1.33", out=lambda *_: None)
    assert "is up as Kubernetes v1.24.6+k3s1" in str(e.value) and "sandbox down" in str(e.value)
    with pytest.raises(ConfigError) as e:
        sandbox.up(node_memory="8Gi", out=lambda *_: None)
    assert "is up with 3 nodes: 2 CPU / 4Gi, 1 CPU / 2Gi, 2 CPU / 4Gi" in str(e.value)
    with pytest.raises(ConfigError, match="gives 2 sizes; the sandbox has 3 nodes"):
        sandbox.up(node_sizes="2/4Gi,1/2Gi", out=lambda *_: None)
    with pytest.raises(ConfigError, match=r"'1\.23'.*is not one the sandbox plays"):
        sandbox.up(kubernetes_version="1.23", out=lambda *_: None)


# -- the sandbox's own address (no process started) -------------------------------------------------

def test_each_sandbox_picks_a_network_of_its_own_with_the_node_ports_free():
    state = sandbox.SandboxState.new([("2", "4Gi")] * 3, cluster.K3S_VERSION)
    assert state.network.startswith("127.") and state.network != "127.0.0"
    assert state.node_address == f"{state.network}.2"
    assert state.addresses() == [f"{state.network}.{i}" for i in (2, 3, 4)]
    assert all(port_open(state.node_address, p) is False for p in cluster.DEFAULT_NODE_PORTS)


def test_no_network_is_picked_where_a_program_holds_the_node_ports_on_every_address():
    from tasks.cluster import ClusterSpec

    spec = ClusterSpec()
    assert cluster.DEFAULT_NODE_PORTS == (spec.vtgate_node_port, spec.vtadmin_web_node_port, spec.vtadmin_api_node_port)
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        holder.bind(("0.0.0.0", 30306))
    except OSError:
        holder.close()
        pytest.skip("another program holds 30306 on this machine")
    holder.listen()
    try:
        with pytest.raises(ConfigError) as e:
            sandbox.pick_network(attempts=3)
    finally:
        holder.close()
    assert "30306, 30000, 30001 free" in str(e.value) and "ss -ltnp" in str(e.value)


def test_down_of_a_sandbox_root_started_says_who_must_stop_it(state_dir):
    # an older vtflow ran the sandbox with sudo: its processes are root's, and an ordinary user's
    # `down` can neither stop them nor must it delete the folder that lets root find them
    root = _saved_state(state_dir)
    (root / "run").mkdir()
    held = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", str(root / "kubeconfig")])
    try:
        (root / "run" / "kubedouble.pid").write_text(f"{held.pid}\n")
        r = vtflow("sandbox", "down", state=state_dir)
        assert r.returncode == 1, r.stdout + r.stderr
        assert f"Processes {held.pid} of the sandbox did not stop" in r.stdout
        assert "They belong to root" in r.stdout and "run `vtflow sandbox down` as root" in r.stdout
        assert root.exists() and held.poll() is None
    finally:
        held.kill()
        held.wait()
