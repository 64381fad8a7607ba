"""Sizing the cluster to its nodes: ``upstream`` (upstream's 101 figures, as ClusterSpec's defaults)
or ``fit`` (the largest sizes between stated floors and upstream's figures that the nodes' room
holds, keeping the cluster highly available where the nodes allow it), and the room each later
upstream step (201 customer tablets, 302 new shards) will need.

Pure: no I/O, no Kubernetes client. The input is the preflight's own room per node
(``tasks.cluster.NodeRoom``: allocatable, less K3s's reserve, less the pods already running);
the outputs are a ClusterSpec, the sizes ClusterSpec cannot hold yet (etcd, vtadmin,
mysqld-exporter, in ``Extras``), the scheduling rules to render (``apply_to``), the demands for
the preflight (``demands``) and plain lines for a report. When even the floors do not fit,
``fit`` raises ConfigError naming each node's shortfall and the smallest node that would do.

How vitess-operator places pods (read in planetscale/vitess-operator v2.17.0):
- etcd (pkg/operator/etcd/pod.go): always 3 members (etcd.NumReplicas), *preferred* pod
  anti-affinity on the lockserver label per hostname (weight 2) and per zone (weight 1);
- tablets (pkg/operator/vttablet/pod.go): *preferred* anti-affinity, weight 2 for pods of the
  same shard, weight 1 for the same pool, per hostname; the pool's ``topologySpreadConstraints``
  are passed through; a pool ``affinity`` replaces the operator's default entirely;
- vtbackup-init (pkg/controller/vitessshard/reconcile_backup_job.go, vttablet/vtbackup_pod.go):
  one pod per shard while it has no backup and no primary, sized as the pool's *mysqld*, with
  the pool's ``affinity``; the tablets wait for that backup (backup.go sets
  ``wait_for_backup_interval``), so it runs beside them and must fit too;
- vtgate, vtctld, vtorc (one per shard and cell: reconcile_vtorc.go), vtadmin (one pod, api and
  web containers): no anti-affinity at all;
- mysqld-exporter sidecar (vttablet/constants.go): 10m / 32Mi request, 128Mi limit.
Preferred rules are only scores: the scheduler spreads when the room allows and stacks when it
does not, and it sees allocatable, not K3s's reserve, so it would happily fill a node the
preflight counts as full. ``fit`` therefore renders hard rules: the nodes with room (node
affinity by node name), etcd members on distinct nodes (required anti-affinity, when 3 nodes
have room), tablets spread one per node (topologySpreadConstraints, maxSkew 1), and a preferred
node per singleton; and it sets memory request = limit for every pod it sizes, so whatever the
scheduler picks cannot over-commit a node's memory. It checks a placement exists (bin-packing
by limits, with the HA rules) and that a model of the scheduler (requests, hard rules, then
preferred rules, then least-allocated) places every pod in each of several creation orders.
With K3s's local-path volumes a tablet or etcd member stays on the node its volume was made on,
so the first placement is the lasting one.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, Field

from tasks.cluster import ClusterSpec, Demand, KeyspaceSpec, NodeRoom, Resources
from vtflow import names
from vtflow.errors import ConfigError
from vtflow.quantity import cpu_millis, memory_bytes

MIB = 1 << 20
GIB = 1 << 30

Size = Literal["upstream", "fit"]


@dataclass(frozen=True)
class Floor:
    """The least a component gets under ``fit``: CPU request and memory (request and limit alike:
    fit never lets a limit exceed its request, so the memory a node promises is the memory it has)."""

    cpu_millis: int
    memory_bytes: int
    source: str

    @property
    def memory_limit_bytes(self) -> int:
        return self.memory_bytes


FLOORS: dict[str, Floor] = {
    # The smallest mysqld any upstream example gives (101/201/302/306 and the e2e files of every
    # release in ../shared/upstream, v2.10.4-v2.17.0: request 512Mi, limit 1024Mi). Vitess's
    # config/mycnf/default.cnf fixes innodb_buffer_pool_size at 32M (not MySQL's 128M), so 512Mi
    # leaves ~480Mi for the rest of mysqld (performance_schema is on in 8.0 and sized by
    # default.cnf's max_connections=500) and for mysqlctld in the same container; the
    # vtbackup-init pod runs mysqld and the backup engine in this same size.
    "mysqld": Floor(100, 512 * MIB, "upstream examples' smallest mysqld (512Mi); Vitess default.cnf buffer pool 32M"),
    # Every upstream example gives vttablet 100m and 256Mi, request = limit.
    "vttablet": Floor(100, 256 * MIB, "upstream examples' only vttablet size (100m, 256Mi = limit)"),
    # Upstream 101's gateway (request = limit 256Mi); the operator's own default is 500m/1Gi
    # (pkg/apis/planetscale/v2/defaults.go), so 256Mi is what upstream shows to be enough.
    "vtgate": Floor(100, 256 * MIB, "upstream 101 gateway (100m, 256Mi = limit)"),
    # Upstream 101 (request = limit), the same as the operator's default (defaults.go).
    "vtctld": Floor(100, 128 * MIB, "upstream 101 and operator default (100m, 128Mi)"),
    # 101_initial_cluster_unmanaged_tablet.yaml: 10m, 64Mi request, 128Mi limit, the smallest
    # vtorc upstream runs; fit makes the request the limit, hence 128Mi.
    "vtorc": Floor(10, 128 * MIB, "upstream 101_initial_cluster_unmanaged_tablet (10m, limit 128Mi)"),
    # 101_initial_cluster_vtorc_vtadmin.yaml, each container (request = limit); operator default too.
    "vtadmin-api": Floor(100, 128 * MIB, "upstream 101_initial_cluster_vtorc_vtadmin apiResources (100m, 128Mi)"),
    "vtadmin-web": Floor(100, 128 * MIB, "upstream 101_initial_cluster_vtorc_vtadmin webResources (100m, 128Mi)"),
    # kubeadm's etcd static pod (kubernetes cmd/kubeadm/app/phases/etcd/local.go) requests
    # 100m/100Mi for Kubernetes's own, much busier etcd; etcd.io's hardware guide states no
    # minimum (8 GB "typically" for production). As the limit too, rounded up to 128Mi; the
    # operator's default is 100m/256Mi (defaults.go).
    "etcd": Floor(100, 128 * MIB, "kubeadm's etcd request (100m, 100Mi), rounded up as the limit"),
}

# What fit grows towards: upstream 101's figures (the limit where it has one), the operator's
# default for etcd. More memory buys nothing until the my.cnf changes (buffer pool 32M).
CEILINGS: dict[str, tuple[int, int]] = {
    "mysqld": (100, 1024 * MIB), "vttablet": (100, 256 * MIB), "vtgate": (100, 256 * MIB),
    "vtctld": (100, 128 * MIB), "vtorc": (100, 128 * MIB), "vtadmin-api": (100, 128 * MIB),
    "vtadmin-web": (100, 128 * MIB), "etcd": (100, 256 * MIB),
}

# Not sized by fit. The operator's Deployment (upstream operator.yaml) is already running when
# the cluster is applied. The exporter keeps the operator's default limit and, under fit, gets
# it as its request (so the scheduler reserves what it may take).
OPERATOR_POD = (100, 128 * MIB, 512 * MIB)
EXPORTER_UPSTREAM = Resources(cpu="10m", memory="32Mi", memory_limit="128Mi")
EXPORTER_FIT = Resources(cpu="10m", memory="128Mi", memory_limit="128Mi")
ETCD_MEMBERS = 3
# Growing above the floors stops while each node keeps this share of its room free.
GROW_MARGIN = 0.10
_MEM_STEP = 16 * MIB
_CPU_STEP = 10
_PACK_STEPS = 20000


class Extras(BaseModel):
    """Sizes the ClusterSpec has no field for yet (render() fixes them today)."""

    etcd: Resources = Field(description="Each of the 3 etcd members (spec.globalLockserver.etcd.resources).")
    vtadmin_api: Resources = Field(description="vtadmin's api container (spec.vtadmin.apiResources).")
    vtadmin_web: Resources = Field(description="vtadmin's web container (spec.vtadmin.webResources).")
    mysqld_exporter: Resources = Field(description="Every tablet's exporter sidecar (tabletPools[].mysqldExporter.resources).")


UPSTREAM_EXTRAS = Extras(etcd=Resources(cpu="100m", memory="256Mi", memory_limit="256Mi"),
                         vtadmin_api=Resources(memory="128Mi", memory_limit="128Mi"),
                         vtadmin_web=Resources(memory="128Mi", memory_limit="128Mi"),
                         mysqld_exporter=EXPORTER_UPSTREAM)


class Placement(BaseModel):
    """The scheduling rules fit renders, and where it planned each pod."""

    tier: Literal["full", "partial", "none"] = Field(description="full: etcd on 3 nodes, tablets one per node; "
                                                      "partial: etcd on 2 nodes; none: no node-failure HA.")
    nodes: list[str] = Field(description="Nodes with room; the pods are kept to these (node affinity) unless all_nodes.")
    all_nodes: bool
    etcd_required_spread: bool = Field(description="Required anti-affinity: one etcd member per node.")
    tablet_spread: bool = Field(description="topologySpreadConstraints maxSkew 1 per keyspace: tablets one per node.")
    preferred: dict[str, str] = Field(default_factory=dict,
                                      description="Preferred node of the singletons: vtctld, vtgate, vtadmin, 'vtorc <ks>'.")
    plan: dict[str, list[str]] = Field(default_factory=dict, description="Node -> pods, as planned.")


class Sizing(BaseModel):
    size: Size
    spec: ClusterSpec
    extras: Extras
    placement: Placement | None = Field(default=None, description="None under upstream: the operator's defaults.")
    placeable: bool = Field(description="A placement exists with every memory limit inside the room.")
    ha_kept: list[str] = Field(default_factory=list)
    ha_lost: list[str] = Field(default_factory=list)
    lines: list[str] = Field(default_factory=list, description="What each component got, where, and why.")

    def report(self) -> str:
        return "\n".join(self.lines)


# ---------------------------------------------------------------- pods


@dataclass(frozen=True)
class Pod:
    name: str
    component: str            # operator | etcd | vtctld | vtgate | vtadmin | vtorc | vttablet | vtbackup
    cpu_millis: int
    memory_bytes: int         # request
    memory_limit_bytes: int
    spread: str | None = None     # HA group: "etcd" or "tablets <ks>/<shard>"
    keyspace: str | None = None
    transient: bool = False       # vtbackup-init: until the shard's first backup

    @property
    def occupies(self) -> int:
        """Memory the pod may take: its limit (or its request, when that is larger or no limit)."""
        return max(self.memory_bytes, self.memory_limit_bytes)


def _rq(r: Resources) -> tuple[int, int, int]:
    mem = memory_bytes(r.memory)
    return cpu_millis(r.cpu), mem, memory_bytes(r.memory_limit) if r.memory_limit else mem


def shard_names(parts: int) -> list[str]:
    """The operator's names of ``parts`` equal shards ('-', '-80', '80-', ...)."""
    if parts == 1:
        return ["-"]
    if 256 % parts:
        return [f"part{i + 1}of{parts}" for i in range(parts)]
    step = 256 // parts
    bounds = [""] + [f"{i * step:02x}" for i in range(1, parts)] + [""]
    return [f"{bounds[i]}-{bounds[i + 1]}" for i in range(parts)]


