"""vtflow/webhook.py: the Harbor webhook receiver, over real HTTP (uvicorn on a free port)
against this session's real Prefect server.

The redeploy deployment is made here through the Prefect API (a flow of its own, a deployment
per test, a parameter schema enforced by the server): its runs stay Scheduled, which is enough
to see that exactly the right runs exist. "Prefect away" is a TCP proxy in front of the real
server that forwards, holds connections without answering, or refuses them.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blocks.harbor import HarborWebhook
from helpers import wait_until
from testbed import free_port
from vtflow.stack import port_is_free
from vtflow.webhook import ReceiverSettings, create_app, server_config

REPO = Path(__file__).resolve().parents[2]
SECRET = "Bearer webhook-test-secret-0123456789"
HARBOR_TIMEOUT = 3.0  # what Harbor waits for an answer

PARAMETERS_SCHEMA = {
    "title": "Parameters", "type": "object",
    "properties": {
        "component": {"type": "string", "enum": ["vitess", "vtadmin", "operator"]},
        "repository": {"type": "string"}, "tag": {"type": "string"}, "digest": {"type": "string"},
        "pushed_at": {"type": "integer"}, "target_block": {"type": "string"}, "mysql_block": {"type": "string"},
    },
    # no "tag": an untagged push (by digest) is redeployed without one, as the redeploy flow allows
    "required": ["component", "repository", "digest", "pushed_at", "target_block", "mysql_block"],
}


def digest(n=None) -> str:
    return "sha256:" + (uuid.uuid4().hex * 2 if n is None else f"{n:064x}")


def push_body(tag="v23.0.3-mysql80", dig=None, repo="vitess/lite", event="PUSH_ARTIFACT", host="harbor.lan",
              occur_at=1714564800) -> dict:
    dig = dig or digest()
    project, name = repo.split("/", 1)
    return {"type": event, "occur_at": occur_at, "operator": "ci", "event_data": {
        # an untagged push (Harbor puts the digest in "tag") is pulled by digest
        "resources": [{"digest": dig, "tag": tag,
                       "resource_url": f"{host}/{repo}{'@' if tag.startswith('sha256:') else ':'}{tag}"}],
        "repository": {"date_created": 1714000000, "name": name, "namespace": project, "repo_full_name": repo,
                       "repo_type": "private"}}}


def cloudevent_body(tag="v23.0.3-mysql80", dig=None) -> dict:
    return {"specversion": "1.0", "id": str(uuid.uuid4()), "requestid": str(uuid.uuid4()),
            "source": "/projects/2/webhook/policies/7", "type": "harbor.artifact.pushed",
            "datacontenttype": "application/json", "time": "2024-05-01T12:00:00.25Z", "operator": "ci",
            "data": push_body(tag, dig)["event_data"]}


# ---------------------------------------------------------------- fixtures


def make_deployment(schema=PARAMETERS_SCHEMA) -> tuple[str, str]:
    from prefect.client.orchestration import get_client

    name = f"t-{uuid.uuid4().hex[:10]}"
    with get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name("redeploy-webhook-test")
        deployment_id = client.create_deployment(flow_id=flow_id, name=name, parameter_openapi_schema=schema,
                                                 enforce_parameter_schema=True)
    return f"redeploy-webhook-test/{name}", str(deployment_id)


def runs_of(deployment_id: str) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])))


def wait_for_runs(deployment_id: str, count: int, timeout: float = 30.0) -> list:
    seen: list = []

    def enough():
        seen[:] = runs_of(deployment_id)
        return list(seen) if len(seen) >= count else None
    return wait_until(enough, timeout, f"{count} runs of deployment {deployment_id}", interval=0.2,
                      detail=lambda: f"{len(seen)} runs so far")


def spooled(url: str) -> int:
    return httpx.get(f"{url}/healthz").json()["spooled"]


def wait_spool_empty(url: str, timeout: float = 10.0) -> None:
    """Until every spooled request has had Prefect's answer: then nothing is left that could make a run."""
    wait_until(lambda: spooled(url) == 0, timeout, f"the spool of the receiver at {url} to be empty", interval=0.1)


def save_block(deployment: str, name: str | None = None, **fields) -> str:
    name = name or f"harbor-{uuid.uuid4().hex[:8]}"
    HarborWebhook(auth_header=SECRET, deployment=deployment, **fields, routes=[
        {"repository": "vitess/lite", "tags": "v*", "component": "vitess", "target_block": "prod", "mysql_block": "prod-db"},
        {"repository": "vitess/vtadmin", "component": "vtadmin"},
    ]).save(name, overwrite=True)
    return name


