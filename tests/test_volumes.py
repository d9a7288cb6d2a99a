"""Volumes: named volumes (created on first use or with `volume create`, filled from
the image on first mount, `nocopy`), anonymous volumes (`-v /path`, image VOLUMEs)
and `rm -v`, bind mounts of host files and dirs, `:ro`, tmpfs mounts, `--mount`,
`--volumes-from`, and `volume create|ls|inspect|rm|prune`. Volumes bypass the union
filesystem: their writes outlive containers, are shared by the containers that
mount them, and never show in diff or commit.

Stores live on /dev/shm (the `store` fixture of test_lifecycle, which removes every
container and checks their cgroups went with them)."""
from __future__ import annotations

import json
import os
import stat

import pytest

import helpers
from pyrt.containers.model import ContainerError
from pyrt.errors import Conflict, InvalidArgument, VolumeNotFound
from clitools import error, ok
from helpers import DEADLINE


# what the base image has in /data (test_containers.BASE_EXTRA), as `ls` lists it
DATA = [b"a", b"b", b"hl1", b"hl2", b"link", b"owned", b"sub", b"suid", b"xattr"]


def vol_dir(store, name):
    return os.path.join(store.root, "volumes", name, "_data")


def volume_names(store):
    return sorted(v.name for v in store.rt.volumes.list())


def run(store, cmd, **kw):
    """Run in the foreground, return stdout (raises on a non-zero exit)."""
    return store.rt.containers.run("base:1", ["sh", "-c", cmd], **kw)


# -- named volumes ---------------------------------------------------------------------------------

def test_named_volume_created_on_first_use_and_filled_from_the_image(store):
    assert volume_names(store) == []
    out = run(store, "ls /data; echo new > /data/new", volumes=["dv:/data"], name="first")
    assert out.split() == DATA
    assert volume_names(store) == ["dv"]
    v = store.rt.volumes.get("dv")
    assert v.attrs["Mountpoint"] == vol_dir(store, "dv") and v.attrs["Anonymous"] is False
    # the image's /data, copied with owners, modes, symlinks, hard links and xattrs kept
    snap = store.rt.images.get("base:1").layers[0].path
    expected = helpers.tree_state(os.path.join(snap, "data"))
    got = helpers.tree_state(vol_dir(store, "dv"))
    assert got.pop("new")[0] == stat.S_IFREG | 0o644
    assert got == expected
    d = vol_dir(store, "dv")
    assert os.lstat(os.path.join(d, "owned"))[4:6] == (1000, 1000)
    assert stat.S_IMODE(os.lstat(os.path.join(d, "owned")).st_mode) == 0o640
    assert stat.S_IMODE(os.lstat(os.path.join(d, "suid")).st_mode) == 0o4755
    assert os.readlink(os.path.join(d, "link")) == "a"
    assert os.lstat(os.path.join(d, "hl1")).st_ino == os.lstat(os.path.join(d, "hl2")).st_ino
    assert os.getxattr(os.path.join(d, "xattr"), "user.test") == b"hello"

    # the copy happens once: what a container changed stays, what it removed stays removed
    run(store, "rm /data/a; echo changed > /data/b", volumes=["dv:/data"])
    assert run(store, "ls /data; cat /data/b /data/new", volumes=["dv:/data"]).split() == \
        [b"b", b"hl1", b"hl2", b"link", b"new", b"owned", b"sub", b"suid", b"xattr", b"changed", b"new"]
    # mounted elsewhere, where the image has nothing: the volume's content as it is
    assert b"changed" in run(store, "cat /elsewhere/b", volumes=["dv:/elsewhere"])


