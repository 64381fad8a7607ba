"""The scheduler: binds Pending pods to a node the kube-scheduler's default filters would pass.

Filters, in the kube-scheduler's order, the first that fails names the node's reason:
NodeUnschedulable (a cordoned node, unless the pod tolerates the unschedulable taint),
NodeAffinity (nodeSelector AND required nodeAffinity: nodeSelectorTerms ORed, matchExpressions
and matchFields ANDed within a term, an empty or invalid term matching nothing; its PreFilter
narrows to the nodes ``matchFields metadata.name In`` names, the others reported as "didn't
satisfy plugin(s) [NodeAffinity]"), NodeResourcesFit (free allocatable covers the requests:
allocatable minus the requests of the non-terminal pods bound there; a pod's request is the
sum over its containers, a limit standing in for a missing request, or the largest init
container if bigger), VolumeBinding (a bound claim's PV node affinity), PodTopologySpread
(DoNotSchedule constraints: matching pods of the pod's namespace counted per domain over the
nodes that pass the pod's node affinity and carry the key; skew = domain + self - global
minimum) and InterPodAffinity (required podAffinity, podAntiAffinity, and existing pods'
required anti-affinity against this pod; a missing topology key fails affinity, never
anti-affinity).
Claims must exist, and claims of an Immediate StorageClass must be Bound; claims of a
WaitForFirstConsumer class are bound after the pod is placed (the chosen node is written to
the claim's selected-node annotation, as the real volume binder does).
Among feasible nodes the best score wins: preferred node affinity, preferred inter-pod
(anti-)affinity (this pod's and the existing pods'), and ScheduleAnyway spread, each normalised
to 0-100 and weighted 2 as in the default profile; ties go to the node with the most free
memory, then the name (the real scheduler breaks ties at random; resource scores are not
summed in). Not modelled: taints other than cordoning, host ports, minDomains,
matchLabelKeys, the system default spread. A pod that cannot be placed gets
PodScheduled=False/Unschedulable and a FailedScheduling event worded like the real
scheduler's (v1.33): reasons counted per node, "<count> <reason>" sorted as strings.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from decimal import Decimal

from ..quantity import parse_quantity
from ..selectors import match_label_selector_obj
from ..store import Change, now_rfc3339
from . import Controller
from .common import is_terminal, set_condition

SELECTED_NODE = "volume.kubernetes.io/selected-node"
UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"

R_UNSCHEDULABLE = "node(s) were unschedulable"
R_NODE_AFFINITY = "node(s) didn't match Pod's node affinity/selector"
R_NODE_NAMES = "node(s) didn't satisfy plugin(s) [NodeAffinity]"
R_NAMES_CONFLICT = "pod affinity terms conflict"
R_VOLUME_NODE = "node(s) didn't match PersistentVolume's node affinity"
R_SPREAD = "node(s) didn't match pod topology spread constraints"
R_SPREAD_LABEL = R_SPREAD + " (missing required label)"
R_AFFINITY = "node(s) didn't match pod affinity rules"
R_ANTI_AFFINITY = "node(s) didn't match pod anti-affinity rules"
R_EXISTING_ANTI = "node(s) didn't satisfy existing pods anti-affinity rules"
# Unschedulable (preemption might help) rather than UnschedulableAndUnresolvable
PREEMPTIBLE = {"Insufficient cpu", "Insufficient memory", "Too many pods", R_SPREAD, R_ANTI_AFFINITY, R_EXISTING_ANTI}


def pod_requests(pod: dict) -> dict[str, Decimal]:
    spec = pod.get("spec") or {}

    def one(c: dict) -> dict[str, Decimal]:
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        out = {}
        for k in ("cpu", "memory"):
            v = req.get(k, lim.get(k))
            out[k] = parse_quantity(v) if v is not None else Decimal(0)
        return out

    total = {"cpu": Decimal(0), "memory": Decimal(0)}
    for c in spec.get("containers") or []:
        for k, v in one(c).items():
            total[k] += v
    for c in spec.get("initContainers") or []:
        for k, v in one(c).items():
            total[k] = max(total[k], v)
    return total


def claim_names(pod: dict) -> list[str]:
    return [v["persistentVolumeClaim"]["claimName"] for v in (pod.get("spec") or {}).get("volumes") or []
            if isinstance(v, dict) and v.get("persistentVolumeClaim")]


# -- node selection (k8s.io/component-helpers/scheduling/corev1/nodeaffinity) ---------------------
def _label_requirement(req: dict, labels: dict) -> bool:
    key, op, values = req.get("key"), req.get("operator"), list(req.get("values") or [])
    if op == "In":
        return bool(values) and labels.get(key) in values
    if op == "NotIn":
        return bool(values) and labels.get(key) not in values
    if op == "Exists":
        return not values and key in labels
    if op == "DoesNotExist":
        return not values and key not in labels
    if op in ("Gt", "Lt"):
        # one integer value; a label that is not an integer never matches
        try:
            want, have = int(values[0]), int(labels[key])
        except (IndexError, KeyError, ValueError):
            return False
        return len(values) == 1 and (have > want if op == "Gt" else have < want)
    return False  # an unknown operator is a parse error: the term matches nothing


def _field_requirement(req: dict, node: dict) -> bool:
    # only metadata.name, only In/NotIn, exactly one value (anything else is a parse error)
    values = list(req.get("values") or [])
    if req.get("key") != "metadata.name" or len(values) != 1:
        return False
    name = node["metadata"]["name"]
    if req.get("operator") == "In":
        return name == values[0]
    if req.get("operator") == "NotIn":
        return name != values[0]
    return False


def term_matches(term: dict | None, node: dict) -> bool:
    """One NodeSelectorTerm; null or empty matches nothing, its requirements are ANDed."""
    exprs, fields = (term or {}).get("matchExpressions") or [], (term or {}).get("matchFields") or []
    if not exprs and not fields:
        return False
    labels = node["metadata"].get("labels") or {}
    return all(_label_requirement(r, labels) for r in exprs) and all(_field_requirement(r, node) for r in fields)


def _required_node_terms(spec: dict) -> list[dict] | None:
    req = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
           .get("requiredDuringSchedulingIgnoredDuringExecution"))
    return None if req is None else list(req.get("nodeSelectorTerms") or [])


def node_affinity_matches(spec: dict, node: dict) -> bool:
    """nodeSelector AND required node affinity (its terms ORed), as RequiredNodeAffinity.Match."""
    labels = node["metadata"].get("labels") or {}
    if any(labels.get(k) != v for k, v in (spec.get("nodeSelector") or {}).items()):
        return False
    terms = _required_node_terms(spec)
    return terms is None or any(term_matches(t, node) for t in terms)


def prefilter_node_names(spec: dict) -> set[str] | None:
    """NodeAffinity's PreFilter: the node names ``matchFields metadata.name In`` allows, None for all."""
    terms = _required_node_terms(spec)
    if not terms:
        return None
    names: set[str] = set()
    for t in terms:
        term_names = None
        for r in t.get("matchFields") or []:
            if r.get("key") == "metadata.name" and r.get("operator") == "In":
                s = set(r.get("values") or [])
                term_names = s if term_names is None else term_names & s
        if term_names is None:
            return None  # a term without a name requirement allows every node (terms are ORed)
        names |= term_names
    return names


