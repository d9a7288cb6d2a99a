/* The tail every process pyrt starts in a container runs, once its namespaces and
 * root are in place: spawn.c (a new container, a parked pool member) and exec.c
 * (a process joining a running one) both end here, so the order that keeps the
 * host out of reach is written once:
 *
 *   stdio and terminal -> every other fd closed (really closed) -> the cwd resolved
 *   inside the root (no magic links: never through an fd) and checked to be under
 *   it -> a session of its own -> identity and capabilities -> no_new_privs ->
 *   [OCI: wait for start] -> seccomp -> execve.
 *
 * The caller has made the process non-dumpable before it touched anything of the
 * container (a root process in the container cannot open its /proc/PID/exe, fds or
 * memory); execve makes it dumpable again. Raw syscalls only: no allocation, no locks. */
#ifndef PYRT_TAIL_H
#define PYRT_TAIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "err.h" /* struct pyrt_error */

struct pyrt_oci;

struct pyrt_tail {
    const char *const *argv;
    const char *const *envp;
    const char *path; /* PATH to look argv[0] up with */
    const char *cwd;  /* inside the root; NULL for "/" */
    int host_root;    /* no root of its own (namespaces only): cwd taken as chdir
                         does, NULL keeping the caller's, as subprocess does */
    const int *stdio; /* [3], -1: inherit */
    int console_fd;   /* >= 0: the terminal's socket (console.h) */
    int ctty;         /* make stdin, when a terminal, the controlling one */
    int set_user;
    uid_t uid;
    gid_t gid;
    const gid_t *groups;
    size_t ngroups;
    uint64_t caps;
    int no_new_privs;
    int umask; /* -1: 022 */
    const void *seccomp;
    size_t seccomp_len;
    unsigned int seccomp_flags;
    int errfd;   /* the close-on-exec error pipe: kept open to report failures */
    int init_fd; /* >= 0: pid 1 runs this init (an fd of a sealed copy), the program its child */
    const struct pyrt_oci *oci;
};

/* Returns only on failure, with e filled. */
int pyrt_tail(const struct pyrt_tail *t, struct pyrt_error *e);

/* What every child does first, spawned or exec'd into a container: SIGPIPE and
 * SIGXFSZ back to their defaults (Python ignores them; handlers were already
 * reset by CLONE_CLEAR_SIGHAND) and no signal blocked. */
int pyrt_child_begin(struct pyrt_error *e);

/* setrlimit for each of the n limits. */
struct pyrt_rlimit;
int pyrt_set_rlimits(const struct pyrt_rlimit *rl, size_t n, struct pyrt_error *e);

/* Close every fd from 3 up except the (up to four) given ones (-1: none). */
int pyrt_close_fds_except(int a, int b, int c, int d, struct pyrt_error *e);

/* The init (pyrt-init) as a sealed, anonymous copy: /proc/1/exe of a container is
 * then no host file a root process in it could hold open or write. */
int pyrt_sealed_copy(const char *path, struct pyrt_error *e);

#endif
