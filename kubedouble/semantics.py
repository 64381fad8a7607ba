"""The hand-written validation a real API server runs after the schema: the Go rules of
pkg/apis/core/validation/validation.go and pkg/apis/apps/validation/validation.go (and batch,
the metav1 label rules of apimachinery) for the built-in kinds this stack writes.

Each rule lives here once and returns ``Cause``s with the server's field paths and wording; the
caller (``validation.validate``) turns them into one 422. Runs only on objects that passed the
schema, so types are right. Pure: no store, no HTTP. Values in messages are printed as Go's
``field.Error`` prints them (``%#v`` for structs and maps, see ``go_value``).
"""

from __future__ import annotations

import copy
import re
from typing import Any

from vtflow.crdschema import field_path

from .quantity import parse_quantity
from .resources import ResourceType
from .selectors import match_label_selector_obj
from .status import (
    Cause,
    duplicate_value,
    forbidden_field,
    invalid_value,
    required_value,
    unsupported_value,
)

SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
                 "'-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', "
                 "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
             "and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
             "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
_NAME_PART = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_NAME_PART_MSG = ("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
                  "with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
                  "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_VALUE_MSG = ("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
                    "and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or "
                    "'12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')")

# where each kind keeps its pod spec, and whether the pods must restart Always
_POD_SPECS = {
    ("", "pods"): (("spec",), None),
    ("", "podtemplates"): (("template", "spec"), None),
    ("apps", "deployments"): (("spec", "template", "spec"), "Always"),
    ("apps", "replicasets"): (("spec", "template", "spec"), "Always"),
    ("apps", "daemonsets"): (("spec", "template", "spec"), "Always"),
    ("apps", "statefulsets"): (("spec", "template", "spec"), "Always"),
    ("batch", "jobs"): (("spec", "template", "spec"), None),
    ("batch", "cronjobs"): (("spec", "jobTemplate", "spec", "template", "spec"), None),
}
_SELECTED = {("apps", "deployments"): "deployment", ("apps", "replicasets"): "replicaset",
             ("apps", "daemonsets"): "daemonset", ("apps", "statefulsets"): "statefulset"}
# ValidateStatefulSetUpdate: every other spec field is fixed at creation
_STS_MUTABLE = ("replicas", "ordinals", "template", "updateStrategy", "revisionHistoryLimit",
                "persistentVolumeClaimRetentionPolicy", "minReadySeconds")
_STS_FORBIDDEN = ("updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', "
                  "'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and "
                  "'minReadySeconds' are forbidden")
_IMMUTABLE_SET = "field is immutable when `immutable` is set"


class GoValue(str):
    """A value already printed the Go way; ``go_quote`` must not quote it again."""


def _go(value: Any) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(value)


def go_string_map(m: dict | None) -> GoValue:
    if m is None:
        return GoValue("map[string]string(nil)")
    return GoValue("map[string]string{" + ", ".join(f"{_go(k)}:{_go(v)}" for k, v in sorted(m.items())) + "}")


def go_selector(sel: dict | None) -> GoValue:
    """``%#v`` of a *metav1.LabelSelector, as ``field is immutable`` prints it."""
    if sel is None:
        return GoValue("null")
    exprs = sel.get("matchExpressions")
    if exprs is None:
        ex = "[]v1.LabelSelectorRequirement(nil)"
    else:
        items = []
        for e in exprs:
            values = e.get("values")
            vs = "[]string(nil)" if values is None else "[]string{" + ", ".join(_go(v) for v in values) + "}"
            items.append(f'v1.LabelSelectorRequirement{{Key:{_go(e.get("key", ""))}, '
                         f'Operator:{_go(e.get("operator", ""))}, Values:{vs}}}')
        ex = "[]v1.LabelSelectorRequirement{" + ", ".join(items) + "}"
    return GoValue(f"v1.LabelSelector{{MatchLabels:{go_string_map(sel.get('matchLabels'))}, MatchExpressions:{ex}}}")


def _dig(obj: Any, path: tuple) -> Any:
    for p in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(p)
    return obj


# -- labels ------------------------------------------------------------------------------------

def label_causes(labels: dict | None, path: str) -> list[Cause]:
    """ValidateLabels: keys are qualified names (an optional DNS-subdomain prefix and a name part),
    values empty or a name part of at most 63 characters."""
    causes: list[Cause] = []
    for k, v in (labels or {}).items():
        prefix, _, name = k.rpartition("/")
        if not name or len(name) > 63 or not _NAME_PART.match(name):
            detail = "name part must be non-empty" if not name else \
                "name part must be no more than 63 characters" if len(name) > 63 else _NAME_PART_MSG
            causes.append(invalid_value(path, k, detail))
        if "/" in k and (not prefix or not SUBDOMAIN.match(prefix) or len(prefix) > 253):
            causes.append(invalid_value(path, k, "prefix part " + SUBDOMAIN_MSG if prefix
                                        else "prefix part must be non-empty"))
        if not isinstance(v, str):
            continue
        if len(v) > 63:
            causes.append(invalid_value(path, v, "must be no more than 63 characters"))
        elif not _LABEL_VALUE.match(v):
            causes.append(invalid_value(path, v, _LABEL_VALUE_MSG))
    return causes


