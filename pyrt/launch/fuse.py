"""fuse-overlayfs for an ordinary user's containers (the `fuse-overlayfs` storage
driver, for a kernel that refuses overlay in a user namespace).

The union is mounted by `fuse-overlayfs -f` (Debian package fuse-overlayfs) run
by a keeper: a process pyrt starts per container run (and per copy into or out
of a stopped container) that joins the caller's shared user namespace
(pyrt.launch.userns.shared_fd), as its root makes a mount namespace of its own,
M, and starts the daemon there. The mount exists in M only: nothing is ever
mounted in the user's or the host's namespaces. A container is cloned from the
keeper's user and mount namespaces (spawn's SETUP_JOIN_MNT, the keeper's pidfd as
the spec's userns_fd), so its root is the FUSE mount; a detached container's
monitor keeps that pidfd for its restarts.

The keeper's life, told through a control socket:
- it says "P<pid>" (the caller opens its pidfd), then "R" once the mount is
  there, or "E<why>" (the daemon's last words) and waits for the caller to hang up;
- `hand_over(owner, victim)` gives it a pidfd of the process whose end ends the
  union (the container's init, or a detached container's monitor) and one of the
  process to kill should the daemon die (the container's init: a dead FUSE mount
  answers ENOTCONN to everything);
- the owner ended, or the caller hung up without handing over (a failed start,
  the end of a copy): it ends the daemon (SIGTERM, then SIGKILL) and exits, and M
  with its mount goes with the two of them.
The daemon dies with the keeper (PDEATHSIG), and holds with it the lock
containers/<id>/fuse.lock for as long as either lives: `wait_released` waits for
them before the upper dir is read or removed.

fuse-overlayfs takes its directories in one option string: a path with ',' or
':' is refused (`check_paths`)."""
from __future__ import annotations

import os
import signal
import stat
import sys
import time

from pyrt.errors import FuseError, InvalidArgument, PyrtError, Unsupported

PROGRAM = "fuse-overlayfs"
LOCK = "fuse.lock"
LOG = "fuse-overlayfs.log"
MERGED = "merged"
READY_TIMEOUT = 10.0  # seconds for the daemon to mount
STOP_TIMEOUT = 5.0    # seconds for the daemon to end on SIGTERM
INSTALL = "install the package fuse-overlayfs"


def program() -> str | None:
    """The path of fuse-overlayfs, or None."""
    from pyrt.launch.userns import find_helper
    return find_helper(PROGRAM)


def usable() -> str | None:
    """Why fuse-overlayfs cannot be used here (None: it can): the program or
    /dev/fuse missing or closed to the caller."""
    if program() is None:
        return f"{PROGRAM} not found ({INSTALL})"
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        return "/dev/fuse is missing or not readable and writable by you"
    return None


def check_paths(*paths) -> None:
    """fuse-overlayfs's options separate paths by ',' and ':': one line when a path
    holds either."""
    for p in paths:
        if "," in p or ":" in p:
            raise InvalidArgument(f"the fuse-overlayfs storage driver cannot use the path {p!r} (',' and ':' "
                                  "separate its options): use a store root without them (--root) or "
                                  "another storage driver")


def options(lowers, upper=None, work=None) -> str:
    """fuse-overlayfs's -o: read-only without an upper dir."""
    check_paths(*lowers, *(p for p in (upper, work) if p is not None))
    rw = f",upperdir={upper},workdir={work}" if upper is not None else ""
    return f"lowerdir={':'.join(lowers)}{rw},allow_other"


