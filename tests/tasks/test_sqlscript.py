"""tasks/sqlscript.py: mysql-client scripts split as the client splits them, nothing executed."""


import pytest

from tasks.sqlscript import MetaCommand, Statement, keyspace_of, split
from vtflow.errors import ConfigError
from helpers import EXAMPLES



def test_upstream_select_script_gives_shell_echoes_a_use_and_three_selects():
    parts = split((EXAMPLES / "select_commerce_data.sql").read_text(), "select_commerce_data.sql")
    kinds = [(type(p).__name__, getattr(p, "name", None)) for p in parts]
    assert kinds[:2] == [("MetaCommand", "shell"), ("MetaCommand", "use")]
    assert parts[1].arg == "commerce/0" and keyspace_of(parts[1].arg) == "commerce"
    selects = [p for p in parts if isinstance(p, Statement)]
    assert [s.sql for s in selects] == ["select * from customer", "select * from product", "select * from corder"]
    assert selects[0].where == "select_commerce_data.sql:4"


def test_upstream_schema_and_data_files_split_into_their_statements():
    schema = split((EXAMPLES / "create_commerce_schema.sql").read_text(), "schema.sql")
    assert [s.sql.split("(")[0] for s in schema] == ["create table product", "create table customer", "create table corder"]
    assert [s.line for s in schema] == [1, 7, 12]
    data = split((EXAMPLES / "insert_commerce_data.sql").read_text(), "data.sql")
    assert len(data) == 12 and all(isinstance(s, Statement) and s.sql.startswith("insert into") for s in data)


def test_delimiters_inside_strings_and_comments_do_not_split():
    text = ("insert into t values ('a;b', \"c;d\", `e;f`); -- trailing; comment\n"
            "# hash; comment\n"
            "insert into t values ('it''s', 'back\\'slash;'); /* block; */ select 1;\n"
            "select /*!40101 SQL_NO_CACHE */ 2;\n")
    sqls = [p.sql for p in split(text, "f.sql")]
    assert sqls == ["insert into t values ('a;b', \"c;d\", `e;f`)",
                    "insert into t values ('it''s', 'back\\'slash;')", "select 1",
                    "select /*!40101 SQL_NO_CACHE */ 2"]


def test_delimiter_command_and_line_numbers():
    text = "delimiter //\ncreate procedure p()\nbegin\n  select 1;\nend //\ndelimiter ;\nselect 2;\n"
    parts = split(text, "p.sql")
    assert isinstance(parts[0], MetaCommand) and parts[0].name == "delimiter" and parts[0].arg == "//"
    assert parts[1].sql.startswith("create procedure p()") and "select 1;" in parts[1].sql and parts[1].line == 2
    assert parts[3].sql == "select 2" and parts[3].line == 7


def test_shell_escapes_are_never_statements():
    parts = split("\\! rm -rf /\nsystem reboot\nselect 1;\n", "evil.sql")
    assert [(p.name, p.arg) for p in parts[:2]] == [("shell", "rm -rf /"), ("shell", "reboot")]
    assert parts[2].sql == "select 1"


def test_dash_dash_needs_a_space_to_be_a_comment():
    assert split("select 5--1;\n", "m.sql")[0].sql == "select 5--1"


def test_unclosed_string_and_comment_are_errors_with_the_place():
    with pytest.raises(ConfigError, match="a.sql:2: a ' string is never closed"):
        split("select 1;\nselect 'oops;\n", "a.sql")
    with pytest.raises(ConfigError, match="b.sql:1: a /\\* comment is never closed"):
        split("/* no end", "b.sql")


@pytest.mark.parametrize("target,keyspace", [("commerce", "commerce"), ("commerce/0", "commerce"),
                                             ("commerce@primary", "commerce"), ("customer:-80", "customer")])
def test_keyspace_of_targets(target, keyspace):
    assert keyspace_of(target) == keyspace


def split_or_error(text):
    try:
        return split(text, "z.sql")
    except ConfigError as e:
        return str(e)


