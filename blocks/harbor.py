"""The Harbor webhook block: the shared secret Harbor sends with each delivery, and which pushed
images redeploy which part of the cluster (read by the receiver in ``vtflow/webhook.py``).

Configuration only: no I/O, no HTTP. The secret never leaves as itself: the receiver keeps at most
a salted hash of it (``auth_digest``) outside Prefect."""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Literal

from prefect.blocks.core import Block
from pydantic import BaseModel, Field, SecretStr, field_validator

# Harbor "project/repo" (repositories may nest: "project/team/repo"), lower case as Harbor keeps them.
# Used with fullmatch: "$" matches before a trailing newline.
_REPOSITORY = re.compile(r"[a-z0-9]+(?:[._-]+[a-z0-9]+)*(?:/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)+")
_DEPLOYMENT = re.compile(r"[^/\s]+/[^/\s]+")
_REGISTRY = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*(?::[0-9]{1,5})?")

Component = Literal["vitess", "vtadmin", "operator"]


class ImageRoute(BaseModel):
    """A Harbor repository (and tag pattern) whose pushes redeploy one component of a cluster."""

    repository: str = Field(
        description='Harbor repository as "project/repo", without registry host or tag, e.g. "vitess/lite".')
    tags: str = Field(
        default="*",
        description='Tags that trigger a redeploy, an fnmatch glob: "v23.*", "v*-mysql80". "*" (the default: '
                    "no pattern) takes every push of the repository, untagged ones (digest only) included; "
                    "any other pattern never matches an untagged push.")
    component: Component = Field(
        description="What the image is: 'vitess' (vitess/lite: vtgate, vttablet, vtctld, vtorc), "
                    "'vtadmin', or 'operator' (vitess-operator).")
    target_block: str = Field(default="default", description="Name of the Vitess target block of the cluster to redeploy.")
    mysql_block: str = Field(default="default", description="Name of the MySQL credentials block used to verify it.")

    @field_validator("repository")
    @classmethod
    def _project_slash_repo(cls, v: str) -> str:
        first = v.split("/", 1)[0]
        # as Docker tells a registry host from a path: a dot, a port or localhost
        if not _REPOSITORY.fullmatch(v) or "." in first or first == "localhost":
            raise ValueError(f'repository {v!r} must be Harbor\'s "project/repo" (lower case, no registry host, '
                             'no tag or digest), e.g. "vitess/lite"')
        return v

    @field_validator("tags")
    @classmethod
    def _not_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError('the tag pattern is empty: use "*" for any tag')
        return v.strip()


class HarborWebhook(Block):
    """What the Harbor webhook receiver needs: the value Harbor's policy sends verbatim in the
    ``Authorization`` header, the repositories it acts on, and the deployment whose runs it creates."""

    _block_type_name = "vtflow Harbor webhook"
    _block_type_slug = "vtflow-harbor-webhook"
    _description = ("Harbor webhook receiver: the policy's auth header, which pushed images redeploy which "
                    "component, and the redeploy deployment.")

    auth_header: SecretStr = Field(description="Exact Authorization header value set in the Harbor policy; at least 16 characters.")
    routes: list[ImageRoute] = Field(
        default_factory=list,
        description="Pushed images that trigger a redeploy; the first route matching a push wins. "
                    "Pushes of other repositories or tags are acknowledged and ignored.")
    deployment: str = Field(default="redeploy/redeploy",
                            description='The deployment ("flow/deployment") whose runs the receiver creates.')
    registry: str | None = Field(
        default=None,
        description='Harbor\'s registry host as its resource_url names it ("harbor.lan", "harbor.lan:8443"). '
                    "Set, pushes naming another host are ignored; unset, any host (the redeploy flow still "
                    "refuses images outside the target's registry mirror).")

    @field_validator("auth_header")
    @classmethod
    def _long_enough(cls, v: SecretStr) -> SecretStr:
        if len(v.get_secret_value()) < 16:
            raise ValueError("the auth header must be at least 16 characters (e.g. `openssl rand -hex 24`)")
        return v

    @field_validator("deployment")
    @classmethod
    def _flow_slash_deployment(cls, v: str) -> str:
        if not _DEPLOYMENT.fullmatch(v):
            raise ValueError(f'deployment {v!r} must be "flow-name/deployment-name", e.g. "redeploy/redeploy"')
        return v

    @field_validator("registry")
    @classmethod
    def _host(cls, v: str | None) -> str | None:
        if v is not None and not _REGISTRY.fullmatch(v):
            raise ValueError(f'registry {v!r} must be a host[:port] as Harbor\'s resource_url names it, e.g. "harbor.lan"')
        return v

    def accepts(self, header: str | None) -> bool:
        """Constant-time comparison of a received Authorization header."""
        return hmac.compare_digest((header or "").encode(), self.auth_header.get_secret_value().encode())

    def auth_digest(self, salt: bytes) -> str:
        """The auth header's salted SHA-256 (hex): what a copy of the block kept outside Prefect holds."""
        return auth_digest(self.auth_header.get_secret_value(), salt)


def auth_digest(header: str, salt: bytes) -> str:
    return hashlib.sha256(salt + header.encode("utf-8", "surrogateescape")).hexdigest()
