"""vtadmin over HTTP (its web UI and its API): the one module that talks to vtadmin.

Plain HTTP GETs with the standard library, read-only. It maps connection failures to
vtflow errors naming the URL; what the answers mean is for the tasks to judge.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from vtflow.errors import UnreachableError


def get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    """Status and body of ``GET url``; an HTTP error status is returned, not raised."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read(1 << 20).decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read(1 << 16).decode(errors="replace")
    except (OSError, urllib.error.URLError) as e:
        reason = getattr(e, "reason", e)
        raise UnreachableError(f"vtadmin {url}", f"does not answer ({reason}).",
                               "check the vtadmin pod and its NodePort Service, and the target's node_address.") from e


def api(base_url: str, path: str, timeout: float = 5.0) -> tuple[int, dict | None]:
    """A vtadmin API call: its status and decoded JSON envelope (None when the body is not JSON)."""
    status, body = get(base_url.rstrip("/") + path, timeout)
    try:
        return status, json.loads(body)
    except ValueError:
        return status, None
