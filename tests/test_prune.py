"""Housekeeping verbs: `rename`, `container ls|rm|prune|inspect`, `system prune`
(stopped containers, dangling or unused images, the build cache, partial downloads,
unused volumes), through the CLI and the API."""
from __future__ import annotations

import fcntl
import json
import os

import pytest

from pyrt.errors import Conflict, InvalidArgument
from clitools import error, ok


def test_rename(store):
    ok(store.cli("run", "-d", "--name", "old", "base:1", "sleep", "100"))
    ok(store.cli("create", "--name", "other", "base:1", "true"))
    ok(store.cli("rename", "old", "new"))  # running: fine
    assert store.get("new").status == "running"
    error(store.cli("rename", "new", "other"), match="already in use")
    error(store.cli("rename", "new", "bad/name"), match="invalid container name")
    error(store.cli("rename", "nosuch", "x"), match="no such container")
    c = store.get("other")
    c.rename("third")
    assert store.get("third").id == c.id and c.name == "third"
    with pytest.raises(Conflict):
        c.rename("new")
    rows = {r["name"] for r in store.db_rows()}
    assert rows == {"new", "third"}


def test_container_prune_keeps_running_and_paused(store):
    ok(store.cli("run", "-d", "--name", "up", "base:1", "sleep", "100"))
    ok(store.cli("run", "-d", "--name", "frozen", "base:1", "sleep", "100"))
    ok(store.cli("pause", "frozen"))
    ok(store.cli("run", "--name", "done", "base:1", "true"))
    ok(store.cli("create", "--name", "fresh", "base:1", "true"))
    # without a terminal, prune asks for -f instead of prompting
    error(store.cli("container", "prune"), match="confirm with -f")
    assert len(store.db_rows()) == 4
    out = ok(store.cli("container", "prune", "-f"))
    assert out.startswith("Deleted Containers:\n") and "Total reclaimed space:" in out
    names = sorted(r["Names"] for r in json.loads(ok(store.cli("container", "ls", "-a", "--format", "json"))))
    assert names == ["frozen", "up"]
    ok(store.cli("unpause", "frozen"))
    assert json.loads(ok(store.cli("container", "inspect", "up")))[0]["Name"] in ("up", "/up")
    assert store.rt.containers.prune() == {"ContainersDeleted": [], "SpaceReclaimed": 0}
    with pytest.raises(InvalidArgument):
        store.rt.containers.prune(filters={"until": "1h"})


def test_system_prune(store, tmp_shm):
    rt = store.rt
    ok(store.cli("run", "--name", "stopped", "base:1", "true"))
    ok(store.cli("run", "-d", "--name", "running", "-v", "kept:/kept", "base:1", "sleep", "100"))
    rt.volumes.create("unused")
    # a dangling image: a commit whose tag moved on
    c = rt.containers.create("base:1", ["sh", "-c", "echo 1 > /f"])
    c.start()
    c.wait()
    first = c.commit("snap", "1")
    second = c.commit("snap", "1")
    assert not rt.images.get(first.id).tags and second.tags == ["snap:1"]
    c.remove()
    # the build cache and two partial downloads (one being written by a pull)
    ctx = os.path.join(tmp_shm, "ctx")
    os.mkdir(ctx)
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write("FROM base:1\nLABEL a=b\n")
    rt.images.build(ctx, tag="built:1")
    downloads = os.path.join(store.root, "downloads")
    os.makedirs(downloads, exist_ok=True)
    for name in ("idle.partial", "busy.partial"):
        with open(os.path.join(downloads, name), "wb") as f:
            f.write(b"x" * 1000)
    busy = open(os.path.join(downloads, "busy.partial"), "rb")
    try:
        fcntl.flock(busy.fileno(), fcntl.LOCK_EX)
        error(store.cli("system", "prune"), match="confirm with -f")
        out = ok(store.cli("system", "prune", "-f"))
    finally:
        busy.close()
    assert "Deleted Containers:" in out and f"deleted: {first.id}" in out
    assert sorted(os.listdir(downloads)) == ["busy.partial"]
    assert rt.store.db.query("SELECT * FROM build_cache") == []
    assert {c.name for c in rt.containers.list(all=True)} == {"running"}
    assert rt.images.exists("built:1") and rt.images.exists("snap:1") and not rt.images.exists(first.id)
    assert {v.name for v in rt.volumes.list()} == {"kept", "unused"}  # volumes only with --volumes
    out = ok(store.cli("system", "prune", "-f", "--volumes", "-a"))
    assert "Deleted Volumes:\nunused\n" in out
    assert {v.name for v in rt.volumes.list()} == {"kept"}
    assert not rt.images.exists("built:1") and rt.images.exists("base:1")  # base:1 is in use
