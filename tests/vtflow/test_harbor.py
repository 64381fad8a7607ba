"""vtflow/harbor.py: Harbor payloads to push events, routes, run requests. No I/O."""

import copy
import json

import pytest

from blocks.harbor import ImageRoute
from vtflow import harbor
from vtflow.harbor import Ignored, PayloadError, PushEvent, match_route, parse_delivery, run_request

DIGEST = "sha256:" + "ab" * 32


def default_payload(tag="v23.0.3-mysql80", digest=DIGEST, repo="vitess/lite", host="harbor.lan", event="PUSH_ARTIFACT"):
    """A Default-format body as Harbor sends it (goharbor/harbor, ../shared/FACTS.md)."""
    project, name = repo.split("/", 1)
    ref = f"{host}/{repo}@{digest}" if tag == digest else f"{host}/{repo}:{tag}"
    return {"type": event, "occur_at": 1714564800, "operator": "admin", "event_data": {
        "resources": [{"digest": digest, "tag": tag, "resource_url": ref}],
        "repository": {"date_created": 1714000000, "name": name, "namespace": project, "repo_full_name": repo,
                       "repo_type": "private"}}}


def cloudevent(tag="v23.0.3-mysql80", event="harbor.artifact.pushed", time="2024-05-01T12:00:00.123456789Z"):
    data = default_payload(tag)["event_data"]
    return {"specversion": "1.0", "id": "4a2b6a5e-1f5c-4a8e-9c3e-1d2f3a4b5c6d", "requestid": "r-1",
            "source": "/projects/2/webhook/policies/7", "type": event, "datacontenttype": "application/json",
            "time": time, "operator": "admin", "data": data}


def parse(obj, content_type="application/json"):
    return parse_delivery(json.dumps(obj).encode(), content_type)


def test_default_push_becomes_one_push_event():
    [push] = parse(default_payload())
    assert push == PushEvent("default", "harbor.lan/vitess/lite", "vitess/lite", "v23.0.3-mysql80", DIGEST, 1714564800)


def test_cloudevents_push_carries_the_same_push_with_its_time_in_unix_seconds():
    [push] = parse(cloudevent(), harbor.CLOUDEVENTS_MEDIA_TYPE + "; charset=utf-8")
    assert push.format == "cloudevents"
    assert (push.repository, push.tag, push.digest) == ("harbor.lan/vitess/lite", "v23.0.3-mysql80", DIGEST)
    assert push.pushed_at == 1714564800, "2024-05-01T12:00:00Z, the fraction dropped"
    assert push.event_id == "4a2b6a5e-1f5c-4a8e-9c3e-1d2f3a4b5c6d"


def test_a_cloudevent_is_recognised_by_its_shape_too():
    [push] = parse(cloudevent(), "application/json")
    assert push.format == "cloudevents"


@pytest.mark.parametrize("text, unix", [
    ("2024-05-01T12:00:00Z", 1714564800),
    ("2024-05-01T14:00:00+02:00", 1714564800),
    ("2024-05-01t12:00:00.5z", 1714564800),
    ("2024-05-01 11:30:00-00:30", 1714564800),
])
def test_rfc3339_times(text, unix):
    assert harbor.parse_rfc3339(text, "time") == unix


@pytest.mark.parametrize("text", ["2024-13-01T00:00:00Z", "2024-05-01", "yesterday", "2024-05-01T12:00:00", None, 17])
def test_bad_times_are_refused(text):
    with pytest.raises(PayloadError, match='"time"'):
        harbor.parse_rfc3339(text, "time")


def test_registry_port_is_not_taken_for_a_tag():
    body = default_payload(host="harbor.lan:8443")
    [push] = parse(body)
    assert push.repository == "harbor.lan:8443/vitess/lite"
    assert harbor.image_repository("harbor.lan:8443/vitess/lite@" + DIGEST) == "harbor.lan:8443/vitess/lite"
    assert harbor.image_repository("harbor.lan/a/b/c:v1") == "harbor.lan/a/b/c"


def test_nested_repositories_and_namespace_name_fallback():
    body = default_payload(repo="vitess/team/lite")
    del body["event_data"]["repository"]["repo_full_name"]
    body["event_data"]["repository"].update(namespace="vitess", name="team/lite")
    [push] = parse(body)
    assert push.project_repo == "vitess/team/lite"


@pytest.mark.parametrize("event", ["PULL_ARTIFACT", "DELETE_ARTIFACT", "SCANNING_COMPLETED", "QUOTA_EXCEED", "REPLICATION"])
def test_other_default_event_types_are_ignored(event):
    body = {"type": event, "occur_at": 1, "event_data": {"whatever": True}}
    [ignored] = parse(body)
    assert isinstance(ignored, Ignored) and event in ignored.reason and "PUSH_ARTIFACT" in ignored.reason


