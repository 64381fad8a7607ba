"""The double speaks TLS with its own CA, and answers requests without credentials as
kube-apiserver's default policy does (system:public-info-viewer, system:discovery)."""

import ssl

import httpx
import pytest
import yaml
from kubernetes import client, config
from urllib3.exceptions import MaxRetryError


def _verified(double) -> httpx.Client:
    return httpx.Client(base_url=double.base_url, verify=ssl.create_default_context(cadata=double.ca_pem.decode()))


def test_the_kubeconfig_carries_the_ca_and_the_client_verifies_it(double, tmp_path):
    path = double.kubeconfig(tmp_path / "kc")
    cluster = yaml.safe_load(path.read_text())["clusters"][0]["cluster"]
    assert cluster["server"].startswith("https://") and cluster["certificate-authority-data"]
    assert client.VersionApi(config.new_client_from_config(str(path))).get_code().git_version

    # the same server without its CA: the client refuses the certificate (no insecure fallback)
    doc = yaml.safe_load(path.read_text())
    del doc["clusters"][0]["cluster"]["certificate-authority-data"]
    bare = tmp_path / "kc-no-ca"
    bare.write_text(yaml.safe_dump(doc))
    api = config.new_client_from_config(str(bare))
    api.configuration.retries = 0
    with pytest.raises(MaxRetryError, match="CERTIFICATE_VERIFY_FAILED"):
        client.VersionApi(api).get_code()


def test_plain_http_gets_no_api(double):
    with pytest.raises(httpx.HTTPError):
        httpx.get(double.base_url.replace("https://", "http://") + "/version", timeout=5)


@pytest.mark.parametrize("path", ["/version", "/healthz", "/livez", "/readyz"])
def test_public_info_is_open_to_anonymous_requests(double, path):
    with _verified(double) as c:
        r = c.get(path)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("path", ["/api", "/apis", "/api/v1", "/openapi/v3", "/api/v1/namespaces", "/metrics"])
def test_discovery_and_resources_need_credentials(double, path):
    # since 1.14 system:discovery is bound to system:authenticated only
    with _verified(double) as c:
        r = c.get(path)
    assert r.status_code == 403, r.text
    body = r.json()
    assert body["reason"] == "Forbidden" and 'User "system:anonymous" cannot' in body["message"]


def test_an_unknown_token_is_401_on_every_path(double):
    with _verified(double) as c:
        for path in ("/healthz", "/version", "/api"):
            r = c.get(path, headers={"Authorization": "Bearer not-a-token"})
            assert (r.status_code, r.json()["reason"]) == (401, "Unauthorized"), path
