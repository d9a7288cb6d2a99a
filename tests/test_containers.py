"""Containers from images, through the Python API: the image config honoured by run,
container attributes and listing, names, unknown objects and removal. The union
filesystem, diff and commit are in test_containers_union.py, many layers, export and
save/load in test_containers_layers.py.

Every store lives on /dev/shm (tmp_shm). Test images are built here: a base tar of the
session's busybox rootfs plus test files, layers committed from containers, and OCI
layouts written by hand (containertools.py)."""
from __future__ import annotations

import os

import pytest

import pyrt
from pyrt.containers.model import ContainerError
from pyrt.errors import Conflict, ContainerNotFound, ImageNotFound, InvalidArgument
from imagetools import check_store, layer_tar
from containertools import run_in, sh, build_layered, write_oci_layout
from containertools import rt, drt  # noqa: F401,F811 (fixtures)


# -- the image config --------------------------------------------------------------------------------

ENTRY = """#!/bin/sh
echo "argv=$*"
echo "uid=$(id -u) gid=$(id -g) user=$(id -un)"
echo "cwd=$(pwd)"
echo "greeting=$GREETING home=$HOME"
"""


@pytest.fixture
def app_image(rt, base_tar):
    """An image whose top layer rewrites /etc/passwd (uid 1000 is "app") and whose
    config has Entrypoint, Cmd, Env, WorkingDir and User."""
    base = rt.images.import_image(base_tar, "base", "1")
    script = ("set -e; echo 'root:x:0:0:root:/root:/bin/sh' > /etc/passwd; "
              "echo 'app:x:1000:1001:app:/home/app:/bin/sh' >> /etc/passwd; "
              "echo 'root:x:0:' > /etc/group; echo 'appg:x:1001:' >> /etc/group; "
              "mkdir -p /home/app /srv/work; chown 1000:1001 /home/app /srv/work; "
              f"cat > /entry.sh <<'EOF'\n{ENTRY}EOF\nchmod 755 /entry.sh")
    c = sh(rt, base, script)
    img = c.commit("app", "1", changes=['ENTRYPOINT ["/entry.sh"]', 'CMD ["default", "args"]',
                                         "ENV GREETING=hello", "WORKDIR /srv/work", "USER app"])
    c.remove()
    return img


def test_run_honours_image_config(rt, app_image):
    cfg = app_image.config["config"]
    assert cfg["Entrypoint"] == ["/entry.sh"] and cfg["Cmd"] == ["default", "args"]
    assert cfg["WorkingDir"] == "/srv/work" and cfg["User"] == "app" and "GREETING=hello" in cfg["Env"]
    out = rt.containers.run("app:1", remove=True).decode().splitlines()
    assert out == ["argv=default args", "uid=1000 gid=1001 user=app", "cwd=/srv/work",
                   "greeting=hello home=/home/app"]
    # a command replaces Cmd, the entrypoint stays
    out = rt.containers.run("app:1", ["one", "two"], remove=True).decode().splitlines()
    assert out[0] == "argv=one two" and out[1] == "uid=1000 gid=1001 user=app"
    # an entrypoint given here resets Cmd
    assert rt.containers.run("app:1", entrypoint=["/bin/echo"], remove=True) == b"\n"
    out = rt.containers.run("app:1", ["-c", "echo $GREETING; pwd; id -u"], entrypoint=["/bin/sh"], remove=True)
    assert out.decode().split() == ["hello", "/srv/work", "1000"]
    # environment, user and working dir given here win
    out = rt.containers.run("app:1", ["x"], environment={"GREETING": "bye"}, user="0", working_dir="/tmp",
                            remove=True).decode().splitlines()
    assert out == ["argv=x", "uid=0 gid=0 user=root", "cwd=/tmp", "greeting=bye home=/root"]
    out = rt.containers.run("app:1", ["x"], user="app:0", remove=True).decode().splitlines()
    assert out[1] == "uid=1000 gid=0 user=app"
    # the top layer's passwd wins: the base's "user" (uid 1000 there) is not in this image
    with pytest.raises(InvalidArgument, match="user"):
        rt.containers.run("app:1", ["x"], user="user", remove=True)
    # a non-zero exit is a ContainerError carrying the status and stderr; --rm still removes
    with pytest.raises(ContainerError) as ei:
        rt.containers.run("app:1", ["-c", "echo oops >&2; exit 3"], entrypoint=["/bin/sh"], remove=True)
    assert ei.value.exit_status == 3 and b"oops" in ei.value.stderr
    assert rt.containers.list(all=True) == []
    check_store(rt)


def test_container_attrs_and_list(rt, app_image):
    c = rt.containers.create("app:1", name="web", environment=["EXTRA=1"])
    a = c.attrs
    assert a["Name"] == "/web" and a["Image"] == app_image.id and a["State"]["Status"] == "created"
    assert a["Path"] == "/entry.sh" and a["Args"] == ["default", "args"]
    assert a["Config"]["User"] == "app" and a["Config"]["WorkingDir"] == "/srv/work"
    assert "EXTRA=1" in a["Config"]["Env"] and "GREETING=hello" in a["Config"]["Env"]
    assert [x.name for x in rt.containers.list()] == []  # not running
    assert [x.name for x in rt.containers.list(all=True)] == ["web"]
    assert rt.containers.get(c.id[:10]).name == "web" and rt.containers.get("web").id == c.id
    rc, out, _ = run_in(c)
    assert rc == 0 and out.startswith("argv=default args\n")
    c.reload()
    assert c.status == "exited" and c.attrs["State"]["ExitCode"] == 0
    c.remove()
    check_store(rt)


# -- names, unknown objects, removal ---------------------------------------------------------------------

