"""`pyrt image from-host` for Python: the interpreter's standard library and compiled
modules (asked of it), a venv's packages, certificates and time zone data, the same
image id for the same host files, nothing private taken on pyrt's own initiative,
and one-line errors for bad input. Every image is run: python inside a real
container."""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile

import pytest

import imagetools
from clitools import cli, error, ok

CHECK = ("import ssl, sqlite3, json, ctypes, zlib, sys; "
         "print(json.dumps([sys.version_info[0], sqlite3.sqlite_version_info[0], ctypes.sizeof(ctypes.c_int), "
         "len(zlib.compress(b'x')) > 0, ssl.OPENSSL_VERSION.split()[0], "
         "ssl.create_default_context().cert_store_stats()['x509_ca'] > 0]))")


def _interpreters() -> list:
    """The host's Python interpreters worth an image: Debian's /usr/bin/python3 and
    the one running the tests (its base interpreter when it runs in a venv)."""
    out, seen = [], set()
    for p in ("/usr/bin/python3", getattr(sys, "_base_executable", None) or sys.executable):
        if p and os.path.exists(p) and os.path.realpath(p) not in seen:
            seen.add(os.path.realpath(p))
            out.append(p)
    return out


INTERPRETERS = _interpreters()


def _has_certs() -> bool:
    return os.path.exists("/etc/ssl/certs/ca-certificates.crt") or os.path.exists("/etc/pki/tls/cert.pem")


@pytest.fixture
def host_dir():
    """A fresh directory outside /dev (a container's own /dev hides anything below
    it), removed after the test: for venvs and scripts that go into images."""
    path = tempfile.mkdtemp(prefix="pyrt-test-fromhost-", dir="/tmp")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _layer(img) -> str:
    assert len(img.layers) == 1
    return img.layers[0]["path"]


def _run(rt, image, argv) -> str:
    return rt.containers.run(image, argv, remove=True).decode()


@pytest.mark.parametrize("python", INTERPRETERS)
def test_python_image_runs_the_standard_library(rt, python):
    img = rt.images.from_host("py:1", [python])
    assert img.config["config"]["Cmd"] == [python]
    out = json.loads(_run(rt, "py:1", [python, "-c", CHECK]))
    assert out[:4] == [3, 3, 4, True] and out[4] == "OpenSSL"
    assert out[5] == _has_certs()  # the certificates come with a Python by default
    # by name through PATH (the program's dir is on it), and from its own Cmd
    name = os.path.basename(python)
    assert _run(rt, "py:1", [name, "-c", "print('by name')"]) == "by name\n"
    layer = _layer(img)
    # the regression test suite and third-party packages stay out
    info = json.loads(subprocess.run([python, "-I", "-c", "import sysconfig, json; "
                                      "print(json.dumps(sysconfig.get_paths()))"],
                                     capture_output=True, check=True).stdout)
    stdlib = os.path.join(layer, info["stdlib"].lstrip("/"))
    assert os.path.isfile(os.path.join(stdlib, "os.py"))
    assert not os.path.exists(os.path.join(stdlib, "test", "__init__.py"))
    assert not os.path.exists(os.path.join(stdlib, "site-packages", "pyrt"))
    if os.geteuid() == 0:  # ldconfig -r needs root
        assert os.path.isfile(os.path.join(layer, "etc", "ld.so.cache"))


def test_same_files_same_image(rt, rt2, monkeypatch):
    python = INTERPRETERS[0]
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    a = rt.images.from_host("py:1", [python])
    b = rt2.images.from_host("py:1", [python])
    assert a.id == b.id and a.layers[0]["digest"] == b.layers[0]["digest"]
    newest = max(os.lstat(os.path.join(d, f)).st_mtime for d, _, fs in os.walk(_layer(a)) for f in fs)
    from pyrt.oci.image import parse_time
    assert parse_time(a.config["created"]) == int(newest)  # the newest file's time, not now
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    c = rt2.images.from_host("py:2", [python])
    assert c.config["created"].startswith("2023-11-14T22:13:20") and c.id != a.id
    for dirpath, dirnames, filenames in os.walk(_layer(c)):  # clamped
        for n in dirnames + filenames:
            assert os.lstat(os.path.join(dirpath, n)).st_mtime <= 1700000000


