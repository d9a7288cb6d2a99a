"""Tests of pyrt.sys against the real kernel (as root).

Everything that changes a namespace or mounts runs in a forked child that first
enters a private mount namespace: the test process never changes namespace, and a
child's mounts vanish with it. Every fork and subprocess is reaped in a finally."""
import errno
import fcntl
import os
import pathlib
import pickle
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import traceback

import pytest

from pyrt import sys as psys

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

TIMEOUT = 30


# --- helpers ------------------------------------------------------------------------


def in_child(fn, *args):
    """Run fn(*args) in a forked child; return its (pickled) result or re-raise its
    exception. The child is always reaped, killed first if it outlives TIMEOUT."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        status = 1
        try:
            os.close(r)
            try:
                result = ("ok", fn(*args))
            except BaseException as e:  # noqa: BLE001 - reported to the parent
                result = ("err", e, traceback.format_exc())
            try:
                data = pickle.dumps(result)
            except Exception:  # noqa: BLE001
                data = pickle.dumps(("err", RuntimeError(repr(result[1])), result[-1]))
            with os.fdopen(w, "wb") as f:
                f.write(data)
            status = 0
        finally:
            os._exit(status)
    os.close(w)
    chunks = []
    try:
        deadline = time.monotonic() + TIMEOUT
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([r], [], [], left)[0]:
                raise TimeoutError("child did not finish")
            chunk = os.read(r, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(r)
        _reap(pid)
    if not chunks:
        raise AssertionError("child died without reporting")
    result = pickle.loads(b"".join(chunks))
    if result[0] == "err":
        exc = result[1]
        exc.add_note("in the child:\n" + result[2])
        raise exc
    return result[1]


def _reap(pid):
    """waitpid(pid), killing it if it does not exit within a few seconds."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def private_mount_ns():
    """In a child: a new mount namespace whose mounts never propagate to the host."""
    psys.unshare(psys.CLONE_NEWNS)
    psys.mount(None, "/", None, psys.MS_REC | psys.MS_PRIVATE)


def mountinfo(path=None):
    """{mount point: (fstype, mount options, super options)} of this process."""
    result = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            point = fields[4].replace("\\040", " ")
            result[point] = (fields[sep + 1], fields[5].split(","), fields[sep + 3].split(","))
    return result if path is None else result.get(os.fspath(path))


def children():
    """Pids of this process's children."""
    pids = set()
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/children") as f:
                pids.update(int(p) for p in f.read().split())
        except FileNotFoundError:
            pass
    return pids


def fd_closed(fd):
    try:
        fcntl.fcntl(fd, fcntl.F_GETFD)
    except OSError as e:
        return e.errno == errno.EBADF
    return False


# --- fixtures -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sys_shm_base():
    base = tempfile.mkdtemp(dir="/dev/shm", prefix="pyrt-test-sys-")
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def tmp(sys_shm_base):
    path = tempfile.mkdtemp(dir=sys_shm_base)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(autouse=True)
def leaves_nothing_behind(sys_shm_base):
    """No test changes our namespaces, leaves a mount under the test dirs or a child."""
    ns = {n: os.stat(f"/proc/self/ns/{n}").st_ino for n in ("mnt", "uts", "pid", "ipc", "net")}
    kids = children()
    yield
    assert {n: os.stat(f"/proc/self/ns/{n}").st_ino for n in ns} == ns
    assert [p for p in mountinfo() if p.startswith(sys_shm_base)] == []
    assert children() <= kids


# --- constants ------------------------------------------------------------------------


