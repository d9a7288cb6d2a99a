"""Processes in a running container: exec (a command started in its namespaces,
cgroup and root, with its user, capabilities and seccomp profile), the docker
SDK's exec_run on it, and top."""
from __future__ import annotations

import os

from pyrt import _core
from pyrt.containers.lifecycle import alive
from pyrt.errors import Conflict, InvalidArgument
from pyrt.launch.spec import build_exec_spec
from pyrt.launch.userdb import resolve_user


def exec_process(container, cmd, *, user="", environment=None, workdir=None, privileged=False,
                 stdin=None, stdout=None, stderr=None, new_session=False):
    """Start `cmd` inside the running container; returns (pid, pidfd), the caller's child.
    new_session: its own session, with stdin (a terminal) as controlling terminal."""
    st = container.reload().state
    if st.get("Status") == "paused":
        raise Conflict(f"container {container.name} is paused: unpause it first")
    if st.get("Status") != "running" or not alive(st):
        raise Conflict(f"container {container.name} is not running")
    cfg = container.config
    if isinstance(cmd, str):
        cmd = ["/bin/sh", "-c", cmd]
    if not cmd:
        raise InvalidArgument("exec needs a command")
    env = dict(e.partition("=")[::2] for e in cfg["Env"])
    if isinstance(environment, dict):
        env.update({k: str(v) for k, v in environment.items()})
    else:
        env.update(e.partition("=")[::2] for e in environment or ())
    ident = None
    user = user or cfg.get("User")
    if user:
        ident = resolve_user(user, container._driver_layers())
    privileged = privileged or cfg.get("Privileged", False)
    cgroup = container._open_cgroup()
    fds = cgroup.spawn_fds() if cgroup is not None else (-1, [])
    try:
        spec = build_exec_spec(st["Pid"], cmd, env, start_time=st["StartTime"],
                               cwd=workdir or cfg.get("WorkingDir") or "/", user=ident,
                               cap_add=cfg.get("CapAdd", []), cap_drop=container._cap_drop(privileged),
                               privileged=privileged, seccomp=cfg.get("Seccomp", "default"),
                               stdio=(stdin, stdout, stderr), new_session=new_session, cgroup_fds=fds)
        return _core.exec_(spec)
    finally:
        if cgroup is not None:
            cgroup.close_fds()


def wait_pidfd(pidfd: int) -> int:
    """Wait for our child behind pidfd; its exit code (128+N for signal N)."""
    try:
        status, _ = _core.wait(pidfd)
    finally:
        os.close(pidfd)
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def processes(container) -> list[dict]:
    """The container's processes (in its pid namespace), as `ps` shows them."""
    st = container.state
    if not alive(st):
        return []
    try:
        ns = os.readlink(f"/proc/{st['Pid']}/ns/pid")
    except FileNotFoundError:
        return []
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{name}/ns/pid") != ns:
                continue
            with open(f"/proc/{name}/status") as f:
                fields = dict(line.split(":\t", 1) for line in f.read().splitlines() if ":\t" in line)
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").strip().decode(errors="replace")
        except (OSError, ValueError):  # gone meanwhile, or not ours to look at
            continue
        out.append({"UID": fields.get("Uid", "0").split()[0], "PID": int(name),
                    "PPID": int(fields.get("PPid", "0")), "CMD": cmd or f"[{fields.get('Name', '?')}]"})
    return sorted(out, key=lambda p: p["PID"])


def exec_run(container, cmd, stdout=True, stderr=True, stdin=False, tty=False, privileged=False, user="",
             detach=False, stream=False, socket=False, environment=None, workdir=None, demux=False):
    """Run cmd in the running container: ExecResult(exit_code, output) as the
    docker SDK returns it (output None when detached; (out, err) with demux)."""
    if socket or stream or stdin:
        raise InvalidArgument("exec_run: stdin, socket and stream are not supported")
    if tty:
        return _exec_tty(container, cmd, user=user, environment=environment, workdir=workdir,
                         privileged=privileged, detach=detach)
    devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    out = err = None  # (read end, write end)
    try:
        if not detach and (stdout or stderr):
            out = os.pipe()
            if demux and stderr and stdout:
                err = os.pipe()
        out_w = out[1] if out and stdout else devnull
        err_w = (err or out)[1] if (err or out) and stderr else devnull
        pid, pfd = exec_process(container, cmd, user=user, environment=environment, workdir=workdir,
                                privileged=privileged, stdin=devnull, stdout=out_w, stderr=err_w)
    except BaseException:
        for p in (out, err):
            if p:
                os.close(p[0])
        raise
    finally:
        os.close(devnull)
        for p in (out, err):
            if p:
                os.close(p[1])
    if detach:
        os.close(pfd)
        return ExecResult(None, None)
    data = _read_all([p[0] for p in (out, err) if p])
    code = wait_pidfd(pfd)
    if demux:
        got = iter(data)
        o = next(got) if out and stdout else None
        e = next(got) if err else (o if stderr and not stdout else None)
        return ExecResult(code, (o, e))
    return ExecResult(code, data[0] if data else None)


def _exec_tty(container, cmd, detach=False, **options):
    """exec_run with a terminal: the output is what the terminal showed."""
    from pyrt.launch.tty import open_pty_in, read_until_closed
    master, slave = open_pty_in(container.reload().state["Pid"])
    try:
        try:
            pid, pfd = exec_process(container, cmd, stdin=slave, stdout=slave, stderr=slave,
                                new_session=True, **options)
        finally:
            os.close(slave)
        if detach:
            os.close(pfd)
            return ExecResult(None, None)
        data = read_until_closed(master, pfd)
    finally:
        os.close(master)
    return ExecResult(wait_pidfd(pfd), data)


class ExecResult(tuple):
    """(exit_code, output), as the docker SDK's exec_run returns it."""

    def __new__(cls, exit_code, output):
        return super().__new__(cls, (exit_code, output))

    exit_code = property(lambda self: self[0])
    output = property(lambda self: self[1])


def _read_all(fds) -> list[bytes]:
    """Read several pipes to their ends at once (none may fill up and block the writer)."""
    import selectors
    bufs = {fd: [] for fd in fds}
    sel = selectors.DefaultSelector()
    try:
        for fd in fds:
            sel.register(fd, selectors.EVENT_READ)
        while sel.get_map():
            for key, _ in sel.select():
                chunk = os.read(key.fd, 65536)
                if chunk:
                    bufs[key.fd].append(chunk)
                else:
                    sel.unregister(key.fd)
    finally:
        sel.close()
        for fd in fds:
            os.close(fd)
    return [b"".join(bufs[fd]) for fd in fds]
