"""Keep the caller's terminal out of a container: where one of pyrt's stdio fds is a
terminal and the container gets no terminal of its own (no -t), the container gets a
pipe instead and a thread copies through it. A process holding the caller's
terminal could type into it (TIOCSTI), change its modes or take its foreground."""
from __future__ import annotations

import os


class Shield:
    """Pipes standing in for the terminal fds among 0 (when `stdin`), 1 and 2.

    `stdio()`: the kwargs (stdin/stdout/stderr) to start the process with;
    `started()` once it runs (closes our copies of its ends); `finish()` after it
    exited (waits a little for the output to drain)."""

    def __init__(self, stdin: bool):
        self._theirs, self._threads = {}, []
        for fd in ((0,) if stdin else ()) + (1, 2):
            if not os.isatty(fd):
                continue
            r, w = os.pipe2(os.O_CLOEXEC)
            if fd == 0:
                self._theirs["stdin"] = r
                self._start(0, w, close_src=False)
            else:
                self._theirs["stdout" if fd == 1 else "stderr"] = w
                self._start(r, fd, close_src=True)

    def _start(self, src, dst, close_src):
        def copy():
            try:
                while True:
                    data = os.read(src, 65536)
                    if not data:
                        break
                    view = memoryview(data)
                    while view:
                        view = view[os.write(dst, view):]
            except OSError:
                pass
            finally:
                if close_src:
                    os.close(src)
                if dst > 2:
                    os.close(dst)
        import threading  # here: only a terminal needs the copying threads (measured: a run without is faster)
        t = threading.Thread(target=copy, daemon=True, name="pyrt-stdio")
        t.start()
        self._threads.append((t, close_src))

    def stdio(self) -> dict:
        return dict(self._theirs)

    def started(self) -> None:
        for fd in self._theirs.values():
            os.close(fd)
        self._theirs = {}

    def finish(self, timeout: float = 2.0) -> None:
        self.started()
        for t, output in self._threads:
            if output:  # output drains; a stdin copier may wait on our stdin forever
                t.join(timeout)
