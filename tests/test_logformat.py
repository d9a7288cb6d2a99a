"""A foreground container's log (pyrt.containers.logs.LogWriter): whatever the
chunks its output comes in (short lines, empty lines, lines longer than a record,
no newline at all), the records are those of the rule the monitor follows: one F
record per line of at most MAX_LINE bytes, longer ones cut into P records of
MAX_LINE bytes, and what is left at the end a P record. In-process, on files."""
from __future__ import annotations

import os
import random

import pytest

from pyrt.containers.lifecycle import LOG_FILE
from pyrt.containers.logs import LogWriter


class _Container:
    def __init__(self, d):
        self.dir = d


def expected(stream: bytes, max_line: int) -> list:
    """(tag, text) of every record, from the whole output at once."""
    out = []
    *lines, rest = stream.split(b"\n")
    for line in lines:
        pieces = [line[i:i + max_line] for i in range(0, len(line), max_line)] or [b""]
        out += [(b"P", p) for p in pieces[:-1]] + [(b"F", pieces[-1])]
    while len(rest) > max_line:
        out.append((b"P", rest[:max_line]))
        rest = rest[max_line:]
    if rest:
        out.append((b"P", rest))
    return out


def written(d) -> list:
    with open(os.path.join(d, LOG_FILE), "rb") as f:
        records = f.read().split(b"\n")
    assert records[-1] == b""
    out = []
    for r in records[:-1]:
        _time, stream, tag, text = r.split(b" ", 3)
        assert stream == b"stdout"
        out.append((tag, text))
    return out


def _output(rng: random.Random, max_line: int) -> bytes:
    parts = []
    for _ in range(rng.randrange(1, 60)):
        kind = rng.random()
        if kind < 0.5:
            parts.append(b"y" * rng.randrange(0, 4) + b"\n")
        elif kind < 0.7:
            parts.append(b"\n")
        elif kind < 0.9:
            parts.append(b"x" * rng.randrange(max_line - 2, 3 * max_line + 2) + b"\n")
        else:
            parts.append(b"z" * rng.randrange(1, 3 * max_line))  # no newline: joins the next
    return b"".join(parts)


@pytest.mark.parametrize("seed", range(40))
def test_log_records_whatever_the_chunks(tmp_shm, seed):
    rng = random.Random(seed)
    max_line = LogWriter.MAX_LINE
    data = _output(rng, max_line)
    d = os.path.join(tmp_shm, str(seed))
    os.mkdir(d)
    w = LogWriter(_Container(d))
    pos = 0
    while pos < len(data):
        n = rng.choice([1, 2, 7, 100, max_line - 1, max_line, max_line + 1, 65536, 3 * max_line])
        w.write("stdout", data[pos:pos + n])
        pos += n
    w.close()
    assert written(d) == expected(data, max_line)


def test_many_short_lines_in_one_chunk(tmp_shm):
    w = LogWriter(_Container(tmp_shm))
    w.write("stdout", b"y\n" * 30000 + b"tail")
    w.write("stdout", b" end\n")
    w.close()
    assert written(tmp_shm) == [(b"F", b"y")] * 30000 + [(b"F", b"tail end")]


def test_parse_log_joins_partial_records_per_stream():
    """The reader's side: P records are joined to their line, per stream, whatever
    the other stream does between them; a line still open at the end is kept
    without a newline. A hostile container's endless line (thousands of P
    records) comes back whole, its parts joined once."""
    from pyrt._core import parse_log
    data = (b"t1 stdout P ab\nt2 stderr F e\nt3 stdout F cd\n"
            + b"".join(b"t4 stderr P " + b"x" * 100 + b"\n" for _ in range(5000))
            + b"t5 stdout P zz\nt6 stderr F !\nt7 stdout P incomplete")
    assert parse_log(data) == [("t2", "stderr", b"e\n"), ("t1", "stdout", b"abcd\n"),
                               ("t4", "stderr", b"x" * 500000 + b"!\n"), ("t5", "stdout", b"zz")]