def test_fast_paths_split_exactly_as_the_character_rules(monkeypatch):
    """Random scripts of the characters that matter, split with and without the fast paths
    (whole statements by string methods, stretches by one regular expression)."""
    import random

    from tasks import sqlscript

    pieces = ["a", "b1", " ", "\n", "'", '"', "`", ";", "\\", "\\'", "\\\\", "''", '""', "``", "-", "--", "-- ",
              "--\n", "#", "/", "/*", "*/", "/*!", "(", ")", ",", "\\g", "\\G", "\ndelimiter //\n", "//",
              "\ndelimiter ;\n", "\nuse ks/0;\n", "\n\\! echo hi\n", "'x;y'", '"--"', "'#'", "insert into t values "]
    rng = random.Random(20260105)
    scripts = ["".join(rng.choice(pieces) for _ in range(rng.randint(1, 40))) for _ in range(4000)]
    fast = [split_or_error(s) for s in scripts]
    monkeypatch.setattr(sqlscript, "_body", lambda delimiter: None)
    slow = [split_or_error(s) for s in scripts]
    assert sum(isinstance(f, list) and len(f) > 1 for f in fast) > 1000, "the scripts must exercise splitting"
    mismatches = [(s, f, w) for s, f, w in zip(scripts, fast, slow) if f != w]
    assert not mismatches, mismatches[:3]


def test_extended_inserts_split_whole_with_their_lines():
    rows = ",\n".join(f"({i},'it''s ; {i}','a\\'b','--x',\"q;\")" if i % 2 else f"({i},'plain {i}','SKU-{i}')"
                      for i in range(2000))
    text = f"\ninsert into t values {rows};\ninsert into t values (1),(2);\n-- done\nselect 1;\n"
    parts = split(text, "dump.sql")
    assert [p.line for p in parts] == [2, 2002, 2003]   # 2000 rows on lines 2-2001; a comment starts a statement
    assert parts[0].sql == f"insert into t values {rows}" and parts[1].sql == "insert into t values (1),(2)"


class ScanCounting(str):
    """A script that adds up how far the splitter's searches for ``;`` scan."""

    scanned = 0

    def find(self, sub, start=0, end=None):
        j = super().find(sub, start, end)
        if sub == ";":
            ScanCounting.scanned += (len(self) if j == -1 else j) - start
        return j


@pytest.mark.parametrize("script", ["select 'x'\\g\n" * 5000, "# note ; x\n" * 5000 + "select 1;\n",
                                    "insert into t values ('a\\'b', \"c\");\n" * 5000])
def test_looking_ahead_for_the_delimiter_scans_each_character_at_most_once(script):
    ScanCounting.scanned = 0
    parts = split(ScanCounting(script), "s.sql")
    assert len(parts) in (1, 5000)
    assert ScanCounting.scanned <= len(script), "a failed look-ahead must not be repeated over the same text"


# --- properties: generated scripts split back into what went in -----------------------------

from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

_words = st.sampled_from(["select", "insert into t values", "update t set a =", "1", "a", "x-1", "b/2", "(", ")", ","])
_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)


def _quoted(q: str):
    """A string literal with quote q holding any text: the quote doubled, backslashes escaped."""
    return _text.map(lambda s: q + s.replace("\\", "\\\\").replace(q, q + q) + q)


_piece = st.one_of(_words, _quoted("'"), _quoted('"'), _text.map(lambda s: "`" + s.replace("`", "``") + "`"))
_statement = st.lists(_piece, min_size=1, max_size=6).map(" ".join).filter(
    lambda s: not s.split()[0].lower() in ("use", "delimiter", "source", "system"))
_comment = st.one_of(st.just(""), _text.filter(lambda s: "\n" not in s and "\r" not in s).map(lambda s: f"-- {s}\n"),
                     _text.filter(lambda s: "\n" not in s and "\r" not in s).map(lambda s: f"# {s}\n"),
                     _text.filter(lambda s: "*/" not in s and not s.startswith("!")).map(lambda s: f"/*{s}*/ "))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(_comment, _statement), min_size=1, max_size=6))
def test_generated_scripts_split_into_the_statements_that_went_in(parts):
    script = "".join(f"{c}{s};\n" for c, s in parts)
    got = split(script, "gen.sql")
    assert all(isinstance(p, Statement) for p in got), got
    assert [p.sql for p in got] == [s.strip() for _, s in parts]
    lines = [1]
    for c, s in parts[:-1]:
        lines.append(lines[-1] + (c + s + ";\n").count("\n"))
    # a statement's line is where its text begins, a comment before it included
    assert [p.line for p in got] == lines


@settings(max_examples=150, deadline=None)
@given(st.text(st.sampled_from(list("ab ;'\"`\\#-/*\n!")), max_size=40))
def test_any_script_splits_or_fails_with_a_clear_error(script):
    try:
        got = split(script, "any.sql")
    except ConfigError as e:
        assert str(e).startswith("any.sql:") and "Fix:" in str(e)
        return
    assert all(isinstance(p, (Statement, MetaCommand)) and p.source == "any.sql" for p in got)
