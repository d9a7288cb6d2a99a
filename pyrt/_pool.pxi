# Parked containers (csrc/park.c, csrc/zygote.c) and the I/O loop of one command
# (csrc/cmdio.c).
# Included by _core.pyx after _spawn.pxi (uses its spec filling and types).
from libc.string cimport memcpy, memset
from libc.stddef cimport size_t as _size_t


cdef extern from "spawn.h":
    cdef struct pyrt_parked:
        pid_t pid
        int pidfd
        int sock
        int errfd
        rusage usage

    int pyrt_spawn_parked(const pyrt_spawn_spec *spec, pyrt_parked *out, pyrt_error *error) nogil


cdef extern from "childmsg.h":
    cdef struct pyrt_child_msg:
        int kind
        pyrt_error error

    void pyrt_child_msg_error(const pyrt_child_msg *m, pyrt_error *e)


cdef extern from "park.h":
    cdef struct pyrt_unpark_cmd:
        const char *const *argv
        const char *const *envp
        const char *path
        const char *cwd
        int stdio[3]

    int pyrt_unpark(int sock, int errfd, const pyrt_unpark_cmd *cmd, pyrt_error *e) nogil
    int pyrt_unpark_send(int sock, const pyrt_unpark_cmd *cmd, pyrt_error *e) nogil
    int PYRT_PARK_MSG_MAX


cdef extern from "zygote.h":
    int pyrt_zygote_send_spec(int ctl, const pyrt_spawn_spec *s, pyrt_error *e) nogil
    int pyrt_zygote_spawn(int ctl, int cgroup_fd, const int *procs_fds, _size_t nprocs, pyrt_parked *out,
                          int *mntns, pyrt_error *e) nogil


cdef extern from "cmdio.h":
    cdef struct pyrt_buf:
        char *data
        _size_t len
        _size_t cap

    cdef struct pyrt_io:
        int pidfd
        int in_fd
        int out_fd
        int err_fd
        const char *input
        _size_t input_len
        _size_t input_off
        pyrt_buf out
        pyrt_buf err
        int exited
        int status
        rusage usage

    int pyrt_io_run(pyrt_io *io, int timeout_ms) nogil
    void pyrt_io_release(pyrt_io *io) nogil


PARK_MSG_MAX = PYRT_PARK_MSG_MAX


cdef _spawn_error(pyrt_error *err):
    from pyrt.errors import SpawnError
    return _error_from_c(err, SpawnError)


cdef tuple _usage_tuple(rusage *ru):
    return (ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6,
            ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6,
            ru.ru_maxrss, ru.ru_nvcsw, ru.ru_nivcsw)


def spawn_parked(spec):
    """Start a container from a resolved spec that parks before exec. Returns
    (pid, pidfd, park socket, error pipe, usage of its setup) once it waits for its
    command (see unpark); the caller owns the three fds."""
    cdef _Arena arena = _Arena()
    cdef pyrt_spawn_spec s
    cdef pyrt_parked out
    cdef pyrt_error err
    cdef int rc
    _fill_spawn_spec(spec, arena, &s)
    with nogil:
        rc = pyrt_spawn_parked(&s, &out, &err)
    if rc < 0:
        raise _spawn_error(&err)
    return out.pid, out.pidfd, out.sock, out.errfd, _usage_tuple(&out.usage)


def unpark(int sock, int errfd, argv, env, path=None, cwd=None, stdio=(-1, -1, -1), bint wait=True):
    """Hand a parked container its command (argv and env: lists of bytes; path,
    cwd: bytes or None; stdio: fds for 0, 1, 2 or -1) and wait until it exec'd.
    Raises SpawnError when it could not (then it exits with 127). wait=False:
    only send it (the error pipe then tells: EOF, or a record for parse_status)."""
    cdef _Arena arena = _Arena()
    cdef pyrt_unpark_cmd cmd
    cdef pyrt_error err
    cdef int rc, i
    cmd.argv = arena.strv(argv)
    cmd.envp = arena.strv(env)
    cmd.path = arena.cstr(path)
    cmd.cwd = arena.cstr(cwd)
    for i in range(3):
        cmd.stdio[i] = stdio[i]
    with nogil:
        if wait:
            rc = pyrt_unpark(sock, errfd, &cmd, &err)
        else:
            rc = pyrt_unpark_send(sock, &cmd, &err)
    if rc < 0:
        raise _spawn_error(&err)


