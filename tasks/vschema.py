"""VSchemas checked before they are sent: structure, vindex references, primary vindexes.

``check(text, source)`` parses a keyspace's VSchema (JSON, as ``vtctldclient ApplyVSchema``
takes it) and returns it normalised, or raises one ConfigError listing every problem with its
JSON path, so that a typo fails here, named, before anything reaches the cluster. Unknown keys
are reported as warnings (newer Vitess versions add some). Pure: no I/O beyond the text given.
"""

from __future__ import annotations

import json

from vtflow.errors import ConfigError

KNOWN_TOP = {"sharded", "vindexes", "tables", "require_explicit_routing", "foreign_key_mode", "multi_tenant_spec"}
KNOWN_TABLE = {"type", "column_vindexes", "auto_increment", "columns", "pinned", "column_list_authoritative",
               "source"}
TABLE_TYPES = {"", "sequence", "reference"}


def check(text: str, source: str) -> tuple[dict, list[str]]:
    """The parsed VSchema and warnings; raises ConfigError naming every problem."""
    try:
        vs = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"VSchema {source}:{e.lineno}:{e.colno}", f"is not JSON ({e.msg}).",
                          "fix the JSON (a trailing comma or a missing quote is the usual cause).") from e
    problems: list[str] = []
    warnings: list[str] = []
    if not isinstance(vs, dict):
        raise ConfigError(f"VSchema {source}", "must be a JSON object.", 'start from {"tables": {}}.')
    for key in sorted(set(vs) - KNOWN_TOP):
        warnings.append(f"{key}: not a VSchema key vtflow knows; sent as is")
    sharded = vs.get("sharded", False)
    if not isinstance(sharded, bool):
        problems.append(f"sharded: must be true or false, not {sharded!r}")
        sharded = False
    vindexes = vs.get("vindexes") or {}
    if not isinstance(vindexes, dict):
        problems.append("vindexes: must be an object of name -> {type, params, owner}")
        vindexes = {}
    for name, v in vindexes.items():
        if not isinstance(v, dict) or not isinstance(v.get("type"), str) or not v.get("type"):
            problems.append(f"vindexes.{name}: needs a \"type\" (e.g. \"hash\", \"xxhash\", \"consistent_lookup_unique\")")
            continue
        if "params" in v and (not isinstance(v["params"], dict) or not all(isinstance(x, str) for x in v["params"].values())):
            problems.append(f"vindexes.{name}.params: must be an object of strings")
    tables = vs.get("tables") or {}
    if not isinstance(tables, dict):
        problems.append("tables: must be an object of table name -> definition")
        tables = {}
    defined = ", ".join(sorted(vindexes)) or "none"
    for tname, t in tables.items():
        where = f"tables.{tname}"
        if not isinstance(t, dict):
            problems.append(f"{where}: must be an object ({{}} for a plain table)")
            continue
        for key in sorted(set(t) - KNOWN_TABLE):
            warnings.append(f"{where}.{key}: not a table key vtflow knows; sent as is")
        ttype = t.get("type", "")
        if ttype not in TABLE_TYPES:
            problems.append(f"{where}.type: {ttype!r} is not one of sequence, reference (or empty)")
        cvs = t.get("column_vindexes") or []
        if not isinstance(cvs, list):
            problems.append(f"{where}.column_vindexes: must be a list")
            cvs = []
        for i, cv in enumerate(cvs):
            at = f"{where}.column_vindexes[{i}]"
            if not isinstance(cv, dict):
                problems.append(f"{at}: must be an object with column (or columns) and name")
                continue
            if not cv.get("column") and not cv.get("columns"):
                problems.append(f"{at}: needs \"column\" or \"columns\"")
            if cv.get("name") not in vindexes:
                problems.append(f"{at}.name: vindex {cv.get('name')!r} is not defined in vindexes (defined: {defined})")
        if sharded and ttype == "" and not cvs:
            problems.append(f"{where}: a sharded keyspace needs a primary vindex for each table; add column_vindexes "
                            f"(e.g. [{{\"column\": \"id\", \"name\": \"hash\"}}])")
        if ttype == "sequence" and sharded:
            problems.append(f"{where}: sequence tables belong in an unsharded keyspace")
        ai = t.get("auto_increment")
        if ai is not None:
            if not isinstance(ai, dict) or not ai.get("column") or not ai.get("sequence"):
                problems.append(f"{where}.auto_increment: needs \"column\" and \"sequence\"")
            elif "." not in ai["sequence"] and ai["sequence"] not in tables:
                warnings.append(f"{where}.auto_increment.sequence: {ai['sequence']!r} is not in this VSchema; "
                                "it must be a sequence table of another (unsharded) keyspace")
    if problems:
        raise ConfigError(f"VSchema {source}", "is not valid:\n  - " + "\n  - ".join(problems),
                          "correct the entries named above.")
    return vs, warnings
