"""Harbor webhook deliveries as data: a body becomes push events, a push meets the routes of the
``HarborWebhook`` block, a routed push becomes a flow run request (parameters and idempotency key).

Pure functions only: no HTTP, no Prefect, no files. The receiver (``vtflow/webhook.py``) reads the
request and hands the result to Prefect; nothing here may grow deploy logic or I/O.

Harbor sends two payload formats (goharbor/harbor, see ../shared/FACTS.md):

* Default: ``{"type": "PUSH_ARTIFACT", "occur_at": <unix>, "operator": ..., "event_data":
  {"resources": [{"digest", "tag", "resource_url"}], "repository": {"repo_full_name", ...}}}``
* CloudEvents (Harbor 2.8+, ``application/cloudevents+json``): ``{"specversion": "1.0", "id",
  "type": "harbor.artifact.pushed", "time": <RFC 3339>, "data": <event_data as above>, ...}``

A malformed body raises ``PayloadError`` (the receiver answers 400 with its text); anything valid
that vtflow does not act on comes back as ``Ignored`` with the reason (the receiver answers 202).

Every received value is checked with a full match (``re.fullmatch``, ASCII classes): ``$`` alone
matches before a trailing newline, and ``\\d`` matches any script's digits. The time is checked
against a window around the caller's clock (``now``), which is passed in: nothing here reads it.
"""

from __future__ import annotations

import fnmatch
import json
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Sequence

from vtflow.errors import PermanentError

if TYPE_CHECKING:
    from blocks.harbor import ImageRoute

CLOUDEVENTS_MEDIA_TYPE = "application/cloudevents+json"
ANY_TAG = "*"  # a route's tag pattern when it has none: every push of the repository, untagged ones too
PUSH_TYPES = {"default": "PUSH_ARTIFACT", "cloudevents": "harbor.artifact.pushed"}

# OCI distribution grammar, kept strict: these values end up in image references and manifests.
# Always used with fullmatch: "$" would let "sha256:...\n" through as a second, distinct digest.
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")  # what Harbor (and the redeploy flow) pins images by
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_HOST = r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*|\[[0-9A-Fa-f:]+\])(?::[0-9]{1,5})?"
_PATH = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
_REPOSITORY = re.compile(rf"{_HOST}/{_PATH}")
_PROJECT_REPO = re.compile(_PATH)
_RFC3339 = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]{1,9})?"
                      r"([Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])")
# The push times accepted, around the receiver's clock. Harbor stamps occur_at (and CloudEvents'
# time) with its own clock and keeps that time on every retry, so the past bound is loose: before
# 2000 no Harbor existed, anything later may be a redelivery. The future bound is tight, because a
# push time is also what makes the redeploy flow skip older pushes: one far-future time would
# block every later redeploy of the component. A day allows a Harbor host whose clock or time zone
# is off by hours, and bounds the damage of a wrong time to a day.
EARLIEST_PUSH = 946684800          # 2000-01-01T00:00:00Z
MAX_PUSH_AHEAD = 24 * 3600         # seconds past the receiver's clock


class PayloadError(PermanentError):
    """The body is not a Harbor webhook payload vtflow can read (the receiver answers 400)."""

    def __init__(self, problem: str, fix: str | None = None):
        super().__init__("Harbor webhook payload", problem,
                         fix or "send Harbor's Default or CloudEvents payload (the webhook policy's payload format).")

    def __reduce__(self):
        return (self.__class__, (self.problem, self.fix))


@dataclass(frozen=True)
class Ignored:
    """A valid delivery vtflow does not act on, and why."""

    reason: str


@dataclass(frozen=True)
class PushEvent:
    """One pushed artifact, as either payload format describes it."""

    format: str            # "default" | "cloudevents"
    repository: str        # full image repository without tag or digest: "harbor.lan/vitess/lite"
    project_repo: str      # Harbor's "project/repo": "vitess/lite"
    tag: str | None        # None for an untagged push (by digest only)
    digest: str            # "sha256:..."
    pushed_at: int         # unix seconds
    event_id: str | None = None  # the CloudEvents id (Default payloads carry none)


@dataclass(frozen=True)
class RunRequest:
    """What the receiver asks Prefect for: a run of the redeploy deployment, once per key."""

    parameters: dict[str, Any] = field(hash=False)
    idempotency_key: str


def show(value: Any, limit: int = 60) -> str:
    """A received value quoted for an error text or a log line: ASCII only, cut short."""
    text = json.dumps(value, ensure_ascii=True, default=repr)
    return text if len(text) <= limit else text[:limit] + "..."


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def parse_delivery(body: bytes, content_type: str | None = None, now: float | None = None) -> list[PushEvent | Ignored]:
    """Every pushed artifact a delivery reports (Harbor sends one per push), or one ``Ignored``
    for an event of another type. Raises ``PayloadError`` for anything that is not a payload,
    a push time outside the window around ``now`` (the receiver's clock; default: this one's) included."""
    now = time.time() if now is None else now
    media = media_type(content_type)
    if media.startswith("application/cloudevents-batch"):
        raise PayloadError("CloudEvents batches are not supported.", "use one event per delivery, as Harbor sends them.")
    try:
        payload = json.loads(body)
    except RecursionError as e:
        raise PayloadError("the body nests too deeply to be a Harbor payload.") from e
    except ValueError as e:  # JSONDecodeError, bad UTF-8, integers past the digit limit
        raise PayloadError(f"the body is not JSON ({_short(e)}).") from e
    if not isinstance(payload, dict):
        raise PayloadError(f"the body is JSON {type(payload).__name__}, not an object.")
    if media == CLOUDEVENTS_MEDIA_TYPE or "specversion" in payload:
        return _cloudevent(payload, now)
    return _default(payload, now)


