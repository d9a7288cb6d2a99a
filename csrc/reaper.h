/* The reaper of a foreground run: what ends a container whose `pyrt` process is
 * killed (SIGKILL from `timeout -s KILL`, the OOM killer, a crash) before it could
 * end and clean up the container itself.
 *
 * A foreground container's output goes to the `pyrt` process that started it, and
 * nothing else: without it, the container's output can be neither shown nor
 * logged, and a CI step bounded by `timeout` expects its work gone with it. So a
 * foreground container does not outlive its `pyrt` (unlike docker's, whose daemon
 * keeps it): the reaper kills it, then runs a clean-up command (pyrt.cli.orphan:
 * records the exit, removes the cgroup, and with --rm the container).
 *
 * pyrt_reaper_start, in the caller, makes a SOCK_SEQPACKET socket pair and
 * starts the small static pyrt-reaper program (vfork + exec) in a session of its own (so a
 * signal to the caller's process group, as `timeout` sends, does not reach it),
 * with its end of the pair as fd 3 and /dev/null as stdio. The caller keeps the
 * other end (close-on-exec) and sends messages, one byte of kind then a payload:
 *   'a' argv  the clean-up command, its words NUL-separated (replaces any before);
 *   'r' dirs  directories to remove once it is gone, NUL-separated absolute paths
 *             (the caller's own cgroups; rmdir only removes empty ones);
 *   'p'       one fd rides along (SCM_RIGHTS): a pidfd of the container's init;
 *   'd'       done: the caller has ended and cleaned up the container itself; the
 *             reaper exits at once.
 * When the caller's end closes without 'd' (the caller died), the reaper sends
 * SIGKILL through the pidfd, waits until that process has exited (the init of a
 * pid namespace exits only once every process in it is gone), removes the
 * directories, and execs the clean-up command with a clean signal mask. The pidfd names the process itself,
 * never a pid that could be reused; the clean-up command names the container by
 * its full id. Asynchronous signals are blocked in the reaper: only SIGKILL ends
 * it. */
#ifndef PYRT_REAPER_H
#define PYRT_REAPER_H

#include <sys/types.h>

#include "err.h" /* struct pyrt_error */

#define PYRT_REAPER_MAX_MESSAGE 16384

/* Start pyrt-reaper (the executable at reaper_path). On success returns 0 with
 * *sock (the caller's end, close-on-exec) and *pid (a child of the caller's, which
 * it need not reap: it exits on its own); on failure -1 with e filled. */
int pyrt_reaper_start(const char *reaper_path, int *sock, pid_t *pid, struct pyrt_error *e);

/* The pyrt-reaper program: argv = {"pyrt-reaper"}, its socket on fd 3. */
int pyrt_reaper_main(int argc, char **argv);

#endif
