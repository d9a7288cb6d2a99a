"""Entry points of the Python API that reach across layers.

pyrt.run is `run` here: a plain run is pyrt.launch.process.run; with `profile=` it is
a measured run of the pool's machinery (pyrt.pool.pool.run)."""
from __future__ import annotations

from pyrt.launch import process


def run(args, rootfs=None, *, input=None, capture_output=False, timeout=None, check=False, profile=None,
        **kwargs):
    """Run `args` in a new container and wait for it (like subprocess.run).
    The container runs under pyrt's default seccomp profile unless `seccomp=None`
    (or a profile of its own) is given: see pyrt.launch.spec.build_spec for every
    option. profile="bench": a measured run (pyrt.pool.pool.run; `usage` is then a
    pyrt.pool.metering.Usage). network="slirp4netns": the container gets a network
    of its own with outbound access through slirp4netns for the run (what an
    ordinary user's containers use; pyrt.network.usermode), ended with it."""
    if kwargs.get("network") == "slirp4netns":
        # a private network with outbound access (pyrt.network.usermode), for this run
        from pyrt.network import usermode
        drop = usermode.cap_drop(kwargs.get("cap_add", ()), kwargs.get("cap_drop", ()), kwargs.get("privileged", False))
        net = usermode.start()
        try:
            return run(args, rootfs, input=input, capture_output=capture_output, timeout=timeout, check=check,
                       profile=profile, **dict(kwargs, network=net.fd, cap_drop=drop))
        finally:
            net.stop()
    if profile is not None:
        # imported on use: a plain run does not load the pool
        from pyrt.pool.pool import run as measured_run
        return measured_run(args, rootfs, profile=profile, input=input, capture_output=capture_output,
                            timeout=timeout, check=check, **kwargs)
    return process.run(args, rootfs, input=input, capture_output=capture_output, timeout=timeout, check=check,
                       **kwargs)
