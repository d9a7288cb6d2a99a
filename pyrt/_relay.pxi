# Bindings of csrc/relay.c: the foreground relay of `pyrt run` (a container's
# output to ours and to its log, our stdin to it, our signals to it) and its CRI
# log writer. Included by _core.pyx after _errors.pxi (pyrt_error, _error_from_c).
# pyrt.cli.run uses them.

from cpython.exc cimport PyErr_CheckSignals


cdef extern from "relay.h":
    int PYRT_LOG_LINE_MAX
    int PYRT_RELAY_SIGNAL
    struct pyrt_log:
        pass
    pyrt_log *pyrt_log_new(int fd) nogil
    void pyrt_log_stamp(pyrt_log *l) nogil
    void pyrt_log_data(pyrt_log *l, int stream, const char *data, size_t n) nogil
    void pyrt_log_flush(pyrt_log *l) nogil
    int pyrt_log_finish(pyrt_log *l) nogil

    struct pyrt_relay_spec:
        int pidfd
        pid_t pid
        int sig_fd
        unsigned long long forward
        int in_tty
        int out_src, out_dst
        int err_src, err_dst
        int in_src, in_dst
        int log_fd
    struct pyrt_relay:
        pass
    pyrt_relay *pyrt_relay_new(const pyrt_relay_spec *s, pyrt_error *e) nogil
    int pyrt_relay_run(pyrt_relay *r, pyrt_error *e) nogil
    int pyrt_relay_free(pyrt_relay *r) nogil
    int pyrt_relay_ended_by_sigpipe(const pyrt_relay *r) nogil
    int pyrt_relay_pipe(int fds[2], int nonblock_end, pyrt_error *e) nogil

LOG_LINE_MAX = PYRT_LOG_LINE_MAX


def relay_pipe(int nonblock_end=-1):
    """(read end, write end) of a new pipe for a container's stdio: close-on-exec,
    1 MiB where allowed; the end at index nonblock_end (0 or 1) non-blocking."""
    cdef int fds[2]
    cdef pyrt_error err
    if pyrt_relay_pipe(fds, nonblock_end, &err) < 0:
        raise _error_from_c(&err)
    return fds[0], fds[1]


cdef class Relay:
    """A foreground container's relay (csrc/relay.h). The fds out_src, err_src
    (read ends of the container's stdout and stderr pipes, non-blocking) and in_dst
    (write end of its stdin pipe, non-blocking) become the relay's: it closes them.
    -1: none. With in_tty, out_src and in_dst are fds of a terminal's master.
    `forward`: the signals (from the wakeup pipe sig_fd) passed on to the container;
    for others, run() lets this process's handlers run."""
    cdef pyrt_relay *r

    def __init__(self, int pidfd, *, pid_t pid=0, int out_src=-1, int out_dst=-1, int err_src=-1, int err_dst=-1,
                 int in_src=-1, int in_dst=-1, bint in_tty=False, int log_fd=-1, int sig_fd=-1, forward=()):
        cdef pyrt_relay_spec s
        cdef pyrt_error err
        cdef unsigned long long mask = 0
        for sig in forward:
            if not 1 <= sig <= 64:
                raise ValueError(f"no signal {sig}")
            mask |= 1ULL << (sig - 1)
        s.pidfd, s.pid, s.sig_fd, s.forward, s.in_tty = pidfd, pid, sig_fd, mask, in_tty
        s.out_src, s.out_dst, s.err_src, s.err_dst = out_src, out_dst, err_src, err_dst
        s.in_src, s.in_dst, s.log_fd = in_src, in_dst, log_fd
        self.r = pyrt_relay_new(&s, &err)
        if self.r == NULL:
            raise _error_from_c(&err)

    def run(self):
        """Copy until the container has exited and its output is drained. A signal
        that is not passed on runs this process's handler (which may raise, e.g.
        KeyboardInterrupt); then the copying goes on."""
        cdef pyrt_error err
        cdef int rc
        if self.r == NULL:
            raise ValueError("the relay is closed")
        while True:
            with nogil:
                rc = pyrt_relay_run(self.r, &err)
            if rc < 0:
                raise _error_from_c(&err)
            if rc != PYRT_RELAY_SIGNAL:
                return
            PyErr_CheckSignals()

    @property
    def ended_by_sigpipe(self):
        """Whether the relay ended the container because its reader was gone
        (csrc/relay.h): its end is SIGPIPE's."""
        return self.r != NULL and pyrt_relay_ended_by_sigpipe(self.r) != 0

    def close(self):
        """Close the relay's fds and finish the log. The errno of a failed log
        write (0: the log has everything)."""
        cdef int rc = 0
        if self.r != NULL:
            with nogil:
                rc = pyrt_relay_free(self.r)
            self.r = NULL
        return rc

    def __dealloc__(self):
        if self.r != NULL:
            pyrt_relay_free(self.r)
            self.r = NULL


cdef class LogSink:
    """The relay's CRI log writer on its own (csrc/relay.h), for data given in
    chunks: write(stream, data) with stream "stdout" or "stderr"; close() returns
    the errno of a failed write (0: none). The fd is not closed."""
    cdef pyrt_log *l

    def __init__(self, int fd):
        self.l = pyrt_log_new(fd)
        if self.l == NULL:
            raise MemoryError()

    def write(self, str stream, const unsigned char[:] data):
        if self.l == NULL:
            raise ValueError("the log is closed")
        cdef int s = 1 if stream == "stderr" else 0
        if stream not in ("stdout", "stderr"):
            raise ValueError(f"no stream {stream!r}")
        cdef size_t n = data.shape[0]
        if n == 0:
            return
        cdef const char *p = <const char *>&data[0]
        with nogil:
            pyrt_log_stamp(self.l)
            pyrt_log_data(self.l, s, p, n)
            pyrt_log_flush(self.l)

    def close(self):
        cdef int rc = 0
        if self.l != NULL:
            rc = pyrt_log_finish(self.l)
            self.l = NULL
        return rc

    def __dealloc__(self):
        if self.l != NULL:
            pyrt_log_finish(self.l)
            self.l = NULL
