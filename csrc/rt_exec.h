/* pyrt-runtime's exec, natively (pyrt/cli/oci_runtime.py's cmd_exec and
 * pyrt/ocirt/operations.py's Operations.exec, the same messages and exit
 * statuses): the process from --process FILE, or the container's own with the
 * command line's args, -e, --cwd, --user, --additional-gids, --cap and
 * --no-new-privs; checked by rt_config_process as a config's; the container's
 * recorded seccomp profile and its cgroup joined; a terminal (--tty or
 * process.terminal) a pty of the container's devpts sent over --console-socket;
 * pyrt_exec (csrc/exec.h) joins its namespaces; then --pid-file (when the pid
 * file or the terminal cannot be passed on, the process is killed and reaped, as
 * in Python), and unless --detach a wait with SIGINT,
 * SIGTERM, SIGHUP and SIGQUIT forwarded, *code the process's exit status (128+N
 * when killed by signal N).
 *
 * Handed over to Python (RT_DEFER, rt_config.h's rule; --debug says why): an
 * ordinary user (rootless); --preserve-fds other than 0; a non-ASCII id; a
 * console socket path too long for an address, a container without a usable
 * /dev/ptmx (Python says why); a --process file that is not a
 * strict JSON object (rt_config_read's rule: Python's reader gives the error);
 * --user or --additional-gids not in plain digits (Python's int() and its error
 * decide); a container record whose process, process.user, .capabilities or a
 * list in them has a shape Python's list()/setdefault() treat in their own way;
 * and everything rt_config_process defers. */
#ifndef PYRT_RT_EXEC_H
#define PYRT_RT_EXEC_H

#include "rt.h"

enum { RT_EXEC_ENV = 1, RT_EXEC_GID, RT_EXEC_CAP };

struct rt_exec_opts {
    const char *process; /* --process FILE */
    char **argv;         /* the command (argc of them) */
    int argc;
    const char *const *list; /* -e, --additional-gids and --cap values in order, */
    const int *list_keys;    /* each one's RT_EXEC_* */
    int nlist;
    const char *cwd, *user, *pid_file, *console_socket, *preserve_fds;
    int detach, tty, no_new_privs, ignore_paused;
};

/* 0 (*code set), -1 with ctx->err (ctx->code 2 for a usage error), or RT_DEFER. */
int rt_op_exec(struct rt_ctx *ctx, const char *id, const struct rt_exec_opts *o, int *code);

#endif