def _default(payload: dict, now: float) -> list[PushEvent | Ignored]:
    event_type = payload.get("type")
    if not isinstance(event_type, str) or not event_type:
        raise PayloadError(f'field "type" must be an event type such as "PUSH_ARTIFACT", not {show(event_type)}.')
    if event_type != PUSH_TYPES["default"]:
        return [Ignored(f"event type {show(event_type)} is not handled (only PUSH_ARTIFACT).")]
    occur_at = payload.get("occur_at")
    if not _is_int(occur_at):
        raise PayloadError(f'field "occur_at" must be unix seconds, not {show(occur_at)}.')
    _check_push_time(occur_at, "occur_at", show(occur_at), now)
    return _pushes(payload.get("event_data"), "event_data", "default", occur_at, None)


def _cloudevent(payload: dict, now: float) -> list[PushEvent | Ignored]:
    if payload.get("specversion") != "1.0":
        raise PayloadError(f'field "specversion" must be "1.0" in a CloudEvents payload, not {show(payload.get("specversion"))}.')
    event_type = payload.get("type")
    if not isinstance(event_type, str) or not event_type:
        raise PayloadError(f'field "type" must be a CloudEvents type such as "harbor.artifact.pushed", not {show(event_type)}.')
    event_id = payload.get("id")
    if event_id is not None and not isinstance(event_id, str):
        raise PayloadError(f'field "id" must be a string, not {show(event_id)}.')
    if event_type != PUSH_TYPES["cloudevents"]:
        return [Ignored(f"event type {show(event_type)} is not handled (only harbor.artifact.pushed).")]
    pushed_at = parse_rfc3339(payload.get("time"), "time")
    _check_push_time(pushed_at, "time", show(payload.get("time")), now)
    return _pushes(payload.get("data"), "data", "cloudevents", pushed_at, event_id)


def _pushes(data: Any, where: str, fmt: str, pushed_at: int, event_id: str | None) -> list[PushEvent | Ignored]:
    if not isinstance(data, dict):
        raise PayloadError(f'field "{where}" must be an object, not {show(data)}.')
    repo = data.get("repository")
    if not isinstance(repo, dict):
        raise PayloadError(f'field "{where}.repository" must be an object, not {show(repo)}.')
    project_repo = repo.get("repo_full_name")
    if project_repo is None and isinstance(repo.get("namespace"), str) and isinstance(repo.get("name"), str):
        project_repo = f"{repo['namespace']}/{repo['name']}"
    if not isinstance(project_repo, str) or not _PROJECT_REPO.fullmatch(project_repo) or "/" not in project_repo:
        raise PayloadError(f'field "{where}.repository.repo_full_name" must be "project/repo", not {show(project_repo)}.')
    resources = data.get("resources")
    if not isinstance(resources, list) or not resources:
        raise PayloadError(f'field "{where}.resources" must be a non-empty list, not {show(resources)}.')
    events: list[PushEvent | Ignored] = []
    for i, res in enumerate(resources):
        at = f"{where}.resources[{i}]"
        if not isinstance(res, dict):
            raise PayloadError(f'field "{at}" must be an object, not {show(res)}.')
        digest, tag, url = res.get("digest"), res.get("tag"), res.get("resource_url")
        for name, value in (("digest", digest), ("tag", tag)):
            if value is not None and not isinstance(value, str):
                raise PayloadError(f'field "{at}.{name}" must be a string, not {show(value)}.')
        if not isinstance(url, str) or not url:
            raise PayloadError(f'field "{at}.resource_url" must be the pushed image ("host/project/repo:tag"), not {show(url)}.')
        repository, reference = split_reference(url)
        if not _REPOSITORY.fullmatch(repository) or not repository.endswith("/" + project_repo):
            raise PayloadError(f'field "{at}.resource_url" {show(url)} does not name repository {show(project_repo)} '
                               'as "host/project/repo".')
        if not digest:
            events.append(Ignored(f"the push of {repository} carries no digest; nothing to pin a redeploy to."))
            continue
        if not _DIGEST.fullmatch(digest):
            raise PayloadError(f'field "{at}.digest" must be "sha256:<64 lowercase hex>", not {show(digest)}.')
        untagged = not tag or tag == digest  # Harbor puts the digest in "tag" for a push by digest
        if not untagged and not _TAG.fullmatch(tag):
            raise PayloadError(f'field "{at}.tag" is not an image tag: {show(tag)}.')
        # resource_url names the same artifact: "repo:tag", or "repo@digest" for an untagged push
        if reference not in (None, "@" + digest, *(() if untagged else (":" + tag,))):
            raise PayloadError(f'field "{at}.resource_url" {show(url)} does not name the pushed artifact '
                               f'({show(digest if untagged else tag)}).')
        events.append(PushEvent(fmt, repository, project_repo, None if untagged else tag, digest, pushed_at, event_id))
    return events