def test_other_cloudevent_types_are_ignored():
    [ignored] = parse(cloudevent(event="harbor.artifact.deleted"), harbor.CLOUDEVENTS_MEDIA_TYPE)
    assert isinstance(ignored, Ignored) and "harbor.artifact.deleted" in ignored.reason


def test_untagged_push_is_a_push_by_digest_and_push_without_digest_is_ignored():
    # was: Ignored ("no tag"); Harbor's untagged push (tag = digest, resource_url repo@digest) is a push
    [untagged] = parse(default_payload(tag=DIGEST))
    assert untagged == PushEvent("default", "harbor.lan/vitess/lite", "vitess/lite", None, DIGEST, 1714564800)
    body = default_payload(tag=DIGEST)
    body["event_data"]["resources"][0]["tag"] = ""
    assert parse(body)[0].tag is None
    body = default_payload()
    del body["event_data"]["resources"][0]["digest"]
    [no_digest] = parse(body)
    assert isinstance(no_digest, Ignored) and "no digest" in no_digest.reason
    body["event_data"]["resources"][0]["digest"] = ""
    assert isinstance(parse(body)[0], Ignored)


def test_each_resource_is_a_push():
    body = default_payload()
    second = copy.deepcopy(body["event_data"]["resources"][0])
    second.update(tag="latest", resource_url="harbor.lan/vitess/lite:latest")
    body["event_data"]["resources"].append(second)
    assert [p.tag for p in parse(body)] == ["v23.0.3-mysql80", "latest"]


def _without(path):
    body = default_payload()
    node = body
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return body


def _with(path, value):
    body = default_payload()
    node = body
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return body


@pytest.mark.parametrize("body, field", [
    (_without(["type"]), '"type"'),
    (_with(["type"], 7), '"type"'),
    (_without(["occur_at"]), '"occur_at"'),
    (_with(["occur_at"], "yesterday"), '"occur_at"'),
    (_with(["occur_at"], True), '"occur_at"'),
    (_with(["occur_at"], 10**20), '"occur_at"'),
    (_without(["event_data"]), '"event_data"'),
    (_with(["event_data"], []), '"event_data"'),
    (_with(["event_data", "resources"], []), '"event_data.resources"'),
    (_with(["event_data", "resources"], {"digest": DIGEST}), '"event_data.resources"'),
    (_with(["event_data", "resources", 0], "sha256:x"), '"event_data.resources[0]"'),
    (_with(["event_data", "resources", 0, "digest"], 12), '"event_data.resources[0].digest"'),
    (_with(["event_data", "resources", 0, "digest"], "md5:abc"), '"event_data.resources[0].digest"'),
    (_with(["event_data", "resources", 0, "digest"], DIGEST + "\n"), '"event_data.resources[0].digest"'),
    (_with(["event_data", "resources", 0, "digest"], DIGEST.upper()), '"event_data.resources[0].digest"'),
    (_with(["event_data", "resources", 0, "digest"], "sha512:" + "ab" * 64), '"event_data.resources[0].digest"'),
    (_with(["event_data", "resources", 0, "digest"], "sha256:" + "ab" * 31), '"event_data.resources[0].digest"'),
    (_with(["event_data", "resources", 0, "tag"], "v23.0.3-mysql80\n"), '"event_data.resources[0].tag"'),
    (_with(["event_data", "resources", 0, "resource_url"], "harbor.lan/vitess/lite:v1"), "does not name the pushed"),
    (_with(["event_data", "resources", 0, "resource_url"], "harbor.lan/vitess/lite@sha256:" + "cd" * 32),
     "does not name the pushed"),
    (_with(["event_data", "resources", 0, "resource_url"], "harbor.lan/vitess/lite\n:v23.0.3-mysql80"),
     "does not name"),
    (_with(["event_data", "repository", "repo_full_name"], "vitess/lite\n"), '"event_data.repository.repo_full_name"'),
    (_with(["event_data", "resources", 0, "tag"], ["v1"]), '"event_data.resources[0].tag"'),
    (_with(["event_data", "resources", 0, "tag"], "v1; rm -rf /"), '"event_data.resources[0].tag"'),
    (_without(["event_data", "resources", 0, "resource_url"]), '"event_data.resources[0].resource_url"'),
    (_with(["event_data", "resources", 0, "resource_url"], "harbor.lan/other/repo:v1"), "does not name"),
    (_with(["event_data", "resources", 0, "resource_url"], "vitess/lite:v1"), "does not name"),
    (_with(["event_data", "resources", 0, "resource_url"], "harbor.lan/vitess/Lite:v1"), "does not name"),
    (_without(["event_data", "repository"]), '"event_data.repository"'),
    (_with(["event_data", "repository", "repo_full_name"], "lite"), '"event_data.repository.repo_full_name"'),
    (_with(["event_data", "repository"], {"repo_full_name": None, "namespace": 5, "name": "lite"}),
     '"event_data.repository.repo_full_name"'),
])
def test_wrong_shapes_are_refused_naming_the_field(body, field):
    with pytest.raises(PayloadError) as e:
        parse(body)
    assert field in str(e.value)
    assert str(e.value).startswith("Harbor webhook payload: ") and "Fix:" in str(e.value)


