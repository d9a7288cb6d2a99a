"""pyrt.registry: pull, push, login and logout against Debian's docker-registry (plain
and behind htpasswd) and a scriptable fake registry (tests/registry_server.py), through
the installed `pyrt` (as tests/test_cli.py runs it) and the Python API; skopeo reads
what pyrt pushes and pyrt pulls what skopeo pushes.

Every failure must be one line on stderr, exit status 1, and leave the store as it
was (but for the resumable partial downloads)."""
from __future__ import annotations

import base64
import json
import os
import pty
import random
import shutil
import signal
import subprocess
import time

import httpx
import pytest

import helpers
from registry_server import OCI_INDEX, FakeRegistry, docker_registry, sha

import pyrt
from pyrt.errors import RegistryError
from clitools import PYRT, cli, error, ok_quiet
from imagetools import OCIBuilder, check_consistent, compress, make_tar, store_state

pytestmark = pytest.mark.skipif(not os.path.exists("/usr/bin/docker-registry"),
                                reason="docker-registry is not installed (apt-get install docker-registry)")

USER, PASSWORD = "alice", "s3cret"


# -- fixtures and helpers ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def registry(shm_base):
    with docker_registry(os.path.join(shm_base, "registry-plain")) as r:
        yield r


@pytest.fixture(scope="module")
def auth_registry(shm_base):
    with docker_registry(os.path.join(shm_base, "registry-auth"), htpasswd=(USER, PASSWORD)) as r:
        yield r


@pytest.fixture
def fake():
    with FakeRegistry() as f:
        yield f


@pytest.fixture(autouse=True)
def private_config(tmp_shm, monkeypatch):
    """Credential files and the registries setting of this test only (the `pyrt`
    processes inherit the environment)."""
    monkeypatch.setenv("REGISTRY_AUTH_FILE", os.path.join(tmp_shm, "auth.json"))
    monkeypatch.setenv("HOME", tmp_shm)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setenv("PYRT_REGISTRIES_CONF", os.path.join(tmp_shm, "registries.json"))


def layer_tar(seed: int, size: int = 150_000) -> bytes:
    """An uncompressed layer tar with `size` random (incompressible) bytes."""
    data = random.Random(seed).randbytes(size)
    return make_tar([("dir", f"d{seed}"), ("file", f"d{seed}/data", data),
                     ("file", f"d{seed}/name", f"layer {seed}\n")])


def gz_layer(seed: int, size: int = 150_000):
    """(gzip blob, diff_id) of layer_tar(seed)."""
    tar = layer_tar(seed, size)
    return compress(tar, "gzip"), sha(tar)


def load_image(root, tmp_shm, name, seeds, config=None) -> dict:
    """An image of layers `seeds` named `name`, loaded into the store at `root`."""
    b = OCIBuilder(os.path.join(tmp_shm, f"layout-{sha(name.encode())[7:19]}"))
    info = b.image([layer_tar(s) for s in seeds], ref=name, config=config)
    b.write()
    with pyrt.Runtime(root) as rt:
        rt.images.load(b.path)
    return {**info, "layout": b.path}


def image(root, ref):
    with pyrt.Runtime(root) as rt:
        img = rt.images.get(ref)
        check_consistent(rt)
        return img.id, [lyr.digest for lyr in img.layers], img.manifest_digest, img.layer_paths


def state(root):
    """The store's files and rows, but for the partial downloads."""
    with pyrt.Runtime(root) as rt:
        files, rows = store_state(rt)
    return [f for f in files if not f[0].startswith("downloads")], rows


def partials(root) -> list:
    d = os.path.join(root, "downloads")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


# -- names and settings -----------------------------------------------------------------------------

def test_references_and_loopback_hosts():
    from pyrt.registry import remote_reference
    from pyrt.registry.client import is_loopback
    r = remote_reference("busybox")
    assert (r.host, r.api_host, r.path, r.tag, r.repository) == \
        ("docker.io", "registry-1.docker.io", "library/busybox", "latest", "busybox")
    assert remote_reference("ns/name:2").path == "ns/name"
    r = remote_reference("localhost:5000/ns/name:tag")
    assert (r.host, r.path, r.tag, str(r)) == ("localhost:5000", "ns/name", "tag", "localhost:5000/ns/name:tag")
    d = "sha256:" + "a" * 64
    r = remote_reference(f"quay.io/x/y@{d}")
    assert (r.host, r.path, r.reference) == ("quay.io", "x/y", d)
    with pytest.raises(pyrt.errors.InvalidArgument, match="names no registry"):
        remote_reference("ns/name:1", require_host=True)
    assert all(map(is_loopback, ["localhost", "localhost:5000", "127.0.0.1:5000", "127.1.2.3", "[::1]:5000", "::1"]))
    assert not any(map(is_loopback, ["192.0.2.2:5000", "example.com", "localhost.example.com:80"]))


