"""The in-process API: pyrt.run and pyrt.spawn, shaped like subprocess.run and
subprocess.Popen, starting each command in a new container."""
from __future__ import annotations

import _thread  # threading.Lock is _thread.allocate_lock: threading itself costs a run more (measured)
import io
import os
import time

from pyrt import _core
from pyrt.errors import Conflict, InvalidArgument, PyrtError
from pyrt.launch.mounts import Bind
from pyrt.launch.spec import build_spec
from pyrt.launch.spec import DEFAULT_PATH, SpawnSpec, _anchor  # noqa: F401 (pyrt.ocirt imports them from here)
from pyrt.sys import pidfd_send_signal

# Imported where they are used: devices and cgroups (pyrt.cgroups.*) and terminals
# (pyrt.launch.tty). `pyrt ps` and `pyrt images` load this module and start nothing.

# The values subprocess uses, so either module's constants work with both.
PIPE = -1
STDOUT = -2
DEVNULL = -3


def __getattr__(name):
    """subprocess's exception and result types, imported on first use (the CLI
    starts faster without subprocess)."""
    if name in ("TimeoutExpired", "CalledProcessError"):
        import subprocess
        return getattr(subprocess, name)
    if name == "CompletedProcess":
        return _completed_process_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class Process:
    """A running container, like subprocess.Popen: pid, stdin/stdout/stderr,
    poll(), wait(), communicate(), send_signal(), terminate(), kill().
    Waiting and signalling go through a pidfd, so a reused pid is never hit."""

    def __init__(self, args, rootfs=None, *, stdin=None, stdout=None, stderr=None, text=False,
                 encoding=None, errors=None, cgroup=None, spec=None, tty=False, devices=(), reaper=None,
                 **options):
        """tty=True: the container gets a new pty of its own devpts as its stdio and
        controlling terminal; `pty` is then the master's fd, owned by this object
        (see pyrt.launch.tty.relay).

        devices: host device nodes to give the container (docker's --device forms,
        see pyrt.cgroups.devices.parse_device): bound in and allowed. A container with a
        rootfs that is given no `cgroup` (and no `spec`) starts in a cgroup that
        holds docker's device allow-list (pyrt.cgroups.devices): one this process shares
        among such containers (pyrt/run-<pid>), or with `devices` one of its own,
        removed when it is reaped. Where that cgroup cannot be made (no writable
        cgroup hierarchy) it runs without one: as root, nodev everywhere but /dev
        and without CAP_MKNOD instead (confine_without_device_cgroup); an ordinary
        user's container needs none (its user namespace keeps devices out).

        reaper: a pyrt.launch.reaper.Reaper, handed the container's pidfd before
        the container may run, and the device cgroup made for it (it ends the
        container and removes that cgroup should this process die)."""
        self.args = args
        self.pty = None
        self.returncode = None
        self.usage = None
        self.pid = None
        self._pidfd = -1
        self._lock = _thread.allocate_lock()
        self._own_cgroup = None
        self.stdin = self.stdout = self.stderr = None
        self.text_mode = bool(text or encoding or errors)
        self._encoding, self._errors = encoding, errors
        if devices:
            from pyrt.cgroups.devices import parse_device
            devices = [parse_device(d) for d in devices]
            if spec is not None or rootfs is None:
                raise InvalidArgument("devices need a rootfs (and no prepared spec)")
            options["mounts"] = list(options.get("mounts") or ()) + [
                Bind(d.host_path, d.container_path) for d in devices]
        if spec is None:  # else an already resolved SpawnSpec (see build_spec)
            spec = build_spec(args, rootfs, **options)
            own = cgroup is None and rootfs is not None and not options.get("privileged")
        else:
            own = False
        spec.reaper_fd = reaper.fileno() if reaper is not None else -1
        _reap_finished()

        to_close, parent_ends = [], []
        console = None
        if tty:
            if stdin is not None or stdout is not None or stderr is not None:
                raise InvalidArgument("tty=True gives the container a terminal as stdio: "
                                 "stdin, stdout and stderr must be None")
            from pyrt.launch.tty import console_socket
            console, theirs = console_socket()
            to_close.append(theirs.detach())
            spec.console_fd = to_close[-1]
        if own and devices:
            cgroup = self._own_cgroup = _device_cgroup(devices)
        elif own:
            cgroup = _default_device_cgroup()
        if reaper is not None and own and cgroup is not None:  # made for it (or this process's): empty, it goes
            reaper.rmdir_on_death(cgroup.dirs)
        if own and cgroup is None:
            confine_without_device_cgroup(spec)
        if cgroup is not None:  # (v2 dir fd, v1 cgroup.procs fds), held for the spawn only
            try:
                spec.cgroup_fd, spec.cgroup_procs_fds = cgroup.spawn_fds()
            except BaseException:
                self._remove_own_cgroup()
                raise
        try:
            fds = []
            for i, what in enumerate((stdin, stdout, stderr)):
                fds.append(self._child_fd(i, what, fds, to_close, parent_ends))
            spec.stdio = tuple(fds)
            self.pid, self._pidfd = _core.spawn(spec)
            self.started = time.monotonic()
        except BaseException:
            for _, fd in parent_ends:
                os.close(fd)
            if console is not None:
                console.close()
            if self._own_cgroup is not None:
                self._own_cgroup.close_fds()
                self._remove_own_cgroup()
                cgroup = None
            raise
        finally:
            if cgroup is not None:
                cgroup.close_fds()
            for fd in to_close:
                try:
                    os.close(fd)
                except OSError:
                    pass
        if console is not None:
            from pyrt.launch.tty import receive_master
            self.pty = receive_master(console)
        for i, fd in parent_ends:
            f = io.open(fd, "wb" if i == 0 else "rb", buffering=-1)
            if self.text_mode:
                f = io.TextIOWrapper(f, encoding=encoding, errors=errors, write_through=i == 0)
            setattr(self, ("stdin", "stdout", "stderr")[i], f)

    @staticmethod
    def _child_fd(i, what, fds, to_close, parent_ends):
        if what is None:
            return -1
        if what == PIPE:
            r, w = os.pipe()
            child, parent = (r, w) if i == 0 else (w, r)
            to_close.append(child)
            parent_ends.append((i, parent))
            return child
        if what == DEVNULL:
            fd = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
            to_close.append(fd)
            return fd
        if what == STDOUT:
            if i != 2:
                raise InvalidArgument("STDOUT is only valid for stderr")
            return fds[1] if fds[1] >= 0 else 1
        if isinstance(what, int):
            return what
        return what.fileno()

    @property
    def pidfd(self) -> int:
        """The pidfd (readable once the process has exited; -1 after it is reaped)."""
        return self._pidfd

    # -- waiting ------------------------------------------------------------
    def _finish(self, result):
        status, self.usage = result
        self.returncode = os.waitstatus_to_exitcode(status)
        os.close(self._pidfd)
        self._pidfd = -1
        self._remove_own_cgroup()
        return self.returncode

    def _remove_own_cgroup(self):
        cg, self._own_cgroup = self._own_cgroup, None
        if cg is not None:
            try:
                cg.remove()
            except OSError:
                pass  # left for pyrt.cgroups.cgroup.prune

    def poll(self):
        with self._lock:
            if self.returncode is None:
                result = _core.wait(self._pidfd, 0)
                if result is not None:
                    self._finish(result)
        return self.returncode

    def wait(self, timeout=None):
        if self.returncode is not None:
            return self.returncode
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            if self.returncode is None:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                result = _core.wait(self._pidfd, left)
                if result is None:
                    from subprocess import TimeoutExpired
                    raise TimeoutExpired(self.args, timeout)
                self._finish(result)
        return self.returncode

    def send_signal(self, sig):
        with self._lock:
            if self.returncode is None:
                try:
                    pidfd_send_signal(self._pidfd, sig)
                except ProcessLookupError:
                    pass  # exited, not reaped yet

    def terminate(self):
        self.send_signal(15)  # SIGTERM

    def kill(self):
        self.send_signal(9)  # SIGKILL

    # -- pipes --------------------------------------------------------------
    def communicate(self, input=None, timeout=None):
        """Send input, read stdout/stderr to the end, wait. Like Popen.communicate."""
        deadline = None if timeout is None else time.monotonic() + timeout
        out, err = _pump(self, input, deadline, timeout)
        self.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        if self.text_mode:
            enc, errs = self._encoding or "utf-8", self._errors or "strict"
            out = out.decode(enc, errs) if out is not None else None
            err = err.decode(enc, errs) if err is not None else None
        return out, err

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for f in (self.stdout, self.stderr, self.stdin):
            if f:
                try:
                    f.close()
                except OSError:
                    pass
        if self.pty is not None:
            os.close(self.pty)
            self.pty = None
        self.wait()

    def __del__(self):
        if getattr(self, "_pidfd", -1) >= 0 and self.returncode is None:
            _unreaped.append(self._pidfd)  # reaped later, like subprocess does
            if getattr(self, "_own_cgroup", None) is not None:
                _unreaped_cgroups[self._pidfd] = self._own_cgroup
                self._own_cgroup = None
            self._pidfd = -1

    def __repr__(self):
        return f"<pyrt.Process pid={self.pid} returncode={self.returncode}>"