def _keyspace_pods(ks: str, shards: list[str], pool, vtorc: Resources | None, exporter: Resources,
                   backup: bool) -> list[Pod]:
    out = []
    t, m, e = _rq(pool.vttablet), _rq(pool.mysqld), _rq(exporter)
    for s in shards:
        if vtorc:
            o = _rq(vtorc)
            out.append(Pod(f"vtorc {ks}/{s}", "vtorc", *o, keyspace=ks))
        for j in range(pool.replicas):
            out.append(Pod(f"tablet {ks}/{s} #{j + 1}", "vttablet", t[0] + m[0] + e[0], t[1] + m[1] + e[1],
                           t[2] + m[2] + e[2], spread=f"tablets {ks}/{s}", keyspace=ks))
        if backup:
            out.append(Pod(f"vtbackup-init {ks}/{s}", "vtbackup", *m, keyspace=ks, transient=True))
    return out


def cluster_pods(spec: ClusterSpec, extras: Extras, operator: bool = True) -> list[Pod]:
    """Every pod the cluster runs, in the order the operator makes them (etcd, vtctld, vtgate,
    vtadmin, then per shard vtorc, tablets, vtbackup-init)."""
    out = [Pod("vitess-operator", "operator", *OPERATOR_POD)] if operator else []
    out += [Pod(f"etcd-{i + 1}", "etcd", *_rq(extras.etcd), spread="etcd") for i in range(ETCD_MEMBERS)]
    out += [Pod(f"vtctld #{i + 1}", "vtctld", *_rq(spec.vtctld)) for i in range(spec.vtctld_replicas)]
    out += [Pod(f"vtgate #{i + 1}", "vtgate", *_rq(spec.gateway)) for i in range(spec.gateway_replicas)]
    if spec.vtadmin:
        a, w = _rq(extras.vtadmin_api), _rq(extras.vtadmin_web)
        out.append(Pod("vtadmin", "vtadmin", a[0] + w[0], a[1] + w[1], a[2] + w[2]))
    for ks in spec.keyspaces:
        out += _keyspace_pods(ks.name, shard_names(ks.shards), ks.tablets, ks.vtorc, extras.mysqld_exporter,
                              spec.backup.kind != "none")
    return out