# -- pod specs ---------------------------------------------------------------------------------

def _resources_causes(res: dict, path: str) -> list[Cause]:
    causes: list[Cause] = []
    limits, requests = res.get("limits") or {}, res.get("requests") or {}
    for kind, values in (("limits", limits), ("requests", requests)):
        for name, q in values.items():
            if parse_quantity(q) < 0:
                causes.append(invalid_value(f"{path}.{kind}[{name}]", q, "must be greater than or equal to 0"))
    for name, q in requests.items():
        if name in limits and parse_quantity(q) > parse_quantity(limits[name]):
            causes.append(invalid_value(f"{path}.requests", q,
                                        f"must be less than or equal to {name} limit of {limits[name]}"))
    return causes


def _container_causes(containers: list, path: str, volumes: set[str]) -> list[Cause]:
    causes: list[Cause] = []
    seen: set[str] = set()
    for i, c in enumerate(containers or []):
        cp = f"{path}[{i}]"
        name = c.get("name") or ""
        if not name:
            causes.append(required_value(f"{cp}.name"))
        elif len(name) > 63 or not LABEL.match(name):
            causes.append(invalid_value(f"{cp}.name", name,
                                        "must be no more than 63 characters" if len(name) > 63 else LABEL_MSG))
        elif name in seen:
            causes.append(duplicate_value(f"{cp}.name", name))
        seen.add(name)
        if not c.get("image"):
            causes.append(required_value(f"{cp}.image"))
        for j, port in enumerate(c.get("ports") or []):
            number = port.get("containerPort")
            if isinstance(number, int) and not 1 <= number <= 65535:
                causes.append(invalid_value(f"{cp}.ports[{j}].containerPort", number,
                                            "must be between 1 and 65535, inclusive"))
        for j, mount in enumerate(c.get("volumeMounts") or []):
            if mount.get("name") and mount["name"] not in volumes:
                causes.append(Cause("FieldValueNotFound", f'Not found: {_go(mount["name"])}', f"{cp}.volumeMounts[{j}].name"))
        causes += _resources_causes(c.get("resources") or {}, f"{cp}.resources")
    return causes


