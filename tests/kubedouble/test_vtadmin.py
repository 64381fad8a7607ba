"""The vtadmin stand-in: its API and web UI over real HTTP (urllib), behind vtadmin Services."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

import pytest
from kubernetes import client

from helpers import free_node_ports
from vitess_helpers import NS, deploy_101, start_double, wait_for

OPERATOR_SVC = "example-zone1-vtadmin-c03d7eae"      # the operator's ClusterIP Service (web, api)
NODEPORT_SVC = "example-vtadmin-nodeport"            # as tasks/cluster.py names it


def node_port_service(name: str, web: int, api: int) -> dict:
    """The NodePort Service the deploy flow creates for vtadmin (tasks/cluster.py ``_node_port``)."""
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": NS, "labels": {"app.kubernetes.io/managed-by": "vtflow"}},
            "spec": {"type": "NodePort",
                     "selector": {"planetscale.com/cluster": "example", "planetscale.com/component": "vtadmin"},
                     "ports": [{"name": "web", "port": 15000, "targetPort": 15000, "nodePort": web, "protocol": "TCP"},
                               {"name": "api", "port": 15001, "targetPort": 15001, "nodePort": api,
                                "protocol": "TCP"}]}}


@pytest.fixture(scope="module")
def vtadmin_101(tmp_path_factory):
    """The upstream 101 example with vtadmin, plus the flow's NodePort Service in front of it."""
    d, api = start_double(tmp_path_factory.mktemp("vtadmin"), nodes=3, node_cpu="8", node_memory="16Gi",
                          operators=True)
    try:
        deploy_101(api, "101_initial_cluster_vtorc_vtadmin.yaml")
        web, api_port = free_node_ports()
        client.CoreV1Api(api).create_namespaced_service(NS, node_port_service(NODEPORT_SVC, web, api_port))
        wait_for(lambda: d.vtadmin.address(NS, NODEPORT_SVC, "api") and d.vtadmin.address(NS, NODEPORT_SVC, "web"),
                 what="vtadmin listening")
        yield d, api, {"web": web, "api": api_port}
    finally:
        d.stop()


