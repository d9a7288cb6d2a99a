"""A foreground run's output relayed to a reader that is slow: nothing is lost or
reordered, on either stream, and the log keeps it all. No timing is asserted:
the reader pauses between small reads only to keep pyrt's pipe full."""
from __future__ import annotations

import os
import subprocess
import threading
import time

from clitools import PYRT
from helpers import DEADLINE

LINES = 20000
SCRIPT = (f"i=0; while [ $i -lt {LINES} ]; do echo out-$i; "
          "[ $((i % 1000)) = 0 ] && echo err-$i >&2; i=$((i+1)); done")


def test_a_slow_reader_loses_nothing(store):
    p = subprocess.Popen([PYRT, "--root", store.root, "run", "--name", "slow", "base:1", "sh", "-c", SCRIPT],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd="/",
                         env={**os.environ, "PYRT_ROOT": "/nonexistent-on-purpose"})
    err = []
    t = threading.Thread(target=lambda: err.append(p.stderr.read()))
    t.start()
    out = []
    try:
        while True:
            chunk = os.read(p.stdout.fileno(), 4096)
            if not chunk:
                break
            out.append(chunk)
            if len(out) < 50:
                time.sleep(0.01)  # slow at first: pyrt meets a full pipe
        assert p.wait(timeout=DEADLINE) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        t.join(DEADLINE)
        p.stdout.close()
        p.stderr.close()
    want_out = "".join(f"out-{i}\n" for i in range(LINES))
    want_err = "".join(f"err-{i}\n" for i in range(0, LINES, 1000))
    assert b"".join(out).decode() == want_out
    assert err == [want_err.encode()]
    logs = store.cli("logs", "slow")
    assert logs.stdout.decode() == want_out and logs.stderr.decode() == want_err
