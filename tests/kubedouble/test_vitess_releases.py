"""The simulated vitess-operator follows the release it runs as: etcd image, status fields, Vitess versions.

Each of the six releases in ../shared/upstream is deployed as a user would: its own CRDs
(crds/*.yaml), the objects of its operator-latest.yaml with the Deployment's image set to
planetscale/vitess-operator:<release> (the release's examples/operator.yaml runs the previous
release's image, for its upgrade test), and its cluster_upgrade.yaml (the Vitess images the
release recommends). One double for the module; the releases run one after the other, each in
its own namespace, because CRDs are cluster-wide. The expected values are read from the
upstream sources at each tag (pkg/apis/planetscale/v2/defaults.go, pkg/operator/vttablet/,
pkg/operator/mysql/) and the Vitess flag references; see kubedouble/vitess/releases.py and
vitessflags.py for the citations.
"""

from __future__ import annotations

import copy

import pytest
import yaml
from kubernetes import client

from vtflow.kube import discovery_client

from kubedouble_helpers import UPSTREAM
from vitess_helpers import apply, cluster_ready, cluster_status, make_namespace, start_double, wait_for

from kubedouble.vitess import desired, vitessflags
from kubedouble.vitess.operator import _flag_value
from kubedouble.vitess.releases import NoVersion, UnknownRelease, mysql_server_version, operator_release, running_release

RELEASES = ["v2.10.4", "v2.13.1", "v2.14.0", "v2.15.1", "v2.16.0", "v2.17.0"]
# DefaultEtcdImage at each tag (pkg/apis/planetscale/v2/defaults.go)
ETCD = {"v2.10.4": "quay.io/coreos/etcd:v3.3.13", "v2.13.1": "quay.io/coreos/etcd:v3.5.9",
        "v2.14.0": "quay.io/coreos/etcd:v3.5.9", "v2.15.1": "quay.io/coreos/etcd:v3.5.17",
        "v2.16.0": "quay.io/coreos/etcd:v3.5.17", "v2.17.0": "quay.io/coreos/etcd:v3.5.17"}
# the Vitess image of each release's cluster_upgrade.yaml (FACTS.md: the recommended pairing)
RECOMMENDED = {"v2.10.4": "vitess/lite:v17.0.7", "v2.13.1": "vitess/lite:v20.0.1", "v2.14.0": "vitess/lite:v21.0.0",
               "v2.15.1": "vitess/lite:v22.0.1", "v2.16.0": "vitess/lite:v23.0.0-mysql80",
               "v2.17.0": "vitess/lite:v24.0.0-mysql80"}
# what each release does with a Vitess major it was not built for:
# (image, the component that fails or None, exit code, the line of its log)
MISMATCH = {
    # v2.10.4 passes --queryserver-config-query-timeout=30; Vitess 19+ takes a duration only
    "v2.10.4": ("vitess/lite:v20.0.1", "vttablet", 1,
                'Error: invalid argument "30" for "--queryserver-config-query-timeout" flag: '
                'time: missing unit in duration "30"'),
    # v2.12+ pass 30s; Vitess 17 takes a float of seconds (pflag: exit 2)
    "v2.13.1": ("vitess/lite:v17.0.7", "vttablet", 2,
                'invalid argument "30s" for "--queryserver-config-query-timeout" flag: '
                'strconv.ParseFloat: parsing "30s": invalid syntax'),
    # Vitess 18 takes 30s, but its vtctld has no --mysql_server_version (the mysqld image is mysql:8.0.30)
    "v2.14.0": ("vitess/lite:v18.0.7", "vtctld", 1, "Error: unknown flag: --mysql_server_version"),
    # a newer major (underscore flags still accepted through 24): runs
    "v2.15.1": ("vitess/lite:v24.0.0-mysql80", None, 0, ""),
    "v2.16.0": ("vitess/lite:v17.0.7", "vttablet", 2,
                'invalid argument "30s" for "--queryserver-config-query-timeout" flag: '
                'strconv.ParseFloat: parsing "30s": invalid syntax'),
    # v2.17 passes --builtinbackup-incremental-restore-path, which Vitess has from 19 on
    "v2.17.0": ("vitess/lite:v18.0.7", "vttablet", 1, "Error: unknown flag: --builtinbackup-incremental-restore-path"),
}
KINDS = {"VitessCluster": "vitessclusters", "VitessKeyspace": "vitesskeyspaces", "VitessShard": "vitessshards",
         "EtcdLockserver": "etcdlockservers", "VitessCell": "vitesscells"}


