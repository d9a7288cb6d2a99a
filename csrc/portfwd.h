/* Published ports (`run -p HOST:CONTAINER`) of a container with its own network
 * namespace, forwarded in user space by its monitor (as rootless podman does):
 * the monitor listens on the host's address and port; for each connection it
 * opens a socket inside the container's network namespace, connects it to
 * 127.0.0.1:CONTAINER_PORT there, and copies bytes both ways (half-closes
 * passed on). TCP only. Driven by the monitor's poll loop. */
#ifndef PYRT_PORTFWD_H
#define PYRT_PORTFWD_H

#include <poll.h>
#include <stddef.h>

#include "err.h" /* struct pyrt_error */

#define PYRT_PORTFWD_MAX_PORTS 16
#define PYRT_PORTFWD_MAX_CONNS 64
/* the poll entries pyrt_portfwd_poll may fill */
#define PYRT_PORTFWD_MAX_POLL (PYRT_PORTFWD_MAX_PORTS + 2 * PYRT_PORTFWD_MAX_CONNS)

struct pyrt_portfwd;

/* Listens on every "IP:HOSTPORT:CONTAINERPORT" of the comma-separated `spec`
 * (before the container starts, so a port in use fails the start). NULL with e
 * filled on failure. */
struct pyrt_portfwd *pyrt_portfwd_listen(const char *spec, struct pyrt_error *e);

/* Where connections go: the network namespace of the process behind pidfd. */
void pyrt_portfwd_target(struct pyrt_portfwd *pf, int pidfd);

/* Fills up to PYRT_PORTFWD_MAX_POLL entries; returns how many. */
size_t pyrt_portfwd_poll(struct pyrt_portfwd *pf, struct pollfd *fds);

/* Handles the events of the n entries it filled. */
void pyrt_portfwd_handle(struct pyrt_portfwd *pf, const struct pollfd *fds, size_t n);

/* Closes the listeners and every connection. */
void pyrt_portfwd_close(struct pyrt_portfwd *pf);

#endif
