"""Attacks on the processes pyrt starts in a container, from inside it: a cwd
through an fd of the host (the CVE-2024-21626 class), a process caught between
setns and execve (CVE-2016-9962 / CVE-2019-5736), the caller's terminal (TIOCSTI)
and the --init binary. Each defence lives in the one child tail (csrc/tail.c)."""
from __future__ import annotations

import fcntl
import os
import subprocess
import termios
import time

import pytest

import pyrt
from pyrt.errors import SpawnError
from clitools import PYRT

PROBES = {
    # Watches /proc for processes and, for each, opens /proc/PID/exe and its fd
    # directory as soon as it can: prints "PID exe-target fds" once per process.
    "watch": r"""
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv) {
    static char done[1 << 22];
    time_t end = time(NULL) + atoi(argv[1]);
    setvbuf(stdout, NULL, _IOLBF, 0);
    while (time(NULL) < end) {
        DIR *d = opendir("/proc");
        struct dirent *de;
        while ((de = readdir(d))) {
            int pid = atoi(de->d_name);
            if (pid <= 1 || pid >= (1 << 22) || done[pid] || pid == getpid())
                continue;
            char p[64], target[4096];
            snprintf(p, sizeof p, "/proc/%d/exe", pid);
            int fd = open(p, O_RDONLY);
            if (fd < 0)
                continue;  /* not (yet) reachable: look again next round */
            ssize_t n = readlink(p, target, sizeof target - 1);
            target[n > 0 ? n : 0] = 0;
            close(fd);
            snprintf(p, sizeof p, "/proc/%d/fd", pid);
            int fds = 0;
            DIR *f = opendir(p);
            if (f) {
                while (readdir(f))
                    fds++;
                closedir(f);
            }
            printf("%d %s %d\n", pid, target, fds - 2);
            done[pid] = 1;
        }
        closedir(d);
    }
    return 0;
}
""",
    # TIOCSTI on stdout: writes "ok" or the errno to the file named by argv[1].
    "tiocsti": r"""
#include <errno.h>
#include <stdio.h>
#include <sys/ioctl.h>
int main(int argc, char **argv) {
    char c = '#';
    int rc = ioctl(1, TIOCSTI, &c);
    FILE *f = fopen(argv[1], "w");
    if (rc == 0) fprintf(f, "ok\n"); else fprintf(f, "%d\n", errno);
    fclose(f);
    return 0;
}
""",
}


@pytest.fixture(scope="session")
def probes(shm_base):
    d = os.path.join(shm_base, "escape-probes")
    if not os.path.isdir(d):
        os.makedirs(d + ".tmp", exist_ok=True)
        for name, src in PROBES.items():
            c = os.path.join(d + ".tmp", name + ".c")
            with open(c, "w") as f:
                f.write(src)
            subprocess.run(["gcc", "-static", "-O2", "-o", os.path.join(d + ".tmp", name), c], check=True)
        os.rename(d + ".tmp", d)
    return d


@pytest.fixture
def host_secret(tmp_shm):
    """A host directory with a file no container may read; an open fd on it."""
    d = os.path.join(tmp_shm, "host-only")
    os.mkdir(d)
    with open(os.path.join(d, "secret"), "w") as f:
        f.write("host secret\n")
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)  # close-on-exec, but open until exec
    try:
        yield d, fd
    finally:
        os.close(fd)


# -- 1. a working directory through an fd ------------------------------------------------

def test_cwd_through_an_fd_of_the_caller_is_refused(rootfs, host_secret):
    _, fd = host_secret
    for cwd in (f"/proc/self/fd/{fd}", f"/proc/self/fd/{fd}/", f"/proc/1/cwd", f"/proc/self/root/.."):
        with pytest.raises(SpawnError) as e:
            pyrt.run(["cat", "secret"], rootfs, cwd=cwd, capture_output=True)
        assert e.value.op.startswith("chdir"), e.value
    # a plain directory still works (positive control of the same call)
    r = pyrt.run(["pwd"], rootfs, cwd="/etc", capture_output=True)
    assert r.stdout == b"/etc\n"


