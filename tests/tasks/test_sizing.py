"""tasks/sizing.py: floors against upstream's examples, fit on the user's nodes, refusal on nodes
too small, the later steps against upstream's 201/302 files, and the rendered rules against the
operator's CRD schema."""

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import EXAMPLES, IMAGES, UPSTREAM
from tasks import cluster as c
from tasks import sizing as z
from tasks.operators import load_manifest
from vtflow.errors import ConfigError
from vtflow.quantity import cpu_millis, memory_bytes

MIB, GIB = 1 << 20, 1 << 30
SC = [{"metadata": {"name": "local-path", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}}}]


def node(name, cpu, mem, server=True):
    labels = {"node-role.kubernetes.io/control-plane": "true"} if server else {}
    return {"metadata": {"name": name, "labels": labels}, "status": {"allocatable": {"cpu": cpu, "memory": mem}}}


# the user's K3s v1.24.6 servers (control-plane + embedded etcd)
USER_NODES = [node("n1", "2", "4Gi"), node("n2", "1", "2Gi"), node("n3", "2", "4Gi")]


def rooms(nodes, pods=()):
    """The room the preflight computes from these Node objects (no pods running)."""
    return c.node_room(nodes, list(pods), "example")


def upstream_docs(name, release="vitess-operator-v2.17.0"):
    path = UPSTREAM / release / "examples" / name
    if not path.exists():
        pytest.skip(f"upstream file {path} is not present (set VTFLOW_UPSTREAM_DIR)")
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def check_plan(s: z.Sizing, rs):
    """Every pod placed once, on an allowed node, and no node committed beyond its room."""
    pods = z.cluster_pods(s.spec, s.extras)
    placed = [p for ps in s.placement.plan.values() for p in ps]
    assert sorted(placed) == sorted(p.name for p in pods)
    by_name = {p.name: p for p in pods}
    room = {r.node: r for r in rs}
    for n, ps in s.placement.plan.items():
        assert n in s.placement.nodes
        assert sum(by_name[p].cpu_millis for p in ps) <= room[n].free_cpu_millis, n
        assert sum(by_name[p].occupies for p in ps) <= room[n].free_memory_bytes, n
    where = {p: n for n, ps in s.placement.plan.items() for p in ps}
    return pods, where


def sized(r: c.Resources):
    return cpu_millis(r.cpu), memory_bytes(r.memory), memory_bytes(r.memory_limit) if r.memory_limit else None


def assert_at_least_floors(s: z.Sizing):
    got = {"vtgate": s.spec.gateway, "vtctld": s.spec.vtctld, "etcd": s.extras.etcd,
           "vtadmin-api": s.extras.vtadmin_api, "vtadmin-web": s.extras.vtadmin_web}
    for ks in s.spec.keyspaces:
        got.update({"mysqld": ks.tablets.mysqld, "vttablet": ks.tablets.vttablet, "vtorc": ks.vtorc})
    assert set(got) == set(z.FLOORS)
    for name, r in got.items():
        cpu, mem, limit = sized(r)
        f = z.FLOORS[name]
        assert cpu >= f.cpu_millis and mem >= f.memory_bytes, name
        assert limit == mem, f"{name}: fit sets the memory limit to the request"


# ---------------------------------------------------------------- floors


def _all_examples():
    for f in sorted(UPSTREAM.glob("vitess-operator-v*/examples/*.yaml")):
        text = f.read_text()
        if "kind: VitessCluster" not in text or f.name.startswith("operator"):
            continue
        for d in yaml.safe_load_all(text):
            if d and d.get("kind") == "VitessCluster":
                yield f, d


