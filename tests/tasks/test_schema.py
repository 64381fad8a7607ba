"""tasks/schema.py: the pure parts, then ApplySchema/ApplyVSchema through exec on the double's vtctld."""

import json
import uuid

import pytest

from tasks.cluster import ClusterSpec, not_ready, render
from tasks.operators import load_manifest, operator_objects
from tasks.schema import (KeyspaceSchema, apply_schemas, created_table, existing_tables, failed_shards_null,
                          read_source, schema_statements, sql_error)
from vtflow import kube
from vtflow.errors import ConfigError, PermanentError
from kubedouble import DoubleConfig, KubeDouble
from helpers import EXAMPLES



def test_created_table_names():
    assert created_table("create table product(\n sku varbinary(128))") == "product"
    assert created_table("CREATE TABLE IF NOT EXISTS `commerce`.`corder` (x int)") == "corder"
    assert created_table("alter table product add column x int") is None


def test_read_source_file_inline_and_missing(tmp_path):
    f = tmp_path / "s.sql"
    f.write_text("create table t(x int);")
    assert read_source(str(f), "SQL schema") == ("create table t(x int);", str(f))
    assert read_source("create table t(x int);", "SQL schema")[1] == "inline SQL schema"
    with pytest.raises(ConfigError, match="SQL schema /nope/schema.sql: is not a file"):
        read_source("/nope/schema.sql", "SQL schema")


def test_schema_statements_skip_client_commands_and_refuse_another_keyspace():
    stmts, notes = schema_statements("\\! echo hi\nuse commerce/0;\ncreate table t(x int);\n", "f.sql", "commerce")
    assert [s.sql for s in stmts] == ["create table t(x int)"]
    assert notes == ["f.sql:1: shell 'echo hi' not run", "f.sql:2: use 'commerce/0' not run"]
    with pytest.raises(ConfigError, match="f.sql:1: switches to keyspace 'customer'"):
        schema_statements("use customer;\ncreate table t(x int);", "f.sql", "commerce")


def test_apply_schema_errors_are_told_apart():
    assert failed_shards_null('ExecuteResult: {\n  "FailedShards": null,\n  "SuccessShards": null}')
    err = '{"FailedShards": [{"Shard": "-", "Err": "You have an error in your SQL syntax (errno 1064)"}]}'
    assert not failed_shards_null(err) and sql_error(err) == "You have an error in your SQL syntax (errno 1064)"


@pytest.fixture(scope="module")
def cluster(mariadb, tmp_path_factory):
    d = KubeDouble(DoubleConfig(nodes=3, node_cpu="8", node_memory="16Gi", operators=True, pod_start_delay=0.02,
                                mysql_backend=f"{mariadb.host}:{mariadb.port}", mysql_user=mariadb.user,
                                mysql_password=mariadb.password))
    d.start()
    k = kube.Kube(kube.api_client(d.kubeconfig(tmp_path_factory.mktemp("k") / "c").read_text(), None, "t"))
    for o in operator_objects(load_manifest(str(EXAMPLES / "operator.yaml")), "example", None):
        k.apply(o)
    # a keyspace of its own: the session's MariaDB is shared, and keyspace = database there
    keyspace = f"ks{uuid.uuid4().hex[:8]}"
    for o in render(ClusterSpec(keyspaces=[{"name": keyspace}]), "example", "example", "127.0.0.1", "user", "pw"):
        k.apply(o)
    k.wait("planetscale.com/v2", "VitessCluster", "example", "example", not_ready, 60)
    d.keyspace = keyspace
    yield d, k
    d.stop()


def test_upstream_schema_and_vschema_apply_then_a_rerun_changes_nothing(prefect_server, cluster, mariadb):
    d, k = cluster
    spec = [KeyspaceSchema(keyspace=d.keyspace, sql=str(EXAMPLES / "create_commerce_schema.sql"),
                           vschema=str(EXAMPLES / "vschema_commerce_initial.json"))]
    first = apply_schemas(k, "example", "example", spec)
    assert [o["action"] for o in first.objects] == ["created", "created", "created", "changed"]
    import pymysql
    with pymysql.connect(host=mariadb.host, port=mariadb.port, user=mariadb.user, password=mariadb.password) as c, c.cursor() as cur:
        cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema=%s ORDER BY 1", (d.keyspace,))
        assert [r[0] for r in cur.fetchall()] == ["corder", "customer", "product"]
    again = apply_schemas(k, "example", "example", spec)
    assert not again.changed, again.objects


def test_sql_syntax_error_names_file_and_statement_and_stops(prefect_server, cluster, tmp_path):
    d, k = cluster
    f = tmp_path / "broken.sql"
    f.write_text("create table ok_one(x int);\ncreate tabel oops(x int);\ncreate table never(x int);\n")
    with pytest.raises(PermanentError) as e:
        apply_schemas(k, "example", "example", [KeyspaceSchema(keyspace=d.keyspace, sql=str(f))])
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
        apply_schemas(k, "example", "example", [KeyspaceSchema(keyspace=d.keyspace, sql="create table fresh(x int);",
                                                               vschema=str(f))])
    assert before == existing_tables(k, "example", "example", d.keyspace)
    assert "fresh" not in before
