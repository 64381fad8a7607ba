"""Pluggable exec handlers: what ``kubectl exec`` / ``kubernetes.stream.stream`` runs in a pod.

A handler is registered with a match (namespace, label selector, container; each optional)
and is called as ``handler(argv, stdin, pod) -> (exit_code, stdout, stderr)``. The most
recently registered matching handler wins, so tests can override a general one. Without a
match the double answers like a container runtime that lacks the program: exit 126 and an
OCI "executable file not found" message on stderr. No websocket code here (see server.py).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable, Optional

from .selectors import parse_label_selector

ExecResult = tuple[int, bytes, bytes]
ExecHandler = Callable[[list[str], Optional[bytes], dict], ExecResult]


@dataclass(frozen=True)
class ExecMatch:
    namespace: str | None = None
    label_selector: str | None = None
    container: str | None = None

    def matches(self, pod: dict, container: str) -> bool:
        meta = pod.get("metadata") or {}
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        if self.container is not None and container != self.container:
            return False
        if self.label_selector and not parse_label_selector(self.label_selector)(meta.get("labels") or {}):
            return False
        return True


class ExecRegistry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._handlers: list[tuple[ExecMatch, ExecHandler]] = []

    def register(self, match: ExecMatch, handler: ExecHandler) -> Callable[[], None]:
        """Add a handler; returns a function that removes it again."""
        entry = (match, handler)
        with self._lock:
            self._handlers.append(entry)

        def remove() -> None:
            with self._lock:
                if entry in self._handlers:
                    self._handlers.remove(entry)
        return remove

    def run(self, pod: dict, container: str, argv: list[str], stdin: bytes | None) -> ExecResult:
        with self._lock:
            handlers = list(reversed(self._handlers))
        for match, handler in handlers:
            if match.matches(pod, container):
                try:
                    code, out, err = handler(argv, stdin, pod)
                except Exception as e:  # a broken simulation must show up, not hang the client
                    return 1, b"", f"kubedouble exec handler failed: {type(e).__name__}: {e}\n".encode()
                return int(code), _bytes(out), _bytes(err)
        prog = argv[0] if argv else ""
        return 126, b"", (f'OCI runtime exec failed: exec failed: unable to start container process: '
                          f'exec: "{prog}": executable file not found in $PATH: unknown\n').encode()


def _bytes(v) -> bytes:
    if v is None:
        return b""
    return v if isinstance(v, bytes) else str(v).encode()
