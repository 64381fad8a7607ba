"""Garbage collection by ownerReferences: when an owner goes, its dependents go too.

Runs for every resource (the real collector's Background propagation). Orphan propagation is
handled by the delete endpoint before the owner is removed, so nothing is left to collect.
"""

from __future__ import annotations

from . import Controller


class GarbageCollector(Controller):
    name = "garbage-collector"
    watches = ("*",)

    def handle(self, double, change) -> None:
        if change.type != "DELETED":
            return
        uid = change.obj["metadata"].get("uid")
        for gr, obj in double.store.all_objects():
            refs = obj["metadata"].get("ownerReferences") or []
            if any(r.get("uid") == uid for r in refs):
                others = [r for r in refs if r.get("uid") != uid]
                # a dependent with another live owner stays, as the real collector keeps it
                if others and any(self._alive(double, obj, r) for r in others):
                    continue
                try:
                    double.store.delete(gr, obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
                except Exception:  # noqa: BLE001 - already gone is fine
                    pass

    @staticmethod
    def _alive(double, obj: dict, ref: dict) -> bool:
        for gr, o in double.store.all_objects():
            if o["metadata"].get("uid") == ref.get("uid"):
                return True
        return False