@contextlib.contextmanager
def receiver(settings: ReceiverSettings):
    """The receiver app on a real uvicorn server in a thread; yields its base URL."""
    port = free_port()
    # as `vtflow webhook serve` configures it; uvicorn's loggers left to propagate, so caplog sees them
    server = uvicorn.Server(server_config(create_app(settings), "127.0.0.1", port, settings, log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()

    def started() -> bool:
        assert thread.is_alive(), "the receiver did not start"
        return server.started
    wait_until(started, 30, f"the receiver to start on 127.0.0.1:{port}", interval=0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(20)


DEFAULT = ReceiverSettings(spool_dir=Path("/nonexistent"))


def quick(tmp_path, block, **overrides) -> ReceiverSettings:
    """Settings with short pauses, so that tests see hand-overs and block changes quickly.

    Prefect on SQLite stalls for seconds now and then (its background writers hold the lock):
    tests of the synchronous answer wait for Prefect as long as needed (``handover_timeout``, and
    ``retry_timeout`` for the one attempt: shorter, a stall past it is answered ``queued``, which
    failed a CI run); the tests of Harbor's 3 s budget use the receiver's default hand-over."""
    values = dict(block=block, spool_dir=tmp_path / "spool", missing_block_ttl=0.2, retry_timeout=20.0,
                  retry_max_delay=0.5, handover_timeout=20.0)
    return ReceiverSettings(**{**values, **overrides})


def proxied(tmp_path, block, proxy, **overrides) -> ReceiverSettings:
    """Settings for a receiver behind the proxy: an attempt against a refused or hung Prefect gives up
    after 2 s (the Prefect client itself retries a refused connection for longer), so that the
    hand-over resumes soon after the proxy forwards again."""
    return quick(tmp_path, block, api_url=proxy.url, retry_timeout=2.0, **overrides)


@pytest.fixture
def routed(prefect_server):
    """A fresh deployment and a Harbor webhook block routing vitess/lite (v*) and vitess/vtadmin to it."""
    deployment, deployment_id = make_deployment()
    return deployment, deployment_id, save_block(deployment)


def post(url, body, auth=SECRET, content_type="application/json", client=None, **kw):
    headers = {"content-type": content_type}
    if auth is not None:
        headers["authorization"] = auth
    content = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return (client or httpx).post(f"{url}/harbor", content=content, headers=headers, timeout=10, **kw)


# ---------------------------------------------------------------- the happy paths


def test_default_payload_creates_one_run_with_the_parameters(routed, tmp_path, caplog):
    deployment, deployment_id, block = routed
    dig = digest()
    caplog.set_level(logging.DEBUG)
    with receiver(quick(tmp_path, block)) as url:
        r = post(url, push_body(dig=dig))
    assert r.status_code == 202, r.text
    answer = r.json()
    assert answer["status"] == "accepted" and answer["duplicate"] is False
    [run] = runs_of(deployment_id)
    assert str(run.id) == answer["flow_run_id"]
    assert run.parameters == {"component": "vitess", "repository": "harbor.lan/vitess/lite", "tag": "v23.0.3-mysql80",
                              "digest": dig, "pushed_at": 1714564800, "target_block": "prod", "mysql_block": "prod-db"}
    assert run.idempotency_key == f"harbor:harbor.lan/vitess/lite@{dig}"
    assert run.state.type.value == "SCHEDULED" and "harbor-webhook" in run.tags
    assert "webhook-test-secret" not in json.dumps(run.parameters) + caplog.text + r.text


def test_cloudevents_payload_creates_one_run_with_the_parameters(routed, tmp_path):
    deployment, deployment_id, block = routed
    dig = digest()
    with receiver(quick(tmp_path, block)) as url:
        r = post(url, cloudevent_body("v23.1.0", dig), content_type="application/cloudevents+json")
    assert r.status_code == 202 and r.json()["status"] == "accepted", r.text
    [run] = runs_of(deployment_id)
    assert run.parameters == {"component": "vitess", "repository": "harbor.lan/vitess/lite", "tag": "v23.1.0",
                              "digest": dig, "pushed_at": 1714564800, "target_block": "prod", "mysql_block": "prod-db"}


def test_the_same_delivery_three_times_makes_one_run(routed, tmp_path):
    deployment, deployment_id, block = routed
    body = push_body()
    with receiver(quick(tmp_path, block)) as url:
        answers = [post(url, body).json() for _ in range(3)]
    assert [a["duplicate"] for a in answers] == [False, True, True]
    assert len({a["flow_run_id"] for a in answers}) == 1
    assert len(runs_of(deployment_id)) == 1

    # a restarted receiver has no memory of it: Prefect's idempotency key answers
    with receiver(quick(tmp_path, block)) as url:
        again = post(url, cloudevent_body(dig=body["event_data"]["resources"][0]["digest"]),
                     content_type="application/cloudevents+json").json()
    assert again == {"status": "accepted", "flow_run_id": answers[0]["flow_run_id"], "duplicate": True}
    assert len(runs_of(deployment_id)) == 1


def test_redeliveries_at_the_same_moment_make_one_run(routed, tmp_path):
    deployment, deployment_id, block = routed
    body = push_body()
    with receiver(quick(tmp_path, block)) as url, concurrent.futures.ThreadPoolExecutor(5) as pool:
        answers = [f.result().json() for f in [pool.submit(post, url, body) for _ in range(5)]]
    assert sorted(a["duplicate"] for a in answers) == [False, True, True, True, True]
    assert len({a["flow_run_id"] for a in answers}) == 1 and len(runs_of(deployment_id)) == 1


def test_ten_different_pushes_at_once_make_ten_runs(routed, tmp_path):
    deployment, deployment_id, block = routed
    bodies = [push_body(tag=f"v23.0.{i}") for i in range(10)]
    with receiver(quick(tmp_path, block, handover_timeout=DEFAULT.handover_timeout)) as url, \
            concurrent.futures.ThreadPoolExecutor(10) as pool:
        assert post(url, push_body(repo="library/nginx")).json()["status"] == "ignored"  # the block is cached
        started = time.monotonic()
        answers = list(pool.map(lambda b: post(url, b), bodies))
        elapsed = time.monotonic() - started
        # each accepted at once, or queued (a create that SQLite holds up goes on in the background)
        assert all(a.status_code == 202 and a.json()["status"] in ("accepted", "queued") for a in answers), \
            [a.text for a in answers]
        assert elapsed < HARBOR_TIMEOUT
        runs = wait_for_runs(deployment_id, 10)
        wait_spool_empty(url)  # every create has had its answer: no run can still appear
    assert len(runs_of(deployment_id)) == 10
    assert sorted(r.parameters["tag"] for r in runs) == sorted(f"v23.0.{i}" for i in range(10))


def test_a_delivery_of_two_artifacts_makes_two_runs(routed, tmp_path):
    deployment, deployment_id, block = routed
    body = push_body(tag="v1")
    body["event_data"]["resources"].append(
        {"digest": digest(), "tag": "v2", "resource_url": "harbor.lan/vitess/lite:v2"})
    with receiver(quick(tmp_path, block)) as url:
        answer = post(url, body).json()
    assert answer["status"] == "accepted" and [r["duplicate"] for r in answer["results"]] == [False, False]
    assert sorted(r.parameters["tag"] for r in runs_of(deployment_id)) == ["v1", "v2"]


# ---------------------------------------------------------------- what is refused or ignored


def test_missing_or_wrong_auth_is_401_before_the_body_is_read(routed, tmp_path):
    deployment, deployment_id, block = routed
    with receiver(quick(tmp_path, block)) as url:
        for auth in (None, "", "Bearer webhook-test-secret-012345678", SECRET + "x", SECRET.lower(), "Basic " + SECRET):
            r = post(url, push_body(), auth=auth)
            assert r.status_code == 401, auth
            assert r.json()["status"] == "unauthorized" and block in r.json()["reason"]
            assert "webhook-test-secret" not in r.text
        # a huge body with a wrong header: refused on the header alone
        assert post(url, b"x" * 2_000_000, auth="wrong").status_code == 401
    assert runs_of(deployment_id) == []


def test_bad_bodies_are_400_with_the_reason(routed, tmp_path):
    deployment, deployment_id, block = routed
    wrong_digest = push_body()
    wrong_digest["event_data"]["resources"][0]["digest"] = 42
    no_resources = push_body()
    del no_resources["event_data"]["resources"]
    with receiver(quick(tmp_path, block)) as url:
        cases = {
            "not JSON": post(url, b'{"type": "PUSH_ARTIFACT",'),
            "not an object": post(url, b"[]"),
            '"event_data.resources[0].digest"': post(url, wrong_digest),
            '"event_data.resources"': post(url, no_resources),
            '"specversion"': post(url, push_body(), content_type="application/cloudevents+json"),
            "nests too deeply": post(url, b"[" * 30_000 + b"]" * 30_000),
        }
    for reason, r in cases.items():
        assert r.status_code == 400, (reason, r.text)
        assert r.json()["status"] == "rejected" and reason in r.json()["reason"], r.text
    assert runs_of(deployment_id) == []


def test_oversized_bodies_are_413_by_length_and_by_stream(routed, tmp_path):
    deployment, deployment_id, block = routed
    big = json.dumps({**push_body(), "padding": "x" * 70_000}).encode()

    def chunks():  # no Content-Length: the limit holds on the streamed body
        for i in range(0, len(big), 4096):
            yield big[i:i + 4096]

    with receiver(quick(tmp_path, block)) as url:
        by_length = post(url, big)
        by_stream = httpx.post(f"{url}/harbor", content=chunks(),
                               headers={"authorization": SECRET, "content-type": "application/json"}, timeout=10)
        just_fits = post(url, json.dumps({**push_body(repo="library/nginx"), "pad": "x" * 60_000}).encode())
    assert by_length.status_code == 413 and "65536 bytes" in by_length.json()["reason"]
    assert by_stream.status_code == 413
    assert just_fits.status_code == 202 and just_fits.json()["status"] == "ignored"
    assert runs_of(deployment_id) == []


def test_what_is_not_routed_is_202_ignored_with_the_reason(routed, tmp_path):
    deployment, deployment_id, block = routed
    no_digest = push_body()
    del no_digest["event_data"]["resources"][0]["digest"]
    untagged = digest()
    with receiver(quick(tmp_path, block)) as url:
        cases = {
            "PULL_ARTIFACT": post(url, push_body(event="PULL_ARTIFACT")),
            "SCANNING_COMPLETED": post(url, {"type": "SCANNING_COMPLETED", "occur_at": 1, "event_data": {}}),
            "harbor.artifact.deleted": post(url, {**cloudevent_body(), "type": "harbor.artifact.deleted"},
                                            content_type="application/cloudevents+json"),
            "library/nginx is not mapped": post(url, push_body(repo="library/nginx")),
            "matches no route pattern": post(url, push_body(tag="latest")),
            "no digest": post(url, no_digest),
            "no tag": post(url, push_body(tag=untagged, dig=untagged)),
        }
    for reason, r in cases.items():
        assert r.status_code == 202, (reason, r.text)
        assert r.json()["status"] == "ignored" and reason in r.json()["reason"], r.text
    assert runs_of(deployment_id) == []


def test_without_a_block_it_answers_503_then_serves_once_it_exists(prefect_server, tmp_path):
    deployment, deployment_id = make_deployment()
    name = f"harbor-later-{uuid.uuid4().hex[:6]}"
    with receiver(quick(tmp_path, name)) as url:
        health = httpx.get(f"{url}/healthz").json()
        assert health["status"] == "ok" and health["block_loaded"] is False
        r = post(url, push_body())
        assert r.status_code == 503
        assert f"vtflow block create harbor --name {name}" in r.json()["reason"]
        save_block(deployment, name)
        # not a wait for an event: the receiver looks for a missing block again only once
        # missing_block_ttl (0.2 s here) has passed on its clock, so that time must pass
        time.sleep(0.3)
        r = post(url, push_body())
        assert r.status_code == 202 and r.json()["status"] == "accepted", r.text
        assert httpx.get(f"{url}/healthz").json()["block_loaded"] is True
    assert len(runs_of(deployment_id)) == 1


def test_prefect_refusing_the_run_is_502_naming_the_deployment(prefect_server, tmp_path):
    schema = {**PARAMETERS_SCHEMA, "properties": {**PARAMETERS_SCHEMA["properties"], "image": {"type": "string"}},
              "required": PARAMETERS_SCHEMA["required"] + ["image"]}
    deployment, deployment_id = make_deployment(schema)
    with receiver(quick(tmp_path, save_block(deployment))) as url:
        r = post(url, push_body())
    assert r.status_code == 502 and r.json()["status"] == "failed"
    assert f"deployment {deployment}" in r.json()["reason"] and "409" in r.json()["reason"]
    assert runs_of(deployment_id) == [] and not (tmp_path / "spool" / "spool.jsonl").exists()


# ---------------------------------------------------------------- Prefect slow, away, or not ready


class Proxy:
    """TCP proxy to the Prefect server: ``forward``, ``hang`` (accept, never answer) or ``refuse``."""

    def __init__(self, target_port: int):
        self.target = target_port
        self.port = free_port()
        self.mode = "forward"
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._listen()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def _listen(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.1)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener) -> None:
        while self._listener is listener:
            try:
                conn, _ = listener.accept()
            except (socket.timeout, OSError):
                continue
            with self._lock:
                self._sockets.append(conn)
                if self.mode != "forward":
                    continue  # held: the client waits for an answer that never comes
                upstream = socket.create_connection(("127.0.0.1", self.target))
                self._sockets.append(upstream)
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src, dst) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def set(self, mode: str) -> None:
        with self._lock:
            self.mode = mode
            for s in self._sockets:  # no connection outlives a change: the client must come back
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            self._sockets.clear()
        if mode == "refuse" and self._listener is not None:
            listener, self._listener = self._listener, None
            listener.close()
        elif mode != "refuse" and self._listener is None:
            self._listen()

    def close(self) -> None:
        self.set("refuse")


@pytest.fixture
def proxy(prefect_server):
    p = Proxy(prefect_server.settings.port)
    yield p
    p.close()


@pytest.mark.parametrize("away", ["hang", "refuse"])
def test_prefect_away_queues_within_harbors_timeout_then_hands_over(routed, proxy, tmp_path, away):
    deployment, deployment_id, block = routed
    with receiver(proxied(tmp_path, block, proxy, handover_timeout=DEFAULT.handover_timeout)) as url:
        assert post(url, push_body(tag="v1")).json()["status"] in ("accepted", "queued")  # the block is now cached
        wait_for_runs(deployment_id, 1)
        proxy.set(away)
        answers = []
        v2 = push_body(tag="v2")
        for body in (v2, cloudevent_body(tag="v3")):
            started = time.monotonic()
            r = post(url, body, content_type="application/cloudevents+json" if "specversion" in body else "application/json")
            assert time.monotonic() - started < HARBOR_TIMEOUT, "Harbor would have given up"
            answers.append(r)
        assert [(a.status_code, a.json()["status"]) for a in answers] == [(202, "queued"), (202, "queued")]
        redelivered = post(url, v2).json()
        assert (redelivered["status"], redelivered["duplicate"]) == ("queued", True), "Harbor's retry: spooled once"
        assert httpx.get(f"{url}/healthz").json()["spooled"] == 2
        assert len(runs_of(deployment_id)) == 1

        proxy.set("forward")
        runs = wait_for_runs(deployment_id, 3)
        wait_spool_empty(url)  # every create has had its answer, and the receiver stops below
    assert sorted(r.parameters["tag"] for r in runs) == ["v1", "v2", "v3"]
    assert (tmp_path / "spool" / "spool.jsonl").read_text() == ""
    assert len(runs_of(deployment_id)) == 3, "each push handed over once"


def test_a_restarted_receiver_hands_over_what_it_spooled(routed, proxy, tmp_path):
    deployment, deployment_id, block = routed
    with receiver(proxied(tmp_path, block, proxy)) as url:
        assert post(url, push_body(tag="v1")).json()["status"] in ("accepted", "queued")  # queued: SQLite stalled
        wait_for_runs(deployment_id, 1)
        wait_spool_empty(url)
        proxy.set("refuse")
        assert post(url, push_body(tag="v2")).json()["status"] == "queued"
    spooled = [json.loads(line) for line in (tmp_path / "spool" / "spool.jsonl").read_text().splitlines()]
    assert [e["parameters"]["tag"] for e in spooled] == ["v2"] and "webhook-test-secret" not in json.dumps(spooled)
    assert len(runs_of(deployment_id)) == 1
    with open(tmp_path / "spool" / "spool.jsonl", "a") as f:
        f.write('{"deployment": "redeploy-webhook-test/x", "key": "harbor:torn@sha')  # power lost mid-write

    with receiver(quick(tmp_path, block)) as url:  # back, straight to the server
        runs = wait_for_runs(deployment_id, 2)
        wait_spool_empty(url)
    assert sorted(r.parameters["tag"] for r in runs) == ["v1", "v2"]
    assert (tmp_path / "spool" / "spool.jsonl").read_text() == "", "handed over, and the torn line dropped"


def test_a_push_before_the_deployment_exists_is_queued_until_it_does(prefect_server, tmp_path):
    """`make up` starts the receiver before serve has registered the deployments."""
    from prefect.client.orchestration import get_client

    name = f"t-{uuid.uuid4().hex[:10]}"
    deployment = f"redeploy-webhook-test/{name}"
    with receiver(quick(tmp_path, save_block(deployment))) as url:
        r = post(url, push_body())
        assert r.status_code == 202 and r.json()["status"] == "queued"
        assert f"deployment {deployment}: does not exist" in r.json()["reason"]
        with get_client(sync_client=True) as client:
            flow_id = client.create_flow_from_name("redeploy-webhook-test")
            deployment_id = str(client.create_deployment(flow_id=flow_id, name=name,
                                                         parameter_openapi_schema=PARAMETERS_SCHEMA))
        [run] = wait_for_runs(deployment_id, 1)
    assert run.parameters["component"] == "vitess"


def test_a_spool_that_cannot_be_written_is_503_so_that_harbor_retries(prefect_server, tmp_path):
    (tmp_path / "not-a-folder").write_text("")
    block = save_block(f"redeploy-webhook-test/never-{uuid.uuid4().hex[:6]}")  # Prefect cannot take it: spooled
    with receiver(quick(tmp_path, block, spool_dir=tmp_path / "not-a-folder")) as url:
        r = post(url, push_body())
    assert r.status_code == 503 and r.json()["status"] == "unavailable"
    assert "cannot be written" in r.json()["reason"] and "VTFLOW_STATE_DIR" in r.json()["reason"]


# ---------------------------------------------------------------- the hostile tester's findings


def test_newlines_and_malformed_digests_are_400_and_make_no_second_run(routed, tmp_path):
    deployment, deployment_id, block = routed
    dig = digest()
    upper = push_body()
    upper["event_data"]["resources"][0]["digest"] = upper["event_data"]["resources"][0]["digest"].upper()
    with receiver(quick(tmp_path, block)) as url:
        first = post(url, push_body(dig=dig))  # queued when SQLite stalls past the hand-over
        assert first.status_code == 202 and first.json()["status"] in ("accepted", "queued"), first.text
        cases = {
            "digest + newline": post(url, push_body(dig=dig + "\n")),
            "tag + newline": post(url, push_body(tag="v23.0.4\n")),
            "upper-case digest": post(url, upper),
            "not sha256": post(url, push_body(dig="sha512:" + "ab" * 64)),
            "resource_url of another tag": post(url, {**push_body(tag="v1"), "event_data": {
                **push_body(tag="v1")["event_data"],
                "resources": [{"digest": digest(), "tag": "v1", "resource_url": "harbor.lan/vitess/lite:v2"}]}}),
        }
        wait_for_runs(deployment_id, 1)
        wait_spool_empty(url)
    for case, r in cases.items():
        assert r.status_code == 400 and r.json()["status"] == "rejected", (case, r.text)
    [run] = runs_of(deployment_id)
    assert run.idempotency_key == f"harbor:harbor.lan/vitess/lite@{dig}"


def test_a_push_from_another_registry_host_is_ignored_with_the_reason(prefect_server, tmp_path):
    deployment, deployment_id = make_deployment()
    block = save_block(deployment, registry="harbor.lan")
    with receiver(quick(tmp_path, block)) as url:
        other = post(url, push_body(host="evil.example"))
        ours = post(url, push_body())
        wait_for_runs(deployment_id, 1)
        wait_spool_empty(url)
    assert other.status_code == 202 and other.json()["status"] == "ignored"
    assert "from registry evil.example, not harbor.lan" in other.json()["reason"]
    assert ours.json()["status"] in ("accepted", "queued"), ours.text
    [run] = runs_of(deployment_id)
    assert run.parameters["repository"] == "harbor.lan/vitess/lite"


def test_push_times_outside_the_window_are_400_with_the_reason(routed, tmp_path):
    deployment, deployment_id, block = routed
    far_future = {**cloudevent_body(), "time": "9999-12-31T23:59:59-23:59"}
    with receiver(quick(tmp_path, block)) as url:
        answers = [post(url, far_future, content_type="application/cloudevents+json"),
                   post(url, {**cloudevent_body(), "time": "1969-12-31T23:59:59Z"},
                        content_type="application/cloudevents+json"),
                   post(url, push_body(occur_at=int(time.time()) + 2 * 86400)),
                   post(url, push_body(occur_at=-5))]
        within = post(url, push_body(occur_at=int(time.time()) + 3600))  # a Harbor clock an hour ahead
        wait_for_runs(deployment_id, 1)
        wait_spool_empty(url)
    for r in answers:
        assert r.status_code == 400 and r.json()["status"] == "rejected", r.text
    assert all("outside the accepted push times" in r.json()["reason"] for r in answers[:3]), [a.text for a in answers]
    assert "NTP" in answers[0].json()["reason"]
    assert within.status_code == 202 and within.json()["status"] in ("accepted", "queued"), within.text
    assert len(runs_of(deployment_id)) == 1


def test_an_untagged_push_redeploys_by_digest_through_a_route_without_a_tag_pattern(routed, tmp_path):
    deployment, deployment_id, block = routed  # vitess/vtadmin has no tag pattern, vitess/lite has "v*"
    dig = digest()
    with receiver(quick(tmp_path, block)) as url:
        by_digest = post(url, push_body(tag=dig, dig=dig, repo="vitess/vtadmin"))
        patterned = post(url, push_body(tag=(d := digest()), dig=d))
        wait_for_runs(deployment_id, 1)
        wait_spool_empty(url)
    assert by_digest.status_code == 202 and by_digest.json()["status"] in ("accepted", "queued"), by_digest.text
    assert patterned.json()["status"] == "ignored" and "has no tag" in patterned.json()["reason"]
    [run] = runs_of(deployment_id)
    assert run.parameters == {"component": "vtadmin", "repository": "harbor.lan/vitess/vtadmin", "digest": dig,
                              "pushed_at": 1714564800, "target_block": "default", "mysql_block": "default"}
    assert run.idempotency_key == f"harbor:harbor.lan/vitess/vtadmin@{dig}"


def test_a_receiver_started_while_prefect_is_away_checks_and_spools_with_its_copy_of_the_block(
        routed, proxy, tmp_path):
    deployment, deployment_id, block = routed
    with receiver(proxied(tmp_path, block, proxy)) as url:
        wait_until(lambda: post(url, push_body(repo="library/nginx")).json()["status"] == "ignored", 10,
                   "the block to be read")

    proxy.set("refuse")
    with receiver(proxied(tmp_path, block, proxy)) as url:  # was: 503 to everything
        assert post(url, push_body(), auth=SECRET + "x").status_code == 401
        r = post(url, push_body(tag="v7"))
        assert r.status_code == 202 and r.json()["status"] == "queued", r.text
        assert httpx.get(f"{url}/healthz").json().get("block_from") == "state dir"
        assert runs_of(deployment_id) == []
        proxy.set("forward")
        [run] = wait_for_runs(deployment_id, 1)
        wait_until(lambda: post(url, push_body(repo="library/nginx")).json()["status"] == "ignored"
                   and httpx.get(f"{url}/healthz").json()["block_from"] == "prefect", 30, "a fresh read")
        wait_spool_empty(url)
    assert run.parameters["tag"] == "v7"
    copy = tmp_path / "spool" / f"block-{block}.json"
    assert copy.stat().st_mode & 0o777 == 0o600 and copy.parent.stat().st_mode & 0o777 == 0o700
    assert "webhook-test-secret" not in copy.read_text(), "a salted hash only"


def test_a_deleted_block_takes_its_copy_with_it(prefect_server, tmp_path):
    from prefect.client.orchestration import get_client

    deployment, _ = make_deployment()
    block = save_block(deployment)
    with receiver(quick(tmp_path, block, block_ttl=0.1)) as url:
        assert post(url, push_body(repo="library/nginx")).json()["status"] == "ignored"
        assert (tmp_path / "spool" / f"block-{block}.json").exists()
        with get_client(sync_client=True) as client:
            client.delete_block_document(client.read_block_document_by_name(block, "vtflow-harbor-webhook").id)
        wait_until(lambda: post(url, push_body()).status_code == 503, 10, "the deleted block to be noticed")
    assert not (tmp_path / "spool" / f"block-{block}.json").exists()


def _slow_client(port: int, request: bytes, stop_after: int | None = None) -> socket.socket:
    """A raw connection that sends ``request`` a byte at a time, 0.2 s apart, in a thread of its own."""
    sock = socket.create_connection(("127.0.0.1", port))

    def trickle():
        for n, byte in enumerate(request):
            if stop_after is not None and n == stop_after:
                return
            try:
                sock.send(bytes([byte]))
            except OSError:
                return
            time.sleep(0.2)
    threading.Thread(target=trickle, daemon=True).start()
    return sock


def _closed_by_server(sock: socket.socket, within: float) -> bytes:
    """What the server sent before closing the connection; fails if it stays open ``within`` s."""
    sock.settimeout(within)
    got = b""
    try:
        while data := sock.recv(65536):
            got += data
    except TimeoutError:
        raise AssertionError(f"the server kept the connection open past {within} s (got {got[:100]!r})")
    except ConnectionResetError:
        pass
    finally:
        sock.close()
    return got


def test_slow_clients_are_dropped_with_one_line_each_and_no_traceback(routed, tmp_path, caplog):
    deployment, deployment_id, block = routed
    caplog.set_level(logging.INFO)
    body = json.dumps(push_body()).encode()
    head = (f"POST /harbor HTTP/1.1\r\nHost: x\r\nAuthorization: {SECRET}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    settings = quick(tmp_path, block, header_timeout=1.0, body_timeout=1.0)
    with receiver(settings) as url:
        port = int(url.rsplit(":", 1)[1])
        assert post(url, push_body(repo="library/nginx")).json()["status"] == "ignored"  # the block is cached
        slow_headers = [_slow_client(port, head + body) for _ in range(5)]
        slow_bodies = []
        for _ in range(5):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(head + body[:10])  # the headers at once, then the body never comes
            slow_bodies.append(sock)
        silent = socket.create_connection(("127.0.0.1", port))  # connects and sends nothing
        gone = socket.create_connection(("127.0.0.1", port))
        gone.sendall(head + body[:10])
        gone.close()  # disconnects halfway through its body
        for sock in slow_headers + [silent]:
            assert _closed_by_server(sock, 5) == b""
        for sock in slow_bodies:
            assert _closed_by_server(sock, 5).startswith(b"HTTP/1.1 408 ")
        assert post(url, push_body()).json()["status"] in ("accepted", "queued"), "still serving"
        wait_for_runs(deployment_id, 1)
        wait_spool_empty(url)
        wait_until(lambda: caplog.text.count("disconnected before its body") == 1, 5, "the disconnect's line")
    assert caplog.text.count("request headers not complete within 1 s") == 6, caplog.text
    assert caplog.text.count("body not complete within 1 s") == 5, caplog.text
    assert "Traceback" not in caplog.text and "Exception in ASGI" not in caplog.text, caplog.text
    assert "webhook-test-secret" not in caplog.text
    assert len(runs_of(deployment_id)) == 1


def test_forty_pushes_in_one_delivery_are_answered_within_harbors_timeout(routed, proxy, tmp_path):
    """Prefect holding every create: one by one, each would wait the hand-over timeout in turn."""
    deployment, deployment_id, block = routed
    body = push_body(tag="v0")
    body["event_data"]["resources"] = [
        {"digest": digest(), "tag": f"v{i}", "resource_url": f"harbor.lan/vitess/lite:v{i}"} for i in range(40)]
    settings = proxied(tmp_path, block, proxy, handover_timeout=DEFAULT.handover_timeout)
    with receiver(settings) as url:
        assert post(url, push_body(tag="v-warm")).json()["status"] in ("accepted", "queued")  # block, deployment id
        wait_for_runs(deployment_id, 1)
        proxy.set("hang")
        started = time.monotonic()
        r = post(url, body)
        assert time.monotonic() - started < HARBOR_TIMEOUT, "Harbor would have given up"
        assert r.status_code == 202 and r.json()["status"] == "queued", r.text
        assert len(r.json()["results"]) == 40
        proxy.set("forward")
        wait_for_runs(deployment_id, 41, timeout=60)
        wait_spool_empty(url, timeout=30)
    assert len(runs_of(deployment_id)) == 41


# ---------------------------------------------------------------- generated bodies


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20)
# every field the receiver needs, by where it sits in a Default payload
REQUIRED = [("type",), ("occur_at",), ("event_data",), ("event_data", "resources"), ("event_data", "repository"),
            ("event_data", "repository", "repo_full_name"), ("event_data", "resources", 0),
            ("event_data", "resources", 0, "resource_url"), ("event_data", "resources", 0, "digest"),
            ("event_data", "resources", 0, "tag")]
WRONG_TYPES = {  # per field, values that are not what Harbor sends there
    ("type",): st.integers() | st.none() | st.lists(st.text(), max_size=2) | st.sampled_from(["", "push_artifact"]),
    ("occur_at",): st.text(max_size=10) | st.floats() | st.booleans() | st.none() | st.integers(max_value=-1),
    ("event_data",): st.lists(JSON_VALUES, max_size=3) | st.text(max_size=10) | st.none(),
    ("event_data", "resources"): st.just([]) | st.dictionaries(st.text(max_size=5), JSON_VALUES, max_size=3) | st.none(),
    ("event_data", "repository"): st.lists(st.text(), max_size=2) | st.text(max_size=10) | st.none(),
    ("event_data", "repository", "repo_full_name"): st.integers() | st.just("lite") | st.just("library/nginx"),
    ("event_data", "resources", 0): st.text(max_size=10) | st.integers() | st.lists(st.text(), max_size=2),
    ("event_data", "resources", 0, "resource_url"): st.integers() | st.just("") | st.just("harbor.lan/other/x:v1"),
    ("event_data", "resources", 0, "digest"): st.integers() | st.just("") | st.just("sha256:short") | st.none(),
    ("event_data", "resources", 0, "tag"): st.integers() | st.just("") | st.just("latest") | st.just("v1 v2"),
}


@st.composite
def near_valid(draw):
    """A mapped push with one required field removed or given a wrong value: never a valid push."""
    body = push_body(dig=digest(draw(st.integers(1, 2**64))))
    path = draw(st.sampled_from(REQUIRED))
    node = body
    for key in path[:-1]:
        node = node[key]
    if draw(st.booleans()):
        del node[path[-1]]
        if path[-1] == "repo_full_name":
            del node["namespace"]  # else namespace/name stand in for it
    else:
        node[path[-1]] = draw(WRONG_TYPES[path])
    if draw(st.booleans()):  # the same breakage as CloudEvents: type and time broken in place of type and occur_at
        event = {"specversion": "1.0", "id": "x", "type": "harbor.artifact.pushed", "time": "2024-05-01T12:00:00Z"}
        for default_field, ce_field in (("type", "type"), ("occur_at", "time"), ("event_data", "data")):
            if path[0] == default_field or default_field == "event_data":
                if default_field in body:
                    event[ce_field] = body[default_field]
                else:
                    event.pop(ce_field, None)
        body = event
    return json.dumps(body)


CONTENT_TYPES = st.sampled_from(["application/json", "application/cloudevents+json", "text/plain", "",
                                 "application/cloudevents-batch+json", "multipart/form-data; boundary=x",
                                 "application/json; charset=utf-16"]) | st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7e), max_size=30)