# -- inter-pod terms -------------------------------------------------------------------------------
def _namespaces_of(term: dict, owner: dict, namespace_labels) -> Callable[[str], bool]:
    ns_list = set(term.get("namespaces") or [])
    ns_sel = term.get("namespaceSelector")
    if not ns_list and ns_sel is None:
        ns_list = {owner["metadata"].get("namespace", "")}

    def allowed(ns: str) -> bool:
        if ns in ns_list:
            return True
        return ns_sel is not None and match_label_selector_obj(ns_sel, namespace_labels(ns))
    return allowed


def pod_matches_term(term: dict, owner: dict, target: dict, namespace_labels) -> bool:
    """Does ``target`` fall under ``owner``'s PodAffinityTerm (namespaces and labelSelector)?"""
    sel = term.get("labelSelector")
    if sel is None:  # a null selector selects nothing
        return False
    if not _namespaces_of(term, owner, namespace_labels)(target["metadata"].get("namespace", "")):
        return False
    return match_label_selector_obj(sel, target["metadata"].get("labels") or {})


def _pod_terms(spec: dict, kind: str, mode: str) -> list[dict]:
    """kind: podAffinity/podAntiAffinity; mode: required (terms) or preferred (weighted terms)."""
    block = (spec.get("affinity") or {}).get(kind) or {}
    key = f"{mode}DuringSchedulingIgnoredDuringExecution"
    return list(block.get(key) or [])