class Keeper:
    """A running keeper, its union mounted at `merged` in its mount namespace.
    `pidfd`: for spec.userns_fd with SETUP_JOIN_MNT, and `enter`."""

    def __init__(self, pid, pidfd, ctl, merged):
        self.pid, self.pidfd, self._ctl, self.merged = pid, pidfd, ctl, merged

    @classmethod
    def start(cls, cdir, lowers, upper=None, work=None, merged=None) -> "Keeper":
        """Mount upper over lowers (top-most first) at `merged` (default
        cdir/merged) in a new keeper's mount namespace; returns when it is
        mounted. Without an upper dir the union is read-only and takes no lock.
        FuseError (the daemon's own message) when it cannot be."""
        import socket
        if os.geteuid() == 0:
            raise Unsupported("the fuse-overlayfs storage driver is for an ordinary user (root has the kernel's "
                              "overlay: --storage-driver overlay)")
        why = usable()
        if why:
            raise FuseError(f"cannot mount the container's root with fuse-overlayfs: {why}")
        opts = options(lowers, upper, work)
        merged = merged or os.path.join(cdir, MERGED)
        from pyrt.launch import userns
        maps = userns.maps_for_caller()
        ufd = userns.shared_fd(maps)
        ctl, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError, AttributeError):
            pass
        try:
            pid = os.fork()
            if pid == 0:  # pragma: no cover (the keeper's parent: it leaves the keeper to init)
                try:
                    ctl.close()
                    os.setsid()
                    if os.fork() == 0:
                        _keeper(theirs, ufd, maps, cdir, merged, program(), opts, upper is not None)
                finally:
                    os._exit(0)
            os.waitpid(pid, 0)
        finally:
            theirs.close()
        keeper = None
        try:
            msg = ctl.recv(4096)
            if not msg.startswith(b"P"):
                raise FuseError("the fuse-overlayfs keeper ended before it started")
            kpid = int(msg[1:])
            keeper = cls(kpid, os.pidfd_open(kpid), ctl, merged)
            msg = ctl.recv(4096)
            if msg != b"R":
                why = msg[1:].decode(errors="replace") if msg.startswith(b"E") else "it ended"
                raise FuseError(f"fuse-overlayfs could not mount the container's root: {why}")
            return keeper
        except BaseException:
            if keeper is not None:
                keeper.close()
            else:
                ctl.close()
            raise

    def hand_over(self, owner: int, victim: int | None = None) -> None:
        """The union lives until the process behind the pidfd `owner` ends; `victim`
        (a pidfd) is killed should the daemon die. The fds are the caller's still."""
        import socket
        if self._ctl is None:
            return
        fds = [owner] + ([victim] if victim is not None else [])
        try:
            socket.send_fds(self._ctl, [b"O"], fds)
        finally:
            self._ctl.close()
            self._ctl = None

    def enter(self) -> None:
        """Join the keeper's mount namespace (a process that is root of the shared
        user namespace already, such as an in_userns child): `merged` is the union."""
        from pyrt import sys as psys
        psys.setns(self.pidfd, psys.CLONE_NEWNS)

    def wait(self, timeout: float = STOP_TIMEOUT + 1) -> bool:
        """Wait for the keeper to end (after its owner: it ends its daemon first)."""
        return self.pidfd < 0 or _wait_pidfd(self.pidfd, timeout)

    def close(self, wait: float | None = STOP_TIMEOUT + 1) -> None:
        """Hang up (before a hand-over: the keeper unmounts and ends) and forget it;
        `wait` seconds for it to end."""
        if self._ctl is not None:
            self._ctl.close()
            self._ctl = None
            if wait:
                _wait_pidfd(self.pidfd, wait)
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _wait_pidfd(fd: int, timeout: float) -> bool:
    import select
    p = select.poll()
    p.register(fd, select.POLLIN)
    return bool(p.poll(timeout * 1000))


