"""The native `pyrt run IMAGE` (csrc/bin/pyrt.c, csrc/front_container.h): for the
command lines it does itself, the same observable result as the Python CLI (exit
status, output, the container's row, directory, log, what `ps`, `inspect` and
`logs` show, and with --rm nothing left), the same when `pyrt` is killed, and
every case it does not do exactly as Python handed over before anything is done.

Whether a run was handed over is seen from outside: with PYTHONPROFILEIMPORTTIME=1
a Python that starts writes its import times to stderr; the native command never
does. PYRT_CLI_PYTHON=1 makes the command hand everything over (the reference)."""
from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import time

import pytest

from clitools import PYRT, SPEC_CAPTURE, cgroup_dirs
from helpers import DEADLINE, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the native `pyrt run IMAGE` is root's")

TIMES = re.compile(rb"^\S+ (stdout|stderr) ", re.M)


def _env(**more):
    env = dict(os.environ)
    for k in ("PYRT_CLI_PYTHON", "PYTHONPROFILEIMPORTTIME", "PYRT_DEFAULT_NETWORK", "PYRT_STORAGE_DRIVER",
              "PYRT_CGROUP_MANAGER"):
        env.pop(k, None)
    env["PYRT_ROOT"] = "/nonexistent-on-purpose"
    env.update(more)
    return env


def pyrt(store, *argv, python=False, env=None, **kw):
    e = _env(**(env or {}))
    if python:
        e["PYRT_CLI_PYTHON"] = "1"
    else:
        e["PYTHONPROFILEIMPORTTIME"] = "1"
    kw.setdefault("capture_output", True)
    kw.setdefault("timeout", DEADLINE)
    return subprocess.run([PYRT, "--root", store.root, *argv], env=e, cwd="/", **kw)


def handed_over(r) -> bool:
    return b"import time:" in (r.stderr or b"")


def without_import_times(err: bytes) -> bytes:
    return b"".join(ln for ln in err.splitlines(keepends=True) if not ln.startswith(b"import time:"))


@pytest.fixture
def istore(store):
    """A store with base:1 whose storage driver Python has detected (the native
    command needs its `storage-driver` file) and whose seccomp cache is made."""
    r = pyrt(store, "run", "--rm", "--network", "none", "base:1", "true", python=True)
    assert r.returncode == 0, r.stderr
    assert os.path.exists(os.path.join(store.root, "storage-driver"))
    return store


def rows(store) -> dict:
    db = sqlite3.connect(os.path.join(store.root, "pyrt.db"))
    try:
        return {r[1]: r for r in db.execute("SELECT id, name, image_id, created, config, state FROM containers")}
    finally:
        db.close()


def listing(cdir) -> list:
    out = []
    for root, dirs, files in os.walk(cdir):
        for n in dirs + files:
            p = os.path.join(root, n)
            rel = os.path.relpath(p, cdir)
            if rel.startswith("work/"):  # the kernel's overlay work dir (made and emptied on its own time)
                continue
            st = os.lstat(p)
            out.append((rel, st.st_mode, st.st_size if not os.path.isdir(p) else 0))
    return sorted(out)


def record(store, name):
    """What the store holds of a container, without what differs from run to run."""
    cid, _, image_id, _, config, state = rows(store)[name]
    config, state = json.loads(config), json.loads(state)
    host = config.pop("Hostname")
    assert host == cid[:12]
    config["Env"] = [e for e in config["Env"] if e != f"HOSTNAME={host}"]
    for m in config["Mounts"]:  # (an anonymous volume's random name)
        if m.get("Anonymous"):
            m["Name"] = m["Source"] = "ANONYMOUS"
    for k in ("Pid", "StartTime", "StartedAt", "FinishedAt"):  # (a container that never started has none)
        if k in state:
            state[k] = type(state[k]).__name__ if k != "Pid" else state[k]
    cdir = os.path.join(store.root, "containers", cid)
    with open(os.path.join(cdir, "ctr.log"), "rb") as f:
        log = TIMES.sub(rb"T \1 ", f.read()).replace(host.encode(), b"HOST")
    with open(os.path.join(cdir, "hosts"), "rb") as f:
        hosts = f.read().replace(host.encode(), b"HOST")
    return {"image": image_id, "config": config, "state": state, "listing": listing(cdir), "log": log,
            "hosts": hosts}