def test_credentials_from_pyrt_podman_and_docker_files(tmp_shm, monkeypatch):
    from pyrt.registry import auth
    xdg = os.path.join(tmp_shm, "run")
    os.makedirs(os.path.join(xdg, "containers"))
    os.makedirs(os.path.join(tmp_shm, ".docker"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", xdg)

    def entry(user, pw):
        return {"auth": base64.b64encode(f"{user}:{pw}".encode()).decode()}
    with open(os.path.join(xdg, "containers", "auth.json"), "w") as f:
        json.dump({"auths": {"podman.example:5000": entry("p", "pw1"), "both.example": entry("p", "pw2")}}, f)
    with open(os.path.join(tmp_shm, ".docker", "config.json"), "w") as f:
        json.dump({"auths": {"https://index.docker.io/v1/": entry("d", "pw3"), "both.example": entry("d", "x")}}, f)
    assert auth.lookup("podman.example:5000") == ("p", "pw1")
    assert auth.lookup("both.example") == ("p", "pw2")          # podman's file before docker's
    assert auth.lookup("docker.io") == ("d", "pw3")
    assert auth.lookup("nowhere.example") is None
    assert auth.lookup("both.example", {"both.example": ("mem", "m")}) == ("mem", "m")
    path = auth.save("both.example", "mine", "pw:with:colons")
    assert path == os.environ["REGISTRY_AUTH_FILE"] and os.stat(path).st_mode & 0o777 == 0o600
    assert auth.lookup("both.example") == ("mine", "pw:with:colons")  # pyrt's own file first
    assert auth.remove("both.example") and not auth.remove("both.example")
    assert auth.lookup("both.example") == ("p", "pw2")


# -- against docker-registry ----------------------------------------------------------------------

def test_push_pull_round_trip_with_chunked_upload(registry, tmp_shm, monkeypatch):
    a, b = os.path.join(tmp_shm, "a"), os.path.join(tmp_shm, "b")
    name = f"{registry.host}/rt/img:1"
    info = load_image(a, tmp_shm, name, [1, 2, 3])
    monkeypatch.setenv("PYRT_PUSH_CHUNK_SIZE", "64000")
    out = ok_quiet(cli(a, "push", name))
    assert f"The push refers to repository [{registry.host}/rt/img]" in out
    assert out.count(": Pushed\n") == 4 and "Writing manifest" in out
    size = os.path.getsize(os.path.join(info["layout"], "blobs", "sha256", info["manifest"][7:]))
    assert out.endswith(f"1: digest: {info['manifest']} size: {size}\n")
    patches = [line for line in registry.log() if line.startswith("PATCH /v2/rt/img/blobs/uploads/")]
    assert len(patches) >= 3 * 2 and all(line.endswith(" 202") for line in patches)  # every layer chunked
    assert ok_quiet(cli(a, "push", name)).count("Layer already exists") == 4  # pushed again: nothing uploaded

    out = ok_quiet(cli(b, "pull", name))
    lines = out.splitlines()
    assert lines[0] == f"Trying to pull {registry.host}/rt/img:1..."
    assert f"Digest: {info['manifest']}" in lines and f"Status: Downloaded newer image for {name}" in lines
    assert lines[-1] == info["id"]
    image_id, layers, manifest, paths = image(b, name)
    assert (image_id, layers, manifest) == (info["id"], info["layers"], info["manifest"])
    assert image(a, name)[:3] == (image_id, layers, manifest)
    assert [open(os.path.join(p, f"d{i}", "name")).read() for i, p in zip((1, 2, 3), paths)] == \
        ["layer 1\n", "layer 2\n", "layer 3\n"]
    assert partials(b) == []
    assert "Image is up to date" in ok_quiet(cli(b, "pull", name))


def test_skopeo_reads_what_pyrt_pushes_and_pyrt_pulls_what_skopeo_pushes(registry, tmp_shm):
    if not shutil.which("skopeo"):
        pytest.skip("skopeo is not installed")
    a = os.path.join(tmp_shm, "a")
    name = f"{registry.host}/sk/pushed:1"
    info = load_image(a, tmp_shm, name, [4, 5])
    with pyrt.Runtime(a) as rt:
        assert rt.images.push(name) == info["manifest"]
    r = subprocess.run(["skopeo", "inspect", "--tls-verify=false", f"docker://{name}"],
                       capture_output=True, text=True, check=True)
    seen = json.loads(r.stdout)
    assert seen["Digest"] == info["manifest"] and seen["Layers"] == info["layers"]
    out = os.path.join(tmp_shm, "copied")
    subprocess.run(["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{name}", f"oci:{out}:v1"],
                   check=True, capture_output=True)
    with open(os.path.join(out, "index.json")) as f:
        assert json.load(f)["manifests"][0]["digest"] == info["manifest"]

    b = OCIBuilder(os.path.join(tmp_shm, "skopeo-src"))
    other = b.image([layer_tar(6), layer_tar(7)], ref="v2")
    b.write()
    dest = f"{registry.host}/sk/by-skopeo:2"
    subprocess.run(["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{b.path}:v2", f"docker://{dest}"],
                   check=True, capture_output=True)
    assert ok_quiet(cli(os.path.join(tmp_shm, "b"), "pull", dest)).splitlines()[-1] == other["id"]
    assert image(os.path.join(tmp_shm, "b"), dest)[:2] == (other["id"], other["layers"])


def test_index_resolved_for_the_platform_and_pull_by_digest(registry, tmp_shm):
    a = os.path.join(tmp_shm, "a")
    repo = f"{registry.host}/ma/img"
    amd = load_image(a, tmp_shm, f"{repo}:amd64", [8])
    arm = load_image(a, tmp_shm, f"{repo}:arm64", [9], config={"architecture": "arm64", "variant": "v8"})
    entries = []
    with pyrt.Runtime(a) as rt:
        for info, arch in ((amd, "amd64"), (arm, "arm64")):
            digest = rt.images.push(f"{repo}:{arch}")
            size = len(rt.store.blobs.read(digest))
            entries.append({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest,
                            "size": size, "platform": {"os": "linux", "architecture": arch}})
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries[::-1]}).encode()
    r = httpx.put(f"{registry.url}/v2/ma/img/manifests/multi", content=index, headers={"Content-Type": OCI_INDEX})
    assert r.status_code == 201, r.text

    out = ok_quiet(cli(os.path.join(tmp_shm, "b"), "pull", f"{repo}:multi"))
    assert out.splitlines()[-1] == amd["id"] and f"Digest: {sha(index)}" in out
    out = ok_quiet(cli(os.path.join(tmp_shm, "c"), "pull", "--platform", "linux/arm64", f"{repo}:multi"))
    assert out.splitlines()[-1] == arm["id"]
    error(cli(os.path.join(tmp_shm, "c"), "pull", "--platform", "linux/s390x", f"{repo}:multi"),
          match=rf"pyrt: pull {repo}:multi: no image for linux/s390x in the index {sha(index)} "
                r"\(it has: linux/arm64, linux/amd64\)")
    error(cli(os.path.join(tmp_shm, "c"), "pull", "--platform", "linux", f"{repo}:multi"), match="invalid platform")

    d = os.path.join(tmp_shm, "d")  # by digest: the index's, then a manifest's
    assert ok_quiet(cli(d, "pull", f"{repo}@{sha(index)}")).splitlines()[-1] == amd["id"]
    out = ok_quiet(cli(d, "pull", "-q", f"{repo}@{arm['manifest']}"))
    assert out == arm["id"] + "\n"
    with pyrt.Runtime(d) as rt:
        assert rt.images.get(f"{repo}@{arm['manifest']}").id == arm["id"]
        assert all(not img.tags for img in rt.images.list())  # pulled by digest: untagged


