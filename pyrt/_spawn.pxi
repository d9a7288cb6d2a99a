from libc.stdint cimport uint64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy, memset, strerror
from posix.types cimport gid_t, pid_t, uid_t
from cpython.exc cimport PyErr_CheckSignals
from libc.errno cimport errno, EINTR


cdef extern from "<sys/resource.h>":
    ctypedef unsigned long rlim_t
    cdef struct rlimit:
        rlim_t rlim_cur
        rlim_t rlim_max
    cdef struct timeval:
        long tv_sec
        long tv_usec
    cdef struct rusage:
        timeval ru_utime
        timeval ru_stime
        long ru_maxrss
        long ru_minflt
        long ru_majflt
        long ru_nvcsw
        long ru_nivcsw


cdef extern from "spawn.h":
    cdef struct pyrt_mount:
        int kind
        unsigned int flags
        const char *source
        const char *target
        const char *data
        const char *fstype
        unsigned long propagation

    cdef struct pyrt_rlimit:
        int resource
        rlimit limit

    cdef struct pyrt_spawn_spec:
        const char *const *argv
        const char *const *envp
        const char *path
        const char *cwd
        const char *rootfs
        const char *const *lowerdirs
        size_t nlower
        const char *upperdir
        const char *workdir
        const char *overlay_options
        const char *anchor
        int readonly_root
        const char *upper_tmpfs
        uint64_t clone_flags
        unsigned int setup
        const char *hostname
        const pyrt_mount *mounts
        size_t nmounts
        const char *const *masked_paths
        const char *const *readonly_paths
        int set_user
        uid_t uid
        gid_t gid
        const gid_t *groups
        size_t ngroups
        uint64_t caps
        int umask
        const pyrt_rlimit *rlimits
        size_t nrlimits
        const char *uid_map
        const char *gid_map
        const char *uid_map_helper
        const char *gid_map_helper
        int setgroups_deny
        int userns_fd
        int stdio[3]
        int console_fd
        int netns_fd
        int cgroup_fd
        int reaper_fd
        const int *cgroup_procs_fds
        size_t ncgroup_procs
        int init
        const char *init_path
        const void *seccomp
        size_t seccomp_len
        unsigned int seccomp_flags
        const void *oci

    int pyrt_spawn(const pyrt_spawn_spec *spec, pid_t *pid, int *pidfd, pyrt_error *error) nogil

cdef extern from "userns.h":
    int pyrt_userns_create(const pyrt_spawn_spec *s, pyrt_error *e) nogil
    int pyrt_netns_create(int userns_fd, pyrt_error *e) nogil
    int pyrt_wait(int pidfd, int timeout_ms, int *status, rusage *usage) nogil

    int PYRT_MOUNT_BIND, PYRT_MOUNT_TMPFS, PYRT_MOUNT_FS
    int PYRT_MNT_RDONLY, PYRT_MNT_NOSUID, PYRT_MNT_NODEV, PYRT_MNT_NOEXEC, PYRT_MNT_NOREC
    int PYRT_SETUP_PROC, PYRT_SETUP_SYS, PYRT_SETUP_DEV, PYRT_SETUP_MASK
    int PYRT_SETUP_LOOPBACK, PYRT_SETUP_NO_NEW_PRIVS, PYRT_SETUP_SETSID, PYRT_SETUP_NO_ASLR
    int PYRT_SETUP_JOIN_MNT, PYRT_SETUP_NODEV


MOUNT_BIND = PYRT_MOUNT_BIND
MOUNT_TMPFS = PYRT_MOUNT_TMPFS
MOUNT_FS = PYRT_MOUNT_FS
MNT_NOREC = PYRT_MNT_NOREC
MNT_RDONLY = PYRT_MNT_RDONLY
MNT_NOSUID = PYRT_MNT_NOSUID
MNT_NODEV = PYRT_MNT_NODEV
MNT_NOEXEC = PYRT_MNT_NOEXEC
SETUP_PROC = PYRT_SETUP_PROC
SETUP_SYS = PYRT_SETUP_SYS
SETUP_DEV = PYRT_SETUP_DEV
SETUP_MASK = PYRT_SETUP_MASK
SETUP_LOOPBACK = PYRT_SETUP_LOOPBACK
SETUP_NO_NEW_PRIVS = PYRT_SETUP_NO_NEW_PRIVS
SETUP_SETSID = PYRT_SETUP_SETSID
SETUP_NO_ASLR = PYRT_SETUP_NO_ASLR
SETUP_JOIN_MNT = PYRT_SETUP_JOIN_MNT
SETUP_NODEV = PYRT_SETUP_NODEV