def get(host: str, port: int, path: str, timeout: float = 5):
    """(status, headers, body) of a GET, 4xx/5xx included."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def api_get(d, path: str, service: str = NODEPORT_SVC):
    return get(*d.vtadmin.address(NS, service, "api"), path)


def test_listens_on_the_node_ports(vtadmin_101):
    d, _, ports = vtadmin_101
    assert d.vtadmin.address(NS, NODEPORT_SVC, "web") == ("127.0.0.1", ports["web"])
    assert d.vtadmin.address(NS, NODEPORT_SVC, "api") == ("127.0.0.1", ports["api"])
    status, _, body = get("127.0.0.1", ports["api"], "/health")
    assert (status, body) == (200, b"ok\n")


def test_health(vtadmin_101):
    d, _, _ = vtadmin_101
    status, headers, body = api_get(d, "/health")
    assert status == 200 and body.decode().strip() == "ok"
    assert headers["Content-Type"].startswith("text/plain")


def test_clusters_lists_the_vitess_cluster(vtadmin_101):
    d, _, _ = vtadmin_101
    status, _, body = api_get(d, "/api/clusters")
    assert status == 200
    assert json.loads(body) == {"result": {"clusters": [{"id": "example", "name": "example"}]}, "ok": True}


def test_tablets_match_the_clusters_tablets(vtadmin_101):
    d, api, _ = vtadmin_101
    pods = client.CoreV1Api(api).list_namespaced_pod(NS, label_selector="planetscale.com/component=vttablet").items
    status, _, body = api_get(d, "/api/tablets")
    doc = json.loads(body)
    assert status == 200 and doc["ok"] is True
    tablets = doc["result"]["tablets"]
    assert len(tablets) == len(pods) == 3
    assert {t["tablet"]["hostname"] for t in tablets} == {p.status.pod_ip for p in pods}
    for t in tablets:
        assert t["cluster"] == {"id": "example", "name": "example"}
        assert t["tablet"]["keyspace"] == "commerce" and t["tablet"]["shard"] == "-"
        assert t["tablet"]["alias"]["cell"] == "zone1" and isinstance(t["tablet"]["alias"]["uid"], int)
        assert t["state"] == 1                                   # SERVING
    # topodata.TabletType as a number: PRIMARY 1, REPLICA 2
    assert sorted(t["tablet"]["type"] for t in tablets) == [1, 2, 2]
    primary = next(t for t in tablets if t["tablet"]["type"] == 1)
    assert primary["tablet"]["primary_term_start_time"]["seconds"] > 0
    # the same tablets as the vtctld / vtgate stand-ins see them
    assert {f"{t['tablet']['alias']['cell']}-{t['tablet']['alias']['uid']:010d}" for t in tablets} == \
        {t.alias for t in d.vitess.tablets(d, NS, "example")}


def test_tablets_filtered_by_cluster(vtadmin_101):
    d, _, _ = vtadmin_101
    assert len(json.loads(api_get(d, "/api/tablets?cluster_id=example")[2])["result"]["tablets"]) == 3
    # an unknown cluster: no tablets, and Go leaves the empty list out
    assert json.loads(api_get(d, "/api/tablets?cluster=nope")[2]) == {"result": {}, "ok": True}


def test_one_tablet_and_the_error_envelope(vtadmin_101):
    d, _, _ = vtadmin_101
    alias = d.vitess.tablets(d, NS, "example")[0].alias
    status, _, body = api_get(d, f"/api/tablet/{alias}")
    assert status == 200 and json.loads(body)["result"]["tablet"]["hostname"]
    status, _, body = api_get(d, "/api/tablet/zone1-0000000999")
    doc = json.loads(body)
    assert status == 500 and doc["ok"] is False and "result" not in doc
    assert doc["error"]["code"] == "unknown" and "no such tablet" in doc["error"]["message"]


def test_unknown_paths_are_muxs_plain_404(vtadmin_101):
    d, _, _ = vtadmin_101
    for path in ("/api/nope", "/nope"):
        status, headers, body = api_get(d, path)
        assert (status, body) == (404, b"404 page not found\n")
        assert headers["Content-Type"].startswith("text/plain")


def test_web_serves_the_app(vtadmin_101):
    d, _, ports = vtadmin_101
    for path in ("/", "/tablets"):                       # a single-page app: every path is index.html
        status, headers, body = get("127.0.0.1", ports["web"], path)
        assert status == 200 and headers["Content-Type"].startswith("text/html")
        assert "<title>VTAdmin</title>" in body.decode()
    status, _, body = get("127.0.0.1", ports["web"], "/config/config.js")
    assert status == 200
    text = body.decode()
    assert text.startswith("window.env = {")
    assert "'REACT_APP_VTADMIN_API_ADDRESS': \"http://localhost:14001\"" in text   # the example's apiAddresses
    assert "'REACT_APP_READONLY_MODE': false" in text


def test_the_operators_cluster_ip_service_has_local_addresses(vtadmin_101):
    d, _, ports = vtadmin_101
    web, api = d.vtadmin.address(NS, OPERATOR_SVC, "web"), d.vtadmin.address(NS, OPERATOR_SVC, "api")
    assert web and api and web[1] not in ports.values() and api[1] not in ports.values()
    status, _, body = get(*api, "/health")
    assert (status, body) == (200, b"ok\n")
    assert b"VTAdmin" in get(*web, "/")[2]


def test_refuses_connections_while_vtadmin_is_not_ready(vtadmin_101):
    d, api, ports = vtadmin_101
    core = client.CoreV1Api(api)
    pod = core.list_namespaced_pod(NS, label_selector="planetscale.com/component=vtadmin").items[0].metadata.name

    def ready_endpoints():
        ep = core.read_namespaced_endpoints(NODEPORT_SVC, NS)
        return any(s.addresses for s in ep.subsets or [])

    d.kubelet.set_ready(d, NS, pod, "vtadmin-api", False)
    try:
        wait_for(lambda: not ready_endpoints(), what="no ready vtadmin endpoints")
        for port in ports.values():
            with pytest.raises((urllib.error.URLError, ConnectionError)):
                get("127.0.0.1", port, "/health")
    finally:
        d.kubelet.set_ready(d, NS, pod, "vtadmin-api", True)
    wait_for(ready_endpoints, what="vtadmin back")
    assert get("127.0.0.1", ports["api"], "/health")[0] == 200


def test_deleting_the_service_closes_its_listeners(vtadmin_101):
    d, api, _ = vtadmin_101
    core = client.CoreV1Api(api)
    web, api_port = free_node_ports()
    core.create_namespaced_service(NS, node_port_service("vtadmin-extra", web, api_port))
    wait_for(lambda: d.vtadmin.address(NS, "vtadmin-extra", "api"), what="extra listener")
    assert get("127.0.0.1", api_port, "/health")[0] == 200
    deleted = core.delete_namespaced_service("vtadmin-extra", NS)
    assert deleted.metadata.name == "vtadmin-extra"  # a Service delete answers with the object, as the real registry does
    wait_for(lambda: d.vtadmin.address(NS, "vtadmin-extra", "api") is None
             and d.vtadmin.address(NS, "vtadmin-extra", "web") is None, what="listeners closed")
    for port in (web, api_port):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
    # the other Services' listeners are untouched
    assert api_get(d, "/health")[0] == 200


def test_stopping_the_double_frees_the_node_ports(tmp_path):
    d, api = start_double(tmp_path, nodes=1, node_cpu="8", node_memory="16Gi", operators=True)
    web, api_port = free_node_ports()
    try:
        client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NS)))
        client.CoreV1Api(api).create_namespaced_service(NS, node_port_service(NODEPORT_SVC, web, api_port))
        wait_for(lambda: d.vtadmin.address(NS, NODEPORT_SVC, "web"), what="listening")
        # no vtadmin pod behind it: connections are reset
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            get("127.0.0.1", web, "/")
    finally:
        d.stop()
    for port in (web, api_port):       # the next double can listen there (as its listeners do: SO_REUSEADDR)
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
            s.listen(1)
