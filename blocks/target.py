"""The cluster target block: which Kubernetes cluster and Vitess cluster the flows act on."""

from __future__ import annotations

import re

from prefect.blocks.core import Block
from pydantic import Field, SecretStr, field_validator

from vtflow import kube
from vtflow.address import parse_address
from vtflow.errors import ConfigError, invalid_field

_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_HOST = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?$")
# registry[:port][/path], the path lower case as image references require
_MIRROR = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?(:\d{1,5})?(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$")


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

    # Each validator raises invalid_field(problem, fix): the CLI shows both (one line per field).

    @field_validator("namespace", "cluster_name")
    @classmethod
    def _dns(cls, v: str) -> str:
        if not _DNS1123.match(v):
            raise invalid_field(f"{v!r} is not a DNS-1123 label (lower-case letters, digits and '-', starting and "
                                f"ending with a letter or digit, at most 63 characters; this one has {len(v)}).",
                                "use a name such as example or vitess-prod.")
        return v

    @field_validator("vtgate_address")
    @classmethod
    def _hostport(cls, v: str | None) -> str | None:
        if not v:
            return None
        try:
            parse_address(v, "vtgate_address")
        except ConfigError as e:
            raise invalid_field(e.problem, e.fix or "") from None
        return v

    @field_validator("node_address")
    @classmethod
    def _host(cls, v: str | None) -> str | None:
        if not v:
            return None
        if not _HOST.match(v):
            raise invalid_field(f"{v!r} is not a host name or IPv4 address (no scheme, no port: vtflow adds the "
                                "NodePorts itself).", "give a node's address, e.g. 10.0.0.11.")
        return v

    @field_validator("registry_mirror")
    @classmethod
    def _mirror(cls, v: str | None) -> str | None:
        if not v:
            return None
        v = v.rstrip("/")  # harbor.lan/vitess/ means harbor.lan/vitess
        if not _MIRROR.match(v):
            why = "it has a scheme: image references have none" if "://" in v else "it is not REGISTRY[:PORT][/PROJECT] with the project in lower case"
            raise invalid_field(f"{v!r} is not an image registry prefix ({why}).", "write it as harbor.example.lan/vitess.")
        return v

    def api_client(self):
        """Client factory: a kubernetes ApiClient for this target."""
        return kube.api_client(
            self.kubeconfig.get_secret_value(), self.context,
            f"Vitess target block {self._block_document_name or '(unsaved)'}",
        )
