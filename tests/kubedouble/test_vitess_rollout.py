"""The simulated operator's tablet rollout (rollout.py), through the official client, on the real
v2.17.0 101 example: a changed tablet spec is scheduled on every pod at once
(``rollout.planetscale.com/scheduled``), then the pods are replaced one at a time, the primary last
after a planned reparent; unrelated changes roll nothing; External waits for a release; a tablet
that never becomes Ready on the new image stops the rollout with the annotation on the waiting pods.
Every wait is for a state; the pod history comes from a watch started before the change."""

from __future__ import annotations

import copy
import queue
import threading
from datetime import datetime, timezone

import pytest
from kubernetes import client, watch

from kubedouble.vitess import rollout
from kubedouble.vitess.rollout import CASCADE, RELEASED, SCHEDULED, TabletView, shard_actions

from vitess_helpers import NS, apply, cluster_ready, cluster_status, deploy_101, docs, start_double, wait_for

VC = dict(api_version="planetscale.com/v2", kind="VitessCluster")
SHARD = dict(api_version="planetscale.com/v2", kind="VitessShard")
TABLETS = "planetscale.com/component=vttablet,planetscale.com/keyspace=commerce"
OLD, NEW = "vitess/lite:v23.0.3-mysql80", "vitess/lite:v23.0.4-mysql80"


@pytest.fixture
def cluster(tmp_path):
    d, api = start_double(tmp_path, nodes=3, node_cpu="8", node_memory="16Gi", operators=True)
    try:
        dyn = deploy_101(api)
        yield d, api, dyn
    finally:
        d.stop()


class PodHistory:
    """Every watch event of the commerce tablet pods from ``resourceVersion`` on, in a thread."""

    def __init__(self, api, rv: str):
        self.events: queue.Queue = queue.Queue()
        self.seen: list[tuple[str, dict]] = []
        self._w = watch.Watch()
        core = client.CoreV1Api(api)
        self._t = threading.Thread(target=self._run, args=(core, rv), daemon=True)
        self._t.start()

    def _run(self, core, rv):
        try:
            for ev in self._w.stream(core.list_namespaced_pod, NS, label_selector=TABLETS, resource_version=rv,
                                     timeout_seconds=60, _request_timeout=70):
                self.events.put((ev["type"], core.api_client.sanitize_for_serialization(ev["object"])))
        except Exception:  # noqa: BLE001 - the double stopping ends the stream mid-chunk
            pass

    def drain(self) -> list[tuple[str, dict]]:
        while True:
            try:
                self.seen.append(self.events.get_nowait())
            except queue.Empty:
                return self.seen

    def stop(self):
        self._w.stop()


def _pods(api):
    return client.CoreV1Api(api).list_namespaced_pod(NS, label_selector=TABLETS)


def _image(pod: dict) -> str:
    return next(c["image"] for c in pod["spec"]["containers"] if c["name"] == "vttablet")


def _ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in (pod.get("status") or {}).get("conditions") or [])


def _ann(pod: dict) -> dict:
    return pod["metadata"].get("annotations") or {}


def _shard(dyn) -> dict:
    return dyn.resources.get(**SHARD).get(namespace=NS).items[0].to_dict()


def _set_images(dyn, image: str, **extra):
    dyn.resources.get(**VC).patch(name="example", namespace=NS, content_type="application/merge-patch+json",
                                  body={"spec": {"images": {"vttablet": image}, **extra}})


def _all_on(api, image: str):
    pods = [api.sanitize_for_serialization(p) for p in _pods(api).items]
    return (len(pods) == 3 and all(_image(p) == image and _ready(p) and not p["metadata"].get("deletionTimestamp")
                                   and SCHEDULED not in _ann(p) and RELEASED not in _ann(p) for p in pods) and pods)


def _replay(events, initial):
    """The pod set after each event, from ``initial`` on: name -> pod (deleted ones gone)."""
    state: dict[str, dict] = {p["metadata"]["name"]: p for p in initial}
    for kind, pod in events:
        if kind == "DELETED":
            state.pop(pod["metadata"]["name"], None)
        else:
            state[pod["metadata"]["name"]] = pod
        yield kind, pod, dict(state)


