"""What pull and push report as they go: `message(text)` for the lines around the
work (`Trying to pull ...`, `Digest: ...`) and `layer(digest, status, done, total)`
for each blob (`Downloading`, `Pull complete`, `Layer already exists`, ...).

`Silent` reports nothing (the Python API's default). `LayerProgress` is the CLI's:
messages on stdout; one line per layer, redrawn in place with a bar, on stderr when
it is a terminal; otherwise each layer's status changes as plain lines on stdout."""
from __future__ import annotations

import sys
import threading
import time

BAR_WIDTH = 30
REDRAW_EVERY = 0.1  # seconds


def _size(n) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.3g}{unit}"
        n /= 1000


class Silent:
    def message(self, text: str) -> None:
        pass

    def layer(self, digest: str, status: str, done: int = 0, total: int = 0) -> None:
        pass

    def close(self) -> None:
        pass


class LayerProgress(Silent):
    def __init__(self, quiet: bool = False, out=None, err=None):
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.quiet = quiet
        self.bars = not quiet and self.err.isatty()
        self._lock = threading.Lock()
        self._lines = {}     # short id -> text, in the order first seen
        self._status = {}    # short id -> last status printed (plain mode)
        self._drawn = 0      # lines of the bar block on screen
        self._dirty = False  # lines changed since they were drawn
        self._last = 0.0

    def message(self, text):
        if self.quiet:
            return
        with self._lock:
            self._redraw(force=True)
            self._drawn = 0  # a message ends the current block of bars
            self._lines.clear()
            print(text, file=self.out, flush=True)

    def layer(self, digest, status, done=0, total=0):
        if self.quiet:
            return
        key = digest[7:19]
        with self._lock:
            if not self.bars:
                if self._status.get(key) != status:
                    self._status[key] = status
                    print(f"{key}: {status}", file=self.out, flush=True)
                return
            self._lines[key] = f"{key}: {status}" + (f" {_bar(done, total)}" if total else "")
            self._dirty = True
            self._redraw(force=not total or done >= total)

    def close(self):
        with self._lock:
            self._redraw(force=True)

    def _redraw(self, force):
        """Rewrites the block of layer lines (cursor up over what was drawn before)."""
        now = time.monotonic()
        if not self._dirty or (not force and now - self._last < REDRAW_EVERY):
            return
        self._last, self._dirty = now, False
        up = f"\x1b[{self._drawn}A" if self._drawn else ""
        self.err.write(up + "".join(f"\r\x1b[K{line}\n" for line in self._lines.values()))
        self.err.flush()
        self._drawn = len(self._lines)


def _bar(done, total) -> str:
    fill = min(BAR_WIDTH, done * BAR_WIDTH // total)
    return "[" + "=" * fill + (">" if fill < BAR_WIDTH else "") + " " * (BAR_WIDTH - fill - 1) + \
        f"] {_size(done)}/{_size(total)}"