def test_push_mounts_blobs_from_another_repository(registry, tmp_shm):
    a, b = os.path.join(tmp_shm, "a"), os.path.join(tmp_shm, "b")
    one, two, three = (f"{registry.host}/mnt/{n}:1" for n in ("one", "two", "three"))
    info = load_image(a, tmp_shm, one, [10, 11])
    ok_quiet(cli(a, "push", one))
    ok_quiet(cli(a, "tag", one, two))
    out = ok_quiet(cli(a, "push", two))
    assert out.count("Mounted from mnt/one") == 3 and "Pushed" not in out
    mounts = [line for line in registry.log() if line.startswith("POST /v2/mnt/two/blobs/uploads/?")]
    assert len(mounts) == 3 and all("mount=sha256" in m and "from=mnt%2Fone" in m and m.endswith(" 201")
                                    for m in mounts)
    # pulled blobs are known to come from their repository too
    ok_quiet(cli(b, "pull", two))
    ok_quiet(cli(b, "tag", two, three))
    assert ok_quiet(cli(b, "push", three)).count("Mounted from mnt/two") == 3
    assert image(b, three)[2] == info["manifest"]

    # a repository the registry does not have the blob in: it answers 202, pyrt uploads
    c = os.path.join(tmp_shm, "c")
    four = f"{registry.host}/mnt/four:1"
    load_image(c, tmp_shm, four, [12])
    with pyrt.Runtime(c) as rt, rt.store.transaction() as tx:
        from pyrt.registry import record_sources
        record_sources(tx, [rt.images.get(four).layers[0].digest], registry.host, "mnt/ghost")
    out = ok_quiet(cli(c, "push", four))
    assert "Mounted" not in out and out.count("Pushed") == 2
    assert any(line.startswith("POST /v2/mnt/four/blobs/uploads/?mount=") and line.endswith(" 202")
               for line in registry.log())
    assert image(c, four)[0] == ok_quiet(cli(os.path.join(tmp_shm, "d"), "pull", four)).splitlines()[-1]