def demands(sizing: Sizing) -> list[Demand]:
    """The preflight's rows for this sizing, per component (etcd, vtadmin and the exporter at
    the sizes the sizing chose, and the vtbackup-init pods, which run beside the tablets)."""
    rows: dict[str, list[Pod]] = {}
    for p in cluster_pods(sizing.spec, sizing.extras):
        key = {"operator": "vitess-operator", "etcd": "etcd lockserver", "vtadmin": "vtadmin (api + web)",
               "vtgate": f"vtgate ({sizing.spec.cell})"}.get(p.component, p.component)
        if p.keyspace:
            key = {"vttablet": "tablets", "vtorc": "vtorc", "vtbackup": "vtbackup-init"}[p.component]
            key = f"{key} ({p.keyspace})"
        rows.setdefault(key, []).append(p)
    return [Demand(component=k, pods=len(ps), cpu_millis=sum(p.cpu_millis for p in ps),
                   memory_bytes=sum(p.memory_bytes for p in ps), memory_limit_bytes=sum(p.occupies for p in ps))
            for k, ps in rows.items()]


# ---------------------------------------------------------------- placement


@dataclass
class Rules:
    """The scheduling rules a placement honours: the nodes allowed, how many etcd members and
    tablets of one shard a node may hold, and which of those rules are hard for the scheduler."""

    nodes: tuple[str, ...]
    etcd_max: int
    tablets_max: int
    etcd_required: bool
    tablet_spread: bool
    pref_scope: Literal["shard", "keyspace"]
    preferred: dict[str, str] = field(default_factory=dict)   # singleton key -> node
    fixed: dict[str, str] = field(default_factory=dict)       # pod name -> node

    def limit(self, group: str) -> int:
        return self.etcd_max if group == "etcd" else self.tablets_max


def _single_key(p: Pod) -> str | None:
    if p.component in ("vtctld", "vtgate", "vtadmin"):
        return p.component
    if p.component == "vtorc":
        return f"vtorc {p.keyspace}"
    return None


def pack(pods: list[Pod], caps: dict[str, tuple[int, int]], rules: Rules) -> dict[str, str] | None:
    """A placement of every pod by CPU request and memory limit, within each node's room and the
    HA rules (at most ``etcd_max`` members and ``tablets_max`` tablets of a shard per node), or
    None. Exhaustive with symmetry pruning, biggest pods first; gives up (None) after a bounded
    number of steps, which only very many nodes and pods reach."""
    order = sorted(range(len(pods)), key=lambda i: (pods[i].name not in rules.fixed, -pods[i].occupies,
                                                     -pods[i].cpu_millis, i))
    nodes = [n for n in rules.nodes if n in caps]
    free = {n: list(caps[n]) for n in nodes}
    groups: dict[tuple[str, str], int] = {}
    where: dict[str, str] = {}
    steps = [0]

    def go(k: int) -> bool:
        if k == len(order):
            return True
        steps[0] += 1
        if steps[0] > _PACK_STEPS:
            return False
        p = pods[order[k]]
        seen = set()
        choices = [rules.fixed[p.name]] if p.name in rules.fixed else sorted(nodes, key=lambda n: (-free[n][1], -free[n][0]))
        for n in choices:
            if n not in free:
                continue
            c, m = free[n]
            cnt = groups.get((p.spread, n), 0) if p.spread else 0
            if p.cpu_millis > c or p.occupies > m or (p.spread and cnt >= rules.limit(p.spread)):
                continue
            state = (c, m, cnt)
            if state in seen:
                continue
            seen.add(state)
            free[n][0] -= p.cpu_millis
            free[n][1] -= p.occupies
            if p.spread:
                groups[(p.spread, n)] = cnt + 1
            where[p.name] = n
            if go(k + 1):
                return True
            free[n][0] += p.cpu_millis
            free[n][1] += p.occupies
            if p.spread:
                groups[(p.spread, n)] = cnt
            del where[p.name]
        return False

    return dict(where) if go(0) else None


