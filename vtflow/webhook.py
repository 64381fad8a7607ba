"""The Harbor webhook receiver: checks a delivery and hands it to the Prefect API as a flow run.

Open-source Prefect has no inbound webhooks, so ``vtflow webhook serve`` (started by ``make up``)
listens for Harbor's webhook policy on ``POST /harbor`` (and ``GET /healthz``). For each delivery:

1. the ``HarborWebhook`` block is read (cached; 503 until it exists), the ``Authorization``
   header compared with it in constant time (401), before the body is read. The last good block
   is kept in the state folder as routes plus a salted hash of the auth header (never the header
   itself; the file 0600 in a 0700 folder), so a receiver (re)started while Prefect is away still
   checks deliveries and spools them;
2. the body is read up to ``max_body`` bytes (413) within ``body_timeout`` (408) and parsed by
   ``vtflow.harbor`` (400 when it is not a Harbor payload or its push time is outside the window
   around this clock; 202 ``ignored`` for events, registries, repositories and tags not routed);
3. a routed push becomes a run of the block's deployment with the idempotency key
   ``harbor:<repository>@<digest>``: Prefect returns the same run for the same key, so Harbor's
   redeliveries never start a second redeploy (a cache of recent keys answers them at once);
4. Harbor waits 3 s at most: if Prefect has not created the run within ``handover_timeout``
   (0.25 s; Prefect on SQLite stalls for seconds now and then), the request is written to a spool
   (JSON lines under the state folder) and answered 202 ``queued`` while the create goes on; what
   fails is handed over by a background task until Prefect takes it, also after a restart.
   Prefect refusing the run (parameters the deployment does not take) is 502; a spool that
   cannot be written is 503, so that Harbor delivers again. The pushes of one delivery share one
   ``handover_timeout``: what is not created within it is spooled, so that the answer takes one
   hand-over however many pushes the delivery holds.

Slow clients are dropped (one log line each): a connection must send a request's headers within
``header_timeout`` of connecting or of its last answer (a guard on uvicorn's h11 protocol, which
has no such timeout), and at most ``max_connections`` are served at once (uvicorn answers 503 past it).

It must not hold deploy logic, and never puts a secret in run parameters, logs or answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import re
import threading
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.actions import DeploymentFlowRunCreate
from prefect.exceptions import ObjectNotFound
from prefect.settings import get_current_settings
from prefect.states import Scheduled, to_state_create
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from uvicorn.protocols.http.h11_impl import H11Protocol

from blocks.harbor import HarborWebhook, ImageRoute, auth_digest
from vtflow import harbor
from vtflow.errors import PermanentError, TransientError
from vtflow.stack import state_dir

log = logging.getLogger("vtflow.webhook")

MAX_BODY = 64 * 1024
RUN_TAGS = ["vtflow", "harbor-webhook"]


@dataclass
class ReceiverSettings:
    """How one receiver runs. ``api_url``/``auth_string`` default to Prefect's own settings."""

    block: str = "default"
    spool_dir: Path = field(default_factory=lambda: state_dir() / "webhook")
    api_url: str | None = None
    auth_string: str | None = None
    max_body: int = MAX_BODY
    handover_timeout: float = 0.25    # then the request is spooled (the create goes on): Harbor gives up after 3 s
    block_timeout: float = 1.0        # reading the block when none is cached yet
    block_ttl: float = 15.0           # a cached block is re-read in the background after this
    missing_block_ttl: float = 1.0    # a missing block is looked for again after this
    retry_timeout: float = 10.0       # one create attempt, in the background
    parallel_creates: int = 2         # creates sent to Prefect at once
    retry_max_delay: float = 10.0     # longest pause between spool attempts while Prefect is away
    seen_size: int = 4096             # recently accepted keys answered without asking Prefect
    header_timeout: float = 10.0      # a connection's request headers, from connect or its last answer
    body_timeout: float = 10.0        # a request's body, from its headers (408 past it)
    max_connections: int = 256        # served at once; Harbor sends a few, a flood of slow ones must not starve them