def test_floors_are_the_smallest_sizes_upstream_examples_use():
    pools, gateways, vtorcs = [], [], []
    for _, vc in _all_examples():
        for ks in vc["spec"].get("keyspaces") or []:
            if ks.get("vitessOrchestrator", {}).get("resources"):
                vtorcs.append(ks["vitessOrchestrator"]["resources"])
            for part in ks.get("partitionings") or []:
                pools += part.get("equal", {}).get("shardTemplate", {}).get("tabletPools") or []
        gateways += [cell["gateway"]["resources"] for cell in vc["spec"].get("cells") or []
                     if cell.get("gateway", {}).get("resources")]
    if not pools:
        pytest.skip("no upstream examples (set VTFLOW_UPSTREAM_DIR)")

    def least(rs, key="requests"):
        return min(memory_bytes(r[key]["memory"]) for r in rs if key in r and "memory" in r[key])

    assert z.FLOORS["mysqld"].memory_bytes == least([p["mysqld"]["resources"] for p in pools if p.get("mysqld")])
    assert z.FLOORS["vttablet"].memory_bytes == least([p["vttablet"]["resources"] for p in pools])
    assert z.FLOORS["vttablet"].memory_bytes == least([p["vttablet"]["resources"] for p in pools], "limits")
    assert z.FLOORS["vtgate"].memory_bytes == least(gateways, "limits")
    # vtorc: the smallest limit (fit's request = limit) and the smallest CPU request upstream gives it
    assert z.FLOORS["vtorc"].memory_bytes == least(vtorcs, "limits")
    assert z.FLOORS["vtorc"].cpu_millis == min(cpu_millis(r["requests"]["cpu"]) for r in vtorcs)
    for name, f in z.FLOORS.items():
        assert f.source and f.memory_limit_bytes == f.memory_bytes
        assert z.CEILINGS[name][1] >= f.memory_bytes, name
    # the mysqld floor is well above Vitess's 32M buffer pool plus MySQL 8's own overhead
    assert z.FLOORS["mysqld"].memory_bytes >= 16 * 32 * MIB


def test_shard_names_follow_the_operator():
    assert z.shard_names(1) == ["-"]
    assert z.shard_names(2) == ["-80", "80-"]
    assert z.shard_names(4) == ["-40", "40-80", "80-c0", "c0-"]


# ---------------------------------------------------------------- the user's nodes


def test_upstream_101_sizes_do_not_fit_the_users_nodes():
    check = c.preflight(c.ClusterSpec(), USER_NODES, [], SC, "example")
    assert check.problems and "memory limits add up to" in check.problems[0]
    u = z.upstream(c.ClusterSpec(), rooms(USER_NODES))
    assert u.placeable is False and u.spec == c.ClusterSpec()
    assert "do NOT fit" in u.report()


def test_fit_deploys_on_the_users_nodes_and_says_what_ha_is_lost():
    rs = rooms(USER_NODES)
    assert [(r.node, r.free_cpu_millis, r.free_memory_bytes) for r in rs] == [
        ("n1", 1000, 2 * GIB), ("n2", 0, 0), ("n3", 1000, 2 * GIB)], "K3s's server reserve takes all of n2"
    s = z.fit(c.ClusterSpec(), rs, operator_node="n1")
    assert_at_least_floors(s)
    pods, where = check_plan(s, rs)
    assert s.placement.nodes == ["n1", "n3"] and not s.placement.all_nodes
    assert "n2" not in where.values()
    assert where["vitess-operator"] == "n1"
    # primary and replica on different nodes; etcd as spread as two nodes allow
    ks = s.spec.keyspaces[0]
    assert ks.tablets.replicas == 2
    assert len({where[p.name] for p in pods if p.component == "vttablet"}) == 2
    assert len({where[p.name] for p in pods if p.component == "etcd"}) == 2
    assert s.placement.tier == "partial" and not s.placement.etcd_required_spread
    lost = " ".join(s.ha_lost)
    assert "n2" in lost and "etcd's quorum" in lost
    # fit's spec passes today's preflight on the same Node objects
    assert c.preflight(s.spec, USER_NODES, [], SC, "example").problems == []
    # and the operator's position, unknown, is tried on every node
    assert z.fit(c.ClusterSpec(), rs).placement.nodes == ["n1", "n3"]


