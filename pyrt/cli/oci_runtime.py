"""`pyrt-runtime`: pyrt as an OCI runtime, with runc's command line, so that podman,
containerd (and anything else that drives runc or crun) can run containers with
pyrt's C core.

    pyrt-runtime [--root DIR] [--log FILE] [--log-format text|json] [--debug]
                 [--systemd-cgroup] COMMAND [OPTIONS] ...

    create [--bundle B] [--pid-file F] [--console-socket S] [--no-pivot] [--no-new-keyring] ID
    start ID · state ID · kill [--all] ID [SIGNAL] · delete [--force] ID
    run [--bundle B] [--pid-file F] [--console-socket S] [--detach] ID
    exec [--process FILE | ARGS...] [--detach] [--pid-file F] [--console-socket S] [--tty]
         [--cwd DIR] [--env K=V]... [--user UID[:GID]] ID
    ps [--format table|json] ID · list [--format table|json] [--quiet] · pause ID · resume ID
    spec [--bundle B] [--rootless] · features · --version

`create` sets the container up completely and leaves its process waiting just
before the program (on the exec FIFO in the state directory) until `start`; a set-up
error fails `create` itself. The process outlives `create` (engines adopt it as a
subreaper). Options are taken with one or two dashes and `--opt=value`, as runc's.

Where pyrt-runtime differs from runc:
- cgroups are written directly (cgroupfs); --systemd-cgroup is refused with an
  error. linux.resources.devices is enforced by the devices controller on v1 and
  hybrid hosts and by an eBPF program attached to the container's cgroup on v2.
- prestart and createRuntime hooks run once the container is fully set up (after
  pivot_root, in its waiting state), in the runtime's namespaces; createContainer
  hooks run in the container's namespaces except its mount namespace (so their
  path resolves on the host), startContainer hooks in all of them.
- --preserve-fds is refused; --no-pivot is accepted and ignored (pivot_root is
  always used).
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time

from pyrt import __version__

PROG = "pyrt-runtime"


class UsageError(Exception):
    pass


class Failure(Exception):
    """An error to report on one line (and in the --log file)."""


# -- logging ---------------------------------------------------------------------------

class Log:
    def __init__(self):
        self.path = None
        self.format = "text"
        self.debug = False

    def write(self, level: str, msg: str) -> None:
        if self.path is None:
            return
        t = time.time()
        from pyrt.ocirt.state import rfc3339
        if self.format == "json":
            line = json.dumps({"level": level, "msg": msg, "time": rfc3339(t)})
        else:
            line = f'time="{rfc3339(t)}" level={level} msg={json.dumps(msg)}'
        try:
            with open(self.path, "a") as f:
                f.write(line + "\n")
        except OSError:
            pass

    def error(self, msg: str) -> None:
        self.write("error", msg)
        print(f"{PROG}: {msg}", file=sys.stderr, flush=True)

    def warn(self, msg: str) -> None:
        self.write("warning", msg)
        if self.debug or self.path is None:
            print(f"{PROG}: warning: {msg}", file=sys.stderr, flush=True)

    def dbg(self, msg: str) -> None:
        if self.debug:
            self.write("debug", msg)
            print(f"{PROG}: debug: {msg}", file=sys.stderr, flush=True)


LOG = Log()


# -- argument parsing (runc's style: -opt or --opt, --opt=value) ---------------------

def parse_opts(args, spec, *, stop_at_positional=False):
    """spec: {name: (key, kind)} with kind "flag", "value" or "list"; names without
    dashes ("bundle", "b"). Returns (options dict, positionals)."""
    opts = {}
    for name, (key, kind) in spec.items():
        opts.setdefault(key, [] if kind == "list" else (False if kind == "flag" else None))
    pos = []
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            pos += args[i + 1:]
            break
        if a.startswith("-") and a != "-" and not (stop_at_positional and pos):
            name, eq, value = a.lstrip("-").partition("=")
            if name not in spec:
                raise UsageError(f"unknown option {a.split('=')[0]}")
            key, kind = spec[name]
            if kind == "flag":
                if eq:
                    opts[key] = value.lower() in ("1", "true", "yes")
                else:
                    opts[key] = True
            else:
                if not eq:
                    i += 1
                    if i >= len(args):
                        raise UsageError(f"option {a} needs a value")
                    value = args[i]
                if kind == "list":
                    opts[key].append(value)
                else:
                    opts[key] = value
        else:
            pos.append(a)
            if stop_at_positional:
                pos += args[i + 1:]
                break
        i += 1
    return opts, pos


GLOBAL = {
    "root": ("root", "value"), "log": ("log", "value"), "log-format": ("log_format", "value"),
    "debug": ("debug", "flag"), "systemd-cgroup": ("systemd_cgroup", "flag"),
    "rootless": ("rootless", "value"), "criu": ("criu", "value"),
    "version": ("version", "flag"), "v": ("version", "flag"), "help": ("help", "flag"), "h": ("help", "flag"),
}

CREATE = {
    "bundle": ("bundle", "value"), "b": ("bundle", "value"), "pid-file": ("pid_file", "value"),
    "console-socket": ("console_socket", "value"), "no-pivot": ("no_pivot", "flag"),
    "no-new-keyring": ("no_new_keyring", "flag"), "preserve-fds": ("preserve_fds", "value"),
    "notify-socket": ("notify_socket", "value"),
}
RUN = dict(CREATE, detach=("detach", "flag"), d=("detach", "flag"), **{"keep": ("keep", "flag")})
EXEC = {
    "process": ("process", "value"), "p": ("process", "value"), "detach": ("detach", "flag"),
    "d": ("detach", "flag"), "pid-file": ("pid_file", "value"), "console-socket": ("console_socket", "value"),
    "tty": ("tty", "flag"), "t": ("tty", "flag"), "cwd": ("cwd", "value"), "env": ("env", "list"),
    "e": ("env", "list"), "user": ("user", "value"), "u": ("user", "value"),
    "additional-gids": ("gids", "list"), "g": ("gids", "list"), "cap": ("cap", "list"), "c": ("cap", "list"),
    "no-new-privs": ("no_new_privs", "flag"), "preserve-fds": ("preserve_fds", "value"),
    "process-label": ("label", "value"), "apparmor": ("apparmor", "value"),
    "ignore-paused": ("ignore_paused", "flag"), "cgroup": ("cgroup", "list"),
}


# -- helpers ---------------------------------------------------------------------------

def _container(g, cid, *, lock=False):
    from pyrt.ocirt.state import Container
    c = Container(g["root"], cid)
    if lock:
        c.lock()
    return c.load()


def _one_id(pos, cmd, extra=0):
    if len(pos) < 1 or len(pos) > 1 + extra:
        raise UsageError(f"{cmd} takes a container id" + (" (and a signal)" if extra else ""))
    return pos[0]


def _run_hook(hook, state: dict, kind: str) -> None:
    """An OCI hook in the runtime's namespaces: path, args, env, timeout; the state
    on its stdin."""
    import subprocess
    args = hook.get("args") or [hook["path"]]
    env = {}
    for e in hook.get("env") or []:
        k, _, v = e.partition("=")
        env[k] = v
    timeout = hook.get("timeout")
    try:
        p = subprocess.Popen(args, executable=hook["path"], env=env, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, close_fds=True)
    except OSError as e:
        raise Failure(f"{kind} hook {hook['path']}: {e.strerror}") from None
    try:
        out, err = p.communicate(json.dumps(state).encode(), timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        raise Failure(f"{kind} hook {hook['path']}: timed out after {timeout}s") from None
    if p.returncode != 0:
        detail = (err or out).decode(errors="replace").strip()
        raise Failure(f"{kind} hook {hook['path']} exited with status {p.returncode}"
                      + (f": {detail}" if detail else ""))


def _run_hook_in_container(hook, state: dict, kind: str, pid: int, start_time: int, *, mount_ns: bool):
    """createContainer (mount_ns False: the path resolves on the host) and
    startContainer (mount_ns True) hooks: run in the container's namespaces."""
    from pyrt import _core
    r, w = os.pipe2(os.O_CLOEXEC)
    ns = _core.EXEC_ALL_NAMESPACES
    if not mount_ns:
        ns &= ~_core.EXEC_NAMESPACES["mount"]
    try:
        spec = _core.ExecSpec(pid, [os.fsencode(a) for a in (hook.get("args") or [hook["path"]])],
                              [os.fsencode(e) for e in hook.get("env") or []], start_time=start_time,
                              namespaces=ns, path=b"/", cwd="/", user=(0, 0, []), caps=(1 << 64) - 1,
                              no_new_privs=False, stdio=(r, -1, -1))
        spec.argv = [os.fsencode(hook["path"])] + spec.argv[1:]  # exec'd by its absolute path
        try:
            cpid, pidfd = _core.exec_(spec)
        except OSError as e:
            raise Failure(f"{kind} hook {hook['path']}: {e}") from None
    finally:
        os.close(r)
    try:
        try:
            os.write(w, json.dumps(state).encode())
        except BrokenPipeError:
            pass
        os.close(w)
        w = -1
        res = _core.wait(pidfd, hook.get("timeout"))
        if res is None:
            os.kill(cpid, signal.SIGKILL)
            _core.wait(pidfd)
            raise Failure(f"{kind} hook {hook['path']}: timed out after {hook.get('timeout')}s")
        code = os.waitstatus_to_exitcode(res[0])
        if code != 0:
            raise Failure(f"{kind} hook {hook['path']} exited with status {code}")
    finally:
        if w >= 0:
            os.close(w)
        os.close(pidfd)


