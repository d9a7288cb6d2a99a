# Bindings of csrc/devices.h: device allow-lists on cgroup2 as an eBPF
# BPF_PROG_TYPE_CGROUP_DEVICE program (generated in C, loaded with bpf(2)).
# Included by _core.pyx after _spawn.pxi, whose _Arena and pyrt_error it uses.

from libc.stdint cimport int64_t
from libc.stdlib cimport free as _dfree


cdef extern from "devices.h":
    cdef struct pyrt_dev_rule:
        char type
        int64_t major
        int64_t minor
        unsigned int access
        int allow

    int pyrt_devices_program(const pyrt_dev_rule *rules, size_t nrules, void **insns,
                             size_t *ninsns, pyrt_error *e) nogil
    int pyrt_devices_attach(int cgroup_fd, const char *path, const pyrt_dev_rule *rules,
                            size_t nrules, pyrt_error *e) nogil


cdef pyrt_dev_rule *_dev_rules(object rules, _Arena arena) except NULL:
    """rules: [(type 'a'|'b'|'c', major or -1, minor or -1, access 'rwm' subset, allow)]."""
    cdef pyrt_dev_rule *r = <pyrt_dev_rule *>arena.alloc(len(rules), sizeof(pyrt_dev_rule))
    cdef Py_ssize_t i
    cdef unsigned int bits
    for i, (kind, major, minor, access, allow) in enumerate(rules):
        if kind not in ("a", "b", "c"):
            raise ValueError(f"invalid device type {kind!r}: use a, b or c")
        bits = 0
        for ch in access:
            if ch == "m":
                bits |= 1
            elif ch == "r":
                bits |= 2
            elif ch == "w":
                bits |= 4
            else:
                raise ValueError(f"invalid device access {access!r}: use r, w and m")
        if bits == 0:
            raise ValueError("empty device access")
        r[i].type = ord(kind)
        r[i].major = -1 if major is None else major
        r[i].minor = -1 if minor is None else minor
        r[i].access = bits
        r[i].allow = 1 if allow else 0
    return r


cdef object _dev_error(pyrt_error *err):
    from pyrt.errors import SpawnError
    return _error_from_c(err, SpawnError)


def devices_program(rules):
    """The eBPF device filter for `rules` (see _dev_rules) as bytes (8 per instruction)."""
    cdef _Arena arena = _Arena()
    cdef pyrt_dev_rule *r = _dev_rules(rules, arena)
    cdef void *insns = NULL
    cdef size_t n = 0
    cdef pyrt_error err
    if pyrt_devices_program(r, len(rules), &insns, &n, &err) < 0:
        raise _dev_error(&err)
    try:
        return (<char *>insns)[:n * 8]
    finally:
        _dfree(insns)


def devices_attach(int cgroup_fd, path, rules):
    """Load the device filter for `rules` and attach it to the cgroup2 directory fd
    (BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI). Raises SpawnError (op, path, errno)."""
    cdef _Arena arena = _Arena()
    cdef pyrt_dev_rule *r = _dev_rules(rules, arena)
    cdef const char *cpath
    cdef size_t n = len(rules)
    cdef pyrt_error err
    cdef int rc
    from os import fsencode
    cpath = arena.cstr(fsencode(path))
    with nogil:
        rc = pyrt_devices_attach(cgroup_fd, cpath, r, n, &err)
    if rc < 0:
        raise _dev_error(&err)