def test_an_image_change_is_scheduled_on_every_tablet_then_rolled_one_at_a_time_primary_last(cluster):
    _, api, dyn = cluster
    listed = _pods(api)
    old = listed.items
    initial = [api.sanitize_for_serialization(p) for p in old]
    before = {p.metadata.uid: p.metadata.name for p in old}
    primary = _shard(dyn)["status"]["masterAlias"]
    primary_pod = next(p.metadata.name for p in old
                       if int(p.metadata.labels["planetscale.com/tablet-uid"]) == int(primary.rsplit("-", 1)[1]))
    history = PodHistory(api, listed.metadata.resource_version)
    try:
        _set_images(dyn, NEW)
        pods = wait_for(lambda: _all_on(api, NEW), timeout=30, what="every tablet on the new image, no annotation")
        wait_for(lambda: CASCADE not in (_shard(dyn)["metadata"].get("annotations") or {}), what="cascade removed")
        events = wait_for(lambda: (ev := history.drain()) and
                          {p["metadata"]["uid"] for _, p in ev if p["metadata"]["uid"] not in before} >= {
                              p["metadata"]["uid"] for p in pods} and ev, what="the watch caught up")
    finally:
        history.stop()

    # the change is scheduled on all three old pods at once, before any of them goes
    first_delete = next(i for i, (kind, p, _s) in enumerate(_replay(events, initial))
                        if kind == "DELETED" or p["metadata"].get("deletionTimestamp"))
    annotated_together = [s for i, (_, _p, s) in enumerate(_replay(events, initial)) if i < first_delete
                          and len(s) == 3 and all(SCHEDULED in _ann(x) for x in s.values())]
    assert annotated_together, "the three tablets were never all scheduled at once"
    msg = _ann(annotated_together[0][primary_pod])[SCHEDULED]
    assert '"image":"vitess/lite:v23.0.4-mysql80"' in msg and '"name":"vttablet"' in msg

    # an old pod keeps the annotation from its scheduling until it is deleted
    for uid in before:
        states = [p for _, p in events if p["metadata"]["uid"] == uid]
        since = next(i for i, p in enumerate(states) if SCHEDULED in _ann(p))
        assert all(SCHEDULED in _ann(p) for p in states[since:]), before[uid]

    # one at a time: never more than one tablet missing or unready; each new pod is on the new image
    for _, _p, s in _replay(events, initial):
        up = [p for p in s.values() if _ready(p) and not p["metadata"].get("deletionTimestamp")]
        assert len(up) >= 2, sorted(s)
    assert all(_image(p) == NEW and SCHEDULED not in _ann(p) for _, p in events if p["metadata"]["uid"] not in before)

    # replicas first, the primary last, after a planned reparent moved the primary away
    deleted = [p["metadata"]["name"] for kind, p in events if kind == "DELETED" and p["metadata"]["uid"] in before]
    assert len(deleted) == 3 and deleted[-1] == primary_pod
    old_primary = [p for _, p in events if p["metadata"]["name"] == primary_pod and p["metadata"]["uid"] in before]
    assert any(_ann(p).get("drain.planetscale.com/finished") for p in old_primary)
    shard = _shard(dyn)
    assert shard["status"]["masterAlias"] != primary and shard["status"]["tablets"][primary]["type"] == "replica"
    assert cluster_ready(cluster_status(dyn)) and cluster_status(dyn)["keyspaces"]["commerce"]["updatedTablets"] == 3