def schedule(pods: list[Pod], caps: dict[str, tuple[int, int]], rules: Rules) -> dict[str, str] | None:
    """What the scheduler would do with the pods created in this order, as modelled here: filter
    by requests and the hard rules fit renders (node affinity, etcd's required anti-affinity, the
    tablets' spread maxSkew 1 per keyspace), then prefer the singleton's preferred node, then
    fewer pods of the same spread group (the operator's preferred anti-affinity), then the least
    allocated node. None when a pod would stay Pending."""
    nodes = [n for n in rules.nodes if n in caps]
    free = {n: list(caps[n]) for n in nodes}
    where: dict[str, str] = {}
    count: dict[tuple[str, str], int] = {}

    def bump(key: str, n: str) -> None:
        count[(key, n)] = count.get((key, n), 0) + 1

    for p in pods:
        ks_key = f"ks {p.keyspace}"
        cands = []
        for n in ([rules.fixed[p.name]] if p.name in rules.fixed else nodes):
            if n not in free or p.cpu_millis > free[n][0] or p.memory_bytes > free[n][1]:
                continue
            if p.component == "etcd" and rules.etcd_required and count.get(("etcd", n), 0) >= 1:
                continue
            if p.component == "vttablet" and rules.tablet_spread:
                low = min(count.get((ks_key, x), 0) for x in nodes)
                if count.get((ks_key, n), 0) + 1 - low > 1:
                    continue
            cands.append(n)
        if not cands:
            return None
        want = rules.preferred.get(_single_key(p) or "")
        if want in cands:
            n = want
        else:
            def pref(x: str) -> int:
                if p.component == "etcd":
                    return count.get(("etcd", x), 0)
                if p.component == "vttablet":
                    return count.get((p.spread if rules.pref_scope == "shard" else ks_key, x), 0)
                if p.component == "vtbackup" and rules.pref_scope == "keyspace":
                    return count.get((ks_key, x), 0)
                return 0

            def least(x: str) -> float:
                c, m = caps[x]
                return ((free[x][0] - p.cpu_millis) / c if c else 0) + ((free[x][1] - p.memory_bytes) / m if m else 0)

            n = min(cands, key=lambda x: (pref(x), -least(x), nodes.index(x)))
        free[n][0] -= p.cpu_millis
        free[n][1] -= p.memory_bytes
        where[p.name] = n
        if p.component == "etcd":
            bump("etcd", n)
        if p.component == "vttablet":
            bump(p.spread, n)
            bump(ks_key, n)
    return where


def _orders(pods: list[Pod]) -> list[list[Pod]]:
    """Creation orders to try: the operator's own (as cluster_pods lists them), tablets first,
    biggest first, smallest first; the operator's pod always first (it runs already)."""
    op = [p for p in pods if p.component == "operator"]
    rest = [p for p in pods if p.component != "operator"]
    tabs = [p for p in rest if p.component in ("vttablet", "vtbackup")]
    return [op + rest, op + tabs + [p for p in rest if p not in tabs],
            op + sorted(rest, key=lambda p: (-p.memory_bytes, p.name)),
            op + sorted(rest, key=lambda p: (p.memory_bytes, p.name))]


def _ha_holds(where: dict[str, str], pods: list[Pod], tier: str) -> bool:
    if tier == "none":
        return True
    etcd = {where[p.name] for p in pods if p.component == "etcd"}
    if len(etcd) < (ETCD_MEMBERS if tier == "full" else 2):
        return False
    shards: dict[str, list[str]] = {}
    for p in pods:
        if p.component == "vttablet":
            shards.setdefault(p.spread, []).append(where[p.name])
    return all(len(set(v)) == len(v) for v in shards.values())


# ---------------------------------------------------------------- fit


@dataclass
class _Try:
    spec: ClusterSpec
    extras: Extras
    pods: list[Pod]
    rules: Rules
    plan: dict[str, str]


def _res(cpu: int, mem: int) -> Resources:
    return Resources(cpu=f"{cpu}m", memory=f"{mem // MIB}Mi", memory_limit=f"{mem // MIB}Mi")


def _grown(name: str, level: float) -> Resources:
    f, (cc, cm) = FLOORS[name], CEILINGS[name]
    cpu = f.cpu_millis + int((cc - f.cpu_millis) * level) // _CPU_STEP * _CPU_STEP
    mem = f.memory_bytes + int((cm - f.memory_bytes) * level) // _MEM_STEP * _MEM_STEP
    return _res(cpu, mem)


def _sized(spec: ClusterSpec, replicas: int, level: float) -> tuple[ClusterSpec, Extras]:
    keyspaces = []
    for ks in spec.keyspaces:
        r = min(ks.tablets.replicas, replicas)
        pool = ks.tablets.model_copy(update={"replicas": r, "vttablet": _grown("vttablet", level),
                                             "mysqld": _grown("mysqld", level)})
        keyspaces.append(ks.model_copy(update={
            "tablets": pool, "vtorc": _grown("vtorc", level) if ks.vtorc else None,
            # one tablet cannot acknowledge its own writes: semi_sync would stall every commit
            # (Vitess's mysql8026.cnf: rpl_semi_sync_source_timeout effectively infinite)
            "durability_policy": "none" if r == 1 else ks.durability_policy}))
    out = spec.model_copy(update={"vtctld": _grown("vtctld", level), "gateway": _grown("vtgate", level),
                                  "keyspaces": keyspaces})
    return out, Extras(etcd=_grown("etcd", level), vtadmin_api=_grown("vtadmin-api", level),
                       vtadmin_web=_grown("vtadmin-web", level), mysqld_exporter=EXPORTER_FIT)


def rules_for(tier: str, nodes: list[str], replicas: int, all_nodes: bool) -> Rules:
    """The rules of an HA tier: ``full`` one etcd member and one tablet of a shard per node (both
    hard), ``partial`` etcd at most 2 per node (preferred) and tablets spread, ``none`` only room.
    Without ``all_nodes`` a pool's affinity replaces the operator's, so the tablets' preference is
    restated per keyspace rather than per shard."""
    return Rules(nodes=tuple(nodes), etcd_max={"full": 1, "partial": 2, "none": ETCD_MEMBERS}[tier],
                  tablets_max=1 if tier != "none" else max(replicas, 1), etcd_required=tier == "full",
                  tablet_spread=tier != "none", pref_scope="shard" if all_nodes else "keyspace")


def _attempt(spec: ClusterSpec, caps: dict[str, tuple[int, int]], nodes: list[str], all_nodes: bool, tier: str,
             replicas: int, level: float, operator_node: str | None) -> _Try | None:
    """The sizes at ``level`` (0 floors, 1 upstream), if a no-over-commit placement exists and the
    scheduler model places every pod with the tier's HA in every creation order tried, with the
    operator's pod on its node (unknown: on each node in turn, as it may run on any)."""
    sized, extras = _sized(spec, replicas, level)
    room = caps if level == 0 else {n: (int(c * (1 - GROW_MARGIN)), int(m * (1 - GROW_MARGIN)))
                                    for n, (c, m) in caps.items()}
    pods = cluster_pods(sized, extras, operator=operator_node is None or operator_node in nodes)
    rules = rules_for(tier, nodes, replicas, all_nodes)
    if operator_node in nodes:
        rules.fixed["vitess-operator"] = operator_node
    plan = pack(pods, room, rules)
    if plan is None:
        return None
    for p in pods:
        key = _single_key(p)
        if key and key not in rules.preferred:
            rules.preferred[key] = plan[p.name]
    op_nodes = [operator_node] if operator_node in nodes else (nodes if operator_node is None else [None])
    for op in op_nodes:
        r = copy.copy(rules)
        r.fixed = {"vitess-operator": op} if op else {}
        for order in _orders(pods):
            where = schedule(order, room, r)
            if where is None or not _ha_holds(where, pods, tier):
                return None
    return _Try(sized, extras, pods, rules, plan)


