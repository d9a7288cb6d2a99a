"""What ends a foreground container when the `pyrt` process that runs it dies
before it could end it itself (SIGKILL from `timeout -s KILL`, the OOM killer, a
crash): a small C process, pyrt-reaper (csrc/reaper.h), that the runner starts
first and tells what to do, and that acts only if the runner's end of their
socket closes without a word that it is done.

Why the container goes too (docker's keeps running when its client dies, under
its daemon): a foreground container's output goes to its `pyrt` process and
nothing else, so without it the container's output can be neither shown nor
logged, and a CI step bounded by `timeout` expects its work gone with it. Run
with -d to have a container outlive the command that started it."""
from __future__ import annotations

import os

from pyrt import _core


class Reaper:
    """Start before the container exists; then name what to do should this
    process die: pass it to pyrt.spawn (`reaper=`), which hands it the
    container's pidfd before the container may run (the container's init: every
    process of its pid namespace goes with it) and the device cgroup made for it;
    `rmdir_on_death(dirs)` (more empty cgroups), `run_on_death(argv)` (a clean-up
    command, run once the container is gone). `disarm()` once this process has
    ended and cleaned up the container itself (the context manager does it on the
    way out, whatever happened): only a process that died leaves its reaper
    armed."""

    def __init__(self):
        self._sock, self.pid = _core.reaper_start()

    def run_on_death(self, argv) -> None:
        self._send(b"a" + b"".join(os.fsencode(a) + b"\0" for a in argv))

    def rmdir_on_death(self, dirs) -> None:
        if dirs:
            self._send(b"r" + b"".join(os.fsencode(d) + b"\0" for d in dirs))

    def kill_on_death(self, pidfd: int) -> None:
        """A process started without it (a pidfd: never a pid that could be reused)."""
        _core.reaper_send(self._sock, b"p", pidfd)

    def fileno(self) -> int:
        """The socket, for a spawn to send the container's pidfd on (spawn.h's
        reaper_fd) before the container may run: there is no moment when it runs
        and its reaper could not end it."""
        return self._sock

    def disarm(self) -> None:
        if self._sock < 0:
            return
        try:
            self._send(b"d")
        except OSError:
            pass  # it is gone: nothing left to tell it
        finally:
            os.close(self._sock)
            self._sock = -1

    def _send(self, message: bytes) -> None:
        _core.reaper_send(self._sock, message)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.disarm()