# header values as HTTP allows them: visible ASCII and inner spaces (h11 refuses edge whitespace)
HEADER_TEXT = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7e), max_size=60).map(str.strip)


@st.composite
def delivery(draw):
    """(body, headers, may_be_authorized): generated bodies and headers, none a valid mapped push."""
    kind = draw(st.sampled_from(["random_json", "near_valid", "bytes", "valid_wrong_auth", "big"]))
    if kind == "random_json":
        value = draw(JSON_VALUES)
        if isinstance(value, dict):  # keep clear of the two payload shapes
            value = {k: v for k, v in value.items() if k not in ("type", "specversion")}
        body = json.dumps(value).encode()
    elif kind == "near_valid":
        body = draw(near_valid()).encode()
    elif kind == "bytes":
        body = draw(st.binary(max_size=300))
    elif kind == "big":
        body = b'{"type": "PUSH_ARTIFACT", "pad": "' + b"x" * draw(st.integers(65_537, 90_000)) + b'"}'
    else:
        body = json.dumps(push_body(dig=digest(draw(st.integers(1, 2**64))))).encode()
    # most with the right header, so that the bodies reach the parser
    auth = SECRET if kind != "valid_wrong_auth" and draw(st.integers(0, 3)) else draw(
        st.none() | HEADER_TEXT.filter(lambda h: h != SECRET) | st.just(SECRET[:-1]) | st.just(SECRET + "x"))
    headers = {"content-type": draw(CONTENT_TYPES)}
    if auth is not None:
        headers["authorization"] = auth
    for name, value in draw(st.dictionaries(st.sampled_from(["x-harbor-event", "accept", "user-agent", "x-request-id"]),
                                            HEADER_TEXT, max_size=2)).items():
        headers[name] = value
    return body, headers


