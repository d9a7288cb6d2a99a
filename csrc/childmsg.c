/* The messages of a new process's error pipe (see childmsg.h). */
#include "childmsg.h"

#include <errno.h>
#include <string.h>

#include "err.h"
#include "fdio.h"

static int send_msg(int fd, int kind, const struct pyrt_error *e, const struct rusage *usage)
{
    struct pyrt_child_msg m;
    memset(&m, 0, sizeof m);
    m.kind = kind;
    if (e)
        m.error = *e;
    if (usage)
        m.usage = *usage;
    return pyrt_write_all(fd, &m, sizeof m);
}

int pyrt_child_failed(int fd, const struct pyrt_error *e)
{
    return send_msg(fd, PYRT_CHILD_FAILED, e, NULL);
}

int pyrt_child_parked(int fd, const struct rusage *usage)
{
    return send_msg(fd, PYRT_CHILD_PARKED, NULL, usage);
}

int pyrt_child_waiting(int fd)
{
    return send_msg(fd, PYRT_CHILD_WAITING, NULL, NULL);
}

void pyrt_child_msg_error(const struct pyrt_child_msg *m, struct pyrt_error *e)
{
    if (m->kind != PYRT_CHILD_FAILED) {
        pyrt_fail_errno(e, EPROTO, "read child status", "unexpected message");
        return;
    }
    *e = m->error;
    e->op[sizeof e->op - 1] = '\0';
    e->path[sizeof e->path - 1] = '\0';
}
