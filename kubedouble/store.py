"""The double's in-memory object store: the etcd of the fake API server.

Objects are keyed by (group, resource, namespace, name); cluster-scoped objects use namespace
"". Every write takes the next value of one global resourceVersion counter (so versions are
dense: write N has resourceVersion N), which makes the bounded change history a simple window:
a watch can resume from any version still in it and gets 410 Gone otherwise.

Stored objects are never mutated in place: a write stores a new dict and readers may hold the
old one safely. That is what lets a GET serialise the stored dict without copying it. Callers
must not mutate what ``get``/``list`` return; ``mutate`` hands out a deep copy.

This module fills server-owned metadata (uid, resourceVersion, creationTimestamp, generation,
names from generateName) and nothing else: no validation, no API semantics (those live in
``api.py``), no HTTP.
"""

from __future__ import annotations

import copy
import random
import threading
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Iterable

from .status import already_exists, gone, not_found

GR = tuple[str, str]  # (group, plural)

_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def random_suffix(n: int = 5, rng: random.Random | None = None) -> str:
    r = rng or random
    return "".join(r.choice(_NAME_ALPHABET) for _ in range(n))


@dataclass(frozen=True)
class Change:
    """One committed write, as watches and controllers see it."""
    type: str           # ADDED | MODIFIED | DELETED
    group: str
    resource: str
    obj: dict           # the object after the write (for DELETED: its last state, new rv)
    old: dict | None    # the object before the write (None for ADDED)
    rv: int

    @property
    def gr(self) -> GR:
        return (self.group, self.resource)


