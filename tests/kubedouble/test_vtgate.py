"""The vtgate stand-in: a MySQL proxy from vtgate Services to MariaDB (pymysql and the mysql CLI)."""

from __future__ import annotations

import shutil
import subprocess

import pymysql
import pytest
from kubernetes import client

from vitess_helpers import NS, wait_for

GATEWAY = "example-vtgate-ae7df4b6"


@pytest.fixture(scope="module")
def gateway(vitess_101, kd_mariadb):
    """A NodePort Service in front of the vtgate pods, as vtflow exposes the gateway."""
    d, api, _ = vitess_101
    core = client.CoreV1Api(api)
    svc = core.create_namespaced_service(NS, {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "vtgate-nodeport"},
        "spec": {"type": "NodePort", "selector": {"planetscale.com/cluster": "example", "planetscale.com/component": "vtgate"},
                 "ports": [{"name": "mysql", "port": 3306, "targetPort": 3306}]}})
    port = svc.spec.ports[0].node_port
    wait_for(lambda: d.vtgate.address(NS, "vtgate-nodeport"), what="proxy listening")
    with pymysql.connect(host=kd_mariadb.host, port=kd_mariadb.port, user=kd_mariadb.user,
                         password=kd_mariadb.password, autocommit=True) as c, c.cursor() as cur:
        cur.execute("CREATE DATABASE IF NOT EXISTS commerce")
        cur.execute("CREATE TABLE IF NOT EXISTS commerce.customer (customer_id bigint auto_increment primary key, "
                    "email varbinary(128))")
    return "127.0.0.1", port


def connect(host, port, db, **kw):
    return pymysql.connect(host=host, port=port, user=db.user, password=db.password, autocommit=True,
                           connect_timeout=5, **kw)


def test_node_port_reaches_mariadb(gateway, kd_mariadb):
    host, port = gateway
    assert 30000 <= port <= 32767
    with connect(host, port, kd_mariadb) as c, c.cursor() as cur:
        cur.execute("SELECT 1 + 1")
        assert cur.fetchone() == (2,)
        cur.execute("INSERT INTO commerce.customer(email) VALUES ('alice@domain.com')")
        cur.execute("SELECT email FROM commerce.customer WHERE email = 'alice@domain.com'")
        assert cur.fetchone() == (b"alice@domain.com",)


def test_show_vitess_tablets_matches_pods(vitess_101, gateway, kd_mariadb):
    _, api, _ = vitess_101
    pods = client.CoreV1Api(api).list_namespaced_pod(NS, label_selector="planetscale.com/component=vttablet").items
    with connect(*gateway, kd_mariadb) as c, c.cursor() as cur:
        cur.execute("SHOW VITESS_TABLETS")
        cols = [d[0] for d in cur.description]
        rows = cur.fetchall()
    assert cols == ["Cell", "Keyspace", "Shard", "TabletType", "State", "Alias", "Hostname", "PrimaryTermStartTime"]
    assert len(rows) == 3
    assert sorted(r[3] for r in rows) == ["PRIMARY", "REPLICA", "REPLICA"]
    assert {r[6] for r in rows} == {p.status.pod_ip for p in pods}
    assert all(r[:3] == ("zone1", "commerce", "-") and r[4] == "SERVING" for r in rows)
    assert next(r for r in rows if r[3] == "PRIMARY")[7]


def test_show_vitess_replication_status_with_lag(vitess_101, gateway, kd_mariadb):
    d, _, _ = vitess_101
    with connect(*gateway, kd_mariadb) as c, c.cursor() as cur:
        cur.execute("SHOW VITESS_TABLETS")
        replica = next(r for r in cur.fetchall() if r[3] == "REPLICA")
        d.vitess.set_replication_lag(replica[5], 42)
        cur.execute("show vitess_replication_status;")
        cols = [x[0] for x in cur.description]
        rows = {r[3]: r for r in cur.fetchall()}
    assert cols == ["Keyspace", "Shard", "TabletType", "Alias", "Hostname", "ReplicationSource",
                    "ReplicationHealth", "ReplicationLag", "ThrottlerStatus"]
    assert len(rows) == 2 and rows[replica[5]][7] == 42
    assert all(r[5].endswith(":3306") for r in rows.values())


def test_use_vitess_targets(gateway, kd_mariadb):
    with connect(*gateway, kd_mariadb) as c, c.cursor() as cur:
        for target in ("commerce/0", "commerce@primary", "`commerce/-`"):
            cur.execute(f"USE {target}")
            cur.execute("SELECT DATABASE()")
            assert cur.fetchone() == ("commerce",)
        c.select_db("commerce@replica")       # COM_INIT_DB
        cur.execute("SELECT DATABASE()")
        assert cur.fetchone() == ("commerce",)
    with connect(*gateway, kd_mariadb, database="commerce/-") as c, c.cursor() as cur:   # handshake database
        cur.execute("SELECT DATABASE()")
        assert cur.fetchone() == ("commerce",)


def test_load_data_is_refused_like_vtgate(gateway, kd_mariadb):
    with connect(*gateway, kd_mariadb) as c, c.cursor() as cur:
        with pytest.raises(pymysql.MySQLError) as e:
            cur.execute("LOAD DATA INFILE '/tmp/x' INTO TABLE commerce.customer")
        assert "unsupported" in str(e.value)
        cur.execute("SELECT 1")


@pytest.mark.skipif(not shutil.which("mysql"), reason="mysql client not installed")
def test_mysql_cli_through_the_proxy(gateway, kd_mariadb):
    host, port = gateway
    sql = "use commerce/0;\nSHOW VITESS_TABLETS;\nselect count(*) from customer;\n"
    r = subprocess.run(["mysql", "-h", host, "-P", str(port), "-u", kd_mariadb.user, f"-p{kd_mariadb.password}",
                        "--batch"], input=sql, capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split("\t") == ["Cell", "Keyspace", "Shard", "TabletType", "State", "Alias", "Hostname",
                                    "PrimaryTermStartTime"]
    assert sum(1 for ln in lines if "\tSERVING\t" in ln) == 3
    assert "count(*)" in lines


def test_cluster_ip_service_has_a_local_address(vitess_101, kd_mariadb):
    d, _, _ = vitess_101
    host, port = d.vtgate.address(NS, GATEWAY)
    with connect(host, port, kd_mariadb) as c, c.cursor() as cur:
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)


def test_down_vtgate_refuses_connections(vitess_101, gateway, kd_mariadb):
    d, api, _ = vitess_101
    core = client.CoreV1Api(api)
    pod = core.list_namespaced_pod(NS, label_selector="planetscale.com/component=vtgate").items[0].metadata.name
    d.kubelet.set_ready(d, NS, pod, "vtgate", False)
    try:
        def no_endpoints():
            ep = core.read_namespaced_endpoints("vtgate-nodeport", NS)
            return not any(s.addresses for s in ep.subsets or [])
        wait_for(no_endpoints, what="no ready vtgate endpoints")
        with pytest.raises(pymysql.err.OperationalError):
            connect(*gateway, kd_mariadb)
    finally:
        d.kubelet.set_ready(d, NS, pod, "vtgate", True)
    wait_for(lambda: not no_endpoints(), what="vtgate back")
    with connect(*gateway, kd_mariadb) as c, c.cursor() as cur:
        cur.execute("SELECT 1")