def zygote_send_spec(int ctl, spec):
    """Give the zygote behind ctl (pyrt-zygote, see zygote.h) the spec of the
    containers it parks."""
    cdef _Arena arena = _Arena()
    cdef pyrt_spawn_spec s
    cdef pyrt_error err
    cdef int rc
    _fill_spawn_spec(spec, arena, &s)
    with nogil:
        rc = pyrt_zygote_send_spec(ctl, &s, &err)
    if rc < 0:
        raise _spawn_error(&err)


def zygote_spawn(int ctl, int cgroup_fd=-1, procs_fds=()):
    """Have the zygote park one container (in the given cgroups). Returns what
    spawn_parked returns plus an fd of its mount namespace (or -1); this process
    is the container's parent."""
    cdef int procs[16]
    cdef _size_t n = len(procs_fds)
    cdef pyrt_parked out
    cdef pyrt_error err
    cdef int rc
    cdef int mntns = -1
    cdef Py_ssize_t i
    if n > 16:
        raise ValueError("too many cgroup fds")
    for i in range(<Py_ssize_t>n):
        procs[i] = procs_fds[i]
    with nogil:
        rc = pyrt_zygote_spawn(ctl, cgroup_fd, procs, n, &out, &mntns, &err)
    if rc < 0:
        raise _spawn_error(&err)
    return out.pid, out.pidfd, out.sock, out.errfd, _usage_tuple(&out.usage), mntns


STATUS_RECORD_SIZE = sizeof(pyrt_child_msg)


def parse_status(bytes record):
    """The SpawnError of a message read from an error pipe (csrc/childmsg.h): what
    failed, as the child reported it."""
    cdef pyrt_child_msg m
    cdef pyrt_error err
    if len(record) != sizeof(pyrt_child_msg):
        from pyrt.errors import SpawnError
        import errno as _errno
        return SpawnError(_errno.EPIPE, "read child status", "")
    memcpy(&m, <const char *>record, sizeof(pyrt_child_msg))
    pyrt_child_msg_error(&m, &err)
    return _spawn_error(&err)


cdef class CommandIO:
    """The I/O of one running command: `input` fed to in_fd, out_fd and err_fd read
    to their end, the process behind pidfd reaped (the pidfd stays the caller's).
    The fds passed in belong to this object from then on."""
    cdef pyrt_io io
    cdef bytes _input

    def __cinit__(self, int pidfd, int in_fd=-1, input=None, int out_fd=-1, int err_fd=-1):
        memset(&self.io, 0, sizeof(self.io))
        self.io.pidfd = pidfd
        self.io.in_fd = in_fd
        self.io.out_fd = out_fd
        self.io.err_fd = err_fd
        self._input = bytes(input) if input is not None else b""
        self.io.input = <const char *>self._input
        self.io.input_len = len(self._input)

    def run(self, timeout=None):
        """Go on until the command exited and its outputs ended (True) or for at
        most `timeout` seconds (False)."""
        cdef int rc
        cdef int ms
        cdef double deadline = 0
        import time
        if timeout is not None:
            deadline = time.monotonic() + timeout
        while True:
            ms = -1 if timeout is None else max(0, int((deadline - time.monotonic()) * 1000 + 0.999))
            with nogil:
                rc = pyrt_io_run(&self.io, ms)
            if rc >= 0:
                return rc == 1
            if errno != EINTR:
                raise _errno_error(errno, "poll")
            PyErr_CheckSignals()

    @property
    def exited(self):
        return bool(self.io.exited)

    @property
    def status(self):
        return self.io.status if self.io.exited else None

    @property
    def usage(self):
        return _usage_tuple(&self.io.usage) if self.io.exited else None

    @property
    def stdout(self):
        return self.io.out.data[:self.io.out.len] if self.io.out.len else b""

    @property
    def stderr(self):
        return self.io.err.data[:self.io.err.len] if self.io.err.len else b""

    def release(self):
        """Close the fds still open and free the buffers."""
        pyrt_io_release(&self.io)

    def __dealloc__(self):
        pyrt_io_release(&self.io)
