"""The deploy flow (steps 1-4; with data and verification: test_deploy_data.py) against the Kubernetes API double and this session's Prefect server."""

import asyncio
import uuid

import pytest
from prefect.artifacts import Artifact

from blocks.mysql import MySQLCredentials
from blocks.target import VitessTarget
from flows.deploy import DeployParameters, deploy
from vtflow import kube
from kubedouble import DoubleConfig, KubeDouble
from helpers import IMAGES, OPERATOR_YAML



@pytest.fixture
def cluster_double(tmp_path, request):
    cpu, mem, delay = getattr(request, "param", ("8", "16Gi", 0.02))
    d = KubeDouble(DoubleConfig(nodes=3, node_cpu=cpu, node_memory=mem, git_version="v1.33.5+k3s1", operators=True,
                                pod_start_delay=delay))
    d.start()
    tag = uuid.uuid4().hex[:6]
    VitessTarget(kubeconfig=d.kubeconfig(tmp_path / "kubeconfig").read_text(), node_address="127.0.0.1").save(f"tgt-{tag}")
    MySQLCredentials(user="user", password="deploy-pw-1").save(f"my-{tag}")
    d.tag = tag
    d.k = kube.Kube(kube.api_client((tmp_path / "kubeconfig").read_text(), None, "t"))
    yield d
    d.stop()


def params(d, **kw):
    return DeployParameters(**{"target_block": f"tgt-{d.tag}", "mysql_block": f"my-{d.tag}",
                               "operator_manifest": OPERATOR_YAML, **kw})


def run(p):
    state = asyncio.run(deploy(**p.flow_kwargs(), return_state=True))
    return state, state.result(raise_on_failure=False)


def test_operator_steps_install_then_a_second_run_changes_nothing(prefect_server, cluster_double):
    state, reports = run(params(cluster_double, until="vitess-operator"))
    assert state.is_completed(), state.message
    assert [r.step for r in reports] == ["node-prep", "etcd-operator", "vitess-operator"]
    assert reports[1].skipped and "runs its own etcd" in reports[1].skipped
    assert reports[2].changed
    state, again = run(params(cluster_double, until="vitess-operator"))
    assert state.is_completed() and not any(r.changed for r in again)


def test_dry_run_plans_everything_and_changes_nothing(prefect_server, cluster_double):
    state, reports = run(params(cluster_double, until="cluster", dry_run=True))
    assert state.is_completed(), state.message
    planned = {o["object"]: o["action"] for r in reports for o in r.objects}
    assert planned["Deployment example/vitess-operator"] == "created"
    assert planned["VitessCluster example/example"] == "created"
    assert planned["Secret example/example-cluster-config"] == "created"
    assert cluster_double.k.list("apiextensions.k8s.io/v1", "CustomResourceDefinition") == []


@pytest.mark.parametrize("cluster_double", [("2", "4Gi", 0.02)], indirect=True)
def test_the_users_small_nodes_are_refused_before_any_cluster_object(prefect_server, cluster_double):
    state, _ = run(params(cluster_double, until="cluster"))
    assert state.is_failed()
    assert "preflight refused it before anything was applied" in state.message
    # every pod at its limit, the first backup's vtbackup-init pod included
    assert "memory limits add up to 7.12 GiB but the nodes have 6.00 GiB free" in state.message
    assert "vtbackup-init (commerce)      1     100m   0.50 GiB   1.00 GiB" in state.message
    k = cluster_double.k
    assert k.get("v1", "Secret", "example-cluster-config", "example") is None
    assert k.list("planetscale.com/v2", "VitessCluster", "example") == []
    # what the original blog had nothing for: a cluster sized to these nodes
    p = params(cluster_double, until="cluster", ready_timeout_s=120)
    state, reports = run(p.model_copy(update={"cluster": p.cluster.model_copy(update={"size": "fit"})}))
    assert state.is_completed(), state.message
    lines = [f.line for f in reports[-1].findings]
    assert lines[0].startswith("size fit: warn: kept: etcd: 3 members on 3 nodes"), lines
    assert "; lost: vtgate: 1 replica" in lines[0]
    assert [line.split(":")[0] for line in lines[1:]] == ["room for 201_customer_tablets", "room for 302_new_shards"]
    assert k.get("planetscale.com/v2", "VitessCluster", "example", "example")["spec"]["globalLockserver"]["etcd"][
        "affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"], "three etcd on three nodes"


