"""An ordinary user's pull and push, against Debian's docker-registry on the
host's loopback (registry_server): layers pulled by the user are unpacked with
their owners shifted into its subordinate range; layers it pushes carry the
image's own ids, so root pulls the same image (and the other way round)."""
from __future__ import annotations

import json
import os

import pytest

import usertools
from clitools import ok
from registry_server import docker_registry

pytestmark = [pytest.mark.timeout(600),
              pytest.mark.skipif(not os.path.exists("/usr/bin/docker-registry"),
                                 reason="docker-registry is not installed (apt-get install docker-registry)")]


@pytest.fixture(scope="module")
def registry(shm_base):
    with docker_registry(os.path.join(shm_base, "registry-rootless")) as r:
        yield r


def _layers(info):
    return info["RootFS"]["Layers"]


def test_user_pushes_root_pulls(user, store, registry, base_tar):
    env = {"REGISTRY_AUTH_FILE": os.path.join(user.dir, "auth.json")}
    ok(user.pyrt("import", base_tar, "base:1"))
    r = user.pyrt("run", "--name", "c1", "--network", "none", "base:1", "sh", "-c",
                  "echo made > /data/made; chown 1000:1000 /data/made")
    assert r.returncode == 0, r.stderr
    name = f"{registry.host}/user/made:1"
    ok(user.pyrt("commit", "c1", name))
    out = ok(user.pyrt("push", name, env=env))
    assert "digest: sha256:" in out, out
    (user_info,) = json.loads(ok(user.pyrt("inspect", name)))
    # root pulls what the user pushed: the same image, the owners the image's own
    out = ok(store.cli("pull", name))
    assert out.splitlines()[-1] == user_info["Id"]
    (root_info,) = json.loads(ok(store.cli("inspect", name)))
    assert _layers(root_info) == _layers(user_info)
    r = store.cli("run", "--rm", "--network", "none", name, "stat", "-c", "%u:%g %n", "/data/made", "/data/owned")
    assert r.stdout.decode().split("\n") == ["1000:1000 /data/made", "1000:1000 /data/owned", ""], r.stderr
    ok(user.pyrt("rm", "c1"))


def test_root_pushes_user_pulls(user, store, registry):
    env = {"REGISTRY_AUTH_FILE": os.path.join(user.dir, "auth.json")}
    name = f"{registry.host}/root/base:1"
    ok(store.cli("tag", "base:1", name))
    ok(store.cli("push", name))
    (root_info,) = json.loads(ok(store.cli("inspect", name)))
    out = ok(user.pyrt("pull", name, env=env))
    assert out.splitlines()[-1] == root_info["Id"]
    assert "Image is up to date" in ok(user.pyrt("pull", name, env=env))
    # on disk the layer's owners are the user's ids (1000 -> subordinate base + 999)
    base = usertools.subid_base(user.name)
    snaps = os.path.join(user.store, "snapshots")
    owned = [os.path.join(snaps, s, "data", "owned") for s in os.listdir(snaps)
             if os.path.exists(os.path.join(snaps, s, "data", "owned"))]
    assert owned and all(os.stat(p).st_uid == base + 999 for p in owned)
    r = user.pyrt("run", "--rm", "--network", "none", name, "stat", "-c", "%u:%g", "/data/owned")
    assert r.stdout == b"1000:1000\n", r.stderr
    # and pushed back by the user under another name: the same manifest's layers
    back = f"{registry.host}/user/back:1"
    ok(user.pyrt("tag", name, back))
    ok(user.pyrt("push", back, env=env))
    ok(store.cli("pull", back))
    (again,) = json.loads(ok(store.cli("inspect", back)))
    assert again["Id"] == root_info["Id"]