def test_directory_owner_and_mode_and_nocopy(store):
    c = store.rt.containers.run(
        "base:1", ["sh", "-c", "mkdir -p /srv/app && echo hi > /srv/app/f && ln -s f /srv/app/l && "
                   "chown -R 1000:1000 /srv/app && chmod 750 /srv/app"], detach=True)
    assert c.wait(timeout=DEADLINE)["StatusCode"] == 0
    c.commit(repository="app", tag="1")
    c.remove()
    assert store.rt.containers.run("app:1", ["ls", "-ln", "/srv/app"], volumes=["appv:/srv/app"])
    root = os.lstat(vol_dir(store, "appv"))
    assert (root.st_uid, root.st_gid, stat.S_IMODE(root.st_mode)) == (1000, 1000, 0o750)
    assert open(os.path.join(vol_dir(store, "appv"), "f")).read() == "hi\n"
    assert os.readlink(os.path.join(vol_dir(store, "appv"), "l")) == "f"
    # nocopy: -v NAME:DST:nocopy, and --mount volume-nocopy
    assert store.rt.containers.run("app:1", ["ls", "-A", "/srv/app"], volumes=["empty1:/srv/app:nocopy"]) == b""
    assert os.listdir(vol_dir(store, "empty1")) == []
    r = store.cli("run", "--rm", "--mount", "type=volume,src=empty2,dst=/srv/app,volume-nocopy", "app:1",
                  "ls", "-A", "/srv/app")
    assert ok(r) == "" and os.listdir(vol_dir(store, "empty2")) == []
    mounts = [{"Type": "volume", "Source": "empty3", "Target": "/srv/app", "VolumeOptions": {"NoCopy": True}}]
    assert store.rt.containers.run("app:1", ["ls", "-A", "/srv/app"], mounts=mounts) == b""
    # a volume that already has content is never filled
    open(os.path.join(vol_dir(store, "empty1"), "mine"), "w").close()
    assert store.rt.containers.run("app:1", ["ls", "-A", "/srv/app"], volumes=["empty1:/srv/app"]) == b"mine\n"


def test_writes_persist_and_are_shared(store):
    run(store, "echo one > /v/file", volumes=["shared:/v"], name="writer")
    store.get("writer").remove()
    assert run(store, "cat /v/file", volumes=["shared:/v"]) == b"one\n"  # outlives its container
    # two containers using the volume at the same time see each other's writes
    a = store.rt.containers.run("base:1", ["sleep", "600"], detach=True, name="a", volumes=["shared:/v"])
    b = store.rt.containers.run("base:1", ["sleep", "600"], detach=True, name="b",
                                mounts=[{"Type": "volume", "Source": "shared", "Target": "/w"}])
    assert a.exec_run(["sh", "-c", "echo from-a > /v/a"])[0] == 0
    assert b.exec_run(["cat", "/w/a"]) == (0, b"from-a\n")
    assert b.exec_run(["sh", "-c", "echo from-b >> /w/a; mkdir /w/dir"])[0] == 0
    assert a.exec_run(["sh", "-c", "cat /v/a; ls -d /v/dir"]) == (0, b"from-a\nfrom-b\n/v/dir\n")
    assert open(os.path.join(vol_dir(store, "shared"), "a")).read() == "from-a\nfrom-b\n"


def test_volume_writes_never_show_in_diff_or_commit(store):
    c = store.rt.containers.run("base:1", ["sh", "-c", "echo v > /data/in-volume; rm /data/a; echo u > /srv/upper"],
                                detach=True, volumes=["dv:/data"], name="c")
    assert c.wait(timeout=DEADLINE)["StatusCode"] == 0
    assert c.diff() == [{"Path": "/srv", "Kind": 0}, {"Path": "/srv/upper", "Kind": 1}]
    assert ok(store.cli("diff", "c")).split("\n") == ["C /srv", "A /srv/upper", ""]
    img = c.commit(repository="committed", tag="1")
    top = img.layers[-1].path
    assert sorted(os.listdir(top)) == ["srv"]
    out = store.rt.containers.run("committed:1", ["sh", "-c", "ls /data; cat /srv/upper"])
    assert out.split() == DATA + [b"u"]
    assert sorted(os.listdir(vol_dir(store, "dv")))[:1] == ["b"]  # the volume has its own state


# -- anonymous volumes -----------------------------------------------------------------------------

def test_anonymous_volumes_removed_by_rm_v_named_kept(store, base_tar):
    store.rt.images.import_image(base_tar, "withvol", "1", changes=["VOLUME /data", "VOLUME /cache"])
    cid = ok(store.cli("run", "-d", "--name", "anon", "-v", "/scratch", "-v", "named:/named", "withvol:1",
                       "sh", "-c", "echo s > /scratch/f; echo c > /cache/f; ls /data")).strip()
    c = store.get(cid)
    assert c.wait(timeout=DEADLINE)["StatusCode"] == 0
    assert c.logs().split()[:2] == [b"a", b"b"]  # the image VOLUME is filled from the image
    mounts = {m["Destination"]: m for m in c.attrs["Mounts"]}
    assert set(mounts) == {"/scratch", "/named", "/data", "/cache"}
    anon = sorted(mounts[d]["Name"] for d in ("/scratch", "/data", "/cache"))
    assert all(len(mounts[d]["Name"]) == 64 and mounts[d]["Anonymous"] for d in ("/scratch", "/data", "/cache"))
    assert mounts["/named"]["Name"] == "named" and not mounts["/named"].get("Anonymous")
    assert volume_names(store) == sorted(anon + ["named"])
    assert all(store.rt.volumes.get(n).attrs["Anonymous"] for n in anon)
    assert open(os.path.join(vol_dir(store, mounts["/scratch"]["Name"]), "f")).read() == "s\n"
    ok(store.cli("rm", "-v", "anon"))
    assert volume_names(store) == ["named"]

    # without -v, anonymous volumes stay (as docker's); a volume given with --mount and no source too
    c = store.rt.containers.run("withvol:1", ["true"], detach=True,
                                mounts=[{"Type": "volume", "Target": "/m"}])
    c.wait(timeout=DEADLINE)
    assert len(volume_names(store)) == 4
    c.remove()
    assert len(volume_names(store)) == 4
    store.rt.volumes.prune()
    assert volume_names(store) == []


