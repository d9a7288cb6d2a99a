/* What a new process needs between clone and exec, shared by the spawn core
 * (spawn.c) and exec into a running container (exec.c): stdio, identity
 * (groups, ids, capabilities) and the PATH lookup of the program.
 * Everything here is async-signal-safe: no allocation, no stdio, no locks, raw
 * set*id calls. */
#ifndef PYRT_IDENTITY_H
#define PYRT_IDENTITY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "spawn.h"

#define PYRT_DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/* write() all of buf, retrying on EINTR; 0 or -1 (errno set). */
int pyrt_write_all(int fd, const void *buf, size_t len);

/* read() until len bytes or EOF, retrying on EINTR; the count, or -1. */
ssize_t pyrt_read_full(int fd, void *buf, size_t len);

/* glibc's setresuid/setresgid/setgroups broadcast the change to every thread of
 * the process and wait for them: in a child cloned from a threaded process those
 * threads do not exist and the wait never ends. The raw calls act on this thread,
 * which is the whole child. */
int pyrt_raw_setgroups(size_t n, const gid_t *groups);
int pyrt_raw_setresgid(gid_t g);
int pyrt_raw_setresuid(uid_t u);

/* Put the given fds on 0, 1, 2 (-1: leave that one as is). */
int pyrt_setup_stdio(const int stdio[3], struct pyrt_error *e);

/* The bounding set reduced to caps, ambient cleared, then (if set_user) groups,
 * gid and uid switched, and permitted/effective reduced to caps. */
int pyrt_setup_identity(int set_user, uid_t uid, gid_t gid, const gid_t *groups, size_t ngroups,
                        uint64_t caps, struct pyrt_error *e);

/* The candidates for `file` along PATH (a "dir:dir" string, advanced in place), one
 * per call into buf: 1 while there is one, 0 at the end. */
/* Installs a classic-BPF seccomp filter (len instructions; flags SECCOMP_FILTER_FLAG_*).
 * Needs no_new_privs or CAP_SYS_ADMIN. */
int pyrt_load_seccomp(const void *filter, size_t len, unsigned int flags, struct pyrt_error *e);

int pyrt_path_next(const char **p, const char *file, char *buf, size_t cap);

/* execvp, with the given PATH (NULL: PYRT_DEFAULT_PATH) rather than the caller's
 * environment. Returns only on failure, with e filled. */
void pyrt_exec_path(const char *const *argv, const char *const *envp, const char *path,
                    struct pyrt_error *e);

/* Decimal text of v into buf (at least 24 bytes); returns buf. */
char *pyrt_itoa(long long v, char *buf);

#endif
