/* pyrt-runtime's state directory, natively: the same files as pyrt/ocirt/state.py
 * (so the Python and the native commands work on each other's containers):
 *
 *     <root>/<id>/state.json   the record (written whole, atomically)
 *     <root>/<id>/exec.fifo    while created: `start` writes one byte to it
 *
 * A container's directory is opened without following a symlink, and every file
 * in it is reached through that directory's fd. Its status is derived, never
 * trusted from the record alone: its init (pid + start time, so a reused pid is
 * never taken for it) alive or not, started or not, its cgroup frozen or not. */
#ifndef PYRT_RT_STATE_H
#define PYRT_RT_STATE_H

#include <sys/types.h>
#include <yajl/yajl_gen.h>
#include <yajl/yajl_tree.h>

#include "rt.h"
#include "rt_cgroup.h"

#define RT_STATE_FILE "state.json"
#define RT_STATE_TMP RT_STATE_FILE ".tmp"
#define RT_FIFO "exec.fifo"

struct rt_container {
    char id[256];
    int dirfd;    /* its directory (flock'ed when locked) */
    yajl_val rec; /* the record */
    int have_cg;  /* cg looked up: 1 found, -1 none */
    struct rt_cgroup cg;
};

/* Whether `id` is a valid container id (letters, digits, _ + - . and non-ASCII
 * letters; not "." or ".."); -1 with ctx->err set when not. */
int rt_check_id(struct rt_ctx *ctx, const char *id);

/* Open the container's directory (exclusively locked when `lock`) and read its
 * record; -1 with ctx->err set ("does not exist", a broken record). */
int rt_container_open(struct rt_ctx *ctx, struct rt_container *c, const char *id, int lock);
void rt_container_close(struct rt_container *c);

/* The process's start time (field 22 of /proc/PID/stat), 0 when it is gone or a
 * zombie. */
unsigned long long rt_start_time(pid_t pid);

pid_t rt_container_pid(const struct rt_container *c);
int rt_container_alive(const struct rt_container *c);

/* Its cgroup, or NULL when it has none (or it is gone). */
const struct rt_cgroup *rt_container_cgroup(struct rt_container *c);

/* "creating", "created", "running", "paused" or "stopped". */
const char *rt_container_status(struct rt_container *c);

/* The state as the runtime spec gives it, into g; status (and pid 0 when
 * stopped) from `status` when not NULL, else derived. */
void rt_gen_state(yajl_gen g, struct rt_container *c, const char *status);

/* A pidfd of its init, or -1 when it has exited (or its pid was reused). */
int rt_container_pidfd(const struct rt_container *c);

/* Write g's text as the record in the container's directory dirfd, atomically:
 * a temporary file (created, or truncated when there is one; never through a
 * symlink) written whole, closed, then renamed over state.json. -1 with errno set
 * when a step fails (the temporary file is left to the caller). */
int rt_state_write(int dirfd, yajl_gen g);

/* Rewrite the record with "started": true (every other member as it was). */
int rt_container_set_started(struct rt_ctx *ctx, struct rt_container *c);

/* Remove the container's directory and what is in it (a symlink in its place is
 * removed, never followed). Errors are ignored, as pyrt/ocirt/state.py does. */
void rt_container_remove(struct rt_ctx *ctx, const char *id);

/* The ids of the containers in the root that have a record (sorted; a malloc'd
 * NULL-terminated array of malloc'd strings: rt_free_list). */
char **rt_list_ids(struct rt_ctx *ctx);
void rt_free_list(char **ids);

/* Time as RFC 3339 with nanoseconds, UTC ("2024-01-02T03:04:05.123456789Z"). */
void rt_rfc3339(char *buf, size_t len);

#endif
