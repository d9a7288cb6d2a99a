"""The `pyrt` command for images and containers, run as a subprocess with `--root` on
/dev/shm: exit codes, what it prints, and errors as one line on stderr (no traceback)
with a non-zero exit."""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import tarfile
import tempfile

import pytest

import helpers
import pyrt
from clitools import cli, error, ok_quiet
from imagetools import CHANGES, CHANGES_DIFF, LAYER2, LAYER3, check_store

HEX64 = re.compile(r"[0-9a-f]{64}")


@pytest.fixture
def root(tmp_shm):
    return os.path.join(tmp_shm, "store")


@pytest.fixture
def base(root, base_tar):
    """The store with base:1 imported (through the CLI): returns the root."""
    image_id = ok_quiet(cli(root, "import", base_tar, "base:1")).strip()
    assert image_id.startswith("sha256:") and HEX64.fullmatch(image_id[7:])
    return root


def check_root(root):
    with pyrt.Runtime(root, quiet=True) as rt:
        check_store(rt)


def layered(root, driver=None):
    """base:2 and layered:3 committed from containers with the CLI."""
    assert cli(root, "run", "--name", "l2", "base:1", "sh", "-c", LAYER2, driver=driver).returncode == 0
    ok_quiet(cli(root, "commit", "-m", "layer 2", "l2", "base:2"))
    assert cli(root, "run", "--name", "l3", "base:2", "sh", "-c", LAYER3, driver=driver).returncode == 0
    image_id = ok_quiet(cli(root, "commit", "l3", "layered:3")).strip()
    assert ok_quiet(cli(root, "rm", "l2", "l3")).split() == ["l2", "l3"]
    return image_id


# -- run: the image's config and overrides -------------------------------------------------------------

ENTRY = '#!/bin/sh\necho "argv=$*"\necho "uid=$(id -u) user=$(id -un) cwd=$(pwd) greeting=$GREETING home=$HOME"\n'


def test_run_image_config_and_overrides(base):
    root = base
    setup = ("set -e; echo 'app:x:1000:1000:app:/home/app:/bin/sh' >> /etc/passwd; "
             "sed -i '/^user:/d' /etc/passwd; mkdir -p /srv/work /home/app; "
             f"printf '%s' '{ENTRY}' > /entry.sh; chmod 755 /entry.sh")
    r = cli(root, "run", "--name", "setup", "base:1", "sh", "-c", setup)
    assert r.returncode == 0, r.stderr
    image_id = ok_quiet(cli(root, "commit", "-c", 'ENTRYPOINT ["/entry.sh"]', "-c", 'CMD ["default"]',
                      "-c", "ENV GREETING=hello", "-c", "WORKDIR /srv/work", "-c", "USER app",
                      "setup", "app:1")).strip()
    ok_quiet(cli(root, "rm", "setup"))
    cfg = json.loads(ok_quiet(cli(root, "inspect", "app:1")))[0]["Config"]
    assert cfg["Entrypoint"] == ["/entry.sh"] and cfg["Cmd"] == ["default"] and cfg["User"] == "app"
    assert cfg["WorkingDir"] == "/srv/work" and "GREETING=hello" in cfg["Env"]

    assert ok_quiet(cli(root, "run", "--rm", "app:1")).splitlines() == [
        "argv=default", "uid=1000 user=app cwd=/srv/work greeting=hello home=/home/app"]
    assert ok_quiet(cli(root, "run", "--rm", image_id[7:19], "one", "two")).splitlines()[0] == "argv=one two"
    assert ok_quiet(cli(root, "run", "--rm", "--entrypoint", "/bin/echo", "app:1", "hi")) == "hi\n"
    assert ok_quiet(cli(root, "run", "--rm", "--entrypoint", "/bin/echo", "app:1")) == "\n"
    assert ok_quiet(cli(root, "run", "--rm", "-u", "0", "-w", "/tmp", "-e", "GREETING=bye", "app:1", "x")).splitlines() == [
        "argv=x", "uid=0 user=root cwd=/tmp greeting=bye home=/root"]
    # the exit status of the command; its stderr passes through
    r = cli(root, "run", "--rm", "--entrypoint", "/bin/sh", "app:1", "-c", "echo out; echo err >&2; exit 7")
    assert (r.returncode, r.stdout, r.stderr) == (7, b"out\n", b"err\n")
    # failures to start: 127 command not found, 125 otherwise; one line each
    error(cli(root, "run", "--rm", "--entrypoint", "/nonexistent", "app:1"), 127, "nonexistent")
    error(cli(root, "run", "--rm", "-u", "user", "app:1"), 125, "unable to find user user")
    error(cli(root, "run", "--rm", "nothere:1", "true"), 125, "nothere")
    assert ok_quiet(cli(root, "ps", "-a", "-q")) == ""
    check_root(root)


