/* The zygote (see zygote.h): its loop, and the pool's side of its socket.
 *
 * Messages on the SOCK_SEQPACKET pair, one datagram each (host byte order):
 *  - pool -> zygote: a struct zy_request; ZY_SPEC has the spec packed by
 *    pyrt_spec_pack after it (the format every spec travels in), ZY_SPAWN the
 *    cgroup fds passed along;
 *  - zygote -> pool: a struct zy_reply, whose typed message (childmsg.h) is
 *    PYRT_CHILD_READY (spec taken), PYRT_CHILD_PARKED (with the child's rusage and
 *    its pidfd, park socket, error pipe and mount namespace passed along) or
 *    PYRT_CHILD_FAILED (with the error). */
#include "zygote.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "childmsg.h"
#include "err.h"
#include "fdpass.h"
#include "specpack.h"

enum { ZY_SPEC = 1, ZY_SPAWN = 2 };

struct zy_request {
    uint32_t op;            /* ZY_* */
    uint32_t ncgroup_procs; /* ZY_SPAWN: fds after the cgroup dir fd (when has_cgroup_fd) */
    int32_t has_cgroup_fd;
    uint32_t pad;
    uint64_t len; /* ZY_SPEC: the packed spec's length (it follows, 8-aligned) */
};

struct zy_reply {
    int32_t pid; /* PARKED: the child; FAILED: a dead child to reap (the pool's), or 0 */
    int32_t pad;
    struct pyrt_child_msg m;
};

#define ZY_SPEC_MAX (1024 * 1024)

static int reply(int ctl, struct zy_reply *r, const int *fds, size_t nfds)
{
    return pyrt_send_fds(ctl, r, sizeof *r, fds, nfds);
}

static void failed(struct zy_reply *r, int err, const char *what)
{
    r->m.kind = PYRT_CHILD_FAILED;
    pyrt_fail_errno(&r->m.error, err, "zygote", what);
}

/* Park one container; 0, or -1 when the pool is gone. */
static int spawn_one(int ctl, struct pyrt_spawn_spec *spec, const struct zy_request *q, const int *fds,
                     size_t nfds)
{
    struct zy_reply r;
    memset(&r, 0, sizeof r);
    size_t want = (q->has_cgroup_fd ? 1 : 0) + q->ncgroup_procs;
    if (!spec) {
        failed(&r, EINVAL, "no spec");
        return reply(ctl, &r, NULL, 0);
    }
    if (want != nfds) {
        failed(&r, EPROTO, "fds missing");
        return reply(ctl, &r, NULL, 0);
    }
    spec->cgroup_fd = q->has_cgroup_fd ? fds[0] : -1;
    spec->cgroup_procs_fds = fds + (q->has_cgroup_fd ? 1 : 0);
    spec->ncgroup_procs = q->ncgroup_procs;
    struct pyrt_parked pk;
    int rc;
    if (pyrt_spawn_parked(spec, &pk, &r.m.error) == 0) {
        r.m.kind = PYRT_CHILD_PARKED;
        r.pid = pk.pid;
        r.m.usage = pk.usage;
        /* its mount namespace: held by the pool until the run is over, so that
         * unmounting it is not part of the container's exit */
        char path[64] = "/proc/";
        char num[24];
        pyrt_strlcpy(path + 6, pyrt_itoa(pk.pid, num), sizeof path - 6);
        size_t l = strlen(path);
        pyrt_strlcpy(path + l, "/ns/mnt", sizeof path - l);
        int mntns = open(path, O_RDONLY | O_CLOEXEC);
        int out[4] = {pk.pidfd, pk.sock, pk.errfd, mntns};
        rc = reply(ctl, &r, out, mntns >= 0 ? 4 : 3); /* < 0: the pool is gone, its child
                                                          too, once its socket closes */
        for (int i = 0; i < 4; i++)
            if (out[i] >= 0)
                close(out[i]);
    } else {
        r.m.kind = PYRT_CHILD_FAILED;
        r.pid = pk.pid;
        rc = reply(ctl, &r, NULL, 0);
    }
    spec->cgroup_fd = -1;
    spec->cgroup_procs_fds = NULL;
    spec->ncgroup_procs = 0;
    return rc;
}

int pyrt_zygote_serve(int ctl)
{
    char *specbuf = NULL;
    struct pyrt_spawn_spec *spec = NULL;
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull < 0)
        return 1;
    char *msg = malloc(ZY_SPEC_MAX);
    if (!msg)
        return 1;
    for (;;) {
        int fds[PYRT_MAX_PASSED_FDS];
        size_t nfds;
        ssize_t n = pyrt_recv_fds(ctl, msg, ZY_SPEC_MAX, fds, &nfds);
        if (n <= 0) { /* the pool is gone (EOF) or the socket broke */
            for (size_t i = 0; i < nfds; i++)
                close(fds[i]);
            return n == 0 ? 0 : 1;
        }
        struct zy_request q;
        memset(&q, 0, sizeof q);
        if ((size_t)n >= sizeof q)
            memcpy(&q, msg, sizeof q);
        struct zy_reply r;
        memset(&r, 0, sizeof r);
        int rc;
        if ((size_t)n < sizeof q) {
            failed(&r, EPROTO, "short request");
            rc = reply(ctl, &r, NULL, 0);
        } else if (q.op == ZY_SPEC) {
            free(specbuf);
            spec = NULL;
            size_t len = (size_t)n - sizeof q;
            specbuf = q.len == len && len ? malloc(len) : NULL;
            if (specbuf) {
                memcpy(specbuf, msg + sizeof q, len);
                if (pyrt_spec_unpack(specbuf, len, &spec) < 0)
                    spec = NULL;
            }
            if (spec) {
                spec->clone_flags |= CLONE_PARENT; /* the pool's process reaps its containers */
                for (int i = 0; i < 3; i++)
                    spec->stdio[i] = devnull;
                r.m.kind = PYRT_CHILD_READY;
            } else {
                failed(&r, EPROTO, "bad spec");
            }
            rc = reply(ctl, &r, NULL, 0);
        } else if (q.op == ZY_SPAWN) {
            rc = spawn_one(ctl, spec, &q, fds, nfds);
        } else {
            failed(&r, EPROTO, "unknown request");
            rc = reply(ctl, &r, NULL, 0);
        }
        for (size_t i = 0; i < nfds; i++)
            close(fds[i]);
        if (rc < 0)
            return 1;
    }
}