def test_login_push_pull_logout_with_htpasswd(auth_registry, tmp_shm):
    host = auth_registry.host
    a = os.path.join(tmp_shm, "a")
    name = f"{host}/sec/img:1"
    info = load_image(a, tmp_shm, name, [13])
    auth_file = os.environ["REGISTRY_AUTH_FILE"]
    error(cli(a, "push", name), match=rf"^pyrt: push {name}: unauthorized: authentication required \(HTTP 401\)$")
    error(cli(a, "pull", name), match=r"unauthorized: authentication required \(HTTP 401\)")
    error(cli(a, "login", "-u", USER, "-p", "wrong", host),
          match=rf"^pyrt: login {host}: unauthorized: authentication required \(HTTP 401\)$")
    assert not os.path.exists(auth_file)

    r = subprocess.run([PYRT, "--root", a, "login", "-u", USER, "--password-stdin", host], input=PASSWORD + "\n",
                       capture_output=True, text=True)
    assert (r.returncode, r.stdout, r.stderr) == (0, "Login Succeeded!\n", "")
    assert os.stat(auth_file).st_mode & 0o777 == 0o600
    with open(auth_file) as f:
        assert json.load(f) == {"auths": {host: {"auth": base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}}}
    ok_quiet(cli(a, "push", name))
    assert ok_quiet(cli(os.path.join(tmp_shm, "b"), "pull", name)).splitlines()[-1] == info["id"]

    assert ok_quiet(cli(a, "logout", host)) == f"Removing login credentials for {host}\n"
    with open(auth_file) as f:
        assert json.load(f) == {"auths": {}}
    assert ok_quiet(cli(a, "logout", host)) == f"Not logged in to {host}\n"
    error(cli(os.path.join(tmp_shm, "c"), "pull", name), match=r"\(HTTP 401\)")
    # docker's own file is read too
    os.makedirs(os.path.join(tmp_shm, ".docker"))
    with open(os.path.join(tmp_shm, ".docker", "config.json"), "w") as f:
        json.dump({"auths": {host: {"auth": base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}}}, f)
    assert ok_quiet(cli(os.path.join(tmp_shm, "c"), "pull", name)).splitlines()[-1] == info["id"]


def test_python_api(auth_registry, tmp_shm):
    host = auth_registry.host
    with pyrt.Runtime(os.path.join(tmp_shm, "a")) as rt:
        info = load_image(rt.root, tmp_shm, f"{host}/api/img:1", [14])
        with pytest.raises(RegistryError, match=r"HTTP 401") as e:
            rt.images.push(f"{host}/api/img", tag="1")
        assert e.value.status == 401
        with pytest.raises(RegistryError, match=rf"^login {host}: unauthorized"):
            rt.login(USER, "bad", registry=host)
        assert rt.login(USER, PASSWORD, registry=host) == {"Status": "Login Succeeded"}
        assert rt.images.push(f"{host}/api/img", tag="1", destination=f"{host}/api/copy:2") == info["manifest"]
    assert not os.path.exists(os.environ["REGISTRY_AUTH_FILE"])  # the API keeps logins in memory
    with pyrt.Runtime(os.path.join(tmp_shm, "b")) as rt:
        img = rt.images.pull(f"{host}/api/copy", tag="2", auth_config={"username": USER, "password": PASSWORD})
        assert (img.id, img.tags, img.manifest_digest) == (info["id"], [f"{host}/api/copy:2"], info["manifest"])
        with pytest.raises(pyrt.errors.ImageNotFound):
            rt.images.push("nosuch:1", destination=f"{host}/api/x:1")


# -- against the fake registry --------------------------------------------------------------------

def test_present_layers_and_images_are_not_fetched_again(fake, tmp_shm):
    root = os.path.join(tmp_shm, "s")
    l1, l2, l3 = gz_layer(21), gz_layer(22), gz_layer(23)
    base = fake.add_image("p/base", "1", [l1, l2])
    child = fake.add_image("p/child", "1", [l1, l2, l3])

    def blobs_fetched():
        got = sorted(p.rsplit("/", 1)[1] for m, p, _ in fake.blob_requests() if m == "GET")
        fake.requests.clear()
        return got
    ok_quiet(cli(root, "pull", f"{fake.host}/p/base:1"))
    assert blobs_fetched() == sorted([base["id"], *base["layers"]])
    out = ok_quiet(cli(root, "pull", f"{fake.host}/p/child:1"))
    assert blobs_fetched() == sorted([child["id"], sha(l3[0])])  # the config and the new layer only
    assert out.count("Already exists") == 2
    out = ok_quiet(cli(root, "pull", f"{fake.host}/p/child:1"))
    assert blobs_fetched() == [child["id"]] and f"Status: Image is up to date for {fake.host}/p/child:1" in out
    fake.manifests[("p/child", "2")] = fake.manifests[("p/child", "1")]
    ok_quiet(cli(root, "pull", f"{fake.host}/p/child:2"))
    assert image(root, f"{fake.host}/p/child:2")[0] == child["id"]
    with pyrt.Runtime(root) as rt:
        assert len(rt.store.snapshots.names()) == 3


