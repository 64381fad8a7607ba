"""Pluggable exec handlers: what ``kubectl exec`` / ``kubernetes.stream.stream`` runs in a pod.

A handler is registered with a match (namespace, label selector, container; each optional)
and is called as ``handler(argv, stdin, pod) -> (exit_code, stdout, stderr)``. The most
recently registered matching handler wins, so tests can override a general one. Without a
match the double answers like containerd when the program is not in the image: the exec never
starts (``ExecStartError``, which a handler raises too through ``not_in_image``), so there is
no exit code; the kubelet's streaming server sends an InternalError status instead
(kubelet pkg/cri/streaming/remotecommand/exec.go ServeExec; containerd internal/cri/server
streaming.go and container_execsync.go execInternal). No websocket code here (see asgi.py).
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass
from typing import Callable, Optional

from .selectors import parse_label_selector

ExecResult = tuple[int, bytes, bytes]
ExecHandler = Callable[[list[str], Optional[bytes], dict], ExecResult]


class ExecStartError(Exception):
    """The runtime could not start the process; ``str(e)`` is containerd's error."""


def not_in_image(program: str) -> ExecStartError:
    """containerd's error for a program the image lacks (runc's message, a fresh exec id)."""
    return ExecStartError(f'failed to exec in container: failed to start exec "{secrets.token_hex(32)}": OCI runtime '
                          f'exec failed: exec failed: unable to start container process: exec: "{program}": '
                          f'executable file not found in $PATH: unknown')


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
        """The newest matching handler's result; ExecStartError when none matches."""
        with self._lock:
            handlers = list(reversed(self._handlers))
        for match, handler in handlers:
            if match.matches(pod, container):
                try:
                    code, out, err = handler(argv, stdin, pod)
                except ExecStartError:
                    raise
                except Exception as e:  # a broken simulation must show up, not hang the client
                    return 1, b"", f"kubedouble exec handler failed: {type(e).__name__}: {e}\n".encode()
                return int(code), _bytes(out), _bytes(err)
        raise not_in_image(argv[0] if argv else "")


def _bytes(v) -> bytes:
    if v is None:
        return b""
    return v if isinstance(v, bytes) else str(v).encode()