def _make_venv(where) -> tuple:
    """A venv of the interpreter running the tests, with a pure package, a compiled
    module (cffi's backend, which needs libffi) and things that must stay out."""
    venv = os.path.join(where, "venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True, capture_output=True)
    purelib = subprocess.run([os.path.join(venv, "bin", "python"), "-I", "-c",
                              "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             capture_output=True, check=True, text=True).stdout.strip()
    pkg = os.path.join(purelib, "demo_pkg")
    os.makedirs(pkg)
    with open(os.path.join(pkg, "__init__.py"), "w") as f:
        f.write("VALUE = 42\n")
    import _cffi_backend
    shutil.copy2(_cffi_backend.__file__, purelib)
    secrets = []
    for rel, mode in ((".env", 0o644), ("notes/todo.txt", 0o644), (os.path.join(pkg, "private.key"), 0o600),
                      (os.path.join(pkg, "mine", "data"), 0o644)):
        p = os.path.join(venv, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write("TOKEN=secret\n")
        os.chmod(p, mode)
        secrets.append(p)
    os.chmod(os.path.join(pkg, "mine"), 0o700)
    # a .pth file runs at every start of the venv's python: never when pyrt asks it
    # where its files are (it may belong to someone else, and pyrt runs as root)
    marker = os.path.join(where, "pth-ran")
    with open(os.path.join(purelib, "zz-marker.pth"), "w") as f:
        f.write(f"import os; open({marker!r}, 'w').close()\n")
    return venv, secrets


def test_venv_packages_run_in_the_image(rt, host_dir):
    venv, secrets = _make_venv(host_dir)
    img = rt.images.from_host("app:1", [], venv=venv)
    assert not os.path.exists(os.path.join(host_dir, "pth-ran"))
    cfg = img.config["config"]
    assert cfg["Cmd"] == [os.path.join(venv, "bin", "python3")]
    assert f"VIRTUAL_ENV={venv}" in cfg["Env"]
    assert any(e.startswith(f"PATH={venv}/bin:") for e in cfg["Env"])
    code = "import demo_pkg, _cffi_backend, sys, ssl; print(demo_pkg.VALUE, sys.prefix, _cffi_backend.__version__ != '')"
    assert _run(rt, "app:1", ["python", "-c", code]) == f"42 {venv} True\n"
    assert not os.path.exists(os.path.join(host_dir, "pth-ran"))  # it ran in the container's own /tmp
    layer = _layer(img)
    for p in secrets:  # only the venv's own parts, only what every host user may read
        assert not os.path.lexists(os.path.join(layer, p.lstrip("/"))), p
    assert sorted(os.listdir(os.path.join(layer, venv.lstrip("/")))) == sorted(
        n for n in ("bin", "lib", "lib64", "pyvenv.cfg") if os.path.lexists(os.path.join(venv, n)))
    # another program as the command: the venv still brings its python and its scripts
    script = os.path.join(venv, "bin", "demo")
    with open(script, "w") as f:
        f.write(f"#!{venv}/bin/python\nimport demo_pkg\nprint('demo', demo_pkg.VALUE)\n")
    os.chmod(script, 0o755)
    img = rt.images.from_host("app:2", ["/bin/sh"], venv=venv, certs=False)
    assert img.config["config"]["Cmd"] == ["/bin/sh"]
    assert _run(rt, "app:2", ["sh", "-c", "demo"]) == "demo 42\n"  # the venv's bin is on PATH


def test_no_host_secrets_in_a_python_image(rt):
    python = INTERPRETERS[-1]  # the tests' own: under /root when it is not the system's
    img = rt.images.from_host("py:1", [python], certs=True, tzdata=True)
    layer = _layer(img)
    for p in ("etc/shadow", "etc/gshadow", "etc/ssl/private", "usr/lib/ssl/private", "etc/ssh", "home",
              "etc/sudoers", "etc/machine-id", "etc/hostname", "etc/resolv.conf", "var/lib"):
        assert not os.path.exists(os.path.join(layer, p)), p
    with open(os.path.join(layer, "etc", "passwd")) as f:
        assert f.read().splitlines() == ["root:x:0:0:root:/root:/bin/sh",
                                         "nobody:x:65534:65534:nobody:/nonexistent:/bin/false"]
    # what pyrt adds by itself is readable by every host user: nothing private was named
    private = []
    for dirpath, dirnames, filenames in os.walk(layer):
        for n in filenames:
            st = os.lstat(os.path.join(dirpath, n))
            if stat.S_ISREG(st.st_mode) and not st.st_mode & stat.S_IROTH:
                private.append(os.path.relpath(os.path.join(dirpath, n), layer))
    assert private == []


def test_certs_and_tzdata_flags(rt):
    python = INTERPRETERS[0]
    zone = "import zoneinfo; print(zoneinfo.ZoneInfo('Europe/Paris'))"
    rt.images.from_host("py:tz", [python], certs=False, tzdata=True)
    code = "import ssl; print(ssl.create_default_context().cert_store_stats()['x509_ca'])"
    assert _run(rt, "py:tz", [python, "-c", code]) == "0\n"
    assert _run(rt, "py:tz", [python, "-c", zone]) == "Europe/Paris\n"
    img = rt.images.from_host("py:plain", [python])
    assert not os.path.exists(os.path.join(_layer(img), "usr/share/zoneinfo"))
    missing = ("import zoneinfo\ntry:\n zoneinfo.ZoneInfo('Europe/Paris')\n"
               "except zoneinfo.ZoneInfoNotFoundError:\n print('no tzdata')")
    assert _run(rt, "py:plain", [python, "-c", missing]) == "no tzdata\n"
    if _has_certs():  # with a program that is not Python, only when asked
        ls = shutil.which("ls")
        img = rt.images.from_host("ls:certs", [ls], certs=True)
        certs = os.path.join(_layer(img), "etc/ssl/certs/ca-certificates.crt")
        assert os.path.isfile(certs) or os.path.isfile(os.path.join(_layer(img), "etc/pki/tls/cert.pem"))
        img = rt.images.from_host("ls:plain", [ls])
        assert not os.path.exists(os.path.join(_layer(img), "etc/ssl"))


def test_script_brings_its_interpreter(rt, host_dir):
    if not shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin"):
        pytest.skip("no python3 on the default PATH")
    script = os.path.join(host_dir, "hello")
    with open(script, "w") as f:
        f.write("#!/usr/bin/env python3\nimport json\nprint(json.dumps({'hello': 'world'}))\n")
    os.chmod(script, 0o755)
    img = rt.images.from_host("hello:1", [script])
    assert img.config["config"]["Cmd"] == [script]
    assert _run(rt, "hello:1", []) == '{"hello": "world"}\n'


def test_cli_python_image(rt):
    python = INTERPRETERS[0]
    image_id = ok(cli(rt.root, "image", "from-host", "--with-tzdata", "py:cli", python)).strip()
    assert rt.images.get("py:cli").id == image_id
    out = ok(cli(rt.root, "run", "--rm", "py:cli", os.path.basename(python), "-c",
                 "import zoneinfo, sqlite3; print(zoneinfo.ZoneInfo('UTC'), sqlite3.connect(':memory:')"
                 ".execute('select 6*7').fetchone()[0])"))
    assert out == "UTC 42\n"


def test_bad_input_is_one_line_and_changes_nothing(rt, host_dir):
    rt.images.from_host("keep:1", [INTERPRETERS[0]])
    before = imagetools.store_state(rt)
    not_venv = os.path.join(host_dir, "plain")
    os.mkdir(not_venv)
    data = os.path.join(host_dir, "data.txt")
    with open(data, "w") as f:
        f.write("not a program\n")
    shm_venv = tempfile.mkdtemp(prefix="pyrt-test-venv-", dir="/dev/shm")
    try:
        with open(os.path.join(shm_venv, "pyvenv.cfg"), "w") as f:
            f.write("home = /usr/bin\n")
        for argv, match in (
                (["x:1", "/nonexistent/python3"], r"/nonexistent/python3: no such file or directory on this host"),
                (["x:1", "nosuch-program-pyrt"], r"nosuch-program-pyrt: no such program on this host"),
                (["x:1", "/usr/lib"], r"/usr/lib: a directory, not a program"),
                (["x:1", data], r"data.txt: not a program"),
                (["x:1", "--venv", not_venv], r"not a virtual environment"),
                (["x:1", "--venv", os.path.join(host_dir, "nosuch")], r"no such directory"),
                (["x:1", "--venv", shm_venv], r"under /dev"),
                (["x:1"], r"needs a program"),
                (["x:1", "--with-certs", "--no-certs", INTERPRETERS[0]], None)):
            r = cli(rt.root, "image", "from-host", *argv)
            if match is None:  # argparse: usage error
                assert r.returncode == 2 and b"not allowed with" in r.stderr
                continue
            error(r, match=match)
    finally:
        shutil.rmtree(shm_venv, ignore_errors=True)
    assert imagetools.store_state(rt) == before