def image_repository(reference: str) -> str:
    """``host[:port]/project/repo`` from ``...:tag`` or ``...@sha256:...`` (a port is not a tag)."""
    return split_reference(reference)[0]


def split_reference(reference: str) -> tuple[str, str | None]:
    """(``host[:port]/project/repo``, ``":tag"`` | ``"@digest"`` | None) of an image reference."""
    name, at, digest = reference.partition("@")
    if at:
        return name, "@" + digest
    slash = name.rfind("/")
    colon = name.rfind(":")
    return (name[:colon], name[colon:]) if colon > slash else (name, None)


def registry_host(repository: str) -> str:
    """``host[:port]`` of ``host[:port]/project/repo``."""
    return repository.split("/", 1)[0]


def parse_rfc3339(value: Any, where: str) -> int:
    """Unix seconds of an RFC 3339 time (as CloudEvents' ``time``), fractions dropped."""
    m = _RFC3339.fullmatch(value) if isinstance(value, str) else None
    if not m:
        raise PayloadError(f'field "{where}" must be an RFC 3339 time such as "2024-05-01T12:00:00Z", not {show(value)}.')
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    offset = m.group(8)
    try:
        tz = timezone.utc if offset in ("Z", "z") else timezone(
            (1 if offset[0] == "+" else -1) * timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6])))
        when = datetime(year, month, day, hour, minute, min(second, 59), tzinfo=tz)  # a leap second counts as :59
        return int(when.timestamp())
    except (ValueError, OverflowError) as e:  # 9999-12-31T23:59:59-23:59 is past datetime's range in UTC
        raise PayloadError(f'field "{where}" is not a valid time: {show(value)} ({e}).') from e


def _check_push_time(unix: int, where: str, shown: str, now: float) -> None:
    latest = int(now) + MAX_PUSH_AHEAD
    if not EARLIEST_PUSH <= unix <= latest:
        raise PayloadError(
            f'field "{where}" {shown} is outside the accepted push times (2000-01-01 to one day past this '
            f'receiver\'s clock, {_utc(latest)}).',
            "set the Harbor host's clock (NTP) and time zone, then let Harbor deliver again.")


def _utc(unix: int) -> str:
    return datetime.fromtimestamp(unix, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def match_route(push: PushEvent, routes: Sequence["ImageRoute"], registry: str | None = None) -> "ImageRoute | Ignored":
    """The first route for the push's repository whose tag pattern matches its tag.

    With ``registry`` (the block's Harbor host), a push from another registry host matches
    nothing. A route without a tag pattern (``"*"``, the default) takes every push of its
    repository, untagged ones (by digest) included; a route with a pattern never takes an
    untagged push: there is no tag to match."""
    host = registry_host(push.repository)
    if registry is not None and host != registry:
        return Ignored(f"the push of {push.repository} is from registry {host}, not {registry} "
                       "(the Harbor webhook block's registry).")
    same_repo = [r for r in routes if r.repository == push.project_repo]
    if not same_repo:
        return Ignored(f"repository {push.project_repo} is not mapped to a component "
                       "(add a route to the Harbor webhook block to act on it).")
    for route in same_repo:
        if route.tags == ANY_TAG or (push.tag is not None and fnmatch.fnmatchcase(push.tag, route.tags)):
            return route
    patterns = ", ".join(repr(r.tags) for r in same_repo)
    if push.tag is None:
        return Ignored(f"the push of {push.project_repo}@{push.digest} has no tag, and every route of it has a tag "
                       f"pattern ({patterns}); a route without one (PROJECT/REPO=COMPONENT) redeploys untagged pushes.")
    return Ignored(f"tag {push.tag} of {push.project_repo} matches no route pattern ({patterns}).")


def idempotency_key(push: PushEvent) -> str:
    """One redeploy per pushed digest: Harbor's redeliveries and re-tags of it share this key."""
    return f"harbor:{push.repository}@{push.digest}"


def run_request(push: PushEvent, route: "ImageRoute") -> RunRequest:
    """The redeploy run's parameters: block *names* and the image, never a secret. An untagged
    push has no ``tag`` parameter (the flow's is optional): it redeploys by digest alone."""
    parameters = {
        "component": route.component,
        "repository": push.repository,
        "tag": push.tag,
        "digest": push.digest,
        "pushed_at": push.pushed_at,
        "target_block": route.target_block,
        "mysql_block": route.mysql_block,
    }
    if push.tag is None:
        del parameters["tag"]
    return RunRequest(parameters=parameters, idempotency_key=idempotency_key(push))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _short(e: Exception) -> str:
    text = str(e).encode("ascii", "backslashreplace").decode()
    return text if len(text) <= 120 else text[:120] + "..."