def test_constants_come_from_the_headers():
    assert psys.CLONE_NEWNS == 0x00020000
    assert psys.CLONE_NEWUSER == 0x10000000
    assert psys.CLONE_NEWCGROUP == 0x02000000
    assert psys.CLONE_NEWTIME == 0x80
    assert psys.CLONE_PIDFD == 0x1000
    assert psys.CLONE_INTO_CGROUP == 1 << 33
    assert (psys.MS_RDONLY, psys.MS_BIND, psys.MS_REC, psys.MS_PRIVATE) == (1, 4096, 16384, 1 << 18)
    assert (psys.MNT_FORCE, psys.MNT_DETACH, psys.MNT_EXPIRE, psys.UMOUNT_NOFOLLOW) == (1, 2, 4, 8)
    assert (psys.RESOLVE_BENEATH, psys.RESOLVE_IN_ROOT, psys.RESOLVE_CACHED) == (8, 16, 32)
    assert (psys.FSCONFIG_SET_STRING, psys.FSCONFIG_CMD_CREATE) == (1, 6)
    assert psys.MOUNT_ATTR_RDONLY == 1 and psys.MOUNT_ATTR_IDMAP == 0x00100000
    assert psys.MOVE_MOUNT_F_EMPTY_PATH == 4
    assert psys.OPEN_TREE_CLOEXEC == os.O_CLOEXEC
    assert psys.PIDFD_NONBLOCK == os.O_NONBLOCK
    assert (psys.AT_FDCWD, psys.AT_EMPTY_PATH, psys.AT_RECURSIVE) == (-100, 0x1000, 0x8000)
    assert psys.CLOSE_RANGE_CLOEXEC == 4
    assert "CLONE_NEWPID" in psys.__all__ and "mount" in psys.__all__


# --- the new mount API ----------------------------------------------------------------


def test_tmpfs_with_the_new_mount_api(tmp):
    target = os.path.join(tmp, "mnt")
    os.mkdir(target)

    def child():
        private_mount_ns()
        fd = psys.fsopen("tmpfs")
        try:
            psys.fsconfig(fd, psys.FSCONFIG_SET_STRING, "size", "1m")
            psys.fsconfig(fd, psys.FSCONFIG_SET_STRING, "mode", "0711")
            psys.fsconfig(fd, psys.FSCONFIG_CMD_CREATE)
            mfd = psys.fsmount(fd, attr_flags=psys.MOUNT_ATTR_NOSUID | psys.MOUNT_ATTR_NODEV)
        finally:
            os.close(fd)
        try:
            psys.move_mount(mfd, "", psys.AT_FDCWD, target, psys.MOVE_MOUNT_F_EMPTY_PATH)
        finally:
            os.close(mfd)
        with open(os.path.join(target, "hello"), "w") as f:
            f.write("inside")
        first = (mountinfo(target), os.statvfs(target).f_blocks * os.statvfs(target).f_frsize,
                 os.stat(target).st_mode & 0o7777)
        # fspick: reconfigure the superblock that is mounted there.
        fd = psys.fspick(psys.AT_FDCWD, target, psys.FSPICK_CLOEXEC)
        try:
            psys.fsconfig(fd, psys.FSCONFIG_SET_STRING, "size", "2m")
            psys.fsconfig(fd, psys.FSCONFIG_CMD_RECONFIGURE)
        finally:
            os.close(fd)
        return first, os.statvfs(target).f_blocks * os.statvfs(target).f_frsize

    (info, size, mode), resized = in_child(child)
    fstype, options, _ = info
    assert fstype == "tmpfs"
    assert "nosuid" in options and "nodev" in options
    assert size == 1 << 20 and resized == 2 << 20
    assert mode == 0o711
    # The mount lived only in the child's namespace.
    assert not os.path.ismount(target)
    assert os.listdir(target) == []


def test_fsconfig_error_carries_the_kernel_message():
    fd = psys.fsopen("tmpfs")
    try:
        with pytest.raises(OSError) as ei:
            psys.fsconfig(fd, psys.FSCONFIG_SET_STRING, "size", "lots")
        assert ei.value.errno == errno.EINVAL
        assert "tmpfs: Bad value for 'size'" in ei.value.strerror
        assert ei.value.filename == "lots"
        with pytest.raises(OSError, match="Unknown parameter 'nosuchkey'") as ei:
            psys.fsconfig(fd, psys.FSCONFIG_SET_FLAG, "nosuchkey")
        assert ei.value.filename == "nosuchkey"
        # The log was drained: a good parameter works and the next error has only its own message.
        psys.fsconfig(fd, psys.FSCONFIG_SET_STRING, "size", b"1m")
        with pytest.raises(OSError) as ei:
            psys.fsconfig(fd, psys.FSCONFIG_SET_STRING, "nr_inodes", "many")
        assert "size" not in ei.value.strerror and "nr_inodes" in ei.value.strerror
    finally:
        os.close(fd)