def _hooks(c, kind: str, state: dict, *, warn_only=False) -> None:
    for hook in (c.rec.get("hooks") or {}).get(kind) or []:
        try:
            if kind in ("createContainer", "startContainer"):
                _run_hook_in_container(hook, state, kind, c.rec["pid"], c.rec["start_time"],
                                       mount_ns=kind == "startContainer")
            else:
                _run_hook(hook, state, kind)
        except Failure as e:
            if not warn_only:
                raise
            LOG.warn(str(e))


def _signal_number(text) -> int:
    from pyrt.containers.lifecycle import parse_signal
    try:
        return parse_signal(text)
    except Exception:
        raise UsageError(f"invalid signal {text!r}") from None


# -- create / start / run ----------------------------------------------------------------

def _create(g, o, cid, *, foreground=False):
    """Set the container up and leave it waiting for start. Returns (container,
    pidfd, wait_fd): the pidfd of its process and our fd of its exec FIFO."""
    from pyrt import _core
    from pyrt.ocirt import spec as rs
    from pyrt.ocirt.state import Container, rfc3339, start_time, write_pid_file

    if o.get("preserve_fds") not in (None, "0"):
        raise Failure("--preserve-fds is not supported by pyrt-runtime")
    bundle = os.path.abspath(o.get("bundle") or os.getcwd())
    cfg = rs.load_config(bundle)
    plan = rs.parse(cfg, bundle, container_id=cid, systemd_cgroup=g["systemd_cgroup"])
    for w in plan.warnings:
        LOG.dbg(w)
    if plan.terminal and not o.get("console_socket"):
        raise Failure("process.terminal is true: a --console-socket is needed to pass the terminal "
                      "(set terminal to false to run without one)")

    c = Container(g["root"], cid)
    c.create_dir()  # ours alone: no lock is held here, its fd would be the parked child's too
    c.rec = {"id": cid, "status": "creating", "bundle": bundle,
             "rootfs": os.path.realpath(os.path.join(bundle, cfg["root"]["path"])),
             "created": rfc3339(time.time()), "owner": "", "annotations": plan.annotations,
             "oci_version": cfg.get("ociVersion"), "hooks": plan.hooks, "process": plan.process,
             "pid": 0, "start_time": 0, "started": False,
             "seccomp": (cfg.get("linux") or {}).get("seccomp")}  # for exec'd processes too
    fds, cg, pidfd, pid, wait_fd = [], None, -1, 0, -1
    ok = False
    try:
        # the cgroup (always: ps, kill --all, pause, delete use it) and its limits
        from pyrt.cgroups.cgroup import Cgroup, Limits, layout
        if os.geteuid() != 0 and not _user_cgroups():
            # an ordinary user without a delegated subtree (as runc --rootless): no cgroup
            # (nor device rules); a limit asked for needs one
            if any(k != "devices" for k in plan.resources):
                from pyrt.cgroups.delegation import require
                require("linux.resources")
        elif layout().mode != "none" and plan.cgroup_name:
            cg = Cgroup.create(plan.cgroup_name, Limits(), plan.cgroup_parent,
                               accounting=rs.resource_controllers(plan.resources), devices=None)
            c.rec.update(cgroup_name=plan.cgroup_name, cgroup_parent=plan.cgroup_parent)
            rs.apply_resources(cg, plan.resources)
            plan.spec.cgroup_fd, plan.spec.cgroup_procs_fds = cg.spawn_fds()
        elif plan.resources:
            raise Failure("linux.resources: no cgroup hierarchy is mounted on this host")
        plan.add_cgroup_mounts(cg)
        c.save()  # "creating": a crash from here on leaves what delete --force cleans up

        plan.oci.new_keyring = not o.get("no_new_keyring")
        os.mkfifo(c.fifo, 0o600)
        wait_fd = os.open(c.fifo, os.O_RDWR | os.O_CLOEXEC)
        plan.oci.wait_fd = wait_fd
        if o.get("console_socket"):
            import socket
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(o["console_socket"])
            except OSError as e:
                s.close()
                raise Failure(f"connect to the console socket {o['console_socket']}: {e.strerror}") from None
            fds.append(s.detach())
            if plan.terminal:
                plan.spec.console_fd = fds[-1]
        for kind, path in plan.joins:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            fds.append(fd)
            plan.oci.joins.append((fd, kind))
        if plan.pid_join:
            from pyrt import sys as psys
            fd = os.open(plan.pid_join, os.O_RDONLY | os.O_CLOEXEC)
            try:
                psys.setns(fd, rs.CLONE["pid"])  # our next child is born in it
            finally:
                os.close(fd)

        pid, pidfd = _core.spawn(plan.spec)
        c.rec.update(pid=pid, start_time=start_time(pid), status="created")
        c.save()
        if plan.oom_score_adj is not None:
            try:
                with open(f"/proc/{pid}/oom_score_adj", "w") as f:
                    f.write(str(plan.oom_score_adj))
            except OSError as e:
                raise Failure(f"set oom_score_adj to {plan.oom_score_adj}: {e.strerror}") from None
        state = c.oci_state()
        _hooks(c, "prestart", state)
        _hooks(c, "createRuntime", state)
        _hooks(c, "createContainer", state)
        if o.get("pid_file"):
            write_pid_file(o["pid_file"], pid)
        ok = True
    finally:
        if cg is not None:
            cg.close_fds(force=True)
        for fd in fds:
            os.close(fd)
        if not ok:
            if pidfd >= 0:
                try:
                    signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                except OSError:
                    pass
                try:
                    _core.wait(pidfd)
                except OSError:
                    pass
                os.close(pidfd)
            if wait_fd >= 0:
                os.close(wait_fd)
            if cg is not None:
                try:
                    cg.remove()
                except OSError as e:
                    LOG.warn(f"remove cgroup: {e}")
            c.remove()
    if not foreground:
        os.close(wait_fd)
        wait_fd = -1
    return c, pidfd, wait_fd


