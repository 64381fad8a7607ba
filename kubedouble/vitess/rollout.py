"""How the simulated vitess-operator rolls tablet pods whose spec changed: decisions only, pure.

Read from planetscale/vitess-operator at tag v2.17.0's successor on main, commit 6b0a1b8c
(2026-07-18, "Merge pull request #802"; `git describe`: v2.17.0 is the newest tag before it):
  pkg/operator/rollout/rollout.go         the annotations: ``rollout.planetscale.com/scheduled``
                                          (value: a description of the pending change),
                                          ``.../released`` (value ""), ``.../cascade`` (on a
                                          VitessShard); Unschedule removes scheduled and released.
  pkg/operator/reconciler/object.go       for every existing pod: a spec change (vttablet
                                          UpdatePod, "UpdateRollingRecreate") that is not released
                                          only sets ``scheduled`` (describeDiff: a strategic merge
                                          patch); none removes it; a released pod is drained first
                                          when it carries ``drain.planetscale.com/supported``
                                          (drain.Start "rolling update", scheduled kept), deleted
                                          once ``drain.planetscale.com/finished`` is on it, and made
                                          again by New (a new pod: no rollout annotations).
  pkg/controller/vitessshard/reconcile_tablets.go   tablet pods carry
                                          ``drain.planetscale.com/supported: ensure that the tablet
                                          is not a primary``; Available = Ready for 30 s
                                          (tabletAvailableSeconds); status pendingChanges = the
                                          scheduled annotation.
  pkg/controller/vitesskeyspace/reconcile_shards.go  with updateStrategy Immediate, a shard any of
                                          whose tablets has pending changes gets ``cascade``; with
                                          External (the DEFAULT, vitesscluster_defaults.go
                                          DefaultUpdateStrategy) nothing cascades: "wait for an
                                          external tool to release them" (vitesscluster_types.go).
  pkg/controller/vitessshard/reconcile_rollout.go   only on a cascading shard: pause while any
                                          desired tablet is missing, not Available, or released;
                                          release the next scheduled one: one already drained, else
                                          any non-primary, the primary last; a lone primary
                                          (fewer than 2 replica-type tablets) is deleted at once
                                          (no reparent possible); none left: remove ``cascade``.
  pkg/controller/vitessshardreplication/reconcile_drain.go + pkg/operator/drain/drain.go
                                          nothing while any tablet is not Available or the shard has
                                          no primary; started -> acknowledged -> finished, one tablet
                                          at a time (StateTransitions, first by alias), never the
                                          primary: a draining primary is moved first by
                                          PlannedReparentShard to a Ready REPLICA that is not
                                          draining, and is marked finished on a later pass.
  pkg/controller/etcdlockserver/reconcile_members.go  etcd member pods are reconciled the same way
                                          (UpdateRollingRecreate) but NOTHING in the operator
                                          releases them: a changed etcd pod keeps ``scheduled``
                                          until someone adds ``released``.
So, with the upstream examples' ``updateStrategy: Immediate``: every changed tablet is annotated
at once, then replaced one at a time, each after the previous is Available again, the primary
last after a planned reparent; the annotation stays on each pod until it is replaced.

SIMPLIFIED: the non-primary order is by tablet alias (the real one ranges over a Go map: any
order); Available = Ready for ``available_s`` seconds (default 0 here, 30 in the real operator:
``TabletRollout.available_s``); the cascade is set as soon as a pod is scheduled (the real one
also waits until every pod observed the shard's generation); etcd pods, once released, are
deleted without a drain, as they carry no drain annotation. External: the real operator also
holds the VitessKeyspace and VitessShard specs (scheduled on them) before the pods see a change;
here the pods are scheduled directly and wait for ``released`` (or ``cascade`` on their shard).

What this module must not do: touch the store, the clock or the kubelet. ``shard_actions`` turns
one snapshot into ``Action``s; operator.py applies them. ``TabletRollout`` holds the test knobs.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone

from . import names

SCHEDULED = "rollout.planetscale.com/scheduled"
RELEASED = "rollout.planetscale.com/released"
CASCADE = "rollout.planetscale.com/cascade"
DRAIN_SUPPORTED = "drain.planetscale.com/supported"
DRAIN_STARTED = "drain.planetscale.com/started"
DRAIN_ACKNOWLEDGED = "drain.planetscale.com/acknowledged"
DRAIN_FINISHED = "drain.planetscale.com/finished"
TABLET_DRAIN_SUPPORTED = "ensure that the tablet is not a primary"   # reconcile_tablets.go vttabletSpecs
IMMEDIATE, EXTERNAL = "Immediate", "External"
KEYSPACES, SHARDS = "planetscale.com/vitesskeyspaces", "planetscale.com/vitessshards"


def update_strategy(vc: dict) -> str:
    """``spec.updateStrategy.type``; External when unset (DefaultUpdateStrategy)."""
    return (((vc.get("spec") or {}).get("updateStrategy") or {}).get("type")) or EXTERNAL


def go_time(now: datetime) -> str:
    """``time.Now().UTC().String()``, the value drain.Acknowledge / drain.Finish write."""
    now = now.astimezone(timezone.utc)
    return f"{now:%Y-%m-%d %H:%M:%S}.{now.microsecond * 1000:09d} +0000 UTC"


def describe_diff(cur_spec: dict, want_spec: dict) -> str:
    """What the scheduled annotation says: the changed container fields as a strategic merge patch
    (as describeDiff writes it; the real one diffs the whole defaulted pod, this one the fields
    the operator sets)."""
    cur = {c.get("name"): c for c in cur_spec.get("containers") or []}
    changed = []
    for c in want_spec.get("containers") or []:
        old = cur.get(c.get("name")) or {}
        fields = {k: v for k, v in c.items() if k != "name" and old.get(k) != v}
        if fields:
            changed.append({**fields, "name": c.get("name")})
    spec: dict = {}
    if changed:
        spec["$setElementOrder/containers"] = [{"name": c.get("name")} for c in want_spec.get("containers") or []]
        spec["containers"] = changed
    for k, v in want_spec.items():
        if k not in ("containers", "affinity") and cur_spec.get(k) != v:
            spec[k] = v
    return json.dumps({"spec": spec} if spec else {"spec": {"$changed": "pod spec"}}, sort_keys=True,
                      separators=(",", ":"))


@dataclass(frozen=True)
class Action:
    """One change the operator makes. ``kind``: "annotate" (set ``add``, remove ``remove`` on
    ``ref``/``name``), "delete" (the pod), "reparent" (PlannedReparentShard of shard ``name`` to
    ``alias``). ``why`` is the event message the real operator records."""
    kind: str
    ref: str
    name: str
    add: tuple[tuple[str, str], ...] = ()
    remove: tuple[str, ...] = ()
    alias: str = ""
    why: str = ""


@dataclass(frozen=True)
class TabletView:
    """One desired tablet as this pass sees it. ``pod`` None: not created yet (or going)."""
    alias: str
    pod: dict | None
    changed: bool            # the pod's spec differs from the desired one
    pending: str             # the description of that change ("" when none)
    available: bool          # Ready long enough, and not being deleted
    ready: bool
    pool_type: str           # replica | rdonly | ...


def _ann(pod: dict | None) -> dict:
    return ((pod or {}).get("metadata") or {}).get("annotations") or {}


def _set(ref: str, name: str, why: str, **add: str) -> Action:
    return Action("annotate", ref, name, add=tuple(add.items()), why=why)


def _drain_state(ann: dict) -> str:
    # drain.GetState
    if DRAIN_FINISHED in ann:
        return "finished"
    if DRAIN_ACKNOWLEDGED in ann:
        return "acknowledged"
    if DRAIN_STARTED in ann:
        return "draining"
    return "none"


def shard_actions(shard: dict, tablets: list[TabletView], primary: str | None, strategy: str,
                  now: datetime) -> list[Action]:
    """Everything the operator's shard, keyspace and drain controllers do to one shard's tablets
    in one pass, from one snapshot (annotations as the previous pass left them)."""
    shard_name = shard["metadata"]["name"]
    out: list[Action] = []
    touched: set[str] = set()     # pods deleted this pass: nothing else happens to them

    # 1. reconcile_tablets + reconciler/object.go: schedule, unschedule, drain, delete
    for t in tablets:
        if t.pod is None:
            continue
        name, ann = t.pod["metadata"]["name"], _ann(t.pod)
        if RELEASED in ann and t.changed:
            if DRAIN_SUPPORTED in ann and DRAIN_FINISHED not in ann:
                if DRAIN_STARTED not in ann or ann.get(SCHEDULED) != t.pending:
                    out.append(_set("pods", name, "rolling update",
                                    **{DRAIN_STARTED: ann.get(DRAIN_STARTED, "rolling update"), SCHEDULED: t.pending}))
            else:
                out.append(Action("delete", "pods", name, why=f"deleted Pod {name}"))
                touched.add(name)
        elif t.changed:
            if ann.get(SCHEDULED) != t.pending:
                out.append(_set("pods", name, "scheduled", **{SCHEDULED: t.pending}))
        elif SCHEDULED in ann or RELEASED in ann:
            out.append(Action("annotate", "pods", name, remove=(SCHEDULED, RELEASED), why="up to date"))

    pods = {t.alias: t for t in tablets}
    scheduled = sorted(a for a, t in pods.items() if t.pod is not None and SCHEDULED in _ann(t.pod)
                       and t.pod["metadata"]["name"] not in touched)
    cascading = CASCADE in _ann(shard)

    # 2. reconcile_shards.go (Immediate only): a shard with pending tablet changes cascades
    if strategy == IMMEDIATE and not cascading and scheduled:
        out.append(_set("planetscale.com/vitessshards", shard_name, "cascade", **{CASCADE: ""}))

    # 3. reconcile_rollout.go: release one tablet at a time, the primary last
    if cascading:
        blocked = next((f"Waiting for desired tablet {a} to be created." if t.pod is None else
                        f"Waiting for tablet {a} to be Available." if not t.available else
                        f"Waiting for tablet {a} to finish release." for a, t in sorted(pods.items())
                        if t.pod is None or not t.available or RELEASED in _ann(t.pod)), None)
        if blocked is None:
            drained = [a for a in scheduled if DRAIN_FINISHED in _ann(pods[a].pod)]
            others = [a for a in scheduled if a != primary]
            nxt = (drained or others or [a for a in scheduled if a == primary] or [None])[0]
            if nxt is None:
                out.append(Action("annotate", "planetscale.com/vitessshards", shard_name, remove=(CASCADE,),
                                  why="Cascading rollout of tablets is complete."))
            else:
                t = pods[nxt]
                eligible = sum(1 for x in tablets if x.pool_type in ("replica", "externalmaster"))
                name = t.pod["metadata"]["name"]
                if eligible < 2 and t.pool_type in ("replica", "externalmaster"):
                    out.append(Action("delete", "pods", name, why=f"lone primary {nxt}: deleted, no reparent possible"))
                    touched.add(name)
                else:
                    out.append(_set("pods", name, f"released tablet {nxt}", **{RELEASED: ""}))

    # 4. reconcile_drain.go: acknowledge, finish one (never the primary), reparent a draining primary
    if not primary or any(t.pod is None or not t.available for t in tablets):
        return out
    live = {a: t for a, t in pods.items() if t.pod["metadata"]["name"] not in touched}
    drains = {a: _drain_state(_ann(t.pod)) for a, t in live.items() if DRAIN_STARTED in _ann(t.pod)}
    aborting = False
    for a, t in sorted(live.items()):
        ann = _ann(t.pod)
        if DRAIN_STARTED not in ann and (DRAIN_ACKNOWLEDGED in ann or DRAIN_FINISHED in ann):
            aborting = True   # a partly drained pod whose drain request went: forget it
            out.append(Action("annotate", "pods", t.pod["metadata"]["name"],
                              remove=(DRAIN_ACKNOWLEDGED, DRAIN_FINISHED), why="AbortingDrain"))
    if not drains or aborting:
        return out
    # drain.StateTransitions
    transitions = {a: "acknowledged" for a, s in drains.items() if s == "draining"}
    if not any(s in ("draining", "finished") for s in drains.values()):
        first = next((a for a, s in sorted(drains.items()) if s == "acknowledged"), None)
        if first is not None:
            transitions[first] = "finished"
    stamp = go_time(now)
    for a, s in sorted(transitions.items()):
        if s == "finished" and a == primary:
            continue
        key = DRAIN_ACKNOWLEDGED if s == "acknowledged" else DRAIN_FINISHED
        out.append(_set("pods", live[a].pod["metadata"]["name"], f"drain {s}", **{key: stamp}))
    if "acknowledged" in transitions.values() and drains.get(primary) != "finished":
        return out   # "We have acknowledged a drain this loop"
    if drains.get(primary) != "finished" and transitions.get(primary) != "finished":
        return out   # "We are not marking primary as finished"
    candidates = [a for a, t in sorted(live.items()) if a != primary and t.pool_type == "replica" and t.ready
                  and _drain_state(_ann(t.pod)) == "none" and DRAIN_STARTED not in _ann(t.pod)]
    if candidates:
        out.append(Action("reparent", "planetscale.com/vitessshards", shard_name, alias=candidates[0],
                          why=f"planned reparent from old primary {primary} to new primary {candidates[0]} succeeded"))
    return out


def _partitioning_key(part: dict) -> str:
    """update/partitionings.go partitioningKey: the partitioning's set of shard names."""
    shards = set()
    if "equal" in part:
        shards.update(names.equal_shards(int((part.get("equal") or {}).get("parts", 1))))
    for c in ((part.get("custom") or {}).get("shards") or []):
        kr = c.get("keyRange") or {}
        shards.add(f"{kr.get('start', '')}-{kr.get('end', '')}" if isinstance(kr, dict) else str(kr))
    return ",".join(sorted(shards))