def test_fsmount_before_create_fails():
    fd = psys.fsopen("tmpfs")
    try:
        with pytest.raises(OSError) as ei:
            psys.fsmount(fd)
        assert ei.value.errno == errno.EINVAL
    finally:
        os.close(fd)


def test_fsopen_unknown_filesystem():
    with pytest.raises(OSError) as ei:
        psys.fsopen("no-such-fs")
    assert ei.value.errno == errno.ENODEV and ei.value.filename == "no-such-fs"


def test_fsconfig_on_a_non_context_fd_does_not_block():
    r, w = os.pipe()
    try:
        with pytest.raises(OSError) as ei:
            psys.fsconfig(r, psys.FSCONFIG_SET_STRING, "size", "1m")
        assert ei.value.errno == errno.EINVAL
    finally:
        os.close(r)
        os.close(w)


def test_open_tree_clone_and_mount_setattr_read_only(tmp):
    src, dst = os.path.join(tmp, "src"), os.path.join(tmp, "dst")
    os.mkdir(src)
    os.mkdir(dst)

    def child():
        private_mount_ns()
        psys.mount("tmpfs", src, "tmpfs", 0, "size=1m")
        with open(os.path.join(src, "file"), "w") as f:
            f.write("data")
        fd = psys.open_tree(psys.AT_FDCWD, src, psys.OPEN_TREE_CLONE | psys.OPEN_TREE_CLOEXEC)
        try:
            assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
            psys.mount_setattr(fd, "", psys.AT_EMPTY_PATH | psys.AT_RECURSIVE,
                               attr_set=psys.MOUNT_ATTR_RDONLY | psys.MOUNT_ATTR_NOEXEC)
            psys.move_mount(fd, "", psys.AT_FDCWD, dst, psys.MOVE_MOUNT_F_EMPTY_PATH)
        finally:
            os.close(fd)
        with open(os.path.join(dst, "file")) as f:
            seen = f.read()
        try:
            open(os.path.join(dst, "new"), "w").close()
            write_errno = 0
        except OSError as e:
            write_errno = e.errno
        open(os.path.join(src, "new"), "w").close()  # the source stays writable
        psys.mount_setattr(psys.AT_FDCWD, dst, propagation=psys.MS_PRIVATE)
        return seen, write_errno, mountinfo(src)[1], mountinfo(dst)[1]

    seen, write_errno, src_opts, dst_opts = in_child(child)
    assert seen == "data"
    assert write_errno == errno.EROFS
    assert "rw" in src_opts
    assert "ro" in dst_opts and "noexec" in dst_opts


def test_mount_setattr_and_open_tree_errors(tmp):
    missing = os.path.join(tmp, "missing")
    with pytest.raises(FileNotFoundError) as ei:
        psys.open_tree(psys.AT_FDCWD, missing, psys.OPEN_TREE_CLOEXEC)
    assert ei.value.filename == missing
    with pytest.raises(FileNotFoundError) as ei:
        psys.mount_setattr(psys.AT_FDCWD, missing, attr_set=psys.MOUNT_ATTR_RDONLY)
    assert ei.value.filename == missing
    with pytest.raises(FileNotFoundError) as ei:
        psys.fspick(psys.AT_FDCWD, missing, psys.FSPICK_CLOEXEC)
    assert ei.value.filename == missing


# --- classic mount, umount, pivot_root --------------------------------------------------


def test_mount_bind_remount_umount(tmp):
    a, b = pathlib.Path(tmp, "a"), os.path.join(tmp, "b").encode()
    a.mkdir()
    os.mkdir(b)

    def child():
        private_mount_ns()
        psys.mount("tmpfs", a, "tmpfs", psys.MS_NOSUID | psys.MS_NODEV, "size=1m,mode=0755")
        (a / "file").write_text("x")
        psys.mount(a, b, None, psys.MS_BIND)
        psys.mount(None, b, None, psys.MS_REMOUNT | psys.MS_BIND | psys.MS_RDONLY)
        mounted = mountinfo(a), mountinfo(os.fsdecode(b))
        with open(os.path.join(b, b"file")) as f:
            seen = f.read()
        try:
            open(os.path.join(b, b"new"), "w").close()
            write_errno = 0
        except OSError as e:
            write_errno = e.errno
        psys.umount2(b)
        psys.umount(a, psys.MNT_DETACH)
        return mounted, seen, write_errno, mountinfo(a), mountinfo(os.fsdecode(b))

    (info_a, info_b), seen, write_errno, after_a, after_b = in_child(child)
    assert info_a[0] == "tmpfs" and "nosuid" in info_a[1] and "size=1024k" in info_a[2]
    assert info_b[0] == "tmpfs" and "ro" in info_b[1]
    assert seen == "x" and write_errno == errno.EROFS
    assert after_a is None and after_b is None


