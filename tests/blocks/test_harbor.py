"""blocks/harbor.py: the shared secret and its constant-time check."""

import pytest
from pydantic import ValidationError

from blocks.harbor import HarborWebhook


def test_accepts_only_the_exact_header():
    block = HarborWebhook(auth_header="Bearer 0123456789abcdef")
    assert block.accepts("Bearer 0123456789abcdef")
    assert not block.accepts("Bearer 0123456789abcdeF")
    assert not block.accepts(None)
    assert not block.accepts("")


def test_short_secrets_are_refused():
    with pytest.raises(ValidationError, match="at least 16"):
        HarborWebhook(auth_header="short")


def test_secret_is_not_in_repr():
    assert "0123456789abcdef" not in repr(HarborWebhook(auth_header="Bearer 0123456789abcdef"))


def test_routes_and_deployment_default_to_nothing_routed_and_redeploy():
    block = HarborWebhook(auth_header="Bearer 0123456789abcdef")
    assert block.routes == [] and block.deployment == "redeploy/redeploy"


def test_a_route_needs_harbors_project_slash_repo():
    from blocks.harbor import ImageRoute

    route = ImageRoute(repository="vitess/lite", component="vitess")
    assert (route.tags, route.target_block, route.mysql_block) == ("*", "default", "default")
    assert ImageRoute(repository="vitess/team/lite", tags=" v23.* ", component="vitess").tags == "v23.*"
    for bad in ("lite", "vitess/lite\n", "harbor.lan/vitess/lite", "localhost/vitess/lite", "harbor.lan/vitess/lite:v1", "vitess/lite:v1", "vitess/lite@sha256:ab", "Vitess/Lite",
                "/vitess/lite", "vitess/lite/"):
        with pytest.raises(ValidationError, match='"project/repo"'):
            ImageRoute(repository=bad, component="vitess")
    with pytest.raises(ValidationError, match="component"):
        ImageRoute(repository="vitess/lite", component="vtgate")
    with pytest.raises(ValidationError, match="empty"):
        ImageRoute(repository="vitess/lite", tags=" ", component="vitess")


def test_deployment_is_flow_slash_deployment():
    with pytest.raises(ValidationError, match="flow-name/deployment-name"):
        HarborWebhook(auth_header="Bearer 0123456789abcdef", deployment="redeploy")
    with pytest.raises(ValidationError, match="flow-name/deployment-name"):
        HarborWebhook(auth_header="Bearer 0123456789abcdef", deployment="redeploy/redeploy\n")


def test_registry_is_a_host_and_port():
    assert HarborWebhook(auth_header="Bearer 0123456789abcdef").registry is None
    for good in ("harbor.lan", "harbor.lan:8443", "10.0.0.5:443"):
        assert HarborWebhook(auth_header="Bearer 0123456789abcdef", registry=good).registry == good
    for bad in ("harbor.lan\n", "harbor.lan/vitess", "https://harbor.lan", "Harbor.lan", ""):
        with pytest.raises(ValidationError, match="host"):
            HarborWebhook(auth_header="Bearer 0123456789abcdef", registry=bad)


def test_the_auth_digest_is_salted_and_not_the_secret():
    block = HarborWebhook(auth_header="Bearer 0123456789abcdef")
    a, b = block.auth_digest(b"salt-one"), block.auth_digest(b"salt-two")
    assert a != b and len(a) == 64 and "0123456789abcdef" not in a


def test_every_field_is_described_for_the_ui():
    from blocks.harbor import ImageRoute

    for model in (HarborWebhook, ImageRoute):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"


def test_routes_survive_a_save_and_load_and_the_secret_stays_redacted(prefect_server):
    import uuid

    from prefect.client.orchestration import get_client

    name = f"harbor-{uuid.uuid4().hex[:8]}"
    HarborWebhook(auth_header="Bearer 0123456789abcdef", deployment="redeploy/other",
                  routes=[{"repository": "vitess/lite", "tags": "v23.*", "component": "vitess", "target_block": "prod"}]
                  ).save(name)
    loaded = HarborWebhook.load(name)
    assert loaded.accepts("Bearer 0123456789abcdef") and loaded.deployment == "redeploy/other"
    assert [(r.repository, r.tags, r.component, r.target_block, r.mysql_block) for r in loaded.routes] == [
        ("vitess/lite", "v23.*", "vitess", "prod", "default")]
    with get_client(sync_client=True) as client:
        doc = client.read_block_document_by_name(name, block_type_slug="vtflow-harbor-webhook", include_secrets=False)
    assert "0123456789abcdef" not in str(doc.data)
