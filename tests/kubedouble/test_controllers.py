"""The simulated cluster: scheduling, kubelet, workloads, volumes, services, events."""

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from kubedouble_helpers import api_client_for, wait_for


def _events(core, ns, name, reason):
    return [e for e in core.list_namespaced_event(ns, field_selector=f"involvedObject.name={name}").items
            if e.reason == reason]


def _deployment(name, replicas=2, image="nginx:1.25", memory="64Mi"):
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1DeploymentSpec(
            replicas=replicas, selector=client.V1LabelSelector(match_labels={"app": name}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"app": name}),
                spec=client.V1PodSpec(containers=[client.V1Container(
                    name="web", image=image, ports=[client.V1ContainerPort(container_port=80, name="http")],
                    resources=client.V1ResourceRequirements(requests={"cpu": "100m", "memory": memory}))]))))


def test_nodes_look_like_k3s_servers(core):
    nodes = core.list_node().items
    assert len(nodes) == 3
    n = nodes[0]
    assert n.status.allocatable["memory"] == "4Gi" and n.status.allocatable["cpu"] == "2"
    assert n.status.node_info.kubelet_version == "v1.33.5+k3s1"
    assert n.metadata.labels["node-role.kubernetes.io/control-plane"] == "true"
    assert {a.type for a in n.status.addresses} == {"InternalIP", "Hostname"}
    assert any(c.type == "Ready" and c.status == "True" for c in n.status.conditions)


def test_default_namespaces_and_storage_class(core, api):
    names = {n.metadata.name for n in core.list_namespace().items}
    assert {"default", "kube-system", "kube-public"} <= names
    sc = client.StorageV1Api(api).read_storage_class("local-path")
    assert sc.metadata.annotations["storageclass.kubernetes.io/is-default-class"] == "true"


def test_deployment_becomes_available_and_scales(apps, core, ns):
    apps.create_namespaced_deployment(ns, _deployment("web"))

    def available():
        d = apps.read_namespaced_deployment("web", ns)
        conds = {c.type: c.status for c in d.status.conditions or []}
        return d.status.available_replicas == 2 and conds.get("Available") == "True" and d
    dep = wait_for(available, what="deployment available")
    assert dep.status.observed_generation == dep.metadata.generation
    pods = core.list_namespaced_pod(ns, label_selector="app=web").items
    assert len(pods) == 2
    rs = apps.list_namespaced_replica_set(ns).items[0]
    assert rs.metadata.name.startswith("web-") and pods[0].metadata.name.startswith(rs.metadata.name + "-")
    assert pods[0].metadata.owner_references[0].kind == "ReplicaSet"
    assert pods[0].metadata.labels["pod-template-hash"]
    assert all(p.status.container_statuses[0].ready for p in pods)
    apps.patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": 1}})
    wait_for(lambda: len(core.list_namespaced_pod(ns, label_selector="app=web").items) == 1, what="scale down")
    apps.patch_namespaced_deployment("web", ns, {"spec": {"template": {"spec": {"containers": [
        {"name": "web", "image": "nginx:1.27"}]}}}})
    wait_for(lambda: [p.spec.containers[0].image for p in core.list_namespaced_pod(ns, label_selector="app=web").items
                      if p.status.phase == "Running"] == ["nginx:1.27"], what="rollout")
    apps.delete_namespaced_deployment("web", ns)
    wait_for(lambda: not core.list_namespaced_pod(ns, label_selector="app=web").items, what="pods collected")


def test_pod_too_big_for_a_4gi_node_stays_pending(core, ns):
    pod = client.V1Pod(metadata=client.V1ObjectMeta(name="big"), spec=client.V1PodSpec(containers=[
        client.V1Container(name="c", image="i:1", resources=client.V1ResourceRequirements(requests={"memory": "5Gi"}))]))
    core.create_namespaced_pod(ns, pod)
    ev = wait_for(lambda: _events(core, ns, "big", "FailedScheduling"), what="FailedScheduling event")
    assert ev[0].type == "Warning"
    assert ev[0].message == ("0/3 nodes are available: 3 Insufficient memory. preemption: 0/3 nodes are available: "
                             "3 No preemption victims found for incoming pod.")
    p = core.read_namespaced_pod("big", ns)
    assert p.status.phase == "Pending" and not p.spec.node_name
    cond = next(c for c in p.status.conditions if c.type == "PodScheduled")
    assert (cond.status, cond.reason) == ("False", "Unschedulable")