def test_broken_connection_is_resumed_with_range(fake, tmp_shm):
    root = os.path.join(tmp_shm, "s")
    big = gz_layer(31, 400_000)
    info = fake.add_image("r/img", "1", [gz_layer(30), big])
    digest = sha(big[0])
    fake.cut[digest] = 2  # two answers cut half-way: the pull retries with Range
    assert ok_quiet(cli(root, "pull", f"{fake.host}/r/img:1")).splitlines()[-1] == info["id"]
    ranges = [h.get("Range") for m, p, h in fake.blob_requests(digest)]
    half = len(big[0]) // 2
    assert ranges == [None, f"bytes={half}-", f"bytes={half + (len(big[0]) - half) // 2}-"]
    assert image(root, f"{fake.host}/r/img:1")[0] == info["id"] and partials(root) == []

    # a registry that ignores Range: the whole blob again, still right
    root2 = os.path.join(tmp_shm, "s2")
    fake.cut[digest], fake.ignore_range = 1, True
    with pyrt.Runtime(root2) as rt:
        assert rt.images.pull(f"{fake.host}/r/img:1").id == info["id"]
        check_consistent(rt)


def test_interrupted_pull_resumes_in_the_next_one(fake, tmp_shm):
    from pyrt.registry.pull import RETRIES
    root = os.path.join(tmp_shm, "s")
    big = gz_layer(41, 400_000)
    info = fake.add_image("r/img", "1", [gz_layer(40), big])
    digest = sha(big[0])
    load_image(root, tmp_shm, "other:1", [42])
    before = state(root)
    fake.cut[digest] = RETRIES + 1
    error(cli(root, "pull", f"{fake.host}/r/img:1"),
          match=rf"^pyrt: pull {fake.host}/r/img:1: blob {digest}: connection broken {RETRIES + 1} times, last: ")
    assert state(root) == before
    assert partials(root) == [digest[7:] + ".partial"]
    have = os.path.getsize(os.path.join(root, "downloads", digest[7:] + ".partial"))
    assert 0 < have < len(big[0])
    fake.requests.clear()
    assert ok_quiet(cli(root, "pull", f"{fake.host}/r/img:1")).splitlines()[-1] == info["id"]
    assert [h.get("Range") for m, p, h in fake.blob_requests(digest)] == [f"bytes={have}-"]
    assert partials(root) == [] and image(root, f"{fake.host}/r/img:1")[0] == info["id"]


def test_a_partial_download_with_wrong_bytes_is_fetched_again(fake, tmp_shm):
    root = os.path.join(tmp_shm, "s")
    blob = gz_layer(45)
    info = fake.add_image("r/img", "1", [blob])
    os.makedirs(os.path.join(root, "downloads"))
    with open(os.path.join(root, "downloads", sha(blob[0])[7:] + ".partial"), "wb") as f:
        f.write(b"x" * 1000)  # e.g. left by a registry that served something else
    with pyrt.Runtime(root) as rt:
        assert rt.images.pull(f"{fake.host}/r/img:1").id == info["id"]
        check_consistent(rt)
    assert [h.get("Range") for m, p, h in fake.blob_requests(sha(blob[0]))] == ["bytes=1000-", None]
    assert partials(root) == []


def test_bearer_token_auth(fake, tmp_shm):
    root = os.path.join(tmp_shm, "s")
    fake.bearer = ("bob", "pw")
    info = fake.add_image("b/img", "1", [gz_layer(50), gz_layer(51)])
    before = state(root)
    error(cli(root, "pull", f"{fake.host}/b/img:1"),
          match=rf"^pyrt: pull {fake.host}/b/img:1: unauthorized: invalid credentials \(HTTP 401\)$")
    assert state(root) == before
    with open(os.environ["REGISTRY_AUTH_FILE"], "w") as f:
        json.dump({"auths": {fake.host: {"auth": base64.b64encode(b"bob:pw").decode()}}}, f)
    fake.requests.clear()
    assert ok_quiet(cli(root, "pull", f"{fake.host}/b/img:1")).splitlines()[-1] == info["id"]
    tokens = [(p, h) for m, p, h in fake.requests if p.startswith("/token")]
    assert len(tokens) == 1 and "scope=repository%3Ab%2Fimg%3Apull" in tokens[0][0]  # cached for the pull
    assert tokens[0][1]["Authorization"] == "Basic " + base64.b64encode(b"bob:pw").decode()
    assert all(h.get("Authorization", "").startswith("Bearer ") for m, p, h in fake.requests if "/b/img/" in p)
    fake.bearer = "anonymous"  # public images: a token for anyone
    with pyrt.Runtime(os.path.join(tmp_shm, "s2")) as rt:
        assert rt.images.pull(f"{fake.host}/b/img:1", auth_config={"username": "x", "password": "y"}).id == info["id"]


