"""Benchmark: node prep on 1, 5 and 20 real sshd nodes, against itself run one node at a time
and against ansible-core running the same probe on the same nodes (forks = node count).

Prints one JSON line:
{"bench":"node_prep","wall_s":{"1":..,"5":..,"20":..},"ratio_20_vs_1":..,"ratio_vs_sequential":..,"ratio_vs_ansible":..}

vtflow's figures are whole flow runs against a real Prefect server (run creation, task runs,
the artifact), i.e. what a user waits for. Ansible runs the probe with the `raw` module (its
cheapest path: no Python module shipped) and fresh SSH control sockets, as a first run would.
Each figure is the median of REPEAT runs, each started with the server idle. Needs root (sshd nodes) and `pip install -e .[bench]`.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from benchenv import REPEAT, STATE  # noqa: E402  (first: it prepares the environment for Prefect)
from testbed import SSHNodeBed  # noqa: E402

SIZES = (1, 5, 20)
SETTLE_S = 3.0


def main() -> None:
    from blocks.nodes import SSHNodes
    from flows.node_prep import node_prep
    from tasks.node_prep import NodeRequirements, probe_script
    from vtflow.stack import PrefectServer, StackSettings

    server = PrefectServer(StackSettings.from_env()).start()
    bed = SSHNodeBed(max(SIZES)).start()
    req = NodeRequirements(min_cpus=1, min_memory_gib=1, min_available_memory_gib=0, min_disk_gib=0.1)
    try:
        for k in SIZES:
            inv = bed.inventory(bed.nodes[:k])
            SSHNodes(nodes=inv["nodes"], user=inv["user"], private_key=bed.client_key.read_text(),
                     known_hosts=bed.known_hosts(bed.nodes[:k])).save(f"bench-{k}", overwrite=True)

        async def flow_wall(k, **params):
            # Let the server finish writing the previous run's task events first: on SQLite a
            # 20-task run leaves ~2 s of writes that would block the next run's creation.
            await asyncio.sleep(SETTLE_S)
            t = time.perf_counter()
            state = await node_prep(nodes_block=f"bench-{k}", requirements=req, return_state=True, **params)
            wall = time.perf_counter() - t
            assert state.is_completed(), state.message
            return wall

        async def measure():
            # one event loop for every run, as in a served deployment; Prefect's clients are
            # bound to the loop that made them and reconnect (~2 s) after an asyncio.run per run
            await flow_wall(1)  # warm-up: imports, first connection to the server
            wall = {k: statistics.median([await flow_wall(k) for _ in range(REPEAT)]) for k in SIZES}
            sequential = statistics.median([await flow_wall(20, max_parallel=1) for _ in range(REPEAT)])
            return wall, sequential

        wall, sequential = asyncio.run(measure())
        ansible = statistics.median(ansible_wall(bed, bed.nodes[:20], probe_script) for _ in range(REPEAT))
    finally:
        bed.stop()
        server.stop()
        shutil.rmtree(STATE, ignore_errors=True)
    print(json.dumps({
        "bench": "node_prep",
        "wall_s": {str(k): round(v, 3) for k, v in wall.items()},
        "ratio_20_vs_1": round(wall[20] / wall[1], 3),
        "ratio_vs_sequential": round(wall[20] / sequential, 3),
        "ratio_vs_ansible": round(wall[20] / ansible, 3),
    }))


def ansible_wall(bed, nodes, probe_script) -> float:
    """ansible-core, a playbook with the raw module running the same per-node probe script
    (-v prints each host's output), forks = node count."""
    import yaml

    from blocks.nodes import NodeSpec

    work = Path(tempfile.mkdtemp(prefix="ansible-", dir=STATE))
    key = work / "key"
    shutil.copy(bed.client_key, key)
    key.chmod(0o600)
    (work / "known_hosts").write_text(bed.known_hosts(nodes))
    hosts = {}
    for n in nodes:
        peers = [m.address for m in nodes if m is not n]
        spec = NodeSpec(name=n.name, address=n.address, port=n.port)
        hosts[n.name] = {"ansible_host": n.address, "ansible_port": n.port, "probe": probe_script(spec, peers, "/var/lib/rancher")}
    (work / "inventory.yml").write_text(yaml.safe_dump({"all": {"hosts": hosts, "vars": {
        "ansible_user": "vtflow-node", "ansible_ssh_private_key_file": str(key),
        "ansible_ssh_common_args": f"-o UserKnownHostsFile={work / 'known_hosts'} -o StrictHostKeyChecking=yes"}}}))
    env = {**os.environ, "ANSIBLE_HOST_KEY_CHECKING": "True", "ANSIBLE_SSH_CONTROL_PATH_DIR": str(work / "cp"),
           "ANSIBLE_LOCAL_TEMP": str(work / "tmp"), "ANSIBLE_NOCOLOR": "1"}
    (work / "probe.yml").write_text(yaml.safe_dump([{"hosts": "all", "gather_facts": False, "tasks": [
        {"name": "probe", "raw": "{{ probe }}"}]}]))
    playbook = Path(sys.executable).with_name("ansible-playbook")
    t = time.perf_counter()
    r = subprocess.run([str(playbook), "-v", "-i", str(work / "inventory.yml"), "-f", str(len(nodes)), str(work / "probe.yml")],
                       env=env, capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - t
    if r.returncode != 0 or r.stdout.count("\"end=1\"") != len(nodes):  # once per host in stdout_lines
        raise SystemExit(f"ansible failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return wall


if __name__ == "__main__":
    main()
