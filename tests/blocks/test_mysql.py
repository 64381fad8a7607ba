"""blocks/mysql.py against a real MariaDB (vtgate speaks the same protocol)."""

import pytest
from pydantic import ValidationError

from blocks.mysql import MySQLCredentials
from vtflow.errors import AuthError, UnreachableError
from testbed import free_port


def test_empty_password_is_refused():
    with pytest.raises(ValidationError, match="must not be empty"):
        MySQLCredentials(user="user", password="")


def test_connect_factory_runs_a_query(mariadb):
    creds = MySQLCredentials(user=mariadb.user, password=mariadb.password)
    with creds.connect(mariadb.host, mariadb.port) as conn, conn.cursor() as cur:
        cur.execute("SELECT 6*7")
        assert cur.fetchone() == (42,)


def test_wrong_password_is_an_auth_error_without_the_password(mariadb):
    creds = MySQLCredentials(user=mariadb.user, password="not-the-password-9d2")
    with pytest.raises(AuthError) as e:
        creds.connect(mariadb.host, mariadb.port)
    assert f"{mariadb.user}@{mariadb.host}:{mariadb.port}" in str(e.value)
    assert "not-the-password-9d2" not in str(e.value) and e.value.__cause__ is None


def test_nothing_listening_is_unreachable():
    creds = MySQLCredentials(user="u", password="p")
    with pytest.raises(UnreachableError, match="cannot connect"):
        creds.connect("127.0.0.1", free_port(), timeout=2)