# -- bind mounts and tmpfs -------------------------------------------------------------------------

def test_bind_mounts_of_files_and_dirs_and_read_only(store, tmp_shm):
    host_dir = os.path.join(tmp_shm, "hostdir")
    os.mkdir(host_dir)
    with open(os.path.join(host_dir, "in"), "w") as f:
        f.write("from host\n")
    host_file = os.path.join(tmp_shm, "conf")
    with open(host_file, "w") as f:
        f.write("setting=1\n")
    out = run(store, "cat /mnt/in /etc/app.conf; echo back > /mnt/out",
              volumes=[f"{host_dir}:/mnt", f"{host_file}:/etc/app.conf:ro"])
    assert out == b"from host\nsetting=1\n"
    assert open(os.path.join(host_dir, "out")).read() == "back\n"  # rw: the host sees the write
    # :ro really is read-only, for a dir and a file
    script = ("echo x > /ro/new 2>/dev/null; echo dir=$?; echo x >> /etc/app.conf 2>/dev/null; echo file=$?; "
              "rm /ro/in 2>/dev/null; echo rm=$?; grep -E ' /ro | /etc/app.conf ' /proc/self/mounts")
    c = store.rt.containers.run("base:1", ["sh", "-c", script], detach=True,
                                volumes={host_dir: {"bind": "/ro", "mode": "ro"}, host_file: {"bind": "/etc/app.conf",
                                                                                          "mode": "ro"}})
    assert c.wait(timeout=DEADLINE)["StatusCode"] == 0
    lines = c.logs(stderr=False).decode().splitlines()
    assert lines[:3] == ["dir=1", "file=1", "rm=1"], lines
    assert len(lines) == 5 and all(" ro," in line or " ro " in line for line in lines[3:]), lines
    assert sorted(os.listdir(host_dir)) == ["in", "out"]
    assert open(host_file).read() == "setting=1\n"
    # --mount type=bind,readonly, and the CLI's -v
    r = store.cli("run", "--rm", "--mount", f"type=bind,src={host_dir},dst=/b,readonly", "base:1",
                  "sh", "-c", "cat /b/in; touch /b/x")
    assert r.returncode == 1 and r.stdout == b"from host\n" and b"Read-only file system" in r.stderr
    r = store.cli("run", "--rm", "-v", f"{host_file}:/f", "base:1", "sh", "-c", "echo setting=2 > /f")
    assert r.returncode == 0 and open(host_file).read() == "setting=2\n"
    # a bind source that does not exist: a clear error, nothing created
    before = store.snapshot()
    error(store.cli("run", "-d", "-v", f"{tmp_shm}/nope:/x", "base:1", "true"), status=125,
          match="bind source path does not exist")
    assert store.snapshot() == before and not os.path.exists(f"{tmp_shm}/nope")


