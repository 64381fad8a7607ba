"""Pluggable controllers: the control loops that make the double's objects come alive.

A controller names the resources it ``watches`` (``"pods"``, ``"apps/deployments"``,
``"planetscale.com/vitessclusters"``, or ``"*"`` for all) and gets every committed change of
those through ``handle`` (by default: ``reconcile(double, obj)`` for ADDED/MODIFIED and
``deleted(double, obj)`` for DELETED). ``resync(double)`` runs every ``resync_s`` seconds and
``double.controllers.after(delay, fn)`` schedules timers. All controllers run in ONE thread,
one change at a time, so they need no locks among themselves; they write through the
double's internal API (``double.create/mutate/delete``), never over HTTP, and must not block.

Register extra controllers with ``KubeDouble(controllers=[...])`` or
``double.add_controller(c)``; they start with the double. Exceptions are logged and the loop
goes on, as a crashing reconcile in a real controller is retried, not fatal.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import threading
import time
from typing import TYPE_CHECKING, Callable

from ..store import Change

if TYPE_CHECKING:  # pragma: no cover
    from ..server import KubeDouble

log = logging.getLogger("kubedouble.controllers")


class Controller:
    name = "controller"
    watches: tuple[str, ...] = ()
    resync_s: float | None = None

    def start(self, double: "KubeDouble") -> None:
        """Called once in the controller thread before any change is delivered."""

    def handle(self, double: "KubeDouble", change: Change) -> None:
        if change.type == "DELETED":
            self.deleted(double, change.obj)
        else:
            self.reconcile(double, change.obj)

    def reconcile(self, double: "KubeDouble", obj: dict) -> None:
        """Bring the world in line with ``obj`` (its current stored state)."""

    def deleted(self, double: "KubeDouble", obj: dict) -> None:
        """``obj`` is gone (its last state)."""

    def resync(self, double: "KubeDouble") -> None:
        """Periodic full pass, every ``resync_s`` seconds."""


class ControllerManager:
    """Feeds store changes and timers to the controllers, in one thread."""

    def __init__(self, double: "KubeDouble"):
        self.double = double
        self.controllers: list[Controller] = []
        self._queue: queue.Queue = queue.Queue()
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._token: int | None = None

    def add(self, controller: Controller) -> None:
        self.controllers.append(controller)
        if self._thread is not None:
            self.call_soon(lambda: self._start_one(controller))

    def _watching(self, change: Change) -> list[Controller]:
        out = []
        for c in self.controllers:
            for ref in c.watches:
                if ref == "*":
                    out.append(c)
                    break
                group, _, plural = ref.rpartition("/")
                if (group, plural) == change.gr:
                    out.append(c)
                    break
        return out

    def start(self) -> None:
        self._token, _ = self.double.store.subscribe(lambda c: self._queue.put(("change", c)))
        self._thread = threading.Thread(target=self._run, name="kubedouble-controllers", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._token is not None:
            self.double.store.unsubscribe(self._token)
        self._queue.put(("stop", None))
        if self._thread:
            self._thread.join(timeout=5)

    def after(self, delay: float, fn: Callable[[], None]) -> None:
        """Run ``fn`` in the controller thread after ``delay`` seconds."""
        self._queue.put(("timer", (time.monotonic() + delay, fn)))

    def call_soon(self, fn: Callable[[], None]) -> None:
        self._queue.put(("call", fn))

    def _start_one(self, c: Controller) -> None:
        self._safe(c.start, self.double)
        if c.resync_s:
            self._schedule_resync(c)

    def _schedule_resync(self, c: Controller) -> None:
        def tick():
            self._safe(c.resync, self.double)
            heapq.heappush(self._timers, (time.monotonic() + c.resync_s, next(self._seq), tick))
        heapq.heappush(self._timers, (time.monotonic() + c.resync_s, next(self._seq), tick))

    def _safe(self, fn, *args) -> None:
        try:
            fn(*args)
        except Exception:  # noqa: BLE001 - a failing reconcile is logged and retried later
            log.exception("controller step %r failed", getattr(fn, "__qualname__", fn))

    def _run(self) -> None:
        for c in list(self.controllers):
            self._start_one(c)
        while not self._stop.is_set():
            timeout = None
            if self._timers:
                timeout = max(0.0, self._timers[0][0] - time.monotonic())
            try:
                kind, item = self._queue.get(timeout=timeout if timeout is not None else 0.5)
            except queue.Empty:
                kind, item = None, None
            if kind == "stop":
                return
            if kind == "change":
                for c in self._watching(item):
                    self._safe(c.handle, self.double, item)
            elif kind == "call":
                self._safe(item)
            elif kind == "timer":
                heapq.heappush(self._timers, (item[0], next(self._seq), item[1]))
            now = time.monotonic()
            while self._timers and self._timers[0][0] <= now:
                _, _, fn = heapq.heappop(self._timers)
                self._safe(fn)
