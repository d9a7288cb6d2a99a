"""Linux capabilities by name, and the default set containers get (Docker's)."""
from __future__ import annotations
from pyrt.errors import InvalidArgument

NAMES = [
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
    "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
    "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
    "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
]
NUMBERS = {name: i for i, name in enumerate(NAMES)}

DEFAULT = [
    "CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID",
    "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE",
]
ALL = (1 << 64) - 1


def number(name: str) -> int:
    key = name.upper().removeprefix("CAP_")
    try:
        return NUMBERS[key]
    except KeyError:
        raise InvalidArgument(f"unknown capability {name!r}") from None


def mask(names) -> int:
    m = 0
    for n in names:
        m |= 1 << number(n)
    return m


def resolve(cap_add=(), cap_drop=(), privileged=False) -> int:
    """The capability mask: the default set (all when privileged), plus cap_add,
    minus cap_drop; "ALL" works in both as in docker."""
    if privileged:
        m = ALL
    else:
        m = mask(DEFAULT)
    if any(c.upper() == "ALL" for c in cap_add):
        m = ALL
    else:
        m |= mask(cap_add)
    if any(c.upper() == "ALL" for c in cap_drop):
        m = mask(c for c in cap_add if c.upper() != "ALL")
    else:
        m &= ~mask(cap_drop)
    return m


def names(m: int) -> list[str]:
    return [n for i, n in enumerate(NAMES) if m >> i & 1]