def _release_dir(release: str):
    d = UPSTREAM / f"vitess-operator-{release}"
    if not d.exists():
        pytest.skip(f"upstream files {d} are not present (set VTFLOW_UPSTREAM_DIR)")
    return d


def _docs(path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _ns(release: str) -> str:
    return "rel-" + release.lstrip("v").replace(".", "-")


def _status_schema(release: str, plural: str) -> dict:
    crd = _docs(_release_dir(release) / "crds" / f"planetscale.com_{plural}.yaml")[0]
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]


def undeclared(value, schema: dict, path: str = "status") -> list[str]:
    """The field paths of ``value`` its structural schema does not declare."""
    if not isinstance(value, dict) or schema.get("x-kubernetes-preserve-unknown-fields"):
        if isinstance(value, list) and isinstance(schema.get("items"), dict):
            return [p for i, v in enumerate(value) for p in undeclared(v, schema["items"], f"{path}[{i}]")]
        return []
    props, addl = schema.get("properties"), schema.get("additionalProperties")
    out = []
    for k, v in value.items():
        if props and k in props:
            out += undeclared(v, props[k], f"{path}.{k}")
        elif isinstance(addl, dict):
            out += undeclared(v, addl, f"{path}[{k}]")
        elif addl is not True:
            out.append(f"{path}.{k}")
    return out


@pytest.fixture(scope="module")
def rel_double(tmp_path_factory):
    d, api = start_double(tmp_path_factory.mktemp("releases"), nodes=3, node_cpu="8", node_memory="16Gi",
                          operators=True, crash_interval=0.05)
    yield d, api
    d.stop()


@pytest.fixture(scope="module", params=RELEASES)
def deployed(request, rel_double):
    """Release ``request.param`` deployed in its own namespace, its cluster_upgrade.yaml ready."""
    release = request.param
    d, api = rel_double
    rd = _release_dir(release)
    ns = _ns(release)
    dyn = discovery_client(api)
    make_namespace(api, ns)
    for crd_file in sorted((rd / "crds").glob("*.yaml")):
        for doc in _docs(crd_file):
            apply(dyn, doc, ns)
    dyn.resources.invalidate_cache()
    for doc in _docs(rd / "examples" / "operator-latest.yaml"):
        if doc["kind"] == "CustomResourceDefinition":
            continue
        doc = copy.deepcopy(doc)
        if doc["kind"] == "Deployment":
            c = doc["spec"]["template"]["spec"]["containers"][0]
            c["image"], c["imagePullPolicy"] = f"planetscale/vitess-operator:{release}", "IfNotPresent"
            c["env"] = [e for e in c.get("env") or [] if e["name"] != "WATCH_NAMESPACE"] + \
                [{"name": "WATCH_NAMESPACE", "value": ns}]
        for s in doc.get("subjects") or []:
            s["namespace"] = ns
        apply(dyn, doc, ns)
    for doc in _docs(rd / "examples" / "cluster_upgrade.yaml"):
        apply(dyn, doc, ns)
    wait_for(lambda: cluster_ready(cluster_status(dyn, namespace=ns)), timeout=30,
             what=f"{release}: VitessCluster {ns}/example ready")
    yield release, ns, api, dyn
    client.CoreV1Api(api).delete_namespace(ns)


def _pods(api, ns, selector):
    return [p for p in client.CoreV1Api(api).list_namespaced_pod(ns, label_selector=selector).items
            if not p.metadata.deletion_timestamp]