class Scheduler(Controller):
    name = "default-scheduler"
    watches = ("pods", "nodes", "persistentvolumeclaims")
    resync_s = 5.0

    def handle(self, double, change: Change) -> None:
        if change.resource == "pods" and change.type != "DELETED":
            self.try_schedule(double, change.obj)
        elif change.resource == "pods":
            if (change.obj.get("spec") or {}).get("nodeName"):
                self.resync(double)
        else:
            self.resync(double)

    def resync(self, double) -> None:
        for pod in double.list("pods"):
            self.try_schedule(double, pod)

    def try_schedule(self, double, pod: dict) -> None:
        spec = pod.get("spec") or {}
        if spec.get("nodeName") or is_terminal(pod):
            return
        if spec.get("schedulerName", "default-scheduler") != "default-scheduler":
            return
        ns = pod["metadata"].get("namespace", "")
        nodes = double.list("nodes")
        total = len(nodes)
        delayed_claims, bound_pvs = [], []
        for claim in claim_names(pod):
            pvc = double.get("persistentvolumeclaims", ns, claim)
            if pvc is None:
                return self._fail(double, pod, f'persistentvolumeclaim "{claim}" not found')
            if (pvc.get("status") or {}).get("phase") == "Bound":
                pv = double.get("persistentvolumes", "", (pvc.get("spec") or {}).get("volumeName") or "")
                if pv is not None:
                    bound_pvs.append(pv)
                continue
            sc = double.get("storage.k8s.io/storageclasses", "", (pvc.get("spec") or {}).get("storageClassName") or "")
            if sc is not None and sc.get("volumeBindingMode") == "WaitForFirstConsumer":
                delayed_claims.append(claim)
                continue
            return self._fail(double, pod,
                              f"0/{total} nodes are available: pod has unbound immediate PersistentVolumeClaims. "
                              f"preemption: 0/{total} nodes are available: {total} Preemption is not helpful for scheduling.")
        names = prefilter_node_names(spec)
        if names is not None and not names:
            return self._fail(double, pod, f"0/{total} nodes are available: {R_NAMES_CONFLICT}. preemption: 0/{total} "
                                           f"nodes are available: {total} Preemption is not helpful for scheduling.")
        node_by_name = {n["metadata"]["name"]: n for n in nodes}
        placed = [p for p in double.list("pods")
                  if (p.get("spec") or {}).get("nodeName") in node_by_name and not is_terminal(p)
                  and p["metadata"].get("uid") != pod["metadata"].get("uid")]
        ns_cache: dict[str, dict] = {}

        def namespace_labels(name: str) -> dict:
            if name not in ns_cache:
                ns_cache[name] = ((double.get("namespaces", "", name) or {}).get("metadata") or {}).get("labels") or {}
            return ns_cache[name]

        want = pod_requests(pod)
        used: dict[str, dict[str, Decimal]] = {}
        counts: dict[str, int] = {}
        for p in placed:
            r, node = pod_requests(p), p["spec"]["nodeName"]
            u = used.setdefault(node, {"cpu": Decimal(0), "memory": Decimal(0)})
            u["cpu"] += r["cpu"]
            u["memory"] += r["memory"]
            counts[node] = counts.get(node, 0) + 1
        spread = _Spread(pod, spec, nodes, placed, "DoNotSchedule")
        soft_spread = _Spread(pod, spec, nodes, placed, "ScheduleAnyway")
        inter = _InterPod(pod, spec, node_by_name, placed, namespace_labels)

        statuses: dict[str, list[str]] = {}
        fits = []
        tolerates_cordon = any(_tolerates(t) for t in spec.get("tolerations") or [])
        for n in nodes:
            name = n["metadata"]["name"]
            if names is not None and name not in names:
                statuses[name] = [R_NODE_NAMES]
                continue
            if (n.get("spec") or {}).get("unschedulable") and not tolerates_cordon:
                statuses[name] = [R_UNSCHEDULABLE]
                continue
            if not node_affinity_matches(spec, n):
                statuses[name] = [R_NODE_AFFINITY]
                continue
            alloc = (n.get("status") or {}).get("allocatable") or {}
            u = used.get(name, {"cpu": Decimal(0), "memory": Decimal(0)})
            short = []
            if counts.get(name, 0) + 1 > int(alloc.get("pods", "110")):
                short.append("Too many pods")
            if want["cpu"] > parse_quantity(alloc.get("cpu", "0")) - u["cpu"]:
                short.append("Insufficient cpu")
            if want["memory"] > parse_quantity(alloc.get("memory", "0")) - u["memory"]:
                short.append("Insufficient memory")
            if short:
                statuses[name] = short
                continue
            if any(not _pv_allows(pv, n) for pv in bound_pvs):
                statuses[name] = [R_VOLUME_NODE]
                continue
            reason = spread.filter(n) or inter.filter(n)
            if reason:
                statuses[name] = [reason]
                continue
            free_mem = parse_quantity(alloc.get("memory", "0")) - u["memory"]
            fits.append((free_mem, name))
        if not fits:
            reasons: dict[str, int] = {}
            for rs in statuses.values():
                for r in rs:
                    reasons[r] = reasons.get(r, 0) + 1
            detail = ", ".join(sorted(f"{c} {r}" for r, c in reasons.items()))
            helps = sum(1 for rs in statuses.values() if all(r in PREEMPTIBLE for r in rs))
            pre = []
            if helps:
                pre.append(f"{helps} No preemption victims found for incoming pod")
            if total - helps:
                pre.append(f"{total - helps} Preemption is not helpful for scheduling")
            return self._fail(double, pod, f"0/{total} nodes are available: {detail}. "
                                           f"preemption: 0/{total} nodes are available: {', '.join(sorted(pre))}.")
        feasible = [node_by_name[name] for _, name in fits]
        score = _scores(spec, feasible, soft_spread, inter)
        fits.sort(key=lambda f: (-score[f[1]], -f[0], f[1]))
        node = fits[0][1]
        for claim in delayed_claims:
            double.mutate("persistentvolumeclaims", ns, claim,
                          lambda c: c["metadata"].setdefault("annotations", {}).__setitem__(SELECTED_NODE, node))

        def bind(p):
            if p["spec"].get("nodeName"):
                return False
            p["spec"]["nodeName"] = node
            st = p.setdefault("status", {})
            st["conditions"] = set_condition(st.get("conditions"), "PodScheduled", "True", now=now_rfc3339())
        double.mutate("pods", ns, pod["metadata"]["name"], bind)
        double.record_event(pod, "Normal", "Scheduled",
                            f"Successfully assigned {ns}/{pod['metadata']['name']} to {node}", "default-scheduler")

    def _fail(self, double, pod: dict, message: str) -> None:
        def mark(p):
            st = p.setdefault("status", {})
            st["phase"] = "Pending"
            st["conditions"] = set_condition(st.get("conditions"), "PodScheduled", "False", "Unschedulable",
                                             message, now_rfc3339())
        double.mutate("pods", pod["metadata"].get("namespace", ""), pod["metadata"]["name"], mark)
        double.record_event(pod, "Warning", "FailedScheduling", message, "default-scheduler")


