"""The OCI runtime's operations, as `pyrt-runtime` (pyrt/cli/oci_runtime.py) calls
them; the command line only parses, calls and prints.

    ops = Operations(root, warn=log.warn, debug=log.dbg)
    made = ops.create(cid, bundle, pid_file=..., console_socket=...)   # set up, waiting
    ops.start(cid); ops.state(cid); ops.kill(cid, signal.SIGTERM); ops.delete(cid)
    code = ops.run(cid, bundle)                       # create + start + wait + delete
    code = ops.exec(cid, process_dict, detach=False)  # another process in it
    ops.pids(cid); ops.list(); ops.pause(cid); ops.resume(cid)

`create` sets the container up completely and leaves its process waiting just
before the program (on the exec FIFO in the state directory) until `start`; a set-up
error fails `create` itself. With prestart, createRuntime or createContainer hooks
the set-up stops once for them, before pivot_root (csrc/oci.h). The process outlives `create` (engines adopt it as a
subreaper). Errors are pyrt.errors' classes: ContainerNotFound, ConfigError,
SpawnError, CgroupError, OciRuntimeError (a state that does not allow the
operation, a failed hook, ...), Unsupported.
"""
from __future__ import annotations

import errno
import os
import signal
import stat
import time

from pyrt.errors import ContainerNotFound, OciRuntimeError, Unsupported
from pyrt.ocirt import hooks
from pyrt.ocirt.state import Container, start_time, wait_exit, write_pid_file
from pyrt.paths import ordinary_user


def _engine_scope_limits(resources) -> tuple:
    """The memory and pids limits of linux.resources as properties of the
    scope systemd makes (MemoryMax, TasksMax), which write them on the scope."""
    props = []
    limit = (resources.get("memory") or {}).get("limit")
    if isinstance(limit, int) and limit > 0:
        props.append(("MemoryMax", "t", limit))
    pids = resources.get("pids")
    if isinstance(pids, int) and pids > 0:
        props.append(("TasksMax", "t", pids))
    return tuple(props)


