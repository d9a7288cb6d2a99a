"""Attacks on what an ordinary user's containers get: the slirp4netns network
(pyrt.network.usermode), published ports (slirp4netns's host forwards, or the
monitor's forwarder with --network none), each asserting the defence.

Everything network runs in a network namespace the test made (the `netns`
fixture): the user's `pyrt` runs there, which is "the host" as slirp4netns and
the forwarder see it; services on its loopback stand for the host's."""
from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess

import pytest

import helpers
from clitools import ok
from nettools import comm, free_port, tun_usable

pytestmark = [pytest.mark.timeout(300)]

HERE = os.path.dirname(os.path.abspath(__file__))
HOST_IP = "192.0.2.1"  # the test namespace's own non-loopback address (nettools.NetNS.upstream())

@pytest.fixture(scope="module")
def probes(shm_base):
    """A directory (readable by everyone) with synprobe (tests/probes/synprobe.c),
    bound into containers at /probe."""
    if not shutil.which("gcc"):
        pytest.skip("no gcc to build the probe")
    d = os.path.join(shm_base, "attack-probes")
    out = os.path.join(d, "synprobe")
    if not os.path.exists(out):
        os.makedirs(d, exist_ok=True)
        r = subprocess.run(["gcc", "-static", "-O2", "-o", out + ".tmp", os.path.join(HERE, "probes", "synprobe.c")],
                           capture_output=True)
        if r.returncode != 0:
            pytest.skip(f"cannot build the probe: {r.stderr.decode()[:200]}")
        os.rename(out + ".tmp", out)
    os.chmod(d, 0o755)
    os.chmod(out, 0o755)
    return d


# -- the host's loopback --------------------------------------------------------------------------------

def _attack(net_user, probes, *argv, targets):
    lines = "".join(f"/probe/synprobe tap0 10.0.2.100 {ip} {port} 2>&1\n" for ip, port in targets)
    return net_user.pyrt("run", "--rm", *argv, "-v", f"{probes}:/probe:ro", "base:1", "sh", "-c",
                         lines + "sleep 1; echo done")


def test_raw_frames_to_host_loopback_get_nowhere(net_user, netns, servers, probes):
    """slirp4netns connects wherever a frame on tap0 says (--disable-host-loopback
    only unmaps 10.0.2.2): a container's root writing TCP SYNs for 127.0.0.1 and
    0.0.0.0 (the host's kernel takes it as itself) as raw frames on tap0, past its
    own routing, would reach the host's loopback services. Containers on
    slirp4netns have no CAP_NET_RAW unless asked for: the frames cannot be
    written, nothing connects to the host's loopback, by run or by exec. With
    --cap-add NET_RAW the same probe reaches the host's ordinary address (the
    attack is real, the probe works)."""
    netns.upstream()  # HOST_IP on the namespace's side
    lo_port, any_port, ok_port = free_port(), free_port(), free_port()
    lo = servers(netns, "127.0.0.1", lo_port)
    any_lo = servers(netns, "127.0.0.1", any_port)
    reachable = servers(netns, HOST_IP, ok_port)
    r = _attack(net_user, probes, targets=[("127.0.0.1", lo_port), ("0.0.0.0", any_port)])
    out = r.stdout.decode()
    assert r.returncode == 0 and "done" in out, (out, r.stderr)
    assert out.count("socket(AF_PACKET): Operation not permitted") == 2, out
    cid = ok(net_user.pyrt("run", "-d", "-v", f"{probes}:/probe:ro", "base:1", "sleep", "60")).strip()
    try:
        r = net_user.pyrt("exec", cid, "/probe/synprobe", "tap0", "10.0.2.100", "127.0.0.1", str(lo_port))
        assert r.returncode == 1 and b"Operation not permitted" in r.stderr, (r.stdout, r.stderr)
    finally:
        ok(net_user.pyrt("rm", "-f", cid))
    r = _attack(net_user, probes, "--cap-add", "NET_RAW", targets=[(HOST_IP, ok_port)])
    assert "sent 3" in r.stdout.decode(), (r.stdout, r.stderr)
    assert set(reachable.peers()) == {HOST_IP}, "the probe did not reach the host's ordinary address"
    assert lo.peers() == [], "127.0.0.1 reached"
    assert any_lo.peers() == [], "0.0.0.0 reached"