# -- containers: run, ps, diff, commit, history, inspect, export, rm -------------------------------------

@pytest.fixture(scope="module")
def c1_store(shm_base, base_tar):
    """A store of this module's own (made once): base:1, base:2 and layered:3, the
    container c1 of layered:3 that ran CHANGES, and committed:1 committed from it
    with the CLI. {"root", "layered_id", "new_id"}. The tests only look at it,
    except test_container_lifecycle_rm (the last of them), which removes c1."""
    root = os.path.join(tempfile.mkdtemp(prefix="c1-store-", dir=shm_base), "store")
    try:
        image_id = ok_quiet(cli(root, "import", base_tar, "base:1")).strip()
        assert image_id.startswith("sha256:") and HEX64.fullmatch(image_id[7:])
        layered_id = layered(root)
        r = cli(root, "run", "--name", "c1", "layered:3", "sh", "-c", CHANGES)
        assert r.returncode == 0, r.stderr
        new_id = ok_quiet(cli(root, "commit", "-m", "my changes", "-c", 'CMD ["cat", "/data/added"]', "-c", "ENV A=b",
                              "-c", "WORKDIR /l2dir", "c1", "committed:1")).strip()
        yield {"root": root, "layered_id": layered_id, "new_id": new_id}
    finally:
        helpers.detach_mounts_under(os.path.dirname(root))
        shutil.rmtree(os.path.dirname(root), ignore_errors=True)


def test_container_lifecycle_ps(c1_store):
    root = c1_store["root"]
    assert ok_quiet(cli(root, "ps")).splitlines() == ["CONTAINER ID   IMAGE   COMMAND   CREATED   STATUS   PORTS   NAMES"]
    lines = ok_quiet(cli(root, "ps", "-a")).splitlines()
    assert len(lines) == 2 and lines[1].endswith("   c1") and "Exited (0)" in lines[1]
    (row,) = json.loads(ok_quiet(cli(root, "ps", "-a", "--format", "json")))
    assert row["Names"] == "c1" and row["Image"] == "layered:3" and row["Status"].startswith("Exited (0)")
    cid = ok_quiet(cli(root, "ps", "-a", "-q")).strip()
    assert cid == row["ID"] and len(cid) == 12


def test_container_lifecycle_diff(c1_store):
    root = c1_store["root"]
    cid = ok_quiet(cli(root, "ps", "-a", "-q")).strip()
    assert ok_quiet(cli(root, "diff", "c1")).splitlines() == CHANGES_DIFF
    assert ok_quiet(cli(root, "diff", cid)).splitlines() == CHANGES_DIFF


