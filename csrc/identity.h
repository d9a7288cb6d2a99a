/* A new process's identity, set between clone and exec by the spawn core
 * (spawn.c) and exec into a running container (exec.c, through tail.c):
 * supplementary groups, gid and uid, capabilities. Everything here is
 * async-signal-safe: no allocation, no stdio, no locks, raw set*id calls. */
#ifndef PYRT_IDENTITY_H
#define PYRT_IDENTITY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "err.h" /* struct pyrt_error */

/* glibc's setresuid/setresgid/setgroups broadcast the change to every thread of
 * the process and wait for them: in a child cloned from a threaded process those
 * threads do not exist and the wait never ends. The raw calls act on this thread,
 * which is the whole child. */
int pyrt_raw_setgroups(size_t n, const gid_t *groups);
int pyrt_raw_setresgid(gid_t g);
int pyrt_raw_setresuid(uid_t u);

/* The bounding set reduced to caps, ambient cleared, then (if set_user) groups,
 * gid and uid switched, and permitted/effective reduced to caps. */
int pyrt_setup_identity(int set_user, uid_t uid, gid_t gid, const gid_t *groups, size_t ngroups,
                        uint64_t caps, struct pyrt_error *e);

#endif