def test_a_new_keyspace_rolls_none_of_the_existing_tablets(cluster):
    _, api, dyn = cluster
    before = {p.metadata.uid for p in _pods(api).items}
    history = PodHistory(api, _pods(api).metadata.resource_version)
    try:
        vc = copy.deepcopy(next(x for x in docs("101_initial_cluster.yaml") if x["kind"] == "VitessCluster"))
        customer = next(k for k in next(x for x in docs("201_customer_tablets.yaml")
                                        if x["kind"] == "VitessCluster")["spec"]["keyspaces"] if k["name"] == "customer")
        vc["spec"]["keyspaces"].append(customer)
        apply(dyn, vc)
        wait_for(lambda: (ks := cluster_status(dyn).get("keyspaces", {}).get("customer")) and
                 ks["readyTablets"] == ks["desiredTablets"] == 3, timeout=30, what="customer's tablets ready")
        wait_for(lambda: cluster_ready(cluster_status(dyn)), timeout=15, what="cluster ready")
    finally:
        history.stop()
    assert {p.metadata.uid for p in _pods(api).items} == before
    assert all(SCHEDULED not in _ann(p) for _, p in history.drain())
    assert all(SCHEDULED not in (p.metadata.annotations or {}) for p in client.CoreV1Api(api).list_namespaced_pod(NS).items)


def test_a_tablet_that_never_gets_ready_on_the_new_image_stops_the_rollout_until_its_pod_is_deleted(cluster):
    d, api, dyn = cluster
    d.rollout.never_ready(NEW)
    before = {p.metadata.name: p.metadata.uid for p in _pods(api).items}
    _set_images(dyn, NEW)
    core = client.CoreV1Api(api)

    def stuck():
        # the first replaced tablet crash-loops on the new image, and has restarted since (time passed)
        for p in _pods(api).items:
            cs = next((c for c in p.status.container_statuses or [] if c.name == "vttablet"), None)
            if p.metadata.uid not in before.values() and cs and cs.restart_count >= 2:
                return p
        return None
    bad = wait_for(stuck, timeout=30, what="a new tablet crash-looping on the new image")
    assert "never becomes ready" in core.read_namespaced_pod_log(bad.metadata.name, NS, container="vttablet",
                                                                 previous=True)
    waiting = [p for p in _pods(api).items if p.metadata.name != bad.metadata.name]
    assert len(waiting) == 2
    for p in waiting:   # the others wait on the old image, still scheduled, never released
        assert p.metadata.uid == before[p.metadata.name]
        assert next(c.image for c in p.spec.containers if c.name == "vttablet") == OLD
        assert SCHEDULED in p.metadata.annotations and RELEASED not in p.metadata.annotations
    assert CASCADE in (_shard(dyn)["metadata"].get("annotations") or {})
    ks = cluster_status(dyn)["keyspaces"]["commerce"]
    assert ks["readyTablets"] == 2 and ks["updatedTablets"] == 1

    # putting the old image back unschedules the waiting two; the broken pod (now outdated) stays
    # broken, as the real operator releases nothing while a tablet is not Available: it must go
    _set_images(dyn, OLD)
    wait_for(lambda: all(SCHEDULED not in (p.metadata.annotations or {}) for p in _pods(api).items
                         if p.metadata.name != bad.metadata.name), what="the waiting tablets unscheduled")
    wait_for(lambda: SCHEDULED in (core.read_namespaced_pod(bad.metadata.name, NS).metadata.annotations or {}),
             what="the broken tablet scheduled back")
    assert core.read_namespaced_pod(bad.metadata.name, NS).metadata.uid == bad.metadata.uid
    core.delete_namespaced_pod(bad.metadata.name, NS)
    wait_for(lambda: _all_on(api, OLD), timeout=30, what="every tablet back on the old image, ready")
    wait_for(lambda: CASCADE not in (_shard(dyn)["metadata"].get("annotations") or {}), what="cascade removed")