# ---------------------------------------------------------------- the block


@dataclass(frozen=True)
class BlockCopy:
    """What the receiver uses of a ``HarborWebhook`` block: routes, deployment, registry, and the
    auth header as a salted SHA-256 only. Kept in the state folder so that a receiver started
    while Prefect is away can check deliveries; holding no secret, a stolen copy lets nobody in."""

    routes: tuple[ImageRoute, ...]
    deployment: str
    registry: str | None
    salt: str            # hex
    auth_sha256: str     # hex of sha256(salt + auth header)
    source: str = "prefect"   # "prefect" (read now) | "state dir" (the copy from an earlier read)

    @classmethod
    def of(cls, block: HarborWebhook, salt: bytes | None = None) -> BlockCopy:
        salt = salt if salt is not None else os.urandom(16)
        return cls(tuple(block.routes), block.deployment, block.registry, salt.hex(), block.auth_digest(salt))

    def accepts(self, header: str | None) -> bool:
        """Constant-time comparison of the received header's hash with the block's."""
        return hmac.compare_digest(auth_digest(header or "", bytes.fromhex(self.salt)), self.auth_sha256)

    def same_block(self, other: BlockCopy) -> bool:
        return (self.routes, self.deployment, self.registry, self.salt, self.auth_sha256) == (
            other.routes, other.deployment, other.registry, other.salt, other.auth_sha256)

    def to_json(self) -> str:
        return json.dumps({"routes": [r.model_dump() for r in self.routes], "deployment": self.deployment,
                           "registry": self.registry, "salt": self.salt, "auth_sha256": self.auth_sha256}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> BlockCopy:
        data = json.loads(text)
        if not (isinstance(data, dict) and all(isinstance(data.get(k), str) for k in ("deployment", "salt", "auth_sha256"))
                and re.fullmatch(r"[0-9a-f]{32}", data["salt"]) and re.fullmatch(r"[0-9a-f]{64}", data["auth_sha256"])):
            raise ValueError("not a Harbor webhook block copy")
        checked = HarborWebhook(auth_header="x" * 16, routes=data.get("routes"), deployment=data["deployment"],
                                registry=data.get("registry"))  # the block's own validation of what was saved
        return cls(tuple(checked.routes), checked.deployment, checked.registry, data["salt"], data["auth_sha256"],
                   source="state dir")


class BlockCache:
    """The ``HarborWebhook`` block, read through the receiver's Prefect client.

    A cached block is served at once and re-read in the background once stale; while Prefect is
    away the last good copy stays in use, also across a restart (``copy_path``, replaced whenever
    a fresh block is read, removed when Prefect says the block is gone). A missing block is
    looked for again after ``missing_block_ttl``, so creating it takes effect without a restart.
    """

    def __init__(self, settings: ReceiverSettings, client):
        self.settings = settings
        self.client = client
        self.block: BlockCopy | None = None
        self.reason = f"Harbor webhook block {settings.block!r} has not been read yet."
        name = settings.block
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,100}", name):  # a block name is not trusted as a path
            name = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:32]
        self.copy_path = settings.spool_dir / f"block-{name}.json"
        self._read_copy()
        self._checked = 0.0
        self._refresh: asyncio.Task | None = None
        self._loading = asyncio.Lock()  # requests arriving together share one read

    def warm(self) -> None:
        """Read the block in the background (at start), so the first delivery finds it cached."""
        self._refresh = asyncio.create_task(self._load(self.settings.retry_timeout))

    async def get(self):
        """(block, None), or (None, why the receiver cannot check deliveries yet)."""
        age = time.monotonic() - self._checked
        if self.block is not None:
            # a copy from the state dir is re-read as soon as a missing block would be: it may be old
            ttl = self.settings.block_ttl if self.block.source == "prefect" else self.settings.missing_block_ttl
            if age > ttl and (self._refresh is None or self._refresh.done()):
                self._refresh = asyncio.create_task(self._load(self.settings.retry_timeout))
            return self.block, None
        if age > self.settings.missing_block_ttl:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._load_once(self._checked), self.settings.block_timeout)
        return self.block, (None if self.block is not None else self.reason)

    async def _load_once(self, checked: float) -> None:
        async with self._loading:
            if self._checked == checked:  # else a request that came together with this one has read it
                await self._load(self.settings.block_timeout)

    async def _load(self, timeout: float) -> None:
        name = self.settings.block
        try:
            fresh = await asyncio.wait_for(HarborWebhook.aload(name, client=self.client), timeout)
            self._keep(fresh)
        except (ValueError, ObjectNotFound) as e:  # Block.aload says "not found" with a ValueError
            self.block = None
            await asyncio.to_thread(self._drop_copy)
            if isinstance(e, ObjectNotFound) or "Unable to find block document" in str(e):
                self.reason = (f"Harbor webhook block {name!r} does not exist. Fix: create it with `vtflow block "
                               f"create harbor --name {name} --auth-header-env VAR --route PROJECT/REPO=COMPONENT`.")
            else:
                what = f"{e.error_count()} invalid fields" if isinstance(e, ValidationError) else type(e).__name__
                self.reason = (f"Harbor webhook block {name!r} cannot be read ({what}). Fix: create it again with "
                               f"`vtflow block create harbor --name {name} --overwrite ...`.")
        except Exception as e:  # noqa: BLE001  Prefect away: keep the last good copy
            if self.block is None:
                self.reason = (f"the Prefect API did not answer while reading Harbor webhook block {name!r} "
                               f"({type(e).__name__}). Fix: start it (`make up`) or check PREFECT_API_URL.")
            log.warning("reading Harbor webhook block %r failed (%s); %s", name, type(e).__name__,
                        "keeping the cached copy" if self.block is not None else "answering 503")
        self._checked = time.monotonic()

    async def close(self) -> None:
        if self._refresh is not None:
            self._refresh.cancel()
            with contextlib.suppress(BaseException):
                await self._refresh

    def _keep(self, fresh: HarborWebhook) -> None:
        """Use a block just read, and write its copy when it differs from the one kept."""
        old = self.block
        salt = bytes.fromhex(old.salt) if old is not None else None
        copy = BlockCopy.of(fresh, salt)
        self.block = copy
        if old is not None and old.same_block(copy):
            return
        try:
            folder = self.copy_path.parent
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(folder, 0o700)
            tmp = self.copy_path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(copy.to_json())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.copy_path)
        except OSError as e:  # the receiver works without it; only a restart while Prefect is away needs it
            log.warning("cannot keep a copy of Harbor webhook block %r in %s (%s); a restart while Prefect is "
                        "away will answer 503", self.settings.block, self.copy_path, e.strerror)

    def _read_copy(self) -> None:
        try:
            text = self.copy_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        except OSError as e:
            log.warning("cannot read the copy of Harbor webhook block %r at %s (%s)", self.settings.block,
                        self.copy_path, e.strerror)
            return
        try:
            self.block = BlockCopy.from_json(text)
        except (ValueError, TypeError) as e:  # ValidationError is a ValueError
            log.warning("the copy of Harbor webhook block %r at %s is not usable (%s); waiting for Prefect",
                        self.settings.block, self.copy_path, type(e).__name__)
            return
        log.info("using the copy of Harbor webhook block %r from %s until Prefect answers", self.settings.block,
                 self.copy_path)

    def _drop_copy(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.copy_path.unlink()


# ---------------------------------------------------------------- the spool


class Spool:
    """Run requests Prefect has not taken yet: JSON lines, one per request, fsynced on write.

    Appends are the only writes in the request path; taking a request out rewrites the (small)
    file atomically, unsynced: a removal lost in a crash costs one more hand-over, which the
    idempotency key makes harmless. A torn last line (power loss while writing) is skipped with
    a warning. One receiver per spool folder.
    """

    def __init__(self, directory: Path):
        self.directory = directory
        self.path = directory / "spool.jsonl"
        self.rejected_path = directory / "rejected.jsonl"
        self.pending: OrderedDict[str, dict] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def slot(deployment: str, key: str) -> str:
        return f"{deployment} {key}"

    def load(self) -> int:
        with self._lock:
            self.pending.clear()
            if self.path.exists():
                for n, line in enumerate(self.path.read_text(errors="replace").splitlines(), 1):
                    try:
                        entry = json.loads(line)
                        if not (isinstance(entry["deployment"], str) and isinstance(entry["key"], str)
                                and isinstance(entry["parameters"], dict)):
                            raise TypeError(line)
                    except (ValueError, KeyError, TypeError):
                        log.warning("spool %s:%d is not a spooled request; skipped", self.path, n)
                        continue
                    self.pending[self.slot(entry["deployment"], entry["key"])] = entry
            return len(self.pending)

    def slots(self) -> list[str]:
        """The spooled requests, oldest first (a copy: requests are added from other threads)."""
        with self._lock:
            return list(self.pending)

    def add(self, deployment: str, request: harbor.RunRequest) -> bool:
        """Spool a request; False when it was spooled already."""
        slot = self.slot(deployment, request.idempotency_key)
        entry = {"deployment": deployment, "key": request.idempotency_key, "parameters": request.parameters,
                 "spooled_at": time.time()}
        with self._lock:
            if slot in self.pending:
                return False
            self.directory.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(entry, separators=(",", ":")) + "\n")
                f.flush()
                os.fsync(f.fileno())
            self.pending[slot] = entry
            return True

    def done(self, slot: str, rejected_because: str | None = None) -> None:
        with self._lock:
            entry = self.pending.pop(slot, None)
            if entry is not None and rejected_because:
                with open(self.rejected_path, "a", encoding="utf-8") as f:
                    f.write(json.dumps({**entry, "reason": rejected_because}, separators=(",", ":")) + "\n")
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text("".join(json.dumps(e, separators=(",", ":")) + "\n" for e in self.pending.values()))
            os.replace(tmp, self.path)


