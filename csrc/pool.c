/* Parked containers: the child's wait for its command (between setup and exec,
 * so async-signal-safe: no allocation, no stdio, no locks), the parent's
 * hand-over, and the I/O loop of a command. See pool.h. */
#include "pool.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "childmsg.h"
#include "err.h"
#include "fdio.h"
#include "fdpass.h"
#include "specpack.h"
#include "syscalls.h"
#include "tail.h"

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


int pyrt_park(const struct pyrt_spawn_spec *s, int errfd, int sock, int keep_fd, pyrt_park_finish_fn finish,
              struct pyrt_error *e)
{
    /* The spawn-time stdio goes on 0-2 now (the rest is closed next); the
     * command's own stdio replaces it. */
    if (pyrt_setup_stdio(s->stdio, e) < 0)
        return -1;
    /* A parked child must not hold copies of other children's pipes and sockets
     * (it would keep their parent from seeing EOF) while it waits. */
    if (pyrt_close_fds_except(errfd, sock, keep_fd, -1, e) < 0)
        return -1;

    struct rusage usage;
    if (getrusage(RUSAGE_SELF, &usage) < 0)
        return pyrt_fail(e, "getrusage", "");
    if (pyrt_child_parked(errfd, &usage) < 0)
        return pyrt_fail(e, "report parked", "");

    /* One datagram: the header and the strings; the fds ride along. */
    char buf[PYRT_PARK_MSG_MAX] __attribute__((aligned(8)));
    int fds[PYRT_MAX_PASSED_FDS];
    size_t nfds = 0;
    ssize_t n = pyrt_recv_fds(sock, buf, sizeof buf, fds, &nfds);
    if (n < 0)
        return errno == EMSGSIZE ? pyrt_fail_errno(e, E2BIG, "command", "too large for a parked container")
                                 : pyrt_fail(e, "wait for command", "");
    if (n == 0) /* the pool went away: nothing to run */
        return pyrt_fail_errno(e, ECANCELED, "wait for command", "the parent closed the park socket");
    close(sock);

    struct pyrt_park_header h;
    if ((size_t)n < sizeof h)
        return pyrt_fail_errno(e, EPROTO, "command", "short message");
    memcpy(&h, buf, sizeof h);
    if (h.magic != PYRT_PARK_MAGIC || h.nfds != nfds || h.argc == 0 ||
        (size_t)h.argc + h.envc > PYRT_PARK_MAX_STRINGS)
        return pyrt_fail_errno(e, EPROTO, "command", "malformed message");
    for (int i = 0; i < 3; i++)
        if (h.stdio[i] >= (int32_t)nfds)
            return pyrt_fail_errno(e, EPROTO, "command", "bad stdio index");

    /* The strings, each checked to end inside the message, laid out as
     * argv..., NULL, env..., NULL. */
    const char *vec[PYRT_PARK_MAX_STRINGS + 2];
    const char *p = buf + sizeof h, *end = buf + n, *path = NULL, *cwd = NULL;
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