def wait_released(cdir: str, timeout: float = STOP_TIMEOUT + 5, what: str = "the container") -> None:
    """Wait until no keeper or daemon of the container holds its upper dir (its
    fuse.lock is free)."""
    import fcntl
    try:
        fd = os.open(os.path.join(cdir, LOCK), os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise PyrtError(f"{what}'s fuse-overlayfs is still running after {timeout:g} s") from None
                time.sleep(0.005)
    finally:
        os.close(fd)


# -- the keeper (a forked process; never returns) ---------------------------------------------------

def _keeper(ctl, ufd, maps, cdir, merged, prog, opts, lock):  # pragma: no cover (runs in the keeper)
    status = 0
    try:
        import fcntl
        import select
        import socket
        keep = sorted({ctl.fileno(), ufd})
        os.chdir("/")  # pins no directory of the caller's
        signal.pthread_sigmask(signal.SIG_SETMASK, [])  # whatever the caller's thread blocked
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        devnull = os.open(os.devnull, os.O_RDWR)
        for std in (0, 1, 2):
            os.dup2(devnull, std)
        os.close(devnull)
        lo = 3
        for fd in keep:
            os.closerange(lo, fd)
            lo = fd + 1
        os.closerange(lo, 1 << 16)
        ctl.sendall(f"P{os.getpid()}".encode())
        try:
            daemon = _mount(ufd, maps, cdir, merged, prog, opts, lock and fcntl)
        except Exception as e:  # noqa: BLE001 (told to the caller)
            ctl.sendall(b"E" + str(e).encode(errors="replace")[:3000])
            ctl.recv(1)  # until the caller hangs up (it has our pidfd)
            os._exit(1)
        dfd = os.pidfd_open(daemon)
        ctl.sendall(b"R")
        poll = select.poll()
        poll.register(ctl.fileno(), select.POLLIN)
        poll.register(dfd, select.POLLIN)
        owner = victim = None
        while True:
            ready = {fd for fd, _ in poll.poll()}
            if dfd in ready:  # the daemon died under its container: end the container
                if victim is not None:
                    try:
                        signal.pidfd_send_signal(victim, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                break
            if owner is not None and owner in ready:
                break
            if ctl.fileno() in ready:
                try:
                    msg, fds, _, _ = socket.recv_fds(ctl, 16, 2)
                except OSError:
                    msg, fds = b"", []
                poll.unregister(ctl.fileno())
                if msg != b"O" or not fds:  # hung up before a hand-over
                    break
                owner, victim = fds[0], fds[1] if len(fds) > 1 else None
                poll.register(owner, select.POLLIN)
        _stop(daemon, dfd)
    except BaseException:  # noqa: BLE001
        status = 1
    finally:
        os._exit(status)


def _mount(ufd, maps, cdir, merged, prog, opts, fcntl) -> int:  # pragma: no cover (in the keeper)
    """As root of the shared user namespace in a mount namespace of our own, start
    the daemon (its lock held: `fcntl`, the module, else no lock) and wait for its
    mount; returns its pid."""
    from pyrt import sys as psys
    psys.setns(ufd, psys.CLONE_NEWUSER)
    os.close(ufd)
    psys.unshare(psys.CLONE_NEWNS)
    psys.mount(None, "/", None, psys.MS_REC | psys.MS_PRIVATE)
    if not maps.setgroups_deny:
        os.setgroups([])
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)
    if fcntl:
        lock = os.open(os.path.join(cdir, LOCK), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        deadline = time.monotonic() + STOP_TIMEOUT + 5
        while True:  # a previous run's daemon may still be ending
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise OSError("a previous fuse-overlayfs of this container is still running") from None
                time.sleep(0.005)
        os.set_inheritable(lock, True)  # held by the daemon too
    try:
        os.mkdir(merged, 0o755)
    except FileExistsError:
        pass
    before = os.stat(merged, follow_symlinks=False)
    if not stat.S_ISDIR(before.st_mode):
        raise OSError(f"{merged} is not a directory")
    log_path = os.path.join(cdir, LOG if fcntl else f"{LOG}.ro")
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    keeper = os.getpid()
    daemon = os.fork()
    if daemon == 0:
        try:
            psys.set_pdeathsig(signal.SIGTERM)
            if os.getppid() != keeper:
                os._exit(1)
            os.dup2(log, 1)
            os.dup2(log, 2)
            os.execv(prog, [prog, "-f", "-o", opts, merged])
        except BaseException as e:  # noqa: BLE001
            os.write(2, f"{prog}: {e}\n".encode(errors="replace"))
        os._exit(127)
    os.close(log)
    deadline = time.monotonic() + READY_TIMEOUT
    delay = 0.0005
    while os.stat(merged).st_dev == before.st_dev:
        done, status = os.waitpid(daemon, os.WNOHANG)
        if done:
            raise OSError(_last_words(log_path) or f"it exited with status {os.waitstatus_to_exitcode(status)}")
        if time.monotonic() >= deadline:
            os.kill(daemon, signal.SIGKILL)
            os.waitpid(daemon, 0)
            raise OSError(f"no mount after {READY_TIMEOUT:g} s")
        time.sleep(delay)
        delay = min(delay * 2, 0.01)
    return daemon


def _last_words(path) -> str:
    try:
        with open(path, "rb") as f:
            lines = [ln.strip() for ln in f.read()[-4000:].decode(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


def _stop(daemon, dfd) -> None:  # pragma: no cover (in the keeper)
    """End the daemon: SIGTERM (it unmounts), SIGKILL after STOP_TIMEOUT."""
    try:
        signal.pidfd_send_signal(dfd, signal.SIGTERM)
    except ProcessLookupError:
        pass
    if not _wait_pidfd(dfd, STOP_TIMEOUT):
        try:
            signal.pidfd_send_signal(dfd, signal.SIGKILL)
        except ProcessLookupError:
            pass
    os.waitpid(daemon, 0)