def test_cli_run_and_exec_workdir_through_inherited_fds(store, host_secret):
    _, fd = host_secret
    # an fd the caller of `pyrt` inherited (a shell's `9</dir`), and those of pyrt itself
    for n in [fd] + list(range(3, 12)):
        r = subprocess.run([PYRT, "--root", store.root, "run", "--rm", "-w", f"/proc/self/fd/{n}", "base:1",
                            "cat", "secret"], capture_output=True, pass_fds=(fd,), cwd="/")
        assert r.returncode != 0 and b"host secret" not in r.stdout, (n, r)
    c = store.rt.containers.run("base:1", ["sleep", "600"], detach=True, name="wd")
    for n in range(3, 16):  # the monitor's fds and the exec's own
        r = subprocess.run([PYRT, "--root", store.root, "exec", "-w", f"/proc/self/fd/{n}", "wd", "cat", "secret"],
                           capture_output=True, pass_fds=(fd,), cwd="/")
        assert r.returncode != 0 and b"host secret" not in r.stdout, (n, r)
        with pytest.raises(SpawnError):
            c.exec_run(["cat", "secret"], workdir=f"/proc/self/fd/{n}")
    assert c.exec_run(["pwd"], workdir="/etc") == (0, b"/etc\n")


def test_the_container_gets_no_fd_of_the_caller(rootfs, host_secret):
    _, fd = host_secret
    os.set_inheritable(fd, True)  # even an inheritable one
    try:
        r = pyrt.run(["ls", "/proc/self/fd"], rootfs, capture_output=True)
    finally:
        os.set_inheritable(fd, False)
    assert sorted(r.stdout.split()) == [b"0", b"1", b"2", b"3"], r.stdout  # 3: ls's own dir


# -- 2. a process between setns and execve ----------------------------------------------

def test_exec_is_never_caught_before_execve(store, probes):
    c = store.rt.containers.run("base:1", ["/probe/watch", "40"], detach=True, name="watcher",
                                volumes={probes: {"bind": "/probe", "mode": "ro"}})
    time.sleep(0.5)
    for i in range(30):
        r = store.cli("exec", "watcher", "sleep", "0.1")
        assert r.returncode == 0, r
        if i % 10 == 0:
            c.exec_run(["sleep", "0.1"])
    time.sleep(0.3)
    seen = [line.split() for line in c.logs().decode().splitlines()]
    c.remove(force=True)
    # positive control: the probe saw the exec'd processes (busybox's sleep) and opened them
    ours = [s for s in seen if len(s) == 3 and s[1].startswith("/bin/")]
    assert len(ours) >= 10, seen
    # never the host's interpreter (or anything not of the container), never its fds
    foreign = [s for s in seen if len(s) != 3 or not s[1].startswith("/bin/")]
    assert not foreign, foreign


# -- 3. the caller's terminal -----------------------------------------------------------------

def _in_a_terminal_session(argv, probes_dir, result):
    """Run argv with a new pty as its controlling terminal and stdio."""
    master, slave = os.openpty()
    try:
        p = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                             preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0), cwd="/")
        os.close(slave)
        slave = -1
        out = b""
        deadline = time.monotonic() + 60
        while p.poll() is None and time.monotonic() < deadline:
            try:
                import select
                if select.select([master], [], [], 0.1)[0]:
                    out += os.read(master, 4096)
            except OSError:
                break
        assert p.wait(timeout=30) == 0, out
        with open(result) as f:
            return f.read().strip()
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)