_unreaped: list[int] = []
_unreaped_cgroups: dict = {}  # pidfd -> the device cgroup to remove once it is reaped
def confine_without_device_cgroup(spec) -> None:
    """No device cgroup holds this container (none could be made: no cgroup
    hierarchy, a read-only one, eBPF refused): as root it could open a host
    device through a node in its image, in a volume or one it makes. So its root
    and every mount but /dev are nodev (spawn's SETUP_NODEV; a device node bound
    in on purpose keeps working) and it has no CAP_MKNOD: the nodes pyrt puts in
    its /dev (docker's list) are all it can open. An ordinary user's container
    needs none of this: its user namespace keeps host devices out."""
    from pyrt.launch import caps
    from pyrt.paths import ordinary_user
    if ordinary_user():
        return
    spec.setup |= _core.SETUP_NODEV
    spec.caps &= ~caps.mask(["MKNOD"])


_device_cgroups = None


def _device_cgroup(devices, name=None):
    """A cgroup of its own for a container started without one, for its device
    allow-list (docker's defaults plus `devices`): pyrt/run-<pid>-<n>. Only root
    can make it; None when it cannot be made (then nothing changes). Cheap where
    there is cgroup2 (a mkdir and an eBPF program; the child is cloned into it);
    on a pure v1 host it costs a v1 join."""
    global _device_cgroups
    if os.geteuid() != 0:
        return None
    from pyrt.cgroups.cgroup import Cgroup, layout
    from pyrt.cgroups.devices import rules_with
    if layout().mode == "none":
        return None
    if _device_cgroups is None:
        import itertools
        _device_cgroups = itertools.count()
    for _ in range(16):
        try:
            return Cgroup.create(name or f"run-{os.getpid()}-{next(_device_cgroups)}", devices=rules_with(devices))
        except Conflict:
            # one of this name holds processes (an earlier process of our pid left
            # containers there, or someone put them there): never run without the
            # device list for that, take a name of our own instead
            name = None
        except (OSError, PyrtError):
            return None
    return None