def _candidates(spec: ClusterSpec, n: int) -> list[tuple[str, int]]:
    top = max(ks.tablets.replicas for ks in spec.keyspaces)
    low = 1 if top == 1 else 2
    out = []
    if n >= 3:
        out += [("full", r) for r in range(min(top, n), low - 1, -1)]
    if n >= 2:
        out += [("partial", r) for r in range(min(top, n), low - 1, -1)]
    out += [("none", r) for r in sorted({min(top, 2), 1}, reverse=True)]
    return out


def _usable(rooms: list[NodeRoom]) -> list[str]:
    small_cpu = min(f.cpu_millis for f in FLOORS.values())
    small_mem = min(f.memory_bytes for f in FLOORS.values())
    return [r.node for r in rooms if r.free_cpu_millis >= small_cpu and r.free_memory_bytes >= small_mem]


def _caps(rooms: list[NodeRoom]) -> dict[str, tuple[int, int]]:
    return {r.node: (r.free_cpu_millis, r.free_memory_bytes) for r in rooms}


def _best(spec, caps, nodes, all_nodes, operator_node) -> tuple[str, int, _Try] | None:
    """The first candidate (best HA, then most tablets) that fits at the floors."""
    for tier, r in _candidates(spec, len(nodes)):
        t = _attempt(spec, caps, nodes, all_nodes, tier, r, 0.0, operator_node)
        if t:
            return tier, r, t
    return None


def fit(spec: ClusterSpec, rooms: list[NodeRoom], operator_node: str | None = None) -> Sizing:
    """The largest sizes (floors up to upstream's figures) and the placement that keep the
    cluster highly available where the nodes allow it. HA first, then tablets per shard, then
    size. ``operator_node``: where the vitess-operator pod runs, if known (it already does when
    the cluster is applied); unknown, every node is tried for it.
    Raises ConfigError when even the floors do not fit, naming each node's shortfall."""
    if not rooms:
        raise ConfigError("cluster nodes", "there are no nodes to size the cluster for.",
                          "check the target's kubeconfig points at the K3s cluster (kubectl get nodes).")
    caps = _caps(rooms)
    nodes = _usable(rooms)
    all_nodes = len(nodes) == len(rooms)
    found = _best(spec, caps, nodes, all_nodes, operator_node) if nodes else None
    if found is None:
        raise _refusal(spec, rooms)
    tier, replicas, best = found
    lo, hi, level = 0.0, 1.0, 0.0
    top = _attempt(spec, caps, nodes, all_nodes, tier, replicas, 1.0, operator_node)
    if top:
        best, level = top, 1.0
    else:
        for _ in range(10):
            mid = (lo + hi) / 2
            t = _attempt(spec, caps, nodes, all_nodes, tier, replicas, mid, operator_node)
            if t:
                best, lo, level = t, mid, mid
            else:
                hi = mid
    return _explain(spec, rooms, best, tier, replicas, level, nodes, all_nodes, operator_node)


def upstream(spec: ClusterSpec, rooms: list[NodeRoom]) -> Sizing:
    """The spec as given (upstream 101's figures by default) and whether its pods can be placed
    with every memory limit inside the room (the operator's own, preferred rules only)."""
    caps = _caps(rooms)
    pods = cluster_pods(spec, UPSTREAM_EXTRAS)
    rules = rules_for("none", [r.node for r in rooms], max(ks.tablets.replicas for ks in spec.keyspaces), True)
    plan = pack(pods, caps, rules) if rooms else None
    lines = ["size upstream: upstream 101's resources, as the spec gives them", *_room_lines(rooms)]
    req = sum(p.memory_bytes for p in pods)
    lim = sum(p.occupies for p in pods)
    free = sum(m for _, m in caps.values())
    lines.append(f"  pods request {_cpu(sum(p.cpu_millis for p in pods))} / {_gib(req)}, limits {_gib(lim)}; "
                 f"room {_cpu(sum(c for c, _ in caps.values()))} / {_gib(free)}: "
                 + ("the limits fit" if plan else "the limits do NOT fit (use size fit, or bigger nodes)"))
    return Sizing(size="upstream", spec=spec, extras=UPSTREAM_EXTRAS, placeable=plan is not None, lines=lines)


def size_cluster(spec: ClusterSpec, rooms: list[NodeRoom], size: Size, operator_node: str | None = None) -> Sizing:
    """The ``size`` choice of the cluster spec: upstream or fit."""
    return fit(spec, rooms, operator_node) if size == "fit" else upstream(spec, rooms)


# ---------------------------------------------------------------- refusal


def _uniform(n: int, cpu: int, mem: int) -> dict[str, tuple[int, int]]:
    return {f"node-{i + 1}": (cpu, mem) for i in range(n)}


def smallest_node(spec: ClusterSpec, n: int, level: float = 0.0, extra: list[Pod] | None = None,
                  tier: str | None = None) -> tuple[int, int] | None:
    """The least room (CPU millis, memory bytes) each of ``n`` equal nodes needs for the cluster at
    its floors (or for ``extra`` pods on top of the spec as given), at the best HA ``n`` allows."""
    tier = tier or ("full" if n >= 3 else "partial" if n == 2 else "none")

    def ok(cpu: int, mem: int) -> bool:
        caps = _uniform(n, cpu, mem)
        names_ = list(caps)
        if extra is None:
            return any(_attempt(spec, caps, names_, True, t, r, level, None)
                       for t, r in _candidates(spec, n) if t == tier)
        pods = extra
        rules = rules_for(tier, names_, max(ks.tablets.replicas for ks in spec.keyspaces), True)
        return pack(pods, caps, rules) is not None

    big_cpu, big_mem = 256_000, 1 << 40
    if not ok(big_cpu, big_mem):
        return None
    lo, hi = 0, big_mem // _MEM_STEP
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(big_cpu, mid * _MEM_STEP) else (mid + 1, hi)
    mem = lo * _MEM_STEP
    lo, hi = 0, big_cpu // _CPU_STEP
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid * _CPU_STEP, mem) else (mid + 1, hi)
    return lo * _CPU_STEP, mem


