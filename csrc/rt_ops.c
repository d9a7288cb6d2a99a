/* See rt_ops.h. */
#include "rt_ops.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rt_cgroup.h"
#include "rt_hooks.h"
#include "rt_json.h"
#include "rt_state.h"
#include "syscalls.h"

/* The state as JSON text (malloc'd, NUL terminated) with `status` (NULL: derived). */
static char *state_json(struct rt_container *c, const char *status, size_t *len)
{
    yajl_gen g = yajl_gen_alloc(NULL);
    if (g == NULL)
        return NULL;
    rt_gen_state(g, c, status);
    const unsigned char *buf;
    char *out = NULL;
    if (yajl_gen_get_buf(g, &buf, len) == yajl_gen_status_ok && (out = malloc(*len + 1)) != NULL) {
        memcpy(out, buf, *len);
        out[*len] = 0;
    }
    yajl_gen_free(g);
    return out;
}

static int hooks(struct rt_ctx *ctx, struct rt_container *c, const char *kind, const char *status, int warn_only)
{
    yajl_val list = rt_json_get(rt_json_get(c->rec, "hooks"), kind);
    if (list == NULL || !YAJL_IS_ARRAY(list) || list->u.array.len == 0)
        return 0;
    size_t len = 0;
    char *state = state_json(c, status, &len);
    if (state == NULL)
        return rt_fail(ctx, "%s hooks: out of memory", kind);
    int rc = rt_run_hooks(ctx, c, kind, state, len, warn_only);
    free(state);
    return rc;
}

int rt_op_state(struct rt_ctx *ctx, const char *id, yajl_gen g)
{
    struct rt_container c;
    if (rt_container_open(ctx, &c, id, 0) < 0)
        return -1;
    rt_gen_state(g, &c, NULL);
    rt_container_close(&c);
    return 0;
}

static void thaw(struct rt_ctx *ctx, struct rt_container *c)
{
    const struct rt_cgroup *cg = rt_container_cgroup(c);
    struct rt_ctx quiet = *ctx;
    if (cg != NULL)
        (void)rt_cgroup_set_frozen(&quiet, cg, 0, 10);
}

/* Wait until the process behind the pidfd has exited; 0 on timeout. */
static int wait_exit(int fd, double timeout)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    double deadline = rt_now() + timeout;
    for (;;) {
        double left = deadline - rt_now();
        int r = poll(&p, 1, left > 0 ? (int)(left * 1000) + 1 : 0);
        if (r > 0)
            return 1;
        if (r == 0 || errno != EINTR || left <= 0)
            return 0;
    }
}

/* Remove the locked container c (closed here). */
static int delete_locked(struct rt_ctx *ctx, struct rt_container *c, int force)
{
    const char *st = rt_container_status(c);
    int paused = strcmp(st, "paused") == 0;
    if ((strcmp(st, "running") == 0 || paused) && !force) {
        rt_fail(ctx, "container %s is %s: stop it first, or delete --force", c->id, st);
        rt_container_close(c);
        return -1;
    }
    const struct rt_cgroup *cg = rt_container_cgroup(c);
    if (strcmp(st, "stopped") != 0) {
        int fd = rt_container_pidfd(c);
        if (fd >= 0) {
            (void)pyrt_pidfd_send_signal(fd, SIGKILL, NULL, 0); /* ESRCH: gone already */
            if (paused)
                thaw(ctx, c);
            if (!wait_exit(fd, 10))
                rt_warn(ctx, "container %s: its process did not exit after SIGKILL", c->id);
            close(fd);
        }
    }
    struct rt_ctx sub = *ctx;
    if (cg != NULL && rt_cgroup_remove(&sub, cg, 10) < 0)
        rt_warn(ctx, "remove cgroup of %s: %s", c->id, sub.err);
    const char *unit = rt_json_str(c->rec, "systemd_unit", NULL);
    if (unit != NULL && unit[0]) {
        /* its cgroup (an ordinary user's scope is its systemd instance's, stopped
           on its bus: rt_systemd_stop_unit) */
        const char *scope = rt_json_str(c->rec, "systemd_scope", NULL);
        if (scope == NULL || !scope[0])
            scope = rt_json_str(c->rec, "cgroup_parent", "");
        if (rt_systemd_stop_unit(&sub, unit, scope) < 0)
            rt_warn(ctx, "stop the scope %s of %s: %s", unit, c->id, sub.err);
    }
    if (strcmp(rt_json_str(c->rec, "status", ""), "creating") != 0)
        (void)hooks(ctx, c, "poststop", "stopped", 1);
    char id[sizeof c->id];
    snprintf(id, sizeof id, "%s", c->id);
    rt_container_close(c);
    rt_container_remove(ctx, id);
    return 0;
}

int rt_op_delete(struct rt_ctx *ctx, const char *id, int force)
{
    struct rt_container c;
    if (rt_container_open(ctx, &c, id, 1) < 0) {
        /* as runc: --force removes a half-made leftover (a directory without a
           record), no error; and one whose record is broken; a bad id stays an error */
        if (!force || (strstr(ctx->err, "does not exist") == NULL && strstr(ctx->err, "broken state") == NULL))
            return -1;
        if (strstr(ctx->err, "broken state") != NULL) /* nothing in it can be trusted: no cleanup */
            rt_warn(ctx, "%s: removed", ctx->err);
        rt_container_remove(ctx, id);
        return 0;
    }
    return delete_locked(ctx, &c, force);
}

