"""Benchmark: the Harbor webhook receiver (`vtflow webhook serve`, its own process) in front of
this benchmark's own Prefect server (SQLite), as `make up` runs them.

Prints one JSON line:
{"bench":"webhook","pushes":..,"answer_p50_ms":..,"answer_p99_ms":..,"run_created_p50_ms":..,"queued":..,
 "redelivered_rps":..,"bare_create_p50_ms":..,"ratio_answer_vs_bare_create":..,
 "delivery40_answer_ms":..,"ratio_delivery40_vs_harbor_limit":..}

answer_*: time from sending a push (a Default payload, a new digest each, one after another as
Harbor delivers them) to the receiver's answer. run_created_p50_ms: time from sending the same
push to its flow run being readable from the Prefect API (polled every 5 ms by idempotency key).
queued: pushes answered "queued" (Prefect slower than the receiver's hand-over timeout).
redelivered_rps: answers per second to pushes already accepted (all duplicates, from the
receiver's cache; 16 at a time for REDELIVER_S). bare_create_p50_ms: the peer, a bare
`create_flow_run_from_deployment` with an idempotency key, from this process to the same server.
delivery40_answer_ms: the answer to one delivery of 40 resources (new digests: 40 creates), worst
of DELIVERIES_40; ratio_delivery40_vs_harbor_limit: that over Harbor's 3 s (must stay below 1).
Goals: answer p99 < 300 ms, run created < 500 ms (median), the 40-resource ratio < 0.5.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from benchenv import PORT, REPO, STATE  # noqa: E402  (first: it prepares the environment)

from testbed import free_port, wait_port  # noqa: E402

PUSHES = int(os.environ.get("BENCH_PUSHES", "200"))
BARE = 100
REDELIVER_S = 3.0
DELIVERIES_40 = 3
HARBOR_LIMIT_S = 3.0
SECRET = "Bearer bench-" + uuid.uuid4().hex
SCHEMA = {"title": "Parameters", "type": "object", "properties": {
    "component": {"type": "string"}, "repository": {"type": "string"}, "tag": {"type": "string"},
    "digest": {"type": "string"}, "pushed_at": {"type": "integer"}, "target_block": {"type": "string"},
    "mysql_block": {"type": "string"}}, "required": ["component", "repository", "tag", "digest", "pushed_at"]}


def push(n: int) -> tuple[dict, str]:
    digest = f"sha256:{uuid.uuid4().hex * 2}"
    tag = f"v23.0.{n}"
    return ({"type": "PUSH_ARTIFACT", "occur_at": int(time.time()), "operator": "ci", "event_data": {
        "resources": [{"digest": digest, "tag": tag, "resource_url": f"harbor.lan/vitess/lite:{tag}"}],
        "repository": {"name": "lite", "namespace": "vitess", "repo_full_name": "vitess/lite", "repo_type": "private"}}},
        f"harbor:harbor.lan/vitess/lite@{digest}")


def main() -> None:
    from vtflow.stack import PrefectServer, StackSettings, register_blocks

    server = PrefectServer(StackSettings.from_env()).start()
    receiver = None
    try:
        register_blocks()
        from prefect.client.orchestration import get_client

        from blocks.harbor import HarborWebhook

        with get_client(sync_client=True) as client:
            flow_id = client.create_flow_from_name("redeploy")
            deployment_id = client.create_deployment(flow_id=flow_id, name="bench", parameter_openapi_schema=SCHEMA,
                                                     enforce_parameter_schema=True)
        HarborWebhook(auth_header=SECRET, deployment="redeploy/bench",
                      routes=[{"repository": "vitess/lite", "tags": "v*", "component": "vitess"}]).save("bench")
        port = free_port()
        receiver = subprocess.Popen(
            [sys.executable, "-m", "vtflow.cli", "webhook", "serve", "--port", str(port), "--block", "bench"],
            cwd=REPO, env={**os.environ, "PREFECT_API_URL": f"http://127.0.0.1:{PORT}/api"},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_port("127.0.0.1", port, 60, receiver, "webhook receiver")
        figures = asyncio.run(measure(f"http://127.0.0.1:{port}", deployment_id))
    finally:
        if receiver is not None:
            receiver.terminate()
            receiver.wait(20)
        server.stop()
        shutil.rmtree(STATE, ignore_errors=True)
    print(json.dumps({"bench": "webhook", **figures}))


async def measure(url: str, deployment_id) -> dict:
    import httpx
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterIdempotencyKey

    headers = {"authorization": SECRET, "content-type": "application/json"}
    answers, created, queued, accepted = [], [], 0, []
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as http, get_client() as prefect:
        for n in range(10):  # warm up: connections, the block, the deployment id
            await http.post("/harbor", content=json.dumps(push(1000 + n)[0]))
        for n in range(PUSHES):
            body, key = push(n)
            started = time.perf_counter()
            r = await http.post("/harbor", content=json.dumps(body))
            answers.append(time.perf_counter() - started)
            assert r.status_code == 202 and r.json()["status"] in ("accepted", "queued"), r.text
            queued += r.json()["status"] == "queued"
            accepted.append(json.dumps(body))
            wanted = FlowRunFilter(idempotency_key=FlowRunFilterIdempotencyKey(any_=[key]))
            while not await prefect.read_flow_runs(flow_run_filter=wanted, limit=1):
                await asyncio.sleep(0.005)
                assert time.perf_counter() - started < 60, f"no run for {key}"
            created.append(time.perf_counter() - started)

        count, stop = 0, time.perf_counter() + REDELIVER_S

        async def redeliver(i: int) -> None:
            nonlocal count
            while time.perf_counter() < stop:
                r = await http.post("/harbor", content=accepted[(count + i) % len(accepted)])
                answer = r.json()
                assert answer.get("duplicate") is True or answer["status"] == "queued", answer
                count += 1

        started = time.perf_counter()
        await asyncio.gather(*(redeliver(i) for i in range(16)))
        redelivered_rps = count / (time.perf_counter() - started)

        big = []
        for _ in range(DELIVERIES_40):
            body = push(0)[0]
            body["event_data"]["resources"] = [
                {"digest": f"sha256:{uuid.uuid4().hex * 2}", "tag": f"v40.{i}",
                 "resource_url": f"harbor.lan/vitess/lite:v40.{i}"} for i in range(40)]
            started = time.perf_counter()
            r = await http.post("/harbor", content=json.dumps(body))
            big.append(time.perf_counter() - started)
            assert r.status_code == 202 and len(r.json()["results"]) == 40, r.text

        bare = []
        for _ in range(BARE):
            started = time.perf_counter()
            await prefect.create_flow_run_from_deployment(deployment_id, parameters={
                "component": "vitess", "repository": "harbor.lan/vitess/lite", "tag": "v1", "digest": "sha256:0",
                "pushed_at": 0}, idempotency_key=f"bare-{uuid.uuid4().hex}")
            bare.append(time.perf_counter() - started)

    answers.sort()
    answer_p50 = statistics.median(answers) * 1000
    bare_p50 = statistics.median(bare) * 1000
    return {
        "pushes": PUSHES,
        "answer_p50_ms": round(answer_p50, 1),
        "answer_p99_ms": round(answers[min(len(answers) - 1, int(len(answers) * 0.99))] * 1000, 1),
        "run_created_p50_ms": round(statistics.median(created) * 1000, 1),
        "queued": queued,
        "redelivered_rps": round(redelivered_rps),
        "bare_create_p50_ms": round(bare_p50, 1),
        "ratio_answer_vs_bare_create": round(answer_p50 / bare_p50, 2),
        "delivery40_answer_ms": round(max(big) * 1000, 1),
        "ratio_delivery40_vs_harbor_limit": round(max(big) / HARBOR_LIMIT_S, 3),
    }


if __name__ == "__main__":
    main()