def cmd_create(g, args):
    o, pos = parse_opts(args, CREATE)
    cid = _one_id(pos, "create")
    c, pidfd, _ = _create(g, o, cid)
    os.close(pidfd)
    return 0


def _start(c, wait_fd=-1):
    """Let the created container's process exec its program."""
    st = c.status()
    if st != "created":
        raise Failure(f"container {c.id} is {st}: only a created container can be started")
    state = c.oci_state()
    _hooks(c, "startContainer", state)
    try:
        fd = wait_fd if wait_fd >= 0 else os.open(c.fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise Failure(f"start {c.id}: its process is gone ({e.strerror})") from None
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
    _hooks(c, "poststart", dict(state, status="running"), warn_only=True)


def cmd_start(g, args):
    o, pos = parse_opts(args, {})
    c = _container(g, _one_id(pos, "start"), lock=True)
    _start(c)
    return 0


def cmd_run(g, args):
    o, pos = parse_opts(args, RUN)
    cid = _one_id(pos, "run")
    c, pidfd, wait_fd = _create(g, o, cid, foreground=not o.get("detach"))
    if o.get("detach"):
        c.lock()
        try:
            _start(c)
        except BaseException:
            _delete(c, force=True)
            raise
        finally:
            os.close(pidfd)
        return 0
    from pyrt import _core
    # signals for us go to the container (as runc run does)
    def forward(sig, _frame):
        try:
            signal.pidfd_send_signal(pidfd, sig)
        except OSError:
            pass
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, forward)
    try:
        try:
            _start(c, wait_fd)
        finally:
            os.close(wait_fd)
        res = _core.wait(pidfd)
        code = os.waitstatus_to_exitcode(res[0])
        code = 128 - code if code < 0 else code
    except BaseException:
        try:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            _core.wait(pidfd)
        except OSError:
            pass
        os.close(pidfd)
        _delete(c.load(), force=True)
        raise
    os.close(pidfd)
    if not o.get("keep"):
        c.lock()
        _delete(c.load(), force=True)
    return code