def _container(pod, name):
    return next(c for c in pod.spec.containers if c.name == name)


def _status(pod, name):
    return next((c for c in pod.status.container_statuses or [] if c.name == name), None)


# -- per release, through the user's path -------------------------------------------------------
def test_the_operator_runs_as_its_image_release(deployed):
    release, ns, api, _ = deployed
    pod = _pods(api, ns, "app=vitess-operator")[0]
    log = client.CoreV1Api(api).read_namespaced_pod_log(pod.metadata.name, ns)
    assert f'"msg":"Operator Version: {release.lstrip("v")}"' in log


def test_etcd_pods_run_the_release_etcd_image(deployed):
    release, ns, api, dyn = deployed
    etcd = _pods(api, ns, "planetscale.com/component=etcd")
    assert len(etcd) == 3
    assert {_container(p, "etcd").image for p in etcd} == {ETCD[release]}
    ls = dyn.resources.get(api_version="planetscale.com/v2", kind="EtcdLockserver").get(namespace=ns).items[0]
    assert ls.spec.image == ETCD[release]
    log = client.CoreV1Api(api).read_namespaced_pod_log(etcd[0].metadata.name, ns)
    version = ETCD[release].rsplit(":v", 1)[1]
    if version.startswith("3.3"):
        assert f"I | etcdmain: etcd Version: {version}" in log   # capnslog before 3.5
    else:
        assert f'"etcd-version": "{version}"' in log               # zap JSON from 3.5


def test_status_holds_only_fields_of_the_release_schema(deployed):
    release, ns, api, dyn = deployed
    for kind, plural in KINDS.items():
        schema = _status_schema(release, plural)
        objs = dyn.resources.get(api_version="planetscale.com/v2", kind=kind).get(namespace=ns).items
        assert objs, kind
        for o in objs:
            status = o.to_dict().get("status") or {}
            assert status, f"{kind} {o.metadata.name} has no status"
            assert undeclared(status, schema) == [], f"{release} {kind} {o.metadata.name}"
    # and what the schema has, the operator writes: VitessCell gateway replicas came with v2.15 (HPA)
    cell = dyn.resources.get(api_version="planetscale.com/v2", kind="VitessCell").get(namespace=ns).items[0]
    has = "replicas" in _status_schema(release, "vitesscells")["properties"]["gateway"]["properties"]
    assert has == (tuple(map(int, release[1:].split("."))) >= (2, 15, 0))
    assert ("replicas" in cell.to_dict()["status"]["gateway"]) == has


def test_the_recommended_vitess_images_run(deployed):
    release, ns, api, _ = deployed
    want = RECOMMENDED[release].split(":v", 1)[1].split("-")[0]
    for component in ("vttablet", "vtctld", "vtgate", "vtorc"):
        pods = _pods(api, ns, f"planetscale.com/component={component}")
        assert pods, component
        for p in pods:
            assert _container(p, component).image == RECOMMENDED[release]
            assert _status(p, component).restart_count == 0 and _status(p, component).ready
            log = client.CoreV1Api(api).read_namespaced_pod_log(p.metadata.name, ns, container=component)
            assert f"Version: {want}" in log