def shown(store, name):
    ps = pyrt(store, "ps", "-a", "--format", "{{.Names}} {{.Status}} {{.Image}} {{.Command}}", python=True)
    line = [ln for ln in ps.stdout.decode().splitlines() if ln.startswith(name + " ")]
    cid = rows(store)[name][0]
    text = pyrt(store, "inspect", name, python=True).stdout.decode().replace(cid, "ID").replace(cid[:12], "HOST")
    inspect = json.loads(text.replace(name, "NAME"))[0]
    for k in ("Id", "Created", "Name"):
        inspect.pop(k)
    for k in ("StartedAt", "FinishedAt", "Pid"):
        inspect["State"].pop(k)
    inspect["Config"].pop("Hostname")
    inspect["Config"]["Env"] = [e for e in inspect["Config"]["Env"] if not e.startswith("HOSTNAME=")]
    inspect.pop("HostsPath", None), inspect.pop("HostnamePath", None), inspect.pop("ResolvConfPath", None)
    inspect.pop("LogPath", None)
    logs = pyrt(store, "logs", name, python=True)
    return [[re.sub(r"\s+\d+ \w+ ago", " AGO", ln.replace(name, "NAME")) for ln in line], inspect,
            logs.stdout.replace(cid[:12].encode(), b"HOST"), logs.stderr]


def nothing_left(store, cid):
    assert cid not in {r[0] for r in rows(store).values()}
    assert not os.path.exists(os.path.join(store.root, "containers", cid))
    assert not cgroup_dirs(cid)
    with open("/proc/self/mountinfo") as f:
        assert cid not in f.read()


def new_ids(store, before):
    return {r[0] for r in rows(store).values()} - before


PARITY = [
    ["--network", "none", "base:1", "true"],
    ["--network", "none", "base:1", "sh", "-c", "echo out; echo err >&2; exit 7"],
    ["--net=host", "-e", "A=1", "-e", "FROM_HOST", "-e", "UNSET_HERE", "-e", "A=2", "base:1", "env"],
    ["--network", "none", "-e", "HOME=/h", "-e", "PATH=/bin", "-e", "Q=a\"b\\c\td", "base:1", "env"],
    ["--rm", "--network", "none", "base:1", "sh", "-c", "echo gone"],
    ["--network", "none", "--cap-drop", "NET_RAW", "--cap-add", "sys_admin", "base:1",
     "sh", "-c", "grep Cap /proc/self/status"],
    ["--network", "none", "base:1", "sh", "-c", "kill -TERM $$"],
    ["--network", "none", "base:1", "no-such-command"],
    ["--rm", "--network", "none", "base:1", "no-such-command"],
    ["--network", "none", "--sig-proxy", "false", "base:1", "sh", "-c", "cat /etc/hostname /etc/hosts; pwd"],
    ["--rm", "--network", "none", "base:1", "sh", "-c", "echo x > /new; exit 1"],
    ["--rm", "--network", "none", "base:1", "sh", "-c",
     "mkdir -p /t/a/b/c && cd /t && for i in $(seq 300); do echo $i > f$i; mkdir d$i; ln -s /etc d$i/l; done; "
     "chmod 0 /t/a; mknod /t/p p; chmod 0 /t"],
    ["--network", "none", "-w", "/srv/new/dir", "base:1", "pwd"],
    ["--network", "none", "--workdir=/data", "base:1", "pwd"],
    ["--network", "none", "-w", "", "base:1", "pwd"],
]