def test_tmpfs_mounts(store):
    def stat_and_size(out):
        mode, line = out.decode().splitlines()
        return mode, int(line.split()[1])

    script = "stat -c %a /run; df -k /run | tail -1; grep ' /run ' /proc/self/mounts >&2; echo x > /run/f"
    c = store.rt.containers.run("base:1", ["sh", "-c", script], detach=True, tmpfs={"/run": "size=1m,mode=1770"})
    assert c.wait(timeout=DEADLINE)["StatusCode"] == 0
    assert stat_and_size(c.logs(stderr=False)) == ("1770", 1024)
    opts = c.logs(stdout=False).decode().split()[3].split(",")
    assert {"nosuid", "nodev", "noexec"} <= set(opts) and "rw" in opts
    assert c.diff() == [{"Path": "/run", "Kind": 1}]  # its mount point, not what was written in it
    assert stat_and_size(ok(store.cli("run", "--rm", "--tmpfs", "/run:size=2m,mode=700", "base:1",
                                      "sh", "-c", "stat -c %a /run; df -k /run | tail -1")).encode()) == ("700", 2048)
    out = ok(store.cli("run", "--rm", "--mount", "type=tmpfs,dst=/run,tmpfs-size=3m,tmpfs-mode=755", "base:1",
                       "sh", "-c", "stat -c %a /run; df -k /run | tail -1")).encode()
    assert stat_and_size(out) == ("755", 3072)
    # the size is enforced
    r = store.cli("run", "--rm", "--tmpfs", "/run:size=1m", "base:1", "sh", "-c",
                  "head -c 2000000 /dev/zero > /run/big; echo $?; wc -c < /run/big")
    rc, size = r.stdout.split()
    assert r.returncode == 0 and rc != b"0" and int(size) <= 1 << 20, r
    error(store.cli("run", "-d", "--tmpfs", "/run:bogus=1", "base:1", "true"), status=125, match="bogus")


# -- --mount and --volumes-from --------------------------------------------------------------------

def test_mount_syntax(store, tmp_shm):
    host_dir = os.path.join(tmp_shm, "h")
    os.mkdir(host_dir)
    cid = ok(store.cli("run", "-d", "--name", "m",
                       "--mount", "type=volume,source=mv,target=/data",
                       "--mount", "type=volume,src=mro,dst=/ro,readonly",
                       "--mount", f"type=bind,src={host_dir},dst=/h",
                       "--mount", "type=tmpfs,dst=/t,tmpfs-size=1m",
                       "base:1", "sh", "-c",
                       "ls /data | head -1; echo w > /h/w; echo w > /t/w; touch /ro/x 2>/dev/null || echo ro")).strip()
    c = store.get(cid)
    assert c.wait(timeout=DEADLINE)["StatusCode"] == 0
    assert c.logs() == b"a\nro\n"
    assert open(os.path.join(host_dir, "w")).read() == "w\n"
    kinds = {m["Destination"]: (m["Type"], m.get("RW")) for m in c.attrs["Mounts"]}
    assert kinds == {"/data": ("volume", True), "/ro": ("volume", False), "/h": ("bind", True),
                     "/t": ("tmpfs", None)}
    assert volume_names(store) == ["mro", "mv"]
    error(store.cli("run", "-d", "--mount", "type=nfs,dst=/x", "base:1", "true"), status=125, match="nfs")
    error(store.cli("run", "-d", "--mount", "type=volume,src=x", "base:1", "true"), status=125, match="dst")
    error(store.cli("run", "-d", "--mount", "type=volume,src=x,dst=/x,colour=red", "base:1", "true"),
          status=125, match="colour")
    assert volume_names(store) == ["mro", "mv"] and [r["id"] for r in store.db_rows()] == [cid]


def test_volumes_from(store, tmp_shm):
    host_dir = os.path.join(tmp_shm, "h")
    os.mkdir(host_dir)
    src = store.rt.containers.run("base:1", ["sleep", "600"], detach=True, name="src",
                                  volumes=["fromv:/data", f"{host_dir}:/h", "/anon"], tmpfs={"/t": ""})
    assert src.exec_run(["sh", "-c", "echo from-src > /data/s; echo a > /anon/a"])[0] == 0
    out = ok(store.cli("run", "--rm", "--volumes-from", "src", "base:1", "sh", "-c",
                       "cat /data/s /anon/a; echo h > /h/h; ls -d /t 2>&1 | grep -c 'No such'"))
    assert out == "from-src\na\n1\n"  # volumes and binds, not tmpfs
    assert open(os.path.join(host_dir, "h")).read() == "h\n"
    r = store.cli("run", "--rm", "--volumes-from", "src:ro", "base:1", "sh", "-c", "cat /data/s; touch /data/x")
    assert r.returncode == 1 and r.stdout == b"from-src\n" and b"Read-only" in r.stderr
    with pytest.raises(ContainerError, match="Read-only"):
        store.rt.containers.run("base:1", ["touch", "/data/x"], volumes_from=["src:ro"], remove=True)
    c = store.rt.containers.run("base:1", ["sleep", "600"], detach=True, volumes_from=["src"])
    assert c.exec_run(["sh", "-c", "echo from-c >> /data/s"])[0] == 0
    assert src.exec_run(["cat", "/data/s"]) == (0, b"from-src\nfrom-c\n")  # the same volume
    # the anonymous volume is src's: rm -v of a container that inherited it leaves it
    c.remove(force=True, v=True)
    anon = next(m["Name"] for m in src.attrs["Mounts"] if m["Destination"] == "/anon")
    assert anon in volume_names(store)
    error(store.cli("run", "-d", "--volumes-from", "src:rx", "base:1", "true"), status=125, match="rx")