# must stay the last test of the group: it changes the cluster's images
def test_a_vitess_major_the_release_was_not_built_for(deployed):
    release, ns, api, dyn = deployed
    image, failing, code, line = MISMATCH[release]
    rc = dyn.resources.get(api_version="planetscale.com/v2", kind="VitessCluster")
    rc.patch(name="example", namespace=ns, content_type="application/merge-patch+json",
             body={"spec": {"images": {k: image for k in ("vtctld", "vtgate", "vttablet", "vtorc", "vtbackup")}}})
    if failing is None:
        def rolled():
            pods = _pods(api, ns, "planetscale.com/component in (vttablet,vtctld,vtgate,vtorc)")
            on_new = all(_container(p, p.metadata.labels["planetscale.com/component"]).image == image for p in pods)
            return on_new and cluster_ready(cluster_status(dyn, namespace=ns)) and pods
        pods = wait_for(rolled, timeout=30, what=f"{release}: every component on {image}, cluster ready")
        assert all(_status(p, p.metadata.labels["planetscale.com/component"]).restart_count == 0 for p in pods)
        return

    def crash_looping():
        for p in _pods(api, ns, f"planetscale.com/component={failing}"):
            cs = _status(p, failing)
            if (_container(p, failing).image == image and cs and cs.restart_count >= 1 and cs.state.waiting
                    and cs.state.waiting.reason == "CrashLoopBackOff"):
                return p, cs
        return None
    pod, cs = wait_for(crash_looping, timeout=30, what=f"{release}: a {failing} on {image} in CrashLoopBackOff")
    assert cs.last_state.terminated.exit_code == code and cs.last_state.terminated.reason == "Error"
    assert not cs.ready
    previous = client.CoreV1Api(api).read_namespaced_pod_log(pod.metadata.name, ns, container=failing, previous=True)
    assert line in previous.splitlines()
    if failing == "vttablet":
        # the operator replaces one tablet at a time and waits for it: the rest stay on the old image
        st = wait_for(lambda: (s := cluster_status(dyn, namespace=ns)) and
                      s["keyspaces"]["commerce"]["readyTablets"] == 2 and s, what="2 of 3 tablets ready")
        assert not cluster_ready(st)
        tablets = _pods(api, ns, "planetscale.com/component=vttablet")
        assert sorted(_container(p, "vttablet").image for p in tablets) == sorted([image] + [RECOMMENDED[release]] * 2)
    else:
        # a Deployment keeps its old pod until the new one is ready: the old vtctld still serves
        old = [p for p in _pods(api, ns, f"planetscale.com/component={failing}")
               if _container(p, failing).image == RECOMMENDED[release]]
        assert old and _status(old[0], failing).ready


# -- the operator image names the release ---------------------------------------------------------
def _bare_pod(api, ns, name, container: client.V1Container):
    client.CoreV1Api(api).create_namespaced_pod(ns, client.V1Pod(
        metadata=client.V1ObjectMeta(name=name), spec=client.V1PodSpec(containers=[container])))


def _operator(image, ns):
    return client.V1Container(name="vitess-operator", image=image, command=["vitess-operator"],
                              env=[client.V1EnvVar(name="WATCH_NAMESPACE", value=ns)])


def _first_status(api, ns, name):
    return (client.CoreV1Api(api).read_namespaced_pod(name, ns).status.container_statuses or [None])[0]


def test_images_by_digest_run_the_tag_they_were_pushed_as(rel_double):
    """vtflow's redeploy writes images by digest. A registry knows the tag behind a digest; the
    double knows it when told (register_image), else it runs the newest release and says so."""
    d, api = rel_double
    ns = "rel-digest"
    make_namespace(api, ns)
    core = client.CoreV1Api(api)
    unregistered = "harbor.lan/vitess/vitess-operator@sha256:" + "ab" * 32
    registered = "harbor.lan/vitess/vitess-operator@sha256:" + "cd" * 32
    d.vitess.register_image(registered, "harbor.lan/vitess/vitess-operator:v2.10.4")
    _bare_pod(api, ns, "op-unregistered", _operator(unregistered, ns))
    _bare_pod(api, ns, "op-registered", _operator(registered, ns))
    for name in ("op-unregistered", "op-registered"):
        wait_for(lambda: (cs := _first_status(api, ns, name)) and cs.ready, what=f"{name} running")
    log = core.read_namespaced_pod_log("op-unregistered", ns).splitlines()
    assert log[0].startswith(f"kubedouble: image '{unregistered}' has no tag")
    assert log[0].endswith("simulating v2.17.0, the newest release the double knows")
    assert '"msg":"Operator Version: 2.17.0"' in log[1]
    assert '"msg":"Operator Version: 2.10.4"' in core.read_namespaced_pod_log("op-registered", ns).splitlines()[0]
    # a Vitess image by digest runs the Vitess version of its registered tag: vtctld 17 has no --mysql_server_version
    lite = "harbor.lan/vitess/lite@sha256:" + "ef" * 32
    d.vitess.register_image(lite, "harbor.lan/vitess/lite:v17.0.7")
    _bare_pod(api, ns, "vtctld", client.V1Container(name="vtctld", image=lite, command=["/vt/bin/vtctld"],
                                                    args=["--mysql_server_version=8.0.30-Vitess", "--port=15000"]))
    cs = wait_for(lambda: (cs := _first_status(api, ns, "vtctld")) and cs.restart_count >= 1 and cs, what="vtctld exited")
    assert cs.last_state.terminated.exit_code == 2
    assert core.read_namespaced_pod_log("vtctld", ns, previous=True).splitlines()[0] == "unknown flag: --mysql_server_version"


