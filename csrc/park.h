/* Parking: a container set up up to its command, waiting for it (a warm pool's
 * mechanism), plain C.
 *
 * pyrt_spawn_parked (spawn.h) starts a child that does its whole setup
 * (namespaces, root, mounts, pivot_root, hostname, lo, rlimits, cgroups) and then
 * calls pyrt_park_wait: it sends PYRT_CHILD_PARKED on the error pipe (childmsg.h)
 * and waits on its end of a SOCK_SEQPACKET socketpair for one command (argv, env,
 * PATH, cwd, and stdio fds passed with SCM_RIGHTS). pyrt_unpark sends that command
 * and waits until the child has exec'd (EOF on the error pipe) or failed
 * (PYRT_CHILD_FAILED).
 *
 * The message (one datagram of at most PYRT_PARK_MSG_MAX bytes, host byte order):
 * a struct pyrt_park_header, then the command as a spawn spec packed by
 * pyrt_spec_pack (specpack.h; only argv, envp, PATH and cwd set, stdio holding
 * indexes among the fds passed along), the one format every spec travels in.
 *
 * This file knows the protocol only: it calls nothing of spawn.c (only specpack.c),
 * and spawn.c calls its child side. */
#ifndef PYRT_PARK_H
#define PYRT_PARK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>

#include "fdpass.h"
#include "err.h" /* struct pyrt_error */

#define PYRT_PARK_MAGIC 0x6b726170u /* "park" */
#define PYRT_PARK_MSG_MAX (128 * 1024)

struct pyrt_park_header {
    uint32_t magic;
    uint32_t nfds; /* fds passed along (SCM_RIGHTS) */
    uint64_t len;  /* of the packed spec that follows (8-aligned) */
};

/* A command for a parked child. */
struct pyrt_unpark_cmd {
    const char *const *argv; /* NULL terminated, at least one */
    const char *const *envp; /* NULL terminated */
    const char *path;        /* PATH for the lookup of argv[0]; NULL: the spec's */
    const char *cwd;         /* NULL: the spec's */
    int stdio[3];            /* fds for 0, 1, 2; -1: keep the child's */
};

/* Where a parked child receives its command: the strings of cmd point into it.
 * Large (the child's stack holds it only on the parking path). */
struct pyrt_park_inbox {
    char buf[PYRT_PARK_MSG_MAX] __attribute__((aligned(8)));
    int fds[PYRT_MAX_PASSED_FDS];
};

/* Child side, between the setup and the tail (async-signal-safe): reports
 * PYRT_CHILD_PARKED with its own rusage on errfd, waits for the command on sock
 * (closed then) and fills cmd from it (strings in `in`, stdio fds received).
 * 0, or -1 with e filled. */
int pyrt_park_wait(int errfd, int sock, struct pyrt_park_inbox *in, struct pyrt_unpark_cmd *cmd,
                   struct pyrt_error *e);

/* Parent side: hand the command to the child parked behind sock / errfd, and
 * wait until it has exec'd. 0: exec'd; -1: e filled (the child failed and exits
 * with 127, or could not be reached). The fds stay open: the caller closes them. */
int pyrt_unpark(int sock, int errfd, const struct pyrt_unpark_cmd *cmd, struct pyrt_error *e);

/* Only the sending part, for callers that read the error pipe themselves: a pool
 * reads it once the process is gone (EOF: it exec'd; a record: it did not),
 * which spares a wake-up on the way to its exit. */
int pyrt_unpark_send(int sock, const struct pyrt_unpark_cmd *cmd, struct pyrt_error *e);

#endif