def test_external_strategy_holds_each_level_until_an_outside_tool_releases_it(cluster):
    """External (the operator's default): the keyspace is scheduled and keeps its spec; released,
    its shard is; released, the pods are; a released pod is drained and replaced, alone."""
    _, api, dyn = cluster
    before = {p.metadata.name: p.metadata.uid for p in _pods(api).items}
    ks_rc = dyn.resources.get(api_version="planetscale.com/v2", kind="VitessKeyspace")
    shard_rc = dyn.resources.get(**SHARD)
    core = client.CoreV1Api(api)
    _set_images(dyn, NEW, updateStrategy={"type": "External"})
    generation = dyn.resources.get(**VC).get(name="example", namespace=NS).metadata.generation

    def ann(rc):
        return rc.get(namespace=NS).items[0].to_dict()["metadata"].get("annotations") or {}

    def release(rc):
        obj = rc.get(namespace=NS).items[0]
        rc.patch(name=obj.metadata.name, namespace=NS, content_type="application/merge-patch+json",
                 body={"metadata": {"annotations": {RELEASED: ""}}})

    def no_pod_scheduled():
        return all(SCHEDULED not in (p.metadata.annotations or {}) for p in _pods(api).items)

    wait_for(lambda: SCHEDULED in ann(ks_rc) and cluster_status(dyn).get("observedGeneration") == generation,
             what="the keyspace scheduled")
    assert '"vttablet":"vitess/lite:v23.0.4-mysql80"' in ann(ks_rc)[SCHEDULED]
    assert ks_rc.get(namespace=NS).items[0].spec.images.vttablet == OLD
    assert SCHEDULED not in ann(shard_rc) and no_pod_scheduled()

    release(ks_rc)
    wait_for(lambda: SCHEDULED in ann(shard_rc), what="the shard scheduled")
    assert SCHEDULED not in ann(ks_rc) and RELEASED not in ann(ks_rc)
    assert ks_rc.get(namespace=NS).items[0].spec.images.vttablet == NEW
    assert shard_rc.get(namespace=NS).items[0].spec.images.vttablet == OLD and no_pod_scheduled()

    release(shard_rc)
    wait_for(lambda: all(SCHEDULED in (p.metadata.annotations or {}) for p in _pods(api).items),
             what="every tablet scheduled")
    assert SCHEDULED not in ann(shard_rc) and CASCADE not in ann(shard_rc)

    chosen = sorted(before)[0]
    core.patch_namespaced_pod(chosen, NS, {"metadata": {"annotations": {RELEASED: ""}}})
    wait_for(lambda: (p := core.read_namespaced_pod(chosen, NS)).metadata.uid != before[chosen] and
             next(c.image for c in p.spec.containers if c.name == "vttablet") == NEW and
             p.status.phase == "Running", timeout=30, what="the released tablet replaced")
    wait_for(lambda: cluster_ready(cluster_status(dyn)), timeout=15, what="cluster ready")
    for p in _pods(api).items:
        if p.metadata.name != chosen:
            assert p.metadata.uid == before[p.metadata.name] and SCHEDULED in p.metadata.annotations
    assert cluster_status(dyn)["keyspaces"]["commerce"]["updatedTablets"] == 1


def test_what_the_operator_writes_passes_its_crds_validation(cluster):
    """A client's patch of each object revalidates it whole: the operator's own fields must fit the
    CRD (VitessKeyspace/VitessShard ``spec.images.mysqld`` is an object, not the image string)."""
    _, _, dyn = cluster
    for kind in ("EtcdLockserver", "VitessCell", "VitessKeyspace", "VitessShard", "VitessBackup"):
        rc = dyn.resources.get(api_version="planetscale.com/v2", kind=kind)
        for o in rc.get(namespace=NS).items:
            rc.patch(name=o.metadata.name, namespace=NS, content_type="application/merge-patch+json",
                     body={"metadata": {"annotations": {"example.com/touched": "yes"}}})
    ks = dyn.resources.get(api_version="planetscale.com/v2", kind="VitessKeyspace").get(namespace=NS).items[0]
    assert ks.spec.images.mysqld.to_dict() == {"mysql80Compatible": "vitess/lite:v23.0.3-mysql80"}


# -- the decisions, without a server (rollout.shard_actions) -----------------------------------------
NOW = datetime(2026, 12, 3, 6, 0, tzinfo=timezone.utc)


def _tv(alias, ann=None, changed=True, available=True, pool="replica"):
    pod = {"metadata": {"name": f"pod-{alias}", "annotations": dict(ann or {})}}
    return TabletView(alias, pod, changed, "diff" if changed else "", available, available, pool)