# ---------------------------------------------------------------- hand-over to Prefect


@dataclass
class Outcome:
    status: str                      # accepted | queued | ignored | failed (502) | unavailable (503)
    reason: str | None = None
    flow_run_id: str | None = None
    duplicate: bool | None = None

    def body(self) -> dict:
        return {k: v for k, v in (("status", self.status), ("flow_run_id", self.flow_run_id),
                                  ("duplicate", self.duplicate), ("reason", self.reason)) if v is not None}


class Handover:
    """Creates runs through the Prefect API, once per idempotency key; spools what cannot wait.

    A create that outlasts ``handover_timeout`` is spooled and answered ``queued`` but not
    abandoned: it goes on in the background (Prefect on SQLite stalls for seconds at times, then
    answers), and only when it fails does the spool worker take the request up again.
    """

    def __init__(self, settings: ReceiverSettings, client, spool: Spool):
        self.settings = settings
        self.client = client
        self.spool = spool
        self.seen: OrderedDict[str, str] = OrderedDict()      # slot -> flow run id
        self._deployment_ids: dict[str, str] = {}
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._lookup = asyncio.Lock()
        # concurrent writes make SQLite wait on its lock for seconds: a few at a time are faster
        self._creating = asyncio.Semaphore(settings.parallel_creates)
        self._inflight: dict[str, asyncio.Task] = {}          # spooled slots whose first create goes on
        self._wake = asyncio.Event()
        self._worker: asyncio.Task | None = None

    def start(self) -> None:
        if self.spool.load():
            log.info("%d spooled run requests to hand over (%s)", len(self.spool.pending), self.spool.path)
        self._worker = asyncio.create_task(self._drain())

    async def close(self) -> None:
        for task in [self._worker, *self._inflight.values()]:  # what is in flight is spooled: a restart resumes it
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task

    async def submit(self, deployment: str, request: harbor.RunRequest, wait: float | None = None) -> Outcome:
        """The answer for one push, waiting ``wait`` s at most (default ``handover_timeout``) for Prefect."""
        wait = self.settings.handover_timeout if wait is None else wait
        slot = Spool.slot(deployment, request.idempotency_key)
        lock = self._locks.get(slot)
        if lock is None:
            lock = self._locks[slot] = asyncio.Lock()
        async with lock:  # the same push twice at once: the second waits for the first's answer
            if (run_id := self.seen.get(slot)) is not None:
                self.seen.move_to_end(slot)
                return Outcome("accepted", flow_run_id=run_id, duplicate=True)
            if slot in self.spool.pending:
                return Outcome("queued", duplicate=True, reason="this push is spooled already; it is handed over "
                                                                 "when Prefect takes it.")
            task = asyncio.create_task(self._attempt(deployment, request))
            done, _ = await asyncio.wait({task}, timeout=wait) if wait > 0 else (set(), None)
            if not done:  # Prefect is slow: answer now, let the create go on
                why = f"the Prefect API did not create the run within {self.settings.handover_timeout:g} s"
                return await self._spool(slot, deployment, request, why, task)
            try:
                run_id, existed = task.result()
            except PermanentError as e:
                log.error("%s", e)
                return Outcome("failed", reason=str(e))
            except Exception as e:  # noqa: BLE001  Prefect away, or answering what it should not: retried
                why = str(e) if isinstance(e, TransientError) else f"the Prefect API failed ({type(e).__name__})"
                return await self._spool(slot, deployment, request, why, None)
            self._remember(slot, run_id)
            log.info("%s run %s for %s (%s)", "existing" if existed else "created", run_id,
                     request.idempotency_key, deployment)
            return Outcome("accepted", flow_run_id=run_id, duplicate=existed)

    async def _spool(self, slot: str, deployment: str, request: harbor.RunRequest, why: str,
                     task: asyncio.Task | None) -> Outcome:
        try:
            await asyncio.to_thread(self.spool.add, deployment, request)
        except OSError as e:
            if task is not None:
                task.cancel()
            log.error("cannot spool %s to %s: %s", request.idempotency_key, self.spool.path, e)
            return Outcome("unavailable", reason=(
                f"{why}, and spool {self.spool.path} cannot be written ({e.strerror}). Fix: make the folder writable "
                "(VTFLOW_STATE_DIR) or free space; Harbor retries this delivery."))
        if task is not None:
            self._inflight[slot] = task
            task.add_done_callback(lambda t: self._settled(slot, t))
        else:
            self._wake.set()
        log.warning("spooled %s for %s: %s", request.idempotency_key, deployment, why)
        return Outcome("queued", duplicate=False, reason=f"{why}; spooled, handed over when Prefect takes it.")

    async def _attempt(self, deployment: str, request: harbor.RunRequest) -> tuple[str, bool]:
        return await asyncio.wait_for(self.create(deployment, request), self.settings.retry_timeout)

    def _settled(self, slot: str, task: asyncio.Task) -> None:
        """A spooled request's first create has ended: take it out of the spool, or leave it to the worker."""
        self._inflight.pop(slot, None)
        if task.cancelled():
            return
        error = task.exception()
        if error is None:
            run_id, existed = task.result()
            self._remember(slot, run_id)
            self.spool.done(slot)
            log.info("handed over %s: %s run %s", slot, "existing" if existed else "created", run_id)
        elif isinstance(error, PermanentError):
            log.error("dropping spooled %s (kept in %s): %s", slot, self.spool.rejected_path, error)
            self.spool.done(slot, str(error))
        else:
            self._wake.set()

    async def create(self, deployment: str, request: harbor.RunRequest) -> tuple[str, bool]:
        """Create (or find, by idempotency key) the run; (flow run id, whether it existed already)."""
        deployment_id = await self._deployment_id(deployment)
        body = DeploymentFlowRunCreate(parameters=request.parameters, state=to_state_create(Scheduled()),
                                       tags=RUN_TAGS, idempotency_key=request.idempotency_key)
        try:
            async with self._creating:
                response = await self.client.request(
                    "POST", "/deployments/{id}/create_flow_run", path_params={"id": deployment_id},
                    json=body.model_dump(mode="json", exclude_unset=True))
        except httpx.HTTPStatusError as e:
            code = e.response.status_code
            if code == 404:  # deleted since we looked it up
                self._deployment_ids.pop(deployment, None)
                raise _missing(deployment) from e
            detail = _detail(e.response)
            if code in (401, 403, 408, 429) or code >= 500:
                raise TransientError(f"deployment {deployment}", f"the Prefect API answered {code} ({detail}).",
                                     "check the API's address and auth string (PREFECT_API_URL, "
                                     "PREFECT_API_AUTH_STRING) and its log.") from e
            raise PermanentError(f"deployment {deployment}", f"Prefect refused the run ({code}: {detail}).",
                                 "make the deployment's parameters match what the receiver sends (component, "
                                 "repository, tag, digest, pushed_at, target_block, mysql_block).") from e
        # the server answers 201 for a new run, 200 for the run an earlier request made with the key
        return str(response.json()["id"]), response.status_code != 201

    async def _deployment_id(self, deployment: str) -> str:
        if (known := self._deployment_ids.get(deployment)) is not None:
            return known
        async with self._lookup:  # ten pushes at once look it up once
            if (known := self._deployment_ids.get(deployment)) is not None:
                return known
            try:
                found = await self.client.read_deployment_by_name(deployment)
            except ObjectNotFound as e:
                raise _missing(deployment) from e
            self._deployment_ids[deployment] = str(found.id)
            return self._deployment_ids[deployment]

    def _remember(self, slot: str, run_id: str) -> None:
        self.seen[slot] = run_id
        self.seen.move_to_end(slot)
        while len(self.seen) > self.settings.seen_size:
            self.seen.popitem(last=False)

    async def _drain(self) -> None:
        """Hand spooled requests over, oldest first, until Prefect takes them."""
        delay = 0.25
        while True:
            todo = [slot for slot in self.spool.slots() if slot not in self._inflight]
            if not todo:
                await self._wake.wait()
                self._wake.clear()
                continue
            if await self._drain_once(todo):
                delay = 0.25
                continue
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.settings.retry_max_delay)

    async def _drain_once(self, slots: list[str]) -> bool:
        """True when these were handed over (or refused for good); False when Prefect is still away."""
        for slot in slots:
            entry = self.spool.pending.get(slot)
            if entry is None:
                continue
            request = harbor.RunRequest(parameters=entry["parameters"], idempotency_key=entry["key"])
            try:
                run_id, existed = await self._attempt(entry["deployment"], request)
            except PermanentError as e:
                log.error("dropping spooled %s (kept in %s): %s", entry["key"], self.spool.rejected_path, e)
                self.spool.done(slot, str(e))
                continue
            except Exception as e:  # noqa: BLE001  Prefect still away
                log.warning("spooled %s not handed over yet: %s", entry["key"],
                            e if isinstance(e, TransientError) else type(e).__name__)
                return False
            self._remember(slot, run_id)
            self.spool.done(slot)
            log.info("handed over spooled %s: %s run %s", entry["key"], "existing" if existed else "created", run_id)
        return True