def _tolerates(t: dict) -> bool:
    """Does toleration ``t`` tolerate the node.kubernetes.io/unschedulable:NoSchedule taint?"""
    if t.get("effect") not in (None, "", "NoSchedule"):
        return False
    if t.get("operator", "Equal") == "Exists":
        return t.get("key") in (None, "", UNSCHEDULABLE_TAINT)
    return t.get("key") == UNSCHEDULABLE_TAINT and not t.get("value")


def _pv_allows(pv: dict, node: dict) -> bool:
    required = (((pv.get("spec") or {}).get("nodeAffinity") or {}).get("required"))
    if required is None:
        return True
    return any(term_matches(t, node) for t in required.get("nodeSelectorTerms") or [])


class _Spread:
    """PodTopologySpread over every node (cordoned ones too: nodeTaintsPolicy defaults to Ignore)."""

    def __init__(self, pod: dict, spec: dict, nodes: list[dict], placed: list[dict], when: str):
        """``when``: DoNotSchedule (the filter's constraints) or ScheduleAnyway (the score's)."""
        self.pod = pod
        self.constraints = [c for c in spec.get("topologySpreadConstraints") or []
                            if c.get("whenUnsatisfiable", "DoNotSchedule") == when]
        ns = pod["metadata"].get("namespace", "")
        # eligible nodes: pass the pod's node affinity (nodeAffinityPolicy Honor) and carry every key
        keys = [c.get("topologyKey", "") for c in self.constraints]
        eligible = {n["metadata"]["name"]: n for n in nodes if node_affinity_matches(spec, n)
                    and all(k in (n["metadata"].get("labels") or {}) for k in keys)}
        self.counts: list[dict[str, int]] = []
        for c in self.constraints:
            per: dict[str, int] = {}
            for n in eligible.values():
                per.setdefault(n["metadata"]["labels"][c["topologyKey"]], 0)
            for p in placed:
                n = eligible.get(p["spec"]["nodeName"])
                if n is None or p["metadata"].get("namespace", "") != ns or p["metadata"].get("deletionTimestamp"):
                    continue
                if self._selects(c, p):
                    per[n["metadata"]["labels"][c["topologyKey"]]] += 1
            self.counts.append(per)

    @staticmethod
    def _selects(c: dict, target: dict) -> bool:
        sel = c.get("labelSelector")
        return sel is not None and match_label_selector_obj(sel, target["metadata"].get("labels") or {})

    def filter(self, node: dict) -> str | None:
        labels = node["metadata"].get("labels") or {}
        for c, per in zip(self.constraints, self.counts):
            key = c.get("topologyKey", "")
            if key not in labels:
                return R_SPREAD_LABEL
            minimum = min(per.values()) if per else 0
            skew = per.get(labels[key], 0) + (1 if self._selects(c, self.pod) else 0) - minimum
            if skew > int(c.get("maxSkew", 1)):
                return R_SPREAD
        return None

    def raw_score(self, node: dict) -> float | None:
        """ScheduleAnyway constraints: matching pods in the node's domains, each weighted by
        log(domains + 2) as the plugin does; lower is better. None: the node lacks a key."""
        labels = node["metadata"].get("labels") or {}
        total = 0.0
        for c, per in zip(self.constraints, self.counts):
            if c.get("topologyKey", "") not in labels:
                return None
            total += (per.get(labels[c["topologyKey"]], 0) + int(c.get("maxSkew", 1)) - 1) * math.log(len(per) + 2)
        return total