@pytest.mark.parametrize("argv", PARITY, ids=lambda a: " ".join(a))
def test_parity_with_python(istore, argv):
    """The same command line, native and by Python: the same status, output and
    messages, the same record (config, state, directory, log) and the same views
    of it; with --rm nothing is left by either."""
    results = []
    for python in (True, False):  # Python first: what it caches (a seccomp filter) the native run reads
        name = "c-python" if python else "c-native"
        before = {r[0] for r in rows(istore).values()}
        r = pyrt(istore, "run", "--name", name, *argv, python=python, env={"FROM_HOST": "host value"})
        assert handed_over(r) is False or python, without_import_times(r.stderr)
        istore.ids.update(new_ids(istore, before))
        out = {"rc": r.returncode, "stdout": r.stdout.replace(name.encode(), b"NAME"),
               "stderr": without_import_times(r.stderr)}
        if "--rm" in argv:
            assert name not in rows(istore)
            for cid in new_ids(istore, before) | istore.ids - before:
                nothing_left(istore, cid)
        else:
            cid = rows(istore)[name][0]
            out["stdout"] = out["stdout"].replace(cid[:12].encode(), b"HOST")
            out["record"] = record(istore, name)
            out["shown"] = shown(istore, name)
            assert not cgroup_dirs(cid)
        results.append(out)
    python, native = results
    assert native == python



def _normalized_spec(data: bytes) -> bytes:
    (cid,) = set(re.findall(rb"containers/([0-9a-f]{64})", data))
    return data.replace(cid, b"I" * 64).replace(cid[:12], b"H" * 12)


@pytest.mark.parametrize("argv", [
    ["--rm", "--network", "none", "base:1", "true"],
    ["--net=host", "-e", "A=1", "-e", "PATH=/x", "--cap-add", "NET_ADMIN", "--cap-drop", "chown", "base:1", "sh"],
], ids=["none", "host"])
def test_spawn_spec_is_pythons(istore, tmp_shm, argv):
    """The packed spawn spec (csrc/specpack.h) of the native command and of Python's
    for the same container are the same bytes (the container's id aside): the
    overlay of the image's layers, init layer and upper dir, mounts, masks,
    namespaces, caps, env, seccomp program."""
    import sys
    if any(a.startswith("--cap-add") for a in argv):  # the filter of these caps, cached by Python
        pyrt(istore, "run", "--rm", *argv, python=True)
    out = os.path.join(tmp_shm, "native.spec")
    r = pyrt(istore, "run", *argv, env={"PYRT_CLI_DUMP_SPEC": out})
    assert r.returncode == 0 and not handed_over(r), r.stderr
    assert not rows(istore) and os.listdir(os.path.join(istore.root, "containers")) == []  # nothing made
    ref = os.path.join(tmp_shm, "python.spec")
    r = subprocess.run([sys.executable, "-c", SPEC_CAPTURE, ref, "--root", istore.root, "run", *argv],
                       capture_output=True, env=_env(), timeout=DEADLINE)
    assert r.returncode == 0, r.stderr
    for c in istore.rt.containers.list(all=True):
        istore.ids.add(c.id)
    with open(out, "rb") as f, open(ref, "rb") as g:
        assert _normalized_spec(f.read()) == _normalized_spec(g.read())


def test_native_path_taken(istore):
    """The proof the parity test relies on: a native run starts no Python."""
    r = pyrt(istore, "run", "--rm", "--network", "none", "base:1", "true")
    assert r.returncode == 0 and r.stderr == b""
    r = pyrt(istore, "run", "--rm", "base:1", "true", env={"PYRT_DEFAULT_NETWORK": "none"})
    assert r.returncode == 0 and r.stderr == b""


def test_python_commands_on_a_native_container(istore):
    """What the native run leaves is the Python CLI's to use: ps, logs, diff,
    start -a (again, with its log appended), commit, rm."""
    r = pyrt(istore, "run", "--name", "n", "--network", "none", "base:1", "sh", "-c",
             "echo run >> /ran; cat /ran; echo err >&2")
    assert (r.returncode, r.stdout, r.stderr) == (0, b"run\n", b"err\n")
    istore.ids.add(rows(istore)["n"][0])
    assert b"Exited (0)" in pyrt(istore, "ps", "-a", python=True).stdout
    assert pyrt(istore, "diff", "n", python=True).stdout == b"A /ran\n"
    r = pyrt(istore, "start", "-a", "n", python=True)
    assert (r.returncode, r.stdout) == (0, b"run\nrun\n")
    r = pyrt(istore, "logs", "n", python=True)
    assert (r.stdout, r.stderr) == (b"run\nrun\nrun\n", b"err\nerr\n")
    r = pyrt(istore, "commit", "n", "made:1", python=True)
    assert r.returncode == 0, r.stderr
    r = pyrt(istore, "run", "--rm", "--network", "none", "made:1", "cat", "/ran")
    assert (r.returncode, r.stdout, r.stderr) == (0, b"run\nrun\n", b"")
    assert pyrt(istore, "rm", "n", python=True).returncode == 0
    assert not rows(istore) and os.listdir(os.path.join(istore.root, "containers")) == []


