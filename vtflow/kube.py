"""The Kubernetes API: the one module that imports the official ``kubernetes`` client.

For now it builds an API client from a kubeconfig held in the target block. Server-side
apply, waits and error mapping join it with the deploy steps. It must not build manifests
(``tasks/`` does) nor read blocks (callers pass the kubeconfig text in).
"""

from __future__ import annotations

import yaml
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.config.config_exception import ConfigException

from vtflow.errors import ConfigError


def parse_kubeconfig(text: str, source: str) -> dict:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(source, f"the kubeconfig is not YAML ({e}).", "give the file kubectl uses (e.g. /etc/rancher/k3s/k3s.yaml).") from e
    if not isinstance(data, dict) or not data.get("clusters") or not data.get("contexts"):
        raise ConfigError(source, "the kubeconfig has no clusters or contexts.", "give the file kubectl uses (e.g. /etc/rancher/k3s/k3s.yaml).")
    return data


def context_names(config: dict) -> list[str]:
    return [c.get("name") for c in config.get("contexts") or [] if c.get("name")]


def api_client(kubeconfig_text: str, context: str | None, source: str) -> k8s_client.ApiClient:
    """An ApiClient for ``context`` (or the kubeconfig's current context)."""
    config = parse_kubeconfig(kubeconfig_text, source)
    if context and context not in context_names(config):
        raise ConfigError(
            source, f"context {context!r} is not in the kubeconfig (it has {', '.join(context_names(config))}).",
            "set the block's context to one of those, or leave it empty for the current context.",
        )
    try:
        return k8s_config.new_client_from_config_dict(config, context=context or None, persist_config=False)
    except ConfigException as e:
        raise ConfigError(source, f"the kubeconfig cannot be used ({e}).", "check it with `kubectl --kubeconfig FILE get nodes`.") from e