def test_cpu_and_memory_shortage_are_both_counted(core, ns):
    pod = client.V1Pod(metadata=client.V1ObjectMeta(name="both"), spec=client.V1PodSpec(containers=[
        client.V1Container(name="c", image="i:1", resources=client.V1ResourceRequirements(
            requests={"cpu": "2500m", "memory": "4.5Gi"}))]))
    core.create_namespaced_pod(ns, pod)
    ev = wait_for(lambda: _events(core, ns, "both", "FailedScheduling"), what="event")
    assert ev[0].message.startswith("0/3 nodes are available: 3 Insufficient cpu, 3 Insufficient memory.")


def test_pvc_without_storage_class_stays_pending(fresh_double, tmp_path):
    d = fresh_double(local_path_storage=False)
    core = client.CoreV1Api(api_client_for(d, tmp_path))
    pvc = client.V1PersistentVolumeClaim(metadata=client.V1ObjectMeta(name="data"), spec=client.V1PersistentVolumeClaimSpec(
        access_modes=["ReadWriteOnce"], resources=client.V1VolumeResourceRequirements(requests={"storage": "1Gi"})))
    core.create_namespaced_persistent_volume_claim("default", pvc)
    ev = wait_for(lambda: _events(core, "default", "data", "FailedBinding"), what="FailedBinding")
    assert ev[0].message == "no persistent volumes available for this claim and no storage class is set"
    assert core.read_namespaced_persistent_volume_claim("data", "default").status.phase == "Pending"
    pod = client.V1Pod(metadata=client.V1ObjectMeta(name="user"), spec=client.V1PodSpec(
        containers=[client.V1Container(name="c", image="i:1")],
        volumes=[client.V1Volume(name="d", persistent_volume_claim=client.V1PersistentVolumeClaimVolumeSource(claim_name="data"))]))
    core.create_namespaced_pod("default", pod)
    ev = wait_for(lambda: _events(core, "default", "user", "FailedScheduling"), what="unbound claim event")
    assert "pod has unbound immediate PersistentVolumeClaims" in ev[0].message


def test_statefulset_pods_and_claims(apps, core, ns):
    sts = client.V1StatefulSet(
        metadata=client.V1ObjectMeta(name="etcd"),
        spec=client.V1StatefulSetSpec(
            replicas=3, service_name="etcd", selector=client.V1LabelSelector(match_labels={"app": "etcd"}),
            template=client.V1PodTemplateSpec(metadata=client.V1ObjectMeta(labels={"app": "etcd"}),
                                              spec=client.V1PodSpec(containers=[client.V1Container(name="etcd", image="etcd:3.5")])),
            volume_claim_templates=[client.V1PersistentVolumeClaim(
                metadata=client.V1ObjectMeta(name="data"),
                spec=client.V1PersistentVolumeClaimSpec(access_modes=["ReadWriteOnce"],
                                                        resources=client.V1VolumeResourceRequirements(requests={"storage": "1Gi"})))]))
    apps.create_namespaced_stateful_set(ns, sts)
    wait_for(lambda: apps.read_namespaced_stateful_set("etcd", ns).status.ready_replicas == 3, what="sts ready")
    names = sorted(p.metadata.name for p in core.list_namespaced_pod(ns).items)
    assert names == ["etcd-0", "etcd-1", "etcd-2"]
    claims = {c.metadata.name: c for c in core.list_namespaced_persistent_volume_claim(ns).items}
    assert set(claims) == {"data-etcd-0", "data-etcd-1", "data-etcd-2"}
    assert all(c.status.phase == "Bound" and c.spec.volume_name for c in claims.values())
    assert apps.read_namespaced_stateful_set("etcd", ns).status.current_replicas == 3


def test_job_completes(api, ns):
    batch = client.BatchV1Api(api)
    batch.create_namespaced_job(ns, client.V1Job(metadata=client.V1ObjectMeta(name="once"), spec=client.V1JobSpec(
        template=client.V1PodTemplateSpec(spec=client.V1PodSpec(restart_policy="Never", containers=[
            client.V1Container(name="c", image="busybox:1")])))))
    job = wait_for(lambda: (batch.read_namespaced_job("once", ns).status.succeeded or 0) == 1 and
                   batch.read_namespaced_job("once", ns), what="job complete")
    assert any(c.type == "Complete" and c.status == "True" for c in job.status.conditions)