# Prefect's events client pings its websocket with random.getrandbits from its own thread, which
# Hypothesis may notice while it generates a case; the strategies here use no global random
@pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies")
def test_generated_bodies_and_headers_never_5xx_and_never_make_a_run(routed, tmp_path):
    deployment, deployment_id, block = routed
    seen: dict[int, int] = {}
    with receiver(quick(tmp_path, block)) as url, httpx.Client(base_url=url, timeout=10) as client:

        @settings(max_examples=1200, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(delivery())
        def check(case):
            body, headers = case
            r = client.post("/harbor", content=body, headers=headers)
            seen[r.status_code] = seen.get(r.status_code, 0) + 1
            assert r.status_code < 500, (r.status_code, r.text, body[:200], headers)
            answer = r.json()
            assert answer["status"] in ("unauthorized", "rejected", "ignored"), (answer, body[:200], headers)
            assert r.status_code == {"unauthorized": 401, "rejected": 400 if len(body) <= 65536 else 413,
                                     "ignored": 202}[answer["status"]], (r.status_code, answer)
            assert "webhook-test-secret" not in r.text

        started = time.monotonic()
        check()
        elapsed = time.monotonic() - started
    print("fuzz answers", seen, f"{elapsed:.1f} s")
    assert sum(seen.values()) >= 1000 and elapsed < 60, (seen, elapsed)
    assert {400, 401, 202, 413} <= set(seen), seen
    assert runs_of(deployment_id) == []


# ---------------------------------------------------------------- the command and make up


def vtflow(*args, env=None):
    return subprocess.run([sys.executable, "-m", "vtflow.cli", *args], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, **(env or {})}, timeout=120, stdin=subprocess.DEVNULL)