def test_pyrt_run_on_slirp4netns_has_no_raw_frames(user, user_rootfs, netns, probes):
    """pyrt.run(network="slirp4netns") drops CAP_NET_RAW too (unless cap_add)."""
    if not shutil.which("slirp4netns") or not tun_usable():
        pytest.skip("slirp4netns and a usable /dev/net/tun are needed")
    user.in_netns(netns.path)
    r = user.py(r"""
        import sys, pyrt
        from pyrt.launch.mounts import Bind
        for extra in ({}, {"cap_add": ["NET_RAW"]}):
            r = pyrt.run(["/opt/synprobe", "tap0", "10.0.2.100", "192.0.2.9", "9"], rootfs=sys.argv[1],
                         network="slirp4netns", capture_output=True,
                         mounts=[Bind(sys.argv[2], "/opt", readonly=True)],
                         **extra)
            print(r.returncode, (r.stdout + r.stderr).decode().strip())
        """, user_rootfs, probes)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout.decode().splitlines() == ["1 synprobe: socket(AF_PACKET): Operation not permitted", "0 sent 3"]


# -- fds handed around ----------------------------------------------------------------------------------

FDS = "for f in /proc/self/fd/*; do echo \"$f $(readlink $f)\"; done"


def _fds(text: str) -> dict:
    """{fd: target} from FDS's output, past stdio, without the fd the listing itself
    opened (its directory: closed, so no target, when readlink runs)."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"/proc/self/fd/(\d+) (.*)", line)
        if m:
            out[int(m.group(1))] = m.group(2)
    return {fd: t for fd, t in out.items() if fd > 2 and t and not t.startswith("/proc/")}


@pytest.mark.parametrize("network", ["slirp4netns", "none"])
def test_no_fd_of_the_host_side_reaches_a_published_container(net_user, network):
    """The container's processes get their stdio and nothing else: not the
    network namespace's fd, slirp4netns's pipes, the user namespace's fd, the
    forwarder's sockets or the monitor's files."""
    port = free_port()
    cid = ok(net_user.pyrt("run", "-d", "--network", network, "-p", f"127.0.0.1:{port}:8080", "base:1", "sh", "-c",
                           f"{FDS}; sleep 60")).strip()
    try:
        helpers.wait_for(lambda: "/proc/self/fd/0 " in net_user.pyrt("logs", cid).stdout.decode(),
                         what="the container's listing")
        logs = net_user.pyrt("logs", cid).stdout.decode()
        assert _fds(logs) == {}, logs
        r = net_user.pyrt("exec", cid, "sh", "-c", FDS)
        assert r.returncode == 0 and _fds(r.stdout.decode()) == {}, (r.stdout, r.stderr)
    finally:
        ok(net_user.pyrt("rm", "-f", cid))


def test_foreground_run_on_slirp4netns_leaks_no_fd(net_user):
    r = net_user.pyrt("run", "--rm", "-p", f"127.0.0.1:{free_port()}:80", "base:1", "sh", "-c", FDS)
    assert r.returncode == 0, r.stderr
    assert _fds(r.stdout.decode()) == {}, r.stdout


def test_forwarders_socket_maker_holds_nothing_of_the_monitor(net_user, netns):
    """--network none with a published port: the monitor's socket maker lives in
    the container's user namespace (the container's root has every capability
    over it): it must hold nothing of the host's side (the container's directory
    in the store, its log, the host's network namespace, the monitor's sockets),
    only stdio, its socket pair and the container's pidfd."""
    port = free_port()
    cid = ok(net_user.pyrt("run", "-d", "--network", "none", "-p", f"127.0.0.1:{port}:8080", "base:1",
                           "sleep", "60")).strip()
    try:
        pid = json.loads(ok(net_user.pyrt("inspect", cid)))[0]["State"]["Pid"]
        net, pidns = os.readlink(f"/proc/{pid}/ns/net"), os.readlink(f"/proc/{pid}/ns/pid")
        makers = {}
        for p in os.listdir("/proc"):
            if not p.isdigit():
                continue
            try:
                if os.readlink(f"/proc/{p}/ns/net") == net and os.readlink(f"/proc/{p}/ns/pid") != pidns:
                    makers[p] = {int(fd): os.readlink(f"/proc/{p}/fd/{fd}") for fd in os.listdir(f"/proc/{p}/fd")}
            except OSError:
                pass
        assert len(makers) == 1, makers
        (fds,) = makers.values()
        rest = sorted(t.split(":")[0] for fd, t in fds.items() if fd > 2)
        assert rest == ["anon_inode", "socket"], fds
        assert all(fds[fd] == "/dev/null" for fd in (0, 1, 2)), fds
    finally:
        ok(net_user.pyrt("rm", "-f", cid))


def _slirp_pids(netns):
    return [p for p in netns.pids() if comm(p) == "slirp4netns"]


