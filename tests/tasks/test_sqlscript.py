"""tasks/sqlscript.py: mysql-client scripts split as the client splits them, nothing executed."""


import pytest

from tasks.sqlscript import MetaCommand, Statement, keyspace_of, split
from vtflow.errors import ConfigError
from helpers import EXAMPLES



def test_upstream_select_script_gives_shell_echoes_a_use_and_three_selects():
    parts = split((EXAMPLES / "select_commerce_data.sql").read_text(), "select_commerce_data.sql")
    kinds = [(type(p).__name__, getattr(p, "name", None)) for p in parts]
    assert kinds[:2] == [("MetaCommand", "shell"), ("MetaCommand", "use")]
    assert parts[1].arg == "commerce/0" and keyspace_of(parts[1].arg) == "commerce"
    selects = [p for p in parts if isinstance(p, Statement)]
    assert [s.sql for s in selects] == ["select * from customer", "select * from product", "select * from corder"]
    assert selects[0].where == "select_commerce_data.sql:4"


def test_upstream_schema_and_data_files_split_into_their_statements():
    schema = split((EXAMPLES / "create_commerce_schema.sql").read_text(), "schema.sql")
    assert [s.sql.split("(")[0] for s in schema] == ["create table product", "create table customer", "create table corder"]
    assert [s.line for s in schema] == [1, 7, 12]
    data = split((EXAMPLES / "insert_commerce_data.sql").read_text(), "data.sql")
    assert len(data) == 12 and all(isinstance(s, Statement) and s.sql.startswith("insert into") for s in data)


def test_delimiters_inside_strings_and_comments_do_not_split():
    text = ("insert into t values ('a;b', \"c;d\", `e;f`); -- trailing; comment\n"
            "# hash; comment\n"
            "insert into t values ('it''s', 'back\\'slash;'); /* block; */ select 1;\n"
            "select /*!40101 SQL_NO_CACHE */ 2;\n")
    sqls = [p.sql for p in split(text, "f.sql")]
    assert sqls == ["insert into t values ('a;b', \"c;d\", `e;f`)",
                    "insert into t values ('it''s', 'back\\'slash;')", "select 1",
                    "select /*!40101 SQL_NO_CACHE */ 2"]


def test_delimiter_command_and_line_numbers():
    text = "delimiter //\ncreate procedure p()\nbegin\n  select 1;\nend //\ndelimiter ;\nselect 2;\n"
    parts = split(text, "p.sql")
    assert isinstance(parts[0], MetaCommand) and parts[0].name == "delimiter" and parts[0].arg == "//"
    assert parts[1].sql.startswith("create procedure p()") and "select 1;" in parts[1].sql and parts[1].line == 2
    assert parts[3].sql == "select 2" and parts[3].line == 7


def test_shell_escapes_are_never_statements():
    parts = split("\\! rm -rf /\nsystem reboot\nselect 1;\n", "evil.sql")
    assert [(p.name, p.arg) for p in parts[:2]] == [("shell", "rm -rf /"), ("shell", "reboot")]
    assert parts[2].sql == "select 1"


def test_dash_dash_needs_a_space_to_be_a_comment():
    assert split("select 5--1;\n", "m.sql")[0].sql == "select 5--1"


def test_unclosed_string_and_comment_are_errors_with_the_place():
    with pytest.raises(ConfigError, match="a.sql:2: a ' string is never closed"):
        split("select 1;\nselect 'oops;\n", "a.sql")
    with pytest.raises(ConfigError, match="b.sql:1: a /\\* comment is never closed"):
        split("/* no end", "b.sql")


@pytest.mark.parametrize("target,keyspace", [("commerce", "commerce"), ("commerce/0", "commerce"),
                                             ("commerce@primary", "commerce"), ("customer:-80", "customer")])
def test_keyspace_of_targets(target, keyspace):
    assert keyspace_of(target) == keyspace
