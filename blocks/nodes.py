"""The SSH nodes block: the cluster's machines and how to log in to them."""

from __future__ import annotations

import re
from typing import Literal

from prefect.blocks.core import Block
from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

from vtflow import ssh
from vtflow.errors import ConfigError

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class NodeSpec(BaseModel):
    """One machine of the cluster."""

    name: str = Field(description="Node name as Kubernetes knows it (kubectl get nodes), e.g. node1.")
    address: str = Field(description="Address vtflow connects to over SSH (IP or DNS name).")
    port: int = Field(default=22, ge=1, le=65535, description="sshd port on the node.")
    role: Literal["server", "agent"] = Field(
        default="server", description="K3s role: 'server' runs the k3s service, 'agent' runs k3s-agent."
    )
    internal_address: str | None = Field(
        default=None,
        description="Address of the node inside the WireGuard mesh; the other nodes must reach it. "
        "Empty means the SSH address.",
    )

    @field_validator("name")
    @classmethod
    def _dns_label(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(f"node name {v!r} must be a DNS label (lower-case letters, digits, '-')")
        return v

    @property
    def mesh_address(self) -> str:
        return self.internal_address or self.address

    @property
    def endpoint(self) -> ssh.Endpoint:
        return ssh.Endpoint(self.name, self.address, self.port)


class SSHNodes(Block):
    """The cluster's nodes, the SSH user and key vtflow logs in with, and the host keys it trusts."""

    _block_type_name = "vtflow SSH nodes"
    _block_type_slug = "vtflow-ssh-nodes"
    _description = "Nodes of the K3s cluster, reached over SSH with a private key and verified host keys."

    nodes: list[NodeSpec] = Field(description="Every node of the cluster.", min_length=1)
    user: str = Field(default="root", description="SSH user on every node.")
    private_key: SecretStr = Field(description="Private key (OpenSSH or PEM text) that the user accepts.")
    passphrase: SecretStr | None = Field(default=None, description="Passphrase of the private key, if it has one.")
    known_hosts: str = Field(
        description="Trusted host keys, one known_hosts line per node "
        "(`ssh-keyscan -p PORT HOST`). A node whose key is not here is refused.",
    )

    @model_validator(mode="after")
    def _unique(self) -> "SSHNodes":
        names = [n.name for n in self.nodes]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"node names must be unique; repeated: {', '.join(dupes)}")
        places = [(n.address, n.port) for n in self.nodes]
        dupes = sorted({f"{a}:{p}" for a, p in places if places.count((a, p)) > 1})
        if dupes:
            raise ValueError(f"node addresses must be unique; repeated: {', '.join(dupes)}")
        return self

    def node(self, name: str) -> NodeSpec:
        for n in self.nodes:
            if n.name == name:
                return n
        raise ConfigError(
            f"SSH nodes block {self._block_document_name or '(unsaved)'}",
            f"has no node named {name!r} (it has {', '.join(n.name for n in self.nodes)}).",
            "add the node to the block or correct the name.",
        )

    def _source(self) -> str:
        return f"SSH nodes block {self._block_document_name or '(unsaved)'}"

    def connect(self, name: str, timeout: float = 10.0) -> ssh.Session:
        """Client factory: an SSH session to node ``name``, host key verified."""
        source = self._source()
        key = ssh.load_private_key(
            self.private_key.get_secret_value(),
            self.passphrase.get_secret_value() if self.passphrase else None,
            f"{source} private_key",
        )
        trusted = ssh.parse_known_hosts(self.known_hosts, f"{source} known_hosts")
        return ssh.connect(self.node(name).endpoint, self.user, key, trusted, timeout=timeout)
