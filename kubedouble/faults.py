"""Fault injection for the double, changeable while it runs.

``error_rate`` of the non-watch requests are answered with one of ``error_codes`` (500
InternalError, 429 TooManyRequests with ``Retry-After: 1``, 503 ServiceUnavailable), picked by
a RNG seeded with ``seed`` so a failing test replays the same way; ``latency_ms`` delays every
request; ``watch_drop_after_s`` breaks watch streams early, without their clean end;
discovery (/api, /apis, /version) is spared unless ``include_discovery``.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field

from .status import ApiError


@dataclass
class Faults:
    error_rate: float = 0.0
    error_codes: tuple[int, ...] = (500, 429)
    latency_ms: float = 0.0
    watch_drop_after_s: float | None = None
    include_discovery: bool = False
    seed: int = 0
    _rng: random.Random = field(default=None, repr=False, compare=False)  # type: ignore[assignment]
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def reseed(self, seed: int) -> None:
        with self._lock:
            self.seed = seed
            self._rng = random.Random(seed)

    def maybe_fail(self, discovery: bool) -> None:
        """Raise the injected error for this request, if the dice say so."""
        if self.error_rate <= 0 or (discovery and not self.include_discovery):
            return
        with self._lock:
            hit = self._rng.random() < self.error_rate
            code = self._rng.choice(self.error_codes) if hit else 0
        if not hit:
            return
        if code == 429:
            raise ApiError(429, "TooManyRequests", "Too many requests, please try again later.",
                           {"retryAfterSeconds": 1}, headers={"Retry-After": "1"})
        if code == 503:
            raise ApiError(503, "ServiceUnavailable", "the server is currently unable to handle the request",
                           {"retryAfterSeconds": 1}, headers={"Retry-After": "1"})
        raise ApiError(500, "InternalError", "Internal error occurred: injected fault (kubedouble)",
                       {"causes": [{"message": "injected fault (kubedouble)"}]})
