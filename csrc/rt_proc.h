/* Running a helper program from pyrt-runtime (hooks in the runtime's namespaces,
 * busctl, ps): fork and exec with the given stdin bytes, its stdout and stderr
 * captured (or inherited), bounded in time. And the side of a container process
 * that pyrt-runtime waits for in the foreground (run, exec): signals forwarded to
 * it, and it killed and reaped when it must not be left behind. */
#ifndef PYRT_RT_PROC_H
#define PYRT_RT_PROC_H

#include <stddef.h>

#include "rt.h"

struct rt_proc {
    const char *path;         /* what is exec'd; searched in PATH when it has no '/' */
    char *const *argv;        /* NULL terminated */
    char *const *envp;        /* NULL: ours */
    const void *input;        /* written to its stdin (then closed); NULL: /dev/null */
    size_t input_len;
    int capture;              /* 1: stdout and stderr captured below; 0: inherited */
    double timeout;           /* seconds; <= 0: none */

    /* results */
    int status;               /* as waitpid gives it */
    int timed_out;            /* killed (SIGKILL) at the timeout */
    int exec_errno;           /* the exec failed with this (status then 127) */
    char *out, *err;          /* what it wrote (NUL terminated, at most 1 MiB each; malloc'd) */
    size_t out_len, err_len;
};

/* 0 once it has run (whatever its exit status), -1 with errno when it could not
 * be started. Free out and err with rt_proc_free. */
int rt_proc_run(struct rt_proc *p);
void rt_proc_free(struct rt_proc *p);

/* Hold (block) `sigs` from before the process is started, so that one sent before
 * rt_forward_signals is forwarded then instead of ending this program (the process
 * then left behind). The process starts with no signal blocked (its tail). */
void rt_forward_hold(const int *sigs, size_t nsigs);

/* Let held signals take their course again (on a path that does not forward). */
void rt_forward_release(const int *sigs, size_t nsigs);

/* While the process of pidfd is waited for in the foreground: the signals sigs
 * (nsigs of them) sent on to it when pyrt-runtime receives them (an interrupted
 * wait is restarted); those held by rt_forward_hold are released. A handler that
 * cannot be installed is warned of. One
 * process at a time: the pidfd stays ours (not closed here). */
void rt_forward_signals(struct rt_ctx *ctx, int pidfd, const int *sigs, size_t nsigs);
/* No more forwarding (the handlers stay: a signal is then dropped). */
void rt_forward_stop(void);

/* The process of pidfd killed (SIGKILL) and reaped, the pidfd closed. */
void rt_kill_and_reap(int pidfd);

#endif
