"""Device allow-lists: which device nodes a container may create and open.

A rule is a tuple (type, major, minor, access, allow): type "a" (all), "b" or "c";
major and minor numbers, -1 for any; access a subset of "rwm" (read, write,
mknod); allow True or False. The last rule that matches a request decides, and a
request no rule matches is denied (the OCI runtime spec's linux.resources.devices).

Every container pyrt starts with a cgroup gets DEFAULT_RULES (docker's list) plus
a rule for each device added with `devices=` / `--device`. They are enforced by
the v1 devices controller (devices.deny "a", then devices.allow lines) or on
cgroup2 by an eBPF program (csrc/devices.c) attached to the container's cgroup;
see pyrt.cgroups.cgroup.Cgroup.set_devices.
"""
from __future__ import annotations

import os
import stat

from pyrt.errors import InvalidArgument

__all__ = ["DEFAULT_RULES", "Device", "parse_rule", "format_rule", "parse_device", "v1_lines"]

# docker's default device rules (moby oci/defaults.go): any node may be made, only
# these may be opened.
DEFAULT_RULES = (
    ("c", -1, -1, "m", True),
    ("b", -1, -1, "m", True),
    ("c", 1, 3, "rwm", True),    # /dev/null
    ("c", 1, 5, "rwm", True),    # /dev/zero
    ("c", 1, 7, "rwm", True),    # /dev/full
    ("c", 1, 8, "rwm", True),    # /dev/random
    ("c", 1, 9, "rwm", True),    # /dev/urandom
    ("c", 5, 0, "rwm", True),    # /dev/tty
    ("c", 5, 1, "rwm", True),    # /dev/console
    ("c", 5, 2, "rwm", True),    # /dev/ptmx
    ("c", 136, -1, "rwm", True),  # /dev/pts/*
)


def _check_access(access: str, what) -> str:
    if not access or any(ch not in "rwm" for ch in access) or len(set(access)) != len(access):
        raise InvalidArgument(f"invalid device access {access!r} in {what!r}: use r, w and m")
    return "".join(ch for ch in "rwm" if ch in access)


def parse_rule(text: str) -> tuple:
    """'c 1:3 rwm' (the v1 devices.allow form; '*' for any number; 'a' alone for
    all) -> (type, major, minor, access, True)."""
    parts = text.split()
    if parts == ["a"]:
        return ("a", -1, -1, "rwm", True)
    if len(parts) not in (2, 3) or parts[0] not in ("a", "b", "c") or ":" not in parts[1]:
        raise InvalidArgument(f"invalid device rule {text!r}: use 'c|b|a MAJOR:MINOR [rwm]'")
    nums = []
    for n in parts[1].split(":", 1):
        if n == "*":
            nums.append(-1)
        elif n.isdigit():
            nums.append(int(n))
        else:
            raise InvalidArgument(f"invalid device rule {text!r}: bad number {n!r}")
    access = _check_access(parts[2] if len(parts) == 3 else "rwm", text)
    return (parts[0], nums[0], nums[1], access, True)


def format_rule(rule) -> str:
    """(type, major, minor, access, allow) -> 'c 1:3 rwm' (the v1 form, without allow)."""
    kind, major, minor, access, _ = rule
    if kind == "a" and major == -1 and minor == -1:
        return "a"
    num = lambda n: "*" if n is None or n < 0 else str(n)  # noqa: E731
    return f"{kind} {num(major)}:{num(minor)} {access}"


def v1_lines(rules) -> list:
    """[(file, line)] to write into a v1 devices cgroup: reset to deny-all, then
    each rule in order (a later rule overrides an earlier one, as on cgroup2)."""
    out = [("devices.deny", "a")]
    for rule in rules:
        out.append(("devices.allow" if rule[4] else "devices.deny", format_rule(rule)))
    return out


class Device:
    """A host device node given to a container (`--device HOST[:CONTAINER][:rwm]`):
    made at `container_path` in its /dev with the host node's type and numbers,
    and allowed with `access`."""

    __slots__ = ("host_path", "container_path", "access", "type", "major", "minor", "mode")

    def __init__(self, host_path, container_path=None, access="rwm"):
        self.host_path = host_path
        self.container_path = container_path or host_path
        if not os.path.isabs(self.container_path):
            raise InvalidArgument(f"invalid device {self.container_path!r}: the path in the container "
                                  "must be absolute")
        self.access = _check_access(access, access)
        try:
            st = os.stat(host_path)
        except OSError as e:
            raise InvalidArgument(f"device {host_path}: {e.strerror}") from None
        if stat.S_ISCHR(st.st_mode):
            self.type = "c"
        elif stat.S_ISBLK(st.st_mode):
            self.type = "b"
        else:
            raise InvalidArgument(f"{host_path} is not a device node")
        self.major, self.minor = os.major(st.st_rdev), os.minor(st.st_rdev)
        self.mode = stat.S_IMODE(st.st_mode)

    def rule(self) -> tuple:
        return (self.type, self.major, self.minor, self.access, True)

    def to_dict(self) -> dict:
        return {"PathOnHost": self.host_path, "PathInContainer": self.container_path,
                "CgroupPermissions": self.access}

    def __repr__(self):
        return f"Device({self.host_path!r}, {self.container_path!r}, {self.access!r})"


def parse_device(value) -> Device:
    """docker's --device forms: 'HOST', 'HOST:CONTAINER', 'HOST:rwm',
    'HOST:CONTAINER:rwm'; a Device or a docker SDK dict (PathOnHost,
    PathInContainer, CgroupPermissions) is taken too."""
    if isinstance(value, Device):
        return value
    if isinstance(value, dict):
        return Device(value["PathOnHost"], value.get("PathInContainer") or None,
                      value.get("CgroupPermissions") or "rwm")
    if not isinstance(value, str) or not value:
        raise InvalidArgument(f"invalid device {value!r}")
    parts = value.split(":")
    if len(parts) > 3:
        raise InvalidArgument(f"invalid device {value!r}: use HOST[:CONTAINER][:rwm]")
    host, container, access = parts[0], None, "rwm"
    if len(parts) == 2:
        if parts[1] and all(ch in "rwm" for ch in parts[1]) and not parts[1].startswith("/"):
            access = parts[1]
        else:
            container = parts[1]
    elif len(parts) == 3:
        container, access = parts[1] or None, parts[2]
    return Device(host, container, access)


def rules_with(devices=()) -> list:
    """DEFAULT_RULES plus an allow rule for each Device."""
    return list(DEFAULT_RULES) + [d.rule() for d in devices]