def test_container_lifecycle_commit_inspect_history(c1_store):
    root, layered_id, new_id = c1_store["root"], c1_store["layered_id"], c1_store["new_id"]
    assert new_id.startswith("sha256:") and HEX64.fullmatch(new_id[7:])
    (info,) = json.loads(ok_quiet(cli(root, "inspect", "committed:1")))
    assert info["Id"] == new_id and info["Parent"] == layered_id and info["Comment"] == "my changes"
    assert info["Config"]["Cmd"] == ["cat", "/data/added"] and info["Config"]["WorkingDir"] == "/l2dir"
    assert "A=b" in info["Config"]["Env"] and info["RepoTags"] == ["committed:1"]
    assert len(info["RootFS"]["Layers"]) == 4

    hist = ok_quiet(cli(root, "history", "committed:1")).splitlines()
    assert hist[0].split()[:3] == ["IMAGE", "CREATED", "CREATED"] and len(hist) == 5
    assert hist[1].startswith(new_id[7:19]) and hist[1].endswith("my changes")
    assert hist[2].startswith(layered_id[7:19])
    rows = json.loads(ok_quiet(cli(root, "history", "--format", "json", "committed:1")))
    assert [x["Comment"] for x in rows] == ["my changes", "", "layer 2", "Imported"]
    assert rows[0]["Tags"] == ["committed:1"] and rows[1]["Tags"] == ["layered:3"]


def test_container_lifecycle_run_committed(c1_store):
    root = c1_store["root"]
    assert ok_quiet(cli(root, "run", "--rm", "committed:1")) == "new\n"
    out = ok_quiet(cli(root, "run", "--rm", "committed:1", "sh", "-c",
                 "ls /data/l2new /tree /keep/k1 2>&1; ls -A /l2dir /gone /keep; pwd; echo $A; true"))
    assert out.splitlines() == [
        "ls: /data/l2new: No such file or directory", "ls: /tree: No such file or directory",
        "ls: /keep/k1: No such file or directory", "/gone:", "back", "", "/keep:", "k1-renamed", "k2", "",
        "/l2dir:", "fresh", "/l2dir", "b"]


def test_container_lifecycle_inspect_container(c1_store):
    root, layered_id, new_id = c1_store["root"], c1_store["layered_id"], c1_store["new_id"]
    (cinfo,) = json.loads(ok_quiet(cli(root, "inspect", "c1")))
    assert cinfo["Name"] == "/c1" and cinfo["State"]["Status"] == "exited" and cinfo["Image"] == layered_id
    both = json.loads(ok_quiet(cli(root, "inspect", "c1", "committed:1")))
    assert [x["Id"] for x in both] == [cinfo["Id"], new_id]


def test_container_lifecycle_export(c1_store, tmp_shm):
    """export: the whole filesystem as the container sees it, to a file or a pipe."""
    root = c1_store["root"]
    out_tar = os.path.join(tmp_shm, "c1.tar")
    assert ok_quiet(cli(root, "export", "-o", out_tar, "c1")) == ""
    with tarfile.open(out_tar) as tf:
        names = {m.name.strip("./").rstrip("/") for m in tf.getmembers()}
        assert tf.extractfile("data/b" if "data/b" in tf.getnames() else "./data/b").read() == b"b2\nmore\n"
    assert {"bin/busybox", "data/added", "data/b", "gone/back", "keep/k1-renamed", "l2dir/fresh",
            "data/sub/n"} <= names
    assert not names & {"data/l2new", "keep/k1", "tree", "tree/t1", "l2dir/f", "data/a", "gone/g1"}
    assert not [n for n in names if ".wh." in n]
    r = cli(root, "export", "c1")
    assert r.returncode == 0, r.stderr
    with tarfile.open(fileobj=io.BytesIO(r.stdout)) as tf:
        assert {m.name.strip("./").rstrip("/") for m in tf.getmembers()} == names


def test_container_lifecycle_system_df(c1_store):
    root = c1_store["root"]
    df = ok_quiet(cli(root, "system", "df")).splitlines()
    assert df[1].split()[:3] == ["Images", "4", "1"] and df[2].split()[:2] == ["Containers", "1"]


def test_container_lifecycle_rm(c1_store):
    """Removes c1: the last test of c1_store."""
    root = c1_store["root"]
    assert ok_quiet(cli(root, "rm", "c1")) == "c1\n"
    assert ok_quiet(cli(root, "ps", "-a", "-q")) == ""
    assert os.listdir(os.path.join(root, "containers")) == []
    error(cli(root, "diff", "c1"), 1, "no such container: c1")
    check_root(root)


