"""`pyrt-runtime`, the OCI runtime command, as the tests run it: `Runtime` wraps it
with a state root of its own (the `oci_rt` fixture in conftest.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

RUNTIME = os.path.join(os.path.dirname(sys.executable), "pyrt-runtime")
TIMEOUT = 120


class Runtime:
    """`pyrt-runtime --root ROOT ...` with the given state root; remembers every
    container id it was asked to create, and force-deletes them in cleanup()."""

    def __init__(self, binary, root, base):
        self.binary, self.root, self.base = binary, root, base
        self.ids = []

    def new_id(self, prefix="t"):
        cid = f"{prefix}-{uuid.uuid4().hex[:12]}"
        self.ids.append(cid)
        return cid

    def __call__(self, *args, check=False, timeout=TIMEOUT, glob=(), files=False):
        """files=True: stdout and stderr go through files rather than pipes (for
        commands that leave a process behind holding them: exec -d)."""
        argv = [self.binary, "--root", self.root, *glob, *args]
        if files:
            import tempfile
            with tempfile.TemporaryFile(dir=self.base) as out, tempfile.TemporaryFile(dir=self.base) as err:
                rc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                    timeout=timeout).returncode
                out.seek(0)
                err.seek(0)
                p = subprocess.CompletedProcess(argv, rc, out.read(), err.read())
        else:
            p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"pyrt-runtime {' '.join(args)}: exit {p.returncode}: "
                                 f"{p.stderr.decode(errors='replace')}")
        return p

    def state(self, cid):
        return json.loads(self("state", cid, check=True).stdout)

    def create(self, cid, bundle, *extra):
        """create; the container inherits create's stdio: files (cid.out, cid.err in
        the bundle), never our pipes, which it would hold open."""
        argv = [self.binary, "--root", self.root, "create", "--bundle", bundle, *extra, cid]
        with open(os.path.join(bundle, f"{cid}.out"), "wb") as out, \
                open(os.path.join(bundle, f"{cid}.err"), "w+b") as err:
            rc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                timeout=TIMEOUT).returncode
            err.seek(0)
            return subprocess.CompletedProcess(argv, rc, b"", err.read())

    def output(self, cid, bundle):
        with open(os.path.join(bundle, f"{cid}.out"), "rb") as f:
            return f.read()

    def cleanup(self):
        for cid in self.ids:
            self("delete", "--force", cid)
