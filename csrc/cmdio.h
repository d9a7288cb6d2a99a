/* The I/O of one command a pool runs (pyrt.Pool.run): its input fed, its outputs
 * read to their end, the process reaped, in one poll loop without the GIL. */
#ifndef PYRT_CMDIO_H
#define PYRT_CMDIO_H

#include <stddef.h>
#include <sys/resource.h>
#include <sys/types.h>

/* A growing output buffer (malloc'd; the caller frees data). */
struct pyrt_buf {
    char *data;
    size_t len, cap;
};

/* The I/O of one command: input fed to in_fd, out_fd and err_fd read to their
 * end, the process behind pidfd waited for and reaped. An fd is -1 when there is
 * none, and is set to -1 once it is closed here (at its end). */
struct pyrt_io {
    int pidfd;
    int in_fd, out_fd, err_fd;
    const char *input;
    size_t input_len, input_off;
    struct pyrt_buf out, err;
    int exited;          /* reaped: status and usage are set */
    int status;          /* as for waitpid */
    struct rusage usage; /* from waitid: the process and its waited-for children */
};

/* Go on with io until the outputs are at their end and the process exited, or
 * for at most timeout_ms (< 0: no limit). 1: done; 0: timed out (call again to
 * go on); -1: errno (EINTR: a signal came, call again). */
int pyrt_io_run(struct pyrt_io *io, int timeout_ms);

/* Close what io still has open and free its buffers (not the pidfd). */
void pyrt_io_release(struct pyrt_io *io);

#endif
