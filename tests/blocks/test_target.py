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


@pytest.mark.parametrize("field,value,text", [
    ("namespace", "a" * 64, "at most 63 characters; this one has 64"),
    ("vtgate_address", "10.0.0.1:0", "port must be 1-65535"),
    ("vtgate_address", "10.0.0.1:70000", "port must be 1-65535"),
    ("vtgate_address", "mysql://10.0.0.1:3306", "has a scheme"),
    ("node_address", "10.0.0.1:30306", "no port"),
    ("node_address", "http://10.0.0.1", "no scheme"),
    ("registry_mirror", "https://harbor.lan/vitess", "has a scheme"),
    ("registry_mirror", "harbor.lan/Vitess", "lower case"),
])
def test_neighbouring_bad_fields_are_refused_with_a_fix(field, value, text):
    with pytest.raises(ValidationError, match=text) as e:
        VitessTarget(kubeconfig=KUBECONFIG, **{field: value})
    # the fix travels beside the problem (the CLI prints both), never inside its prose
    [err] = e.value.errors()
    assert err["type"] == "vtflow_invalid" and err["ctx"]["fix"] and " Fix: " not in err["msg"]


def test_good_addresses_and_mirrors_are_kept():
    t = VitessTarget(kubeconfig=KUBECONFIG, vtgate_address="[fd00::1]:3306", node_address="node1.lan",
                     registry_mirror="harbor.lan:5000/vitess/")
    assert (t.vtgate_address, t.node_address, t.registry_mirror) == ("[fd00::1]:3306", "node1.lan", "harbor.lan:5000/vitess")


def _config(**changes):
    config = yaml.safe_load(KUBECONFIG)
    config.update(changes)
    return yaml.safe_dump(config)


@pytest.mark.parametrize("text,problem", [
    ("clusters: [\n  token: kube-token-value-1234: x\n", "is not YAML \\(.* at line 2, column"),
    ("kube-token-value-1234", "is a YAML string"),
    ("- kube-token-value-1234", "is a YAML list"),
    ("", "is empty"),
    (_config(contexts=[]), "no clusters or contexts"),
    (_config(contexts="kube-token-value-1234"), "contexts is not a list"),
    (_config(**{"current-context": None}), "no current-context and no context was chosen \\(it has k3s, other\\)"),
    (_config(**{"current-context": "gone"}), "current-context 'gone' is not among its contexts"),
    (_config(clusters=[{"name": "k3s", "cluster": {"server": "https://10.0.0.11:6443",
                                                   "certificate-authority-data": "kube-token-value-1234"}}]),
     "certificate-authority-data is not base64"),
    (_config(clusters=[{"name": "k3s", "cluster": {}}]), "has no server"),
    (_config(contexts=[{"name": "k3s", "context": {"cluster": "k3s", "user": "nobody"}}]), "names user 'nobody'"),
])
def test_a_broken_kubeconfig_is_one_config_error_that_never_quotes_it(text, problem):
    with pytest.raises(ConfigError, match=problem) as e:
        VitessTarget(kubeconfig=text).api_client()
    assert "kube-token-value-1234" not in str(e.value) and " Fix: " in str(e.value)