def test_pivot_root_into_a_tmpfs(tmp):
    new_root = os.path.join(tmp, "root")
    os.mkdir(new_root)

    def child():
        private_mount_ns()
        psys.mount("tmpfs", new_root, "tmpfs", 0, "size=1m")
        os.mkdir(os.path.join(new_root, "old"))
        with open(os.path.join(new_root, "marker"), "w") as f:
            f.write("new root")
        psys.pivot_root(new_root, os.path.join(new_root, "old"))
        os.chdir("/")
        had_old = os.path.isdir("/old/proc")
        psys.umount2("/old", psys.MNT_DETACH)
        os.rmdir("/old")
        with open("/marker") as f:
            return had_old, sorted(os.listdir("/")), f.read()

    had_old, listing, marker = in_child(child)
    assert had_old
    assert listing == ["marker"]
    assert marker == "new root"


def test_pivot_root_error_names_both_paths(tmp):
    missing = os.path.join(tmp, "missing")
    with pytest.raises(FileNotFoundError) as ei:
        psys.pivot_root(missing, os.path.join(missing, "old"))
    assert ei.value.filename == missing
    assert ei.value.filename2 == os.path.join(missing, "old")


def test_mount_on_a_missing_target_names_it(tmp):
    missing = os.path.join(tmp, "missing")
    with pytest.raises(FileNotFoundError) as ei:
        psys.mount("tmpfs", missing, "tmpfs")
    assert ei.value.errno == errno.ENOENT
    assert ei.value.filename == missing and ei.value.filename2 is None
    assert missing in str(ei.value)
    path = pathlib.Path(missing)
    with pytest.raises(FileNotFoundError) as ei:
        psys.mount(path, tmp, None, psys.MS_BIND)
    assert ei.value.filename == path and ei.value.filename2 == tmp
    with pytest.raises(FileNotFoundError) as ei:
        psys.umount2(missing)
    assert ei.value.filename == missing


def test_umount_of_a_directory_that_is_not_a_mount(tmp):
    with pytest.raises(OSError) as ei:
        psys.umount(tmp)
    assert type(ei.value) is OSError and ei.value.errno == errno.EINVAL
    assert ei.value.filename == tmp


def test_embedded_null_byte_is_refused(tmp):
    with pytest.raises(ValueError):
        psys.mount("tmpfs", tmp + "\0/x", "tmpfs")


def test_errors_without_privilege_are_permission_errors(tmp):
    def drop_privileges():
        private_mount_ns()  # so that nothing could reach the host even if a call passed
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)

    def child():
        drop_privileges()
        errors = []
        for call in (lambda: psys.mount("tmpfs", "/", "tmpfs"),
                     lambda: psys.umount2("/"),
                     lambda: psys.unshare(psys.CLONE_NEWNS),
                     lambda: psys.sethostname("nope"),
                     lambda: psys.openat2(psys.AT_FDCWD, os.path.join(tmp, "x"), os.O_RDONLY)):
            try:
                call()
            except OSError as e:
                errors.append((type(e).__name__, e.errno, e.filename))
        return errors

    assert in_child(child) == [
        ("PermissionError", errno.EPERM, "/"),
        ("PermissionError", errno.EPERM, "/"),
        ("PermissionError", errno.EPERM, None),
        ("PermissionError", errno.EPERM, None),
        ("PermissionError", errno.EACCES, os.path.join(tmp, "x")),  # the 0700 test dir
    ]

    def child_raises():
        drop_privileges()
        psys.mount("tmpfs", "/", "tmpfs")

    with pytest.raises(PermissionError) as ei:
        in_child(child_raises)
    assert ei.value.filename == "/" and ei.value.errno == errno.EPERM


