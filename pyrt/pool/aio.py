"""The pool and pyrt.run for asyncio: a container's pipes and pidfd waited on through
the event loop (no thread per container)."""
from __future__ import annotations

import os

from pyrt import _core


async def aio_command(loop, pidfd, in_w, input, out_r, err_r, timeout, args, ends):
    """Feed input, read the outputs to their end and wait for the exit, all
    through the event loop. Returns (status, rusage tuple, stdout, stderr).
    On timeout the process is killed (and reaped) and TimeoutExpired raised."""
    import asyncio
    import signal
    outs = {out_r: [], err_r: []}
    open_fds = set()
    done = loop.create_future()
    state = {"exited": False, "view": memoryview(input) if input is not None else None}

    def check():
        if state["exited"] and not open_fds and not done.done():
            done.set_result(None)

    def finish_fd(fd):
        loop.remove_reader(fd)
        loop.remove_writer(fd)
        open_fds.discard(fd)
        try:
            os.close(fd)
        except OSError:
            pass
        if fd in ends:
            ends.remove(fd)
        check()

    def on_read(fd):
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return
        if chunk:
            outs[fd].append(chunk)
        else:
            finish_fd(fd)

    def on_write():
        view = state["view"]
        try:
            n = os.write(in_w, view[:65536])
        except BlockingIOError:
            return
        except (BrokenPipeError, ConnectionResetError):
            n = len(view)
        state["view"] = view = view[n:]
        if not view:
            finish_fd(in_w)

    def on_exit():
        loop.remove_reader(pidfd)
        state["exited"] = True
        check()

    for fd in (out_r, err_r):
        if fd >= 0:
            os.set_blocking(fd, False)
            open_fds.add(fd)
            loop.add_reader(fd, on_read, fd)
    if in_w >= 0:
        os.set_blocking(in_w, False)
        open_fds.add(in_w)
        if input:
            loop.add_writer(in_w, on_write)
        else:
            finish_fd(in_w)
    loop.add_reader(pidfd, on_exit)
    try:
        finished, _ = await asyncio.wait({done}, timeout=timeout)
        if not finished:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            for fd in list(open_fds):
                finish_fd(fd)
            if not state["exited"]:
                await done
            reaped = _core.wait(pidfd, 0) or _core.wait(pidfd)
            from subprocess import TimeoutExpired
            e = TimeoutExpired(args, timeout, output=b"".join(outs.get(out_r, [])),
                               stderr=b"".join(outs.get(err_r, [])))
            e.pyrt_reaped = reaped  # (status, rusage): the process is gone and reaped
            raise e
    finally:
        loop.remove_reader(pidfd)
        for fd in list(open_fds):
            finish_fd(fd)
    result = _core.wait(pidfd, 0)
    if result is None:  # readable pidfd: the exit is there
        result = _core.wait(pidfd)
    status, ru = result
    return status, ru, b"".join(outs[out_r]) if out_r >= 0 else None, \
        b"".join(outs[err_r]) if err_r >= 0 else None


async def arun(args, rootfs=None, *, input=None, capture_output=False, timeout=None, check=False,
               text=False, **kwargs):
    """pyrt.run for asyncio: starts `args` in a new container (the start itself
    takes the few ms of a spawn) and waits for it through the event loop, on its
    pidfd and pipes (no thread per container). Returns a CompletedProcess with
    `usage` (the rusage tuple of pyrt.run)."""
    import asyncio
    from pyrt.launch.process import DEVNULL, PIPE, Process, _completed_process_class
    loop = asyncio.get_running_loop()
    if input is not None:
        kwargs["stdin"] = PIPE
    if capture_output:
        kwargs["stdout"] = kwargs["stderr"] = PIPE
    kwargs.setdefault("stdin", DEVNULL if input is None else PIPE)
    if text and isinstance(input, str):
        input = input.encode()
    p = Process(args, rootfs, **kwargs)
    ends = []
    try:
        in_w = os.dup(p.stdin.fileno()) if p.stdin else -1
        out_r = os.dup(p.stdout.fileno()) if p.stdout else -1
        err_r = os.dup(p.stderr.fileno()) if p.stderr else -1
        for f in (p.stdin, p.stdout, p.stderr):
            if f:
                f.close()
        ends = [fd for fd in (in_w, out_r, err_r) if fd >= 0]
        status, ru, out, err = await aio_command(loop, p._pidfd, in_w, input, out_r, err_r, timeout, args, ends)
        p._finish((status, ru))
    except BaseException as e:
        if p.returncode is None and getattr(e, "pyrt_reaped", None):
            p._finish(e.pyrt_reaped)
        if p.returncode is None:
            p.kill()
            p.wait()
        raise
    finally:
        for fd in ends:
            try:
                os.close(fd)
            except OSError:
                pass
    if text:
        out = out.decode() if out is not None else None
        err = err.decode() if err is not None else None
    result = _completed_process_class()(args, p.returncode, out, err)
    result.usage = p.usage
    if check:
        result.check_returncode()
    return result
