"""tasks/gateway.py: which vtgate address a flow uses, from the Services it sees."""

import pytest

from tasks.cluster import ClusterSpec, render
from helpers import IMAGES
from tasks.gateway import choose
from vtflow.address import parse_address
from vtflow.errors import ConfigError, TransientError


def _svc(name, type_="ClusterIP", node_port=None, cluster="example", component="vtgate", ingress=None, port=3306):
    p = {"name": "mysql", "port": port, "targetPort": 3306}
    if node_port:
        p["nodePort"] = node_port
    svc = {"metadata": {"name": name, "namespace": "example"},
           "spec": {"type": type_, "selector": {"planetscale.com/cluster": cluster, "planetscale.com/component": component},
                    "ports": [p]}}
    if ingress:
        svc["status"] = {"loadBalancer": {"ingress": ingress}}
    return svc


GATEWAY = _svc("example-zone1-vtgate-bc6cde92")


def test_the_target_blocks_address_wins():
    gw = choose([GATEWAY, _svc("np", "NodePort", 30306)], "example", "10.0.0.11", "db.lan:3306")
    assert (gw.host, gw.port) == ("db.lan", 3306) and "vtgate_address" in gw.how


def test_the_nodeport_service_the_deploy_renders_is_found_at_the_node_address():
    objects = render(ClusterSpec(**IMAGES), "example", "example", "10.0.0.11", "user", "pw")
    services = [{**o, "metadata": {**o["metadata"]}} for o in objects if o["kind"] == "Service"]
    gw = choose([GATEWAY, *services], "example", "10.0.0.11", None, GATEWAY["metadata"]["name"])
    assert gw.address == "10.0.0.11:30306" and "example-vtgate-nodeport (NodePort)" in gw.how


def test_a_load_balancer_with_an_address_is_used_as_is():
    gw = choose([_svc("lb", "LoadBalancer", 31000, ingress=[{"ip": "192.168.1.50"}])], "example", "10.0.0.11", None)
    assert gw.address == "192.168.1.50:3306"


def test_without_a_node_port_the_gateway_service_is_named_by_cluster_dns():
    gw = choose([GATEWAY, _svc("other", "NodePort", 30400, cluster="other")], "example", "10.0.0.11", None,
                GATEWAY["metadata"]["name"])
    assert gw.address == "example-zone1-vtgate-bc6cde92.example.svc:3306" and "inside the cluster only" in gw.how


def test_node_port_without_node_address_is_a_config_error_naming_the_fix():
    with pytest.raises(ConfigError) as e:
        choose([_svc("np", "NodePort", 30306)], "example", None, None)
    assert "node_address" in str(e.value) and "Service example/np" in str(e.value)


def test_no_vtgate_service_yet_is_transient():
    with pytest.raises(TransientError):
        choose([_svc("vtctld", component="vtctld")], "example", "10.0.0.11", None)


@pytest.mark.parametrize("bad", ["db.lan", ":3306", "db.lan:x", "db.lan:70000", "db.lan:0", "mysql://db.lan:3306",
                                 "db.lan/x:3306", "fd00::1:3306", "db lan:3306"])
def test_parse_address_refuses_what_is_not_host_port(bad):
    with pytest.raises(ConfigError, match="host:port"):
        parse_address(bad, "vtgate_address")


def test_parse_address_takes_bracketed_ipv6():
    assert parse_address("[fd00::1]:3306", "vtgate_address") == ("fd00::1", 3306)