cdef class _Arena:
    """Owns the C arrays of one spec; the bytes they point into stay referenced."""
    cdef list keep
    cdef list blocks

    def __cinit__(self):
        self.keep = []
        self.blocks = []

    def __dealloc__(self):
        cdef size_t addr
        for addr in self.blocks:
            free(<void *>addr)

    cdef void *alloc(self, size_t n, size_t size) except NULL:
        cdef void *p = calloc(n + 1, size)
        if p == NULL:
            raise MemoryError()
        self.blocks.append(<size_t>p)
        return p

    cdef const char *cstr(self, object b) except? NULL:
        if b is None:
            return NULL
        if not isinstance(b, bytes):
            raise TypeError(f"expected bytes, got {type(b).__name__}")
        if b"\0" in b:
            raise ValueError(f"embedded null byte in {b!r}")
        self.keep.append(b)
        return <const char *>(<bytes>b)

    cdef const char **strv(self, object items) except NULL:
        cdef Py_ssize_t i, n = len(items)
        cdef const char **v = <const char **>self.alloc(n, sizeof(char *))
        for i in range(n):
            v[i] = self.cstr(items[i])
        return v


def _helper_path(name):
    """A helper program installed next to this module (pyrt-init, pyrt-monitor)."""
    import os
    return os.fsencode(os.path.join(os.path.dirname(os.path.abspath(__file__)), name))


cdef int _fill_spawn_spec(object spec, _Arena arena, pyrt_spawn_spec *s) except -1:
    """The C spec of a SpawnSpec (pyrt.launch.spec: every field is there, none is
    defaulted here); the arena owns what it points to."""
    cdef pyrt_mount *mounts
    cdef pyrt_rlimit *rlimits
    cdef gid_t *groups
    cdef int *procs
    cdef char *buf
    cdef Py_ssize_t i

    s.argv = arena.strv(spec.argv)
    s.envp = arena.strv(spec.env)
    s.path = arena.cstr(spec.path)
    s.cwd = arena.cstr(spec.cwd)
    s.rootfs = arena.cstr(spec.rootfs)
    s.lowerdirs = arena.strv(spec.lowerdirs)
    s.nlower = len(spec.lowerdirs)
    s.upperdir = arena.cstr(spec.upperdir)
    s.workdir = arena.cstr(spec.workdir)
    s.overlay_options = arena.cstr(spec.overlay_options)
    s.anchor = arena.cstr(spec.anchor)
    s.readonly_root = 1 if spec.readonly_root else 0
    s.upper_tmpfs = arena.cstr(spec.upper_tmpfs)
    s.clone_flags = spec.clone_flags
    s.setup = spec.setup
    s.hostname = arena.cstr(spec.hostname)

    mounts = <pyrt_mount *>arena.alloc(len(spec.mounts), sizeof(pyrt_mount))
    for i, m in enumerate(spec.mounts):
        # (kind, flags, source, target, data[, fstype, propagation])
        mounts[i].kind = m[0]
        mounts[i].flags = m[1]
        mounts[i].source = arena.cstr(m[2])
        mounts[i].target = arena.cstr(m[3])
        mounts[i].data = arena.cstr(m[4])
        mounts[i].fstype = arena.cstr(m[5]) if len(m) > 5 else NULL
        mounts[i].propagation = m[6] if len(m) > 6 else 0
    s.mounts = mounts
    s.nmounts = len(spec.mounts)
    s.masked_paths = arena.strv(spec.masked_paths)
    s.readonly_paths = arena.strv(spec.readonly_paths)

    s.set_user = 0
    s.uid = 0
    s.gid = 0
    s.groups = NULL
    s.ngroups = 0
    if spec.user is not None:
        uid, gid, gids = spec.user
        s.set_user = 1
        s.uid = uid
        s.gid = gid
        groups = <gid_t *>arena.alloc(len(gids), sizeof(gid_t))
        for i, g in enumerate(gids):
            groups[i] = g
        s.groups = groups
        s.ngroups = len(gids)
    s.caps = spec.caps
    s.umask = spec.umask

    rlimits = <pyrt_rlimit *>arena.alloc(len(spec.rlimits), sizeof(pyrt_rlimit))
    for i, (res, soft, hard) in enumerate(spec.rlimits):
        rlimits[i].resource = res
        rlimits[i].limit.rlim_cur = soft
        rlimits[i].limit.rlim_max = hard
    s.rlimits = rlimits
    s.nrlimits = len(spec.rlimits)

    s.uid_map = arena.cstr(spec.uid_map)
    s.gid_map = arena.cstr(spec.gid_map)
    # rootless: the setuid helpers that write the maps (pyrt.launch.userns)
    s.uid_map_helper = arena.cstr(getattr(spec, "uid_map_helper", None))
    s.gid_map_helper = arena.cstr(getattr(spec, "gid_map_helper", None))
    s.setgroups_deny = 1 if getattr(spec, "setgroups_deny", False) else 0
    s.userns_fd = getattr(spec, "userns_fd", -1)
    for i in range(3):
        s.stdio[i] = spec.stdio[i]
    s.console_fd = spec.console_fd
    s.netns_fd = spec.netns_fd
    s.cgroup_fd = spec.cgroup_fd
    s.reaper_fd = spec.reaper_fd
    procs = <int *>arena.alloc(len(spec.cgroup_procs_fds), sizeof(int))
    for i, fd in enumerate(spec.cgroup_procs_fds):
        procs[i] = fd
    s.cgroup_procs_fds = procs
    s.ncgroup_procs = len(spec.cgroup_procs_fds)
    s.init = 1 if spec.init else 0
    s.init_path = arena.cstr(_helper_path("pyrt-init")) if s.init else NULL
    prog = spec.seccomp  # a BPF program (pyrt.launch.seccomp)
    if prog is not None:
        data = bytes(prog)
        if not data or len(data) % 8 or len(data) // 8 > 65535:
            raise ValueError("invalid seccomp program: a non-empty multiple of 8 bytes")
        buf = <char *>arena.alloc(len(data), 1)
        memcpy(buf, <const char *>data, len(data))
        s.seccomp = buf
        s.seccomp_len = len(data) // 8
    else:
        s.seccomp = NULL
        s.seccomp_len = 0
    s.seccomp_flags = spec.seccomp_flags
    oci = spec.oci  # OCI runtime options (_oci.pxi)
    s.oci = _fill_oci(oci, arena) if oci is not None else NULL
    return 0


