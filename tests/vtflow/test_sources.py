"""vtflow/sources.py: files, URLs (a real local HTTP server) and inline text, and the messages
when they cannot be read."""

import http.server
import threading

import pytest

from vtflow.errors import ConfigError
from vtflow.sources import read_source


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    root = tmp_path_factory.mktemp("web")
    (root / "schema.sql").write_text("create table t(x int);")

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(root), **kw)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_read_source_file_inline_and_missing(tmp_path):
    f = tmp_path / "s.sql"
    f.write_text("create table t(x int);")
    assert read_source(str(f), "SQL schema") == ("create table t(x int);", str(f))
    assert read_source("create table t(x int);", "SQL schema")[1] == "inline SQL schema"
    with pytest.raises(ConfigError, match="SQL schema /nope/schema.sql: is not a file"):
        read_source("/nope/schema.sql", "SQL schema")


def test_a_url_is_fetched_and_a_dead_one_named(web):
    assert read_source(f"{web}/schema.sql", "SQL schema") == ("create table t(x int);", f"{web}/schema.sql")
    with pytest.raises(ConfigError, match=f"SQL schema {web}/nope.sql: cannot be fetched .*404.*"
                                          "Fix: give a reachable URL or a local file"):
        read_source(f"{web}/nope.sql", "SQL schema")


def test_without_inline_text_a_path_must_be_readable_and_the_callers_fix_is_given(tmp_path, web):
    fix = "give the operator.yaml of a release."
    with pytest.raises(ConfigError, match=f"manifest {tmp_path}/nope.yaml: cannot be read .*No such file.* Fix: {fix}"):
        read_source(str(tmp_path / "nope.yaml"), "manifest", inline=False, fix=fix)
    # text that would count as inline elsewhere is a path here
    with pytest.raises(ConfigError, match="manifest kind: X; apiVersion: v1: cannot be read"):
        read_source("kind: X; apiVersion: v1", "manifest", inline=False)
    assert read_source(f"{web}/schema.sql", "manifest", inline=False)[0] == "create table t(x int);"


def test_an_unreadable_file_is_a_config_error_not_a_traceback(tmp_path):
    (tmp_path / "dir.sql").mkdir()
    with pytest.raises(ConfigError, match="is not a file"):
        read_source(str(tmp_path / "dir.sql"), "SQL schema")
    (tmp_path / "bin.sql").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ConfigError, match=f"SQL schema {tmp_path}/bin.sql: cannot be read"):
        read_source(str(tmp_path / "bin.sql"), "SQL schema")