# -- state / kill / delete ---------------------------------------------------------------

def cmd_state(g, args):
    o, pos = parse_opts(args, {})
    c = _container(g, _one_id(pos, "state"))
    print(json.dumps(c.oci_state(), indent=2))
    return 0


def cmd_kill(g, args):
    o, pos = parse_opts(args, {"all": ("all", "flag"), "a": ("all", "flag")})
    cid = _one_id(pos, "kill", extra=1)
    sig = _signal_number(pos[1]) if len(pos) > 1 else signal.SIGTERM
    c = _container(g, cid)
    st = c.status()
    if st == "stopped":
        raise Failure(f"container {cid} is not running")
    if o["all"]:
        cg = c.cgroup()
        if cg is not None:
            _kill_all(cg, sig)
            return 0
    fd = c.pidfd()
    if fd is None:
        raise Failure(f"container {cid} is not running")
    try:
        signal.pidfd_send_signal(fd, sig)
    except ProcessLookupError:
        raise Failure(f"container {cid} is not running") from None
    finally:
        os.close(fd)
    if sig == signal.SIGKILL and st == "paused":
        _thaw(c)
    return 0


def _thaw(c):
    cg = c.cgroup()
    if cg is not None:
        try:
            cg.thaw()
        except OSError:
            pass