def test_fit_on_three_2cpu_4gib_nodes_keeps_full_ha():
    nodes = [node(f"n{i}", "2", "4Gi") for i in (1, 2, 3)]
    rs = rooms(nodes)
    s = z.fit(c.ClusterSpec(), rs)
    assert_at_least_floors(s)
    pods, where = check_plan(s, rs)
    assert s.placement.tier == "full" and s.placement.all_nodes and s.placement.etcd_required_spread
    assert len({where[p.name] for p in pods if p.component == "etcd"}) == 3
    tablets = [where[p.name] for p in pods if p.component == "vttablet"]
    assert len(set(tablets)) == len(tablets) >= 2
    assert not [x for x in s.ha_lost if x.startswith("etcd")]
    assert c.preflight(s.spec, nodes, [], SC, "example").problems == []


def test_fit_grows_to_upstream_figures_on_big_nodes():
    rs = rooms([node(f"n{i}", "8", "32Gi") for i in (1, 2, 3)])
    s = z.fit(c.ClusterSpec(), rs)
    ks = s.spec.keyspaces[0]
    assert ks.tablets.replicas == 3 and ks.tablets.mysqld.memory == "1024Mi" and ks.tablets.mysqld.memory_limit == "1024Mi"
    assert s.extras.etcd.memory == "256Mi" and "100%" in s.report()
    check_plan(s, rs)


def test_fit_counts_running_pods():
    nodes = [node(f"n{i}", "2", "4Gi") for i in (1, 2, 3)]
    busy = [{"metadata": {"name": "rancher", "labels": {"app": "rancher"}}, "spec": {"nodeName": "n2", "containers": [
        {"name": "r", "resources": {"requests": {"cpu": "500m", "memory": "1800Mi"}}}]}, "status": {"phase": "Running"}}]
    rs = rooms(nodes, busy)
    assert (rs[1].free_cpu_millis, rs[1].free_memory_bytes) == (500, 248 * MIB)
    s = z.fit(c.ClusterSpec(), rs, operator_node="n1")
    pods, where = check_plan(s, rs)  # n2's 248Mi is respected
    # room for one etcd member on n2 is enough for full HA; no tablet fits there
    assert s.placement.tier == "full"
    assert [p.component for p in pods if where[p.name] == "n2"] == ["etcd"]
    # not knowing where the operator runs, fit assumes it may be on n2, leaving no room for etcd there
    assert z.fit(c.ClusterSpec(), rs).placement.tier == "partial"


# ---------------------------------------------------------------- refusal


def test_nodes_too_small_for_the_floors_are_refused_with_each_nodes_shortfall():
    small = [node(f"s{i}", "1", "1Gi") for i in (1, 2, 3)]
    with pytest.raises(ConfigError) as e:
        z.fit(c.ClusterSpec(), rooms(small))
    err = e.value
    assert err.subject == "nodes s1, s2, s3"
    for n in ("s1", "s2", "s3"):
        assert f"{n} has 0m / 0.00 GiB free" in err.problem
    need_cpu, need_mem = z.smallest_node(c.ClusterSpec(), 3)
    assert err.problem.count(f"short {need_cpu}m CPU, {need_mem / GIB:.2f} GiB") == 3
    assert f"at least {need_cpu + 1000}m CPU / {(need_mem + 2 * GIB) / GIB:.2f} GiB allocatable" in err.fix
    # the smallest node named does do, with full HA, and one memory step less does not
    enough = [node(f"s{i}", f"{need_cpu + 1000}m", f"{(need_mem + 2 * GIB) // MIB}Mi") for i in (1, 2, 3)]
    assert z.fit(c.ClusterSpec(), rooms(enough)).placement.tier == "full"
    assert z.smallest_node(c.ClusterSpec(), 3) == (need_cpu, need_mem)
    less = [node(f"s{i}", f"{need_cpu + 1000}m", f"{(need_mem + 2 * GIB) // MIB - 16}Mi") for i in (1, 2, 3)]
    try:
        tier = z.fit(c.ClusterSpec(), rooms(less)).placement.tier
    except ConfigError:
        tier = None
    assert tier != "full"