def test_an_operator_tag_of_a_release_the_double_does_not_simulate_does_not_start(rel_double):
    d, api = rel_double
    ns = "rel-unknown"
    make_namespace(api, ns)
    _bare_pod(api, ns, "op", _operator("planetscale/vitess-operator:v2.18.0", ns))
    cs = wait_for(lambda: (cs := _first_status(api, ns, "op")) and cs.restart_count >= 1 and cs.last_state.terminated
                  and cs, what="the operator container exited")
    assert cs.last_state.terminated.exit_code == 1
    log = client.CoreV1Api(api).read_namespaced_pod_log("op", ns, previous=True)
    assert log.startswith("kubedouble: image 'planetscale/vitess-operator:v2.18.0': tag 'v2.18.0' is no vitess-operator "
                          "release the double simulates (v2.8 .. v2.17)")


def test_release_from_image_tag():
    assert operator_release("planetscale/vitess-operator:v2.10.4").etcd_image == "quay.io/coreos/etcd:v3.3.13"
    mirrored = operator_release("harbor.lan:5000/vitess/planetscale/vitess-operator:v2.10.4@sha256:" + "cd" * 32)
    assert mirrored.version == "2.10.4" and mirrored.vitess_image == "vitess/lite:v17.0.7"
    rc1 = operator_release("planetscale/vitess-operator:v2.17.0-rc1")
    assert (rc1.version, rc1.vitess_image, rc1.incremental_restore_path) == ("2.17.0-rc1", "vitess/lite:v24.0.0-rc1", True)
    # a patch release the table lacks behaves as its minor, with the newest known patch's defaults
    assert operator_release("planetscale/vitess-operator:v2.17.1").vitess_image == "vitess/lite:v24.0.0-mysql80"
    assert operator_release("planetscale/vitess-operator:v2.11.0").query_timeout == "30"
    assert operator_release("planetscale/vitess-operator:v2.12.0").query_timeout == "30s"
    for image in ("planetscale/vitess-operator:v2.18.0", "planetscale/vitess-operator:v2.7.2", "busybox:1.36"):
        with pytest.raises(UnknownRelease):
            running_release(image)
    for image in ("planetscale/vitess-operator@sha256:" + "ab" * 32, "planetscale/vitess-operator:latest"):
        with pytest.raises(NoVersion):
            operator_release(image)
        release, note = running_release(image)
        assert release.version == "2.17.0" and "simulating v2.17.0" in note


def test_mysql_server_version_follows_the_operator_parser():
    assert mysql_server_version("mysql:8.0.30") == "8.0.30-Vitess"
    assert mysql_server_version("vitess/lite:v24.0.0-mysql80") is None
    assert mysql_server_version("mysql") is None
    # the operator splits at the first ':', so a registry port becomes the "tag": upstream's quirk
    assert mysql_server_version("harbor.lan:5000/mysql:8.0.30") == "5000/mysql:8.0.30-Vitess"