# -- the volume verbs ------------------------------------------------------------------------------

def test_volume_rm_of_a_volume_in_use_is_refused(store):
    c = store.rt.containers.run("base:1", ["sleep", "600"], detach=True, name="user", volumes=["busy:/b"])
    err = error(store.cli("volume", "rm", "busy"), match="volume busy is in use by container\\(s\\) user")
    assert "remove" in err
    with pytest.raises(Conflict, match="in use"):
        store.rt.volumes.get("busy").remove()
    c.stop(timeout=0)  # a stopped container still uses it
    error(store.cli("volume", "rm", "busy"), match="in use")
    assert volume_names(store) == ["busy"]
    c.remove()
    assert ok(store.cli("volume", "rm", "busy")) == "busy\n"
    assert volume_names(store) == [] and not os.path.exists(os.path.join(store.root, "volumes", "busy"))
    error(store.cli("volume", "rm", "busy"), match="no such volume: busy")
    assert store.cli("volume", "rm", "-f", "busy").returncode == 0


def test_volume_prune_removes_unused_ones_only(store):
    store.rt.volumes.create("unused")
    store.rt.volumes.create("anon-unused", labels={"k": "v"})
    c = store.rt.containers.run("base:1", ["sleep", "600"], detach=True, volumes=["used:/u", "/anon-used"])
    stopped = store.rt.containers.run("base:1", ["true"], detach=True, volumes=["used-by-stopped:/s"])
    stopped.wait(timeout=DEADLINE)
    anon = next(m["Name"] for m in c.attrs["Mounts"] if m["Destination"] == "/anon-used")
    with open(os.path.join(vol_dir(store, "unused"), "f"), "w") as f:
        f.write("12345")
    error(store.cli("volume", "prune"), match="confirm with -f")  # no terminal to ask on
    out = ok(store.cli("volume", "prune", "-f"))
    lines = out.splitlines()
    assert lines[0] == "Deleted Volumes:" and sorted(lines[1:3]) == ["anon-unused", "unused"]
    assert lines[-1] == "Total reclaimed space: 5B"
    assert volume_names(store) == sorted([anon, "used", "used-by-stopped"])
    c.remove(force=True, v=True)
    stopped.remove()
    assert store.rt.volumes.prune() == {"VolumesDeleted": ["used", "used-by-stopped"], "SpaceReclaimed": 0}
    assert volume_names(store) == []


def test_volume_create_ls_inspect(store):
    assert ok(store.cli("volume", "create", "--label", "team=a", "one")) == "one\n"
    anon = ok(store.cli("volume", "create")).strip()
    assert len(anon) == 64
    assert ok(store.cli("volume", "create", "one")) == "one\n"  # creating an existing one returns it
    table = ok(store.cli("volume", "ls")).splitlines()
    assert table[0].split() == ["DRIVER", "VOLUME", "NAME"] and sorted(t.split()[1] for t in table[1:]) == \
        sorted(["one", anon])
    assert sorted(ok(store.cli("volume", "ls", "-q")).split()) == sorted(["one", anon])
    rows = json.loads(ok(store.cli("volume", "ls", "--format", "json")))
    assert {r["Name"] for r in rows} == {"one", anon}
    info = json.loads(ok(store.cli("volume", "inspect", "one")))
    assert len(info) == 1
    assert info[0]["Name"] == "one" and info[0]["Driver"] == "local" and info[0]["Labels"] == {"team": "a"}
    assert info[0]["Mountpoint"] == vol_dir(store, "one") and os.path.isdir(info[0]["Mountpoint"])
    assert info[0]["Scope"] == "local" and info[0]["CreatedAt"].endswith("Z")
    r = store.cli("volume", "inspect", "one", "nope")
    assert r.returncode == 1 and b"no such volume: nope" in r.stderr and len(json.loads(r.stdout)) == 1
    c = store.rt.containers.run("base:1", ["true"], detach=True, volumes=["one:/one"])
    assert ok(store.cli("volume", "ls", "-q", "--dangling")).split() == [anon]
    assert [v.name for v in store.rt.volumes.list(filters={"dangling": False})] == ["one"]
    c.wait(timeout=DEADLINE)
    c.remove()
    # the API
    v = store.rt.volumes.create("two", labels={"x": "y"})
    assert store.rt.volumes.get("two").attrs["Labels"] == {"x": "y"} and v.id == "two"
    with pytest.raises(VolumeNotFound):
        store.rt.volumes.get("three")
    for bad in ("bad name", "../up", "-dash", "a/b", ".hidden"):
        with pytest.raises(InvalidArgument):
            store.rt.volumes.create(bad)
        if not bad.startswith("-"):
            error(store.cli("volume", "create", bad), match="invalid volume name")
    error(store.cli("run", "-d", "-v", "bad name:/x", "base:1", "true"), status=125, match="invalid volume name")
    with pytest.raises(InvalidArgument, match="driver"):
        store.rt.volumes.create("d", driver="nfs")
    assert sorted(volume_names(store)) == sorted(["one", "two", anon])
    for name in ("one", "two", anon):
        store.rt.volumes.get(name).remove()
    assert volume_names(store) == [] and os.listdir(os.path.join(store.root, "volumes")) == []