def test_slirp4netns_holds_no_fd_of_pyrt_and_no_api_socket_on_disk(net_user, netns):
    """slirp4netns (running while the container does) holds only its own: its
    tap, pipes, the namespace it was given; its API socket is gone from the file
    system once the ports are added (nobody can connect to it and add forwards),
    and no directory of it is left in the runtime directory or /tmp."""
    port = free_port()
    before = set(os.listdir("/tmp"))
    cid = ok(net_user.pyrt("run", "-d", "-p", f"127.0.0.1:{port}:8080", "base:1", "sleep", "60")).strip()
    try:
        (pid,) = _slirp_pids(netns)
        targets = []  # past its stdio (its log: a deleted file of the runtime directory)
        for fd in os.listdir(f"/proc/{pid}/fd"):
            if int(fd) <= 2:
                continue
            try:
                targets.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
            except OSError:
                pass
        store = net_user.store
        assert not [t for t in targets if t.startswith((store, net_user.runtime_dir, net_user.home))], targets
        leftovers = [n for n in set(os.listdir("/tmp")) - before if n.startswith("pyrt-slirp-")]
        leftovers += [n for n in os.listdir(net_user.runtime_dir) if n.startswith("pyrt-slirp-")]
        assert leftovers == []
        # its listening unix sockets have no path left (unlinked with their directory)
        with open(f"/proc/{pid}/net/unix") as f:
            paths = [ln.split()[7] for ln in f.read().splitlines()[1:] if len(ln.split()) > 7]
        assert not [p for p in paths if "pyrt-slirp-" in p and os.path.exists(p)], paths
    finally:
        ok(net_user.pyrt("rm", "-f", cid))


# -- a hostile image on the copy driver -------------------------------------------------------------------

def _tree(path):
    out = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            out[os.path.relpath(p, path)] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


@pytest.mark.parametrize("driver", ["copy", "overlay"])
def test_hostile_symlinks_in_layers_stay_inside_the_root(user, base_tar, driver):
    """Layers whose /etc, /run and /tmp are symlinks to a directory of the user's
    on the host (absolute), with a later layer writing etc/passwd, run/x and
    tmp/y through them: materializing the root, making its mount points and
    the container's /etc/hosts, /etc/resolv.conf and /etc/hostname never write
    or mount through them on the host; the victim directory is unchanged."""
    import usertools
    victim = user.mkdir("u/victim")
    with open(os.path.join(victim, "keep"), "w") as f:
        f.write("untouched\n")
    os.chown(os.path.join(victim, "keep"), user.uid, user.gid)
    before = _tree(victim)
    import imagetools
    links = imagetools.layer_tar([("symlink", "etc", {"link": victim}), ("symlink", "run", {"link": victim}),
                                  ("symlink", "tmp", {"link": victim + "/../victim"}),
                                  ("symlink", "opt", {"link": "../../../../../../.." + victim})])
    writes = imagetools.layer_tar([("dir", "etc"), ("file", "etc/passwd", {"data": "root:x:0:0::/:/bin/sh\n"}),
                                   ("dir", "run"), ("file", "run/x", {"data": "x\n"}),
                                   ("file", "keep", {"data": "top\n"})])
    user.load_layers(base_tar, [links], "links:1")
    user.load_layers(base_tar, [links, writes], "through:1")
    env = {"PYRT_DEFAULT_NETWORK": "none"}
    mounts_before = helpers.mountinfo()
    for ref in ("links:1", "through:1"):
        for wd in ([], ["-w", "/opt/sub"]):
            r = user.pyrt("--storage-driver", driver, "run", "--rm", *wd, "--network", "none", ref, "/bin/sh", "-c",
                          "echo pwned > /opt/keep; echo pwned > /tmp/keep; echo pwned > /run/keep; cat /etc/passwd; "
                          "echo done", env=env)
            err = r.stderr.decode()
            assert r.returncode == 0 or (err.startswith("pyrt: ") and err.count("\n") == 1), err
    assert _tree(victim) == before
    with open(os.path.join(victim, "keep")) as f:
        assert f.read() == "untouched\n"
    assert helpers.mountinfo() == mounts_before
    # nothing in the user's store is owned by an id outside the user's own and its range
    base = usertools.subid_base(user.name)
    bad = [p for p, (uid, gid) in _owners(user.store).items()
           if not (uid == user.uid or base <= uid < base + usertools.RANGE)
           or not (gid == user.gid or base <= gid < base + usertools.RANGE)]
    assert bad == []


def _owners(path):
    out = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            out[p] = (st.st_uid, st.st_gid)
    return out