def _open_namespace(path) -> int:
    """A namespace file of linux.namespaces[].path, opened: never waiting (a FIFO put
    there since the config was checked) nor taking a terminal, and a regular file
    (as nsfs files are) or refused."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), path)
    return fd


class Created:
    """What create leaves: the container, the pidfd of its process, and (for run in
    the foreground) our fd of its exec FIFO (-1 otherwise)."""

    def __init__(self, container, pidfd, wait_fd):
        self.container, self.pidfd, self.wait_fd = container, pidfd, wait_fd


def _quiet(msg: str) -> None:
    pass


class Operations:
    def __init__(self, root: str, *, warn=None, debug=None, systemd_cgroup: bool = False):
        self.root = root
        self.warn = warn or _quiet
        self.debug = debug or _quiet
        self.systemd_cgroup = systemd_cgroup

    def container(self, cid: str, *, lock: bool = False) -> Container:
        c = Container(self.root, cid)
        if lock:
            c.lock()
        return c.load()

    # -- create / start / run ------------------------------------------------------

    def create(self, cid: str, bundle: str | None = None, *, pid_file=None, console_socket=None,
               no_new_keyring=False, preserve_fds=None, foreground=False) -> Created:
        """Set the container up and leave it waiting for start. The caller closes
        the pidfd (and wait_fd, with foreground=True)."""
        from pyrt import _core
        from pyrt.cgroups.oci import apply_resources, resource_controllers
        from pyrt.ocirt import spec as rs
        from pyrt.ocirt.state import rfc3339

        if preserve_fds not in (None, 0, "0"):
            raise Unsupported("--preserve-fds is not supported by pyrt-runtime")
        if self.systemd_cgroup:
            why = rs.systemd_unavailable()
            if why:
                raise Unsupported(why)
        bundle = os.path.abspath(bundle or os.getcwd())
        cfg = rs.load_config(bundle)
        plan = rs.parse(cfg, bundle, container_id=cid, systemd_cgroup=self.systemd_cgroup)
        for w in plan.warnings:
            self.warn(w)
        resources = plan.resources
        if ordinary_user():
            # an ordinary user (or root of a user namespace, a rootless engine's): no device cgroup (the user namespace and the host's
            # permissions keep devices out, as with runc --rootless); a cgroup only
            # inside the subtree systemd delegates to it, a limit elsewhere refused
            resources = {k: v for k, v in resources.items() if k != "devices"}
            if plan.systemd_unit is None and (resources or self.systemd_cgroup):
                from pyrt.cgroups import delegation
                delegation.require("--systemd-cgroup" if self.systemd_cgroup else "linux.resources")
        if plan.terminal and not console_socket:
            raise OciRuntimeError("process.terminal is true: a --console-socket is needed to pass the "
                                  "terminal (set terminal to false to run without one)")

        c = Container(self.root, cid)
        c.create_dir()  # ours alone: no lock is held here, its fd would be the parked child's too
        c.rec = {"id": cid, "status": "creating", "bundle": bundle,
                 "rootfs": os.path.realpath(os.path.join(bundle, cfg["root"]["path"])),
                 "created": rfc3339(time.time()), "owner": "", "annotations": plan.annotations,
                 "oci_version": cfg.get("ociVersion"), "hooks": plan.hooks, "process": plan.process,
                 "pid": 0, "start_time": 0, "started": False,
                 "seccomp": (cfg.get("linux") or {}).get("seccomp")}  # for exec'd processes too
        fds, cg, pidfd, pid, wait_fd, msgfd, go_fd = [], None, -1, 0, -1, -1, -1
        ok = in_hooks = scope = False
        # the scope a rootless engine named (--systemd-cgroup) is what it reads as the
        # container's cgroup (podman's stats: its PIDs, memory and limits): the limits
        # there too, and no placeholder of ours in it once the container holds it
        engine_scope = self.systemd_cgroup and ordinary_user()
        try:
            # the cgroup (always: ps, kill --all, pause, delete use it) and its limits
            from pyrt.cgroups.cgroup import Cgroup, Limits, layout
            if plan.systemd_unit:
                # --systemd-cgroup, or an ordinary user's (its systemd instance's): in a
                # delegated scope of its own
                from pyrt.cgroups import systemd as cgroup_systemd
                cgroup_systemd.start_unit(plan.systemd_unit, plan.systemd_slice, layout().unified,
                                          f"pyrt-runtime container {cid}", scope=plan.systemd_scope,
                                          properties=_engine_scope_limits(resources) if engine_scope else ())
                scope = True
                c.rec.update(systemd_unit=plan.systemd_unit, systemd_scope=plan.systemd_scope,
                             cgroup_parent=plan.cgroup_parent)
            if ordinary_user() and not scope:
                pass  # an ordinary user without delegation, no limit asked: no cgroup (checked above)
            elif layout().mode != "none" and plan.cgroup_name:
                cg = Cgroup.create(plan.cgroup_name, Limits(), plan.cgroup_parent,
                                   accounting=resource_controllers(resources), devices=None)
                c.rec.update(cgroup_name=plan.cgroup_name, cgroup_parent=plan.cgroup_parent)
                apply_resources(cg, resources)
                plan.spec.cgroup_fd, plan.spec.cgroup_procs_fds = cg.spawn_fds()
            elif resources:
                raise Unsupported("linux.resources: no cgroup hierarchy is mounted on this host")
            plan.add_cgroup_mounts(cg)
            c.save()  # "creating": a crash from here on leaves what delete --force cleans up

            plan.oci.new_keyring = not no_new_keyring
            os.mkfifo(c.fifo, 0o600)
            wait_fd = os.open(c.fifo, os.O_RDWR | os.O_CLOEXEC)
            plan.oci.wait_fd = wait_fd
            if console_socket:
                fds.append(_connect(console_socket))
                if plan.terminal:
                    plan.spec.console_fd = fds[-1]
            for kind, path in plan.joins:
                fd = _open_namespace(path)
                fds.append(fd)
                plan.oci.joins.append((fd, kind))
            if plan.pid_join:
                from pyrt import sys as psys
                fd = _open_namespace(plan.pid_join)
                try:
                    psys.setns(fd, rs.CLONE["pid"])  # our next child is born in it
                finally:
                    os.close(fd)

            early = [k for k in ("prestart", "createRuntime", "createContainer") if (plan.hooks or {}).get(k)]
            if early:
                # the child stops for these hooks once its mounts are made, before
                # pivot_root (csrc/oci.h), and goes on to wait for start after them
                hooks_r, go_fd = os.pipe2(os.O_CLOEXEC)
                plan.oci.hooks = (hooks_r, go_fd)
                try:
                    pid, pidfd, msgfd = _core.spawn_stopped(plan.spec)
                finally:
                    os.close(hooks_r)
            else:
                pid, pidfd = _core.spawn(plan.spec)
            c.rec.update(pid=pid, start_time=start_time(pid))
            c.save()  # still "creating" (the hooks' state says so) until it waits for start
            if scope and engine_scope:
                cgroup_systemd.drop_placeholder(plan.systemd_scope, layout().unified)
            if plan.oom_score_adj is not None:
                try:
                    with open(f"/proc/{pid}/oom_score_adj", "w") as f:
                        f.write(str(plan.oom_score_adj))
                except OSError as e:
                    raise OciRuntimeError(f"set oom_score_adj to {plan.oom_score_adj}: {e.strerror}") from None
            state = c.oci_state()
            in_hooks = True  # from here a failure also runs the poststop hooks (the spec's step 12)
            hooks.run_hooks(c, "prestart", state)
            hooks.run_hooks(c, "createRuntime", state)
            hooks.run_hooks(c, "createContainer", state)
            if msgfd >= 0:
                fd, msgfd = msgfd, -1
                _core.spawn_resume(fd, go_fd)  # pivot_root, the rest of the set-up, the wait
            c.rec["status"] = "created"
            c.save()
            if pid_file:
                write_pid_file(pid_file, pid)
            ok = True
        finally:
            if cg is not None:
                cg.close_fds(force=True)
            for fd in fds + [f for f in (msgfd, go_fd) if f >= 0]:
                os.close(fd)
            if not ok:
                if pidfd >= 0:
                    _kill_and_reap(pidfd)
                    os.close(pidfd)
                if wait_fd >= 0:
                    os.close(wait_fd)
                if cg is not None:
                    try:
                        cg.remove()
                    except OSError as e:
                        self.warn(f"remove cgroup: {e}")
                if scope:
                    self._stop_scope(c)
                if in_hooks:
                    hooks.run_hooks(c, "poststop", dict(c.oci_state(), status="stopped", pid=0),
                                    warn=self.warn)
                c.remove()
        if not foreground:
            os.close(wait_fd)
            wait_fd = -1
        return Created(c, pidfd, wait_fd)

    def _start(self, c, wait_fd=-1) -> None:
        """Let the created container's process exec its program."""
        st = c.status()
        if st != "created":
            raise OciRuntimeError(f"container {c.id} is {st}: only a created container can be started")
        state = c.oci_state()
        try:
            hooks.run_hooks(c, "startContainer", state)
        except OciRuntimeError:
            # the spec: stop the container, destroy it, run the poststop hooks
            self._delete(c, force=True)
            raise
        try:
            fd = wait_fd if wait_fd >= 0 else os.open(c.fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            raise OciRuntimeError(f"start {c.id}: its process is gone ({e.strerror})") from None
        try:
            os.write(fd, b"1")
        finally:
            if fd != wait_fd:
                os.close(fd)
        c.rec["started"] = True
        c.save()
        try:
            os.unlink(c.fifo)
        except FileNotFoundError:
            pass
        hooks.run_hooks(c, "poststart", dict(state, status="running"), warn=self.warn)

    def start(self, cid: str) -> None:
        self._start(self.container(cid, lock=True))

    def run(self, cid: str, bundle: str | None = None, *, detach=False, keep=False, **create_opts) -> int:
        """create + start; in the foreground also wait for the container, with our
        signals forwarded to it (as runc run), and delete it (unless keep). Returns
        its exit status (128+N when killed by signal N); 0 when detached."""
        from pyrt import _core
        made = self.create(cid, bundle, foreground=not detach, **create_opts)
        c, pidfd, wait_fd = made.container, made.pidfd, made.wait_fd
        if detach:
            c.lock()
            try:
                self._start(c)
            except BaseException:
                if c.exists():
                    self._delete(c, force=True)
                raise
            finally:
                os.close(pidfd)
            return 0
        forward_signals(pidfd, (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
                                signal.SIGUSR1, signal.SIGUSR2))
        try:
            try:
                self._start(c, wait_fd)
            finally:
                os.close(wait_fd)
            res = _core.wait(pidfd)
            code = exit_code(res[0])
        except BaseException:
            _kill_and_reap(pidfd)
            os.close(pidfd)
            if c.exists():  # (a failed startContainer hook deleted it already)
                self._delete(c.load(), force=True)
            raise
        os.close(pidfd)
        if not keep:
            c.lock()
            self._delete(c.load(), force=True)
        return code

    # -- state / kill / delete -----------------------------------------------------

    def state(self, cid: str) -> dict:
        return self.container(cid).oci_state()

    def kill(self, cid: str, sig: int = signal.SIGTERM, *, all: bool = False) -> None:
        c = self.container(cid)
        st = c.status()
        if st == "stopped":
            raise OciRuntimeError(f"container {cid} is not running")
        if all:
            cg = c.cgroup()
            if cg is not None:
                _kill_all(cg, sig)
                return
        fd = c.pidfd()
        if fd is None:
            raise OciRuntimeError(f"container {cid} is not running")
        try:
            signal.pidfd_send_signal(fd, sig)
        except ProcessLookupError:
            raise OciRuntimeError(f"container {cid} is not running") from None
        finally:
            os.close(fd)
        if sig == signal.SIGKILL and st == "paused":
            _thaw(c)

    def _delete(self, c, force=False) -> None:
        st = c.status()
        if st in ("running", "paused") and not force:
            raise OciRuntimeError(f"container {c.id} is {st}: stop it first, or delete --force")
        cg = c.cgroup()
        if st != "stopped":
            fd = c.pidfd()
            if fd is not None:
                try:
                    try:
                        signal.pidfd_send_signal(fd, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    if st == "paused":
                        _thaw(c)
                    if not wait_exit(fd, 10):
                        self.warn(f"container {c.id}: its process did not exit after SIGKILL")
                finally:
                    os.close(fd)
        if cg is not None:
            try:
                cg.remove()
            except OSError as e:
                self.warn(f"remove cgroup of {c.id}: {e}")
        if c.rec.get("systemd_unit"):
            self._stop_scope(c)
        if c.rec.get("status") != "creating":
            hooks.run_hooks(c, "poststop", dict(c.oci_state(), status="stopped"), warn=self.warn)
        c.remove()

    def _stop_scope(self, c) -> None:
        """Stop the systemd scope create made (--systemd-cgroup); a failure warns."""
        from pyrt.cgroups import systemd as cgroup_systemd
        from pyrt.cgroups.cgroup import layout
        try:
            cgroup_systemd.stop_unit(c.rec["systemd_unit"], c.rec.get("systemd_scope") or c.rec["cgroup_parent"],
                                     layout().unified)
        except OSError as e:
            self.warn(f"stop the scope {c.rec['systemd_unit']} of {c.id}: {e}")

    def delete(self, cid: str, *, force: bool = False) -> None:
        try:
            c = self.container(cid, lock=True)
        except ContainerNotFound:
            if not force:
                raise
            Container(self.root, cid).remove()  # as runc: a half-made leftover goes, no error
            return
        self._delete(c, force=force)

    # -- exec ------------------------------------------------------------------------

    def exec(self, cid: str, proc: dict, *, detach=False, pid_file=None, console_socket=None,
             ignore_paused=False, preserve_fds=None) -> int:
        """Run `proc` (a config's `process` object) in the container. Returns its exit
        status when not detached (we wait, our signals forwarded to it), else 0."""
        from pyrt import _core
        from pyrt.launch.seccomp import compile_seccomp
        from pyrt.launch.spec import build_exec_spec
        from pyrt.ocirt import spec as rs
        if preserve_fds not in (None, 0, "0"):
            raise Unsupported("--preserve-fds is not supported by pyrt-runtime")
        c = self.container(cid)
        st = c.status()
        if st == "paused" and not ignore_paused:
            raise OciRuntimeError(f"container {cid} is paused: resume it first")
        if st not in ("created", "running", "paused"):
            raise OciRuntimeError(f"container {cid} is {st}: cannot exec in it")
        # the process through the same validation as a config's
        fake = {"ociVersion": "1.1.0", "process": proc, "root": {"path": "/"},
                "linux": {"namespaces": [{"type": "mount"}]}}
        spec = rs.parse(fake, "/").spec
        # the container's seccomp profile binds its exec'd processes too (as in runc)
        seccomp, seccomp_flags = compile_seccomp(c.rec["seccomp"]) if c.rec.get("seccomp") else (None, 0)
        terminal = bool(proc.get("terminal"))
        if terminal and not console_socket:
            raise OciRuntimeError("exec with a terminal needs --console-socket")
        cg = c.cgroup()
        cfds = cg.spawn_fds() if cg is not None else (-1, [])
        master = slave = -1
        try:
            stdio = (-1, -1, -1)
            if terminal:
                from pyrt.launch.tty import open_pty_in
                master, slave = open_pty_in(c.rec["pid"])
                stdio = (slave, slave, slave)
            es = build_exec_spec(c.rec["pid"], spec.argv, spec.env, start_time=c.rec["start_time"],
                                 path=spec.path, cwd=spec.cwd, user=spec.user, caps_mask=spec.caps,
                                 no_new_privs=bool(spec.setup & _core.SETUP_NO_NEW_PRIVS),
                                 new_session=terminal, umask=spec.umask,
                                 rlimits={r: (s, h) for r, s, h in spec.rlimits}, stdio=stdio,
                                 cgroup_fds=cfds, seccomp=(seccomp, seccomp_flags))
            try:
                pid, pidfd = _core.exec_(es)
            except OSError as e:
                raise OciRuntimeError(f"exec in {cid}: {e}") from None
            if terminal:
                try:
                    _send_fd(console_socket, master)
                except OciRuntimeError:
                    _kill_and_reap(pidfd)  # a process whose terminal nobody has is not left behind
                    os.close(pidfd)
                    raise
        finally:
            if cg is not None:
                cg.close_fds(force=True)
            for fd in (master, slave):
                if fd >= 0:
                    os.close(fd)
        if pid_file:
            try:
                write_pid_file(pid_file, pid)
            except BaseException:
                _kill_and_reap(pidfd)  # nobody would know of it
                os.close(pidfd)
                raise
        if detach:
            os.close(pidfd)
            return 0
        forward_signals(pidfd, (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT))
        res = _core.wait(pidfd)
        os.close(pidfd)
        return exit_code(res[0])

    # -- ps / list / pause / resume ----------------------------------------------------

    def pids(self, cid: str) -> list:
        """The pids of the container's processes (its cgroup's, else its init's)."""
        c = self.container(cid)
        cg = c.cgroup()
        return cg.procs() if cg is not None else ([c.rec["pid"]] if c.alive() else [])

    def list(self) -> list:
        from pyrt.ocirt.state import list_containers
        return list_containers(self.root)

    def pause(self, cid: str, freeze: bool = True) -> None:
        c = self.container(cid, lock=True)
        st = c.status()
        want = "running" if freeze else "paused"
        if st != want:
            raise OciRuntimeError(f"container {c.id} is {st}, not {want}")
        cg = c.cgroup()
        if cg is None:
            raise OciRuntimeError(f"container {c.id} has no cgroup to freeze")
        try:
            cg.freeze() if freeze else cg.thaw()
        except OSError as e:
            raise OciRuntimeError(f"{'pause' if freeze else 'resume'} {c.id}: {e}") from None

    def resume(self, cid: str) -> None:
        self.pause(cid, freeze=False)


# -- helpers -------------------------------------------------------------------------------

def exit_code(status: int) -> int:
    """A wait status as a shell gives it: the exit code, or 128+N for signal N."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def forward_signals(pidfd: int, sigs) -> None:
    """From now on, our signals `sigs` go to the process behind the pidfd."""
    def forward(sig, _frame):
        try:
            signal.pidfd_send_signal(pidfd, sig)
        except OSError:
            pass
    for sig in sigs:
        signal.signal(sig, forward)


def _kill_and_reap(pidfd: int) -> None:
    from pyrt import _core
    try:
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    except OSError:
        pass
    try:
        _core.wait(pidfd)
    except OSError:
        pass


def _connect(path: str) -> int:
    import socket
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
    except OSError as e:
        s.close()
        raise OciRuntimeError(f"connect to the console socket {path}: {e.strerror}") from None
    return s.detach()


def _send_fd(path: str, fd: int) -> None:
    import socket
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        socket.send_fds(s, [b"/dev/ptmx"], [fd])
    except OSError as e:
        raise OciRuntimeError(f"send the terminal over {path}: {e.strerror}") from None
    finally:
        s.close()


def _thaw(c) -> None:
    cg = c.cgroup()
    if cg is not None:
        try:
            cg.thaw()
        except OSError:
            pass


def _kill_all(cg, sig) -> None:
    if sig == signal.SIGKILL:
        cg.kill_all()
        return
    for pid in cg.procs():
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            continue
        try:
            if pid in cg.procs():
                signal.pidfd_send_signal(fd, sig)
        except OSError:
            pass
        finally:
            os.close(fd)


def features() -> dict:
    """What `pyrt-runtime features` prints (the runtime spec's features document)."""
    from pyrt import __version__, _core
    from pyrt.cgroups.cgroup import layout
    from pyrt.launch import seccomp as sc
    from pyrt.launch.caps import NAMES
    from pyrt.ocirt import mounts
    from pyrt.ocirt.defaults import SPEC_VERSION
    from pyrt.ocirt.spec import CLONE, systemd_unavailable
    lay = layout()
    have = _core.seccomp_available()
    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": SPEC_VERSION,
        "hooks": list(hooks.KINDS),
        "mountOptions": sorted(set(mounts.FLAG_OPTS) | set(mounts.CLEAR_OPTS) | set(mounts.PROPAGATION)
                               | {"bind", "rbind"} | mounts.IGNORED_OPTS),
        "linux": {
            "namespaces": sorted(CLONE),
            "capabilities": ["CAP_" + n for n in NAMES],
            "cgroup": {"v1": bool(lay.v1), "v2": bool(lay.unified),
                       "systemd": systemd_unavailable() is None,
                       "systemdUser": systemd_unavailable() is None,
                       "rdma": False},
            "seccomp": {
                "enabled": have,
                "actions": sorted(sc.SECCOMP_ACTIONS) if have else [],
                "operators": sorted(sc.SECCOMP_OPS) if have else [],
                "archs": sorted(sc.SECCOMP_ARCHS) if have else [],
                "knownFlags": sorted(sc.SECCOMP_FLAGS),
                "supportedFlags": sorted(sc.SECCOMP_FLAGS) if have else [],
            },
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
            "intelRdt": {"enabled": False},
            "mountExtensions": {"idmap": {"enabled": False}},
        },
        "annotations": {"org.pyrt.runtime.version": __version__},
    }
