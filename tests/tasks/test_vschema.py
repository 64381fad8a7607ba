"""tasks/vschema.py: VSchemas checked before they are sent, with the JSON path of each problem."""

import json

import pytest

from tasks.vschema import check
from vtflow.errors import ConfigError
from helpers import EXAMPLES



@pytest.mark.parametrize("name", ["vschema_commerce_initial.json", "vschema_commerce_seq.json",
                                  "vschema_customer_sharded.json"])
def test_upstream_vschemas_pass(name):
    vs, warnings = check((EXAMPLES / name).read_text(), name)
    assert "tables" in vs
    if name == "vschema_customer_sharded.json":
        # its sequences live in the unsharded commerce keyspace: said, not refused
        assert any("customer_seq" in w and "another (unsharded) keyspace" in w for w in warnings)


def test_not_json_names_line_and_column():
    with pytest.raises(ConfigError, match=r"VSchema v.json:3:1: is not JSON"):
        check('{\n  "tables": {},\n}', "v.json")


def test_every_problem_is_listed_with_its_path():
    bad = {"sharded": "yes", "vindexes": {"hash": {"type": "hash"}, "broken": {}},
           "tables": {"customer": {"column_vindexes": [{"column": "id", "name": "hsh"}]},
                      "corder": {},
                      "seq": {"type": "sequnce"},
                      "t": {"auto_increment": {"column": "id"}}}}
    with pytest.raises(ConfigError) as e:
        check(json.dumps(bad), "bad.json")
    text = str(e.value)
    assert "sharded: must be true or false, not 'yes'" in text
    assert 'vindexes.broken: needs a "type"' in text
    assert "tables.customer.column_vindexes[0].name: vindex 'hsh' is not defined in vindexes (defined: broken, hash)" in text
    assert "tables.seq.type: 'sequnce' is not one of sequence, reference" in text
    assert 'tables.t.auto_increment: needs "column" and "sequence"' in text


def test_sharded_tables_need_a_primary_vindex():
    with pytest.raises(ConfigError, match="tables.corder: a sharded keyspace needs a primary vindex"):
        check(json.dumps({"sharded": True, "vindexes": {"hash": {"type": "hash"}}, "tables": {"corder": {}}}), "s.json")


def test_unknown_keys_are_warnings_not_errors():
    vs, warnings = check(json.dumps({"tables": {"t": {"future_key": 1}}, "new_top": True}), "u.json")
    assert warnings == ["new_top: not a VSchema key vtflow knows; sent as is",
                        "tables.t.future_key: not a table key vtflow knows; sent as is"]
