"""vtflow.crdschema: the structural-schema dialect as the API server applies it."""

import yaml

from tests.helpers import EXAMPLES
from vtflow import crdschema

SCHEMA = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "required": ["size"],
            "properties": {
                "size": {"type": "integer", "minimum": 1},
                "mode": {"type": "string", "default": "fast", "enum": ["fast", "safe"]},
                "port": {"x-kubernetes-int-or-string": True},
                "note": {"type": "string", "nullable": True},
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "items": {"type": "array", "items": {"type": "object", "properties": {"n": {"type": "integer"}}}},
                "template": {"type": "object", "x-kubernetes-embedded-resource": True,
                             "properties": {"spec": {"type": "object"}}},
            },
        },
    },
}


def obj(**spec):
    return {"apiVersion": "x.example/v1", "kind": "Thing", "metadata": {"name": "t", "anything": 1}, "spec": spec}


def test_unknown_fields_are_pruned_and_defaults_filled_on_a_copy():
    given = obj(size=2, unknown=1, items=[{"n": 1, "gone": 2}])
    stored, errors = crdschema.validate(given, SCHEMA)
    assert errors == []
    assert stored["spec"] == {"size": 2, "mode": "fast", "items": [{"n": 1}]}
    assert stored["metadata"] == given["metadata"], "metadata is ObjectMeta: neither pruned nor checked here"
    assert "unknown" in given["spec"], "the caller's object is not changed"


def test_preserved_embedded_and_map_fields_are_kept():
    stored, errors = crdschema.validate(obj(size=1, extra={"a": {"b": 1}}, labels={"k": "v"},
                                            template={"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                                                      "spec": {}, "junk": 1}), SCHEMA)
    assert errors == []
    assert stored["spec"]["extra"] == {"a": {"b": 1}} and stored["spec"]["labels"] == {"k": "v"}
    assert stored["spec"]["template"] == {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}}


def test_int_or_string_and_nullable():
    for port in (80, "http"):
        assert crdschema.validate(obj(size=1, port=port, note=None), SCHEMA)[1] == []
    _, errors = crdschema.validate(obj(size=1, port=[1]), SCHEMA)
    assert [crdschema.field_path(e.absolute_path) for e in errors] == ["spec.port"]


def test_errors_name_their_fields_in_order():
    _, errors = crdschema.validate(obj(mode="slow", labels={"k": 3}, items=[{"n": "x"}]), SCHEMA)
    assert [(crdschema.field_path(e.absolute_path), e.validator) for e in errors] == [
        ("spec", "required"), ("spec.items[0].n", "type"), ("spec.labels.k", "type"), ("spec.mode", "enum")]


def test_the_upstream_101_cluster_validates_against_its_release_crd():
    docs = [d for d in yaml.safe_load_all((EXAMPLES / "operator.yaml").read_text()) if d]
    crd = next(d for d in docs if d["kind"] == "CustomResourceDefinition"
               and d["metadata"]["name"] == "vitessclusters.planetscale.com")
    vc = next(d for d in yaml.safe_load_all((EXAMPLES / "101_initial_cluster.yaml").read_text())
              if d and d["kind"] == "VitessCluster")
    schema = crdschema.crd_schema(crd, "v2")
    assert schema and crdschema.crd_schema(crd, "v9") is None
    stored, errors = crdschema.validate(vc, schema)
    assert errors == []
    vc["spec"]["cells"][0]["gateway"]["replicas"] = "two"
    _, errors = crdschema.validate(vc, schema)
    assert [crdschema.field_path(e.absolute_path) for e in errors] == ["spec.cells[0].gateway.replicas"]
