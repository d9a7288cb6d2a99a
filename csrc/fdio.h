/* I/O on file descriptors for code that may run between clone and exec: no
 * allocation, no stdio, no locks (async-signal-safe). */
#ifndef PYRT_FDIO_H
#define PYRT_FDIO_H

#include <stddef.h>
#include <sys/types.h>

#include "err.h" /* struct pyrt_error */

/* write() all of buf, retrying on EINTR; 0 or -1 (errno set). */
int pyrt_write_all(int fd, const void *buf, size_t len);

/* read() until len bytes or EOF, retrying on EINTR; the count, or -1. */
ssize_t pyrt_read_full(int fd, void *buf, size_t len);

/* A small file (/proc, /sys, a cgroup's) read whole into buf, NUL-terminated: 0,
 * or -1 when it cannot be opened or read, or holds cap-1 bytes or more. */
int pyrt_read_small(const char *path, char *buf, size_t cap);

/* Put the given fds on 0, 1, 2 (-1: leave that one as is). */
int pyrt_setup_stdio(const int stdio[3], struct pyrt_error *e);

#endif
