"""Attaching to a running detached container: its monitor's socket
(containers/<id>/attach.sock, csrc/monitor.h) sends its output and, for one with a
terminal, the terminal's master, which our input then goes to."""
from __future__ import annotations

import os
import signal
import socket

from pyrt.containers.lifecycle import ATTACH_SOCKET
from pyrt.errors import Conflict
from pyrt.launch.tty import copy_window_size, write_all


def connect(container):
    """(socket, master fd or None): attached to a running detached container's
    monitor (csrc/monitor.h); the master only for one with a terminal."""
    import array
    if container.reload().status not in ("running", "paused"):
        raise Conflict(f"container {container.name} is not running: attach to a running container")
    dfd = os.open(container.dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        sock.connect(f"/proc/self/fd/{dfd}/{ATTACH_SOCKET}")
        fds = array.array("i")
        _, anc, _, _ = sock.recvmsg(1, socket.CMSG_SPACE(fds.itemsize))
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        raise Conflict(f"container {container.name} cannot be attached to (it has no monitor socket: it ran "
                       "in the foreground, or was started by an older pyrt)") from None
    except BaseException:
        sock.close()
        raise
    finally:
        os.close(dfd)
    for level, typ, data in anc:
        if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
            fds.frombytes(data[:fds.itemsize])
    return sock, (fds[0] if fds else None)


def output(sock):
    """(stream, bytes) of each chunk of output the monitor sends, until the end."""
    while True:
        msg = sock.recv(1 << 16)
        if not msg:
            return
        yield ("stderr" if msg[:1] == b"2" else "stdout"), msg[1:]


def attach(container, *, stdin: bool = True, detach_keys: bytes = b"\x10\x11", stdin_fd: int = 0,
           stdout_fd: int = 1, stderr_fd: int = 2) -> bool:
    """Attaches to a running detached container: its output as it comes; for one
    with a terminal, our input goes to it (raw, when ours is a terminal too) and our
    window size follows. Returns True when the detach keys ended it (the container
    runs on), False when the container ended."""
    sock, master = connect(container)
    try:
        return _attached(sock, master, stdin and master is not None, detach_keys, stdin_fd, stdout_fd, stderr_fd)
    finally:
        sock.close()
        if master is not None:
            os.close(master)


def _attached(sock, master, with_input, detach_keys, stdin_fd, stdout_fd, stderr_fd) -> bool:
    import selectors
    import termios
    import tty as _tty
    on_tty = with_input and os.isatty(stdin_fd)
    saved = termios.tcgetattr(stdin_fd) if on_tty else None
    if on_tty:
        _tty.setraw(stdin_fd)
    old_winch = None
    if master is not None and os.isatty(stdin_fd):
        copy_window_size(stdin_fd, master)
        old_winch = signal.signal(signal.SIGWINCH, lambda *_: copy_window_size(stdin_fd, master))
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ)
    if with_input:
        sel.register(stdin_fd, selectors.EVENT_READ)
    typed = b""  # the end of what was typed, to see the detach keys
    try:
        while True:
            for key, _ in sel.select():
                if key.fileobj is sock:
                    msg = sock.recv(1 << 16)
                    if not msg:
                        return False  # the container has ended
                    write_all(stderr_fd if msg[:1] == b"2" else stdout_fd, msg[1:])
                    continue
                data = os.read(stdin_fd, 4096)
                if not data:
                    sel.unregister(stdin_fd)
                    continue
                typed = (typed + data)[-len(detach_keys):] if detach_keys else b""
                if detach_keys and typed == detach_keys:
                    head = data[:-len(detach_keys)] if data.endswith(detach_keys) else b""
                    if head:
                        write_all(master, head)
                    return True
                write_all(master, data)
    finally:
        sel.close()
        if old_winch is not None:
            signal.signal(signal.SIGWINCH, old_winch)
        if saved is not None:
            termios.tcsetattr(stdin_fd, termios.TCSADRAIN, saved)