int rt_op_start(struct rt_ctx *ctx, const char *id)
{
    struct rt_container c;
    if (rt_container_open(ctx, &c, id, 1) < 0)
        return -1;
    const char *st = rt_container_status(&c);
    if (strcmp(st, "created") != 0) {
        rt_fail(ctx, "container %s is %s: only a created container can be started", id, st);
        rt_container_close(&c);
        return -1;
    }
    if (hooks(ctx, &c, "startContainer", "created", 0) < 0) {
        /* the spec: stop the container, destroy it, run the poststop hooks */
        struct rt_ctx sub = *ctx;
        delete_locked(&sub, &c, 1);
        return -1;
    }
    /* a reader of our own first, to see the process's end of the FIFO close (at
       its exec, or its exit): start returns once the program runs, not before */
    int rfd = openat(c.dirfd, RT_FIFO, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOFOLLOW);
    int fd = openat(c.dirfd, RT_FIFO, O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        rt_fail(ctx, "start %s: its process is gone (%s)", id, strerror(errno));
        if (rfd >= 0)
            close(rfd);
        rt_container_close(&c);
        return -1;
    }
    ssize_t n;
    while ((n = write(fd, "1", 1)) < 0 && errno == EINTR)
        ;
    int err = errno;
    close(fd);
    if (n != 1) {
        rt_fail(ctx, "start %s: write to its exec FIFO: %s", id, strerror(err));
        if (rfd >= 0)
            close(rfd);
        rt_container_close(&c);
        return -1;
    }
    if (rfd >= 0) {
        /* POLLHUP once no writer is left (the process held the FIFO open for
           reading and writing until exec); events 0: the byte pending is not
           reported, nor read. A bound, not a condition: a process that takes
           longer is left to it. */
        struct pollfd pf = {.fd = rfd, .events = 0};
        double deadline = rt_now() + 2;
        for (;;) {
            int r = poll(&pf, 1, 50);
            if (r > 0 || (r < 0 && errno != EINTR) || rt_now() > deadline)
                break;
        }
        close(rfd);
    }
    if (rt_container_set_started(ctx, &c) < 0) {
        rt_container_close(&c);
        return -1;
    }
    unlinkat(c.dirfd, RT_FIFO, 0);
    (void)hooks(ctx, &c, "poststart", "running", 1);
    rt_container_close(&c);
    return 0;
}

int rt_op_kill(struct rt_ctx *ctx, const char *id, int sig, int all)
{
    struct rt_container c;
    if (rt_container_open(ctx, &c, id, 0) < 0)
        return -1;
    int rc = 0;
    const char *st = rt_container_status(&c);
    if (strcmp(st, "stopped") == 0) {
        rc = rt_fail(ctx, "container %s is not running", id);
        goto out;
    }
    const struct rt_cgroup *cg = all ? rt_container_cgroup(&c) : NULL;
    if (cg != NULL) {
        if (sig == SIGKILL)
            rc = rt_cgroup_kill_all(ctx, cg, 10);
        else
            rt_cgroup_signal_all(cg, sig);
        goto out;
    }
    int fd = rt_container_pidfd(&c);
    if (fd < 0) {
        rc = rt_fail(ctx, "container %s is not running", id);
        goto out;
    }
    if (pyrt_pidfd_send_signal(fd, sig, NULL, 0) < 0) {
        rc = errno == ESRCH ? rt_fail(ctx, "container %s is not running", id)
                            : rt_fail(ctx, "kill: %s", strerror(errno));
        close(fd);
        goto out;
    }
    close(fd);
    if (sig == SIGKILL && strcmp(st, "paused") == 0)
        thaw(ctx, &c);
out:
    rt_container_close(&c);
    return rc;
}

int rt_op_pids(struct rt_ctx *ctx, const char *id, pid_t **pids, size_t *n)
{
    struct rt_container c;
    if (rt_container_open(ctx, &c, id, 0) < 0)
        return -1;
    int rc = 0;
    const struct rt_cgroup *cg = rt_container_cgroup(&c);
    *pids = NULL;
    *n = 0;
    if (cg != NULL) {
        if (rt_cgroup_procs(cg, pids, n) < 0)
            rc = rt_fail(ctx, "read the processes of %s: %s", id, strerror(errno));
    } else if (rt_container_alive(&c)) {
        *pids = malloc(sizeof **pids);
        if (*pids == NULL)
            rc = rt_fail(ctx, "out of memory");
        else {
            (*pids)[0] = rt_container_pid(&c);
            *n = 1;
        }
    }
    rt_container_close(&c);
    return rc;
}

int rt_op_pause(struct rt_ctx *ctx, const char *id, int freeze)
{
    struct rt_container c;
    if (rt_container_open(ctx, &c, id, 1) < 0)
        return -1;
    int rc = 0;
    const char *st = rt_container_status(&c);
    const char *want = freeze ? "running" : "paused";
    const struct rt_cgroup *cg;
    if (strcmp(st, want) != 0) {
        rc = rt_fail(ctx, "container %s is %s, not %s", id, st, want);
    } else if ((cg = rt_container_cgroup(&c)) == NULL) {
        rc = rt_fail(ctx, "container %s has no cgroup to freeze", id);
    } else {
        struct rt_ctx sub = *ctx;
        if (rt_cgroup_set_frozen(&sub, cg, freeze, 10) < 0)
            rc = rt_fail(ctx, "%s %s: %s", freeze ? "pause" : "resume", id, sub.err);
    }
    rt_container_close(&c);
    return rc;
}
