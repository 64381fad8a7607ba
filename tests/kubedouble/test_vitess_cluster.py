"""The simulated vitess-operator against the real v2.17.0 manifests, through the official client."""

from __future__ import annotations

import re

from kubernetes import client

from vtflow.kube import discovery_client

from vitess_helpers import (NS, apply, apply_file, cluster_ready, cluster_status, docs, make_namespace,
                            start_double, wait_for)

VC = dict(api_version="planetscale.com/v2", kind="VitessCluster")


def _pods(api, selector=""):
    return client.CoreV1Api(api).list_namespaced_pod(NS, label_selector=selector).items


def test_101_reaches_ready_status(vitess_101):
    _, api, dyn = vitess_101
    st = cluster_status(dyn)
    assert st["globalLockserver"]["etcd"]["available"] == "True"
    assert st["vitessDashboard"]["available"] == "True"
    assert st["cells"]["zone1"]["gatewayAvailable"] == "True"
    ks = st["keyspaces"]["commerce"]
    assert (ks["desiredTablets"], ks["readyTablets"], ks["desiredShards"], ks["readyShards"]) == (3, 3, 1, 1)
    assert st["gatewayServiceName"] == "example-vtgate-ae7df4b6"
    vc = dyn.resources.get(**VC).get(name="example", namespace=NS)
    assert st["observedGeneration"] == vc.metadata.generation
    assert "conditions" not in st


def test_pods_are_named_and_labelled_in_the_real_style(vitess_101):
    _, api, _ = vitess_101
    names = {p.metadata.name: p.metadata.labels for p in _pods(api, "planetscale.com/cluster=example")}
    etcd = sorted(n for n, lb in names.items() if lb["planetscale.com/component"] == "etcd")
    assert etcd == ["example-etcd-faf13de3-1", "example-etcd-faf13de3-2", "example-etcd-faf13de3-3"]
    by_component = {}
    for n, lb in names.items():
        by_component.setdefault(lb["planetscale.com/component"], []).append(n)
    assert re.fullmatch(r"example-zone1-vtctld-1d4dcad0-[a-z0-9]+-[a-z0-9]{5}", by_component["vtctld"][0])
    assert re.fullmatch(r"example-zone1-vtgate-bc6cde92-[a-z0-9]+-[a-z0-9]{5}", by_component["vtgate"][0])
    assert re.fullmatch(r"example-commerce-x-x-zone1-vtorc-[0-9a-f]{8}-[a-z0-9]+-[a-z0-9]{5}", by_component["vtorc"][0])
    tablets = by_component["vttablet"]
    assert len(tablets) == 3
    for n in tablets:
        assert re.fullmatch(r"example-vttablet-zone1-\d{10}-[0-9a-f]{8}", n)
        lb = names[n]
        assert (lb["planetscale.com/keyspace"], lb["planetscale.com/shard"], lb["planetscale.com/cell"]) == \
            ("commerce", "x-x", "zone1")


def test_tablet_pods_carry_the_spec_resources_and_claims(vitess_101):
    _, api, _ = vitess_101
    pod = _pods(api, "planetscale.com/component=vttablet")[0]
    containers = {c.name: c for c in pod.spec.containers}
    assert set(containers) == {"vttablet", "mysqld", "mysqld-exporter"}
    assert containers["mysqld"].resources.requests == {"cpu": "100m", "memory": "512Mi"}
    assert containers["vttablet"].resources.limits == {"memory": "256Mi"}
    assert containers["vttablet"].image == "vitess/lite:v23.0.3-mysql80"
    claim = client.CoreV1Api(api).read_namespaced_persistent_volume_claim(pod.metadata.name, NS)
    assert claim.spec.resources.requests["storage"] == "10Gi" and claim.status.phase == "Bound"
    assert pod.metadata.owner_references[0].kind == "VitessShard"


