"""OCI hooks (config.json `hooks`): each one a program started with its path,
args, env and timeout, the container's state as JSON on its stdin.

    run_hooks(container, "prestart", state)                  # a failure raises
    run_hooks(container, "poststop", state, warn=log.warn)   # a failure only warns

prestart, createRuntime, poststart and poststop hooks run in the runtime's
namespaces; createContainer hooks in the container's namespaces except its mount
namespace (so their path resolves on the host), startContainer hooks in all of
the container's namespaces (their path resolves in the container).
"""
from __future__ import annotations

import json
import os
import signal

from pyrt.errors import OciRuntimeError
from pyrt.launch.spec import build_exec_spec

KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")
IN_CONTAINER = ("createContainer", "startContainer")


def run_hook(hook: dict, state: dict, kind: str) -> None:
    """One hook in the runtime's namespaces."""
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
        raise OciRuntimeError(f"{kind} hook {hook['path']}: {e.strerror}") from None
    try:
        out, err = p.communicate(json.dumps(state).encode(), timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        raise OciRuntimeError(f"{kind} hook {hook['path']}: timed out after {timeout}s") from None
    if p.returncode != 0:
        detail = (err or out).decode(errors="replace").strip()
        raise OciRuntimeError(f"{kind} hook {hook['path']} exited with status {p.returncode}"
                              + (f": {detail}" if detail else ""))


def run_hook_in_container(hook: dict, state: dict, kind: str, pid: int, start_time: int, *, mount_ns: bool):
    """createContainer (mount_ns False: the path resolves on the host) and
    startContainer (mount_ns True) hooks: run in the container's namespaces."""
    from pyrt import _core
    r, w = os.pipe2(os.O_CLOEXEC)
    ns = _core.EXEC_ALL_NAMESPACES
    if not mount_ns:
        ns &= ~_core.EXEC_NAMESPACES["mount"]
    try:
        spec = build_exec_spec(pid, hook.get("args") or [hook["path"]],
                               [os.fsencode(e) for e in hook.get("env") or []], start_time=start_time,
                               namespaces=ns, path=b"/", cwd="/", user=(0, 0, []), caps_mask=(1 << 64) - 1,
                               no_new_privs=False, seccomp=None, stdio=(r, None, None))
        spec.argv = [os.fsencode(hook["path"])] + spec.argv[1:]  # exec'd by its absolute path
        try:
            cpid, pidfd = _core.exec_(spec)
        except OSError as e:
            raise OciRuntimeError(f"{kind} hook {hook['path']}: {e}") from None
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
            raise OciRuntimeError(f"{kind} hook {hook['path']}: timed out after {hook.get('timeout')}s")
        code = os.waitstatus_to_exitcode(res[0])
        if code != 0:
            raise OciRuntimeError(f"{kind} hook {hook['path']} exited with status {code}")
    finally:
        if w >= 0:
            os.close(w)
        os.close(pidfd)


def run_hooks(c, kind: str, state: dict, *, warn=None) -> None:
    """The container's hooks of `kind`, in order. warn: None to raise on the first
    failure; a function to report each failure to and go on."""
    for hook in (c.rec.get("hooks") or {}).get(kind) or []:
        try:
            if kind in IN_CONTAINER:
                run_hook_in_container(hook, state, kind, c.rec["pid"], c.rec["start_time"],
                                      mount_ns=kind == "startContainer")
            else:
                run_hook(hook, state, kind)
        except OciRuntimeError as e:
            if warn is None:
                raise
            warn(str(e))
