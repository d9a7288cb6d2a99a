"""Rootless podman with pyrt-runtime as its runtime, where pyrt's users are:
Debian 12 (kernel 6.1, systemd, pure cgroup v2), the guest's `tester` (uid 1000,
linger) inside its systemd session. There podman uses its systemd cgroup manager:
it runs the runtime as root of the user namespace it made, with --systemd-cgroup
and a cgroupsPath of user.slice:libpod:ID, and the container's scope is one of
tester's systemd instance, in the subtree systemd delegates to it. crun (Debian's
default runtime for podman) runs the same script as the reference.

One image import (a busybox rootfs, no registry) and one script per runtime:
under TCG every podman command takes seconds."""
import os
import pwd
import re
import shutil
import signal
import subprocess
import tarfile

import pytest

USER = "tester"
PW = pwd.getpwnam(USER)
HOME = PW.pw_dir
RUN = f"/run/user/{PW.pw_uid}"
ENV = {"HOME": HOME, "USER": USER, "LOGNAME": USER, "XDG_RUNTIME_DIR": RUN, "LANG": "C.UTF-8",
       "PATH": "/usr/local/bin:/usr/bin:/bin"}
IMAGE = "localhost/busybox:podman"
USER_SLICE = f"/sys/fs/cgroup/user.slice/user-{PW.pw_uid}.slice/user@{PW.pw_uid}.service/user.slice"


def in_user_manager(argv, timeout=600):
    """argv as tester inside its systemd instance (a transient service of
    user@1000.service), stdio passed through."""
    cmd = ["runuser", "-u", USER, "--", "env", "-i", *[f"{k}={v}" for k, v in ENV.items()],
           "systemd-run", "--user", "--wait", "--pipe", "--quiet", "--collect",
           f"--setenv=PATH={ENV['PATH']}", "--", *argv]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd="/")


def _kill_pause():
    """podman's pause process (it keeps tester's user namespace), by its pid."""
    try:
        with open(os.path.join(RUN, "libpod", "tmp", "pause.pid")) as f:
            os.kill(int(f.read().strip()), signal.SIGKILL)
    except (OSError, ValueError):
        pass