def _refusal(spec: ClusterSpec, rooms: list[NodeRoom]) -> ConfigError:
    n = len(rooms)
    need = smallest_node(spec, n)
    ha = {3: "etcd on 3 nodes, primary and replica on 2", 2: "etcd on 2 nodes, primary and replica on 2"}.get(
        min(n, 3), "everything on the one node")
    res_cpu = max(r.reserved_cpu_millis for r in rooms)
    res_mem = max(r.reserved_memory_bytes for r in rooms)
    if need is None:  # pragma: no cover - only for absurd specs
        return ConfigError(f"nodes {', '.join(r.node for r in rooms)}", "even unlimited nodes cannot hold this spec.",
                           "lower the replicas in the cluster spec.")
    c, m = need
    short = []
    for r in rooms:
        dc, dm = max(0, c - r.free_cpu_millis), max(0, m - r.free_memory_bytes)
        if dc or dm:
            short.append(f"{r.node} has {_cpu(r.free_cpu_millis)} / {_gib(r.free_memory_bytes)} free after K3s's "
                         f"reserve ({_cpu(r.reserved_cpu_millis)} / {_gib(r.reserved_memory_bytes)}) and running pods "
                         f"({_cpu(r.used_cpu_millis)} / {_gib(r.used_memory_bytes)}): short {_cpu(dc)} CPU, {_gib(dm)}")
    problem = (f"even at the floors the cluster does not fit ({ha} needs {_cpu(c)} / {_gib(m)} free on each of "
               f"{n} node{'s' if n != 1 else ''}): " + "; ".join(short) + ".")
    fix = (f"use nodes of at least {_cpu(c + res_cpu)} CPU / {_gib(m + res_mem)} allocatable each ({n} of them, "
           f"K3s's reserve of {_cpu(res_cpu)} / {_gib(res_mem)} included), or free room on these nodes.")
    return ConfigError(f"nodes {', '.join(r.node for r in rooms)}", problem, fix)


# ---------------------------------------------------------------- explanation


def _gib(b: int) -> str:
    return f"{b / GIB:.2f} GiB"


def _cpu(m: int) -> str:
    return f"{m}m"


def _room_lines(rooms: list[NodeRoom]) -> list[str]:
    out = []
    for r in rooms:
        out.append(f"  node {r.node}: allocatable {_cpu(r.allocatable_cpu_millis)} / {_gib(r.allocatable_memory_bytes)}, "
                   f"K3s reserve {_cpu(r.reserved_cpu_millis)} / {_gib(r.reserved_memory_bytes)}, running "
                   f"{_cpu(r.used_cpu_millis)} / {_gib(r.used_memory_bytes)}: room {_cpu(r.free_cpu_millis)} / "
                   f"{_gib(r.free_memory_bytes)}")
    return out