def test_default_etcd_image_flag_of_the_operator_container():
    c = {"command": ["vitess-operator"], "args": ["--logtostderr", "--default_etcd_image=quay.io/coreos/etcd:v3.5.21"]}
    assert _flag_value(c, "default_etcd_image") == "quay.io/coreos/etcd:v3.5.21"
    assert _flag_value({"args": ["--default_etcd_image", "reg/etcd:v3.5.1"]}, "default_etcd_image") == "reg/etcd:v3.5.1"
    assert _flag_value({"args": ["--logtostderr"]}, "default_etcd_image") is None
    vc = {"metadata": {"name": "example", "namespace": "x"}, "spec": {"cells": [{"name": "zone1"}]}}
    rel = operator_release("planetscale/vitess-operator:v2.14.0")
    etcd = lambda plan: {d.obj["spec"]["containers"][0]["image"] for d in plan  # noqa: E731
                         if d.ref == "pods" and d.obj["metadata"]["labels"].get("planetscale.com/component") == "etcd"}
    assert etcd(desired.plan(vc, rel)) == {"quay.io/coreos/etcd:v3.5.9"}
    assert etcd(desired.plan(vc, rel, "quay.io/coreos/etcd:v3.5.21")) == {"quay.io/coreos/etcd:v3.5.21"}
    vc["spec"]["globalLockserver"] = {"etcd": {"image": "mine/etcd:v3.5.0"}}
    assert etcd(desired.plan(vc, rel, "quay.io/coreos/etcd:v3.5.21")) == {"mine/etcd:v3.5.0"}


@pytest.mark.parametrize("program,major,arg,error,warns", [
    ("vttablet", 17, "--queryserver-config-query-timeout=30", None, False),
    ("vttablet", 17, "--queryserver-config-query-timeout=30s",
     'invalid argument "30s" for "--queryserver-config-query-timeout" flag: strconv.ParseFloat: parsing "30s": '
     "invalid syntax", False),
    ("vttablet", 18, "--queryserver-config-query-timeout=30", None, True),     # deprecated seconds still taken
    ("vttablet", 18, "--queryserver-config-query-timeout=30s", None, False),
    ("vttablet", 19, "--queryserver-config-query-timeout=30",
     'invalid argument "30" for "--queryserver-config-query-timeout" flag: time: missing unit in duration "30"', False),
    ("vttablet", 18, "--builtinbackup-incremental-restore-path=/vt/vtdataroot",
     "unknown flag: --builtinbackup-incremental-restore-path", False),
    ("vttablet", 19, "--builtinbackup-incremental-restore-path=/vt/vtdataroot", None, False),
    ("vtctld", 18, "--mysql_server_version=8.0.30-Vitess", "unknown flag: --mysql_server_version", False),
    ("vtctld", 19, "--mysql_server_version=8.0.30-Vitess", None, False),
    ("vtgate", 16, "--mysql_server_version=8.0.30-Vitess", None, False),
    ("vttablet", 24, "--grpc_port=15999", None, False),                     # underscores accepted through 24
    ("vttablet", 25, "--grpc_port=15999", "unknown flag: --grpc_port", False),  # removal announced for 25
])
def test_vitess_flag_parsing_by_major(program, major, arg, error, warns):
    name = arg[2:].split("=", 1)[0]
    parsed = vitessflags.parse(program, major, ["--logtostderr=true", arg], {name})
    assert parsed.error == error
    assert bool(parsed.warnings) == warns
    if warns:
        assert parsed.warnings[0].startswith("failed to parse queryserver-config-query-timeout as duration "
                                             '(err: time: missing unit in duration "30"); falling back')


def test_parse_failures_look_like_pflag_before_18_and_cobra_from_18():
    lines, code = vitessflags.failure_lines("vttablet", "/vt/bin/vttablet", 17, "unknown flag: --x")
    assert (lines[0], lines[1], code) == ("unknown flag: --x", "Usage of /vt/bin/vttablet:", 2)
    lines, code = vitessflags.failure_lines("vttablet", "/vt/bin/vttablet", 18, "unknown flag: --x")
    assert (lines[0], lines[1], code) == ("Error: unknown flag: --x", "Usage:", 1)
    assert lines[-1].startswith("F") and lines[-1].endswith("] unknown flag: --x")