/* The zygote's reply: its length, or -1 with e filled; the fds that came with it
 * in got (closed here unless it is PARKED with 3 or 4 of them). */
static int receive(int ctl, struct zy_reply *r, int *got, size_t *ngot, struct pyrt_error *e)
{
    ssize_t n = pyrt_recv_fds(ctl, r, sizeof *r, got, ngot);
    if (n < 0)
        return pyrt_fail(e, "receive from zygote", "");
    int ok = n == (ssize_t)sizeof *r &&
             (r->m.kind == PYRT_CHILD_PARKED ? *ngot == 3 || *ngot == 4 : *ngot == 0);
    if (!ok || r->m.kind != PYRT_CHILD_PARKED) {
        for (size_t i = 0; i < *ngot; i++)
            close(got[i]);
        *ngot = 0;
    }
    if (!ok)
        return pyrt_fail_errno(e, n == 0 ? EPIPE : EPROTO, "receive from zygote", n == 0 ? "zygote exited" : "");
    return 0;
}

int pyrt_zygote_send_spec(int ctl, const struct pyrt_spawn_spec *s, struct pyrt_error *e)
{
    memset(e, 0, sizeof *e);
    char *buf = malloc(ZY_SPEC_MAX);
    if (!buf)
        return pyrt_fail(e, "malloc", "spec");
    struct zy_request q = {ZY_SPEC, 0, 0, 0, 0};
    ssize_t n = pyrt_spec_pack(s, buf + sizeof q, ZY_SPEC_MAX - sizeof q, e);
    int rc = 0;
    if (n < 0) {
        rc = -1;
    } else {
        q.len = (uint64_t)n;
        memcpy(buf, &q, sizeof q);
        if (pyrt_send_fds(ctl, buf, sizeof q + (size_t)n, NULL, 0) < 0)
            rc = pyrt_fail(e, "send spec to zygote", "");
    }
    free(buf);
    if (rc < 0)
        return -1;
    struct zy_reply r;
    int got[PYRT_MAX_PASSED_FDS];
    size_t ngot;
    if (receive(ctl, &r, got, &ngot, e) < 0)
        return -1;
    if (r.m.kind != PYRT_CHILD_READY) {
        pyrt_child_msg_error(&r.m, e);
        return -1;
    }
    return 0;
}

int pyrt_zygote_spawn(int ctl, int cgroup_fd, const int *procs_fds, size_t nprocs, struct pyrt_parked *out,
                      int *mntns, struct pyrt_error *e)
{
    memset(e, 0, sizeof *e);
    memset(out, 0, sizeof *out);
    out->pidfd = out->sock = out->errfd = -1;
    *mntns = -1;
    struct zy_request q = {ZY_SPAWN, (uint32_t)nprocs, cgroup_fd >= 0, 0, 0};
    int fds[PYRT_MAX_PASSED_FDS];
    size_t nfds = 0;
    if (cgroup_fd >= 0)
        fds[nfds++] = cgroup_fd;
    for (size_t i = 0; i < nprocs && nfds < PYRT_MAX_PASSED_FDS; i++)
        fds[nfds++] = procs_fds[i];
    if (nfds != (cgroup_fd >= 0 ? 1 : 0) + nprocs)
        return pyrt_fail_errno(e, E2BIG, "zygote", "too many cgroups");
    if (pyrt_send_fds(ctl, &q, sizeof q, fds, nfds) < 0)
        return pyrt_fail(e, "send to zygote", "");
    struct zy_reply r;
    int got[PYRT_MAX_PASSED_FDS];
    size_t ngot;
    if (receive(ctl, &r, got, &ngot, e) < 0)
        return -1;
    if (r.m.kind != PYRT_CHILD_PARKED) {
        if (r.pid > 0) /* a child that failed: ours to reap (CLONE_PARENT) */
            while (waitpid(r.pid, NULL, __WALL) < 0 && errno == EINTR)
                ;
        pyrt_child_msg_error(&r.m, e);
        if (e->err == 0)
            e->err = EPROTO;
        return -1;
    }
    out->pid = r.pid;
    out->pidfd = got[0];
    out->sock = got[1];
    out->errfd = got[2];
    if (ngot == 4)
        *mntns = got[3];
    out->usage = r.m.usage;
    return 0;
}
