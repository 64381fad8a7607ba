"""MariaDB's command line and setup SQL (the server itself runs in the session fixture)."""

from pathlib import Path

import pytest

from vtflow.errors import ConfigError
from vtflow.sandbox.mariadb import MariaDB, user_sql


def test_user_sql_creates_or_rekeys_the_user():
    sql = user_sql("user", "s3cret-pw")
    assert "CREATE USER IF NOT EXISTS 'user'@'%'" in sql and "ALTER USER 'user'@'%' IDENTIFIED BY 's3cret-pw'" in sql


@pytest.mark.parametrize("user,password", [("user", ""), ("user", "it's"), ("us'er", "pw"), ("user", "a\\b")])
def test_user_sql_refuses_empty_passwords_and_quotes(user, password):
    with pytest.raises(ConfigError):
        user_sql(user, password)


def test_command_keeps_everything_under_its_folder():
    db = MariaDB(root=Path("/s/mariadb"), port=3399)
    argv = db.command()
    assert argv[:2] == ["mariadbd", "--no-defaults"]
    assert "--port=3399" in argv and "--bind-address=127.0.0.1" in argv
    assert "--datadir=/s/mariadb/data" in argv and "--socket=/s/mariadb/mysqld.sock" in argv


def test_session_mariadb_answers_with_its_user(mariadb):
    from vtflow import mysql

    with mysql.connect(mariadb.host, mariadb.port, mariadb.user, mariadb.password) as conn, conn.cursor() as cur:
        cur.execute("SELECT 6*7")
        assert cur.fetchone() == (42,)