def test_an_invalid_spec_fails_before_any_call(prefect_server, cluster_double):
    bad = params(cluster_double, until="cluster").flow_kwargs()
    bad["cluster"] = bad["cluster"].model_dump()
    bad["cluster"]["keyspaces"] = [{"name": "commerce", "shards": 0}]
    bad["cluster"]["gateway"] = {"cpu": "lots"}
    state = asyncio.run(deploy(**bad, return_state=True))
    assert state.is_failed()
    assert "shards" in state.message and "greater than or equal to 1" in state.message
    assert cluster_double.k.list("apiextensions.k8s.io/v1", "CustomResourceDefinition") == []


def test_steps_survive_20_percent_transient_errors_without_duplicates(prefect_server, cluster_double):
    cluster_double.faults.error_rate = 0.2
    try:
        state, reports = run(params(cluster_double, until="vitess-operator", etcd_operator=True))
    finally:
        cluster_double.faults.error_rate = 0
    assert state.is_completed(), state.message
    k = cluster_double.k
    assert sorted(d["metadata"]["name"] for d in k.list("apps/v1", "Deployment", "example")) == ["etcd-operator", "vitess-operator"]
    assert len(k.list("apiextensions.k8s.io/v1", "CustomResourceDefinition")) == 9


def test_full_cluster_init_reaches_ready_then_a_rerun_changes_nothing(prefect_server, cluster_double):
    state, reports = run(params(cluster_double, until="cluster", ready_timeout_s=60))
    assert state.is_completed(), state.message
    vc = cluster_double.k.get("planetscale.com/v2", "VitessCluster", "example", "example")
    assert vc["status"]["keyspaces"]["commerce"]["readyTablets"] == 3
    actions = {o["object"]: o["action"] for o in reports[-1].objects}
    assert actions == {"Secret example/example-cluster-config": "created",
                       "PersistentVolumeClaim example/vitess-backups": "created",
                       "VitessCluster example/example": "created",
                       "Service example/example-vtadmin-nodeport": "created",
                       "Service example/example-vtgate-nodeport": "created"}
    state, again = run(params(cluster_double, until="cluster", ready_timeout_s=60))
    assert state.is_completed(), state.message
    assert not any(r.changed for r in again), [o for r in again for o in r.objects if o["action"] != "unchanged"]


