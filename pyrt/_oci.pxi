# Bindings of what only the OCI runtime (pyrt-runtime) asks of the spawn core:
# csrc/oci.h (spec.oci: wait before exec, joined namespaces, devices,
# sysctls, capability sets) and csrc/seccomp_compile.c (seccomp profiles compiled with
# libseccomp). Included by _core.pyx after _spawn.pxi, whose _Arena and
# pyrt_error it uses; _fill_spawn_spec calls _fill_oci when the spec has `oci`.

from libc.stdint cimport uint32_t
from libc.stdlib cimport free as _free


cdef extern from "oci.h":
    cdef struct pyrt_ns_join:
        int fd
        int type

    cdef struct pyrt_device:
        const char *path
        unsigned int mode
        unsigned int major
        unsigned int minor
        uid_t uid
        gid_t gid

    cdef struct pyrt_oci:
        int wait_fd
        const pyrt_ns_join *joins
        size_t njoins
        uint64_t unshare_flags
        int new_keyring
        const char *chroot_path
        const pyrt_device *devices
        size_t ndevices
        int dev_links
        const char *const *sysctls
        unsigned long root_propagation
        int cap_sets
        uint64_t cap_effective
        uint64_t cap_permitted
        uint64_t cap_inheritable
        uint64_t cap_ambient


cdef extern from "seccomp_compile.h":
    cdef struct pyrt_seccomp_arg:
        unsigned int index
        int op
        uint64_t value
        uint64_t value_two

    cdef struct pyrt_seccomp_rule:
        uint32_t action
        const char *const *names
        const pyrt_seccomp_arg *args
        size_t nargs

    cdef struct pyrt_seccomp_profile:
        uint32_t default_action
        const char *const *archs
        const pyrt_seccomp_rule *rules
        size_t nrules

    int pyrt_seccomp_available()
    int pyrt_seccomp_compile(const pyrt_seccomp_profile *p, void **filter, size_t *len,
                             pyrt_error *e) nogil


class OciOptions:
    """The spawn spec's OCI block (spec.oci; see csrc/oci.h). wait_fd: an fd the
    child reads one byte from before exec (pyrt.spawn returns once it waits);
    joins: [(fd, CLONE_NEW*)] in order; unshare_flags; chroot_path (bytes: no
    mount namespace of the container's own, chroot there after the joins); devices: [(path bytes, mode,
    major, minor, uid, gid)]; dev_links; sysctls: [(key path under /proc/sys,
    value)] as bytes; root_propagation (MS_*); cap_sets: None or (effective,
    permitted, inheritable, ambient) masks. (A seccomp filter and a terminal are
    the spec's own: spec.seccomp, spec.console_fd.)"""

    def __init__(self):
        self.wait_fd = -1
        self.joins = []
        self.unshare_flags = 0
        self.new_keyring = False
        self.chroot_path = None
        self.devices = []
        self.dev_links = False
        self.sysctls = []
        self.root_propagation = 0
        self.cap_sets = None


cdef const void *_fill_oci(object o, _Arena arena) except NULL:
    cdef pyrt_oci *c = <pyrt_oci *>arena.alloc(1, sizeof(pyrt_oci))
    cdef pyrt_ns_join *joins
    cdef pyrt_device *devs
    cdef char *prog
    cdef Py_ssize_t i
    c.wait_fd = o.wait_fd
    joins = <pyrt_ns_join *>arena.alloc(len(o.joins), sizeof(pyrt_ns_join))
    for i, (fd, kind) in enumerate(o.joins):
        joins[i].fd = fd
        joins[i].type = kind
    c.joins = joins
    c.njoins = len(o.joins)
    c.unshare_flags = o.unshare_flags
    c.new_keyring = 1 if getattr(o, "new_keyring", False) else 0
    c.chroot_path = arena.cstr(o.chroot_path)
    devs = <pyrt_device *>arena.alloc(len(o.devices), sizeof(pyrt_device))
    for i, (path, mode, major, minor, uid, gid) in enumerate(o.devices):
        devs[i].path = arena.cstr(path)
        devs[i].mode = mode
        devs[i].major = major
        devs[i].minor = minor
        devs[i].uid = uid
        devs[i].gid = gid
    c.devices = devs
    c.ndevices = len(o.devices)
    c.dev_links = 1 if o.dev_links else 0
    flat = []
    for key, value in o.sysctls:
        flat += [key, value]
    c.sysctls = arena.strv(flat)
    c.root_propagation = o.root_propagation
    if o.cap_sets is not None:
        c.cap_sets = 1
        c.cap_effective, c.cap_permitted, c.cap_inheritable, c.cap_ambient = o.cap_sets
    else:
        c.cap_sets = 0
    return c


def seccomp_available():
    """Whether pyrt was built with libseccomp (seccomp profiles can be compiled)."""
    return bool(pyrt_seccomp_available())


def seccomp_compile(uint32_t default_action, archs, rules):
    """Compile a seccomp profile with libseccomp into a classic BPF program
    (bytes). archs: libseccomp names (b"x86_64", ...); rules: [(action, [names as
    bytes], [(index, op, value, value_two)])], actions as the kernel's
    SECCOMP_RET_* values. Raises SpawnError (ENOSYS without libseccomp)."""
    cdef _Arena arena = _Arena()
    cdef pyrt_seccomp_profile p
    cdef pyrt_seccomp_rule *r
    cdef pyrt_seccomp_arg *a
    cdef void *filt = NULL
    cdef size_t n = 0
    cdef pyrt_error err
    cdef int rc
    cdef Py_ssize_t i, j
    p.default_action = default_action
    p.archs = arena.strv(list(archs))
    r = <pyrt_seccomp_rule *>arena.alloc(len(rules), sizeof(pyrt_seccomp_rule))
    for i, (action, names, args) in enumerate(rules):
        r[i].action = action
        r[i].names = arena.strv(list(names))
        a = <pyrt_seccomp_arg *>arena.alloc(len(args), sizeof(pyrt_seccomp_arg))
        for j, (index, op, value, value_two) in enumerate(args):
            a[j].index = index
            a[j].op = op
            a[j].value = value
            a[j].value_two = value_two
        r[i].args = a
        r[i].nargs = len(args)
    p.rules = r
    p.nrules = len(rules)
    with nogil:
        rc = pyrt_seccomp_compile(&p, &filt, &n, &err)
    if rc < 0:
        from pyrt.errors import SpawnError
        raise _error_from_c(&err, SpawnError)
    try:
        return (<char *>filt)[:n * 8]
    finally:
        _free(filt)
