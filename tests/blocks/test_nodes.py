"""blocks/nodes.py: validation, the connect factory, secrets redacted by the server."""

import pytest
from pydantic import ValidationError

from blocks.nodes import SSHNodes
from helpers import nodes_block, save_nodes_block
from vtflow.errors import ConfigError, HostKeyError


def test_every_field_is_described_and_the_key_is_secret():
    schema = SSHNodes.model_json_schema()
    for name, prop in schema["properties"].items():
        assert prop.get("description"), name
    assert schema["properties"]["private_key"]["format"] == "password"
    node_props = schema["definitions"]["NodeSpec"]["properties"]
    assert all(p.get("description") for p in node_props.values())


@pytest.mark.parametrize("nodes,text", [
    ([{"name": "a", "address": "10.0.0.1"}, {"name": "a", "address": "10.0.0.2"}], "repeated: a"),
    ([{"name": "a", "address": "10.0.0.1"}, {"name": "b", "address": "10.0.0.1"}], "repeated: 10.0.0.1:22"),
    ([{"name": "Node_1", "address": "10.0.0.1"}], "must be a DNS label"),
    ([], "at least 1"),
])
def test_bad_inventories_are_refused(nodes, text):
    with pytest.raises(ValidationError, match=text):
        SSHNodes(nodes=nodes, private_key="k", known_hosts="")


def test_unknown_node_name_lists_the_known_ones():
    block = SSHNodes(nodes=[{"name": "a", "address": "10.0.0.1"}], private_key="k", known_hosts="")
    with pytest.raises(ConfigError, match="has no node named 'b' \\(it has a\\)"):
        block.node("b")


def test_connect_factory_reaches_a_node(node_bed, nodes):
    block = nodes_block(node_bed, nodes[:1])
    with block.connect("node1") as session:
        assert session.run("echo hi").stdout == "hi\n"


def test_connect_factory_refuses_an_unknown_host_key(node_bed, nodes):
    block = nodes_block(node_bed, nodes[:1], known_hosts="")
    with pytest.raises(HostKeyError):
        block.connect("node1")


def test_saved_block_hides_secrets_from_api_reads(prefect_server, node_bed, nodes):
    from prefect.client.orchestration import get_client

    block = nodes_block(node_bed, nodes[:2], passphrase=None)
    name = save_nodes_block(block)
    with get_client(sync_client=True) as client:
        doc = client.read_block_document_by_name(name, block_type_slug="vtflow-ssh-nodes", include_secrets=False)
    assert doc.data["private_key"] != block.private_key.get_secret_value()
    assert "PRIVATE KEY" not in str(doc.data)
    loaded = SSHNodes.load(name)
    assert loaded.private_key.get_secret_value() == block.private_key.get_secret_value()
    assert [n.name for n in loaded.nodes] == ["node1", "node2"]