def task_runs(state) -> dict[str, list]:
    """The flow run's task runs by task name, read back from the Prefect server."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async def read():
        async with get_client() as client:
            return await client.read_task_runs(flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[state.state_details.flow_run_id])))
    out: dict[str, list] = {}
    for tr in asyncio.run(read()):
        out.setdefault(tr.name.rsplit("-", 1)[0], []).append(tr)
    return out


def test_readiness_timeout_diagnoses_a_crash_looping_container(prefect_server, cluster_double):
    d = cluster_double
    state, _ = run(params(d, until="cluster", ready_timeout_s=60))
    assert state.is_completed(), state.message
    vtgate = d.list("pods", "example", label_selector="planetscale.com/component=vtgate")[0]["metadata"]["name"]
    d.kubelet.crash_loop(d, "example", vtgate, "vtgate", on=True)
    state, _ = run(params(d, until="cluster", ready_timeout_s=3))
    assert state.is_failed()
    assert "VitessCluster example/example: not ready after 3 s: waiting for vtgate in zone1" in state.message
    assert f"Pod {vtgate} container vtgate: CrashLoopBackOff" in state.message
    # one wait, not retried: the diagnosis would only come again after as long a wait
    [cluster_run] = task_runs(state)["cluster"]
    assert cluster_run.run_count == 1 and cluster_run.state.is_failed()
    assert f"Pod {vtgate} container vtgate: CrashLoopBackOff" in cluster_run.state.message
    report = Artifact.get("deploy-example").data
    assert report.startswith("# Deploy report: FAILED") and "**Failed:** step cluster: VitessCluster" in report


def test_a_redeployed_image_is_a_named_conflict_until_force_conflicts_takes_it_over(prefect_server, tmp_path):
    from flows.redeploy import redeploy
    from helpers import deployed_cluster
    from tasks.redeploy import cluster_images

    mirror = "harbor.lan/vitess"
    digest = "sha256:" + "b" * 64
    with deployed_cluster(tmp_path, registry_mirror=mirror) as d:
        state = asyncio.run(redeploy(component="vitess", repository=f"{mirror}/lite", digest=digest,
                                     target_block=f"tgt-{d.tag}", mysql_block=f"my-{d.tag}", backup_first=False,
                                     verify={"enabled": False}, return_state=True))
        assert state.is_completed(), state.message
        vc = lambda: d.k.get("planetscale.com/v2", "VitessCluster", "example", "example")  # noqa: E731
        assert set(cluster_images(vc(), "vitess").values()) == {f"{mirror}/lite@{digest}"}

        state, _ = run(params(d, until="cluster", ready_timeout_s=60))
        assert state.is_failed()
        assert "VitessCluster example/example: conflict" in state.message
        assert "field manager 'vtflow-redeploy' owns" in state.message and ".spec.images.vtgate" in state.message
        assert "--force-conflicts (parameter force_conflicts)" in state.message
        assert "re-run with force " not in state.message
        assert set(cluster_images(vc(), "vitess").values()) == {f"{mirror}/lite@{digest}"}, "nothing taken over"
        assert "**Failed:** step cluster:" in Artifact.get("deploy-example").data

        state, reports = run(params(d, until="cluster", ready_timeout_s=60, force_conflicts=True))
        assert state.is_completed(), state.message
        assert set(cluster_images(vc(), "vitess").values()) == {IMAGES["vitess_image"]}
        assert {o["object"]: o["action"] for o in reports[-1].objects}["VitessCluster example/example"] == "changed"


def test_the_report_names_the_versions_chosen_and_why(prefect_server, cluster_double):
    state, reports = run(params(cluster_double, until="vitess-operator", dry_run=True))
    assert state.is_completed(), state.message
    text = Artifact.get("deploy-example").data
    # upstream's end-to-end operator.yaml of v2.17.0 runs its rc1 image (tasks/versions.py)
    assert ("- vitess-operator v2.17.0-rc1 as the given manifest runs it (the table's v2.17 row: v2.17.0); "
            "Vitess v24.0.0, the release's recommended") in text
    assert "- images: vitess/lite:v24.0.0-mysql80 (Vitess components)" in text


@pytest.mark.parametrize("git_version,release", [("v1.29.6+k3s1", "v2.14.0"), ("v1.35.4+k3s1", "v2.17.0")])
def test_the_table_picks_the_release_and_images_for_the_clusters_kubernetes(prefect_server, tmp_path, git_version,
                                                                           release):
    from helpers import UPSTREAM
    from tasks import versions

    manifest = str(UPSTREAM / f"vitess-operator-{release}" / "examples" / "operator-latest.yaml")  # placeholder image
    with KubeDouble(DoubleConfig(nodes=3, node_cpu="8", node_memory="16Gi", git_version=git_version,
                                 operators=True, pod_start_delay=0.02)) as d:
        d.tag = uuid.uuid4().hex[:6]
        VitessTarget(kubeconfig=d.kubeconfig(tmp_path / "kc").read_text(), node_address="127.0.0.1").save(f"tgt-{d.tag}")
        MySQLCredentials(user="user", password="deploy-pw-1").save(f"my-{d.tag}")
        k = kube.Kube(kube.api_client((tmp_path / "kc").read_text(), None, "t"))
        p = params(d, until="cluster", ready_timeout_s=60).model_copy(update={"operator_manifest": manifest})
        state, reports = run(p)
        assert state.is_completed(), state.message
        images = versions.release(release).images()
        operator = k.get("apps/v1", "Deployment", "vitess-operator", "example")["spec"]["template"]["spec"]
        assert operator["containers"][0]["image"] == f"planetscale/vitess-operator:{release}"
        vc = k.get("planetscale.com/v2", "VitessCluster", "example", "example")
        assert vc["spec"]["images"]["vttablet"] == images.vitess
        assert vc["spec"]["images"]["mysqld"]["mysql80Compatible"] == images.mysqld
        found = {f.name: f.line for f in reports[2].findings}
        assert found["versions"].startswith(f"versions: {'ok' if release == 'v2.17.0' else 'warn'}: vitess-operator "
                                            f"{release}: the newest release in vtflow's table")
        state, again = run(p)
        assert state.is_completed() and not any(r.changed for r in again)


def test_versions_outside_the_table_are_refused_before_any_change_and_go_on_with_force(prefect_server, tmp_path):
    with KubeDouble(DoubleConfig(nodes=3, node_cpu="8", node_memory="16Gi", git_version="v1.28.4+k3s1",
                                 operators=True, pod_start_delay=0.02)) as d:
        d.tag = uuid.uuid4().hex[:6]
        VitessTarget(kubeconfig=d.kubeconfig(tmp_path / "kc").read_text(), node_address="127.0.0.1").save(f"tgt-{d.tag}")
        MySQLCredentials(user="user", password="deploy-pw-1").save(f"my-{d.tag}")
        k = kube.Kube(kube.api_client((tmp_path / "kc").read_text(), None, "t"))
        state, _ = run(params(d, until="vitess-operator", operator_version="v2.17.0"))
        assert state.is_failed()
        assert "vitess-operator v2.17.0: supports Kubernetes 1.32-1.35; the cluster runs v1.28.4+k3s1." in state.message
        assert "vitess-operator v2.13.1: Kubernetes 1.25-1.28, Vitess 20" in state.message, "the table's rows"
        assert "Fix: pin v2.13.1 (or leave operator_version empty)" in state.message
        assert "**Failed:** input check:" in Artifact.get("deploy-example").data
        assert k.list("apiextensions.k8s.io/v1", "CustomResourceDefinition") == [], "refused before any change"
        state, reports = run(params(d, until="vitess-operator", operator_version="v2.17.0", force=True))
        assert state.is_completed(), state.message
        assert reports[-1].warnings == ["vitess-operator v2.17.0 supports Kubernetes 1.32-1.35; the cluster runs "
                                        "v1.28.4+k3s1. Going on: force."]
        assert "- warning: vitess-operator v2.17.0 supports" in Artifact.get("deploy-example").data


def test_the_operator_manifest_url_is_fetched_once_per_run(prefect_server, cluster_double):
    import http.server
    import threading
    from pathlib import Path

    body = Path(OPERATOR_YAML).read_bytes()
    gets = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            gets.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/operator.yaml"
        p = params(cluster_double, until="cluster", dry_run=True).model_copy(update={"operator_manifest": url})
        state, reports = run(p)
    finally:
        server.shutdown()
    assert state.is_completed(), state.message
    assert gets == ["/operator.yaml"]
    assert [r.step for r in reports] == ["node-prep", "etcd-operator", "vitess-operator", "cluster"]


def test_cluster_step_survives_20_percent_transient_errors(prefect_server, cluster_double):
    cluster_double.faults.error_rate = 0.2
    try:
        state, reports = run(params(cluster_double, until="cluster", ready_timeout_s=90))
    finally:
        cluster_double.faults.error_rate = 0
    assert state.is_completed(), state.message
    k = cluster_double.k
    assert len(k.list("planetscale.com/v2", "VitessCluster", "example")) == 1
    assert len(k.list("v1", "Secret", "example", label_selector="app.kubernetes.io/managed-by=vtflow")) == 1


def test_cluster_step_without_the_operator_names_the_missing_crd(prefect_server, cluster_double):
    from tasks.cluster import ClusterSpec, init_cluster
    from tasks.context import TargetContext
    from tasks.operators import load_manifest

    creds = MySQLCredentials(user="user", password="pw-123")
    with pytest.raises(kube.MissingKindError, match=r"VitessCluster \(planetscale.com/v2\): the cluster does not serve "
                                                     r"this kind. Fix: apply the vitess-operator first"):
        init_cluster(TargetContext(cluster_double.k, "example", "example", node_address="127.0.0.1"), ClusterSpec(**IMAGES),
                     creds, load_manifest(OPERATOR_YAML))


def test_behind_a_registry_mirror_an_empty_operator_manifest_is_refused_before_step_1(prefect_server, cluster_double,
                                                                                      tmp_path):
    VitessTarget(kubeconfig=(tmp_path / "kubeconfig").read_text(), node_address="127.0.0.1",
                 registry_mirror="harbor.lan/vitess").save(f"mirror-{cluster_double.tag}")
    p = params(cluster_double, until="vitess-operator", target_block=f"mirror-{cluster_double.tag}")
    state, _ = run(p.model_copy(update={"operator_manifest": None}))
    assert state.is_failed()
    assert "the target names the registry mirror harbor.lan/vitess" in state.message
    assert "give operator_manifest: vitess-operator v2.17.0's operator-latest.yaml" in state.message
    assert cluster_double.k.list("apiextensions.k8s.io/v1", "CustomResourceDefinition") == []
    # the release's file given: deployed, its images moved to the mirror
    state, _ = run(p)
    assert state.is_completed(), state.message
    image = cluster_double.k.get("apps/v1", "Deployment", "vitess-operator", "example")["spec"]["template"]["spec"][
        "containers"][0]["image"]
    assert image.startswith("harbor.lan/vitess/"), image