def test_service_node_ports_and_endpoints(apps, core, ns):
    apps.create_namespaced_deployment(ns, _deployment("api", replicas=2))
    svc = client.V1Service(metadata=client.V1ObjectMeta(name="api"), spec=client.V1ServiceSpec(
        type="NodePort", selector={"app": "api"}, ports=[client.V1ServicePort(name="http", port=80, target_port="http")]))
    made = core.create_namespaced_service(ns, svc)
    assert made.spec.cluster_ip.startswith("10.43.")
    port = made.spec.ports[0].node_port
    assert 30000 <= port <= 32767
    ep = wait_for(lambda: (lambda e: e.subsets and len(e.subsets[0].addresses or []) == 2 and e)(
        core.read_namespaced_endpoints("api", ns)) if _exists(core, ns, "api") else None, what="endpoints")
    assert ep.subsets[0].ports[0].port == 80
    clash = client.V1Service(metadata=client.V1ObjectMeta(name="clash"), spec=client.V1ServiceSpec(
        type="NodePort", selector={"app": "x"}, ports=[client.V1ServicePort(port=81, node_port=port)]))
    with pytest.raises(ApiException) as e:
        core.create_namespaced_service(ns, clash)
    assert e.value.status == 422 and "provided port is already allocated" in e.value.body


def _exists(core, ns, name):
    try:
        core.read_namespaced_endpoints(name, ns)
        return True
    except ApiException:
        return False


def test_crash_loop_hook(double, core, ns):
    pod = client.V1Pod(metadata=client.V1ObjectMeta(name="crashy"), spec=client.V1PodSpec(containers=[
        client.V1Container(name="mysqld", image="mysql:8")]))
    core.create_namespaced_pod(ns, pod)
    wait_for(lambda: core.read_namespaced_pod("crashy", ns).status.phase == "Running", what="running")
    double.kubelet.crash_loop(double, ns, "crashy", "mysqld")
    st = wait_for(lambda: (lambda s: s.state.waiting and s)(core.read_namespaced_pod("crashy", ns).status.container_statuses[0]),
                  what="crash loop")
    assert st.state.waiting.reason == "CrashLoopBackOff" and st.restart_count >= 1 and not st.ready
    double.kubelet.crash_loop(double, ns, "crashy", "mysqld", on=False)


def test_record_event_aggregates(double, core, ns):
    cm = core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="ev")))
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ev", "namespace": ns, "uid": cm.metadata.uid}}
    double.record_event(obj, "Normal", "Synced", "all good", "vitess-operator")
    double.record_event(obj, "Normal", "Synced", "all good", "vitess-operator")
    ev = _events(core, ns, "ev", "Synced")
    assert len(ev) == 1 and ev[0].count == 2 and ev[0].source.component == "vitess-operator"
    assert ev[0].involved_object.uid == cm.metadata.uid and ev[0].first_timestamp and ev[0].last_timestamp


@pytest.mark.parametrize("policy", ["Delete", "Retain"])
def test_a_deleted_claims_volume_follows_its_reclaim_policy(api, core, ns, policy):
    """pv_controller.reclaimVolume: Delete removes the PV, Retain leaves it Released with its claimRef."""
    storage = client.StorageV1Api(api)
    sc_name = f"{ns}-{policy.lower()}"
    storage.create_storage_class({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                                  "metadata": {"name": sc_name}, "provisioner": "rancher.io/local-path",
                                  "reclaimPolicy": policy, "volumeBindingMode": "Immediate"})
    try:
        core.create_namespaced_persistent_volume_claim(ns, client.V1PersistentVolumeClaim(
            metadata=client.V1ObjectMeta(name="data"), spec=client.V1PersistentVolumeClaimSpec(
                storage_class_name=sc_name, access_modes=["ReadWriteOnce"],
                resources=client.V1VolumeResourceRequirements(requests={"storage": "1Gi"}))))
        pvc = wait_for(lambda: (c := core.read_namespaced_persistent_volume_claim("data", ns)).status.phase == "Bound"
                       and c, what="claim bound")
        pv_name = pvc.spec.volume_name
        assert core.read_persistent_volume(pv_name).spec.persistent_volume_reclaim_policy == policy
        core.delete_namespaced_persistent_volume_claim("data", ns, _preload_content=False)

        def reclaimed():
            try:
                pv = core.read_persistent_volume(pv_name)
            except ApiException as e:
                return e.status == 404 and "gone"
            return pv.status.phase == "Released" and pv
        got = wait_for(reclaimed, what=f"the volume reclaimed ({policy})")
        if policy == "Delete":
            assert got == "gone"
        else:
            assert got.spec.claim_ref.name == "data" and got.status.phase == "Released"
            core.delete_persistent_volume(pv_name, _preload_content=False)
    finally:
        storage.delete_storage_class(sc_name, _preload_content=False)