def test_no_nodes_is_refused():
    with pytest.raises(ConfigError, match="no nodes"):
        z.fit(c.ClusterSpec(), [])


# ---------------------------------------------------------------- later steps


def _added_requests(before: dict, after: dict) -> tuple[int, int]:
    """CPU and memory requests of the tablets (with the operator's exporter default) and vtorcs
    that ``after`` has and ``before`` has not, per (keyspace, partitioning)."""
    def parts(vc):
        out = {}
        for ks in vc["spec"]["keyspaces"]:
            for i, p in enumerate(ks["partitionings"]):
                out[(ks["name"], i)] = (ks, p["equal"])
        return out
    cpu = mem = 0
    old = parts(before)
    for key, (ks, eq) in parts(after).items():
        if key in old:
            continue
        for pool in eq["shardTemplate"]["tabletPools"]:
            each = [pool["vttablet"]["resources"]["requests"], pool["mysqld"]["resources"]["requests"],
                    {"cpu": "10m", "memory": "32Mi"}]  # vttablet/constants.go: the exporter sidecar
            cpu += eq["parts"] * pool["replicas"] * sum(cpu_millis(r["cpu"]) for r in each)
            mem += eq["parts"] * pool["replicas"] * sum(memory_bytes(r["memory"]) for r in each)
        if ks.get("vitessOrchestrator"):
            r = ks["vitessOrchestrator"]["resources"]["requests"]
            cpu += eq["parts"] * cpu_millis(r["cpu"])
            mem += eq["parts"] * memory_bytes(r["memory"])
    return cpu, mem


def test_later_steps_at_upstream_size_match_upstream_201_and_302():
    vc = {}
    for name in ("101_initial_cluster.yaml", "201_customer_tablets.yaml", "302_new_shards.yaml"):
        vc[name] = next(d for d in upstream_docs(name) if d["kind"] == "VitessCluster")
    steps = z.later_steps(z.upstream(c.ClusterSpec(), rooms(USER_NODES)), rooms(USER_NODES))
    assert [s.step for s in steps] == ["201_customer_tablets", "302_new_shards"]
    want201 = _added_requests(vc["101_initial_cluster.yaml"], vc["201_customer_tablets.yaml"])
    want302 = _added_requests(vc["201_customer_tablets.yaml"], vc["302_new_shards.yaml"])
    assert (steps[0].cpu_millis, steps[0].memory_bytes) == want201
    assert (steps[1].cpu_millis, steps[1].memory_bytes) == want302
    assert want201 == (730, 2528 * MIB) and want302 == (1460, 5056 * MIB)
    # one vtbackup-init (mysqld's size) per new shard, beside the tablets until its backup is done
    assert (steps[0].transient_cpu_millis, steps[0].transient_memory_bytes) == (100, 512 * MIB)
    assert (steps[1].transient_cpu_millis, steps[1].transient_memory_bytes) == (200, 1024 * MIB)
    assert steps[1].total_memory_bytes == steps[0].total_memory_bytes + steps[1].memory_bytes
    assert not steps[0].fits and "3 nodes of" in steps[0].line()
    assert "needs 0.73 CPU / 2.47 GiB more" in steps[0].line()


def test_later_steps_under_fit_use_fits_sizes_and_say_whether_they_fit():
    rs = rooms(USER_NODES)
    s = z.fit(c.ClusterSpec(), rs, operator_node="n1")
    steps = z.later_steps(s, rs)
    pool = s.spec.keyspaces[0].tablets
    tablet = sum(memory_bytes(r.memory) for r in (pool.vttablet, pool.mysqld, s.extras.mysqld_exporter))
    vtorc = memory_bytes(s.spec.keyspaces[0].vtorc.memory)
    assert steps[0].memory_bytes == pool.replicas * tablet + vtorc
    assert steps[1].memory_bytes == 2 * (pool.replicas * tablet + vtorc)
    assert not steps[0].fits and not steps[1].fits, "fit leaves the user's nodes no room for 201"
    assert steps[0].nodes_needed and "allocatable" in steps[0].nodes_needed
    big = rooms([node(f"n{i}", "4", "16Gi") for i in (1, 2, 3)])
    assert all(x.fits for x in z.later_steps(z.fit(c.ClusterSpec(), big), big))


