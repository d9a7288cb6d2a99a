/* Passing fds over unix sockets (SCM_RIGHTS): the pool's control socket, the
 * container's terminal, attach clients. No allocation: also used between clone
 * and exec. */
#ifndef PYRT_FDPASS_H
#define PYRT_FDPASS_H

#include <stddef.h>
#include <sys/types.h>

#define PYRT_MAX_PASSED_FDS 16

/* One message (all of buf, or -1 with EPIPE) with nfds fds (at most
 * PYRT_MAX_PASSED_FDS) riding along. */
int pyrt_send_fds(int sock, const void *buf, size_t len, const int *fds, size_t nfds);

/* One message into buf and the fds that rode along (*nfds of them, close-on-exec;
 * beyond PYRT_MAX_PASSED_FDS they are closed). Returns its length, or -1
 * (EMSGSIZE when it was cut). */
ssize_t pyrt_recv_fds(int sock, void *buf, size_t len, int *fds, size_t *nfds);

#endif
