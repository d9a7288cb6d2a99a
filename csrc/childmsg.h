/* What a new process tells its parent on its error pipe before it execs: one
 * typed message, written in one write (atomic: it is smaller than PIPE_BUF), or
 * nothing at all when it exec'd (the pipe is close-on-exec: EOF).
 *
 *  - PYRT_CHILD_FAILED   a step failed (error says which and why); the child
 *                        exits with 127;
 *  - PYRT_CHILD_PARKED   a pool member is set up and waits for its command
 *                        (park.h); usage is its own rusage at that moment (the
 *                        cost of its setup, which waitid counts in at its exit);
 *  - PYRT_CHILD_WAITING  an OCI container is set up and waits for `start`
 *                        (oci.h);
 *  - PYRT_CHILD_HOOKS    an OCI container's mounts are made, before pivot_root:
 *                        it waits for the runtime's create hooks (oci.h);
 *  - PYRT_CHILD_READY    a helper took the spec it was sent (pyrt-zygote,
 *                        zygote.h, whose replies carry these messages too).
 *
 * The child's side is async-signal-safe (no allocation, no stdio, no locks). */
#ifndef PYRT_CHILDMSG_H
#define PYRT_CHILDMSG_H

#include <stdint.h>
#include <sys/resource.h>

#include "err.h" /* struct pyrt_error */

enum { PYRT_CHILD_FAILED = 1, PYRT_CHILD_PARKED = 2, PYRT_CHILD_WAITING = 3, PYRT_CHILD_HOOKS = 4, PYRT_CHILD_READY = 5 };

struct pyrt_child_msg {
    int32_t kind; /* PYRT_CHILD_* */
    int32_t pad;
    struct pyrt_error error; /* PYRT_CHILD_FAILED */
    struct rusage usage;     /* PYRT_CHILD_PARKED */
};

/* Child side: 0, or -1 with errno. */
int pyrt_child_failed(int fd, const struct pyrt_error *e);
int pyrt_child_parked(int fd, const struct rusage *usage);
int pyrt_child_waiting(int fd);
int pyrt_child_hooks(int fd);

/* Parent side: the failure a message reports (its strings terminated): a
 * PYRT_CHILD_FAILED message's error, or EPROTO for any other kind, which the
 * reader did not expect there. */
void pyrt_child_msg_error(const struct pyrt_child_msg *m, struct pyrt_error *e);

#endif
