"""Per-container log buffers behind ``GET pods/{name}/log``: the current instance and the previous one.

Simulated processes (kubelet programs), controllers and tests append lines; the log endpoint
reads them (``previous``, ``tailLines``, ``sinceSeconds``/``sinceTime``, ``timestamps``, and a
sequence number for ``follow``). ``restart`` is called by the kubelet when a container is
started again: the current buffer becomes the previous one, as the runtime keeps exactly one
dead instance's log. Buffers are bounded so a chatty simulation cannot grow without limit.
``log_options`` turns the query into PodLogOptions and refuses what the apiserver refuses
before it looks at the pod (pkg/registry/core/pod/rest/log.go: ValidatePodLogOptions, 422).
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone

from .status import bad_request, forbidden_field, invalid, invalid_value

Entry = tuple[int, float, str]      # (sequence, unix time, line)


class PodLogs:
    def __init__(self, max_lines: int = 5000):
        self._lock = threading.Lock()
        self._current: dict[tuple[str, str, str], deque[Entry]] = {}
        self._previous: dict[tuple[str, str, str], deque[Entry]] = {}
        self._max = max_lines
        self._seq = 0

    def append(self, namespace: str, pod: str, container: str, line: str) -> None:
        now = time.time()
        with self._lock:
            buf = self._current.setdefault((namespace, pod, container), deque(maxlen=self._max))
            for part in line.rstrip("\n").split("\n"):
                self._seq += 1
                buf.append((self._seq, now, part))

    def restart(self, namespace: str, pod: str, container: str) -> None:
        """A new instance of the container starts: the current log becomes the previous one."""
        key = (namespace, pod, container)
        with self._lock:
            self._previous[key] = self._current.pop(key, deque(maxlen=self._max))

    def entries(self, namespace: str, pod: str, container: str, previous: bool = False,
                after: int = 0) -> list[Entry]:
        with self._lock:
            buf = (self._previous if previous else self._current).get((namespace, pod, container), ())
            return [e for e in buf if e[0] > after]

    def read(self, namespace: str, pod: str, container: str, tail: int | None = None, *,
             previous: bool = False, since: float | None = None, timestamps: bool = False) -> tuple[str, int]:
        """The log text, and the sequence number a follower continues after (from the same snapshot,
        so a line written meanwhile is neither lost nor sent twice)."""
        lines = self.entries(namespace, pod, container, previous)
        last = lines[-1][0] if lines else 0
        if since is not None:
            lines = [e for e in lines if e[1] >= since]
        if tail is not None:
            lines = lines[-tail:] if tail > 0 else []
        return "".join(format_entry(e, timestamps) for e in lines), last

    def drop_pod(self, namespace: str, pod: str) -> None:
        with self._lock:
            for buffers in (self._current, self._previous):
                for key in [k for k in buffers if k[0] == namespace and k[1] == pod]:
                    del buffers[key]


def format_entry(entry: Entry, timestamps: bool = False) -> str:
    """One line as the kubelet sends it; with timestamps an RFC 3339 nano prefix, as the CRI log has."""
    if not timestamps:
        return entry[2] + "\n"
    t = datetime.fromtimestamp(entry[1], timezone.utc)
    return f"{t:%Y-%m-%dT%H:%M:%S}.{t.microsecond * 1000:09d}Z {entry[2]}\n"


@dataclass(frozen=True)
class LogOptions:
    """The PodLogOptions of one ``GET pods/{name}/log``."""
    container: str | None = None
    follow: bool = False
    previous: bool = False
    timestamps: bool = False
    tail: int | None = None
    limit_bytes: int | None = None
    since: float | None = None          # unix time, from sinceSeconds or sinceTime


# metav1.Time.UnmarshalQueryParameter: time.Parse(time.RFC3339, ...)
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def _bool(query, name: str) -> bool:
    # runtime.Convert_Slice_string_To_bool: absent, "0" and "false" (any case) are false, anything else true
    v = query.get(name)
    return v is not None and v != "0" and v.lower() != "false"


def _int(query, name: str) -> int | None:
    v = query.get(name)
    if v is None:
        return None
    if not re.fullmatch(r"[+-]?\d+", v):
        raise bad_request(f'strconv.ParseInt: parsing "{v}": invalid syntax')
    return int(v)


def log_options(query, pod: str) -> LogOptions:
    """PodLogOptions from the query: 400 for a value that does not parse, 422 as
    pkg/apis/core/validation ValidatePodLogOptions words it (checked before the pod is read)."""
    tail, limit, since_s = _int(query, "tailLines"), _int(query, "limitBytes"), _int(query, "sinceSeconds")
    since_t = query.get("sinceTime")
    if since_t is not None and not _RFC3339.match(since_t):
        # SIMPLIFIED: Go's time.Parse names the element that failed; this names the layout only
        raise bad_request(f'parsing time "{since_t}" as "2006-01-02T15:04:05Z07:00": cannot parse "{since_t}"')
    causes = []
    if tail is not None and tail < 0:
        causes.append(invalid_value("tailLines", tail, "must be greater than or equal to 0"))
    if limit is not None and limit < 1:
        causes.append(invalid_value("limitBytes", limit, "must be greater than 0"))
    if since_s is not None and since_t is not None:
        causes.append(forbidden_field("", "at most one of `sinceTime` or `sinceSeconds` may be specified"))
    elif since_s is not None and since_s < 1:
        causes.append(invalid_value("sinceSeconds", since_s, "must be greater than 0"))
    if causes:
        raise invalid("PodLogOptions", "", pod, causes)
    since = None
    if since_s is not None:
        since = time.time() - since_s
    elif since_t is not None:
        since = datetime.fromisoformat(since_t.replace("Z", "+00:00")).timestamp()
    return LogOptions(query.get("container") or None, _bool(query, "follow"), _bool(query, "previous"),
                      _bool(query, "timestamps"), tail, limit, since)