def test_empty_root_option_is_the_default_store(istore, tmp_shm):
    """`--root ''` names the default store ($PYRT_ROOT), as in Python."""
    for python in (False, True):
        r = subprocess.run([PYRT, "--root", "", "run", "--rm", "--network", "none", "base:1", "echo", "ok"],
                           capture_output=True, env=_env(PYRT_ROOT=istore.root,
                                                        **({"PYRT_CLI_PYTHON": "1"} if python else {})),
                           cwd=tmp_shm, timeout=DEADLINE)
        assert (r.returncode, r.stdout, r.stderr) == (0, b"ok\n", b"")
    assert not rows(istore)


def test_name_clash_is_pythons_conflict(istore):
    for python in (False, True):
        r = pyrt(istore, "run", "--name", "taken", "--network", "none", "base:1", "true", python=True)
        assert r.returncode in (0, 125)
        r = pyrt(istore, "run", "--name", "taken", "--network", "none", "base:1", "true", python=python)
        assert r.returncode == 125
        assert without_import_times(r.stderr) == (b"pyrt: the container name 'taken' is already in use: remove "
                                                  b"that container or choose another name\n")
    assert len([n for n in rows(istore) if n == "taken"]) == 1
    assert len(os.listdir(os.path.join(istore.root, "containers"))) == 1


HANDED_OVER = [
    ["base:1", "true"],                                   # root's default network: bridge (CNI)
    ["--network", "bridge", "base:1", "true"],
    ["-w", "/tmp/../etc", "--network", "none", "base:1", "true"],
    ["-w", "relative", "--network", "none", "base:1", "true"],
    ["-w", "/a//b", "--network", "none", "base:1", "true"],
    ["-t", "--network", "none", "base:1", "true"],
    ["-d", "--network", "none", "base:1", "true"],
    ["-u", "0", "--network", "none", "base:1", "true"],
    ["-v", "/tmp:/mnt", "--network", "none", "base:1", "true"],
    ["--network", "none", "no-such-image:1", "true"],
    ["--network", "none", "BASE:1", "true"],
    ["--network", "none", "base:1'; DROP TABLE containers; --", "true"],
    ["--network", "none", "--name", "a'); DELETE FROM containers; --", "base:1", "true"],
    ["--network", "none", "--name", "-x", "base:1", "true"],
    ["--network", "none", "--cap-add", "NOT_A_CAP", "base:1", "true"],
    ["--network", "none", "-e", "=x", "base:1", "true"],
    ["--network", "none", "base:1", "echo", "h\u00e9"],
    ["--network", "none", "sha256:0123", "true"],
    ["--network", "none", "base:1"],                      # no command, and the image has none: Python's error
]


@pytest.mark.parametrize("argv", HANDED_OVER, ids=lambda a: " ".join(a))
def test_handed_over(istore, argv):
    """What the native command does not do exactly as Python goes to Python before
    anything is done: the same status and messages as Python's."""
    results = []
    for python in (False, True):
        before = {r[0] for r in rows(istore).values()}
        r = pyrt(istore, "run", *argv, python=python, env={"PYRT_DEFAULT_NETWORK": ""}, timeout=20)
        istore.ids.update(new_ids(istore, before))
        if not python:
            assert handed_over(r), r.stderr
        err = re.sub(rb"[0-9a-f]{12,64}", b"ID", without_import_times(r.stderr))
        out = re.sub(rb"[0-9a-f]{12,64}", b"ID", r.stdout)
        results.append((r.returncode, out, err))
    assert results[0] == results[1]
    assert {r[1] for r in rows(istore).values()} >= set()  # the table is there, as it was
    assert "containers" in {r[0] for r in sqlite3.connect(os.path.join(istore.root, "pyrt.db")).execute(
        "SELECT name FROM sqlite_master")}


