"""tasks/datafile.py: data files cut as streams. Pure: the same batches whatever the pieces the
file arrives in, the pre-flight's cut (digest, rows, segments) and its checks."""

import csv
import gzip
import hashlib
import io
import random

import pytest
from hypothesis import given, settings, strategies as st

from tasks import sqlscript
from tasks.datafile import NULL, Cursor, coalesce, csv_batches, cut_csv, cut_sql, sql_batches
from vtflow import mysql
from vtflow.errors import ConfigError
from vtflow.sources import DataSource
from helpers import EXAMPLES


def pieces(data: bytes, size: int):
    return (data[i:i + size] for i in range(0, len(data), size))


def as_tuples(batches, stream=True):
    """What each batch sends (as text: a stream's batches hold the file's bytes viewed as latin-1)."""
    return [(b.sql.encode("latin-1").decode() if stream else b.sql, b.rows, b.wheres, b.table) for b in batches]


MIXED = (EXAMPLES / "insert_commerce_data.sql").read_text() + (
    "\n-- a comment; with a semicolon\ninsert into t values (1),(2);\ncreate table x (a int);\n"
    "insert into t(a) values ('a;b'), ('c\\'d');\n/* block; */ insert into t values (3);\n"
    "insert into `we``ird`.`t` (`a`) VALUES ('é', \"dq\");\nset @x = 1;\n"
    "delimiter //\ninsert into t values (5)//\ndelimiter ;\ninsert into t values (6);\n"
    + "".join(f"insert into t(a) values('{i}-x');\n" for i in range(50)) + "insert into t values (7)")


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 1 << 20])
def test_a_stream_in_any_pieces_cuts_as_the_whole_text_splits(size):
    statements = [p for p in sqlscript.split(MIXED, "m.sql") if isinstance(p, sqlscript.Statement)]
    want = as_tuples(coalesce(statements, max_rows=20), stream=False)
    got = as_tuples(sql_batches(pieces(MIXED.encode(), size), "m.sql", None, max_rows=20))
    assert got == want and len(got) > 8


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from([
    "insert into a values (1);", "insert into a(v) values ('x;y');", "insert into b values (2),(3);",
    "-- c\n", "# h\n", "/* k */", "update a set v = 1;", "insert into a values ('it''s');",
    "insert into b(v) values (\"q\");", "\n", "insert into a values ('\\'');", "use ks\n",
    "insert into a values (-1);", "insert into a values (1--1);",
]), max_size=40), st.integers(1, 40), st.integers(1, 5))
def test_generated_scripts_cut_alike_in_any_pieces(parts, size, max_rows):
    text = "".join(parts)
    statements = [p for p in sqlscript.split(text, "g.sql") if isinstance(p, sqlscript.Statement)]
    want = as_tuples(coalesce(statements, max_rows=max_rows), stream=False)
    assert as_tuples(sql_batches(pieces(text.encode(), size), "g.sql", "ks", max_rows=max_rows)) == want


def test_a_scan_from_a_batch_end_goes_on_as_the_whole_file():
    data = MIXED.encode()
    whole = list(sql_batches(pieces(data, 1 << 20), "m.sql", None, max_rows=20))
    for i, b in enumerate(whole[:-1]):
        rest = list(sql_batches(pieces(data[b.end.offset:], 5), "m.sql", None, max_rows=20,
                                at=Cursor(b.end.offset, b.end.line, b.end.delimiter)))
        assert as_tuples(rest) == as_tuples(whole[i + 1:]), f"from the end of batch {i}"


def test_the_cut_counts_rows_per_table_hashes_as_earlier_vtflow_and_finds_segments():
    text = ("create table t (a int);\r\n" + "".join(f"insert into t values ({i});\r\n" for i in range(5))
            + "".join(f"insert into u values ({i});\n" for i in range(3)) + "insert into t values (9);\n"
            + "update t set a = 0;\n" + "insert into u values (1),(2);\n")
    cut = cut_sql(pieces(text.encode(), 4), "c.sql", "ks", max_rows=2)
    assert cut.tables == {"t": 6, "u": 5}
    # the digest of the text as Path.read_text() gives it (universal newlines): older checkpoints match
    assert cut.digest == hashlib.sha256(text.replace("\r\n", "\n").encode()).hexdigest()
    assert [(s.table, s.batches, s.rows) for s in cut.segments] == [
        (None, 1, 0), ("t", 3, 5), ("u", 2, 3), ("t", 1, 1), (None, 1, 0), ("u", 1, 2)]
    assert cut.segments[1].start.offset == len("create table t (a int);")
    assert not cut.plain, "other statements: the tables may hold more than the INSERTs say"


def test_gzip_files_are_read_decompressed_from_any_offset(tmp_path):
    text = "".join(f"insert into t values ({i});\n" for i in range(20000))
    path = tmp_path / "d.sql.gz"
    path.write_bytes(gzip.compress(text.encode()))
    source = DataSource(str(path), path)
    assert source.compressed and b"".join(source.chunks(size=999)) == text.encode()
    assert b"".join(source.chunks(12345, size=777)) == text.encode()[12345:]
    cut = cut_sql(source.chunks(), str(path), "ks")
    assert cut.tables == {"t": 20000} and cut.length == len(text)