def _node_affinity_causes(affinity: dict, path: str) -> list[Cause]:
    """validateNodeFieldSelectorRequirement: a ``matchFields`` requirement names metadata.name with
    In or NotIn and exactly one value (a list of node names is one term per node)."""
    causes: list[Cause] = []
    required = ((affinity.get("nodeAffinity") or {}).get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    terms = [(f"{path}.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[{i}]", t)
             for i, t in enumerate(required.get("nodeSelectorTerms") or [])]
    preferred = (affinity.get("nodeAffinity") or {}).get("preferredDuringSchedulingIgnoredDuringExecution") or []
    terms += [(f"{path}.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[{i}].preference",
               p.get("preference") or {}) for i, p in enumerate(preferred)]
    for tp, term in terms:
        for j, req in enumerate(term.get("matchFields") or []):
            rp = f"{tp}.matchFields[{j}]"
            if req.get("operator") in ("In", "NotIn"):
                if len(req.get("values") or []) != 1:
                    causes.append(required_value(f"{rp}.values", "must be only one value when `operator` is 'In' "
                                                                 "or 'NotIn' for node field selector"))
            else:
                causes.append(invalid_value(f"{rp}.operator", req.get("operator"), "not a valid selector operator"))
            if req.get("key") != "metadata.name":
                causes.append(invalid_value(f"{rp}.key", req.get("key"), "not a valid field selector key"))
    return causes


def pod_spec_causes(spec: dict, path: str, extra_volumes: set[str] = frozenset()) -> list[Cause]:
    volumes = {v.get("name") for v in spec.get("volumes") or []} | set(extra_volumes)
    causes = _container_causes(spec.get("containers"), f"{path}.containers", volumes)
    if not spec.get("containers"):
        causes.append(required_value(f"{path}.containers"))
    causes += _container_causes(spec.get("initContainers"), f"{path}.initContainers", volumes)
    causes += _node_affinity_causes(spec.get("affinity") or {}, f"{path}.affinity")
    return causes


# -- whole objects -----------------------------------------------------------------------------

def object_causes(rt: ResourceType, obj: dict) -> list[Cause]:
    """The create-and-update rules of one object (ValidateX in the Go code)."""
    causes: list[Cause] = []
    spec = obj.get("spec") or {}
    where = _POD_SPECS.get(rt.gr)
    if where:
        path, restart = where
        template_meta = _dig(obj, path[:-1] + ("metadata",)) if len(path) > 1 else None
        if template_meta:
            causes += label_causes(template_meta.get("labels"), field_path(list(path[:-1]) + ["metadata", "labels"]))
        pod_spec = _dig(obj, path)
        if isinstance(pod_spec, dict):
            claims = {(t.get("metadata") or {}).get("name") for t in spec.get("volumeClaimTemplates") or []}
            causes += pod_spec_causes(pod_spec, field_path(list(path)), claims)
            if restart and pod_spec.get("restartPolicy") != restart:
                causes.append(unsupported_value(field_path(list(path)) + ".restartPolicy",
                                                pod_spec.get("restartPolicy"), [restart]))
    if rt.gr in _SELECTED:
        causes += _selector_causes(spec, _SELECTED[rt.gr])
    return causes


def _selector_causes(spec: dict, word: str) -> list[Cause]:
    selector = spec.get("selector")
    if selector is None:
        return [required_value("spec.selector")]
    if not selector.get("matchLabels") and not selector.get("matchExpressions"):
        detail = "empty selector is not valid for statefulset." if word == "statefulset" else \
            f"empty selector is invalid for {word}"
        return [invalid_value("spec.selector", go_selector(selector), detail)]
    causes = label_causes(selector.get("matchLabels"), "spec.selector.matchLabels")
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    if not match_label_selector_obj(selector, labels):
        causes.append(invalid_value("spec.template.metadata.labels", go_string_map(labels),
                                    "`selector` does not match template `labels`"))
    return causes


def update_causes(rt: ResourceType, obj: dict, old: dict) -> list[Cause]:
    """The rules only an update has: fields fixed at creation (ValidateXUpdate in the Go code)."""
    causes: list[Cause] = []
    spec, old_spec = obj.get("spec") or {}, old.get("spec") or {}
    if (rt.gr in _SELECTED or rt.gr == ("batch", "jobs")) and old_spec.get("selector") is not None \
            and spec.get("selector") != old_spec.get("selector"):
        causes.append(invalid_value("spec.selector", go_selector(spec.get("selector")), "field is immutable"))
    if rt.gr == ("apps", "statefulsets"):
        fixed = {k: v for k, v in spec.items() if k not in _STS_MUTABLE}
        old_fixed = {k: v for k, v in old_spec.items() if k not in _STS_MUTABLE}
        if fixed != old_fixed:
            causes.append(forbidden_field("spec", _STS_FORBIDDEN))
    elif rt.gr == ("", "services"):
        ip, old_ip = spec.get("clusterIP"), old_spec.get("clusterIP")
        if old_spec.get("type") != "ExternalName" and spec.get("type") != "ExternalName" \
                and old_ip and ip and ip != old_ip:
            causes.append(invalid_value("spec.clusterIP", ip, "field is immutable"))
    elif rt.gr == ("", "persistentvolumeclaims"):
        causes += _pvc_update_causes(spec, old_spec, (old.get("status") or {}).get("phase"))
    elif rt.gr in (("", "secrets"), ("", "configmaps")):
        if rt.gr == ("", "secrets") and obj.get("type") != old.get("type"):
            causes.append(invalid_value("type", obj.get("type"), "field is immutable"))
        if old.get("immutable") is True:
            if obj.get("immutable") is not True:
                causes.append(forbidden_field("immutable", _IMMUTABLE_SET))
            for key in ("data", "binaryData") if rt.gr == ("", "configmaps") else ("data",):
                if (obj.get(key) or {}) != (old.get(key) or {}):
                    causes.append(forbidden_field(key, _IMMUTABLE_SET))
    return causes


def _pvc_update_causes(spec: dict, old_spec: dict, phase: str | None) -> list[Cause]:
    """ValidatePersistentVolumeClaimUpdate: only a bound claim's storage request may change (grow),
    and an unset volumeName may be set (binding)."""
    new, before = copy.deepcopy(spec), copy.deepcopy(old_spec)
    if not before.get("volumeName"):
        new.pop("volumeName", None)
        before.pop("volumeName", None)
    for s in (new, before):
        s.pop("volumeAttributesClassName", None)
    causes: list[Cause] = []
    want = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
    had = ((old_spec.get("resources") or {}).get("requests") or {}).get("storage")
    if phase == "Bound":
        for s in (new, before):
            (s.get("resources") or {}).get("requests", {}).pop("storage", None)
        if want is not None and had is not None and parse_quantity(want) < parse_quantity(had):
            causes.append(forbidden_field("spec.resources.requests.storage", "field can not be less than status.capacity"))
    if new != before:
        causes.append(forbidden_field("spec", "spec is immutable after creation except resources.requests and "
                                              "volumeAttributesClassName for bound claims"))
    return causes