def _shard_obj(cascade=True):
    return {"metadata": {"name": "s", "annotations": {CASCADE: ""} if cascade else {}}}


def test_the_primary_is_released_last():
    tablets = [_tv("z-1", {SCHEDULED: "diff"}), _tv("z-2", {SCHEDULED: "diff"})]
    acts = shard_actions(_shard_obj(), tablets, "z-1", rollout.IMMEDIATE, NOW)
    assert [(a.name, a.add) for a in acts if a.kind == "annotate" and a.add and a.add[0][0] == RELEASED] == \
        [("pod-z-2", ((RELEASED, ""),))]
    acts = shard_actions(_shard_obj(), [_tv("z-1", {SCHEDULED: "diff"}), _tv("z-2", changed=False)],
                         "z-1", rollout.IMMEDIATE, NOW)
    assert any(a.name == "pod-z-1" and (RELEASED, "") in a.add for a in acts)


def test_nothing_is_released_while_a_tablet_is_unavailable_or_released():
    for other in (_tv("z-2", {SCHEDULED: "diff"}, available=False), _tv("z-2", {SCHEDULED: "diff", RELEASED: ""})):
        acts = shard_actions(_shard_obj(), [_tv("z-1", {SCHEDULED: "diff"}), other], "z-1", rollout.IMMEDIATE, NOW)
        assert not any((RELEASED, "") in a.add and a.name == "pod-z-1" for a in acts)


def test_a_lone_primary_is_deleted_without_a_reparent():
    acts = shard_actions(_shard_obj(), [_tv("z-1", {SCHEDULED: "diff"}), _tv("z-2", {SCHEDULED: "diff"}, pool="rdonly")],
                         "z-1", rollout.IMMEDIATE, NOW)
    released = [a for a in acts if (RELEASED, "") in a.add]
    assert [a.name for a in released] == ["pod-z-2"]   # the rdonly first
    acts = shard_actions(_shard_obj(), [_tv("z-1", {SCHEDULED: "diff"}), _tv("z-2", changed=False, pool="rdonly")],
                         "z-1", rollout.IMMEDIATE, NOW)
    assert [(a.kind, a.name) for a in acts if a.kind == "delete"] == [("delete", "pod-z-1")]


def test_external_never_cascades_and_immediate_does():
    tablets = [_tv("z-1", {SCHEDULED: "diff"}), _tv("z-2", {SCHEDULED: "diff"})]
    ext = shard_actions(_shard_obj(cascade=False), tablets, "z-1", rollout.EXTERNAL, NOW)
    imm = shard_actions(_shard_obj(cascade=False), tablets, "z-1", rollout.IMMEDIATE, NOW)
    assert not any((CASCADE, "") in a.add for a in ext) and any((CASCADE, "") in a.add for a in imm)
    assert rollout.update_strategy({"spec": {}}) == rollout.EXTERNAL


def test_a_draining_primary_is_reparented_before_it_is_finished():
    draining = {SCHEDULED: "diff", RELEASED: "", rollout.DRAIN_SUPPORTED: "x", rollout.DRAIN_STARTED: "rolling update",
                rollout.DRAIN_ACKNOWLEDGED: "t"}
    acts = shard_actions(_shard_obj(), [_tv("z-1", draining), _tv("z-2", changed=False)], "z-1", rollout.IMMEDIATE, NOW)
    assert not any(rollout.DRAIN_FINISHED in dict(a.add) for a in acts)
    assert [(a.kind, a.alias) for a in acts if a.kind == "reparent"] == [("reparent", "z-2")]
    acts = shard_actions(_shard_obj(), [_tv("z-1", draining), _tv("z-2", changed=False)], "z-2", rollout.IMMEDIATE, NOW)
    assert any(a.name == "pod-z-1" and rollout.DRAIN_FINISHED in dict(a.add) for a in acts)
    assert rollout.go_time(NOW) == "2026-12-03 06:00:00.000000000 +0000 UTC"
