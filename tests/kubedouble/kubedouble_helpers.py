"""Helpers shared by the kubedouble tests (not fixtures): clients, polling, raw calls."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

from kubernetes import client, config

from kubedouble import KubeDouble

REPO = Path(__file__).resolve().parents[2]
UPSTREAM = Path(os.environ.get("VTFLOW_UPSTREAM_DIR", REPO.parent / "shared" / "upstream"))
OPERATOR_DIR = UPSTREAM / "vitess-operator-v2.17.0"


def api_client_for(double: KubeDouble, tmp: Path, user: str = "admin") -> client.ApiClient:
    path = double.kubeconfig(tmp / f"kubeconfig-{user}-{uuid.uuid4().hex[:6]}", user=user)
    return config.new_client_from_config(str(path))


def wait_for(predicate, timeout: float = 5.0, interval: float = 0.02, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")



def raw(api: client.ApiClient, method: str, path: str, body=None, query=None, content_type="application/json"):
    """A request through the official client's own transport (auth, serialisation, errors)."""
    params = api.param_serialize(method=method, resource_path=path, query_params=query or [],
                                 header_params={"Content-Type": content_type, "Accept": "application/json"},
                                 body=body, auth_settings=["BearerToken"])
    response = api.call_api(*params)
    response.read()
    return api.response_deserialize(response_data=response, response_types_map={"200": "object", "201": "object"}).data
