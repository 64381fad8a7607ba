"""Per-pod, per-container log buffers behind ``GET pods/{name}/log``.

Controllers and exec handlers append lines; the log endpoint reads them (``tailLines``,
``container``). Buffers are bounded so a chatty simulation cannot grow without limit.
"""

from __future__ import annotations

import threading
from collections import deque


class PodLogs:
    def __init__(self, max_lines: int = 5000):
        self._lock = threading.Lock()
        self._buffers: dict[tuple[str, str, str], deque[str]] = {}
        self._max = max_lines

    def append(self, namespace: str, pod: str, container: str, line: str) -> None:
        with self._lock:
            buf = self._buffers.setdefault((namespace, pod, container), deque(maxlen=self._max))
            for part in line.rstrip("\n").split("\n"):
                buf.append(part)

    def read(self, namespace: str, pod: str, container: str, tail: int | None = None) -> str:
        with self._lock:
            lines = list(self._buffers.get((namespace, pod, container), ()))
        if tail is not None:
            lines = lines[-tail:] if tail > 0 else []
        return "".join(line + "\n" for line in lines)

    def drop_pod(self, namespace: str, pod: str) -> None:
        with self._lock:
            for key in [k for k in self._buffers if k[0] == namespace and k[1] == pod]:
                del self._buffers[key]