# ---------------------------------------------------------------- demands and rendering


def test_demands_of_upstream_size_are_the_preflights_plus_vtbackup_init():
    spec = c.ClusterSpec()
    ours = z.demands(z.upstream(spec, rooms(USER_NODES)))
    assert ours[:-1] == c.demands(spec)
    assert ours[-1].component == "vtbackup-init (commerce)"
    assert (ours[-1].cpu_millis, ours[-1].memory_bytes) == (100, 512 * MIB)


def rendered(s: z.Sizing) -> dict:
    objs = c.render(s.spec.model_copy(update=IMAGES), "example", "example", "10.0.0.11", "user", "pw")
    return next(o for o in objs if o["kind"] == "VitessCluster")


def test_fit_rules_render_into_a_cluster_the_crd_accepts():
    s = z.fit(c.ClusterSpec(), rooms(USER_NODES), operator_node="n1")
    vc = rendered(s)
    out = z.apply_to(vc, s, "example")
    c.validate_cluster(out, load_manifest(str(EXAMPLES / "operator.yaml")))
    etcd = out["spec"]["globalLockserver"]["etcd"]
    assert etcd["resources"] == {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "128Mi"}}
    nodes = etcd["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    # one term per node: the API server takes one value per node field selector
    assert nodes == [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [n]}]} for n in ("n1", "n3")]
    pool = out["spec"]["keyspaces"][0]["partitionings"][0]["equal"]["shardTemplate"]["tabletPools"][0]
    assert pool["replicas"] == 2
    assert pool["topologySpreadConstraints"][0]["labelSelector"]["matchLabels"] == {
        "planetscale.com/cluster": "example", "planetscale.com/component": "vttablet", "planetscale.com/keyspace": "commerce"}
    assert pool["mysqldExporter"]["resources"]["requests"]["memory"] == "128Mi"
    gate = out["spec"]["cells"][0]["gateway"]["affinity"]["nodeAffinity"]
    assert gate["preferredDuringSchedulingIgnoredDuringExecution"][0]["preference"]["matchFields"][0]["values"] == [
        s.placement.preferred["vtgate"]]
    assert vc != out and "globalLockserver" not in vc["spec"], "apply_to copies"
    # upstream adds nothing: the operator's defaults stay
    up = z.upstream(c.ClusterSpec(), rooms(USER_NODES))
    assert z.apply_to(vc, up, "example") == vc


def test_full_ha_renders_required_etcd_anti_affinity_and_no_node_affinity():
    s = z.fit(c.ClusterSpec(), rooms([node(f"n{i}", "2", "4Gi") for i in (1, 2, 3)]))
    vc = rendered(s)
    out = z.apply_to(vc, s, "example")
    c.validate_cluster(out, load_manifest(str(EXAMPLES / "operator.yaml")))
    aff = out["spec"]["globalLockserver"]["etcd"]["affinity"]
    assert "nodeAffinity" not in aff
    assert aff["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]["labelSelector"] == {
        "matchLabels": {"planetscale.com/cluster": "example", "planetscale.com/component": "etcd"}}
    pool = out["spec"]["keyspaces"][0]["partitionings"][0]["equal"]["shardTemplate"]["tabletPools"][0]
    assert "affinity" not in pool, "all nodes usable: the operator's per-shard anti-affinity is kept"


