"""`python -m kubedouble --mysql-backend ...`: the sandbox's way in, end to end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pymysql
from kubernetes import client, config
from kubernetes.stream import stream

from vtflow.kube import discovery_client

from testbed import free_port
from vitess_helpers import NS, apply_file, cluster_ready, cluster_status, make_namespace, wait_for


def test_operators_vtctld_and_vtgate_from_the_command_line(tmp_path, kd_mariadb):
    kc = tmp_path / "kubeconfig"
    env = {**os.environ, "KUBEDOUBLE_MYSQL_PASSWORD": kd_mariadb.password}
    proc = subprocess.Popen([sys.executable, "-m", "kubedouble", "--port", str(free_port()), "--kubeconfig",
                             str(kc), "--nodes", "3", "--node-cpu", "8", "--node-memory", "16Gi",
                             "--pod-start-delay", "0.02", "--mysql-backend", f"{kd_mariadb.host}:{kd_mariadb.port}",
                             "--mysql-user", kd_mariadb.user], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert "kubedouble serving" in proc.stdout.readline()
        api = config.new_client_from_config(str(kc))
        dyn = discovery_client(api)
        make_namespace(api)
        apply_file(dyn, "operator.yaml")
        apply_file(dyn, "101_initial_cluster.yaml")
        wait_for(lambda: cluster_ready(cluster_status(dyn)), timeout=15, what="cluster ready")
        core = client.CoreV1Api(api)
        vtctld = core.list_namespaced_pod(NS, label_selector="planetscale.com/component=vtctld").items[0]
        out = stream(core.connect_get_namespaced_pod_exec, vtctld.metadata.name, NS, container="vtctld",
                     command=["vtctldclient", "--server", "localhost:15999", "ApplySchema",
                              "--sql=create table if not exists main_t (id int primary key)", "commerce"],
                     stderr=True, stdin=False, stdout=True, tty=False)
        assert out == ""
        gw = cluster_status(dyn)["gatewayServiceName"]
        core.patch_namespaced_service(gw, NS, {"spec": {"type": "NodePort"}})
        port = core.read_namespaced_service(gw, NS).spec.ports[2].node_port

        def query():
            try:
                with pymysql.connect(host="127.0.0.1", port=port, user=kd_mariadb.user, password=kd_mariadb.password,
                                     database="commerce/-", connect_timeout=2) as c, c.cursor() as cur:
                    cur.execute("SHOW TABLES LIKE 'main_t'")
                    return cur.fetchall()
            except pymysql.MySQLError:
                return None
        assert wait_for(query, what="vtgate node port answers") == (("main_t",),)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