def _kill_all(cg, sig):
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


def _delete(c, force=False):
    st = c.status()
    if st in ("running", "paused") and not force:
        raise Failure(f"container {c.id} is {st}: stop it first, or delete --force")
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
                from pyrt.ocirt.state import wait_exit
                if not wait_exit(fd, 10):
                    LOG.warn(f"container {c.id}: its process did not exit after SIGKILL")
            finally:
                os.close(fd)
    if cg is not None:
        try:
            cg.remove()
        except OSError as e:
            LOG.warn(f"remove cgroup of {c.id}: {e}")
    if c.rec.get("status") != "creating":
        _hooks(c, "poststop", dict(c.oci_state(), status="stopped"), warn_only=True)
    c.remove()


def cmd_delete(g, args):
    o, pos = parse_opts(args, {"force": ("force", "flag"), "f": ("force", "flag")})
    cid = _one_id(pos, "delete")
    from pyrt.errors import ContainerNotFound
    from pyrt.ocirt.state import Container
    try:
        c = _container(g, cid, lock=True)
    except ContainerNotFound:
        if not o["force"]:
            raise
        Container(g["root"], cid).remove()  # as runc: a half-made leftover goes, no error
        return 0
    _delete(c, force=o["force"])
    return 0


# -- exec ------------------------------------------------------------------------------

def _send_fd(path: str, fd: int) -> None:
    import socket
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        socket.send_fds(s, [b"/dev/ptmx"], [fd])
    except OSError as e:
        raise Failure(f"send the terminal over {path}: {e.strerror}") from None
    finally:
        s.close()