def test_tag_intermediate_image_by_id_prefix(base):
    root = base
    assert cli(root, "run", "--name", "a", "base:1", "sh", "-c", "echo 1 > /one").returncode == 0
    mid = ok_quiet(cli(root, "commit", "a")).strip()
    # an untagged image is listed (dangling) until it has a child
    assert ok_quiet(cli(root, "images", "-q")).split() == [mid[7:19], ok_quiet(cli(root, "images", "-q", "base:1")).strip()]
    assert cli(root, "run", "--name", "b", mid[7:15], "sh", "-c", "echo 2 > /two").returncode == 0
    top = ok_quiet(cli(root, "commit", "b", "top:1")).strip()
    ok_quiet(cli(root, "rm", "a", "b"))
    listed = ok_quiet(cli(root, "images", "-q", "--no-trunc")).split()
    assert mid not in listed and top in listed
    rows = json.loads(ok_quiet(cli(root, "images", "-a", "--format", "json")))
    assert {(x["Repository"], x["Tag"], x["ID"]) for x in rows} >= {("<none>", "<none>", mid), ("top", "1", top)}
    assert {x["ID"]: x["Parent"] for x in rows}[top] == mid

    assert ok_quiet(cli(root, "tag", mid[7:17], "mid:1")) == ""
    lines = ok_quiet(cli(root, "images")).splitlines()
    assert any(line.split()[:3] == ["mid", "1", mid[7:19]] for line in lines), lines
    assert ok_quiet(cli(root, "run", "--rm", "mid:1", "cat", "/one")) == "1\n"
    # removing the top image keeps the promoted parent
    assert ok_quiet(cli(root, "rmi", "top:1")).splitlines() == ["Untagged: top:1", f"Deleted: {top}"]
    assert mid in ok_quiet(cli(root, "images", "-q", "--no-trunc")).split()
    error(cli(root, "tag", "0000", "x:1"), 1, "not found")
    check_root(root)


# -- save and load ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["oci", "docker-archive"])
def test_save_load_round_trip(base, tmp_shm, fmt):
    root = base
    assert cli(root, "run", "--name", "c", "base:1", "sh", "-c", "echo saved > /saved; rm /data/a").returncode == 0
    image_id = ok_quiet(cli(root, "commit", "-c", "CMD cat /saved", "c", "saved:1")).strip()
    out = os.path.join(tmp_shm, "saved.tar")
    assert ok_quiet(cli(root, "save", "-o", out, "--format", fmt, "saved:1")) == ""
    fresh = os.path.join(tmp_shm, "fresh")
    assert ok_quiet(cli(fresh, "load", "-i", out)) == "Loaded image: saved:1\n"
    assert ok_quiet(cli(fresh, "images", "-q", "--no-trunc")).split() == [image_id]
    assert ok_quiet(cli(fresh, "run", "--rm", "saved:1")) == "saved\n"
    assert ok_quiet(cli(fresh, "run", "--rm", "saved:1", "sh", "-c", "ls /data/a 2>&1; true")) == \
        "ls: /data/a: No such file or directory\n"
    mine = json.loads(ok_quiet(cli(root, "inspect", "saved:1")))[0]
    theirs = json.loads(ok_quiet(cli(fresh, "inspect", "saved:1")))[0]
    assert theirs["RootFS"] == mine["RootFS"] and theirs["Config"] == mine["Config"]
    error(cli(fresh, "load", "-i", os.path.join(tmp_shm, "nothere.tar")), 1, "nothere.tar")
    check_root(root)
    check_root(fresh)


# -- errors -------------------------------------------------------------------------------------------------

