/* The zygote (see zygote.h): its loop, and the pool's side of its socket. */
#include "zygote.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "err.h"
#include "fdpass.h"
#include "specpack.h"

/* Messages between the pool (client) and its zygote, on a SOCK_SEQPACKET pair. */
enum { ZY_SPEC = 1, ZY_SPAWN = 2, ZY_PARKED = 3, ZY_FAILED = 4 };

struct zy_request {
    uint32_t op;
    uint32_t ncgroup_procs; /* fds after the cgroup dir fd (when has_cgroup_fd) */
    int32_t has_cgroup_fd;
};

struct zy_reply {
    uint32_t op;
    int32_t pid; /* ZY_FAILED: a dead child to reap (the client's), or 0 */
    struct rusage usage;
    struct pyrt_error error;
};


#define ZY_SPEC_MAX (1024 * 1024)

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
        struct zy_reply r;
        memset(&r, 0, sizeof r);
        uint32_t op = 0;
        if ((size_t)n >= sizeof op)
            memcpy(&op, msg, sizeof op);
        if (op == ZY_SPEC) {
            free(specbuf);
            specbuf = (size_t)n > 8 ? malloc((size_t)n) : NULL;
            spec = NULL;
            if (specbuf) {
                memcpy(specbuf, msg + 8, (size_t)n - 8);
                if (pyrt_spec_unpack(specbuf, (size_t)n - 8, &spec) < 0)
                    spec = NULL;
            }
            if (spec) {
                spec->clone_flags |= CLONE_PARENT; /* the pool's process reaps its containers */
                for (int i = 0; i < 3; i++)
                    spec->stdio[i] = devnull;
                r.op = ZY_SPEC;
            } else {
                r.op = ZY_FAILED;
                pyrt_fail_errno(&r.error, specbuf ? EPROTO : ENOMEM, "zygote", "bad spec");
            }
        } else if (op == ZY_SPAWN && (size_t)n >= sizeof(struct zy_request)) {
            struct zy_request q;
            memcpy(&q, msg, sizeof q);
            size_t want = (q.has_cgroup_fd ? 1 : 0) + q.ncgroup_procs;
            r.op = ZY_FAILED;
            if (!spec) {
                pyrt_fail_errno(&r.error, EINVAL, "zygote", "no spec");
            } else if (want != nfds) {
                pyrt_fail_errno(&r.error, EPROTO, "zygote", "fds missing");
            } else {
                spec->cgroup_fd = q.has_cgroup_fd ? fds[0] : -1;
                spec->cgroup_procs_fds = fds + (q.has_cgroup_fd ? 1 : 0);
                spec->ncgroup_procs = q.ncgroup_procs;
                struct pyrt_parked pk;
                if (pyrt_spawn_parked(spec, &pk, &r.error) == 0) {
                    r.op = ZY_PARKED;
                    r.pid = pk.pid;
                    r.usage = pk.usage;
                    /* its mount namespace: held by the pool until the run is over, so
                     * that unmounting it is not part of the container's exit */
                    char path[64] = "/proc/";
                    char num[24];
                    pyrt_strlcpy(path + 6, pyrt_itoa(pk.pid, num), sizeof path - 6);
                    size_t l = strlen(path);
                    pyrt_strlcpy(path + l, "/ns/mnt", sizeof path - l);
                    int mntns = open(path, O_RDONLY | O_CLOEXEC);
                    int out[4] = {pk.pidfd, pk.sock, pk.errfd, mntns};
                    int rc = pyrt_send_fds(ctl, &r, sizeof r, out, mntns >= 0 ? 4 : 3);
                    for (int i = 0; i < 4; i++)
                        if (out[i] >= 0)
                            close(out[i]);
                    if (rc < 0) { /* the pool is gone: its child too, once its socket closes */
                        for (size_t i = 0; i < nfds; i++)
                            close(fds[i]);
                        return 1;
                    }
                    r.op = 0;
                } else {
                    r.pid = pk.pid;
                }
                spec->cgroup_fd = -1;
                spec->cgroup_procs_fds = NULL;
                spec->ncgroup_procs = 0;
            }
        } else {
            r.op = ZY_FAILED;
            pyrt_fail_errno(&r.error, EPROTO, "zygote", "unknown request");
        }
        for (size_t i = 0; i < nfds; i++)
            close(fds[i]);
        if (r.op && pyrt_send_fds(ctl, &r, sizeof r, NULL, 0) < 0)
            return 1;
    }
}

int pyrt_zygote_send_spec(int ctl, const struct pyrt_spawn_spec *s, struct pyrt_error *e)
{
    memset(e, 0, sizeof *e);
    char *buf = malloc(ZY_SPEC_MAX);
    if (!buf)
        return pyrt_fail(e, "malloc", "spec");
    uint32_t op = ZY_SPEC;
    memcpy(buf, &op, sizeof op);
    memset(buf + sizeof op, 0, 8 - sizeof op);
    ssize_t n = pyrt_spec_pack(s, buf + 8, ZY_SPEC_MAX - 8, e);
    int rc = 0;
    if (n < 0)
        rc = -1;
    else if (pyrt_send_fds(ctl, buf, (size_t)n + 8, NULL, 0) < 0)
        rc = pyrt_fail(e, "send spec to zygote", "");
    free(buf);
    if (rc < 0)
        return -1;
    struct zy_reply r;
    int got[PYRT_MAX_PASSED_FDS];
    size_t ngot;
    ssize_t k = pyrt_recv_fds(ctl, &r, sizeof r, got, &ngot);
    for (size_t i = 0; i < ngot; i++)
        close(got[i]);
    if (k < 0)
        return pyrt_fail(e, "receive from zygote", "");
    if (k != (ssize_t)sizeof r)
        return pyrt_fail_errno(e, k == 0 ? EPIPE : EPROTO, "receive from zygote", k == 0 ? "zygote exited" : "");
    if (r.op != ZY_SPEC) {
        *e = r.error;
        e->op[sizeof e->op - 1] = '\0';
        e->path[sizeof e->path - 1] = '\0';
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
    struct zy_request q = {ZY_SPAWN, (uint32_t)nprocs, cgroup_fd >= 0};
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
    ssize_t n = pyrt_recv_fds(ctl, &r, sizeof r, got, &ngot);
    if (n < 0)
        return pyrt_fail(e, "receive from zygote", "");
    if (n != (ssize_t)sizeof r || (r.op == ZY_PARKED && ngot != 3 && ngot != 4)) {
        for (size_t i = 0; i < ngot; i++)
            close(got[i]);
        return pyrt_fail_errno(e, n == 0 ? EPIPE : EPROTO, "receive from zygote", n == 0 ? "zygote exited" : "");
    }
    if (r.op != ZY_PARKED) {
        for (size_t i = 0; i < ngot; i++)
            close(got[i]);
        if (r.pid > 0) /* a child that failed: ours to reap (CLONE_PARENT) */
            while (waitpid(r.pid, NULL, __WALL) < 0 && errno == EINTR)
                ;
        *e = r.error;
        e->op[sizeof e->op - 1] = '\0';
        e->path[sizeof e->path - 1] = '\0';
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
    out->usage = r.usage;
    return 0;
}
