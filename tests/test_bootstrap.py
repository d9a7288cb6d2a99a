"""`pyrt image bootstrap`: a Debian base image made by mmdebstrap from the mirror the
host's apt uses. One small image (variant minbase plus python3-minimal) is
bootstrapped once for the module and run; a second one checks that the same
mirror state gives the same image id. Each costs 20 to 25 s on a 2-core machine
(apt-get update, about 40 MB of packages, dpkg, then gzip), and needs the
mirror: without it (or without mmdebstrap) those tests are skipped, the bad-input
ones still run."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import pytest

import imagetools
from clitools import PYRT, cli, error

from pyrt.errors import PyrtError
from pyrt.images import bootstrap as bs

INCLUDE = "python3-minimal"


def _mirror_or_skip():
    if shutil.which("mmdebstrap") is None:
        pytest.skip("mmdebstrap is not installed (tests/install-deps.sh installs it)")
    suite = bs.host_codename()
    if suite is None:
        pytest.skip("this host names no Debian release")
    try:
        uri = bs.host_mirror(suite)
        bs.release_date(uri, suite, os.environ.get("http_proxy") or bs.apt_proxy())
    except PyrtError as e:
        pytest.skip(f"no package mirror to bootstrap from: {e}")
    return suite, uri


@pytest.fixture(scope="module")
def debian(shm_base):
    """(Runtime, suite, mirror) with deb:test bootstrapped in it, once a module."""
    suite, uri = _mirror_or_skip()
    from pyrt.runtime import Runtime
    root = tempfile.mkdtemp(prefix="bootstrap-", dir=shm_base)
    rt = Runtime(os.path.join(root, "store"))
    try:
        rt.images.bootstrap("deb:test", include=[INCLUDE])
        yield rt, suite, uri
    finally:
        for c in rt.containers.list(all=True):
            c.remove(force=True)
        rt.close()
        shutil.rmtree(root, ignore_errors=True)


def test_bootstrapped_image_runs_apt_and_python(debian):
    rt, suite, uri = debian
    img = rt.images.get("deb:test")
    cfg = img.config["config"]
    assert cfg["Cmd"] == ["/bin/bash"]
    assert cfg["Env"] == ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    assert len(img.layers) == 1 and img.layers[0]["media_type"].endswith("tar+gzip")
    created_by = img.config["history"][-1]["created_by"]
    assert created_by.startswith(f"pyrt image bootstrap --suite {suite} --variant minbase --include {INCLUDE}")
    out = rt.containers.run("deb:test", ["apt-cache", "policy"], remove=True).decode()
    assert "/var/lib/dpkg/status" in out
    out = rt.containers.run("deb:test", ["sh", "-c", "cat /etc/apt/sources.list; . /etc/os-release; "
                                         "echo $VERSION_CODENAME; dpkg-query -W -f '${Status}\\n' " + INCLUDE
                                         + "; python3 -c 'import sys; print(sys.version_info[0])'"],
                            remove=True).decode().splitlines()
    assert out == [f"deb {uri} {suite} main", suite, "install ok installed", "3"]
    layer = img.layers[0]["path"]
    for host_file in ("etc/resolv.conf", "etc/hostname"):  # containers get their own
        assert not os.path.lexists(os.path.join(layer, host_file)), host_file
    dev = os.path.join(layer, "dev")
    assert not os.path.exists(dev) or os.listdir(dev) == []  # no device nodes: containers get docker's
    assert os.path.islink(os.path.join(layer, "bin"))  # merged /usr


def test_same_mirror_state_same_image(debian, tmp_shm):
    rt, suite, uri = debian
    from pyrt.runtime import Runtime
    other = Runtime(os.path.join(tmp_shm, "store"))
    try:
        img = other.images.bootstrap("deb:again", suite=suite, include=[INCLUDE])
        assert img.id == rt.images.get("deb:test").id
        imagetools.check_consistent(other)
    finally:
        other.close()


def test_build_from_a_bootstrapped_image(debian, tmp_shm):
    rt, suite, uri = debian
    ctx = os.path.join(tmp_shm, "ctx")
    os.mkdir(ctx)
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write("FROM deb:test\n"
                "RUN python3 -c \"open('/built', 'w').write('built on ' + open('/etc/debian_version').read())\"\n"
                "RUN dpkg-query -W -f '${Package}\\n' python3-minimal >> /built\n"
                "CMD [\"cat\", \"/built\"]\n")
    img, _ = rt.images.build(path=ctx, tag="app:1")
    assert img.parent is not None
    out = rt.containers.run("app:1", remove=True).decode().splitlines()
    with open(os.path.join(rt.images.get("deb:test").layers[0]["path"], "etc", "debian_version")) as f:
        assert out == ["built on " + f.read().strip(), "python3-minimal"]


def test_bad_input(rt, tmp_shm):
    before = imagetools.store_state(rt)
    empty = os.path.join(tmp_shm, "empty-path")
    os.mkdir(empty)
    r = subprocess.run([PYRT, "--root", rt.root, "image", "bootstrap", "x:1", "--suite", "bookworm"],
                       capture_output=True, env={"PATH": empty, "PYRT_ROOT": "/nonexistent-on-purpose"})
    error(r, match="mmdebstrap is not installed")
    if shutil.which("mmdebstrap"):
        for argv, match in ((["--include", "bad;name"], "invalid package name"),
                            (["--variant", "tiny"], "unknown variant 'tiny'"),
                            (["--suite", "../x"], "invalid suite"),
                            (["--mirror", "not a uri"], "invalid mirror"),
                            (["--suite", "bookworm", "--mirror", "deb http://x.example/debian trixie main"],
                             "--suite bookworm and the mirror line's suite trixie differ")):
            error(cli(rt.root, "image", "bootstrap", "x:1", *argv), match=match)
        suite, uri = _mirror_or_skip()
        error(cli(rt.root, "image", "bootstrap", "x:1", "--suite", "nosuch-suite-pyrt"),
              match=f"suite 'nosuch-suite-pyrt': not on the mirror {uri}")
    assert imagetools.store_state(rt) == before


def test_apt_sources_of_the_host(tmp_shm):
    etc = os.path.join(tmp_shm, "apt")
    os.makedirs(os.path.join(etc, "sources.list.d"))
    with open(os.path.join(etc, "sources.list"), "w") as f:
        f.write("# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://one.example/debian trixie main contrib\n"
                "deb-src http://src.example/debian trixie main\n")
    with open(os.path.join(etc, "sources.list.d", "debian.sources"), "w") as f:
        f.write("Types: deb\nURIs: http://two.example/debian\nSuites: bookworm bookworm-updates\n"
                "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
                "Types: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\n"
                "Components: main\n\nTypes: deb\nEnabled: no\nURIs: http://off.example/\nSuites: sid\n")
    assert bs.apt_sources(etc) == [
        {"uri": "http://one.example/debian", "suites": ["trixie"], "components": ["main", "contrib"]},
        {"uri": "http://two.example/debian", "suites": ["bookworm", "bookworm-updates"], "components": ["main"]},
        {"uri": "http://security.example/debian-security", "suites": ["bookworm-security"],
         "components": ["main"]}]