class _InterPod:
    """InterPodAffinity's filter state and preferred-term scores."""

    def __init__(self, pod: dict, spec: dict, node_by_name: dict, placed: list[dict], namespace_labels):
        self.pod, self.spec, self.nodes, self.placed, self.nsl = pod, spec, node_by_name, placed, namespace_labels
        self.affinity = _pod_terms(spec, "podAffinity", "required")
        self.anti = _pod_terms(spec, "podAntiAffinity", "required")
        # (key, value) pairs: pods matching ALL affinity terms; pods matching each anti-affinity term;
        # existing pods whose required anti-affinity selects this pod
        self.aff_pairs: dict[tuple[str, str], int] = {}
        self.anti_pairs: dict[tuple[str, str], int] = {}
        self.existing_anti: dict[tuple[str, str], int] = {}
        for p in placed:
            labels = self.nodes[p["spec"]["nodeName"]]["metadata"].get("labels") or {}
            if self.affinity and all(pod_matches_term(t, pod, p, self.nsl) for t in self.affinity):
                for t in self.affinity:
                    if t.get("topologyKey") in labels:
                        pair = (t["topologyKey"], labels[t["topologyKey"]])
                        self.aff_pairs[pair] = self.aff_pairs.get(pair, 0) + 1
            for t in self.anti:
                if t.get("topologyKey") in labels and pod_matches_term(t, pod, p, self.nsl):
                    pair = (t["topologyKey"], labels[t["topologyKey"]])
                    self.anti_pairs[pair] = self.anti_pairs.get(pair, 0) + 1
            for t in _pod_terms(p.get("spec") or {}, "podAntiAffinity", "required"):
                if t.get("topologyKey") in labels and pod_matches_term(t, p, pod, self.nsl):
                    pair = (t["topologyKey"], labels[t["topologyKey"]])
                    self.existing_anti[pair] = self.existing_anti.get(pair, 0) + 1

    def filter(self, node: dict) -> str | None:
        labels = node["metadata"].get("labels") or {}
        if self.affinity:
            exist = True
            for t in self.affinity:
                key = t.get("topologyKey")
                if key not in labels:
                    return R_AFFINITY
                if self.aff_pairs.get((key, labels[key]), 0) <= 0:
                    exist = False
            # the first of a group with affinity to itself may go anywhere that has the keys
            if not exist and not (not self.aff_pairs and
                                  all(pod_matches_term(t, self.pod, self.pod, self.nsl) for t in self.affinity)):
                return R_AFFINITY
        for t in self.anti:
            key = t.get("topologyKey")
            if key in labels and self.anti_pairs.get((key, labels[key]), 0) > 0:
                return R_ANTI_AFFINITY
        if any(self.existing_anti.get((k, v), 0) > 0 for k, v in labels.items()):
            return R_EXISTING_ANTI
        return None

    def raw_scores(self, feasible: list[dict]) -> dict[str, float]:
        """Weights of preferred terms per topology pair, summed for each node's labels."""
        pairs: dict[tuple[str, str], float] = {}

        def add(term: dict, node_labels: dict, weight: float) -> None:
            key = term.get("topologyKey")
            if key in node_labels:
                pairs[(key, node_labels[key])] = pairs.get((key, node_labels[key]), 0) + weight

        mine = ([(w.get("podAffinityTerm") or {}, int(w.get("weight", 0))) for w in
                 _pod_terms(self.spec, "podAffinity", "preferred")] +
                [(w.get("podAffinityTerm") or {}, -int(w.get("weight", 0))) for w in
                 _pod_terms(self.spec, "podAntiAffinity", "preferred")])
        for p in self.placed:
            labels = self.nodes[p["spec"]["nodeName"]]["metadata"].get("labels") or {}
            for term, weight in mine:
                if pod_matches_term(term, self.pod, p, self.nsl):
                    add(term, labels, weight)
            pspec = p.get("spec") or {}
            for w in _pod_terms(pspec, "podAffinity", "preferred"):
                if pod_matches_term(w.get("podAffinityTerm") or {}, p, self.pod, self.nsl):
                    add(w.get("podAffinityTerm") or {}, labels, int(w.get("weight", 0)))
            for w in _pod_terms(pspec, "podAntiAffinity", "preferred"):
                if pod_matches_term(w.get("podAffinityTerm") or {}, p, self.pod, self.nsl):
                    add(w.get("podAffinityTerm") or {}, labels, -int(w.get("weight", 0)))
            for t in _pod_terms(pspec, "podAffinity", "required"):  # hardPodAffinityWeight 1
                if pod_matches_term(t, p, self.pod, self.nsl):
                    add(t, labels, 1)
        out = {}
        for n in feasible:
            labels = n["metadata"].get("labels") or {}
            out[n["metadata"]["name"]] = sum(w for (k, v), w in pairs.items() if labels.get(k) == v)
        return out