# A hostile registry must not lead pyrt into sending its credentials (or the tokens
# they buy) to another host: an upload Location or a blob redirect on another host
# gets no Authorization header, a 401 from that other host naming a realm of its own
# is not followed, and a token realm over plain http gets no credentials from a
# registry that is not insecure.

CREDS = {"username": "bob", "password": "pw"}
BASIC = "Basic " + base64.b64encode(b"bob:pw").decode()


def authorized(reg):
    return [(m, p) for m, p, h in reg.requests if "Authorization" in h]


@pytest.fixture
def other():
    """Another registry, on another host (127.0.0.2)."""
    with FakeRegistry("127.0.0.2") as r:
        yield r


@pytest.fixture
def evil():
    """A third registry (127.0.0.3), anonymous, that no request may reach."""
    with FakeRegistry("127.0.0.3") as r:
        r.bearer = "anonymous"
        yield r


@pytest.fixture
def redirected(fake, other):
    """b/img:1 on `fake` (bob's, with a bearer token), its top layer's blob
    redirected to `other`: (image info, that blob's digest)."""
    fake.bearer = ("bob", "pw")
    layer = gz_layer(71)
    info = fake.add_image("b/img", "1", [gz_layer(72), layer])
    digest = sha(layer[0])
    other.blobs[digest] = layer[0]
    fake.redirect[digest] = f"http://{other.host}/v2/b/img/blobs/{digest}"
    other.requests.clear()
    return info, digest


def test_credentials_not_sent_to_an_upload_location_on_another_host(fake, other, evil, tmp_shm):
    fake.bearer = ("bob", "pw")
    fake.upload_host = other.host
    root = os.path.join(tmp_shm, "s")
    load_image(root, tmp_shm, f"{fake.host}/up/img:1", [70])
    with pyrt.Runtime(root) as rt, pytest.raises(RegistryError):
        rt.images.push(f"{fake.host}/up/img", tag="1", auth_config=CREDS)
    assert [m for m, p, h in other.requests] and authorized(other) == []
    assert evil.requests == []


def test_credentials_not_sent_with_a_blob_redirected_to_another_host(fake, other, evil, redirected, tmp_shm):
    info, digest = redirected
    with pyrt.Runtime(os.path.join(tmp_shm, "s2")) as rt:
        assert rt.images.pull(f"{fake.host}/b/img:1", auth_config=CREDS).id == info["id"]
    assert other.blob_requests(digest) and authorized(other) == []
    assert evil.requests == []


def test_credentials_not_sent_to_the_realm_of_the_redirect_host(fake, other, evil, redirected, tmp_shm):
    """... where that other host asks for a token from a realm of its own."""
    other.bearer, other.realm = "anonymous", f"http://{evil.host}/token"
    with pyrt.Runtime(os.path.join(tmp_shm, "s3")) as rt, pytest.raises(RegistryError, match="401"):
        rt.images.pull(f"{fake.host}/b/img:1", auth_config=CREDS)
    assert evil.requests == []
    assert all(h.get("Authorization") != BASIC for m, p, h in other.requests)


def test_credentials_not_sent_to_a_token_realm_over_plain_http(evil):
    """A token realm over plain http, for a registry reached over https."""
    from pyrt.registry.client import Client
    with Client("registry.example", tls_verify=True, credentials=("bob", "pw")) as client:
        client.base = "https://registry.example"
        client._challenge = ("bearer", {"realm": f"http://{evil.host}/token", "service": "x"})
        with pytest.raises(RegistryError, match="plain http"):
            client._fetch_token(("repository:x:pull",))
    assert evil.requests == []


