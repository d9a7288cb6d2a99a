/* pyrt-runtime's operations on existing containers, natively (what
 * pyrt/ocirt/operations.py does for them, on the same state directory): the
 * command line (csrc/bin/pyrt-runtime.c) parses, calls these and prints. Each
 * returns 0, or -1 with ctx->err (and ctx->code) set. */
#ifndef PYRT_RT_OPS_H
#define PYRT_RT_OPS_H

#include <sys/types.h>
#include <yajl/yajl_gen.h>

#include "rt.h"

/* The container's state (the runtime spec's JSON) into g. */
int rt_op_state(struct rt_ctx *ctx, const char *id, yajl_gen g);

/* Let a created container's process exec its program: startContainer hooks,
 * one byte to the exec FIFO, the record marked started, poststart hooks. */
int rt_op_start(struct rt_ctx *ctx, const char *id);

/* Signal its init (through a pidfd, pid reuse checked); all: every process of its
 * cgroup. */
int rt_op_kill(struct rt_ctx *ctx, const char *id, int sig, int all);

/* Remove a stopped (or created) container; force: any, its processes killed.
 * Its cgroup and systemd scope go, poststop hooks run, then its directory. With
 * force, a container that does not exist is not an error (as runc). */
int rt_op_delete(struct rt_ctx *ctx, const char *id, int force);

/* The pids of its processes (its cgroup's, else its init's): malloc'd. */
int rt_op_pids(struct rt_ctx *ctx, const char *id, pid_t **pids, size_t *n);

/* Freeze (pause) or thaw (resume) its cgroup. */
int rt_op_pause(struct rt_ctx *ctx, const char *id, int freeze);

#endif
