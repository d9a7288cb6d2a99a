/* Parked containers (a warm pool's mechanism), plain C.
 *
 * pyrt_spawn_parked (spawn.c) starts a child that does its whole setup
 * (namespaces, root, mounts, pivot_root, hostname, lo, rlimits, cgroups) and then
 * parks: it sends PYRT_CHILD_PARKED on the error pipe (childmsg.h) and waits on
 * its end of a SOCK_SEQPACKET socketpair for one command (argv, env, PATH, cwd,
 * and stdio fds passed with SCM_RIGHTS). pyrt_unpark sends that command and waits
 * until the child has exec'd (EOF on the error pipe) or failed (PYRT_CHILD_FAILED).
 *
 * The message (host byte order, one datagram of at most
 * PYRT_PARK_MSG_MAX bytes): a struct pyrt_park_header, then argc + envc strings,
 * then PATH and cwd when present, each NUL terminated. */
#ifndef PYRT_POOL_H
#define PYRT_POOL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>

#include "spawn.h"

#define PYRT_PARK_MAGIC 0x6b726170u /* "park" */
#define PYRT_PARK_MSG_MAX (128 * 1024)
#define PYRT_PARK_MAX_STRINGS 4096 /* argv + env entries */

enum {
    PYRT_PARK_HAS_PATH = 1,
    PYRT_PARK_HAS_CWD = 2,
};

struct pyrt_park_header {
    uint32_t magic;
    uint32_t argc;
    uint32_t envc;
    uint32_t flags;   /* PYRT_PARK_HAS_* */
    int32_t stdio[3]; /* index among the passed fds, or -1: keep what the child has */
    uint32_t nfds;
};

/* A command for a parked child. */
struct pyrt_unpark_cmd {
    const char *const *argv; /* NULL terminated, at least one */
    const char *const *envp; /* NULL terminated */
    const char *path;        /* PATH for the lookup of argv[0]; NULL: the spec's */
    const char *cwd;         /* NULL: the spec's */
    int stdio[3];            /* fds for 0, 1, 2; -1: keep the child's */
};

/* Child side, called by the spawn core between the setup and exec: closes every
 * fd but 0-2, errfd, sock and keep_fd, reports PYRT_CHILD_PARKED on errfd, waits for
 * the command on sock, then calls finish(spec with the command's argv, env, PATH,
 * cwd and stdio, keep_fd, e), which execs. Returns only on failure (e filled). */
typedef int (*pyrt_park_finish_fn)(const struct pyrt_spawn_spec *s, int errfd, int keep_fd, struct pyrt_error *e);
int pyrt_park(const struct pyrt_spawn_spec *s, int errfd, int sock, int keep_fd, pyrt_park_finish_fn finish,
              struct pyrt_error *e);

/* Parent side: hand the command to the child parked behind sock / errfd, and
 * wait until it has exec'd. 0: exec'd; -1: e filled (the child failed and exits
 * with 127, or could not be reached). The fds stay open: the caller closes them. */
int pyrt_unpark(int sock, int errfd, const struct pyrt_unpark_cmd *cmd, struct pyrt_error *e);

/* Only the sending part, for callers that read the error pipe themselves: a pool
 * reads it once the process is gone (EOF: it exec'd; a record: it did not),
 * which spares a wake-up on the way to its exit. */
int pyrt_unpark_send(int sock, const struct pyrt_unpark_cmd *cmd, struct pyrt_error *e);

/* A growing output buffer (malloc'd; the caller frees data). */
struct pyrt_buf {
    char *data;
    size_t len, cap;
};

/* The I/O of one command: input fed to in_fd, out_fd and err_fd read to their
 * end, the process behind pidfd waited for and reaped. An fd is -1 when there is
 * none, and is set to -1 once it is closed here (at its end). */
struct pyrt_io {
    int pidfd;
    int in_fd, out_fd, err_fd;
    const char *input;
    size_t input_len, input_off;
    struct pyrt_buf out, err;
    int exited;          /* reaped: status and usage are set */
    int status;          /* as for waitpid */
    struct rusage usage; /* from waitid: the process and its waited-for children */
};

/* Go on with io until the outputs are at their end and the process exited, or
 * for at most timeout_ms (< 0: no limit). 1: done; 0: timed out (call again to
 * go on); -1: errno (EINTR: a signal came, call again). */
int pyrt_io_run(struct pyrt_io *io, int timeout_ms);

/* Close what io still has open and free its buffers (not the pidfd). */
void pyrt_io_release(struct pyrt_io *io);

/* -- the zygote --------------------------------------------------------------
 * A small single-threaded process (pyrt-zygote) that parks containers for a pool:
 * cloning from it copies a few page tables where cloning from a big Python
 * process copies all of its own (and makes its pages copy-on-write). Its children
 * are cloned with CLONE_PARENT: the pool's process is their parent, reaps them
 * and gets their rusage. It exits when its control socket closes. */

/* The spec goes to the zygote packed by pyrt_spec_pack (specpack.h). */

/* The zygote's loop on its control socket (returns its exit status). */
int pyrt_zygote_serve(int ctl);

/* Client side: give the zygote its spec (once, or to change it). */
int pyrt_zygote_send_spec(int ctl, const struct pyrt_spawn_spec *s, struct pyrt_error *e);

/* Client side: have one container parked, in the given cgroups (fds as for the
 * spec's cgroup_fd / cgroup_procs_fds; they stay the caller's). 0 with out
 * filled (the caller owns its fds and is the child's parent) and *mntns an fd
 * of the container's mount namespace (or -1): holding it until the run is over
 * keeps the unmounting out of the container's exit. -1 with e on failure. */
int pyrt_zygote_spawn(int ctl, int cgroup_fd, const int *procs_fds, size_t nprocs, struct pyrt_parked *out,
                      int *mntns, struct pyrt_error *e);

#endif
