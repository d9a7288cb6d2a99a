"""What pyrt-monitor reads from its caller (csrc/monitor_wire.c: typed records of
structs packed as specs are): a stream that is not one is refused with a report,
and the monitor starts nothing. The well-formed stream is exercised by every
detached container (test_monitor.py, test_lifecycle_*)."""
import os
import struct
import subprocess

import pytest

import pyrt

MONITOR = os.path.join(os.path.dirname(pyrt.__file__), "pyrt-monitor")
REPORT = struct.Struct("=iiii i32s480s")  # ok, container pid, monitor pid, pad, struct pyrt_error


def _feed(data: bytes):
    """Run pyrt-monitor on a memfd holding `data`: its exit status and report."""
    memfd = os.memfd_create("pyrt-monitor-spec-test")
    r, w = os.pipe()
    try:
        os.write(memfd, data)
        p = subprocess.run([MONITOR, str(memfd), str(w)], pass_fds=(memfd, w), timeout=30,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(w)
        w = -1
        rec = os.read(r, 4096)
    finally:
        for fd in (memfd, r, w):
            if fd >= 0:
                os.close(fd)
    return p.returncode, rec


def _record(kind, payload):
    return struct.pack("=IIQ", kind, 0, len(payload)) + payload + b"\0" * (-len(payload) % 8)


@pytest.mark.parametrize("data", [
    b"",
    b"garbage!" * 10,
    b"PYRTMON2" + b"\0" * 64,                               # the stream before typed records
    b"PYRTMON3",                                            # no records
    b"PYRTMON3" + struct.pack("=IIQ", 1, 0, 1 << 40),       # a record longer than the stream
    b"PYRTMON3" + _record(1, b"\xff" * 64),                 # a spec that is no packed spec
    b"PYRTMON3" + _record(9, b"\0" * 64),                   # a kind nobody knows
    b"PYRTMON3" + _record(2, struct.pack("=iiiQQ", -1, -1, -1, 1 << 60, 1)),  # fds beyond the record
], ids=["empty", "garbage", "old", "no-records", "too-long", "bad-spec", "unknown-kind", "bad-fds"])
def test_a_malformed_stream_is_refused(data):
    status, rec = _feed(data)
    assert status == 1
    ok, cpid, _, _, err, op, path = REPORT.unpack(rec[:REPORT.size])
    assert (ok, cpid) == (0, 0)
    assert (op.rstrip(b"\0"), path.rstrip(b"\0"), err) == (b"read", b"monitor spec", 22)
