"""The MySQL credentials block: the user vtflow logs in to vtgate with."""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field, SecretStr, field_validator

from vtflow import mysql


class MySQLCredentials(Block):
    """User and password for vtgate's MySQL port; also the user the deploy writes into the
    cluster's gateway users Secret."""

    _block_type_name = "vtflow MySQL credentials"
    _block_type_slug = "vtflow-mysql-credentials"
    _description = "User and password that vtflow uses through vtgate (MySQL protocol)."

    user: str = Field(default="user", description="MySQL user known to vtgate.")
    password: SecretStr = Field(description="Password of that user. Must not be empty.")

    @field_validator("password")
    @classmethod
    def _not_empty(cls, v: SecretStr) -> SecretStr:
        if not v.get_secret_value():
            raise ValueError("the password must not be empty (the upstream example's empty password is for demos only)")
        return v

    def connect(self, host: str, port: int, database: str | None = None, **kwargs):
        """Client factory: a pymysql connection to ``host:port``."""
        return mysql.connect(host, port, self.user, self.password.get_secret_value(), database, **kwargs)
