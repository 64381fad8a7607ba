"""Helpers for the Vitess simulation tests: apply the real upstream manifests, wait for status.

Everything goes through the official client (dynamic client, server-side apply).
"""

from __future__ import annotations

import copy
import time

import pymysql
import pytest
import yaml
from kubernetes import client, dynamic
from kubernetes.stream import stream

from vtflow.kube import discovery_client

from kubedouble_helpers import OPERATOR_DIR, api_client_for

from kubedouble import DoubleConfig, KubeDouble

NS = "example"


def docs(name: str) -> list[dict]:
    path = OPERATOR_DIR / "examples" / name
    if not path.exists():
        pytest.skip(f"upstream file {path} is not present (set VTFLOW_UPSTREAM_DIR)")
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def apply(dyn: dynamic.DynamicClient, doc: dict, namespace: str = NS):
    rc = dyn.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
    doc = copy.deepcopy(doc)
    if rc.namespaced:
        doc["metadata"]["namespace"] = namespace
        return rc.server_side_apply(body=doc, namespace=namespace, field_manager="vtflow", force_conflicts=True)
    return rc.server_side_apply(body=doc, field_manager="vtflow", force_conflicts=True)


def apply_file(dyn: dynamic.DynamicClient, name: str, namespace: str = NS) -> list[dict]:
    applied = docs(name)
    for d in applied:
        apply(dyn, d, namespace)
    dyn.resources.invalidate_cache()
    return applied


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except client.ApiException as e:
            last = e
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def cluster_status(dyn: dynamic.DynamicClient, name: str = "example", namespace: str = NS) -> dict:
    rc = dyn.resources.get(api_version="planetscale.com/v2", kind="VitessCluster")
    return (rc.get(name=name, namespace=namespace).to_dict().get("status")) or {}


def cluster_ready(status: dict) -> bool:
    """Every readiness field of a VitessCluster's status (vtadmin only when it has one)."""
    if not status:
        return False
    ks = status.get("keyspaces") or {}
    return (((status.get("globalLockserver") or {}).get("etcd") or {}).get("available") == "True"
            and (status.get("vitessDashboard") or {}).get("available") == "True"
            and (status.get("vtadmin") or {"available": "True"}).get("available") == "True"
            and bool(status.get("cells")) and all(c.get("gatewayAvailable") == "True" for c in status["cells"].values())
            and bool(ks) and all(k["desiredTablets"] == k["readyTablets"] and k["desiredShards"] == k["readyShards"]
                                 for k in ks.values())
            and bool(status.get("gatewayServiceName")))


def start_double(tmp, **config) -> tuple[KubeDouble, client.ApiClient]:
    config.setdefault("pod_start_delay", 0.02)
    d = KubeDouble(DoubleConfig(**config))
    d.start()
    return d, api_client_for(d, tmp)


def make_namespace(api: client.ApiClient, name: str = NS) -> None:
    client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))


def deploy_101(api: client.ApiClient, example: str = "101_initial_cluster.yaml", timeout: float = 15.0) -> dynamic.DynamicClient:
    """operator.yaml then the example, into namespace "example"; waits until the cluster is ready."""
    dyn = discovery_client(api)
    make_namespace(api)
    apply_file(dyn, "operator.yaml")
    apply_file(dyn, example)
    wait_for(lambda: cluster_ready(cluster_status(dyn)), timeout=timeout, what="VitessCluster ready")
    return dyn


# -- vtctldclient and SQL, as the Vitess command tests run them ------------------------------------
VTCTLD = "planetscale.com/component=vtctld,planetscale.com/cluster=example"


def vtctldclient(api, *args, stdin: str | None = None, server=True) -> tuple[int, str, str]:
    """vtctldclient in the vtctld pod (exec through kubernetes.stream): exit status, stdout, stderr."""
    core = client.CoreV1Api(api)
    pod = core.list_namespaced_pod(NS, label_selector=VTCTLD).items[0].metadata.name
    argv = ["vtctldclient"] + (["--server", "localhost:15999"] if server else []) + list(args)
    resp = stream(core.connect_get_namespaced_pod_exec, pod, NS, container="vtctld", command=argv,
                  stderr=True, stdin=stdin is not None, stdout=True, tty=False, _preload_content=False)
    if stdin is not None:
        resp.write_stdin(stdin)
    resp.run_forever(timeout=10)
    return resp.returncode, resp.read_stdout(), resp.read_stderr()


def ok(api, *args) -> str:
    """vtctldclient that must succeed: its stdout."""
    code, out, err = vtctldclient(api, *args)
    assert code == 0, err
    return out


def fails(api, *args) -> str:
    """vtctldclient that must fail as the real one does: exit 1 and one glog line on stderr."""
    code, out, err = vtctldclient(api, *args)
    assert code == 1, out
    assert err.count("\n") == 1 and err.startswith("E") and "main.go:" in err, err
    return err


def mariadb(kd_mariadb, database=None):
    """A connection to the MariaDB behind the tablets (root, autocommit)."""
    return pymysql.connect(host=kd_mariadb.host, port=kd_mariadb.port, user=kd_mariadb.user,
                           password=kd_mariadb.password, database=database, autocommit=True)


def table_names(kd_mariadb, db: str) -> list[str]:
    with mariadb(kd_mariadb) as c, c.cursor() as cur:
        cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s ORDER BY 1", (db,))
        return [r[0] for r in cur.fetchall()]


def vtgate(d, kd_mariadb, gateway: str, target: str):
    """A connection through the double's vtgate proxy of Service ``gateway``, on ``USE <target>``."""
    host, port = d.vtgate.address(NS, gateway)
    conn = pymysql.connect(host=host, port=port, user=kd_mariadb.user, password=kd_mariadb.password,
                           autocommit=True, connect_timeout=5)
    conn.cursor().execute(f"USE `{target}`")
    return conn

