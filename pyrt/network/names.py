"""The pre-defined networks and the default one (docker's names)."""
from __future__ import annotations

import os

DEFAULT = "bridge"                        # the default network (made in the store on first use)
PREDEFINED = ("bridge", "host", "none", "slirp4netns")  # the others: no network of pyrt's own
USERMODE = "slirp4netns"                  # a private network through slirp4netns (pyrt.network.usermode)
DEFAULT_BRIDGE = "pyrt0"                  # the default network's bridge


def default_network() -> str:
    """The network containers join when none is given: $PYRT_DEFAULT_NETWORK, else
    "bridge" as root (docker's default); an ordinary user, who cannot make
    bridges, gets "slirp4netns" where slirp4netns and nsenter are installed (as
    rootless podman), else "none"."""
    env = os.environ.get("PYRT_DEFAULT_NETWORK")
    if env:
        return env
    if os.geteuid() == 0:
        return DEFAULT
    return USERMODE if _installed("slirp4netns") and _installed("nsenter") else "none"


def _installed(name: str) -> bool:
    dirs = os.environ.get("PATH", "").split(os.pathsep) + ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]
    return any(os.access(os.path.join(d, name), os.X_OK) for d in dirs if d)