def partitioning_set(dst: list, src: list) -> list:
    """update.PartitioningSet: ``src``'s partitionings, in its order, with the content of any
    that ``dst`` has already (same shard set; the last of equal keys) kept as in ``dst``."""
    have = {_partitioning_key(p): p for p in dst or []}
    return [have.get(_partitioning_key(p), p) for p in src or []]


def held_spec(ref: str, cur: dict, want: dict) -> tuple[dict, str]:
    """updateStrategy External, an existing VitessKeyspace or VitessShard not released:
    (the spec it gets now, the scheduled description; "" when nothing waits). In place go only
    a keyspace's turndownPolicy and its added or removed partitionings (updateVitessKeyspaceInPlace;
    a shard's updateVitessShardInPlace changes annotations and, when allowed, disk size only)."""
    cur_spec, want_spec = cur.get("spec") or {}, want.get("spec") or {}
    now = dict(cur_spec)
    if ref.endswith("/vitesskeyspaces"):
        if "turndownPolicy" in want_spec:
            now["turndownPolicy"] = want_spec["turndownPolicy"]
        now["partitionings"] = partitioning_set(cur_spec.get("partitionings") or [],
                                                want_spec.get("partitionings") or [])
    waiting = {k: v for k, v in want_spec.items() if now.get(k) != v}
    return now, (json.dumps({"spec": waiting}, sort_keys=True, separators=(",", ":")) if waiting else "")