def _missing(deployment: str) -> TransientError:
    return TransientError(f"deployment {deployment}", "does not exist in Prefect (yet).",
                          "start `make up` (it serves the deployments), or set the Harbor webhook block's "
                          "`deployment` to one that exists.")


def _detail(response) -> str:
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    return harbor.show(detail if detail is not None else response.text, limit=300)


# ---------------------------------------------------------------- HTTP


class Receiver:
    """The receiver's state for one app: Prefect client, block cache, hand-over."""

    def __init__(self, settings: ReceiverSettings):
        self.settings = settings
        self.client = None
        self.blocks: BlockCache | None = None
        self.handover: Handover | None = None

    @contextlib.asynccontextmanager
    async def running(self):
        s = self.settings
        current = get_current_settings().api
        api_url = s.api_url or current.url
        if not api_url:
            raise PermanentError("Harbor webhook receiver", "has no Prefect API to hand over to.",
                                 "set PREFECT_API_URL (make up sets it for the receiver it starts).")
        auth = s.auth_string or (current.auth_string.get_secret_value() if current.auth_string else None)
        async with PrefectClient(api_url, auth_string=auth, api_key=None) as client:
            self.client = client
            self.blocks = BlockCache(s, client)
            self.handover = Handover(s, client, Spool(s.spool_dir))
            self.handover.start()
            self.blocks.warm()
            log.info("Harbor webhook receiver: block %r, Prefect API %s, spool %s", s.block,
                     httpx.URL(api_url).copy_with(userinfo=b""), self.handover.spool.path)
            try:
                yield
            finally:
                await self.handover.close()
                await self.blocks.close()
                log.info("Harbor webhook receiver stopped (%d run requests left in the spool)",
                         len(self.handover.spool.pending))

    async def harbor(self, request: Request) -> JSONResponse:
        block, unavailable = await self.blocks.get()
        if block is None:
            return JSONResponse({"status": "unavailable", "reason": unavailable}, status_code=503)
        if not block.accepts(request.headers.get("authorization")):
            return JSONResponse({"status": "unauthorized", "reason": (
                f"the Authorization header is missing or wrong. Fix: set the Harbor webhook policy's auth header "
                f"to the value saved in Harbor webhook block {self.settings.block!r}.")}, status_code=401)
        body = await self._body(request)
        if isinstance(body, JSONResponse):
            return body
        try:
            items = harbor.parse_delivery(body, request.headers.get("content-type"), now=time.time())
        except harbor.PayloadError as e:
            return JSONResponse({"status": "rejected", "reason": str(e)}, status_code=400)
        # one hand-over budget for the whole delivery: once it is spent, the rest is spooled at once
        # (its creates go on in the background), so 40 pushes are answered as fast as one. One
        # after another, not all at once: concurrent creates make SQLite hold each of them longer.
        deadline = time.monotonic() + self.settings.handover_timeout
        outcomes = [await self._decide(block, item, deadline) for item in items]
        if len(outcomes) == 1:
            answer = outcomes[0].body()
        else:
            statuses = {o.status for o in outcomes}
            status = next(s for s in ("failed", "unavailable", "queued", "accepted", "ignored") if s in statuses)
            answer = {"status": status, "results": [o.body() for o in outcomes]}
        return JSONResponse(answer, status_code={"failed": 502, "unavailable": 503}.get(answer["status"], 202))

    async def _body(self, request: Request) -> bytes | JSONResponse:
        limit = self.settings.max_body
        too_big = JSONResponse({"status": "rejected", "reason": (
            f"the body is over {limit} bytes; a Harbor payload is a few hundred. Fix: point only Harbor's "
            "webhook policy at this address.")}, status_code=413)
        length = request.headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                return JSONResponse({"status": "rejected", "reason": "the Content-Length header is not a number."},
                                    status_code=400)
            if len(length) > 12 or int(length) > limit:
                return too_big
        body = bytearray()
        try:
            async with asyncio.timeout(self.settings.body_timeout):
                async for chunk in request.stream():
                    body += chunk
                    if len(body) > limit:
                        return too_big
        except TimeoutError:
            log.warning("dropped %s: body not complete within %g s (%d bytes)", _peer(request),
                        self.settings.body_timeout, len(body))
            return JSONResponse({"status": "rejected", "reason": (
                f"the body did not arrive within {self.settings.body_timeout:g} s.")}, status_code=408,
                headers={"connection": "close"})
        except ClientDisconnect:
            log.warning("%s disconnected before its body was complete (%d bytes)", _peer(request), len(body))
            return JSONResponse({"status": "rejected", "reason": "disconnected"}, status_code=400)
        return bytes(body)

    async def _decide(self, block, item, deadline: float) -> Outcome:
        if isinstance(item, harbor.Ignored):
            return Outcome("ignored", reason=item.reason)
        route = harbor.match_route(item, block.routes, block.registry)
        if isinstance(route, harbor.Ignored):
            return Outcome("ignored", reason=route.reason)
        return await self.handover.submit(block.deployment, harbor.run_request(item, route),
                                          wait=max(0.0, deadline - time.monotonic()))

    async def healthz(self, request: Request) -> JSONResponse:
        block = self.blocks.block if self.blocks is not None else None
        return JSONResponse({"status": "ok", "block": self.settings.block, "block_loaded": block is not None,
                             "block_from": block.source if block is not None else None,
                             "spooled": len(self.handover.spool.pending) if self.handover else 0})