# --- unshare, setns, sethostname --------------------------------------------------------


def test_unshare_uts_sethostname_and_setns_back():
    host = socket.gethostname()

    def child():
        original = os.open("/proc/self/ns/uts", os.O_RDONLY | os.O_CLOEXEC)
        try:
            before = os.stat("/proc/self/ns/uts").st_ino
            psys.unshare(psys.CLONE_NEWUTS)
            psys.sethostname("pyrt-test-host")
            inside = socket.gethostname(), os.stat("/proc/self/ns/uts").st_ino != before
            psys.setns(original, psys.CLONE_NEWUTS)
            return inside, socket.gethostname(), os.stat("/proc/self/ns/uts").st_ino == before
        finally:
            os.close(original)

    (name, new_ns), back, same_ns = in_child(child)
    assert name == "pyrt-test-host" and new_ns
    assert back == host and same_ns
    assert socket.gethostname() == host


def test_setns_with_the_wrong_type_is_einval():
    fd = os.open("/proc/self/ns/uts", os.O_RDONLY | os.O_CLOEXEC)
    try:
        with pytest.raises(OSError) as ei:
            psys.setns(fd, psys.CLONE_NEWNET)
        assert ei.value.errno == errno.EINVAL
    finally:
        os.close(fd)


# --- openat2 --------------------------------------------------------------------------


@pytest.fixture
def rootfd(tmp):
    root = os.path.join(tmp, "rootfs")
    os.makedirs(os.path.join(root, "etc"))
    os.makedirs(os.path.join(root, "a", "b"))
    with open(os.path.join(root, "etc", "passwd"), "w") as f:
        f.write("inside\n")
    os.symlink("/", os.path.join(root, "abs"))
    os.symlink("../..", os.path.join(root, "a", "b", "up"))  # the root itself
    os.symlink("../..", os.path.join(root, "out"))  # above the root
    os.symlink("/etc/passwd", os.path.join(root, "passwd-link"))
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield fd
    finally:
        os.close(fd)


def read_fd(fd):
    try:
        return os.read(fd, 100)
    finally:
        os.close(fd)


@pytest.mark.parametrize("path", ["abs/etc/passwd", "out/etc/passwd", "a/b/up/../../etc/passwd",
                                  "passwd-link", "../../../etc/passwd", "/etc/passwd"])
def test_openat2_in_root_stays_inside(rootfd, path):
    fd = psys.openat2(rootfd, path, os.O_RDONLY | os.O_CLOEXEC, resolve=psys.RESOLVE_IN_ROOT)
    assert read_fd(fd) == b"inside\n"


@pytest.mark.parametrize("path", ["abs/etc/passwd", "out/etc/passwd", "passwd-link", "../x",
                                  "/etc/passwd"])
def test_openat2_beneath_refuses_escapes(rootfd, path):
    with pytest.raises(OSError) as ei:
        psys.openat2(rootfd, path, os.O_RDONLY, resolve=psys.RESOLVE_BENEATH)
    assert ei.value.errno == errno.EXDEV and ei.value.filename == path


def test_openat2_beneath_allows_what_stays_inside(rootfd):
    fd = psys.openat2(rootfd, "a/b/up/etc/passwd", os.O_RDONLY, resolve=psys.RESOLVE_BENEATH)
    assert read_fd(fd) == b"inside\n"