def test_symlinks_in_volumes_stay_inside_the_container(store, tmp_shm):
    """Symlinks a container left in a volume, pointing at host paths, are resolved
    inside a later container's root: written through, or mounted over, they never
    reach the host."""
    outside = os.path.join(tmp_shm, "outside")
    os.mkdir(outside)
    run(store, f"ln -s {outside} /v/escape; ln -s / /v/root", volumes=["sym:/v"])
    out = run(store, "echo x > /v/escape/pwned 2>/dev/null; echo $?; ls /v/root/data | head -1",
              volumes=["sym:/v"])
    assert out == b"1\na\n"  # /v/root is the container's / (with the image's /data)
    # a destination through it is made inside the container's root, as docker does
    out = ok(store.cli("run", "--rm", "-v", "sym:/v", "-v", "other:/v/escape/y", "base:1", "sh", "-c",
                       f"touch /v/escape/y/in-other; ls -d {outside}/y"))
    assert out == f"{outside}/y\n"
    assert os.listdir(os.path.join(store.root, "volumes", "other", "_data")) == ["in-other"]
    ok(store.cli("run", "--rm", "-v", f"{tmp_shm}:/v/escape/z", "-v", "sym:/v", "base:1", "true"))
    error(store.cli("run", "--rm", "-v", "deep:/data/link/x", "base:1", "true"), status=125,
          match='mount destination "/data/link/x": Not a directory')
    assert os.listdir(outside) == []
    assert len(store.db_rows()) == 2  # the two that ran without --rm; none of the failed one


def test_mount_errors_leave_no_volume(store):
    """A container that fails to be created leaves no volume it would have made."""
    before = volume_names(store)
    error(store.cli("run", "-d", "-v", "fresh:/data", "--cpus", str(os.cpu_count() + 1), "base:1", "true"),
          status=125, match="cpus")
    error(store.cli("run", "-d", "-v", "fresh:/data", "-v", "other:/data", "base:1", "true"), status=125,
          match="duplicate mount point")
    error(store.cli("run", "-d", "-v", "fresh:/", "base:1", "true"), status=125, match="root")
    assert volume_names(store) == before
    assert store.db_rows() == [] and os.listdir(os.path.join(store.root, "containers")) == []
    r = store.cli("run", "--rm", "-v", "fresh:/data", "base:1", "sh", "-c", "exit 3")
    assert r.returncode == 3 and volume_names(store) == ["fresh"]  # the container ran: the volume stays


def test_filling_a_volume_never_follows_an_image_symlink_to_the_host(store, tmp_shm):
    """An image whose /x is a symlink to an absolute host path: a new volume on
    /x/secret is filled from the image (where nothing is there), never from the
    host directory the symlink names."""
    host = os.path.join(tmp_shm, "hostdir")
    os.makedirs(os.path.join(host, "secret"))
    with open(os.path.join(host, "secret", "key"), "w") as f:
        f.write("host only\n")
    c = store.rt.containers.create("base:1", ["sh", "-c", f"ln -s {host} /x"])
    c.start()
    assert c.wait()["StatusCode"] == 0
    c.commit("evil", "1")
    store.rt.containers.create("evil:1", ["true"], volumes=["vv:/x/secret"])  # fills the new volume
    assert os.listdir(vol_dir(store, "vv")) == []