def test_services_and_ports(vitess_101):
    _, api, _ = vitess_101
    svcs = {s.metadata.name: s for s in client.CoreV1Api(api).list_namespaced_service(NS).items}
    ports = lambda n: {p.name: p.port for p in svcs[n].spec.ports}  # noqa: E731
    assert ports("example-vtctld-625ee430") == {"web": 15000, "grpc": 15999}
    assert ports("example-vtgate-ae7df4b6") == {"web": 15000, "grpc": 15999, "mysql": 3306}
    assert ports("example-zone1-vtgate-bc6cde92") == {"web": 15000, "grpc": 15999, "mysql": 3306}
    assert ports("example-etcd-faf13de3-client") == {"client": 2379}
    assert svcs["example-vtgate-ae7df4b6"].spec.selector == {"planetscale.com/cluster": "example",
                                                              "planetscale.com/component": "vtgate"}
    assert svcs["example-vtgate-ae7df4b6"].spec.cluster_ip.startswith("10.43.")
    headless = [s for s in svcs.values() if s.spec.cluster_ip == "None" and
                (s.spec.selector or {}).get("planetscale.com/component") == "vttablet"]
    assert len(headless) == 1


def test_children_are_owned_and_shards_report_tablets(vitess_101):
    _, api, dyn = vitess_101
    shards = dyn.resources.get(api_version="planetscale.com/v2", kind="VitessShard").get(namespace=NS).items
    assert [s.metadata.name for s in shards] == ["example-commerce-x-x-0f5afee6"]
    st = shards[0].status
    types = sorted(t["type"] for t in st.tablets.values())
    assert types == ["primary", "replica", "replica"]
    assert all(t["ready"] == "True" for t in st.tablets.values())
    assert (st.hasMaster, st.servingWrites, st.hasInitialBackup) == ("True", "True", "True")
    assert shards[0].metadata.ownerReferences[0].kind == "VitessKeyspace"
    def keyspace_ready():  # the keyspace's status is written after the cluster's
        ks = dyn.resources.get(api_version="planetscale.com/v2", kind="VitessKeyspace").get(namespace=NS).items[0]
        conds = {c["type"]: c["status"] for c in ((ks.status or {}).get("conditions") or [])} if ks.status else {}
        return conds.get("Ready") == "True" and (ks, conds)
    ks, conds = wait_for(keyspace_ready, what="VitessKeyspace Ready")
    assert conds["Ready"] == "True" and conds["ReshardingActive"] == "False"
    assert ks.metadata.ownerReferences[0].kind == "VitessCluster"
    ls = dyn.resources.get(api_version="planetscale.com/v2", kind="EtcdLockserver").get(namespace=NS).items[0]
    assert ls.metadata.name == "example-etcd-faf13de3" and ls.status.available == "True"
    cells = dyn.resources.get(api_version="planetscale.com/v2", kind="VitessCell").get(namespace=NS).items
    assert cells[0].status.gateway.available == "True"


def test_image_change_rolls_tablets_and_status_follows(vitess_101):
    _, api, dyn = vitess_101
    rc = dyn.resources.get(**VC)
    rc.patch(name="example", namespace=NS, content_type="application/merge-patch+json",
             body={"spec": {"images": {"vttablet": "vitess/lite:v23.0.4-mysql80", "vtgate": "vitess/lite:v23.0.4-mysql80"}}})

    def rolled():
        pods = _pods(api, "planetscale.com/component in (vttablet,vtgate)")
        images = {c.image for p in pods for c in p.spec.containers if c.name in ("vttablet", "vtgate")}
        ready = all(p.status.phase == "Running" for p in pods)
        st = cluster_status(dyn)
        return (images == {"vitess/lite:v23.0.4-mysql80"} and ready and cluster_ready(st)
                and st["observedGeneration"] == rc.get(name="example", namespace=NS).metadata.generation
                and st["keyspaces"]["commerce"]["updatedTablets"] == 3)
    wait_for(rolled, timeout=15, what="tablets and vtgate rolled to the new image")


