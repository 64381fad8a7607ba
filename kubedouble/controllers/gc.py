"""The garbage collector: dependents follow their owners by ownerReferences, as
pkg/controller/garbagecollector does (attemptToDeleteItem, processDeletingDependentsItem,
orphanDependents).

- Background: the owner is already gone; a dependent whose owners are all gone (looked up by
  kind, name and uid, so a re-created owner of the same name does not count) is deleted; one
  with another live owner only loses the dangling reference. A dependent created after its
  owner went (a controller's late write) is collected the same way.
- Foreground: the owner carries ``foregroundDeletion`` and a deletionTimestamp; its dependents
  are deleted (in foreground themselves when they have dependents), and the finalizer is
  removed once no dependent with ``blockOwnerDeletion`` is left.
- Orphan: the owner carries ``orphan``; the references to it are removed from its dependents,
  then the finalizer.

Deletes go through the API's delete path (``double.api.delete_object``): finalizers and pod
grace periods hold as they hold for a client. This controller must not remove objects from the
store itself.
"""

from __future__ import annotations

from ..api import FOREGROUND_FINALIZER, ORPHAN_FINALIZER
from ..status import ApiError
from . import Controller


class GarbageCollector(Controller):
    name = "garbage-collector"
    watches = ("*",)

    def handle(self, double, change) -> None:
        obj = change.obj
        meta = obj["metadata"]
        if change.type != "DELETED" and meta.get("deletionTimestamp"):
            finalizers = meta.get("finalizers") or []
            if ORPHAN_FINALIZER in finalizers:
                self._orphan(double, change.gr, obj)
            elif FOREGROUND_FINALIZER in finalizers:
                self._delete_dependents(double, change.gr, obj)
        if change.type == "DELETED":
            for gr, dep in self._dependents(double, meta["uid"]):
                self._collect(double, gr, dep)
        refs = meta.get("ownerReferences") or []
        if change.type == "ADDED" and refs:
            self._collect(double, change.gr, obj)
        # a dependent that went (or let go of its owner) may unblock an owner deleted in foreground
        old_refs = ((change.old or {}).get("metadata") or {}).get("ownerReferences") or []
        released = refs if change.type == "DELETED" else [r for r in old_refs if r not in refs]
        for ref in released:
            owner = self._owner(double, obj, ref)
            if owner is not None and FOREGROUND_FINALIZER in (owner[1]["metadata"].get("finalizers") or []):
                self._delete_dependents(double, owner[0], owner[1])

    # -- lookups ------------------------------------------------------------------------------
    @staticmethod
    def _dependents(double, uid: str) -> list[tuple[tuple[str, str], dict]]:
        return [(gr, o) for gr, o in double.store.all_objects()
                if any(r.get("uid") == uid for r in o["metadata"].get("ownerReferences") or [])]

    @staticmethod
    def _owner(double, dependent: dict, ref: dict, unknown=None):
        """(gr, owner) when the referenced owner exists with that uid, else None; ``unknown``
        when its kind is not served (the real collector then keeps the dependent)."""
        rt = double.registry.by_kind(ref.get("apiVersion", ""), ref.get("kind", ""))
        if rt is None:
            return unknown
        ns = dependent["metadata"].get("namespace", "") if rt.namespaced else ""
        owner = double.store.get(rt.gr, ns, ref.get("name", ""))
        if owner is None or owner["metadata"].get("uid") != ref.get("uid"):
            return None
        return rt.gr, owner

    def _delete(self, double, gr, obj: dict, policy: str) -> None:
        rt = double.registry.by_gr(*gr)
        if rt is None:
            return
        try:
            double.api.delete_object(rt, obj["metadata"].get("namespace", ""), obj["metadata"]["name"],
                                     {"propagationPolicy": policy,
                                      "preconditions": {"uid": obj["metadata"]["uid"]}})
        except ApiError as e:
            if e.code not in (404, 409):  # gone already, or replaced by a new object of that name
                raise

    @staticmethod
    def _drop_refs(double, gr, obj: dict, uids: set[str]) -> None:
        def drop(x):
            refs = [r for r in x["metadata"].get("ownerReferences") or [] if r.get("uid") not in uids]
            if refs:
                x["metadata"]["ownerReferences"] = refs
            else:
                x["metadata"].pop("ownerReferences", None)
        double.api.write_meta(gr, obj["metadata"].get("namespace", ""), obj["metadata"]["name"], drop)

    # -- the three propagations ---------------------------------------------------------------
    def _collect(self, double, gr, dep: dict) -> None:
        """attemptToDeleteItem: delete a dependent with no live owner; drop dangling references."""
        refs = dep["metadata"].get("ownerReferences") or []
        solid, dangling, waiting = [], [], []
        for ref in refs:
            owner = self._owner(double, dep, ref, unknown=((), {"metadata": {}}))
            if owner is None:
                dangling.append(ref)
            elif owner[1]["metadata"].get("deletionTimestamp") and \
                    FOREGROUND_FINALIZER in (owner[1]["metadata"].get("finalizers") or []):
                waiting.append(ref)
            else:
                solid.append(ref)
        if not dangling and not waiting:
            return
        if solid:
            self._drop_refs(double, gr, dep, {r.get("uid") for r in dangling + waiting})
            return
        if dep["metadata"].get("deletionTimestamp"):
            return
        finalizers = dep["metadata"].get("finalizers") or []
        if waiting and self._dependents(double, dep["metadata"]["uid"]):
            policy = "Foreground"
        elif ORPHAN_FINALIZER in finalizers:
            policy = "Orphan"
        elif FOREGROUND_FINALIZER in finalizers:
            policy = "Foreground"
        else:
            policy = "Background"
        self._delete(double, gr, dep, policy)

    def _delete_dependents(self, double, gr, owner: dict) -> None:
        """processDeletingDependentsItem: dependents first; the finalizer goes when none blocks."""
        uid = owner["metadata"]["uid"]
        deps = self._dependents(double, uid)
        for dgr, dep in deps:
            self._collect(double, dgr, dep)
        blocking = [d for _, d in self._dependents(double, uid)
                    if any(r.get("uid") == uid and r.get("blockOwnerDeletion")
                           for r in d["metadata"].get("ownerReferences") or [])]
        if not blocking:
            self._remove_finalizer(double, gr, owner, FOREGROUND_FINALIZER)

    def _orphan(self, double, gr, owner: dict) -> None:
        uid = owner["metadata"]["uid"]
        for dgr, dep in self._dependents(double, uid):
            self._drop_refs(double, dgr, dep, {uid})
        self._remove_finalizer(double, gr, owner, ORPHAN_FINALIZER)

    @staticmethod
    def _remove_finalizer(double, gr, obj: dict, finalizer: str) -> None:
        def strip(x):
            if x["metadata"]["uid"] != obj["metadata"]["uid"]:
                return False
            x["metadata"]["finalizers"] = [f for f in x["metadata"].get("finalizers") or [] if f != finalizer]
        double.api.write_meta(gr, obj["metadata"].get("namespace", ""), obj["metadata"]["name"], strip)