def _explain(spec: ClusterSpec, rooms: list[NodeRoom], t: _Try, tier: str, replicas: int, level: float,
             nodes: list[str], all_nodes: bool, operator_node: str | None) -> Sizing:
    by_node: dict[str, list[str]] = {n: [] for n in nodes}
    for p in t.pods:
        by_node[t.plan[p.name]].append(p.name)
    placement = Placement(tier=tier, nodes=nodes, all_nodes=all_nodes, etcd_required_spread=t.rules.etcd_required,
                          tablet_spread=t.rules.tablet_spread, preferred=dict(t.rules.preferred), plan=by_node)
    kept, lost = [], []
    out_nodes = [r.node for r in rooms if r.node not in nodes]
    if out_nodes:
        lost.append(f"node(s) {', '.join(out_nodes)} have no room after K3s's reserve and running pods: the cluster "
                    "is kept off them (node affinity)")
    etcd_nodes = sorted({t.plan[p.name] for p in t.pods if p.component == "etcd"})
    if len(etcd_nodes) >= 3:
        kept.append(f"etcd: 3 members on 3 nodes ({', '.join(etcd_nodes)}): survives losing any one node")
    else:
        where = f"{out_nodes[0]} with" if out_nodes else "a third node with"
        more = "more than it has " if out_nodes else ""
        two = [n for n in etcd_nodes if sum(1 for p in t.pods if p.component == "etcd" and t.plan[p.name] == n) >= 2]
        lost.append(f"etcd: 3 members on {len(etcd_nodes)} node(s) ({', '.join(etcd_nodes)}): losing "
                    f"{' or '.join(two) or 'the node'} loses etcd's quorum (no failover, no topology changes) "
                    f"until it is back; {where} {_cpu(FLOORS['etcd'].cpu_millis)} / "
                    f"{FLOORS['etcd'].memory_bytes // MIB}Mi of room {more}would restore it")
    for ks in t.spec.keyspaces:
        r = ks.tablets.replicas
        was = next(k.tablets.replicas for k in spec.keyspaces if k.name == ks.name)
        why = "" if r == was else (f" (spec: {was}; " + ("only that many nodes have room" if r >= len(nodes) and tier != "none"
                                                          else "more do not fit beside the floors") + ")")
        if tier != "none" and r >= 2:
            kept.append(f"keyspace {ks.name}: {r} tablets per shard on {r} different nodes{why}: a primary and "
                        f"{r - 1} replica(s); vtorc promotes a replica when the primary's node is lost")
            if r == 2 and ks.durability_policy == "semi_sync":
                lost.append(f"keyspace {ks.name}: with one replica and durability semi_sync, writes wait while "
                            "that replica is down (the primary needs its acknowledgement)")
        elif r == 1:
            lost.append(f"keyspace {ks.name}: 1 tablet per shard{why}, durability set to none: no replica, no failover")
        else:
            lost.append(f"keyspace {ks.name}: {r} tablets per shard on one node{why}: they survive a crashed mysqld, "
                        "not a lost node")
    if spec.gateway_replicas == 1:
        lost.append("vtgate: 1 replica: clients wait until Kubernetes restarts it elsewhere (raise gateway_replicas)")
    lines = [f"size fit: {tier} HA, sized {int(level * 100)}% of the way from the floors to upstream's figures"
             + ("" if level else f" (the floors leave less than {int(GROW_MARGIN * 100)}% of the room to grow in)"),
             *_room_lines(rooms), "  components (memory request = limit):"]
    ks0 = t.spec.keyspaces[0]
    rows = [("mysqld", ks0.tablets.mysqld, f"{ks0.tablets.replicas} per shard, and each vtbackup-init"),
            ("vttablet", ks0.tablets.vttablet, f"{ks0.tablets.replicas} per shard"),
            ("vtgate", t.spec.gateway, f"{t.spec.gateway_replicas} pod(s)"),
            ("vtctld", t.spec.vtctld, f"{t.spec.vtctld_replicas} pod(s)"),
            ("etcd", t.extras.etcd, f"{ETCD_MEMBERS} members")]
    if ks0.vtorc:
        rows.append(("vtorc", ks0.vtorc, "1 per shard"))
    if spec.vtadmin:
        rows += [("vtadmin-api", t.extras.vtadmin_api, "1 pod"), ("vtadmin-web", t.extras.vtadmin_web, "same pod")]
    for name, r, count in rows:
        f = FLOORS[name]
        lines.append(f"    {name:<12} {r.cpu:>5} {r.memory:>7}  ({count}; floor {f.cpu_millis}m/{f.memory_bytes // MIB}Mi: "
                     f"{f.source})")
    lines.append(f"    mysqld-exporter {t.extras.mysqld_exporter.cpu} {t.extras.mysqld_exporter.memory} "
                 "(operator's default limit, as request too); vitess-operator 100m/128Mi, limit 512Mi (operator.yaml)")
    lines.append("  planned placement (node: pods; memory by limit):")
    caps = _caps(rooms)
    for n, ps in by_node.items():
        used = sum(p.occupies for p in t.pods if t.plan[p.name] == n)
        cpu = sum(p.cpu_millis for p in t.pods if t.plan[p.name] == n)
        lines.append(f"    {n}: {', '.join(ps) or '-'}  ({_cpu(cpu)} / {_gib(used)} of {_cpu(caps[n][0])} / "
                     f"{_gib(caps[n][1])})")
    if operator_node and operator_node not in nodes:
        lines.append(f"  vitess-operator runs on {operator_node}, which has no room by the preflight's figures")
    lines.append("  rules rendered: " + "; ".join(filter(None, [
        None if all_nodes else f"node affinity to {', '.join(nodes)}",
        "etcd: required anti-affinity (one member per node)" if placement.etcd_required_spread else "etcd: preferred spread",
        "tablets: topology spread maxSkew 1 per keyspace" if placement.tablet_spread else None,
        "singletons: preferred node " + ", ".join(f"{k}->{v}" for k, v in placement.preferred.items())])))
    lines += [f"  HA kept: {x}" for x in kept] + [f"  HA lost: {x}" for x in lost]
    return Sizing(size="fit", spec=t.spec, extras=t.extras, placement=placement, placeable=True, ha_kept=kept,
                  ha_lost=lost, lines=lines)


# ---------------------------------------------------------------- later steps


class StepNeed(BaseModel):
    """The room one later upstream step needs on top of the cluster before it."""

    step: str
    what: str
    cpu_millis: int = Field(description="CPU requests the step adds (its steady pods).")
    memory_bytes: int = Field(description="Memory requests the step adds.")
    memory_limit_bytes: int = Field(description="Memory limits the step adds.")
    transient_cpu_millis: int = Field(description="vtbackup-init of the new shards, until their first backup.")
    transient_memory_bytes: int
    total_cpu_millis: int = Field(description="The cluster's CPU requests after the step (steady).")
    total_memory_bytes: int
    fits: bool
    nodes_needed: str | None = Field(default=None, description="Nodes that would do, when it does not fit.")

    def line(self) -> str:
        verdict = "fits on these nodes" if self.fits else (
            "does NOT fit on these nodes" + (f" ({self.nodes_needed} would do)" if self.nodes_needed else ""))
        return (f"{self.step} ({self.what}): needs {self.cpu_millis / 1000:.2f} CPU / {_gib(self.memory_bytes)} more "
                f"(limits {_gib(self.memory_limit_bytes)}), plus {self.transient_cpu_millis / 1000:.2f} CPU / "
                f"{_gib(self.transient_memory_bytes)} while the new shards' first backup runs; the cluster then "
                f"requests {self.total_cpu_millis / 1000:.2f} CPU / {_gib(self.total_memory_bytes)}: {verdict}")


def _step_pods(sizing: Sizing) -> list[tuple[str, str, list[Pod]]]:
    """The pods upstream's 201 and 302 add, at the sizing's sizes: 201 a keyspace ``customer``
    shaped as the first keyspace (one shard), 302 that keyspace's two new shards -80 and 80-."""
    spec, ex = sizing.spec, sizing.extras
    tmpl: KeyspaceSpec = spec.keyspaces[0]
    backup = spec.backup.kind != "none"
    pool = tmpl.tablets
    s201 = _keyspace_pods("customer", ["-"], pool, tmpl.vtorc, ex.mysqld_exporter, backup)
    s302 = _keyspace_pods("customer", ["-80", "80-"], pool, tmpl.vtorc, ex.mysqld_exporter, backup)
    v = "vtorc + " if tmpl.vtorc else ""
    return [("201_customer_tablets", f"keyspace customer: {v}{pool.replicas} tablets", s201),
            ("302_new_shards", f"customer shards -80, 80-: {'2 vtorc + ' if tmpl.vtorc else ''}{2 * pool.replicas} tablets",
             s302)]