def test_block_create_harbor_takes_routes(prefect_server):
    name = f"cli-harbor-{uuid.uuid4().hex[:6]}"
    r = vtflow("block", "create", "harbor", "--name", name, "--auth-header-env", "HARBOR_AUTH",
               "--route", "vitess/lite:v23.*=vitess", "--route", "planetscale/vitess-operator=operator",
               "--target", "prod", "--deployment", "redeploy/prod", "--registry", "harbor.lan:8443",
               env={"HARBOR_AUTH": SECRET})
    assert r.returncode == 0, r.stderr
    block = HarborWebhook.load(name)
    assert block.deployment == "redeploy/prod" and block.accepts(SECRET) and block.registry == "harbor.lan:8443"
    assert [(x.repository, x.tags, x.component, x.target_block, x.mysql_block) for x in block.routes] == [
        ("vitess/lite", "v23.*", "vitess", "prod", "prod"), ("planetscale/vitess-operator", "*", "operator", "prod", "prod")]

    bad = vtflow("block", "create", "harbor", "--name", name + "x", "--auth-header-env", "HARBOR_AUTH",
                 "--route", "harbor.lan/vitess/lite=vitess", env={"HARBOR_AUTH": SECRET})
    assert bad.returncode == 2 and "routes.0.repository" in bad.stderr and "project/repo" in bad.stderr
    short = vtflow("block", "create", "harbor", "--name", name + "y", "--auth-header-env", "HARBOR_AUTH",
                   "--route", "vitess/lite", env={"HARBOR_AUTH": "short-secret"})
    assert short.returncode == 2 and "PROJECT/REPO[:TAG_GLOB]=COMPONENT" in short.stderr
    registry = vtflow("block", "create", "harbor", "--name", name + "r", "--auth-header-env", "HARBOR_AUTH",
                      "--registry", "https://harbor.lan", env={"HARBOR_AUTH": SECRET})
    assert registry.returncode == 2 and "--registry" in registry.stderr and "Traceback" not in registry.stderr
    shorter = vtflow("block", "create", "harbor", "--name", name + "z", "--auth-header-env", "HARBOR_AUTH",
                     env={"HARBOR_AUTH": "short-secret"})
    assert shorter.returncode == 2 and "at least 16" in shorter.stderr and "short-secret" not in shorter.stderr


