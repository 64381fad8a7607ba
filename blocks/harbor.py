"""The Harbor webhook block: the shared secret Harbor sends with each delivery."""

from __future__ import annotations

import hmac

from prefect.blocks.core import Block
from pydantic import Field, SecretStr, field_validator


class HarborWebhook(Block):
    """The value Harbor's webhook policy sends verbatim in the ``Authorization`` header."""

    _block_type_name = "vtflow Harbor webhook"
    _block_type_slug = "vtflow-harbor-webhook"
    _description = "Shared secret of the Harbor webhook policy (its auth_header)."

    auth_header: SecretStr = Field(description="Exact Authorization header value set in the Harbor policy; at least 16 characters.")

    @field_validator("auth_header")
    @classmethod
    def _long_enough(cls, v: SecretStr) -> SecretStr:
        if len(v.get_secret_value()) < 16:
            raise ValueError("the auth header must be at least 16 characters (e.g. `openssl rand -hex 24`)")
        return v

    def accepts(self, header: str | None) -> bool:
        """Constant-time comparison of a received Authorization header."""
        return hmac.compare_digest((header or "").encode(), self.auth_header.get_secret_value().encode())