@pytest.fixture(scope="module")
def podman():
    """tester's podman with a busybox image imported from a tar of a busybox
    rootfs; its store, containers and pause process gone after the module."""
    if shutil.which("podman") is None:
        pytest.skip("podman is not in the guest image")
    work = os.path.join(HOME, "podman-img")
    shutil.rmtree(work, ignore_errors=True)
    os.mkdir(work)
    root = os.path.join(work, "rootfs")
    for d in ("bin", "proc", "sys", "dev", "tmp", "etc", "root"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    os.chmod(os.path.join(root, "tmp"), 0o1777)
    shutil.copy2("/bin/busybox", os.path.join(root, "bin", "busybox"))
    for applet in subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True).stdout.split():
        if applet != "busybox":
            os.symlink("busybox", os.path.join(root, "bin", applet))
    with open(os.path.join(root, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\n")
    tar = os.path.join(work, "busybox.tar")
    with tarfile.open(tar, "w") as t:
        t.add(root, arcname=".")
    os.chmod(work, 0o755)
    os.chmod(tar, 0o644)
    try:
        p = in_user_manager(["podman", "import", tar, IMAGE])
        assert p.returncode == 0, p.stdout + p.stderr
        yield
    finally:
        in_user_manager(["podman", "rm", "--all", "--force", "--time", "0"])
        _kill_pause()
        shutil.rmtree(work, ignore_errors=True)
        # the store holds files of tester's subordinate ids: removed as root
        for d in (os.path.join(HOME, ".local", "share", "containers"), os.path.join(RUN, "containers"),
                  os.path.join(RUN, "libpod")):
            shutil.rmtree(d, ignore_errors=True)


# One script per runtime, one `key=value` line per step (stderr passes through). Run
# from a file: systemd-run's command line would have systemd expand ${...} in it.
SCRIPT = """
P="podman --runtime $RT"
out=$($P run --rm --network none $IMG sh -c 'echo hello $(id -u); exit 3'); echo "run=$? $out"
out=$($P run --rm -t --network none $IMG sh -c 'test -t 0 && tty'); echo "tty=$? $out"
out=$($P run --rm --network none --userns keep-id $IMG id -u); echo "keepid=$? $out"
cid=$($P run -d --network none --memory 64m --pids-limit 50 $IMG sleep 600); echo "detach=$?"
pid=$($P inspect -f '{{.State.Pid}}' "$cid")
cg=/sys/fs/cgroup$(sed -n 's/^0:://p' /proc/$pid/cgroup)
echo "cgroup=$cg"
echo "limits=$(cat $cg/memory.max $cg/pids.max | tr '\\n' ' ')"
echo "procs=$(for p in $(cat $cg/cgroup.procs); do tr '\\0' ' ' < /proc/$p/cmdline; echo '|'; done | tr -d '\\n')"
echo "exec=$($P exec "$cid" sh -c 'cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max; id -u' | tr '\\n' ' ')"
$P pause "$cid" >/dev/null; echo "pause=$? $(cat $cg/cgroup.freeze) $($P inspect -f '{{.State.Status}}' "$cid")"
$P unpause "$cid" >/dev/null; echo "unpause=$? $(cat $cg/cgroup.freeze)"
echo "stats=$($P stats --no-stream --format '{{.PIDs}} {{.MemUsage}}' "$cid")"
$P stop -t 1 "$cid" >/dev/null; echo "stop=$? $($P inspect -f '{{.State.Status}}' "$cid")"
$P rm "$cid" >/dev/null; echo "rm=$?"
test -e "$cg" && echo "after=left" || echo "after=gone"
$P run --rm --network none --memory 32m $IMG sh -c 'head -c 64m /dev/zero | tail > /dev/null'; echo "hog=$?"
echo "cid=$cid"
# what is left: containers' scopes of tester's instance, the runtime's state
echo "scopes=$(ls "$US" | grep -E '^libpod-[0-9a-f]{64}' | tr '\\n' ' ')"
echo "state=$(ls "$XDG_RUNTIME_DIR/pyrt-runtime" 2>/dev/null | tr '\\n' ' ')"
"""


def _podman_script(runtime):
    script = os.path.join(HOME, "podman-img", "script.sh")
    with open(script, "w") as f:
        f.write(SCRIPT)
    os.chmod(script, 0o644)
    p = in_user_manager(["env", f"RT={runtime}", f"IMG={IMAGE}", f"US={USER_SLICE}", "sh", script])
    out = {}
    for line in p.stdout.splitlines():
        k, _, v = line.partition("=")
        out[k] = v.strip()
    return out, f"exit {p.returncode}\n{p.stdout}{p.stderr}"


@pytest.mark.parametrize("runtime", ["/usr/local/bin/pyrt-runtime", "crun"], ids=["pyrt-runtime", "crun"])
def test_rootless_podman(podman, runtime):
    """run --rm: output and exit status, with -t, with --userns keep-id; run -d
    with --memory and --pids-limit: the limits in the container's cgroup (in a
    scope of tester's systemd instance, seen from the host and from inside),
    only the container's process there, exec, pause, podman's stats (read from
    the scope), stop, rm, and nothing left of the cgroup, the scope or the
    runtime's state; a memory hog killed by its limit (137)."""
    if runtime.startswith("/") and not os.path.exists(runtime):
        runtime = shutil.which("pyrt-runtime")
    out, log = _podman_script(runtime)
    cid = out.get("cid", "")
    assert out.get("run") == "3 hello 0", log
    assert re.fullmatch(r"0 /dev/pts/\d+", out.get("tty", "")), log
    assert out.get("keepid") == "0 1000", log
    assert out.get("detach") == "0" and re.fullmatch(r"[0-9a-f]{64}", cid), log
    # podman's --systemd-cgroup with user.slice:libpod:ID: libpod-ID.scope of tester's instance
    assert re.fullmatch(rf"{USER_SLICE}/libpod-{cid}\.scope(/container)?", out.get("cgroup", "")), log
    assert out.get("limits") == f"{64 << 20} 50", log
    assert out.get("procs") == "sleep 600 |", log
    assert out.get("exec") == f"{64 << 20} 50 0", log
    assert (out.get("pause"), out.get("unpause")) == ("0 1 paused", "0 0"), log
    # podman reads the scope: the container's processes alone, its limit there too
    assert re.fullmatch(r"1 \S+ / 67\.11MB", out.get("stats", "")), log
    assert out.get("stop") == "0 exited", log
    assert out.get("rm") == "0" and out.get("after") == "gone", log
    assert out.get("hog") == "137", log
    assert out.get("scopes") == "" and out.get("state") == "", log
