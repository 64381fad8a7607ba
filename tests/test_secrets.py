"""No secret value reaches the Prefect database: not in logs, parameters, artifacts, errors.

Blocks are created from the command line and through the API with distinctive secrets; the
node-prep flow then runs through good and bad paths (an unreachable node, an unknown host key,
a wrong passphrase). Finally every table of the server's SQLite database and the server log are
dumped and searched. A positive control (this run's own log lines and artifact) proves the
dump contains what the flows wrote.
"""

import asyncio
import sqlite3
import subprocess
import sys
import os
import uuid

import yaml

from blocks.harbor import HarborWebhook
from blocks.mysql import MySQLCredentials
from blocks.target import VitessTarget
from flows.node_prep import node_prep
from helpers import nodes_block, save_nodes_block, wait_until
from tasks.node_prep import NodeRequirements
from testbed import free_port


def dump(db_path) -> str:
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return "\n".join(con.iterdump())
    finally:
        con.close()


def test_secrets_never_reach_the_prefect_database(prefect_server, prefect_db, node_bed, nodes, tmp_path):
    tag = uuid.uuid4().hex[:10]
    passphrase = f"ssh-passphrase-{tag}"
    mysql_pw = f"mysql-password-{tag}"
    harbor = f"harbor-header-{tag}"
    kube_token = f"kube-token-{tag}"

    key = tmp_path / "enc_key"
    key.write_bytes(node_bed.client_key.read_bytes())
    key.chmod(0o600)
    subprocess.run(["ssh-keygen", "-q", "-p", "-P", "", "-N", passphrase, "-f", str(key)], check=True)
    key_text = key.read_text()
    key_fragments = [line for line in key_text.splitlines()[1:-1] if len(line) > 40][1:3]
    assert key_fragments

    # from the command line, the passphrase from the environment
    inventory = tmp_path / "inv.yaml"
    inventory.write_text(yaml.safe_dump(node_bed.inventory(nodes[:3])))
    known = tmp_path / "known_hosts"
    known.write_text(node_bed.known_hosts(nodes[:2]))  # node3's key left out on purpose
    cli_name = f"secret-cli-{tag}"
    r = subprocess.run([sys.executable, "-m", "vtflow.cli", "block", "create", "nodes", "--name", cli_name,
                        "--inventory", str(inventory), "--key", str(key), "--passphrase-env", "VT_PASS",
                        "--known-hosts", str(known), "--scan-host-keys"],
                       env={**os.environ, "VT_PASS": passphrase}, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    for secret in (passphrase, *key_fragments):
        assert secret not in r.stdout + r.stderr

    MySQLCredentials(user="app", password=mysql_pw).save(f"secret-mysql-{tag}", overwrite=True)
    HarborWebhook(auth_header=harbor).save(f"secret-harbor-{tag}", overwrite=True)
    VitessTarget(kubeconfig=yaml.safe_dump({
        "clusters": [{"name": "c", "cluster": {"server": "https://10.0.0.1:6443"}}],
        "users": [{"name": "u", "user": {"token": kube_token}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}]})).save(f"secret-target-{tag}", overwrite=True)

    modest = NodeRequirements(min_cpus=1, min_memory_gib=1, min_available_memory_gib=0, min_disk_gib=0.1)
    ok = asyncio.run(node_prep(nodes_block=cli_name, requirements=modest, return_state=True))
    assert ok.is_completed(), ok.message

    ghost = {"name": "ghost", "address": "127.0.0.98", "port": free_port("127.0.0.98")}
    bad_name = save_nodes_block(nodes_block(node_bed, nodes[:2], key=key, passphrase=passphrase,
                                            known_hosts=node_bed.known_hosts(nodes[:1]), extra_nodes=[ghost]))
    bad = asyncio.run(node_prep(nodes_block=bad_name, requirements=modest, return_state=True))
    assert bad.is_failed()
    wrong_pass = save_nodes_block(nodes_block(node_bed, nodes[:1], key=key, passphrase=passphrase + "x"))
    assert asyncio.run(node_prep(nodes_block=wrong_pass, requirements=modest, return_state=True)).is_failed()

    from prefect.logging.handlers import APILogWorker
    from prefect.events.worker import EventsWorker
    APILogWorker.drain_all(timeout=10)
    EventsWorker.drain_all(timeout=10)

    control = f"Node prep of SSH nodes block `{bad_name}`"

    def written():  # the positive controls are the event that proves the flows' writes have landed
        text = dump(prefect_db)
        return text if all(c in text for c in (control, "refused): node2, ghost", "so the connection was refused")) else None
    text = wait_until(written, 20, "the failed run's artifact, message and error logs in the Prefect database",
                      interval=0.5)
    assert control in text, "positive control: the artifact is in the dump"
    assert "refused): node2, ghost" in text, "positive control: the failure message is in the dump"
    assert "so the connection was refused" in text, "positive control: error logs are in the dump"
    text += (prefect_server.log.read_text() if prefect_server.log.exists() else "")

    for secret in (passphrase, mysql_pw, harbor, kube_token, *key_fragments):
        assert secret not in text, f"a secret ({secret[:12]}...) was found in the Prefect database or server log"