def test_openat2_flags_mode_and_errors(rootfd):
    fd = psys.openat2(rootfd, b"etc/new", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640,
                      psys.RESOLVE_NO_SYMLINKS)
    try:
        assert os.fstat(fd).st_mode & 0o777 == 0o640
        assert not fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC  # as the kernel gives it
    finally:
        os.close(fd)
    with pytest.raises(OSError) as ei:
        psys.openat2(rootfd, "passwd-link", os.O_RDONLY, resolve=psys.RESOLVE_NO_SYMLINKS)
    assert ei.value.errno == errno.ELOOP
    with pytest.raises(FileExistsError):
        psys.openat2(rootfd, "etc/new", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with pytest.raises(FileNotFoundError) as ei:
        psys.openat2(rootfd, pathlib.Path("etc/none"), os.O_RDONLY)
    assert ei.value.filename == pathlib.Path("etc/none")
    with pytest.raises(OSError) as ei:  # mode without O_CREAT
        psys.openat2(rootfd, "etc/passwd", os.O_RDONLY, 0o600)
    assert ei.value.errno == errno.EINVAL


# --- pidfds ---------------------------------------------------------------------------


def test_pidfd_open_and_send_signal_kill_a_child():
    proc = subprocess.Popen(["sleep", "60"])
    pidfd = -1
    try:
        pidfd = psys.pidfd_open(proc.pid, psys.PIDFD_NONBLOCK)
        assert fcntl.fcntl(pidfd, fcntl.F_GETFL) & os.O_NONBLOCK
        assert fcntl.fcntl(pidfd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
        assert select.select([pidfd], [], [], 0)[0] == []
        psys.pidfd_send_signal(pidfd, signal.SIGKILL)
        assert select.select([pidfd], [], [], TIMEOUT)[0] == [pidfd]  # readable once it exits
        assert proc.wait(TIMEOUT) == -signal.SIGKILL
        with pytest.raises(ProcessLookupError):  # reaped: the pidfd never hits a reused pid
            psys.pidfd_send_signal(pidfd, signal.SIGKILL)
    finally:
        if pidfd >= 0:
            os.close(pidfd)
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_pidfd_errors():
    with open("/proc/sys/kernel/pid_max") as f:
        pid_max = int(f.read())
    with pytest.raises(ProcessLookupError):
        psys.pidfd_open(pid_max + 1)
    with pytest.raises(OSError) as ei:
        psys.pidfd_open(0)
    assert ei.value.errno == errno.EINVAL
    with pytest.raises(OSError) as ei:
        psys.pidfd_send_signal(-1, signal.SIGTERM)
    assert ei.value.errno == errno.EBADF


def test_pidfd_getfd_duplicates_a_child_fd(tmp):
    path = os.path.join(tmp, "file")
    report_r, report_w = os.pipe()
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.close(report_r)
            os.close(done_w)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            os.write(report_w, str(fd).encode())
            os.close(report_w)
            os.read(done_r, 1)  # wait for the parent
            status = 0
        finally:
            os._exit(status)
    pidfd = -1
    try:
        os.close(report_w)
        os.close(done_r)
        report_w = done_r = -1
        if not select.select([report_r], [], [], TIMEOUT)[0]:
            raise TimeoutError("child did not report")
        target = int(os.read(report_r, 32))
        pidfd = psys.pidfd_open(pid)
        fd = psys.pidfd_getfd(pidfd, target)
        try:
            assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
            assert os.fstat(fd).st_ino == os.stat(path).st_ino
        finally:
            os.close(fd)
        with pytest.raises(OSError) as ei:
            psys.pidfd_getfd(pidfd, 9999)
        assert ei.value.errno == errno.EBADF
    finally:
        for fd in (pidfd, report_r, report_w, done_r, done_w):
            if fd >= 0:
                os.close(fd)  # closing done_w lets the child exit
        _reap(pid)


# --- close_range ----------------------------------------------------------------------


def test_close_range_in_a_child():
    def child():
        fds = list(range(200, 206))
        null = os.open("/dev/null", os.O_RDONLY)
        for fd in fds:
            os.dup2(null, fd, inheritable=True)
        os.close(null)
        psys.close_range(200, 202)
        closed = [fd_closed(fd) for fd in fds]
        psys.close_range(203, 204, psys.CLOSE_RANGE_CLOEXEC)
        cloexec = [bool(fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC) for fd in (203, 204, 205)]
        try:
            psys.close_range(10, 5)
            bad = None
        except OSError as e:
            bad = e.errno
        psys.close_range(205, 2**32 - 1)
        return closed, cloexec, bad, fd_closed(205)

    closed, cloexec, bad, last_closed = in_child(child)
    assert closed == [True, True, True, False, False, False]
    assert cloexec == [True, True, False]
    assert bad == errno.EINVAL
    assert last_closed
