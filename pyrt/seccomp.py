"""pyrt's default seccomp profile for containers (as docker has one): every system
call is allowed but those that reach kernel state no namespace isolates (keyrings,
modules, kexec, clocks, swap, accounting), that widen the kernel's attack surface
for little use in a container (bpf, perf_event_open, userfaultfd, file handles by
number), or that make new namespaces and mounts (the container's own are set up
before the filter is loaded). A capability given with cap_add lifts the rules that
belong to it, as in docker; privileged containers and `seccomp=unconfined` get no
filter. Denied calls fail with EPERM (clone3 with ENOSYS, so that C libraries fall
back to clone, whose namespace flags the filter can see)."""
from __future__ import annotations

import functools

EPERM, ENOSYS = 1, 38
# CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET
_CLONE_NS_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000)

# capability (None: no capability lifts it) -> system calls denied without it
_DENIED = {
    None: ["kexec_load", "kexec_file_load", "create_module", "get_kernel_syms", "query_module",
           "nfsservctl", "uselib", "ustat", "sysfs", "_sysctl", "vm86", "vm86old",
           "add_key", "keyctl", "request_key"],
    "SYS_ADMIN": ["mount", "umount", "umount2", "pivot_root", "setns", "unshare", "fsopen", "fsconfig",
                  "fsmount", "fspick", "move_mount", "open_tree", "mount_setattr", "quotactl",
                  "quotactl_fd", "lookup_dcookie", "bpf", "perf_event_open", "fanotify_init"],
    "SYS_MODULE": ["init_module", "finit_module", "delete_module"],
    "SYS_BOOT": ["reboot"],
    "SYS_TIME": ["settimeofday", "stime", "clock_settime", "clock_settime64", "adjtimex", "clock_adjtime",
                 "clock_adjtime64"],
    "SYS_PACCT": ["acct"],
    "SYS_RAWIO": ["iopl", "ioperm"],
    "SYS_PTRACE": ["userfaultfd"],
    "DAC_READ_SEARCH": ["open_by_handle_at", "name_to_handle_at"],
    "SYS_NICE": ["get_mempolicy", "set_mempolicy", "mbind", "move_pages"],
    "SYSLOG": ["syslog"],
    "SYS_RESOURCE": ["swapon", "swapoff"],
}


def default_profile(cap_add=()) -> dict:
    """The default profile (OCI linux.seccomp form) for a container with `cap_add`
    (names with or without CAP_, or ALL)."""
    given = {c.upper().removeprefix("CAP_") for c in cap_add}
    rules = []
    for cap, names in _DENIED.items():
        if cap is None or ("ALL" not in given and cap not in given):
            rules.append({"names": list(names), "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM})
    if "ALL" not in given and "SYS_ADMIN" not in given:
        # new namespaces through clone: one rule per flag (a rule matches a masked value)
        for flag in _CLONE_NS_FLAGS:
            rules.append({"names": ["clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM,
                          "args": [{"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}]})
        rules.append({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS})
    return {"defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": rules}


def available() -> bool:
    from pyrt import _core
    return bool(_core.seccomp_available())


@functools.lru_cache(maxsize=16)
def _compiled(cap_add: tuple) -> tuple:
    from pyrt.oci.runtime_spec import compile_seccomp
    return compile_seccomp(default_profile(cap_add))


def filter_for(cap_add=(), privileged=False, profile=None):
    """(BPF program bytes, seccomp flags) for a container, or None for no filter:
    privileged, `profile` "unconfined", or a pyrt built without libseccomp.
    `profile`: None for the default, or a profile dict (OCI/docker JSON form)."""
    if privileged or profile == "unconfined" or not available():
        return None
    if profile is not None:
        from pyrt.oci.runtime_spec import compile_seccomp
        return compile_seccomp(profile)
    return _compiled(tuple(sorted(cap_add)))
