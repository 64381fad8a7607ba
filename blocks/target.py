"""The cluster target block: which Kubernetes cluster and Vitess cluster the flows act on."""

from __future__ import annotations

import re

from prefect.blocks.core import Block
from pydantic import Field, SecretStr, field_validator

from vtflow import kube

_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_HOSTPORT = re.compile(r"^[^\s:/]+:\d{1,5}$")


class VitessTarget(Block):
    """A Kubernetes cluster reached through a kubeconfig, and the Vitess cluster inside it.

    The kubeconfig is a secret: it usually carries a client key or token with cluster-admin
    rights (the stock prefect-kubernetes block keeps it as a plain dict, readable in the UI).
    vtctld is always reached by exec in its pod through the Kubernetes API (no vtctld address:
    the flows' machine needs no Vitess binaries and no route to the pod network). Blocks saved
    with the former ``vtctld_address`` still load; the field is ignored.
    """

    _block_type_name = "vtflow Vitess target"
    _block_type_slug = "vtflow-vitess-target"
    _description = "A K3s/Kubernetes cluster (kubeconfig held as a secret) and the Vitess cluster vtflow manages in it."

    kubeconfig: SecretStr = Field(description="Kubeconfig YAML text with its certificates inlined (e.g. /etc/rancher/k3s/k3s.yaml).")
    context: str | None = Field(default=None, description="Kubeconfig context to use; empty means its current context.")
    namespace: str = Field(default="example", description="Namespace of the vitess-operator and the VitessCluster.")
    cluster_name: str = Field(default="example", description="metadata.name of the VitessCluster.")
    vtgate_address: str | None = Field(
        default=None, description="host:port where vtgate's MySQL port is reachable; empty means discover the gateway Service.",
    )
    node_address: str | None = Field(
        default=None, description="A node address that NodePort Services are reached on (vtadmin's web and API).",
    )
    registry_mirror: str | None = Field(
        default=None, description="Image registry prefix that mirrors upstream images, e.g. harbor.example.lan/vitess (your Harbor).",
    )

    @field_validator("namespace", "cluster_name")
    @classmethod
    def _dns(cls, v: str) -> str:
        if not _DNS1123.match(v):
            raise ValueError(f"{v!r} must be a DNS-1123 label (lower-case letters, digits, '-', at most 63)")
        return v

    @field_validator("vtgate_address")
    @classmethod
    def _hostport(cls, v: str | None) -> str | None:
        if v and not _HOSTPORT.match(v):
            raise ValueError(f"{v!r} must be host:port")
        return v

    def api_client(self):
        """Client factory: a kubernetes ApiClient for this target."""
        return kube.api_client(
            self.kubeconfig.get_secret_value(), self.context,
            f"Vitess target block {self._block_document_name or '(unsaved)'}",
        )