    struct pyrt_spawn_spec run = *s;
    run.argv = vec;
    run.envp = envp;
    if (path)
        run.path = path;
    if (cwd)
        run.cwd = cwd;
    for (int i = 0; i < 3; i++)
        run.stdio[i] = h.stdio[i] >= 0 ? fds[h.stdio[i]] : -1;
    return finish(&run, errfd, keep_fd, e);
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

/* -- the parent: a command's I/O --------------------------------------------- */

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void close_fd(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

/* Read what is there; 0 at EOF (fd closed), 1 when more may come, -1 on error. */
static int drain(int *fd, struct pyrt_buf *b)
{
    for (;;) {
        if (b->cap - b->len < 16384) {
            size_t cap = b->cap ? b->cap * 2 : 65536;
            char *d = realloc(b->data, cap);
            if (!d)
                return -1;
            b->data = d;
            b->cap = cap;
        }
        ssize_t n = read(*fd, b->data + b->len, b->cap - b->len);
        if (n > 0) {
            b->len += (size_t)n;
            continue;
        }
        if (n == 0) {
            close_fd(fd);
            return 0;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN)
            return 1;
        return -1;
    }
}

static int reap(struct pyrt_io *io)
{
    siginfo_t info;
    memset(&info, 0, sizeof info);
    if (syscall(SYS_waitid, P_PIDFD, io->pidfd, &info, WEXITED | WNOHANG, &io->usage) < 0)
        return -1;
    if (info.si_pid == 0)
        return 0;
    switch (info.si_code) {
    case CLD_EXITED:
        io->status = (info.si_status & 0xff) << 8;
        break;
    case CLD_DUMPED:
        io->status = (info.si_status & 0x7f) | 0x80;
        break;
    default:
        io->status = info.si_status & 0x7f;
        break;
    }
    io->exited = 1;
    return 1;
}

int pyrt_io_run(struct pyrt_io *io, int timeout_ms)
{
    long long deadline = timeout_ms >= 0 ? now_ms() + timeout_ms : -1;
    for (int *fd = &io->in_fd; fd <= &io->err_fd; fd++)
        if (*fd >= 0) {
            int fl = fcntl(*fd, F_GETFL);
            if (fl < 0 || (!(fl & O_NONBLOCK) && fcntl(*fd, F_SETFL, fl | O_NONBLOCK) < 0))
                return -1;
        }
    if (io->in_fd >= 0 && io->input_off >= io->input_len)
        close_fd(&io->in_fd);
    for (;;) {
        if (io->exited && io->in_fd < 0 && io->out_fd < 0 && io->err_fd < 0)
            return 1;
        struct pollfd p[4];
        int np = 0, ipid = -1, iin = -1, iout = -1, ierr = -1;
        if (!io->exited) {
            ipid = np;
            p[np++] = (struct pollfd){io->pidfd, POLLIN, 0};
        }
        if (io->in_fd >= 0) {
            iin = np;
            p[np++] = (struct pollfd){io->in_fd, POLLOUT, 0};
        }
        if (io->out_fd >= 0) {
            iout = np;
            p[np++] = (struct pollfd){io->out_fd, POLLIN, 0};
        }
        if (io->err_fd >= 0) {
            ierr = np;
            p[np++] = (struct pollfd){io->err_fd, POLLIN, 0};
        }
        int wait = -1;
        if (deadline >= 0) {
            long long left = deadline - now_ms();
            wait = left > 0 ? (int)left : 0;
        }
        int n = poll(p, (nfds_t)np, wait);
        if (n < 0)
            return -1;
        if (n == 0)
            return 0;
        if (iout >= 0 && p[iout].revents && drain(&io->out_fd, &io->out) < 0)
            return -1;
        if (ierr >= 0 && p[ierr].revents && drain(&io->err_fd, &io->err) < 0)
            return -1;
        if (iin >= 0 && p[iin].revents) {
            if (p[iin].revents & (POLLERR | POLLHUP)) {
                close_fd(&io->in_fd); /* the reader is gone: the rest is dropped */
            } else {
                size_t left = io->input_len - io->input_off;
                ssize_t w = write(io->in_fd, io->input + io->input_off, left > 65536 ? 65536 : left);
                if (w > 0)
                    io->input_off += (size_t)w;
                else if (w < 0 && errno == EPIPE)
                    io->input_off = io->input_len;
                else if (w < 0 && errno != EAGAIN && errno != EINTR)
                    return -1;
                if (io->input_off >= io->input_len)
                    close_fd(&io->in_fd);
            }
        }
        if (ipid >= 0 && p[ipid].revents && reap(io) < 0)
            return -1;
    }
}

void pyrt_io_release(struct pyrt_io *io)
{
    close_fd(&io->in_fd);
    close_fd(&io->out_fd);
    close_fd(&io->err_fd);
    free(io->out.data);
    free(io->err.data);
    io->out.data = io->err.data = NULL;
    io->out.len = io->out.cap = io->err.len = io->err.cap = 0;
}

/* -- the zygote ------------------------------------------------------------- */

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