def _scores(spec: dict, feasible: list[dict], spread: _Spread, inter: _InterPod) -> dict[str, float]:
    """NodeAffinity, InterPodAffinity and PodTopologySpread scores, normalised as each plugin
    does, weight 2 each (the default profile)."""
    names = [n["metadata"]["name"] for n in feasible]
    prefs = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
             .get("preferredDuringSchedulingIgnoredDuringExecution") or [])
    na = {n["metadata"]["name"]: sum(int(p.get("weight", 0)) for p in prefs if term_matches(p.get("preference"), n))
          for n in feasible}
    top = max(na.values(), default=0)
    na = {k: (100 * v / top if top > 0 else 0) for k, v in na.items()}
    ip = inter.raw_scores(feasible)
    lo, hi = min(ip.values(), default=0), max(ip.values(), default=0)
    ip = {k: (100 * (v - lo) / (hi - lo) if hi > lo else 0) for k, v in ip.items()}
    raw = {n["metadata"]["name"]: spread.raw_score(n) for n in feasible}
    known = [v for v in raw.values() if v is not None]
    lo, hi = min(known, default=0), max(known, default=0)
    ts = {k: (0 if v is None else 100 if hi == 0 else 100 * (hi + lo - v) / hi) for k, v in raw.items()}
    return {k: 2 * na[k] + 2 * ip[k] + 2 * ts[k] for k in names}