def test_failed_pulls_are_one_line_and_leave_the_store_unchanged(fake, tmp_shm):
    root = os.path.join(tmp_shm, "s")
    load_image(root, tmp_shm, "other:1", [60])
    good = gz_layer(61)
    fake.add_image("e/ok", "1", [good])
    bad = gz_layer(62)
    fake.add_image("e/wrong", "1", [bad])
    fake.wrong[sha(bad[0])] = bytes(len(bad[0]))
    cut = gz_layer(63)
    fake.add_image("e/cut", "1", [cut])
    fake.cut[sha(cut[0])] = 100
    fake.add_image("e/diffid", "1", [(gz_layer(64)[0], sha(b"not this layer"))])
    fake.add_manifest("e/v1", "1", json.dumps({"schemaVersion": 1, "name": "e/v1", "fsLayers": []}).encode(),
                      "application/vnd.docker.distribution.manifest.v1+prettyjws")
    fake.status["/v2/e/denied/manifests/1"] = 401
    before = state(root)
    cases = [
        ("nosuch.invalid/x:1", r"cannot reach registry nosuch\.invalid: \S"),
        (f"{fake.host}/e/missing:1", r"manifest unknown \(HTTP 404\)"),
        (f"{fake.host}/e/denied:1", r"unauthorized: authentication required \(HTTP 401\)"),
        (f"{fake.host}/e/wrong:1", rf"digest mismatch for layer {sha(bad[0])}: the registry sent "
                                   rf"{sha(bytes(len(bad[0])))}"),
        (f"{fake.host}/e/cut:1", rf"blob {sha(cut[0])}: connection broken 4 times, last: peer closed"),
        (f"{fake.host}/e/diffid:1", r"layer sha256:\w+ rejected: .*diff_id mismatch"),
        (f"{fake.host}/e/v1:1", r"manifest sha256:\w+ is a Docker schema 1 manifest, which pyrt does not read"),
        ("Bad/Ref:1", r"invalid image reference"),
    ]
    for ref, match in cases:
        error(cli(root, "pull", ref), match=rf"^pyrt: pull {ref}: {match}")
        assert state(root) == before, ref
    assert partials(root) == [sha(cut[0])[7:] + ".partial"]  # a wrong blob is not kept
    ok_quiet(cli(root, "pull", f"{fake.host}/e/ok:1"))
    with pyrt.Runtime(root) as rt:
        check_consistent(rt)