def etcd_actions(pods: list[tuple[dict | None, bool, str]]) -> list[Action]:
    """reconcile_members.go through reconciler/object.go: ``(pod, changed, description)`` per member.
    A changed member is scheduled; nothing releases it but an outside actor; a released one (no
    drain annotation on etcd pods) is deleted, and made again by the plan."""
    out = []
    for pod, changed, pending in pods:
        if pod is None:
            continue
        name, ann = pod["metadata"]["name"], _ann(pod)
        if changed and RELEASED in ann:
            out.append(Action("delete", "pods", name, why=f"deleted Pod {name}"))
        elif changed and ann.get(SCHEDULED) != pending:
            out.append(_set("pods", name, "scheduled", **{SCHEDULED: pending}))
        elif not changed and (SCHEDULED in ann or RELEASED in ann):
            out.append(Action("annotate", "pods", name, remove=(SCHEDULED, RELEASED), why="up to date"))
    return out


@dataclass
class TabletRollout:
    """The rollout's knobs for tests (``double.rollout``; the operator installs it).

    ``never_ready(image, alias=None)``: a vttablet on ``image`` (as written in the pod, or the tag
    a registered digest was pushed as) exits at every start, so its pod never becomes Ready
    and stays in CrashLoopBackOff; ``alias`` limits it to one tablet (e.g. ``zone1-0790125915``).
    ``clear()`` removes every such fault (pods already crash-looping restart on their next try).
    ``available_s``: how long a tablet must be Ready before the rollout counts it Available
    (the real operator: 30)."""
    available_s: float = 0.0
    _never_ready: set[tuple[str, str | None]] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def never_ready(self, image: str, alias: str | None = None) -> None:
        with self._lock:
            self._never_ready.add((image, alias))

    def clear(self) -> None:
        with self._lock:
            self._never_ready.clear()

    def fails(self, image: str, alias: str) -> bool:
        with self._lock:
            return (image, None) in self._never_ready or (image, alias) in self._never_ready


def tablet_alias(pod: dict) -> str:
    lb = pod["metadata"].get("labels") or {}
    return names.alias(lb.get(names.CELL, ""), int(lb.get(names.TABLET_UID, "0") or 0))
