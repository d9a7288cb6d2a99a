"""The store's database across pyrt versions: a store made by an older schema keeps
working (its images stay, the new tables appear) and one of a newer schema is refused."""
from __future__ import annotations

import sqlite3

import pytest

from pyrt.errors import PyrtError
from pyrt.store import db as storedb


def _tables(path) -> set:
    with sqlite3.connect(path) as c:
        return {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _version(path) -> int:
    with sqlite3.connect(path) as c:
        return c.execute("PRAGMA user_version").fetchone()[0]


def test_a_version_1_store_gets_the_network_tables_and_keeps_its_rows(tmp_path):
    path = str(tmp_path / "pyrt.db")
    # a store as pyrt made it before networks: version 1, no networks/endpoints tables
    with sqlite3.connect(path) as c:
        for stmt in storedb._statements(storedb.SCHEMA):
            if "networks" not in stmt and "endpoints" not in stmt:
                c.execute(stmt)
        c.execute("INSERT INTO tags (repository, tag, image_id, created) VALUES ('old', '1', ?, 0)", ("a" * 64,))
        c.execute("PRAGMA user_version = 1")
    before = _tables(path)
    assert "networks" not in before and "endpoints" not in before
    d = storedb.Database(path)
    try:
        assert d.query("SELECT * FROM endpoints") == []
        assert d.query("SELECT * FROM networks") == []
    finally:
        d.close()
    assert {"networks", "endpoints"} <= _tables(path)
    assert _version(path) == storedb.SCHEMA_VERSION
    with sqlite3.connect(path) as c:
        assert c.execute("SELECT repository, tag FROM tags").fetchall() == [("old", "1")]


def test_a_store_of_a_newer_schema_is_refused_untouched(tmp_path):
    path = str(tmp_path / "pyrt.db")
    with sqlite3.connect(path) as c:
        c.execute("PRAGMA user_version = 99")
    with pytest.raises(PyrtError, match="newer than this pyrt"):
        storedb.Database(path)
    assert _version(path) == 99 and _tables(path) == set()