def test_webhook_serve_command_starts_without_a_block_and_stops_on_sigterm(prefect_server, tmp_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "vtflow.cli", "webhook", "serve", "--port", str(port),
                             "--block", "never-made"], cwd=REPO, env={**os.environ, "VTFLOW_STATE_DIR": str(tmp_path)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        def listening() -> bool:
            assert proc.poll() is None, proc.stdout.read()
            return not port_is_free("127.0.0.1", port)
        wait_until(listening, 60, f"`vtflow webhook serve` to listen on 127.0.0.1:{port}", interval=0.1)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        r = post(f"http://127.0.0.1:{port}", push_body())
        assert r.status_code == 503 and "vtflow block create harbor --name never-made" in r.json()["reason"]
        busy = vtflow("webhook", "serve", "--port", str(port))
        assert busy.returncode == 2 and f"127.0.0.1:{port}: is already in use" in busy.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode in (0, -signal.SIGTERM), out  # uvicorn stops cleanly, then re-raises the signal
    assert "Harbor webhook receiver: block 'never-made'" in out and "receiver stopped" in out


def test_make_up_starts_the_receiver_and_stops_it_on_ctrl_c(tmp_path):
    port, webhook_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(VTFLOW_PORT=str(port), VTFLOW_WEBHOOK_PORT=str(webhook_port), VTFLOW_STATE_DIR=str(tmp_path / "state"),
               PYTHONUNBUFFERED="1")
    up = subprocess.Popen([sys.executable, "-m", "vtflow.cli", "up"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, start_new_session=True)
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(iter(up.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        def up_and(condition):
            def check():
                assert up.poll() is None, "".join(output)
                return condition()
            return check
        wait_until(up_and(lambda: any("Press Ctrl-C" in line for line in output)), 120,
                   "`vtflow up` to print 'Press Ctrl-C'", interval=0.2, detail=lambda: "".join(output))
        assert f"Harbor webhook receiver: http://127.0.0.1:{webhook_port}/harbor" in "".join(output)
        url = f"http://127.0.0.1:{webhook_port}"
        wait_until(up_and(lambda: not port_is_free("127.0.0.1", webhook_port)), 60,
                   f"the receiver to listen on 127.0.0.1:{webhook_port}", interval=0.1, detail=lambda: "".join(output))
        r = post(url, push_body())
        assert r.status_code == 503 and "vtflow block create harbor --name default" in r.json()["reason"], r.text
    finally:
        os.killpg(up.pid, signal.SIGINT)
        try:
            up.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait()
        reader.join(10)
    assert up.returncode == 0, "".join(output)
    assert "Stopped." in "".join(output)
    assert port_is_free("127.0.0.1", webhook_port) and port_is_free("127.0.0.1", port)
