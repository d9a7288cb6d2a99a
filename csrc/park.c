/* Parking (see park.h): the child's wait for its command (between setup and
 * exec, so async-signal-safe: no allocation, no stdio, no locks) and the parent's
 * hand-over. */
#include "park.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "childmsg.h"
#include "err.h"
#include "fdio.h"

/* -- the child ------------------------------------------------------------- */

/* The NUL-terminated string at *p (advanced past it), or NULL when it does not
 * end before `end`. */
static const char *next_string(const char **p, const char *end)
{
    const char *s = *p;
    if (s >= end)
        return NULL;
    const char *z = memchr(s, '\0', (size_t)(end - s));
    if (!z)
        return NULL;
    *p = z + 1;
    return s;
}

int pyrt_park_wait(int errfd, int sock, struct pyrt_park_inbox *in, struct pyrt_unpark_cmd *cmd,
                   struct pyrt_error *e)
{
    struct rusage usage;
    if (getrusage(RUSAGE_SELF, &usage) < 0)
        return pyrt_fail(e, "getrusage", "");
    if (pyrt_child_parked(errfd, &usage) < 0)
        return pyrt_fail(e, "report parked", "");

    /* One datagram: the header and the strings; the fds ride along. */
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
    if (h.magic != PYRT_PARK_MAGIC || h.nfds != nfds || h.argc == 0 ||
        (size_t)h.argc + h.envc > PYRT_PARK_MAX_STRINGS)
        return pyrt_fail_errno(e, EPROTO, "command", "malformed message");
    for (int i = 0; i < 3; i++)
        if (h.stdio[i] >= (int32_t)nfds)
            return pyrt_fail_errno(e, EPROTO, "command", "bad stdio index");

    /* The strings, each checked to end inside the message, laid out as
     * argv..., NULL, env..., NULL. */
    const char **vec = in->vec;
    const char *p = in->buf + sizeof h, *end = in->buf + n, *path = NULL, *cwd = NULL;
    size_t a = 0;
    int bad = 0;
    for (uint32_t i = 0; i < h.argc; i++)
        bad |= !(vec[a++] = next_string(&p, end));
    vec[a++] = NULL;
    const char **envp = &vec[a];
    for (uint32_t i = 0; i < h.envc; i++)
        bad |= !(vec[a++] = next_string(&p, end));
    vec[a++] = NULL;
    if (h.flags & PYRT_PARK_HAS_PATH)
        bad |= !(path = next_string(&p, end));
    if (h.flags & PYRT_PARK_HAS_CWD)
        bad |= !(cwd = next_string(&p, end));
    if (bad)
        return pyrt_fail_errno(e, EPROTO, "command", "unterminated string");

    cmd->argv = vec;
    cmd->envp = envp;
    cmd->path = path;
    cmd->cwd = cwd;
    for (int i = 0; i < 3; i++)
        cmd->stdio[i] = h.stdio[i] >= 0 ? in->fds[h.stdio[i]] : -1;
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
    struct pyrt_park_header h;
    memset(&h, 0, sizeof h);
    h.magic = PYRT_PARK_MAGIC;
    size_t size = sizeof h;
    if (!cmd->argv || !cmd->argv[0])
        return pyrt_fail_errno(e, EINVAL, "command", "empty argv");
    for (; cmd->argv[h.argc]; h.argc++)
        size += strlen(cmd->argv[h.argc]) + 1;
    for (; cmd->envp && cmd->envp[h.envc]; h.envc++)
        size += strlen(cmd->envp[h.envc]) + 1;
    if (cmd->path) {
        h.flags |= PYRT_PARK_HAS_PATH;
        size += strlen(cmd->path) + 1;
    }
    if (cmd->cwd) {
        h.flags |= PYRT_PARK_HAS_CWD;
        size += strlen(cmd->cwd) + 1;
    }
    if (size > PYRT_PARK_MSG_MAX || (size_t)h.argc + h.envc > PYRT_PARK_MAX_STRINGS)
        return pyrt_fail_errno(e, E2BIG, "command", "argv and environment too large for a parked container");

    int fds[3];
    for (int i = 0; i < 3; i++) {
        h.stdio[i] = -1;
        if (cmd->stdio[i] >= 0) {
            h.stdio[i] = (int32_t)h.nfds;
            fds[h.nfds++] = cmd->stdio[i];
        }
    }
    char *msg = malloc(size);
    if (!msg)
        return pyrt_fail(e, "malloc", "command");
    memcpy(msg, &h, sizeof h);
    char *p = msg + sizeof h;
    for (uint32_t i = 0; i < h.argc; i++) {
        size_t l = strlen(cmd->argv[i]) + 1;
        memcpy(p, cmd->argv[i], l);
        p += l;
    }
    for (uint32_t i = 0; i < h.envc; i++) {
        size_t l = strlen(cmd->envp[i]) + 1;
        memcpy(p, cmd->envp[i], l);
        p += l;
    }
    if (cmd->path) {
        size_t l = strlen(cmd->path) + 1;
        memcpy(p, cmd->path, l);
        p += l;
    }
    if (cmd->cwd) {
        size_t l = strlen(cmd->cwd) + 1;
        memcpy(p, cmd->cwd, l);
        p += l;
    }

    union {
        struct cmsghdr h;
        char space[CMSG_SPACE(3 * sizeof(int))];
    } cbuf;
    memset(&cbuf, 0, sizeof cbuf);
    struct iovec iov = {msg, size};
    struct msghdr mh;
    memset(&mh, 0, sizeof mh);
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    if (h.nfds) {
        mh.msg_control = cbuf.space;
        mh.msg_controllen = CMSG_SPACE(h.nfds * sizeof(int));
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(h.nfds * sizeof(int));
        memcpy(CMSG_DATA(c), fds, h.nfds * sizeof(int));
    }
    ssize_t n;
    do
        n = sendmsg(sock, &mh, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    int err = errno;
    free(msg);
    if (n < 0)
        return pyrt_fail_errno(e, err, "hand over command", "");
    if ((size_t)n != size)
        return pyrt_fail_errno(e, EPIPE, "hand over command", "short send");
    return 0;
}