_default_devices = None  # (pid, Cgroup): this process's shared cgroup with docker's device list
_default_devices_lock = _thread.allocate_lock()


def _default_device_cgroup():
    """The cgroup every container this process starts without a cgroup (and without
    extra devices) shares for docker's device allow-list: pyrt/run-<pid>, made on
    first use and removed at exit. One per process rather than one per container:
    a run then costs no cgroup of its own (a mkdir, an eBPF program, an rmdir)."""
    global _default_devices
    with _default_devices_lock:
        if _default_devices is None or _default_devices[0] != os.getpid():
            cg = _device_cgroup((), name=f"run-{os.getpid()}")
            if cg is None:
                return None
            _default_devices = (os.getpid(), cg)
            import atexit
            atexit.register(_remove_default_device_cgroup, os.getpid())
        return _default_devices[1]


def _remove_default_device_cgroup(pid):
    if _default_devices is not None and _default_devices[0] == pid == os.getpid():
        for d in _default_devices[1].dirs:  # only when empty: containers may outlive us, as subprocesses do
            try:
                os.rmdir(d)
            except OSError:
                pass


def _reap_finished():
    for pidfd in list(_unreaped):
        try:
            done = _core.wait(pidfd, 0)
        except OSError:
            done = True
        if done is not None:
            _unreaped.remove(pidfd)
            os.close(pidfd)
            cg = _unreaped_cgroups.pop(pidfd, None)
            if cg is not None:
                try:
                    cg.remove()
                except OSError:
                    pass  # left for pyrt.cgroups.cgroup.prune


