/* pyrt-runtime's native commands (csrc/bin/pyrt-runtime.c): what they share. The
 * runtime's modules are rt_cli (the log, options, output), rt_json (JSON through yajl), rt_state (the state
 * directory, the same format as pyrt/ocirt/state.py), rt_cgroup (a container's
 * cgroup as pyrt/cgroups/cgroup.py made it), rt_hooks (OCI hooks) and rt_ops (the
 * operations, as pyrt/ocirt/operations.py does them). */
#ifndef PYRT_RT_H
#define PYRT_RT_H

#include <stddef.h>

struct rt_ctx {
    const char *root;   /* the state directory (absolute) */
    int systemd_cgroup; /* --systemd-cgroup */
    /* Report a warning (one line); NULL: dropped. */
    void (*warn)(struct rt_ctx *ctx, const char *msg);
    char err[2048]; /* the failure: one line */
    int code;       /* its exit status: 1, or 2 for a usage error */
};

/* Set the failure (exit status 1); returns -1. */
int rt_fail(struct rt_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A usage error (exit status 2); returns -1. */
int rt_usage(struct rt_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void rt_warn(struct rt_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Seconds on the monotonic clock. */
double rt_now(void);

/* Sleep for `s` seconds (interrupted sleeps are not resumed). */
void rt_sleep(double s);

/* Is this process in a user namespace other than the host's (which maps every id
 * to itself, as /proc/self/uid_map tells)? */
int rt_in_user_namespace(void);

/* Does this process have an ordinary user's powers over the host (its cgroups,
 * devices)? An ordinary user, or root of a user namespace: rootless podman and
 * containerd run the runtime so (pyrt/paths.py's ordinary_user). */
int rt_ordinary_user(void);

/* The effective uid as the host sees it (through /proc/self/uid_map). */
unsigned rt_host_uid(void);

#endif