def cmd_exec(g, args):
    from pyrt import _core
    from pyrt.ocirt import spec as rs
    o, pos = parse_opts(args, EXEC, stop_at_positional=True)
    if not pos:
        raise UsageError("exec takes a container id")
    cid, argv = pos[0], pos[1:]
    if o.get("preserve_fds") not in (None, "0"):
        raise Failure("--preserve-fds is not supported by pyrt-runtime")
    c = _container(g, cid)
    st = c.status()
    if st == "paused" and not o.get("ignore_paused"):
        raise Failure(f"container {cid} is paused: resume it first")
    if st not in ("created", "running", "paused"):
        raise Failure(f"container {cid} is {st}: cannot exec in it")
    base = c.rec.get("process") or {}
    if o.get("process"):
        try:
            with open(o["process"], "rb") as f:
                proc = json.loads(f.read())
        except (OSError, ValueError) as e:
            raise Failure(f"--process {o['process']}: {e}") from None
        if not isinstance(proc, dict):
            raise Failure(f"--process {o['process']}: expected a JSON object")
    else:
        if not argv:
            raise UsageError("exec needs a command (or --process FILE)")
        proc = json.loads(json.dumps(base))
        proc["args"] = argv
        proc["env"] = list(proc.get("env") or []) + list(o["env"])
        if o.get("cwd"):
            proc["cwd"] = o["cwd"]
        if o.get("tty"):
            proc["terminal"] = True
        else:
            proc["terminal"] = False
        if o.get("user"):
            u, _, gr = o["user"].partition(":")
            try:
                proc["user"] = {"uid": int(u), "gid": int(gr) if gr else 0}
            except ValueError:
                raise UsageError(f"--user {o['user']!r}: use UID[:GID]") from None
        if o["gids"]:
            proc.setdefault("user", {})["additionalGids"] = [int(x) for x in o["gids"]]
        if o["cap"]:
            capsd = proc.setdefault("capabilities", {})
            for k in ("bounding", "effective", "permitted", "ambient"):
                capsd[k] = list(capsd.get(k) or []) + o["cap"]
        if o.get("no_new_privs"):
            proc["noNewPrivileges"] = True
    # the process through the same validation as a config's
    fake = {"ociVersion": "1.1.0", "process": proc, "root": {"path": "/"},
            "linux": {"namespaces": [{"type": "mount"}]}}
    plan = rs.parse(fake, "/")
    spec = plan.spec
    user = spec.user
    # the container's seccomp profile binds its exec'd processes too (as in runc)
    seccomp, seccomp_flags = rs.compile_seccomp(c.rec["seccomp"]) if c.rec.get("seccomp") else (None, 0)
    terminal = bool(proc.get("terminal"))
    if terminal and not o.get("console_socket"):
        raise Failure("exec with a terminal needs --console-socket")
    cg = c.cgroup()
    cfds = cg.spawn_fds() if cg is not None else (-1, [])
    master = slave = -1
    try:
        stdio = (-1, -1, -1)
        if terminal:
            from pyrt.launch.tty import open_pty_in
            master, slave = open_pty_in(c.rec["pid"])
            stdio = (slave, slave, slave)
        es = _core.ExecSpec(c.rec["pid"], spec.argv, spec.env, start_time=c.rec["start_time"],
                            path=spec.path, cwd=spec.cwd, user=user, caps=spec.caps,
                            no_new_privs=bool(spec.setup & _core.SETUP_NO_NEW_PRIVS),
                            new_session=terminal, umask=spec.umask, rlimits=spec.rlimits, stdio=stdio,
                            cgroup_fd=cfds[0], cgroup_procs_fds=cfds[1], seccomp=seccomp,
                            seccomp_flags=seccomp_flags)
        try:
            pid, pidfd = _core.exec_(es)
        except OSError as e:
            raise Failure(f"exec in {cid}: {e}") from None
        if terminal:
            _send_fd(o["console_socket"], master)
    finally:
        if cg is not None:
            cg.close_fds(force=True)
        for fd in (master, slave):
            if fd >= 0:
                os.close(fd)
    if o.get("pid_file"):
        from pyrt.ocirt.state import write_pid_file
        write_pid_file(o["pid_file"], pid)
    if o.get("detach"):
        os.close(pidfd)
        return 0

    def forward(sig, _frame):
        try:
            signal.pidfd_send_signal(pidfd, sig)
        except OSError:
            pass
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, forward)
    res = _core.wait(pidfd)
    os.close(pidfd)
    code = os.waitstatus_to_exitcode(res[0])
    return 128 - code if code < 0 else code


# -- ps / list / pause / resume ------------------------------------------------------------