def later_steps(sizing: Sizing, rooms: list[NodeRoom]) -> list[StepNeed]:
    """One entry per later upstream step, cumulative (302 on top of 201), at the sizing's sizes.
    'fits' means a placement of every pod exists within the room with the sizing's HA rules."""
    caps = _caps(rooms)
    tier = sizing.placement.tier if sizing.placement else "none"
    nodes = sizing.placement.nodes if sizing.placement else [r.node for r in rooms]
    base = [p for p in cluster_pods(sizing.spec, sizing.extras) if not p.transient]
    r = max(ks.tablets.replicas for ks in sizing.spec.keyspaces)
    out = []
    for step, what, pods in _step_pods(sizing):
        steady = [p for p in pods if not p.transient]
        trans = [p for p in pods if p.transient]
        now = base + pods
        fits = pack(now, caps, rules_for(tier, nodes, r, True)) is not None if caps else False
        needed = None
        if not fits:
            n = max(len(rooms), 1)
            s = smallest_node(sizing.spec, n, extra=now, tier=tier)
            if s:
                res_c = max((x.reserved_cpu_millis for x in rooms), default=0)
                res_m = max((x.reserved_memory_bytes for x in rooms), default=0)
                needed = f"{n} nodes of {_cpu(s[0] + res_c)} CPU / {_gib(s[1] + res_m)} allocatable"
        out.append(StepNeed(step=step, what=what, cpu_millis=sum(p.cpu_millis for p in steady),
                            memory_bytes=sum(p.memory_bytes for p in steady),
                            memory_limit_bytes=sum(p.occupies for p in steady),
                            transient_cpu_millis=sum(p.cpu_millis for p in trans),
                            transient_memory_bytes=sum(p.memory_bytes for p in trans),
                            total_cpu_millis=sum(p.cpu_millis for p in base + steady),
                            total_memory_bytes=sum(p.memory_bytes for p in base + steady),
                            fits=fits, nodes_needed=needed))
        base = base + steady
    return out


# ---------------------------------------------------------------- rendering


HOSTNAME = "kubernetes.io/hostname"


def _node_terms(nodes: list[str]) -> dict:
    # one term per node (terms are ORed): a field selector takes exactly one value with In, and
    # the API server refuses more (validateNodeFieldSelectorRequirement)
    return {"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [n]}]}
                                  for n in nodes]}


def _node_affinity(p: Placement, preferred: str | None) -> dict:
    out: dict = {}
    if not p.all_nodes:
        out["requiredDuringSchedulingIgnoredDuringExecution"] = _node_terms(p.nodes)
    if preferred:
        out["preferredDuringSchedulingIgnoredDuringExecution"] = [{"weight": 50, "preference": {
            "matchFields": [{"key": "metadata.name", "operator": "In", "values": [preferred]}]}}]
    return out


def apply_to(vc: dict, sizing: Sizing, cluster: str, exporter: bool = True) -> dict:
    """The VitessCluster render() made, with what the sizing adds: under ``upstream`` nothing;
    under ``fit`` etcd's and vtadmin's resources, the exporter's, and the scheduling rules (node
    affinity, etcd anti-affinity, tablet spread, preferred nodes). ``exporter=False`` for releases
    whose CRD has no tablet-pool ``mysqldExporter`` (v2.10): the sidecar then runs at the operator's
    default, whose 128Mi limit is what fit counted. A new dict; ``vc`` is not changed."""
    out = copy.deepcopy(vc)
    p = sizing.placement
    if sizing.size == "upstream" or p is None:
        return out
    spec = out["spec"]
    term = {"topologyKey": HOSTNAME}
    etcd_sel = {"labelSelector": {"matchLabels": names.cluster_labels(cluster, names.ETCD)}, **term}
    etcd_anti = ({"requiredDuringSchedulingIgnoredDuringExecution": [etcd_sel]} if p.etcd_required_spread else
                 {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 2, "podAffinityTerm": etcd_sel}]})
    etcd_aff = {"podAntiAffinity": etcd_anti}
    if not p.all_nodes:
        etcd_aff["nodeAffinity"] = _node_affinity(p, None)
    spec["globalLockserver"] = {"etcd": {"resources": sizing.extras.etcd.k8s(), "affinity": etcd_aff}}

    def single(key: str) -> dict | None:
        na = _node_affinity(p, p.preferred.get(key))
        return {"nodeAffinity": na} if na else None

    for c in spec.get("cells") or []:
        if (a := single("vtgate")):
            c["gateway"]["affinity"] = a
    if (a := single("vtctld")) and "vitessDashboard" in spec:
        spec["vitessDashboard"]["affinity"] = a
    if "vtadmin" in spec:
        spec["vtadmin"]["apiResources"] = sizing.extras.vtadmin_api.k8s()
        spec["vtadmin"]["webResources"] = sizing.extras.vtadmin_web.k8s()
        if (a := single("vtadmin")):
            spec["vtadmin"]["affinity"] = a
    for ks in spec.get("keyspaces") or []:
        if "vitessOrchestrator" in ks and (a := single(f"vtorc {ks['name']}")):
            ks["vitessOrchestrator"]["affinity"] = a
        labels = {**names.cluster_labels(cluster, names.VTTABLET), names.KEYSPACE: ks["name"]}
        for part in ks.get("partitionings") or []:
            for pool in ((part.get("equal") or {}).get("shardTemplate") or {}).get("tabletPools") or []:
                if exporter:
                    pool["mysqldExporter"] = {"resources": sizing.extras.mysqld_exporter.k8s()}
                if p.tablet_spread:
                    pool["topologySpreadConstraints"] = [{"maxSkew": 1, "topologyKey": HOSTNAME,
                                                          "whenUnsatisfiable": "DoNotSchedule",
                                                          "labelSelector": {"matchLabels": labels}}]
                if not p.all_nodes:
                    # replaces the operator's default anti-affinity, so it is restated (per keyspace:
                    # a pool template cannot name its shard before K8s's matchLabelKeys)
                    pool["affinity"] = {"nodeAffinity": _node_affinity(p, None), "podAntiAffinity": {
                        "preferredDuringSchedulingIgnoredDuringExecution": [
                            {"weight": 2, "podAffinityTerm": {"labelSelector": {"matchLabels": labels}, **term}}]}}
    return out


__all__ = ["FLOORS", "CEILINGS", "Floor", "Extras", "Placement", "Sizing", "StepNeed", "Pod", "Size",
           "fit", "upstream", "size_cluster", "later_steps", "demands", "apply_to", "cluster_pods",
           "smallest_node", "shard_names", "pack", "schedule", "rules_for", "Rules", "UPSTREAM_EXTRAS"]
