/* Parking (see park.h): the child's wait for its command (between setup and
 * exec, so async-signal-safe: no allocation, no stdio, no locks) and the parent's
 * hand-over. */
#include "park.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "childmsg.h"
#include "err.h"
#include "fdio.h"
#include "specpack.h"

/* -- the child ------------------------------------------------------------- */

int pyrt_park_wait(int errfd, int sock, struct pyrt_park_inbox *in, struct pyrt_unpark_cmd *cmd,
                   struct pyrt_error *e)
{
    struct rusage usage;
    if (getrusage(RUSAGE_SELF, &usage) < 0)
        return pyrt_fail(e, "getrusage", "");
    if (pyrt_child_parked(errfd, &usage) < 0)
        return pyrt_fail(e, "report parked", "");

    /* One datagram: the header and the packed spec; the fds ride along. */
    size_t nfds = 0;
    ssize_t n = pyrt_recv_fds(sock, in->buf, sizeof in->buf, in->fds, &nfds);
    if (n < 0)
        return errno == EMSGSIZE ? pyrt_fail_errno(e, E2BIG, "command", "too large for a parked container")
                                 : pyrt_fail(e, "wait for command", "");
    if (n == 0) /* the pool went away: nothing to run */
        return pyrt_fail_errno(e, ECANCELED, "wait for command", "the parent closed the park socket");
    close(sock);

    struct pyrt_park_header h;
    if ((size_t)n < sizeof h)
        return pyrt_fail_errno(e, EPROTO, "command", "short message");
    memcpy(&h, in->buf, sizeof h);
    struct pyrt_spawn_spec *run;
    if (h.magic != PYRT_PARK_MAGIC || h.nfds != nfds || h.len != (size_t)n - sizeof h ||
        pyrt_spec_unpack(in->buf + sizeof h, (size_t)h.len, &run) < 0 || !run->argv[0])
        return pyrt_fail_errno(e, EPROTO, "command", "malformed message");
    for (int i = 0; i < 3; i++)
        if (run->stdio[i] >= (int)nfds || run->stdio[i] < -1)
            return pyrt_fail_errno(e, EPROTO, "command", "bad stdio index");
    cmd->argv = run->argv;
    cmd->envp = run->envp;
    cmd->path = run->path;
    cmd->cwd = run->cwd;
    for (int i = 0; i < 3; i++)
        cmd->stdio[i] = run->stdio[i] >= 0 ? in->fds[run->stdio[i]] : -1;
    return 0;
}

/* -- the parent: hand-over -------------------------------------------------- */

static int read_record(int errfd, struct pyrt_error *e)
{
    struct pyrt_child_msg m;
    ssize_t got = pyrt_read_full(errfd, &m, sizeof m);
    if (got < 0)
        return pyrt_fail(e, "read child status", "");
    if (got == 0)
        return 0; /* EOF: exec'd */
    if ((size_t)got != sizeof m)
        return pyrt_fail_errno(e, EPIPE, "read child status", "");
    pyrt_child_msg_error(&m, e);
    if (e->err == 0)
        e->err = EPROTO;
    return -1;
}

int pyrt_unpark(int sock, int errfd, const struct pyrt_unpark_cmd *cmd, struct pyrt_error *e)
{
    if (pyrt_unpark_send(sock, cmd, e) < 0) {
        /* The child is gone (killed, or failed): its record says why, if any. */
        struct pyrt_error send_error = *e;
        if (e->err == EPIPE || e->err == ECONNRESET || e->err == ECONNREFUSED) {
            if (read_record(errfd, e) < 0)
                return -1;
        }
        *e = send_error;
        return -1;
    }
    return read_record(errfd, e);
}

int pyrt_unpark_send(int sock, const struct pyrt_unpark_cmd *cmd, struct pyrt_error *e)
{
    memset(e, 0, sizeof *e);
    if (!cmd->argv || !cmd->argv[0])
        return pyrt_fail_errno(e, EINVAL, "command", "empty argv");
    static const char *const no_env[] = {NULL};
    struct pyrt_spawn_spec c;
    memset(&c, 0, sizeof c);
    c.argv = cmd->argv;
    c.envp = cmd->envp ? cmd->envp : no_env;
    c.path = cmd->path;
    c.cwd = cmd->cwd;
    c.umask = -1;
    struct pyrt_park_header h = {PYRT_PARK_MAGIC, 0, 0};
    int fds[3];
    for (int i = 0; i < 3; i++) {
        c.stdio[i] = -1;
        if (cmd->stdio[i] >= 0) {
            c.stdio[i] = (int)h.nfds;
            fds[h.nfds++] = cmd->stdio[i];
        }
    }
    /* Most commands fit the buffer on the stack; a large one gets the most a
     * parked child takes. */
    char small[8192] __attribute__((aligned(8)));
    char *msg = small;
    ssize_t n = pyrt_spec_pack(&c, msg + sizeof h, sizeof small - sizeof h, e);
    if (n < 0 && e->err == E2BIG) {
        if (!(msg = malloc(PYRT_PARK_MSG_MAX)))
            return pyrt_fail(e, "malloc", "command");
        n = pyrt_spec_pack(&c, msg + sizeof h, PYRT_PARK_MSG_MAX - sizeof h, e);
        if (n < 0 && e->err == E2BIG)
            pyrt_fail_errno(e, E2BIG, "command", "argv and environment too large for a parked container");
    }
    int rc = 0;
    if (n >= 0) {
        h.len = (uint64_t)n;
        memcpy(msg, &h, sizeof h);
        if (pyrt_send_fds(sock, msg, sizeof h + (size_t)n, fds, h.nfds) < 0)
            rc = pyrt_fail(e, "hand over command", "");
    } else {
        rc = -1;
    }
    if (msg != small)
        free(msg);
    return rc;
}