def test_errors_are_one_line(base, tmp_shm):
    root = base
    cid = ok_quiet(cli(root, "create", "--name", "web", "base:1", "true")).strip()
    assert HEX64.fullmatch(cid)
    error(cli(root, "create", "--name", "web", "base:1", "false"), 1, "web.*already in use")
    error(cli(root, "run", "--name", "web", "base:1", "true"), 125, "already in use")
    error(cli(root, "create", "--name", "bad/name", "base:1", "true"), 1, "invalid container name")
    assert ok_quiet(cli(root, "ps", "-a", "-q")).split() == [cid[:12]]
    assert sorted(os.listdir(os.path.join(root, "containers"))) == [cid]
    error(cli(root, "create", "base:1"), 1, "no command")

    for argv in (["diff", "nothere"], ["commit", "nothere", "x:1"], ["export", "-o", os.path.join(tmp_shm, "x"),
                                                                       "nothere"],
                 ["rm", "nothere"], ["inspect", "nothere"], ["rmi", "nothere"], ["tag", "nothere", "x:1"],
                 ["history", "nothere"], ["create", "nothere:1", "true"], ["save", "-o",
                                                                         os.path.join(tmp_shm, "y"), "nothere"]):
        error(cli(root, *argv), 1, "nothere")
    assert not os.path.exists(os.path.join(tmp_shm, "x")) and not os.path.exists(os.path.join(tmp_shm, "y"))
    error(cli(root, "commit", "-c", "BOGUS x", "web", "x:1"), 1, "invalid change")
    error(cli(root, "commit", "web", "Bad:Name:x"), 1)
    error(cli(root, "rmi", "base:1"), 1, "web")  # in use by a container
    ok_quiet(cli(root, "rm", "web"))
    error(cli(root, "rm", "web"), 1, "no such container")
    # usage errors: argparse's message, exit 2
    r = cli(root, "commit")
    assert r.returncode == 2 and b"Traceback" not in r.stderr and r.stderr.startswith(b"pyrt: ")
    check_root(root)


def test_rm_running_container_needs_force(base):
    root = base
    with pyrt.Runtime(root, quiet=True) as rt:
        c = rt.containers.create("base:1", ["sleep", "60"], name="sleeper")
        proc = c.start_process(stdin=pyrt.DEVNULL, stdout=pyrt.DEVNULL)
        try:
            lines = ok_quiet(cli(root, "ps")).splitlines()
            assert len(lines) == 2 and lines[1].endswith("sleeper") and "Up " in lines[1]
            error(cli(root, "rm", "sleeper"), 1, "running")
            assert proc.poll() is None and os.path.isdir(c.dir)
            assert ok_quiet(cli(root, "rm", "-f", "sleeper")) == "sleeper\n"
            assert proc.wait() == -9
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert ok_quiet(cli(root, "ps", "-a")).count("\n") == 1
    assert os.listdir(os.path.join(root, "containers")) == []
    check_root(root)


# -- the copy storage driver ----------------------------------------------------------------------------------

def test_copy_storage_driver(base, tmp_shm):
    root = base
    layered(root, driver="copy")
    r = cli(root, "run", "--name", "c1", "layered:3", "sh", "-c", CHANGES, driver="copy")
    assert r.returncode == 0 and r.stderr == b"", r.stderr
    (info,) = json.loads(ok_quiet(cli(root, "inspect", "c1")))
    assert info["Driver"] == "copy"
    assert ok_quiet(cli(root, "diff", "c1")).splitlines() == CHANGES_DIFF
    ok_quiet(cli(root, "commit", "-c", 'CMD ["cat", "/gone/back"]', "c1", "copied:1"))
    assert ok_quiet(cli(root, "run", "--rm", "copied:1", driver="copy")) == "back\n"
    # the image made by the copy driver runs with overlay too
    assert ok_quiet(cli(root, "run", "--rm", "copied:1", "sh", "-c", "ls -A /l2dir /keep; ls /tree 2>&1; true")) == \
        "/keep:\nk1-renamed\nk2\n\n/l2dir:\nfresh\nls: /tree: No such file or directory\n"
    out_tar = os.path.join(tmp_shm, "c1.tar")
    ok_quiet(cli(root, "export", "-o", out_tar, "c1"))
    with tarfile.open(out_tar) as tf:
        names = {m.name.strip("./").rstrip("/") for m in tf.getmembers()}
    assert {"data/added", "gone/back", "bin/busybox"} <= names and not names & {"data/l2new", "tree", "keep/k1"}
    ok_quiet(cli(root, "rm", "c1"))
    check_root(root)