def test_tiocsti_cannot_type_into_the_callers_terminal(store, probes, tmp_shm):
    out = os.path.join(tmp_shm, "out")
    os.mkdir(out)
    os.chmod(out, 0o777)
    # positive control: the same probe on the host, in that session, can type
    assert _in_a_terminal_session([os.path.join(probes, "tiocsti"), os.path.join(out, "host")],
                                  probes, os.path.join(out, "host")) == "ok"
    run = [PYRT, "--root", store.root, "run", "--rm", "-v", f"{probes}:/probe:ro", "-v", f"{out}:/out",
           "base:1", "/probe/tiocsti", "/out/run"]
    # EPERM (not its controlling terminal) or ENOTTY (a pipe pyrt relays): never typed
    assert _in_a_terminal_session(run, probes, os.path.join(out, "run")) in ("1", "25")
    store.rt.containers.run("base:1", ["sleep", "600"], detach=True, name="tty",
                            volumes={probes: {"bind": "/probe", "mode": "ro"}, out: {"bind": "/out"}})
    ex = [PYRT, "--root", store.root, "exec", "tty", "/probe/tiocsti", "/out/exec"]
    assert _in_a_terminal_session(ex, probes, os.path.join(out, "exec")) in ("1", "25")
    ex = [PYRT, "--root", store.root, "exec", "-i", "tty", "/probe/tiocsti", "/out/exec-i"]
    assert _in_a_terminal_session(ex, probes, os.path.join(out, "exec-i")) in ("1", "25")
    run = [PYRT, "run", "--rootfs", "/", "-v", f"{out}:/out", "-v", f"{probes}:/probe:ro", "/probe/tiocsti",
           "/out/rootfs"]
    assert _in_a_terminal_session(run, probes, os.path.join(out, "rootfs")) in ("1", "25")


def test_every_container_process_leads_its_own_session(rootfs):
    p = pyrt.spawn(["sleep", "5"], rootfs)
    try:
        with open(f"/proc/{p.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        assert int(fields[3]) == p.pid  # session id: its own
    finally:
        p.kill()
        p.wait()


# -- 6. --init -------------------------------------------------------------------------------------

def test_init_is_a_sealed_copy_not_a_host_file(rootfs):
    r = pyrt.run(["sh", "-c", "readlink /proc/1/exe; echo x >> /proc/1/exe && echo WROTE"], rootfs, init=True,
                 capture_output=True)
    lines = r.stdout.decode().splitlines()
    assert lines[0].startswith("/memfd:pyrt-init"), lines
    assert "WROTE" not in lines


# -- mounts onto the container's /proc (CVE-2019-19921 class) ---------------------------

def test_nothing_but_proc_is_mounted_onto_proc(rootfs_copy, tmp_shm, store):
    hostdir = os.path.join(tmp_shm, "d")
    os.mkdir(hostdir)
    for target in ("/proc/sys", "/proc/self/attr", "/proc/1"):
        with pytest.raises(SpawnError) as e:
            pyrt.run(["true"], rootfs_copy, mounts=[pyrt.Bind(hostdir, target)])
        assert e.value.op == "mount destination inside /proc" and e.value.errno == 1, e.value
    with pytest.raises(SpawnError):
        pyrt.run(["true"], rootfs_copy, mounts=[pyrt.Tmpfs("/proc/sys")])
    # through a symlink the image ships: the destination is where it resolves
    os.symlink("/proc/sys", os.path.join(rootfs_copy, "data"))
    with pytest.raises(SpawnError) as e:
        pyrt.run(["true"], rootfs_copy, mounts=[pyrt.Bind(hostdir, "/data")])
    assert e.value.op == "mount destination inside /proc"
    # lxcfs's files stay allowed (as runc allows them)
    fake = os.path.join(tmp_shm, "meminfo")
    with open(fake, "w") as f:
        f.write("MemTotal: 1 kB\n")
    r = pyrt.run(["head", "-1", "/proc/meminfo"], rootfs_copy, mounts=[pyrt.Bind(fake, "/proc/meminfo")],
                 capture_output=True)
    assert r.stdout == b"MemTotal: 1 kB\n"
    # the CLI: one line, non-zero
    r = store.cli("run", "--rm", "-v", f"{hostdir}:/proc/sys", "base:1", "true")
    assert r.returncode != 0 and b"inside /proc" in r.stderr, r