def test_without_fits_rules_the_scheduler_would_fill_the_node_k3s_needs():
    """The scheduler sees allocatable, not K3s's reserve: with the operator's preferred rules
    alone, spreading puts an etcd member and a tablet on n2, whose 2 GiB K3s itself needs."""
    s = z.fit(c.ClusterSpec(), rooms(USER_NODES), operator_node="n1")
    pods = z.cluster_pods(s.spec, s.extras)
    seen_by_scheduler = {"n1": (2000, 4 * GIB), "n2": (1000, 2 * GIB), "n3": (2000, 4 * GIB)}
    operator_rules = z.rules_for("none", ["n1", "n2", "n3"], 2, True)
    where = z.schedule(pods, seen_by_scheduler, operator_rules)
    on_n2 = [p for p in pods if where[p.name] == "n2"]
    assert "etcd" in {p.component for p in on_n2} and sum(p.memory_bytes for p in on_n2) >= 512 * MIB
    fit_rules = z.rules_for("partial", s.placement.nodes, 2, False)
    where = z.schedule(pods, seen_by_scheduler, fit_rules)
    assert "n2" not in where.values()


def test_pack_counts_memory_limits_where_the_scheduler_counts_requests():
    pods = [z.Pod(f"p{i}", "vtgate", 100, 512 * MIB, GIB) for i in (1, 2)]
    caps = {"a": (1000, 1536 * MIB)}
    rules = z.rules_for("none", ["a"], 1, True)
    assert z.schedule(pods, caps, rules) == {"p1": "a", "p2": "a"}, "the scheduler sees 1Gi of requests: fits"
    assert z.pack(pods, caps, rules) is None, "2Gi of limits on 1.5Gi: the node can run out of memory"
    # upstream's 101 on three 2 CPU / 4 GiB nodes: requests fit, limits do not (what the user hit)
    u = z.upstream(c.ClusterSpec(), rooms([node(f"n{i}", "2", "4Gi") for i in (1, 2, 3)]))
    assert not u.placeable and "limits 7.12 GiB; room 3000m / 6.00 GiB" in u.report()


def test_required_spread_leaves_a_pod_pending_rather_than_stacking():
    etcd = [z.Pod(f"etcd-{i}", "etcd", 100, 128 * MIB, 128 * MIB, spread="etcd") for i in (1, 2, 3)]
    caps = {"a": (1000, GIB), "b": (1000, GIB)}
    assert z.schedule(etcd, caps, z.rules_for("full", ["a", "b"], 2, True)) is None
    where = z.schedule(etcd, caps, z.rules_for("partial", ["a", "b"], 2, True))
    assert sorted(where.values()) == ["a", "a", "b"]
    assert z.pack(etcd, caps, z.rules_for("full", ["a", "b"], 2, True)) is None


# ---------------------------------------------------------------- any nodes


node_sizes = st.lists(st.tuples(st.integers(2, 80), st.integers(4, 96), st.booleans()), min_size=1, max_size=5)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(node_sizes)
def test_fit_either_places_within_the_room_or_refuses(sizes):
    nodes = [node(f"x{i}", f"{cpu * 100}m", f"{mem * 256}Mi", server) for i, (cpu, mem, server) in enumerate(sizes)]
    rs = rooms(nodes)
    try:
        s = z.fit(c.ClusterSpec(), rs)
    except ConfigError as e:
        assert all(r.node in e.subject for r in rs)
        assert "short" in e.problem and "allocatable each" in e.fix
        return
    assert_at_least_floors(s)
    pods, where = check_plan(s, rs)
    etcd = {where[p.name] for p in pods if p.component == "etcd"}
    assert len(etcd) >= {"full": 3, "partial": 2, "none": 1}[s.placement.tier]
    if s.placement.tier != "none":
        shards = {}
        for p in pods:
            if p.component == "vttablet":
                shards.setdefault(p.spread, []).append(where[p.name])
        assert all(len(set(v)) == len(v) for v in shards.values())
    # the preflight's rows for this sizing stay inside the room it was sized for
    ds = z.demands(s)
    assert sum(d.memory_limit_bytes for d in ds) <= sum(r.free_memory_bytes for r in rs)
    assert sum(d.cpu_millis for d in ds) <= sum(r.free_cpu_millis for r in rs)


def test_module_is_pure():
    text = Path(z.__file__).read_text()
    for banned in ("import kubernetes", "from kubernetes", "open(", "import prefect", "from prefect", "vtflow.kube"):
        assert banned not in text, banned
