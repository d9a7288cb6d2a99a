"""The pre-defined networks and the default one (docker's names)."""
from __future__ import annotations

import os

DEFAULT = "bridge"                        # the default network (made in the store on first use)
PREDEFINED = ("bridge", "host", "none")   # host and none: no network of their own
DEFAULT_BRIDGE = "pyrt0"                  # the default network's bridge


def default_network() -> str:
    """The network containers join when none is given: $PYRT_DEFAULT_NETWORK, else
    "bridge" as root (docker's default) and "none" otherwise (an ordinary user
    cannot make bridges; published ports then go through the monitor)."""
    env = os.environ.get("PYRT_DEFAULT_NETWORK")
    if env:
        return env
    return DEFAULT if os.geteuid() == 0 else "none"