@pytest.mark.parametrize("body, problem", [
    (b"", "not JSON"),
    (b"{", "not JSON"),
    (b"\xff\xfe\x00garbage", "not JSON"),
    (b"[1, 2]", "not an object"),
    (b'"PUSH_ARTIFACT"', "not an object"),
    (b"[" * 100_000 + b"]" * 100_000, "nests too deeply"),
    (b'{"occur_at": ' + b"9" * 5000 + b"}", "not JSON"),
])
def test_bodies_that_are_not_json_objects(body, problem):
    with pytest.raises(PayloadError, match=problem):
        parse_delivery(body, "application/json")


def test_cloudevents_content_type_needs_a_cloudevent():
    with pytest.raises(PayloadError, match='"specversion"'):
        parse(default_payload(), harbor.CLOUDEVENTS_MEDIA_TYPE)
    with pytest.raises(PayloadError, match="batches"):
        parse([cloudevent()], "application/cloudevents-batch+json")
    wrong = cloudevent()
    wrong["data"] = "x"
    with pytest.raises(PayloadError, match='"data"'):
        parse(wrong, harbor.CLOUDEVENTS_MEDIA_TYPE)


def test_received_values_are_quoted_in_ascii_and_cut_short():
    body = default_payload()
    body["type"] = "\ud800" + "x" * 500  # a lone surrogate cannot be encoded as UTF-8
    [ignored] = parse(body)
    ignored.reason.encode("utf-8")
    assert len(ignored.reason) < 200 and "\\ud800" in ignored.reason


ROUTES = [
    ImageRoute(repository="vitess/lite", tags="v23.*", component="vitess", target_block="prod", mysql_block="prod-db"),
    ImageRoute(repository="vitess/lite", tags="latest", component="vitess", target_block="staging"),
    ImageRoute(repository="vitess/vtadmin", component="vtadmin"),
    ImageRoute(repository="planetscale/vitess-operator", tags="v2.*", component="operator"),
]


def test_the_first_matching_route_wins():
    [push] = parse(default_payload("v23.0.3-mysql80"))
    assert match_route(push, ROUTES) is ROUTES[0]
    [push] = parse(default_payload("latest"))
    assert match_route(push, ROUTES) is ROUTES[1]
    [push] = parse(default_payload("anything", repo="vitess/vtadmin"))
    assert match_route(push, ROUTES) is ROUTES[2]


def test_unmapped_repository_and_unmatched_tag_are_ignored_with_the_reason():
    [push] = parse(default_payload(repo="library/nginx"))
    unmapped = match_route(push, ROUTES)
    assert isinstance(unmapped, Ignored) and "library/nginx is not mapped" in unmapped.reason
    [push] = parse(default_payload("v22.0.1"))
    unmatched = match_route(push, ROUTES)
    assert isinstance(unmatched, Ignored) and "v22.0.1" in unmatched.reason and "'v23.*'" in unmatched.reason
    assert isinstance(match_route(push, []), Ignored)


def test_tag_globs_are_case_sensitive():
    [push] = parse(default_payload("LATEST"))
    assert isinstance(match_route(push, ROUTES), Ignored)


def test_run_request_names_blocks_and_pins_the_digest():
    [push] = parse(default_payload())
    request = run_request(push, ROUTES[0])
    assert request.parameters == {
        "component": "vitess", "repository": "harbor.lan/vitess/lite", "tag": "v23.0.3-mysql80", "digest": DIGEST,
        "pushed_at": 1714564800, "target_block": "prod", "mysql_block": "prod-db"}
    assert request.idempotency_key == f"harbor:harbor.lan/vitess/lite@{DIGEST}"