def test_no_operator_means_no_status(tmp_path):
    d, api = start_double(tmp_path, nodes=3, node_cpu="8", node_memory="16Gi", operators=True)
    try:
        dyn = discovery_client(api)
        make_namespace(api)
        for doc in docs("operator.yaml"):
            if doc["kind"] != "Deployment":
                apply(dyn, doc)
        dyn.resources.invalidate_cache()
        apply_file(dyn, "101_initial_cluster.yaml")
        # proof that the controllers had their chance at the cluster: they run in one thread, in
        # order, and a pod created after it reaches Running only after the operator's pass was due
        core = client.CoreV1Api(api)
        core.create_namespaced_pod(NS, client.V1Pod(metadata=client.V1ObjectMeta(name="later"), spec=client.V1PodSpec(
            containers=[client.V1Container(name="c", image="busybox")])))
        wait_for(lambda: core.read_namespaced_pod("later", NS).status.phase == "Running", what="a later pod Running")
        assert cluster_status(dyn) == {}
        assert _pods(api, "planetscale.com/cluster=example") == []
        # the operator arrives: now the cluster comes up
        apply(dyn, next(doc for doc in docs("operator.yaml") if doc["kind"] == "Deployment"))
        wait_for(lambda: cluster_ready(cluster_status(dyn)), timeout=15, what="ready once the operator runs")
    finally:
        d.stop()


def test_operator_ignores_namespaces_outside_watch_namespace(tmp_path):
    d, api = start_double(tmp_path, nodes=3, node_cpu="8", node_memory="16Gi", operators=True)
    try:
        dyn = discovery_client(api)
        make_namespace(api)
        make_namespace(api, "other")
        apply_file(dyn, "operator.yaml")
        apply_file(dyn, "101_initial_cluster.yaml", namespace="other")
        apply_file(dyn, "101_initial_cluster.yaml")
        wait_for(lambda: cluster_ready(cluster_status(dyn)), timeout=15, what="example ready")
        # WATCH_NAMESPACE in operator.yaml is "default,example"
        assert cluster_status(dyn, namespace="other") == {}
    finally:
        d.stop()


def test_vtadmin_example_reports_vtadmin(tmp_path):
    from vitess_helpers import deploy_101
    d, api = start_double(tmp_path, nodes=3, node_cpu="8", node_memory="16Gi", operators=True)
    try:
        dyn = deploy_101(api, "101_initial_cluster_vtorc_vtadmin.yaml")
        st = cluster_status(dyn)
        assert st["vtadmin"] == {"available": "True", "serviceName": "example-zone1-vtadmin-c03d7eae"}
        svc = client.CoreV1Api(api).read_namespaced_service("example-zone1-vtadmin-c03d7eae", NS)
        assert {p.name: p.port for p in svc.spec.ports} == {"web": 15000, "api": 15001}
        # no vitessOrchestrator in this keyspace spec: no vtorc
        assert _pods(api, "planetscale.com/component=vtorc") == []
    finally:
        d.stop()


def test_small_nodes_leave_pods_pending_with_insufficient_memory(tmp_path):
    """2 CPU / 4Gi nodes that already carry the user's other workloads (K3s, Rancher, Harbor,
    Jenkins): the 101's requests (~3.2 GiB) alone would fit three such empty nodes, so the other
    workloads are modelled as a DaemonSet requesting 3000Mi per node (an assumption, see report)."""
    d, api = start_double(tmp_path, nodes=3, node_cpu="2", node_memory="4Gi", operators=True)
    try:
        dyn = discovery_client(api)
        make_namespace(api)
        load = {"apiVersion": "apps/v1", "kind": "DaemonSet",
                "metadata": {"name": "platform-load", "namespace": "kube-system"},
                "spec": {"selector": {"matchLabels": {"app": "platform-load"}},
                         "template": {"metadata": {"labels": {"app": "platform-load"}},
                                      "spec": {"containers": [{"name": "load", "image": "rancher/pause:3.6",
                                                               "resources": {"requests": {"memory": "3000Mi",
                                                                                          "cpu": "500m"}}}]}}}}
        client.AppsV1Api(api).create_namespaced_daemon_set("kube-system", load)
        wait_for(lambda: len([p for p in client.CoreV1Api(api).list_namespaced_pod("kube-system").items
                              if p.status.phase == "Running"]) == 3, what="platform load running")
        apply_file(dyn, "operator.yaml")
        apply_file(dyn, "101_initial_cluster.yaml")
        core = client.CoreV1Api(api)

        def pending_for_memory():
            pending = [p for p in _pods(api, "planetscale.com/cluster=example") if p.status.phase == "Pending"]
            events = core.list_namespaced_event(NS, field_selector="reason=FailedScheduling").items
            return pending and any("Insufficient memory" in e.message for e in events) and (pending, events)
        pending, events = wait_for(pending_for_memory, timeout=10, what="FailedScheduling Insufficient memory")
        pending_names = {p.metadata.name for p in pending}
        assert any(e.involved_object.name in pending_names and "Insufficient memory" in e.message for e in events)
        st = cluster_status(dyn)
        assert not cluster_ready(st)
    finally:
        d.stop()