def test_a_cut_short_gzip_file_is_refused_naming_it(tmp_path):
    path = tmp_path / "d.sql.gz"
    path.write_bytes(gzip.compress(b"insert into t values (1);\n" * 1000)[:-20])
    with pytest.raises(ConfigError, match=r"data file .*d.sql.gz: cannot be read .*Fix: give a complete file"):
        cut_sql(DataSource(str(path), path).chunks(), str(path), "ks")


def test_a_file_that_is_not_utf8_is_refused_with_its_line():
    data = b"insert into t values ('a');\ninsert into t values ('caf\xe9');\n"
    with pytest.raises(ConfigError, match=r"^l.sql:2: is not UTF-8 text .*Fix: write the file in UTF-8"):
        cut_sql(pieces(data, 3), "l.sql", "ks")


def test_utf8_split_across_pieces_and_in_names_is_kept():
    text = "insert into `tablé` values ('Zoë 🚀');\n"
    cut = cut_sql(pieces(text.encode(), 1), "u.sql", "ks")
    assert cut.tables == {"tablé": 1}
    batch = next(sql_batches(pieces(text.encode(), 1), "u.sql", "ks"))
    assert batch.payloads() == [text.strip().rstrip(";").encode()]


def test_csv_cut_in_pieces_counts_rows_and_checks_quotes():
    rows = [f'{i},"v {i}, ""q""\nline",\\N' for i in range(2500)]
    text = "id,v,n\r\n" + "\r\n".join(rows) + "\r\n"
    cut = cut_csv(pieces(text.encode(), random.Random(1).randrange(1, 50)), "t", "t.csv", max_rows=1000)
    assert cut.tables == {"t": 2500} and [s.batches for s in cut.segments] == [3]
    assert cut.digest == hashlib.sha256(("csv t\n" + text.replace("\r\n", "\n")).encode()).hexdigest()
    with pytest.raises(ConfigError, match=r"^b.csv:3: a quoted field opens here and is never closed"):
        cut_csv(pieces(b'id,v\n1,a\n2,"open\n3,c\n' + b"4,d\n" * 100000, 1000), "t", "b.csv")


def csv_oracle(text: str, max_rows: int, skip_rows: int = 0) -> list[tuple[str, int]]:
    """What the batches of a CSV text must send: the csv module's records (blank lines dropped),
    each field quoted on its own, in batches of max_rows records."""
    records = [r for r in csv.reader(io.StringIO(text, newline="")) if r]
    quote = mysql.string_literal_quoter(True)
    head = "INSERT INTO `t` (" + ", ".join(f"`{c}`" for c in records[0]) + ") VALUES "
    body = records[1 + skip_rows:]
    return [(head + ",".join("(" + ",".join("NULL" if f == NULL else quote(f) for f in r) + ")"
                             for r in body[i:i + max_rows]), len(body[i:i + max_rows]))
            for i in range(0, len(body), max_rows)]


PLAIN_FIELD = st.text(st.characters(codec="utf-8", exclude_characters="\\'\"\0\r\n\x1a,"), max_size=6)
ODD_FIELD = st.sampled_from(['"a,b"', '"q""q"', "it's", "\\N", "x\\y", '"two\nlines"', "", "é"])


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_csv_batches_of_plain_lines_and_of_the_csv_module_are_the_same(data):
    """Plain lines are batched by str methods, the rest by the csv module (csv_batches): the same
    statements as the oracle's whatever the pieces, the batch size, the rows skipped and where the
    first line that is not plain comes."""
    width = data.draw(st.integers(1, 4))
    plain = data.draw(st.lists(st.lists(PLAIN_FIELD, min_size=width, max_size=width), max_size=40))
    odd = data.draw(st.lists(st.lists(st.one_of(PLAIN_FIELD, ODD_FIELD), min_size=width, max_size=width), max_size=10))
    rows = [",".join(r) for r in plain + odd]
    rows = [r for r in rows if r]   # a one-column row of one empty field is a blank line
    text = ",".join(f"c{i}" for i in range(width)) + "\n" + "\n".join(rows) + data.draw(st.sampled_from(["", "\n"]))
    max_rows = data.draw(st.integers(1, 12))
    skip = data.draw(st.integers(0, len(rows)))
    size = data.draw(st.integers(1, 64))
    got = [(b.sql.encode("latin-1").decode(), b.rows)
           for b in csv_batches(pieces(text.encode(), size), "t", "t.csv", max_rows=max_rows, skip_rows=skip)]
    assert got == csv_oracle(text, max_rows, skip)


def test_csv_batches_name_the_line_of_their_first_record_on_both_paths():
    text = "a,b\n" + "".join(f"{i},x\n" for i in range(5)) + "5,'q'\n6,y\n7,z\n"
    wheres = [b.wheres for b in csv_batches(pieces(text.encode(), 4), "t", "t.csv", max_rows=3)]
    assert wheres == [("t.csv:2",), ("t.csv:5",), ("t.csv:8",)]
    with pytest.raises(ConfigError, match="has changed since it was checked"):
        list(csv_batches(pieces(b"a,b\n1,2\n3\n", 3), "t", "t.csv"))