def cmd_ps(g, args):
    o, pos = parse_opts(args, {"format": ("format", "value"), "f": ("format", "value")}, stop_at_positional=True)
    if not pos:
        raise UsageError("ps takes a container id")
    c = _container(g, pos[0])
    cg = c.cgroup()
    pids = cg.procs() if cg is not None else ([c.rec["pid"]] if c.alive() else [])
    if (o.get("format") or "table") == "json":
        print(json.dumps(pids))
        return 0
    import subprocess
    psargs = pos[1:] or ["-ef"]
    out = subprocess.run(["ps"] + psargs, stdout=subprocess.PIPE, text=True, check=False).stdout
    lines = out.splitlines()
    if not lines:
        return 0
    header = lines[0].split()
    try:
        col = header.index("PID")
    except ValueError:
        raise Failure("ps output has no PID column") from None
    print(lines[0])
    for line in lines[1:]:
        fields = line.split()
        if len(fields) > col and fields[col].isdigit() and int(fields[col]) in pids:
            print(line)
    return 0


def cmd_list(g, args):
    from pyrt.ocirt.state import list_containers
    o, pos = parse_opts(args, {"format": ("format", "value"), "f": ("format", "value"),
                               "quiet": ("quiet", "flag"), "q": ("quiet", "flag")})
    cs = list_containers(g["root"])
    if o["quiet"]:
        for c in cs:
            print(c.id)
        return 0
    states = [c.oci_state() for c in cs]
    if (o.get("format") or "table") == "json":
        print(json.dumps(states))
        return 0
    rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
    for s in states:
        rows.append((s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"], s["owner"] or "root"))
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    for r in rows:
        print("   ".join(v.ljust(widths[i]) for i, v in enumerate(r)).rstrip())
    return 0


def cmd_pause(g, args, freeze=True):
    o, pos = parse_opts(args, {})
    c = _container(g, _one_id(pos, "pause" if freeze else "resume"), lock=True)
    st = c.status()
    want = "running" if freeze else "paused"
    if st != want:
        raise Failure(f"container {c.id} is {st}, not {want}")
    cg = c.cgroup()
    if cg is None:
        raise Failure(f"container {c.id} has no cgroup to freeze")
    try:
        cg.freeze() if freeze else cg.thaw()
    except OSError as e:
        raise Failure(f"{'pause' if freeze else 'resume'} {c.id}: {e}") from None
    return 0


# -- spec / features / version -------------------------------------------------------------

def _default_root() -> str:
    """/run/pyrt-runtime; an ordinary user's $XDG_RUNTIME_DIR/pyrt-runtime (or
    /tmp/pyrt-runtime-UID), as runc --rootless keeps its state."""
    if os.geteuid() == 0:
        return "/run/pyrt-runtime"
    from pyrt.paths import check_private_dir
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base and os.path.isabs(base) and os.path.isdir(base):
        return check_private_dir(os.path.join(base, "pyrt-runtime"), "state directory")
    return check_private_dir(f"/tmp/pyrt-runtime-{os.geteuid()}", "state directory")


def _user_cgroups() -> bool:
    from pyrt.cgroups.delegation import usable
    return usable()


def cmd_spec(g, args):
    from pyrt.ocirt import spec as rs
    o, pos = parse_opts(args, {"bundle": ("bundle", "value"), "b": ("bundle", "value"),
                               "rootless": ("rootless", "flag")})
    if pos:
        raise UsageError("spec takes no arguments")
    bundle = o.get("bundle") or "."
    path = os.path.join(bundle, "config.json")
    if os.path.exists(path):
        raise Failure(f"{path} exists: remove it first")
    with open(path, "w") as f:
        json.dump(rs.default_config(rootless=o["rootless"]), f, indent="\t")
        f.write("\n")
    return 0


def cmd_features(g, args):
    from pyrt import _core
    from pyrt.launch.caps import NAMES
    from pyrt.ocirt import spec as rs
    from pyrt.cgroups.cgroup import layout
    lay = layout()
    seccomp = _core.seccomp_available()
    out = {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": rs.SPEC_VERSION,
        "hooks": list(rs.HOOK_KINDS),
        "mountOptions": sorted(set(rs._FLAG_OPTS) | set(rs._CLEAR_OPTS) | set(rs.PROPAGATION)
                               | {"bind", "rbind"} | rs._IGNORED_OPTS),
        "linux": {
            "namespaces": sorted(rs.CLONE),
            "capabilities": ["CAP_" + n for n in NAMES],
            "cgroup": {"v1": bool(lay.v1), "v2": bool(lay.unified), "systemd": False, "systemdUser": False,
                       "rdma": False},
            "seccomp": {
                "enabled": seccomp,
                "actions": sorted(rs.SECCOMP_ACTIONS) if seccomp else [],
                "operators": sorted(rs.SECCOMP_OPS) if seccomp else [],
                "archs": sorted(rs.SECCOMP_ARCHS) if seccomp else [],
                "knownFlags": sorted(rs.SECCOMP_FLAGS),
                "supportedFlags": sorted(rs.SECCOMP_FLAGS) if seccomp else [],
            },
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
            "intelRdt": {"enabled": False},
            "mountExtensions": {"idmap": {"enabled": False}},
        },
        "annotations": {"org.pyrt.runtime.version": __version__},
    }
    print(json.dumps(out, indent=2))
    return 0


def version_text() -> str:
    from pyrt import _core
    from pyrt.ocirt.spec import SPEC_VERSION
    return (f"{PROG} version {__version__}\nspec: {SPEC_VERSION}\n"
            f"libseccomp: {'yes' if _core.seccomp_available() else 'no'}")


COMMANDS = {
    "create": cmd_create, "start": cmd_start, "run": cmd_run, "state": cmd_state, "kill": cmd_kill,
    "delete": cmd_delete, "exec": cmd_exec, "ps": cmd_ps, "list": cmd_list,
    "pause": cmd_pause, "resume": lambda g, a: cmd_pause(g, a, freeze=False),
    "spec": cmd_spec, "features": cmd_features,
}

USAGE = f"""usage: {PROG} [--root DIR] [--log FILE] [--log-format text|json] [--debug] [--systemd-cgroup] COMMAND ...

commands: {", ".join(COMMANDS)}
  create [--bundle B] [--pid-file F] [--console-socket S] ID   set up, wait for start
  start ID · state ID · kill [--all] ID [SIGNAL] · delete [--force] ID
  run [--bundle B] [--detach] ID · exec [--process F | ARGS] [-d] [-t] ID
  ps [--format json] ID · list [--format json] · pause ID · resume ID
  spec [--bundle B] · features · --version"""


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # global options come before the command
    i = 0
    glob_args = []
    while i < len(argv) and argv[i].startswith("-"):
        name = argv[i].lstrip("-").partition("=")[0]
        glob_args.append(argv[i])
        if name in GLOBAL and GLOBAL[name][1] == "value" and "=" not in argv[i]:
            i += 1
            if i < len(argv):
                glob_args.append(argv[i])
        i += 1
    try:
        g, _ = parse_opts(glob_args, GLOBAL)
    except UsageError as e:
        print(f"{PROG}: {e}\n{USAGE}", file=sys.stderr)
        return 2
    g["root"] = os.path.abspath(g.get("root") or os.environ.get("PYRT_RUNTIME_ROOT") or _default_root())
    LOG.path = g.get("log")
    LOG.format = (g.get("log_format") or "text").lower()
    LOG.debug = bool(g.get("debug"))
    if LOG.format not in ("text", "json"):
        print(f"{PROG}: --log-format must be text or json", file=sys.stderr)
        return 2
    if g.get("version"):
        print(version_text())
        return 0
    if i >= len(argv) or g.get("help"):
        print(USAGE, file=sys.stderr if i >= len(argv) and not g.get("help") else sys.stdout)
        return 0 if g.get("help") else 2
    cmd, args = argv[i], argv[i + 1:]
    LOG.dbg(f"{cmd} {' '.join(args)}")
    fn = COMMANDS.get(cmd)
    if fn is None:
        LOG.error(f"unknown command {cmd!r} (commands: {', '.join(COMMANDS)})")
        return 2
    if g.get("systemd_cgroup") and cmd in ("create", "run"):
        from pyrt.ocirt.spec import _systemd_message
        LOG.error(_systemd_message(""))
        return 1
    from pyrt.errors import PyrtError
    try:
        return fn(g, args) or 0
    except UsageError as e:
        LOG.error(f"{cmd}: {e}")
        return 2
    except (Failure, PyrtError) as e:
        LOG.error(str(e))
        return 1
    except OSError as e:
        LOG.error(f"{cmd}: {e}")
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