def test_scheduling_rules_reach_the_pods_and_place_them(tmp_path):
    """etcd with required anti-affinity, a tablet pool kept off node-3 and spread by hostname:
    the operator copies the rules into its pods and the scheduler honours them."""
    import copy
    host = "kubernetes.io/hostname"
    etcd_anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
        "labelSelector": {"matchLabels": {"planetscale.com/cluster": "example", "planetscale.com/component": "etcd"}},
        "topologyKey": host}]}}
    tablets = {"planetscale.com/cluster": "example", "planetscale.com/component": "vttablet"}
    pool_affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["node-3"]}]}]}}}
    spread = [{"maxSkew": 1, "topologyKey": host, "whenUnsatisfiable": "DoNotSchedule",
               "labelSelector": {"matchLabels": tablets}}]
    d, api = start_double(tmp_path, nodes=3, node_cpu="8", node_memory="16Gi", operators=True)
    try:
        dyn = discovery_client(api)
        make_namespace(api)
        apply_file(dyn, "operator.yaml")
        vc = copy.deepcopy(next(x for x in docs("101_initial_cluster.yaml") if x["kind"] == "VitessCluster"))
        vc["spec"]["globalLockserver"] = {"etcd": {"affinity": etcd_anti}}
        pool = vc["spec"]["keyspaces"][0]["partitionings"][0]["equal"]["shardTemplate"]["tabletPools"][0]
        pool.update({"affinity": pool_affinity, "topologySpreadConstraints": spread})
        for x in docs("101_initial_cluster.yaml"):
            apply(dyn, vc if x["kind"] == "VitessCluster" else x)
        wait_for(lambda: cluster_ready(cluster_status(dyn)), timeout=15, what="VitessCluster ready")
        etcd = _pods(api, "planetscale.com/component=etcd")
        assert len(etcd) == 3 and sorted(p.spec.node_name for p in etcd) == ["node-1", "node-2", "node-3"]
        assert all(api.sanitize_for_serialization(p.spec.affinity) == etcd_anti for p in etcd)
        vt = _pods(api, "planetscale.com/component=vttablet")
        on = [p.spec.node_name for p in vt]
        assert len(vt) == 3 and sorted(on.count(n) for n in set(on)) == [1, 2] and "node-3" not in on
        assert all(api.sanitize_for_serialization(p.spec.affinity) == pool_affinity for p in vt)
        assert all(api.sanitize_for_serialization(p.spec.topology_spread_constraints) == spread for p in vt)
        # a rule added later reaches the Deployment the operator owns (a real operator updates
        # its template and the rollout follows)
        gate = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-2"]}]}]}}}
        vc["spec"]["cells"][0].setdefault("gateway", {})["affinity"] = gate
        apply(dyn, vc)
        apps = client.AppsV1Api(api)

        def gateway_affinity():
            deps = apps.list_namespaced_deployment(NS, label_selector="planetscale.com/component=vtgate").items
            return deps and api.sanitize_for_serialization(deps[0].spec.template.spec.affinity) == gate
        wait_for(gateway_affinity, timeout=15, what="the vtgate Deployment to carry the new affinity")
        wait_for(lambda: {p.spec.node_name for p in _pods(api, "planetscale.com/component=vtgate")} == {"node-2"},
                 timeout=15, what="vtgate rolled onto node-2")
    finally:
        d.stop()
