/* exec into a running container: join its namespaces (setns through a pidfd), its
 * cgroups, root and working directory, then exec with the given env, user and
 * capabilities. The new process is the caller's child (wait for it with
 * pyrt_wait on the returned pidfd). */
#ifndef PYRT_EXEC_H
#define PYRT_EXEC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "spawn.h"

struct pyrt_exec_spec {
    pid_t pid;                     /* the container's init, as the caller sees it (0: the
                                      pidfd's) */
    int pidfd;                     /* a pidfd for it, or -1: opened here from pid */
    unsigned long long start_time; /* its start time (field 22 of /proc/PID/stat, clock
                                      ticks), checked against pid reuse; 0: not checked */
    uint64_t namespaces;           /* CLONE_NEW* to join (mount, uts, ipc, net, pid, cgroup,
                                      user); those the caller already shares are skipped */

    const char *const *argv; /* NULL terminated */
    const char *const *envp; /* NULL terminated */
    const char *path;        /* PATH used to look up argv[0] (the container's) */
    const char *cwd;         /* inside the container; NULL for "/" */

    int set_user;
    uid_t uid;
    gid_t gid;
    const gid_t *groups;
    size_t ngroups;
    uint64_t caps;      /* bounding set; also effective/permitted for uid 0 */
    unsigned int setup; /* PYRT_SETUP_NO_NEW_PRIVS, PYRT_SETUP_SETSID */
    int umask;          /* -1: 022 */

    const struct pyrt_rlimit *rlimits;
    size_t nrlimits;

    int stdio[3]; /* -1: inherit */

    int cgroup_fd;               /* cgroup v2 directory: CLONE_INTO_CGROUP, or -1 */
    const int *cgroup_procs_fds; /* cgroup v1 cgroup.procs files the new process joins */
    size_t ncgroup_procs;

    const void *seccomp; /* a seccomp filter (struct sock_filter[seccomp_len]) or NULL:
                            loaded last before exec (with no_new_privs), else before
                            the identity switch */
    size_t seccomp_len;
    unsigned int seccomp_flags;
};

/* On success returns 0, *pid and *pidfd set (the caller owns the pidfd and must
 * wait for the child). On failure returns -1 with *error filled; no process is
 * left behind. */
int pyrt_exec(const struct pyrt_exec_spec *spec, pid_t *pid, int *pidfd, struct pyrt_error *error);

#endif