def spawn(spec):
    """Start a container from a resolved spec (see pyrt.launch.process). Returns (pid, pidfd)."""
    cdef _Arena arena = _Arena()
    cdef pyrt_spawn_spec s
    cdef pid_t pid = 0
    cdef int pidfd = -1
    cdef int rc
    cdef pyrt_error err

    _fill_spawn_spec(spec, arena, &s)
    with nogil:
        rc = pyrt_spawn(&s, &pid, &pidfd, &err)
    if rc < 0:
        from pyrt.errors import SpawnError
        raise _error_from_c(&err, SpawnError)
    return pid, pidfd


cdef extern from "specpack.h":
    long pyrt_spec_pack(const pyrt_spawn_spec *s, char *buf, size_t cap, pyrt_error *e)


def spec_pack(spec):
    """A resolved spec (pyrt.launch.spec.SpawnSpec) packed as csrc/specpack.h packs
    it: the one flat form of a C spec, field for field (what the native `pyrt`
    command builds is compared with it)."""
    cdef _Arena arena = _Arena()
    cdef pyrt_spawn_spec s
    cdef pyrt_error err
    cdef size_t cap = 1 << 20
    memset(&s, 0, sizeof(s))
    _fill_spawn_spec(spec, arena, &s)
    cdef char *buf = <char *>arena.alloc(cap, 1)
    cdef long n = pyrt_spec_pack(&s, buf, cap, &err)
    if n < 0:
        raise _error_from_c(&err)
    return buf[:n]


def wait(int pidfd, timeout=None):
    """Wait for the process behind pidfd. Returns None on timeout, else
    (wait status, (utime, stime, maxrss_kib, nvcsw, nivcsw))."""
    cdef int status = 0
    cdef int rc
    cdef rusage ru
    cdef int ms = -1 if timeout is None else max(0, int(timeout * 1000))
    while True:
        with nogil:
            rc = pyrt_wait(pidfd, ms, &status, &ru)
        if rc >= 0:
            break
        if errno != EINTR:
            raise _errno_error(errno, "wait")
        PyErr_CheckSignals()
    if rc == 0:
        return None
    usage = (ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6,
             ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6,
             ru.ru_maxrss, ru.ru_nvcsw, ru.ru_nivcsw)
    return status, usage


def netns_create(int userns_fd):
    """A new network namespace owned by the user namespace userns_fd (an fd of
    it, the caller's to close): made by a short-lived intermediate that joins
    it, as a threaded process cannot (pyrt.network.usermode)."""
    cdef pyrt_error err
    cdef int fd
    with nogil:
        fd = pyrt_netns_create(userns_fd, &err)
    if fd < 0:
        from pyrt.errors import SpawnError
        raise _error_from_c(&err, SpawnError)
    return fd


def userns_create(uid_map, gid_map, uid_map_helper=None, gid_map_helper=None, bint setgroups_deny=False):
    """A user namespace with these maps (bytes, as /proc/PID/uid_map takes them),
    written directly or by the helpers (newuidmap, newgidmap): an fd of it, the
    caller's to close (pyrt.launch.userns)."""
    cdef _Arena arena = _Arena()
    cdef pyrt_spawn_spec s
    cdef pyrt_error err
    cdef int fd
    memset(&s, 0, sizeof(s))
    s.userns_fd = -1
    s.uid_map = arena.cstr(uid_map)
    s.gid_map = arena.cstr(gid_map)
    s.uid_map_helper = arena.cstr(uid_map_helper)
    s.gid_map_helper = arena.cstr(gid_map_helper)
    s.setgroups_deny = 1 if setgroups_deny else 0
    with nogil:
        fd = pyrt_userns_create(&s, &err)
    if fd < 0:
        from pyrt.errors import SpawnError
        raise _error_from_c(&err, SpawnError)
    return fd
