"""A container's log: containers/<id>/ctr.log (and its rotated files), in the CRI
format (`<time> <stream> F|P <text>`) that a detached container's monitor writes
and LogWriter writes for a foreground one; read, selected and followed."""
from __future__ import annotations

import os
import time

from pyrt._core import parse_log
from pyrt.containers.lifecycle import LOG_FILE
from pyrt.containers.logformat import full_records, lines_fit
from pyrt.oci.image import rfc3339


def log_files(container) -> list[str]:
    """The log's files, oldest first: the rotated ones (LOG.N .. LOG.1), then LOG."""
    base = os.path.join(container.dir, LOG_FILE)
    rotated = []
    for name in os.listdir(container.dir):
        head, dot, n = name.rpartition(".")
        if head == LOG_FILE and dot and n.isdigit():
            rotated.append((int(n), os.path.join(container.dir, name)))
    return [p for _, p in sorted(rotated, reverse=True)] + [base]


def log_records(container, *, stdout=True, stderr=True, timestamps=False, tail="all", since=None) -> list:
    """The log as [(stream, line)] in the order the lines were written; `tail`
    counts lines of both streams together, as docker does."""
    data = b""
    for path in log_files(container):
        try:
            with open(path, "rb") as f:
                data += f.read()
        except FileNotFoundError:  # rotated away meanwhile
            continue
    return _select_log(parse_log(data), stdout, stderr, timestamps, tail, since)


class LogWriter:
    """Appends a foreground container's output to its log, in the CRI format the
    monitor writes for detached ones (`<time> <stream> F|P <text>`), so `logs`
    shows every container's output."""

    # A line longer than this goes out in partial records of this size, as the
    # monitor's do (csrc/monitor.c, LINE_BUF): what waits for a newline stays small,
    # so output without newlines costs no more than any other.
    MAX_LINE = 8192

    def __init__(self, container):
        self.f = open(os.path.join(container.dir, LOG_FILE), "ab")
        self.pending = {}

    def write(self, stream: str, data: bytes) -> None:
        buf = self.pending.get(stream, b"") + data
        cut = buf.rfind(b"\n") + 1
        if cut and len(buf) - cut <= self.MAX_LINE and lines_fit(buf, cut, self.MAX_LINE):
            self.pending[stream] = buf[cut:]  # whole, short lines (the usual): an F record each
            self.f.write(full_records(self._head(stream), buf[:cut]))
            self.f.flush()
            return
        *done, rest = buf.split(b"\n")
        records = []
        for line in done:
            records += self._split(line)
            records[-1] = (b"F", records[-1][1])
        whole = (len(rest) - 1) // self.MAX_LINE * self.MAX_LINE  # what goes out now, in pieces
        records += [(b"P", rest[i:i + self.MAX_LINE]) for i in range(0, whole, self.MAX_LINE)]
        self.pending[stream] = rest[whole:] if whole > 0 else rest
        if records:
            self._emit_records(stream, records)

    def _split(self, line: bytes) -> list:
        """[(b"P", piece)...] of a line, MAX_LINE bytes at most each (the last one
        is turned into the line's F record by the caller)."""
        out = [(b"P", line[i:i + self.MAX_LINE]) for i in range(0, len(line), self.MAX_LINE)]
        return out or [(b"P", b"")]

    def close(self) -> None:
        for stream, rest in self.pending.items():
            if rest:
                self._emit(stream, b"P", [rest])
        self.f.close()

    def _emit(self, stream, tag, lines) -> None:
        self._emit_records(stream, [(tag, line) for line in lines])

    @staticmethod
    def _head(stream) -> bytes:
        return rfc3339().encode() + b" " + stream.encode() + b" "

    def _emit_records(self, stream, records) -> None:
        head = self._head(stream)
        self.f.write(b"".join(head + tag + b" " + line + b"\n" for tag, line in records))
        self.f.flush()


def read_logs(container, *, stdout=True, stderr=True, timestamps=False, tail="all", since=None) -> bytes:
    return b"".join(text for _, text in log_records(container, stdout=stdout, stderr=stderr,
                                                       timestamps=timestamps, tail=tail, since=since))


def _select_log(records, stdout, stderr, timestamps, tail, since) -> list:
    want = {"stdout"} if stdout else set()
    if stderr:
        want.add("stderr")
    lines = []
    for ts, stream, text in records:
        if stream not in want:
            continue
        if since is not None and _ts_seconds(ts) < since:
            continue
        if timestamps:
            text = (ts.encode() if isinstance(ts, str) else ts) + b" " + text
        lines.append((stream, text))
    if tail not in ("all", None):
        n = int(tail)
        lines = lines[-n:] if n > 0 else []
    return lines


def _ts_seconds(ts) -> float:
    import calendar
    text = ts.decode() if isinstance(ts, bytes) else ts
    main, _, frac = text.rstrip("Z").partition(".")
    return calendar.timegm(time.strptime(main, "%Y-%m-%dT%H:%M:%S")) + float("0." + (frac or "0"))


def follow_logs(container, *, records=False, **kwargs):
    """Yield what the log shows, then new output as it comes, until the container
    ends: bytes, or with `records` lists of (stream, line) in the order written.
    The current file is held open: after a rotation its end is read, then the new
    file from its start."""
    path = os.path.join(container.dir, LOG_FILE)
    pending, f = b"", None
    first = True
    try:
        while True:
            running = container.reload().status in ("running", "paused")
            chunk = b""
            if first:  # what was rotated away before we came
                for old in log_files(container)[:-1]:
                    try:
                        with open(old, "rb") as r:
                            chunk += r.read()
                    except FileNotFoundError:
                        pass
            if f is not None:
                chunk += f.read()
            try:
                if f is None or os.stat(path).st_ino != os.fstat(f.fileno()).st_ino:
                    if f is not None:
                        chunk += f.read()  # the rest of the rotated one
                        f.close()
                    f = open(path, "rb")
                    chunk += f.read()
            except FileNotFoundError:
                pass
            data = pending + chunk
            cut = data.rfind(b"\n") + 1
            pending = data[cut:]
            if cut:
                out = _select_log(parse_log(data[:cut]), kwargs.get("stdout", True), kwargs.get("stderr", True),
                                  kwargs.get("timestamps", False), kwargs.get("tail", "all") if first else "all",
                                  kwargs.get("since"))
                if out:
                    yield out if records else b"".join(text for _, text in out)
            first = False
            if not running and not chunk:
                return
            time.sleep(0.05)
    finally:
        if f is not None:
            f.close()