def _pump(proc, input, deadline, timeout):
    """Write input and read both outputs without deadlocking on full pipes."""
    import selectors
    from subprocess import TimeoutExpired
    stdin = proc.stdin.buffer if proc.text_mode and proc.stdin else proc.stdin
    outs = {}
    sel = selectors.DefaultSelector()
    try:
        if stdin:
            if input:
                data = input.encode(proc._encoding or "utf-8") if isinstance(input, str) else bytes(input)
                stdin.flush()
                sel.register(stdin, selectors.EVENT_WRITE, memoryview(data))
            else:
                stdin.close()
        for name in ("stdout", "stderr"):
            f = getattr(proc, name)
            if f:
                f = f.buffer if proc.text_mode else f
                outs[name] = []
                sel.register(f, selectors.EVENT_READ, name)
        while sel.get_map():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutExpired(proc.args, timeout)
            for key, _ in sel.select(left):
                if key.fileobj is stdin:
                    view = key.data
                    try:
                        n = os.write(stdin.fileno(), view[:65536])
                    except BrokenPipeError:
                        n = len(view)
                    view = view[n:]
                    if view:
                        sel.modify(stdin, selectors.EVENT_WRITE, view)
                    else:
                        sel.unregister(stdin)
                        stdin.close()
                else:
                    chunk = os.read(key.fileobj.fileno(), 65536)
                    if chunk:
                        outs[key.data].append(chunk)
                    else:
                        sel.unregister(key.fileobj)
                        key.fileobj.close()
    finally:
        sel.close()
    out = b"".join(outs["stdout"]) if "stdout" in outs else None
    err = b"".join(outs["stderr"]) if "stderr" in outs else None
    return out, err


_CompletedProcess = None


def _completed_process_class():
    global _CompletedProcess
    if _CompletedProcess is None:
        import subprocess

        class CompletedProcess(subprocess.CompletedProcess):
            """subprocess.CompletedProcess plus `usage`: (utime, stime, maxrss KiB,
            voluntary and involuntary context switches) of the container's init."""

            usage = None

        CompletedProcess.__module__ = __name__
        _CompletedProcess = CompletedProcess
    return _CompletedProcess


def spawn(args, rootfs=None, **kwargs) -> Process:
    """Start `args` in a new container and return at once (like subprocess.Popen).
    The container runs under pyrt's default seccomp profile unless `seccomp=None`
    (or a profile of its own) is given: see pyrt.launch.spec.build_spec for every option."""
    return Process(args, rootfs, **kwargs)


def run(args, rootfs=None, *, input=None, capture_output=False, timeout=None, check=False, **kwargs):
    """Run `args` in a new container and wait for it (like subprocess.run).
    The container runs under pyrt's default seccomp profile unless `seccomp=None`
    (or a profile of its own) is given: see pyrt.launch.spec.build_spec for every option.
    (pyrt.run is pyrt.api.run: this, or with `profile=` a measured run of the pool.)"""
    if input is not None:
        if kwargs.get("stdin") is not None:
            raise InvalidArgument("stdin and input arguments may not both be used")
        kwargs["stdin"] = PIPE
    if capture_output:
        if kwargs.get("stdout") is not None or kwargs.get("stderr") is not None:
            raise InvalidArgument("stdout and stderr arguments may not be used with capture_output")
        kwargs["stdout"] = kwargs["stderr"] = PIPE
    with Process(args, rootfs, **kwargs) as p:
        try:
            out, err = p.communicate(input, timeout=timeout)
        except BaseException:  # a timeout, or an interrupt: the container goes too
            p.kill()
            raise
    result = _completed_process_class()(args, p.returncode, out, err)
    result.usage = p.usage
    if check:
        result.check_returncode()
    return result
