"""The scheduler's affinity, anti-affinity and topology spread, through the official client.

Pods here request nothing unless a test says so: with no requests every node scores alike on
resources, so without the rule under test they would all land on one node.
"""

from __future__ import annotations

from kubernetes import client

from kubedouble_helpers import api_client_for, wait_for

HOST = "kubernetes.io/hostname"


def _pod(name, labels=None, affinity=None, spread=None, cpu=None, node_name=None):
    res = client.V1ResourceRequirements(requests={"cpu": cpu}) if cpu else None
    return client.V1Pod(metadata=client.V1ObjectMeta(name=name, labels=labels or {}), spec=client.V1PodSpec(
        containers=[client.V1Container(name="c", image="i:1", resources=res)], affinity=affinity,
        topology_spread_constraints=spread, node_name=node_name))


def _pin(*node_names) -> client.V1Affinity:
    """Required node affinity, one matchFields term per node (the API allows one value each)."""
    return client.V1Affinity(node_affinity=client.V1NodeAffinity(
        required_during_scheduling_ignored_during_execution=client.V1NodeSelector(node_selector_terms=[
            client.V1NodeSelectorTerm(match_fields=[client.V1NodeSelectorRequirement(
                key="metadata.name", operator="In", values=[n])]) for n in node_names])))


def _node_of(core, ns, name):
    return wait_for(lambda: core.read_namespaced_pod(name, ns).spec.node_name, what=f"{name} scheduled")


def _failed(core, ns, name) -> str:
    ev = wait_for(lambda: [e for e in core.list_namespaced_event(ns, field_selector=f"involvedObject.name={name}").items
                           if e.reason == "FailedScheduling"], what=f"{name} FailedScheduling")
    pod = core.read_namespaced_pod(name, ns)
    assert pod.status.phase == "Pending" and not pod.spec.node_name
    cond = next(c for c in pod.status.conditions if c.type == "PodScheduled")
    assert (cond.status, cond.reason, cond.message) == ("False", "Unschedulable", ev[-1].message)
    return ev[-1].message


def test_required_node_affinity_by_name_places_each_pod_on_its_node(core, ns):
    for n in ("node-1", "node-2", "node-3"):
        core.create_namespaced_pod(ns, _pod(f"on-{n}", affinity=_pin(n)))
    assert {n: _node_of(core, ns, f"on-{n}") for n in ("node-1", "node-2", "node-3")} == {
        "node-1": "node-1", "node-2": "node-2", "node-3": "node-3"}


def test_required_node_affinity_to_a_missing_node_stays_pending(core, ns):
    core.create_namespaced_pod(ns, _pod("ghost", affinity=_pin("node-9")))
    assert _failed(core, ns, "ghost") == (
        "0/3 nodes are available: 3 node(s) didn't satisfy plugin(s) [NodeAffinity]. "
        "preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.")


def test_required_node_affinity_on_labels_that_no_node_has_stays_pending(core, ns):
    affinity = client.V1Affinity(node_affinity=client.V1NodeAffinity(
        required_during_scheduling_ignored_during_execution=client.V1NodeSelector(node_selector_terms=[
            client.V1NodeSelectorTerm(match_expressions=[client.V1NodeSelectorRequirement(
                key=HOST, operator="NotIn", values=["node-1", "node-2", "node-3"])]),
            client.V1NodeSelectorTerm(match_expressions=[client.V1NodeSelectorRequirement(
                key="disk", operator="Exists")])])))
    core.create_namespaced_pod(ns, _pod("nowhere", affinity=affinity))
    assert _failed(core, ns, "nowhere") == (
        "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. "
        "preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.")


def _anti(labels) -> client.V1Affinity:
    return client.V1Affinity(pod_anti_affinity=client.V1PodAntiAffinity(
        required_during_scheduling_ignored_during_execution=[client.V1PodAffinityTerm(
            label_selector=client.V1LabelSelector(match_labels=labels), topology_key=HOST)]))


