"""Terminals for containers (`run -t`, `exec -t`, `attach`): a pty of the
container's own devpts instance, whose master the caller (or a detached
container's monitor) holds, and the relay between the user's terminal and it."""
from __future__ import annotations

import os

from pyrt import sys as psys

# socket and signal are imported in the functions that use them: a foreground run
# without a terminal only needs write_all (measured: they import enum).

TIOCSPTLCK = 0x40045431
TIOCGPTPEER = 0x5441
TIOCGWINSZ = 0x5413
TIOCSWINSZ = 0x5414


def console_socket():
    """(ours, the container's): the container's end goes in spec.console_fd;
    the child opens a pty in its devpts, makes it its terminal and sends the master
    back over it (csrc/oci.c)."""
    import socket
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    return a, b


def receive_master(sock: socket.socket) -> int:
    """The pty master the container sent (after a successful spawn)."""
    import socket
    try:
        _, fds, _, _ = socket.recv_fds(sock, 1, 1)
    finally:
        sock.close()
    if not fds:
        raise OSError("the container sent no terminal")
    return fds[0]


def open_pty_in(pid: int):
    """A pty of the devpts instance mounted in process `pid`'s root, opened through
    that root (for exec): (master, slave)."""
    import fcntl
    rootfd = os.open(f"/proc/{pid}/root", os.O_PATH | os.O_CLOEXEC)
    flags = os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC
    try:
        try:
            master = psys.openat2(rootfd, "/dev/ptmx", flags, 0, psys.RESOLVE_IN_ROOT)
        except OSError:
            master = psys.openat2(rootfd, "/dev/pts/ptmx", flags, 0, psys.RESOLVE_IN_ROOT)
    finally:
        os.close(rootfd)
    try:
        fcntl.ioctl(master, TIOCSPTLCK, b"\0\0\0\0")
        slave = fcntl.ioctl(master, TIOCGPTPEER, flags)
        copy_window_size(-1, master)  # 24x80 until the relay knows better
    except OSError:
        os.close(master)
        raise
    return master, slave


def copy_window_size(src_fd: int, master: int) -> None:
    """The user's terminal size onto the container's; 24x80 when src is no terminal."""
    import fcntl
    import struct
    try:
        size = fcntl.ioctl(src_fd, TIOCGWINSZ, b"\0" * 8)
    except (OSError, ValueError):  # no terminal, or no fd
        size = struct.pack("HHHH", 24, 80, 0, 0)
    try:
        fcntl.ioctl(master, TIOCSWINSZ, size)
    except OSError:
        pass


def relay(master: int, pidfd: int, interactive: bool, stdin: int = 0, stdout: int = 1, tap=None) -> None:
    """Copies the user's input to the container's terminal (when interactive) and the
    terminal's output to stdout until the process behind `pidfd` has exited and its
    output is drained. A user's terminal is raw meanwhile (keys such as ^C reach the
    container's line discipline) and its window size changes are passed on. `tap`,
    if given, sees the output too (for the container's log)."""
    import signal
    import termios
    import tty as _tty
    on_tty = os.isatty(stdin)
    saved = None
    if interactive and on_tty:
        saved = termios.tcgetattr(stdin)
        _tty.setraw(stdin)
    copy_window_size(stdin if on_tty else stdout, master)
    old_winch = signal.signal(signal.SIGWINCH, lambda *_: copy_window_size(stdin, master)) if on_tty else None
    try:
        def out(data):
            write_all(stdout, data)
            if tap:
                tap(data)
        _pump(master, pidfd, out, stdin if interactive else None)
    finally:
        if old_winch is not None:
            signal.signal(signal.SIGWINCH, old_winch)
        if saved is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)


def read_until_closed(master: int, pidfd: int) -> bytes:
    """Everything the terminal shows until the process behind pidfd has exited (for
    callers without a terminal of their own, such as exec_run(tty=True))."""
    out = []
    _pump(master, pidfd, out.append, None)
    return b"".join(out)


def _pump(master: int, pidfd: int, write, stdin) -> None:
    import selectors
    sel = selectors.DefaultSelector()
    sel.register(master, selectors.EVENT_READ)
    sel.register(pidfd, selectors.EVENT_READ)
    if stdin is not None:
        sel.register(stdin, selectors.EVENT_READ)
    try:
        exited = False
        while True:
            events = sel.select(0 if exited else None)
            if exited and not any(key.fd == master for key, _ in events):
                return  # the process is gone and its output drained
            for key, _ in events:
                if key.fd == pidfd:
                    exited = True
                    sel.unregister(pidfd)
                elif key.fd == master:
                    try:
                        data = os.read(master, 65536)
                    except OSError:  # EIO: every slave closed
                        data = b""
                    if not data:
                        return
                    write(data)
                else:
                    data = os.read(stdin, 65536)
                    if data:
                        write_all(master, data)
                    else:  # end of input: end of file for the container too
                        sel.unregister(stdin)
                        write_all(master, b"\x04")
    finally:
        sel.close()


def write_all(fd: int, data: bytes) -> None:
    """All of data to the fd (a blocking one)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