def test_handed_over_for_other_stores(istore, tmp_shm):
    """A store whose driver is not known yet (Python probes it) or not overlay, or
    with left-overs Python cleans first: handed over."""
    os.rename(os.path.join(istore.root, "storage-driver"), os.path.join(tmp_shm, "driver"))
    r = pyrt(istore, "run", "--rm", "--network", "none", "base:1", "true")
    assert handed_over(r) and r.returncode == 0
    with open(os.path.join(istore.root, "storage-driver"), "w") as f:
        f.write("copy\n")
    r = pyrt(istore, "run", "--rm", "--network", "none", "base:1", "true")
    assert handed_over(r) and r.returncode == 0
    with open(os.path.join(istore.root, "storage-driver"), "w") as f:
        f.write("overlay\n")
    os.mkdir(os.path.join(istore.root, "tmp", "2147483646-stale"))  # (no such process: Python removes it)
    r = pyrt(istore, "run", "--rm", "--network", "none", "base:1", "true")
    assert handed_over(r) and r.returncode == 0
    r = pyrt(istore, "run", "--rm", "--network", "none", "base:1", "true", env={"PYRT_STORAGE_DRIVER": "overlay"})
    assert handed_over(r) and r.returncode == 0
    r = pyrt(istore, "run", "--rm", "--network", "none", "base:1", "true")
    assert not handed_over(r) and r.returncode == 0


# -- hostile images --------------------------------------------------------------------------------

def image_with_config(store, tag, edit):
    """A copy of base:1 tagged `tag` whose config text in the store is edit(config
    dict) (a dict: dumped; a str: that text as it is)."""
    base = store.rt.images.get("base:1")
    db = sqlite3.connect(os.path.join(store.root, "pyrt.db"))
    try:
        cfg = db.execute("SELECT config FROM images WHERE id=?", (base.id,)).fetchone()[0]
        new = edit(json.loads(cfg))
        text = new if isinstance(new, str) else json.dumps(new)
        import hashlib
        iid = "sha256:" + hashlib.sha256(text.encode(errors="surrogatepass")).hexdigest()
        with db:
            row = db.execute("SELECT manifest_digest, manifest_media_type, created, loaded, size FROM images "
                             "WHERE id=?", (base.id,)).fetchone()
            db.execute("INSERT INTO images (id, config, manifest_digest, manifest_media_type, parent, created, "
                       "loaded, size) VALUES (?,?,?,?,NULL,?,?,?)", (iid, text, *row))
            db.execute("INSERT INTO image_layers SELECT ?, position, chain_id, digest, media_type, size "
                       "FROM image_layers WHERE image_id=?", (iid, base.id))
            repo, _, t = tag.partition(":")
            db.execute("INSERT INTO tags VALUES (?,?,?,?)", (repo, t, iid, time.time()))
    finally:
        db.close()
    return tag


def _cfg(**fields):
    def edit(cfg):
        cfg.setdefault("config", {}).update(fields)
        return cfg
    return edit


