"""tasks/schema.py: the pure parts, then ApplySchema/ApplyVSchema through exec on the double's vtctld
(reading sources: tests/vtflow/test_sources.py; vtctldclient's output: tests/vtflow/test_vtctld.py)."""

import json

import pytest

from tasks.context import TargetContext
from tasks.schema import KeyspaceSchema, apply_schemas, check_inputs, created_table, existing_tables, schema_statements
from vtflow.errors import ConfigError, PermanentError
from helpers import EXAMPLES, keyspace_cluster



def test_created_table_names():
    assert created_table("create table product(\n sku varbinary(128))") == "product"
    assert created_table("CREATE TABLE IF NOT EXISTS `commerce`.`corder` (x int)") == "corder"
    assert created_table("alter table product add column x int") is None


def test_schema_statements_skip_client_commands_and_refuse_another_keyspace():
    stmts, notes = schema_statements("\\! echo hi\nuse commerce/0;\ncreate table t(x int);\n", "f.sql", "commerce")
    assert [s.sql for s in stmts] == ["create table t(x int)"]
    assert notes == ["f.sql:1: shell 'echo hi' not run", "f.sql:2: use 'commerce/0' not run"]
    with pytest.raises(ConfigError, match="f.sql:1: switches to keyspace 'customer'"):
        schema_statements("use customer;\ncreate table t(x int);", "f.sql", "commerce")


@pytest.fixture(scope="module")
def cluster(mariadb, tmp_path_factory):
    with keyspace_cluster(mariadb, tmp_path_factory.mktemp("k")) as (d, k, keyspace):
        d.keyspace = keyspace
        yield d, k


def test_upstream_schema_and_vschema_apply_then_a_rerun_changes_nothing(prefect_server, cluster, mariadb):
    d, k = cluster
    spec = [KeyspaceSchema(keyspace=d.keyspace, sql=str(EXAMPLES / "create_commerce_schema.sql"),
                           vschema=str(EXAMPLES / "vschema_commerce_initial.json"))]
    first = apply_schemas(TargetContext(k, "example", "example"), check_inputs(spec))
    assert [o["action"] for o in first.objects] == ["created", "created", "created", "changed"]
    import pymysql
    with pymysql.connect(host=mariadb.host, port=mariadb.port, user=mariadb.user, password=mariadb.password) as c, c.cursor() as cur:
        cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema=%s ORDER BY 1", (d.keyspace,))
        assert [r[0] for r in cur.fetchall()] == ["corder", "customer", "product"]
    again = apply_schemas(TargetContext(k, "example", "example"), check_inputs(spec))
    assert not again.changed, again.objects


def test_sql_syntax_error_names_file_and_statement_and_stops(prefect_server, cluster, tmp_path):
    d, k = cluster
    f = tmp_path / "broken.sql"
    f.write_text("create table ok_one(x int);\ncreate tabel oops(x int);\ncreate table never(x int);\n")
    with pytest.raises(PermanentError) as e:
        apply_schemas(TargetContext(k, "example", "example"), check_inputs([KeyspaceSchema(keyspace=d.keyspace, sql=str(f))]))
    text = str(e.value)
    assert text.startswith(f"schema {f}:2: ApplySchema on keyspace {d.keyspace} failed:") and "errno 1064" in text
    assert "(statement: create tabel oops(x int))" in text
    tables = existing_tables(k, "example", "example", d.keyspace)
    assert "ok_one" in tables and "never" not in tables


def test_invalid_vschema_fails_before_anything_is_sent(prefect_server, cluster, tmp_path):
    d, k = cluster
    f = tmp_path / "v.json"
    f.write_text(json.dumps({"sharded": True, "tables": {"t": {}}}))
    before = existing_tables(k, "example", "example", d.keyspace)
    with pytest.raises(ConfigError, match="tables.t: a sharded keyspace needs a primary vindex"):
        apply_schemas(TargetContext(k, "example", "example"),
                      check_inputs([KeyspaceSchema(keyspace=d.keyspace, sql="create table fresh(x int);", vschema=str(f))]))
    assert before == existing_tables(k, "example", "example", d.keyspace)
    assert "fresh" not in before