def test_the_same_digest_under_another_tag_or_format_has_the_same_key():
    [a] = parse(default_payload("v23.0.3-mysql80"))
    [b] = parse(default_payload("latest"))
    [c] = parse(cloudevent(), harbor.CLOUDEVENTS_MEDIA_TYPE)
    assert harbor.idempotency_key(a) == harbor.idempotency_key(b) == harbor.idempotency_key(c)


# ---------------------------------------------------------------- the hostile tester's cases


@pytest.mark.parametrize("time", [
    "2024-05-01T12:00:00Z\n", "2024-05-01T12:00:00+01:99", "2024-05-01T12:00:00+24:00",
    "\u0662\u0660\u0662\u0664-05-01T12:00:00Z",  # Arabic-Indic digits are digits to \\d, not to RFC 3339
])
def test_times_are_checked_whole_and_in_ascii(time):
    with pytest.raises(PayloadError, match='"time"'):
        harbor.parse_rfc3339(time, "time")


NOW = 1714564800


@pytest.mark.parametrize("time", ["9999-12-31T23:59:59-23:59", "9999-12-31T23:59:59Z", "1969-12-31T23:59:59Z",
                                  "1999-12-31T23:59:59Z", "2024-05-02T12:00:01Z"])
def test_cloudevent_times_outside_the_window_are_refused_with_the_reason(time):
    with pytest.raises(PayloadError) as e:
        parse_delivery(json.dumps(cloudevent(time=time)).encode(), harbor.CLOUDEVENTS_MEDIA_TYPE, now=NOW)
    assert '"time"' in str(e.value) and "outside the accepted push times" in str(e.value)
    assert "2024-05-02T12:00:00Z" in str(e.value) and "clock" in e.value.fix


@pytest.mark.parametrize("occur_at", [-1, 0, harbor.EARLIEST_PUSH - 1, NOW + harbor.MAX_PUSH_AHEAD + 1, 253402300799])
def test_default_times_outside_the_window_are_refused(occur_at):
    with pytest.raises(PayloadError, match='"occur_at".*outside the accepted push times'):
        parse_delivery(json.dumps(_with(["occur_at"], occur_at)).encode(), "application/json", now=NOW)


def test_times_inside_the_window_pass():
    for occur_at in (harbor.EARLIEST_PUSH, NOW - 86400 * 365, NOW + harbor.MAX_PUSH_AHEAD):
        [push] = parse_delivery(json.dumps(_with(["occur_at"], occur_at)).encode(), "application/json", now=NOW)
        assert push.pushed_at == occur_at
    [push] = parse_delivery(json.dumps(cloudevent(time="2024-05-02T11:59:59Z")).encode(), harbor.CLOUDEVENTS_MEDIA_TYPE,
                            now=NOW)
    assert push.pushed_at == NOW + 86399


def test_an_untagged_push_matches_only_a_route_without_a_tag_pattern_and_redeploys_by_digest():
    [push] = parse(default_payload(tag=DIGEST))
    patterned = [ImageRoute(repository="vitess/lite", tags="v23.*", component="vitess")]
    ignored = match_route(push, patterned)
    assert isinstance(ignored, Ignored) and "has no tag" in ignored.reason and "'v23.*'" in ignored.reason
    assert "PROJECT/REPO=COMPONENT" in ignored.reason
    any_push = ImageRoute(repository="vitess/lite", component="vitess")
    assert match_route(push, [*patterned, any_push]) is any_push
    request = run_request(push, any_push)
    assert "tag" not in request.parameters and request.parameters["digest"] == DIGEST
    assert request.idempotency_key == f"harbor:harbor.lan/vitess/lite@{DIGEST}"
    [tagged] = parse(default_payload("anything"))
    assert match_route(tagged, [any_push]) is any_push


def test_a_push_from_another_registry_host_is_ignored_with_the_reason():
    [push] = parse(default_payload(host="evil.example"))
    ignored = match_route(push, ROUTES, registry="harbor.lan")
    assert isinstance(ignored, Ignored)
    assert "evil.example" in ignored.reason and "not harbor.lan" in ignored.reason and "registry" in ignored.reason
    [ours] = parse(default_payload(host="harbor.lan"))
    assert match_route(ours, ROUTES, registry="harbor.lan") is ROUTES[0]
    [port] = parse(default_payload(host="harbor.lan:8443"))
    assert isinstance(match_route(port, ROUTES, registry="harbor.lan"), Ignored)
    assert match_route(port, ROUTES, registry="harbor.lan:8443") is ROUTES[0]


def test_a_digest_with_a_newline_is_not_a_second_key():
    body = default_payload()
    body["event_data"]["resources"][0]["digest"] = DIGEST + "\n"
    with pytest.raises(PayloadError):
        parse(body)