def test_working_dir_never_made_outside_the_root(drt, base_tar, tmp_shm):
    """An image's WorkingDir through an absolute symlink, or with `..`, is made inside
    the container's root, never on the host."""
    rt = drt
    outside = os.path.join(tmp_shm, "outside")
    os.mkdir(outside)
    with open(base_tar, "rb") as f:
        tars = [f.read(), layer_tar([("symlink", "evil", {"link": outside})])]
    write_oci_layout(os.path.join(tmp_shm, "evil"), tars, ref="evil:1",
                     config={"Cmd": ["pwd"], "WorkingDir": "/evil/sub"})
    rt.images.load(os.path.join(tmp_shm, "evil"))
    for workdir in (None, "/../../../../.." + outside + "/dots"):
        c = rt.containers.create("evil:1", working_dir=workdir)
        try:
            run_in(c)
        except pyrt.SpawnError as e:  # not made by the spawn core (reported); never made outside either
            assert e.op == "chdir"
        finally:
            c.remove()
        assert os.listdir(outside) == []
    check_store(rt)


def test_a_name_that_is_another_containers_id_never_stands_in_for_it(rt, base_tar):
    # the attack: name a container with the full id (or an id prefix) of another, so
    # that `rm -f ID` (a detached --rm container's monitor, a script) removes the wrong one
    rt.images.import_image(base_tar, "base", "1")
    victim = rt.containers.create("base:1", ["true"])
    decoy = rt.containers.create("base:1", ["true"], name=victim.id)
    prefix_decoy = rt.containers.create("base:1", ["true"], name=victim.id[:12])
    assert rt.containers.get(victim.id).id == victim.id
    rt.containers.get(victim.id).remove(force=True)
    assert {c.id for c in rt.containers.list(all=True)} == {decoy.id, prefix_decoy.id}
    # once the id is gone, the name still finds its own container, and a name wins over a prefix
    assert rt.containers.get(victim.id).id == decoy.id
    assert rt.containers.get(victim.id[:12]).id == prefix_decoy.id
    decoy.remove()
    prefix_decoy.remove()


def test_name_conflict_changes_nothing(rt, base_tar):
    rt.images.import_image(base_tar, "base", "1")
    c = rt.containers.create("base:1", ["true"], name="web")
    rows = rt.store.db.query("SELECT id, name, config, state FROM containers")
    dirs = sorted(os.listdir(os.path.join(rt.store.root, "containers")))
    with pytest.raises(Conflict, match="web.*already in use"):
        rt.containers.create("base:1", ["false"], name="web")
    with pytest.raises(Conflict, match="already in use"):
        rt.containers.run("base:1", ["true"], name="web", remove=True)
    assert [tuple(r) for r in rt.store.db.query("SELECT id, name, config, state FROM containers")] == \
        [tuple(r) for r in rows]
    assert sorted(os.listdir(os.path.join(rt.store.root, "containers"))) == dirs == [c.id]
    with pytest.raises(InvalidArgument, match="invalid container name"):
        rt.containers.create("base:1", ["true"], name="-bad/name")
    # a generated name, and the name free again once removed
    other = rt.containers.create("base:1", ["true"])
    assert other.name and other.name != "web"
    c.remove()
    again = rt.containers.create("base:1", ["true"], name="web")
    assert again.id != c.id
    again.remove()
    other.remove()
    check_store(rt)


def test_unknown_container_and_image(rt, base_tar):
    with pytest.raises(ContainerNotFound, match="nothere"):
        rt.containers.get("nothere")
    with pytest.raises(ImageNotFound):
        rt.containers.create("nothere:1", ["true"])
    with pytest.raises(ImageNotFound):
        rt.containers.run("nothere", ["true"], remove=True)
    rt.images.import_image(base_tar, "base", "1")
    with pytest.raises(ImageNotFound):
        rt.containers.create("base:2", ["true"])
    with pytest.raises(InvalidArgument, match="no command"):
        rt.containers.create("base:1")  # the imported image has no Cmd
    c = rt.containers.create("base:1", ["true"], name="gone")
    c.remove()
    with pytest.raises(ContainerNotFound):
        rt.containers.get("gone")
    with pytest.raises(ContainerNotFound):
        c.remove()
    assert rt.containers.list(all=True) == []
    check_store(rt)


def test_rm_running_container_needs_force(drt, base_tar):
    rt = drt
    rt.images.import_image(base_tar, "base", "1")
    c = rt.containers.create("base:1", ["sleep", "60"], name="sleeper")
    proc = c.start_process(stdin=pyrt.DEVNULL, stdout=pyrt.DEVNULL)
    try:
        assert [x.name for x in rt.containers.list()] == ["sleeper"]
        assert rt.containers.get("sleeper").status == "running"
        with pytest.raises(Conflict, match="running"):
            rt.containers.get("sleeper").remove()
        with pytest.raises(Conflict, match="running"):
            c.start_process()
        assert os.path.isdir(c.dir) and proc.poll() is None
        rt.containers.get("sleeper").remove(force=True)
        assert proc.wait() == -9
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not os.path.exists(c.dir)
    with pytest.raises(ContainerNotFound):
        rt.containers.get("sleeper")
    assert os.listdir(os.path.join(rt.store.root, "containers")) == []
    check_store(rt)


def test_image_in_use_by_container(rt, base_tar):
    img = build_layered(rt, base_tar)
    c = rt.containers.create("layered:3", ["true"], name="user")
    with pytest.raises(Conflict, match="user"):
        rt.images.remove(img.id)
    with pytest.raises(Conflict):
        rt.images.remove("layered:3")
    c.remove()
    rt.images.remove("layered:3")
    rt.images.remove("base:2")
    rt.images.remove("base:1")
    assert rt.images.list(all=True) == []
    check_store(rt)
    assert os.listdir(rt.store.snapshots.dir) == []