def test_ctrl_c_leaves_the_store_unchanged(fake, tmp_shm):
    root = os.path.join(tmp_shm, "s")
    load_image(root, tmp_shm, "other:1", [70])
    slow = gz_layer(71, 300_000)
    fake.add_image("c/img", "1", [gz_layer(72), slow])
    fake.stall[sha(slow[0])] = 1.5
    before = state(root)
    p = subprocess.Popen([PYRT, "--root", root, "pull", f"{fake.host}/c/img:1"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, preexec_fn=helpers.default_sigint)
    try:
        deadline = time.monotonic() + 10
        while not any(m == "GET" for m, _, _ in fake.blob_requests(sha(slow[0]))):
            assert time.monotonic() < deadline and p.poll() is None
            time.sleep(0.02)
        time.sleep(0.2)
        p.send_signal(signal.SIGINT)
        assert p.wait(10) == 130
    finally:
        if p.poll() is None:
            p.kill()
        p.communicate()
    assert state(root) == before


@pytest.fixture
def netns_with_address():
    """A network namespace of the test's own with a non-loopback address (a veth
    pair in it, one end 192.0.2.2, TEST-NET-1), and a context manager that makes the
    calling thread's new sockets in it."""
    import contextlib
    from pyrt import sys as psys
    name, address = f"pyrt-test-{os.getpid()}", "192.0.2.2"
    def netns_mounts():  # a bind of a directory onto itself: os.path.ismount cannot tell
        return helpers.mount_points(helpers.mountinfo()).count("/run/netns")
    mounted_before = netns_mounts()
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        for cmd in (["link", "set", "lo", "up"], ["link", "add", "v0", "type", "veth", "peer", "name", "v1"],
                    ["addr", "add", f"{address}/24", "dev", "v0"], ["link", "set", "v1", "up"],
                    ["link", "set", "v0", "up"]):
            subprocess.run(["ip", "-n", name, *cmd], check=True)

        @contextlib.contextmanager
        def inside():
            own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            ns = os.open(f"/run/netns/{name}", os.O_RDONLY | os.O_CLOEXEC)
            try:
                psys.setns(ns, 0x40000000)  # CLONE_NEWNET, this thread only
                try:
                    yield
                finally:
                    psys.setns(own, 0x40000000)
            finally:
                os.close(ns)
                os.close(own)
        yield name, address, inside
    finally:
        subprocess.run(["ip", "netns", "del", name])
        for _ in range(netns_mounts() - mounted_before):  # ip's own bind mounts of /run/netns
            subprocess.run(["umount", "/run/netns"])


def test_plain_http_only_for_loopback_insecure_or_tls_verify_false(tmp_shm, netns_with_address):
    name, address, inside = netns_with_address
    with inside():  # the registry's socket lives in that namespace; pyrt runs there too
        far = FakeRegistry(address)

    def cli(root, *argv):
        return subprocess.run(["ip", "netns", "exec", name, PYRT, "--root", root, *argv], capture_output=True,
                              cwd="/", env={**os.environ, "PYRT_ROOT": "/nonexistent-on-purpose"})
    with far:
        info = far.add_image("i/img", "1", [gz_layer(80)])
        ref = f"{far.host}/i/img:1"
        root = os.path.join(tmp_shm, "s")
        error(cli(root, "pull", ref), match=rf"^pyrt: pull {ref}: cannot reach registry {far.host}: .*SSL")
        assert ok_quiet(cli(root, "pull", "--tls-verify=false", ref)).splitlines()[-1] == info["id"]
        with open(os.environ["PYRT_REGISTRIES_CONF"], "w") as f:
            json.dump({"insecure-registries": [far.host]}, f)
        assert ok_quiet(cli(os.path.join(tmp_shm, "s2"), "pull", ref)).splitlines()[-1] == info["id"]
        with open(os.environ["PYRT_REGISTRIES_CONF"], "w") as f:
            f.write("{not json")
        error(cli(root, "pull", ref), match="registries configuration .*registries.json")


def test_progress_bars_on_a_terminal_plain_lines_in_a_pipe_nothing_when_quiet(fake, tmp_shm):
    info = fake.add_image("t/img", "1", [gz_layer(90), gz_layer(91)])
    ref = f"{fake.host}/t/img:1"
    master, slave = pty.openpty()
    try:
        r = subprocess.run([PYRT, "--root", os.path.join(tmp_shm, "s"), "pull", ref], stdout=subprocess.PIPE,
                           stderr=slave)
        os.close(slave)
        slave = -1
        err = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            err += chunk
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    assert r.returncode == 0
    out = r.stdout.decode()
    assert "Pull complete" not in out and out.splitlines()[-1] == info["id"]
    text = err.decode()
    assert "\x1b[K" in text and "\x1b[2A" in text and text.count("Pull complete") >= 2 and "[===" in text
    out = ok_quiet(cli(os.path.join(tmp_shm, "s2"), "pull", ref))
    assert "\x1b" not in out and out.count(": Pull complete\n") == 2
    assert ok_quiet(cli(os.path.join(tmp_shm, "s3"), "-q", "pull", ref)) == info["id"] + "\n"


def test_build_pulls_a_missing_base_image(registry, tmp_shm, rootfs):
    a, b = os.path.join(tmp_shm, "a"), os.path.join(tmp_shm, "b")
    name = f"{registry.host}/rt/base:1"
    with pyrt.Runtime(a) as rt:
        rt.images.import_image(rootfs, name, changes=["ENV PATH=/bin:/usr/bin"])
    ok_quiet(cli(a, "push", name))
    ctx = os.path.join(tmp_shm, "ctx")
    os.mkdir(ctx)
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write(f"FROM {name}\nRUN echo built > /built\n")
    out = ok_quiet(cli(b, "build", "-t", "child:1", ctx))
    assert f"Pulling {name} (not in the store)" in out and "Successfully tagged child:1" in out
    with pyrt.Runtime(b) as rt:
        assert rt.images.get(name).id == image(a, name)[0]
        assert rt.containers.run("child:1", ["cat", "/built"], remove=True) == b"built\n"
    # a base that is neither in the store nor in the registry: one clear line
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write(f"FROM {registry.host}/rt/nosuch:1\n")
    err = error(cli(b, "build", ctx), match="is not in the store and could not be pulled")
    assert "manifest unknown" in err


def test_broken_uploads_are_retried(fake, tmp_shm, monkeypatch):
    a = os.path.join(tmp_shm, "a")
    name = f"{fake.host}/up/img:1"
    info = load_image(a, tmp_shm, name, [1, 2])
    monkeypatch.setenv("PYRT_PUSH_CHUNK_SIZE", "64000")  # chunked: PATCHes, then a PUT
    fake.cut_uploads = 2  # two uploads break mid-way: their blobs start over
    out = ok_quiet(cli(a, "push", name))
    assert out.endswith(f"1: digest: {info['manifest']} size: {len(fake.manifests[('up/img', '1')][0])}\n")
    assert set(info["layers"]) <= set(fake.blobs) and info["id"] in fake.blobs
    assert fake.manifests[("up/img", "1")][0] == open(
        os.path.join(info["layout"], "blobs", "sha256", info["manifest"][7:]), "rb").read()
    # a registry that keeps breaking: a clear error after the retries
    fake.blobs.clear()
    fake.cut_uploads = 100
    err = error(cli(a, "push", name, f"{fake.host}/up/other:1"), match=f"push {fake.host}/up/other:1: ")
    assert "cannot reach registry" in err
