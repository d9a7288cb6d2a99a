# Bindings of csrc/reaper.c (pyrt-reaper: ends a foreground container whose pyrt
# process died). Included by _core.pyx after _spawn.pxi (_helper_path) and
# _errors.pxi (pyrt_error, _error_from_c). pyrt.launch.reaper uses them.

cdef extern from "reaper.h":
    int PYRT_REAPER_MAX_MESSAGE
    int pyrt_reaper_start(const char *reaper_path, int *sock, pid_t *pid, pyrt_error *e) nogil


cdef extern from "fdpass.h":
    int pyrt_send_fds(int sock, const void *buf, size_t len, const int *fds, size_t nfds) nogil


def reaper_start():
    """Start a pyrt-reaper: (the caller's socket fd, close-on-exec; its pid). See
    csrc/reaper.h for the messages reaper_send sends on that socket."""
    cdef pyrt_error err
    cdef int sock = -1
    cdef pid_t pid = 0
    path = _helper_path("pyrt-reaper")
    cdef const char *p = path
    cdef int rc
    with nogil:
        rc = pyrt_reaper_start(p, &sock, &pid, &err)
    if rc < 0:
        raise _error_from_c(&err)
    return sock, pid


def reaper_send(int sock, bytes message, int fd=-1):
    """One message to a reaper (its kind byte first), with `fd` riding along."""
    cdef const char *buf = message
    cdef size_t n = len(message)
    cdef int fds[1]
    fds[0] = fd
    if n == 0 or n > <size_t>PYRT_REAPER_MAX_MESSAGE:
        raise ValueError(f"a reaper message holds 1 to {PYRT_REAPER_MAX_MESSAGE} bytes")
    cdef int rc, saved = 0
    with nogil:
        rc = pyrt_send_fds(sock, buf, n, fds, 1 if fd >= 0 else 0)
        if rc < 0:
            saved = errno
    if rc < 0:
        raise _errno_error(saved, "sendmsg", "reaper socket")