def test_required_anti_affinity_puts_three_replicas_on_three_nodes_and_a_fourth_waits(core, ns):
    labels = {"app": "etcd"}
    for i in range(3):
        core.create_namespaced_pod(ns, _pod(f"etcd-{i}", labels, _anti(labels)))
    assert sorted(_node_of(core, ns, f"etcd-{i}") for i in range(3)) == ["node-1", "node-2", "node-3"]
    core.create_namespaced_pod(ns, _pod("etcd-3", labels, _anti(labels)))
    assert _failed(core, ns, "etcd-3") == (
        "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules. "
        "preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.")
    # a pod with no rules of its own is kept off by the existing pods' anti-affinity
    core.create_namespaced_pod(ns, _pod("plain", labels))
    assert _failed(core, ns, "plain").startswith(
        "0/3 nodes are available: 3 node(s) didn't satisfy existing pods anti-affinity rules.")


def test_required_pod_affinity_follows_the_pod_it_names(core, ns):
    core.create_namespaced_pod(ns, _pod("leader", {"role": "leader"}, _pin("node-3")))
    assert _node_of(core, ns, "leader") == "node-3"
    affinity = client.V1Affinity(pod_affinity=client.V1PodAffinity(
        required_during_scheduling_ignored_during_execution=[client.V1PodAffinityTerm(
            label_selector=client.V1LabelSelector(match_labels={"role": "leader"}), topology_key=HOST)]))
    for i in range(2):
        core.create_namespaced_pod(ns, _pod(f"follower-{i}", {"role": "follower"}, affinity))
    assert [_node_of(core, ns, f"follower-{i}") for i in range(2)] == ["node-3", "node-3"]


def _spread(labels) -> list:
    return [client.V1TopologySpreadConstraint(max_skew=1, topology_key=HOST, when_unsatisfiable="DoNotSchedule",
                                              label_selector=client.V1LabelSelector(match_labels=labels))]


def test_topology_spread_do_not_schedule_spreads_evenly(core, ns):
    labels = {"app": "tablet"}
    for i in range(6):
        core.create_namespaced_pod(ns, _pod(f"t-{i}", labels, spread=_spread(labels)))
    placed = [_node_of(core, ns, f"t-{i}") for i in range(6)]
    assert {n: placed.count(n) for n in set(placed)} == {"node-1": 2, "node-2": 2, "node-3": 2}


def test_topology_spread_blocks_a_node_over_the_skew_and_names_every_reason(fresh_double, tmp_path):
    d = fresh_double(nodes=3, node_cpu="2", node_memory="4Gi")
    core = client.CoreV1Api(api_client_for(d, tmp_path))
    ns, labels = "default", {"app": "tablet"}
    # node-1 holds two matching pods, node-2 the only other eligible domain has none but no cpu left
    for i in range(2):
        core.create_namespaced_pod(ns, _pod(f"old-{i}", labels, node_name="node-1"))
    core.create_namespaced_pod(ns, _pod("hog", cpu="1900m", node_name="node-2"))
    affinity = client.V1Affinity(node_affinity=client.V1NodeAffinity(
        required_during_scheduling_ignored_during_execution=client.V1NodeSelector(node_selector_terms=[
            client.V1NodeSelectorTerm(match_expressions=[client.V1NodeSelectorRequirement(
                key=HOST, operator="In", values=["node-1", "node-2"])])])))
    core.create_namespaced_pod(ns, _pod("new", labels, affinity, _spread(labels), cpu="500m"))
    assert _failed(core, ns, "new") == (
        "0/3 nodes are available: 1 Insufficient cpu, 1 node(s) didn't match Pod's node affinity/selector, "
        "1 node(s) didn't match pod topology spread constraints. preemption: 0/3 nodes are available: "
        "1 Preemption is not helpful for scheduling, 2 No preemption victims found for incoming pod.")


def test_preferred_node_affinity_picks_the_preferred_node(core, ns):
    affinity = client.V1Affinity(node_affinity=client.V1NodeAffinity(
        preferred_during_scheduling_ignored_during_execution=[client.V1PreferredSchedulingTerm(
            weight=50, preference=client.V1NodeSelectorTerm(match_fields=[client.V1NodeSelectorRequirement(
                key="metadata.name", operator="In", values=[n])])) for n in ("node-2",)]))
    for i in range(2):
        core.create_namespaced_pod(ns, _pod(f"p-{i}", affinity=affinity))
    assert [_node_of(core, ns, f"p-{i}") for i in range(2)] == ["node-2", "node-2"]