HOSTILE = {
    "workdir-new": (_cfg(WorkingDir="/srv/deep/work"), True),
    "workdir-dotdot": (_cfg(WorkingDir="/a/../../../etc"), False),
    "workdir-relative": (_cfg(WorkingDir="srv"), False),
    "workdir-null": (_cfg(WorkingDir=None), True),
    "workdir-through-symlink": (_cfg(WorkingDir="/bin/x"), True),
    "env-odd": (_cfg(Env=["A=x\ty", 'B="q"\\', "NOEQUALS", "C=1", "A=last", "=empty"]), True),
    "env-non-ascii": (_cfg(Env=["A=\u00e9"]), False),
    "env-not-a-list": (_cfg(Env="A=1"), False),
    "cmd-string": (_cfg(Cmd="echo hi"), False),
    "cmd-and-entrypoint": (_cfg(Entrypoint=["echo", "ep"], Cmd=["cmd"]), True),
    "volumes": (_cfg(Volumes={"/data": {}}), False),
    "labels": (_cfg(Labels={"b": "2", "a": "x\ty\"z", "org.opencontainers.image.title": "t"}), True),
    "labels-empty": (_cfg(Labels={}), True),
    "labels-not-strings": (_cfg(Labels={"a": 1}), False),
    "labels-duplicate": (lambda c: json.dumps(_cfg(Labels={"a": "1", "DUP": "2"})(c)).replace('"DUP"', '"a"'),
                         False),
    "labels-non-ascii": (_cfg(Labels={"a": "\u00e9"}), False),
    "user": (_cfg(User="nobody"), False),
    "user-null": (_cfg(User=None), True),
    "stop-signal": (_cfg(StopSignal="SIGINT"), True),
    "other-os": (lambda c: dict(c, os="windows"), False),
    "other-arch": (lambda c: dict(c, architecture="s390x"), False),
    "duplicate-key": (lambda c: json.dumps(c)[:-1] + ', "config": {"Cmd": ["echo", "second"]}}', False),
    "surrogate": (lambda c: json.dumps(c)[:-1] + ', "x": "\\ud800"}', False),
    "nested-deep": (lambda c: json.dumps(c)[:-1] + ', "x": ' + "[" * 100000 + "]" * 100000 + "}", False),
    "big": (lambda c: dict(c, padding="x" * (4 << 20)), True),
    "huge-number": (lambda c: json.dumps(c)[:-1] + ', "n": 1' + "0" * 400 + "}", True),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_image_config(istore, case):
    """An image config crafted to be read otherwise by C than by Python: the native
    command gives exactly what Python gives (or hands it over)."""
    edit, native = HOSTILE[case]
    tag = image_with_config(istore, f"hostile:{case}", edit)
    results = []
    for python in (False, True):
        before = {r[0] for r in rows(istore).values()}
        name = f"h-{int(python)}"
        r = pyrt(istore, "run", "--name", name, "--network", "none", tag, *([] if "cmd" in case else
                                                                            ["sh", "-c", "pwd; env | sort"]),
                 python=python, timeout=60)
        istore.ids.update(new_ids(istore, before))
        if not python:
            assert handed_over(r) is not native, (case, r.stderr[-500:])
        rec = record(istore, name) if name in rows(istore) else None
        out = r.stdout.replace(rows(istore)[name][0][:12].encode(), b"HOST") if rec else r.stdout
        results.append((r.returncode, out, re.sub(rb"h-[01]", b"NAME", without_import_times(r.stderr)), rec))
    assert results[0] == results[1]


def _commit_image(store, tag, script):
    r = pyrt(store, "run", "--name", "maker", "--network", "none", "base:1", "sh", "-c", script, python=True)
    assert r.returncode == 0, r.stderr
    r = pyrt(store, "commit", "maker", tag, python=True)
    assert r.returncode == 0, r.stderr
    assert pyrt(store, "rm", "maker", python=True).returncode == 0


@pytest.mark.parametrize("script", [
    "echo 'root:x:0:0:root:/custom/home:/bin/sh' > /etc/passwd",
    "printf '# c\\n\\nroot:x:0:0::::\\n' > /etc/passwd",
    "rm -f /etc/passwd; ln -s /../../../../../../etc/shadow /etc/passwd",
    "rm -f /etc/passwd; ln -s /etc/passwd /etc/passwd",
    "rm -f /etc/passwd; mkdir /etc/passwd",
    "printf 'root:x:0:0:r:/h\\xc3\\xa9:/bin/sh\\n' > /etc/passwd",
    "printf 'root:x:0:0:r:/h\\r\\n' > /etc/passwd",
    "rm -rf /srv; ln -s /../../../tmp /srv",
], ids=["home", "empty-home", "symlink-out", "symlink-loop", "dir", "non-ascii", "cr", "srv-link"])
def test_hostile_layers(istore, script):
    """/etc/passwd (for HOME), /etc/hosts and the working dir as a hostile layer
    makes them: HOME, the init layer and the run as Python gives them."""
    _commit_image(istore, "layered:1", script)
    tag = image_with_config(istore, "layered:wd", lambda c: _cfg(WorkingDir="/srv/w")(
        json.loads(json.dumps(c))))  # (a config of its own on the committed layers)
    db = sqlite3.connect(os.path.join(istore.root, "pyrt.db"))
    with db:  # the committed image's layers under the working-dir config
        lid = db.execute("SELECT image_id FROM tags WHERE repository='layered' AND tag='1'").fetchone()[0]
        wid = db.execute("SELECT image_id FROM tags WHERE repository='layered' AND tag='wd'").fetchone()[0]
        db.execute("DELETE FROM image_layers WHERE image_id=?", (wid,))
        db.execute("INSERT INTO image_layers SELECT ?, position, chain_id, digest, media_type, size "
                   "FROM image_layers WHERE image_id=?", (wid, lid))
    db.close()
    results = []
    for python in (False, True):
        before = {r[0] for r in rows(istore).values()}
        name = f"l-{int(python)}"
        r = pyrt(istore, "run", "--name", name, "--network", "none", tag, "sh", "-c", "pwd; echo $HOME",
                 python=python)
        istore.ids.update(new_ids(istore, before))
        rec = record(istore, name) if name in rows(istore) else None
        results.append((r.returncode, r.stdout, re.sub(rb"l-[01]", b"NAME", without_import_times(r.stderr)), rec))
    assert results[0] == results[1]


# -- the run: killed, signals, readers, the database -------------------------------------------------

def _popen(store, *argv, **kw):
    return subprocess.Popen([PYRT, "--root", store.root, *argv], env=_env(), cwd="/", **kw)


@pytest.mark.parametrize("python", [False, True], ids=["native", "python"])
def test_killed_cli_under_rm_removes_the_container(istore, python):
    """SIGKILL to `pyrt` while its --rm container runs: its reaper kills the
    container and runs the clean-up, which removes it (row, directory, cgroup)."""
    env = _env(**({"PYRT_CLI_PYTHON": "1"} if python else {}))
    p = subprocess.Popen([PYRT, "--root", istore.root, "run", "--rm", "--network", "none", "base:1",
                          "sh", "-c", "echo up; sleep 60"], env=env, stdout=subprocess.PIPE, cwd="/")
    try:
        assert p.stdout.readline() == b"up\n"
        (cid,) = [r[0] for r in rows(istore).values()]
        istore.ids.add(cid)
        assert cgroup_dirs(cid)
        p.kill()
    finally:
        p.wait()
        p.stdout.close()
    wait_for(lambda: not rows(istore) and not os.path.exists(os.path.join(istore.root, "containers", cid))
             and not cgroup_dirs(cid), what="the container removed by its reaper's clean-up")
    nothing_left(istore, cid)


def test_killed_cli_without_rm_records_the_end(istore):
    p = _popen(istore, "run", "--name", "k", "--network", "none", "base:1", "sh", "-c", "echo up; sleep 60",
               stdout=subprocess.PIPE)
    try:
        assert p.stdout.readline() == b"up\n"
        istore.ids.add(rows(istore)["k"][0])
        p.kill()
    finally:
        p.wait()
        p.stdout.close()
    wait_for(lambda: json.loads(rows(istore)["k"][5])["Status"] == "exited", what="the end recorded")
    assert json.loads(rows(istore)["k"][5])["ExitCode"] == 137
    assert pyrt(istore, "rm", "k", python=True).returncode == 0


@pytest.mark.parametrize("python", [False, True], ids=["native", "python"])
def test_signals_are_forwarded(istore, python):
    p = subprocess.Popen([PYRT, "--root", istore.root, "run", "--rm", "--network", "none", "base:1", "sh", "-c",
                          "trap 'echo got TERM; exit 5' TERM; echo ready; while :; do sleep 0.05; done"],
                         env=_env(**({"PYRT_CLI_PYTHON": "1"} if python else {})), stdout=subprocess.PIPE, cwd="/")
    try:
        assert p.stdout.readline() == b"ready\n"
        istore.ids.update(r[0] for r in rows(istore).values())
        p.send_signal(signal.SIGTERM)
        assert p.stdout.read() == b"got TERM\n"
    finally:
        assert p.wait() == 5
        p.stdout.close()
    assert not rows(istore)


@pytest.mark.parametrize("python", [False, True], ids=["native", "python"])
def test_gone_reader_is_141_and_slow_reader_loses_nothing(istore, python):
    env = {"PYRT_CLI_PYTHON": "1"} if python else {}
    cmd = f"{PYRT} --root {istore.root} run --rm --network none base:1 yes | head -c 6; echo \" $?\""
    r = subprocess.run(["bash", "-c", "set -o pipefail; " + cmd.replace("; echo", "; s=(${PIPESTATUS[@]}); echo")
                        .replace('" $?"', '" ${s[0]}"')], capture_output=True, env=_env(**env), timeout=DEADLINE)
    assert r.stdout == b"y\ny\ny\n 141\n"
    cmd = (f"{PYRT} --root {istore.root} run --rm --network none base:1 sh -c 'head -c 3000000 /dev/zero' "
           "| (sleep 1; wc -c)")
    r = subprocess.run(["sh", "-c", cmd], capture_output=True, env=_env(**env), timeout=DEADLINE)
    assert r.stdout.split() == [b"3000000"]
    assert not rows(istore)


def test_locked_database_is_waited_for(istore):
    """Another process holding the store's write lock: the run waits (busy timeout
    30 s), as Python does, and then goes on."""
    db = sqlite3.connect(os.path.join(istore.root, "pyrt.db"), isolation_level=None)
    db.execute("BEGIN IMMEDIATE")
    p = _popen(istore, "run", "--rm", "--network", "none", "base:1", "echo", "done", stdout=subprocess.PIPE,
               stderr=subprocess.PIPE)
    try:
        time.sleep(0.5)
        assert p.poll() is None  # waiting for the lock
    finally:
        db.execute("ROLLBACK")
        db.close()
        out, err = p.communicate(timeout=DEADLINE)
    assert (p.returncode, out, err) == (0, b"done\n", b"")


@pytest.mark.parametrize("rm", [False, True], ids=["keep", "rm"])
def test_removed_by_another_process_meanwhile(istore, rm):
    """`pyrt rm -f` from another process while the run goes on: the same end, status
    and message as Python's."""
    results = []
    for python in (False, True):
        env = _env(**({"PYRT_CLI_PYTHON": "1"} if python else {}))
        p = subprocess.Popen([PYRT, "--root", istore.root, "run", *(["--rm"] if rm else []), "--name", "gone",
                              "--network", "none", "base:1", "sh", "-c", "echo up; sleep 60"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd="/")
        try:
            assert p.stdout.readline() == b"up\n"
            cid = rows(istore)["gone"][0]
            istore.ids.add(cid)
            r = pyrt(istore, "rm", "-f", "gone", python=True)
            assert r.returncode == 0, r.stderr
        finally:
            out, err = p.communicate(timeout=DEADLINE)
        # (Python names it by its id or its name, as the other process's removal goes)
        results.append((p.returncode, out, err.replace(cid[:12].encode(), b"ID").replace(b": gone\n", b": ID\n")))
        nothing_left(istore, cid)
    assert results[0] == results[1]


@pytest.mark.parametrize("target", ["../../../../../../etc", "/etc", "/proc/self/root/etc", "/nowhere"])
def test_hostile_etc_symlink(istore, rootfs, tmp_shm, target):
    """An image whose /etc is a symlink (out of the layer, to itself, through
    /proc, nowhere): HOME, the init layer and the run as Python gives them."""
    import shutil

    import imagetools
    from helpers import copy_tree
    root = copy_tree(rootfs, os.path.join(tmp_shm, "etc-root"))
    shutil.rmtree(os.path.join(root, "etc"))
    os.symlink(target, os.path.join(root, "etc"))
    tar = imagetools.tar_dir(root, os.path.join(tmp_shm, "etc-root.tar"))
    r = pyrt(istore, "import", tar, "etclink:1", python=True)
    assert r.returncode == 0, r.stderr
    results = []
    for python in (True, False):
        before = {r[0] for r in rows(istore).values()}
        name = f"e-{int(python)}"
        r = pyrt(istore, "run", "--name", name, "--network", "none", "etclink:1", "sh", "-c", "echo $HOME; ls /",
                 python=python)
        istore.ids.update(new_ids(istore, before))
        rec = record(istore, name) if name in rows(istore) else None
        results.append((r.returncode, r.stdout, re.sub(rb"e-[01]", b"NAME", without_import_times(r.stderr)), rec))
    assert results[0] == results[1]
