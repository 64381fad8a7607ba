"""core/v1 Events as controllers record them (``record_event``), with the real aggregation.

An event about the same object with the same type, reason, message and source is not
repeated: its ``count`` goes up and ``lastTimestamp`` moves, as the client-go event
recorder does. Writes go straight to the store (no validation: controllers are trusted).
"""

from __future__ import annotations

import copy
import threading
import time

from .store import Store, now_rfc3339

_EVENTS = ("", "events")


class EventRecorder:
    def __init__(self, store: Store):
        self.store = store
        self._lock = threading.Lock()
        # (involved uid, type, reason, message, component) -> event name
        self._seen: dict[tuple, tuple[str, str]] = {}

    def record(self, obj: dict, type_: str, reason: str, message: str, component: str = "kubedouble") -> dict:
        meta = obj.get("metadata") or {}
        ns = meta.get("namespace") or "default"
        key = (meta.get("uid"), type_, reason, message, component)
        with self._lock:
            seen = self._seen.get(key)
            if seen:
                def bump(ev):
                    ev["count"] = ev.get("count", 1) + 1
                    ev["lastTimestamp"] = now_rfc3339()
                updated = self.store.mutate(_EVENTS, seen[0], seen[1], bump)
                if updated is not None:
                    return updated
            name = f"{meta.get('name', 'unknown')}.{time.time_ns():x}"
            now = now_rfc3339()
            event = {
                "apiVersion": "v1", "kind": "Event",
                "metadata": {"name": name, "namespace": ns},
                "involvedObject": {"apiVersion": obj.get("apiVersion", ""), "kind": obj.get("kind", ""),
                                   "name": meta.get("name", ""), "namespace": meta.get("namespace", ""),
                                   "uid": meta.get("uid", ""), "resourceVersion": meta.get("resourceVersion", "")},
                "type": type_, "reason": reason, "message": message,
                "source": {"component": component},
                "count": 1, "firstTimestamp": now, "lastTimestamp": now,
                "reportingComponent": component, "reportingInstance": "",
            }
            if not event["involvedObject"]["namespace"]:
                del event["involvedObject"]["namespace"]
            stored = self.store.create(_EVENTS, copy.deepcopy(event), namespace=ns)
            self._seen[key] = (ns, name)
            return stored
