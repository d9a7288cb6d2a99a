/* pyrt-runtime's create and run, natively (what pyrt/ocirt/operations.py's
 * Operations.create and run do, on the same state directory and with the same
 * messages): the config read and checked by rt_config.c, the container's cgroup
 * made (rt_cgroup_create), its process started by the spawn core and left
 * waiting on the exec FIFO, the create hooks run at the spawn core's stop. Each
 * returns 0, -1 with ctx->err set, or RT_DEFER (rt_config.h's hand-over rule:
 * nothing was done, the Python implementation is to do it). */
#ifndef PYRT_RT_CREATE_H
#define PYRT_RT_CREATE_H

#include <sys/types.h>

#include "rt.h"

struct rt_create_opts {
    const char *bundle;         /* NULL: the working directory */
    const char *pid_file;
    const char *console_socket;
    const char *preserve_fds;   /* only "0" (or NULL) is native */
    int no_new_keyring;
};

int rt_op_create(struct rt_ctx *ctx, const char *id, const struct rt_create_opts *o);

/* create + start; in the foreground (!detach) also wait for the container with
 * our signals forwarded to it, and delete it (unless keep): *code its exit
 * status (128+N when killed by signal N), 0 when detached. */
int rt_op_run(struct rt_ctx *ctx, const char *id, const struct rt_create_opts *o, int detach, int keep, int *code);

/* state.py's write_pid_file: the pid, no newline, through a new temporary file
 * renamed over `file` (never written through a planted file or symlink). */
int rt_write_pid_file(struct rt_ctx *ctx, const char *file, pid_t pid);

/* The command an OSError is reported under ("create: [Errno 2] ..."), as Python's main(). */
void rt_create_set_cmd(const char *cmd);

#endif
