"""blocks/target.py: the kubeconfig is a secret and yields a working client factory."""

import pytest
import yaml
from pydantic import ValidationError

from blocks.target import VitessTarget
from vtflow.errors import ConfigError

KUBECONFIG = yaml.safe_dump({
    "apiVersion": "v1", "kind": "Config", "current-context": "k3s",
    "clusters": [{"name": "k3s", "cluster": {"server": "https://10.0.0.11:6443", "insecure-skip-tls-verify": True}},
                 {"name": "other", "cluster": {"server": "https://10.0.0.99:6443", "insecure-skip-tls-verify": True}}],
    "users": [{"name": "admin", "user": {"token": "kube-token-value-1234"}}],
    "contexts": [{"name": "k3s", "context": {"cluster": "k3s", "user": "admin"}},
                 {"name": "other", "context": {"cluster": "other", "user": "admin"}}],
})


def test_every_field_is_described_and_the_kubeconfig_is_secret():
    props = VitessTarget.model_json_schema()["properties"]
    assert all(p.get("description") for p in props.values())
    assert props["kubeconfig"]["format"] == "password"
    assert "kube-token-value-1234" not in repr(VitessTarget(kubeconfig=KUBECONFIG))


def test_defaults_follow_the_upstream_example():
    t = VitessTarget(kubeconfig=KUBECONFIG)
    assert (t.namespace, t.cluster_name) == ("example", "example")


def test_api_client_uses_the_chosen_context():
    assert VitessTarget(kubeconfig=KUBECONFIG).api_client().configuration.host == "https://10.0.0.11:6443"
    assert VitessTarget(kubeconfig=KUBECONFIG, context="other").api_client().configuration.host == "https://10.0.0.99:6443"


def test_unknown_context_names_the_ones_there():
    with pytest.raises(ConfigError, match="context 'prod' is not in the kubeconfig \\(it has k3s, other\\)"):
        VitessTarget(kubeconfig=KUBECONFIG, context="prod").api_client()


def test_not_a_kubeconfig_is_refused():
    with pytest.raises(ConfigError, match="no clusters or contexts"):
        VitessTarget(kubeconfig="hello: world").api_client()


@pytest.mark.parametrize("field,value,text", [
    ("namespace", "Vitess", "DNS-1123"), ("cluster_name", "-x", "DNS-1123"), ("vtgate_address", "10.0.0.1", "host:port"),
])
def test_bad_fields_are_refused(field, value, text):
    with pytest.raises(ValidationError, match=text):
        VitessTarget(kubeconfig=KUBECONFIG, **{field: value})


def test_every_field_is_read_and_vtctld_address_is_gone():
    # vtctld is reached by exec in its pod only; a field nothing read was a promise nothing kept
    assert set(VitessTarget.model_fields) == {"kubeconfig", "context", "namespace", "cluster_name", "vtgate_address",
                                              "node_address", "registry_mirror"}
    # a block saved with the old field still loads
    assert VitessTarget(kubeconfig=KUBECONFIG, vtctld_address="10.0.0.11:15999").namespace == "example"
