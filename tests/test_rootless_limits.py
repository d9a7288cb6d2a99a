"""Limits for an ordinary user without a delegated cgroup subtree (this host has
no systemd; the guest suite, tests/vm, runs them with delegation): each request
fails with one line that says how to get one, and leaves nothing behind."""
from __future__ import annotations

import json
import os

import pytest

from clitools import ok

pytestmark = pytest.mark.timeout(300)


@pytest.mark.parametrize("flags", [["--memory", "64m"], ["--cpus", "0.5"], ["--pids-limit", "50"]])
def test_container_limit_without_delegation(user, base_tar, flags):
    ok(user.pyrt("import", base_tar, "base:1"))
    for run in (["run", "--rm"], ["run", "-d"]):
        r = user.pyrt(*run, *flags, "--network", "none", "base:1", "true")
        err = r.stderr.decode()
        assert r.returncode == 125 and err.startswith("pyrt: ") and err.count("\n") == 1, err
        assert "loginctl enable-linger" in err and "Delegate=" in err, err
    assert json.loads(ok(user.pyrt("ps", "-a", "--format", "json"))) == []
    assert os.listdir(os.path.join(user.store, "containers")) == []
    # without a limit no cgroup is needed
    assert user.pyrt("run", "--rm", "--network", "none", "base:1", "true").returncode == 0
