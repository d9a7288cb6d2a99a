"""The guest suite: pyrt on a Debian 12 machine as it ships (kernel 6.1, systemd,
pure cgroup v2), run inside the VM by tests/vm/run.sh. It drives the installed
`pyrt` command as a user would. Outside the guest every test here skips."""
import os
import shutil
import uuid

import pytest

from guestlib import Pyrt

IN_GUEST = os.environ.get("PYRT_GUEST") == "1"
# the guest image has no CNI plugins: containers get no network unless told
os.environ.setdefault("PYRT_DEFAULT_NETWORK", "none")


def pytest_collection_modifyitems(config, items):
    if IN_GUEST:
        return
    skip = pytest.mark.skip(reason="guest suite: run with tests/vm/run.sh")
    for item in items:
        item.add_marker(skip)


@pytest.fixture(scope="session")
def store():
    """A store on the guest's ext4 root (where overlay must work), with the busybox
    image every test uses. Removed after the session, containers first."""
    root = f"/var/lib/pyrt-guest-{uuid.uuid4().hex[:8]}"
    p = Pyrt(root)
    try:
        p("image", "from-host", "busybox:latest", "/bin/busybox")
        yield p
    finally:
        ids = p("ps", "-aq", check=False).stdout.split()
        if ids:
            p("rm", "-f", *ids, check=False)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pyrt(store):
    """The session store; containers a test left are removed after it."""
    before = set(store("ps", "-aq").stdout.split())
    yield store
    left = [c for c in store("ps", "-aq", check=False).stdout.split() if c not in before]
    if left:
        store("rm", "-f", *left, check=False)