def _spec_part(obj: dict) -> dict:
    """What counts for metadata.generation: everything except metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


class Store:
    def __init__(self, history: int = 10000):
        self.lock = threading.RLock()
        self._objects: dict[GR, dict[tuple[str, str], dict]] = {}
        self._rv = 0
        self._history: deque[Change] = deque(maxlen=max(1, history))
        # the same window split by resource, as a real server keeps one watch cache per
        # resource: a resumed watch reads only its own resource's changes
        self._history_by_gr: dict[GR, deque[Change]] = {}
        # token -> (resource or None for every resource, callback)
        self._subscribers: dict[int, tuple[GR | None, Callable[[Change], None]]] = {}
        self._next_token = 0

    # -- reads ------------------------------------------------------------------------------
    @property
    def resource_version(self) -> int:
        return self._rv

    def get(self, gr: GR, namespace: str, name: str) -> dict | None:
        bucket = self._objects.get(gr)
        return bucket.get((namespace or "", name)) if bucket else None

    def list(self, gr: GR, namespace: str | None = None,
             predicate: Callable[[dict], bool] | None = None) -> tuple[list[dict], int]:
        """Objects of one resource (in one namespace, or all when namespace is None), and the rv."""
        with self.lock:
            bucket = self._objects.get(gr) or {}
            items = [o for (ns, _), o in bucket.items()
                     if (namespace is None or ns == namespace) and (predicate is None or predicate(o))]
            return sorted(items, key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"])), self._rv

    def all_objects(self) -> Iterable[tuple[GR, dict]]:
        with self.lock:
            return [(gr, o) for gr, bucket in self._objects.items() for o in bucket.values()]

    def in_namespace(self, namespace: str) -> list[tuple[GR, dict]]:
        with self.lock:
            return [(gr, o) for gr, bucket in self._objects.items()
                    for (ns, _), o in bucket.items() if ns == namespace]

    # -- writes -----------------------------------------------------------------------------
    def create(self, gr: GR, obj: dict, *, namespace: str = "", dry_run: bool = False) -> dict:
        """Store a new object (the store takes ownership of ``obj``). 409 when the name is taken."""
        with self.lock:
            meta = obj.setdefault("metadata", {})
            if not meta.get("name") and meta.get("generateName"):
                for _ in range(20):
                    candidate = meta["generateName"] + random_suffix()
                    if self.get(gr, namespace, candidate) is None:
                        meta["name"] = candidate
                        break
            name = meta["name"]
            if self.get(gr, namespace, name) is not None:
                raise already_exists(gr[1], gr[0], name)
            if namespace:
                meta["namespace"] = namespace
            else:
                meta.pop("namespace", None)
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now_rfc3339()
            meta["generation"] = 1
            for k in ("resourceVersion", "deletionTimestamp", "selfLink"):
                meta.pop(k, None)
            if dry_run:
                meta["resourceVersion"] = str(self._rv)
                return obj
            self._rv += 1
            meta["resourceVersion"] = str(self._rv)
            self._objects.setdefault(gr, {})[(namespace, name)] = obj
            self._emit(Change("ADDED", gr[0], gr[1], obj, None, self._rv))
            return obj

    def replace(self, gr: GR, obj: dict, *, dry_run: bool = False) -> dict:
        """Replace an existing object with ``obj`` (owned by the store afterwards).

        Keeps server-owned metadata, bumps generation when the spec part changed and skips the
        write entirely (no new resourceVersion, no event) when nothing changed, as the real
        server does for no-op updates.
        """
        with self.lock:
            meta = obj["metadata"]
            namespace, name = meta.get("namespace", ""), meta["name"]
            old = self.get(gr, namespace, name)
            if old is None:
                raise not_found(gr[1], gr[0], name)
            om = old["metadata"]
            for k in ("uid", "creationTimestamp", "name"):
                meta[k] = om[k]
            if namespace:
                meta["namespace"] = namespace
            meta["generation"] = om.get("generation", 1)
            if _spec_part(obj) != _spec_part(old):
                meta["generation"] += 1
            meta["resourceVersion"] = om["resourceVersion"]
            # a no-op apply only refreshes its managedFields time: the real server skips that write
            if obj == old or _without_field_times(obj) == _without_field_times(old):
                return old
            if dry_run:
                return obj
            self._rv += 1
            meta["resourceVersion"] = str(self._rv)
            self._objects[gr][(namespace, name)] = obj
            self._emit(Change("MODIFIED", gr[0], gr[1], obj, old, self._rv))
            return obj

    def delete(self, gr: GR, namespace: str, name: str, *, dry_run: bool = False) -> dict:
        with self.lock:
            old = self.get(gr, namespace, name)
            if old is None:
                raise not_found(gr[1], gr[0], name)
            if dry_run:
                return old
            del self._objects[gr][(namespace or "", name)]
            self._rv += 1
            last = dict(old)
            last["metadata"] = dict(old["metadata"], resourceVersion=str(self._rv))
            self._emit(Change("DELETED", gr[0], gr[1], last, old, self._rv))
            return last

    def mutate(self, gr: GR, namespace: str, name: str, fn: Callable[[dict], object]) -> dict | None:
        """Read-modify-write for controllers: ``fn`` edits a deep copy; no write if unchanged.

        Returns the stored object afterwards, or None when it does not exist. ``fn`` may return
        False to skip the write.
        """
        with self.lock:
            cur = self.get(gr, namespace, name)
            if cur is None:
                return None
            work = copy.deepcopy(cur)
            if fn(work) is False:
                return cur
            return self.replace(gr, work)

    # -- notifications ----------------------------------------------------------------------
    def subscribe(self, callback: Callable[[Change], None], since: int | None = None,
                  gr: GR | None = None) -> tuple[int, list[Change]]:
        """Register ``callback`` for every later write (of resource ``gr`` only, when given);
        atomically return the backlog after ``since`` (of that resource only).

        Raises 410 Gone when ``since`` is older than the retained history. The callback runs
        with the store lock held: it must only hand the change over (queue it), never block.
        """
        with self.lock:
            backlog = self.changes_since(since, gr) if since is not None else []
            self._next_token += 1
            self._subscribers[self._next_token] = (gr, callback)
            return self._next_token, backlog

    def unsubscribe(self, token: int) -> None:
        with self.lock:
            self._subscribers.pop(token, None)

    def changes_since(self, rv: int, gr: GR | None = None) -> list[Change]:
        """The retained changes after ``rv`` (of resource ``gr`` only, when given), oldest first."""
        with self.lock:
            if rv >= self._rv:
                return []
            oldest = self._history[0].rv if self._history else self._rv + 1
            if rv + 1 < oldest:
                raise gone(f"too old resource version: {rv} ({oldest - 1})")
            window = self._history if gr is None else self._history_by_gr.get(gr, ())
            # read from the newest end: the cost is the backlog, not the whole history
            newer: list[Change] = []
            for c in reversed(window):
                if c.rv <= rv:
                    break
                newer.append(c)
            newer.reverse()
            return newer

    def _emit(self, change: Change) -> None:
        if len(self._history) == self._history.maxlen:
            evicted = self._history[0]
            self._history_by_gr[evicted.gr].popleft()
        self._history.append(change)
        self._history_by_gr.setdefault(change.gr, deque()).append(change)
        for gr, cb in list(self._subscribers.values()):
            if gr is None or gr == change.gr:
                cb(change)


def _without_field_times(obj: dict) -> dict:
    meta = dict(obj.get("metadata") or {})
    meta["managedFields"] = [{k: v for k, v in e.items() if k != "time"} for e in meta.get("managedFields") or []]
    return {**obj, "metadata": meta}