def create_app(settings: ReceiverSettings | None = None):
    """The receiver as an ASGI app (Starlette)."""
    receiver = Receiver(settings or ReceiverSettings())

    @contextlib.asynccontextmanager
    async def lifespan(app):
        async with receiver.running():
            yield

    app = Starlette(routes=[Route("/harbor", receiver.harbor, methods=["POST"]),
                            Route("/healthz", receiver.healthz, methods=["GET"])], lifespan=lifespan)
    app.state.receiver = receiver
    return app


def _peer(request: Request) -> str:
    client = request.client
    return f"{client.host}:{client.port}" if client else "a client"


def guarded_protocol(header_timeout: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol, closing a connection that has not sent a request's headers within
    ``header_timeout`` of connecting or of its last answer (uvicorn times out idle keep-alive
    connections only once they have had an answer, and never a request's headers)."""

    class GuardedH11Protocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None
        _answered = False

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

        def handle_events(self) -> None:
            cycle = self.cycle
            super().handle_events()
            if self.cycle is not cycle:  # a request's headers are in: the app's body timeout takes over
                self._disarm()

        def on_response_complete(self) -> None:
            self._answered = True
            self._arm()  # before: a pipelined request's headers, handled inside, disarm it again
            super().on_response_complete()

        def _arm(self) -> None:
            self._disarm()
            self._header_timer = self.loop.call_later(header_timeout, self._too_slow)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _too_slow(self) -> None:
            self._header_timer = None
            if self.transport.is_closing():
                return
            waiting = len(self.conn.trailing_data[0])
            if waiting or not self._answered:  # an idle keep-alive connection ends without a word
                peer = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
                log.warning("dropped %s: request headers not complete within %g s (%d bytes)", peer,
                            header_timeout, waiting)
            self.transport.close()

    return GuardedH11Protocol


def server_config(app, host: str, port: int, settings: ReceiverSettings, **overrides):
    """The uvicorn configuration the receiver runs with (``serve``, and the tests)."""
    import uvicorn

    return uvicorn.Config(app, host=host, port=port, http=guarded_protocol(settings.header_timeout),
                          limit_concurrency=settings.max_connections, log_level="warning", access_log=False,
                          lifespan="on", timeout_graceful_shutdown=5, **overrides)


def serve(host: str, port: int, settings: ReceiverSettings) -> None:
    """Run the receiver until SIGINT/SIGTERM (``vtflow webhook serve``)."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per Prefect call otherwise
    uvicorn.Server(server_config(create_app(settings), host, port, settings)).run()