def test_ids_outside_the_range_in_a_layer(user, base_tar):
    """A layer with files owned by ids past the user's subordinate range (and by
    host root's 0 mapped nowhere): loading and running it on the copy driver either
    refuses in one line (it does: nothing loaded); never a host file of another
    owner in the user's store."""
    import imagetools
    import usertools
    far = imagetools.layer_tar([("file", "far", {"data": "f\n", "uid": 70000, "gid": 70000}),
                                ("file", "huge", {"data": "h\n", "uid": 4294967294, "gid": 4294967294}),
                                ("file", "setuid-far", {"data": "s\n", "uid": 100000, "mode": 0o4755})])
    r = user.load_layers(base_tar, [far], "far:1", check=False)
    err = r.stderr.decode()
    assert err.startswith("pyrt: ") and err.count("\n") == 1, err
    assert r.returncode != 0 and "outside the ids mapped for you" in err, err
    assert json.loads(ok(user.pyrt("images", "--format", "json")) or "[]") == []
    base = usertools.subid_base(user.name)
    bad = [p for p, (uid, gid) in _owners(user.store).items()
           if not (uid == user.uid or base <= uid < base + usertools.RANGE)]
    assert bad == []


# -- the runtime directory's fallback in /tmp ---------------------------------------------------------------

def test_runtime_dir_fallback_refuses_a_symlink_planted_in_tmp(user, user_nosub, base_tar):
    """Without $XDG_RUNTIME_DIR an ordinary user's runtime state goes to
    /tmp/pyrt-UID. Another local user who made that name first as a symlink to a
    directory of the victim's (which passes the ownership checks once resolved)
    must not get pyrt to use it (nor chmod it): refused in one line. (Run in a
    private mount namespace with a tmpfs of its own on /tmp.)"""
    ok(user.pyrt("import", base_tar, "base:1"))
    target = user.mkdir("u/home/target", 0o755)
    with open(os.path.join(target, "mine"), "w") as f:
        f.write("x\n")
    plant = (f"mount -t tmpfs -o mode=1777 tmpfs /tmp && ln -s {target} /tmp/pyrt-{user.uid} && "
             f"chown -h {user_nosub.uid}:{user_nosub.gid} /tmp/pyrt-{user.uid} && exec \"$@\"")
    user.wrap = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", plant, "sh"]
    env = {"XDG_RUNTIME_DIR": "", "PYRT_DEFAULT_NETWORK": "none"}
    r = user.py("""
        from pyrt.paths import runtime_dir
        try:
            print(runtime_dir())
        except Exception as e:
            print(type(e).__name__, e)
        """, env=env)
    out = r.stdout.decode()
    assert r.returncode == 0 and out.startswith("UnsafeDirectory runtime directory /tmp/pyrt-"), (out, r.stderr)
    r = user.pyrt("run", "-d", "base:1", "sleep", "1", env=env)
    err = r.stderr.decode()
    assert r.returncode != 0 and err.startswith("pyrt: ") and err.count("\n") == 1 and "/tmp/pyrt-" in err, err
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o755 and os.listdir(target) == ["mine"]
    user.wrap = []
    for c in json.loads(user.pyrt("ps", "-a", "--format", "json").stdout or b"[]"):
        user.pyrt("rm", "-f", c["Id"])


# -- environment switches -------------------------------------------------------------------------------------

def test_storage_switches_cannot_reach_roots_store(user, store):
    """An ordinary user's PYRT_STORAGE_DRIVER / PYRT_NO_OVERLAY (or --storage-driver)
    pointed at root's store: refused in one line (the store is not the user's),
    root's recorded driver and containers unchanged; a value that is no driver is
    refused before anything is opened."""
    ok(store.cli("run", "--rm", "--network", "none", "base:1", "true"))  # the driver probed and recorded
    memo = os.path.join(store.root, "storage-driver")
    with open(memo) as f:
        recorded = f.read()
    os.chmod(os.path.dirname(store.root), 0o755)
    os.chmod(store.root, 0o755)  # even readable by others: not the user's
    for argv, env in ((["--root", store.root], {"PYRT_STORAGE_DRIVER": "copy"}),
                      (["--root", store.root, "--storage-driver", "copy"], {}),
                      ([], {"PYRT_ROOT": store.root, "PYRT_NO_OVERLAY": "1"})):
        r = user.pyrt(*argv, "run", "--rm", "--network", "none", "base:1", "true", env=env)
        err = r.stderr.decode()
        assert r.returncode != 0 and err.startswith("pyrt: ") and err.count("\n") == 1, err
        assert "not by you" in err, err
    with open(memo) as f:
        assert f.read() == recorded
    assert store.cli("ps", "-a", "-q").stdout == b""
    for bad in ("bogus", "../copy", "copy "):
        r = user.pyrt("ps", env={"PYRT_STORAGE_DRIVER": bad})
        err = r.stderr.decode()
        assert r.returncode != 0 and err.count("\n") == 1 and "storage driver" in err, err
