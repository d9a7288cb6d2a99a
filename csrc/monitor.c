/* The per-container monitor (see monitor.h). Two halves:
 *  - pyrt_monitor_start runs in the caller (a Python process): it serializes the
 *    spec to a memfd, forks a child that only moves fds and execs pyrt-monitor
 *    (nothing between fork and exec takes a lock or allocates), and waits for the
 *    monitor's report;
 *  - pyrt_monitor_main is the pyrt-monitor program: a plain, single-threaded C
 *    process, free to use libc. */
#include "monitor.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "err.h"
#include "fdpass.h"
#include "portfwd.h"
#include "identity.h"
#include "specpack.h"
#include "syscalls.h"

extern char **environ;

#define SPEC_MAGIC "PYRTMON2"

/* What the monitor (or the child that execs it) tells the caller. */
struct report {
    int32_t ok;
    int32_t container_pid;
    int32_t monitor_pid;
    int32_t pad;
    struct pyrt_error e;
};

/* -- the serialized spec -------------------------------------------------------
 * A flat little-endian-host stream of u64s and strings (u64 length with the NUL,
 * 0 for NULL, then the bytes); string vectors as a u64 count (UINT64_MAX for
 * NULL) then the strings. Written and read on the same machine by the same build.
 * The spec itself is in it as pyrt_spec_pack (specpack.h) makes it. */

struct wbuf {
    char *p;
    size_t len, cap;
    int failed;
};

static void wput(struct wbuf *b, const void *d, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) {
            b->failed = 1;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, d, n);
    b->len += n;
}

static void wu64(struct wbuf *b, uint64_t v)
{
    wput(b, &v, sizeof v);
}

static void wi64(struct wbuf *b, long long v)
{
    wu64(b, (uint64_t)(int64_t)v);
}

static void wstr(struct wbuf *b, const char *s)
{
    if (!s) {
        wu64(b, 0);
        return;
    }
    size_t n = strlen(s) + 1;
    wu64(b, n);
    wput(b, s, n);
}

static void wstrn(struct wbuf *b, const char *const *v, size_t n)
{
    wu64(b, n);
    for (size_t i = 0; i < n; i++)
        wstr(b, v[i] ? v[i] : "");
}

static void wstrv(struct wbuf *b, const char *const *v)
{
    if (!v) {
        wu64(b, UINT64_MAX);
        return;
    }
    size_t n = 0;
    while (v[n])
        n++;
    wstrn(b, v, n);
}

struct rbuf {
    const char *p;
    size_t left;
    int bad;
};

static uint64_t ru64(struct rbuf *r)
{
    uint64_t v = 0;
    if (r->bad || r->left < sizeof v) {
        r->bad = 1;
        return 0;
    }
    memcpy(&v, r->p, sizeof v);
    r->p += sizeof v;
    r->left -= sizeof v;
    return v;
}

static long long ri64(struct rbuf *r)
{
    return (long long)(int64_t)ru64(r);
}

static const char *rstr(struct rbuf *r)
{
    uint64_t n = ru64(r);
    if (r->bad || n == 0)
        return NULL;
    if (n > r->left || r->p[n - 1] != '\0') {
        r->bad = 1;
        return NULL;
    }
    const char *s = r->p;
    r->p += n;
    r->left -= n;
    return s;
}

/* A NULL-terminated vector (NULL for a NULL one); *count gets its length. */
static const char **rstrv(struct rbuf *r, size_t *count)
{
    uint64_t n = ru64(r);
    if (count)
        *count = 0;
    if (r->bad || n == UINT64_MAX)
        return NULL;
    if (n > r->left) {
        r->bad = 1;
        return NULL;
    }
    const char **v = calloc(n + 1, sizeof *v);
    if (!v) {
        r->bad = 1;
        return NULL;
    }
    for (uint64_t i = 0; i < n; i++)
        if (!(v[i] = rstr(r)))
            r->bad = 1;
    if (count)
        *count = n;
    return v;
}

static void *rarray(struct rbuf *r, uint64_t n, size_t size)
{
    if (r->bad || n > r->left) {
        r->bad = 1;
        return NULL;
    }
    void *p = calloc(n + 1, size);
    if (!p)
        r->bad = 1;
    return p;
}

/* Where the monitor finds the fds it inherited (numbers valid in the monitor). */
struct monitor_cfg {
    const char *log_path;
    const char *exit_path;
    const char *oom_path;
    long long oom_start;
    const char **exit_argv;
    int stdin_fd;
    int tty;
    const char *attach_path;
    const char *ports;
    long long log_max_size;
    int log_max_files;
    int restart, restart_max;
    const char *run_path, *stop_path;
};

/* The stream: SPEC_MAGIC, the spec as pyrt_spec_pack makes it (a u64 length,
 * then the bytes, 8-aligned in the file), then what pack leaves out: the cgroup
 * fds (numbers valid in the monitor), then the monitor's own settings. */
static int serialize(struct wbuf *b, const struct pyrt_spawn_spec *s, int cgroup_fd, const int *procs,
                     int netns_fd, const struct pyrt_monitor_spec *m, int stdin_fd, struct pyrt_error *e)
{
    if (s->oci) /* only the OCI runtime sets it, and it runs no monitor */
        return pyrt_fail_errno(e, EINVAL, "start monitor", "OCI options cannot go through the monitor");
    char *packed = NULL;
    ssize_t n = -1;
    for (size_t cap = 64 * 1024; n < 0 && cap <= ((size_t)1 << 30); cap *= 2) {
        char *q = realloc(packed, cap);
        if (!q) {
            free(packed);
            return pyrt_fail_errno(e, ENOMEM, "start monitor", "");
        }
        packed = q;
        n = pyrt_spec_pack(s, packed, cap, e);
        if (n < 0 && e->err != E2BIG) {
            free(packed);
            return -1;
        }
    }
    if (n < 0) {
        free(packed);
        return -1;
    }
    wput(b, SPEC_MAGIC, 8);
    wu64(b, (uint64_t)n);
    wput(b, packed, (size_t)n);
    free(packed);

    wi64(b, cgroup_fd);
    wu64(b, s->ncgroup_procs);
    for (size_t i = 0; i < s->ncgroup_procs; i++)
        wi64(b, procs[i]);
    wi64(b, netns_fd);

    wstr(b, m->log_path);
    wstr(b, m->exit_path);
    wstr(b, m->oom_path);
    wi64(b, m->oom_start);
    wstrv(b, m->exit_argv);
    wi64(b, stdin_fd);
    wi64(b, m->tty);
    wstr(b, m->attach_path);
    wstr(b, m->ports);
    wi64(b, m->log_max_size);
    wi64(b, m->log_max_files);
    wi64(b, m->restart);
    wi64(b, m->restart_max);
    wstr(b, m->run_path);
    wstr(b, m->stop_path);
    if (b->failed)
        return pyrt_fail_errno(e, ENOMEM, "start monitor", "");
    return 0;
}

/* data: the whole stream, 8-aligned (malloc'd); the spec and cfg point into it. */
static int deserialize(char *data, size_t len, struct pyrt_spawn_spec **out, struct monitor_cfg *c)
{
    memset(c, 0, sizeof *c);
    struct rbuf r = {data, len, 0};
    if (r.left < 8 || memcmp(r.p, SPEC_MAGIC, 8) != 0)
        return -1;
    r.p += 8;
    r.left -= 8;
    uint64_t n = ru64(&r);
    if (r.bad || n > r.left)
        return -1;
    struct pyrt_spawn_spec *s;
    if (pyrt_spec_unpack(data + (r.p - data), (size_t)n, &s) < 0)
        return -1;
    r.p += n;
    r.left -= n;
    s->stdio[0] = s->stdio[1] = s->stdio[2] = -1;

    s->cgroup_fd = (int)ri64(&r);
    s->ncgroup_procs = ru64(&r);
    int *procs = rarray(&r, s->ncgroup_procs, sizeof *procs);
    for (size_t i = 0; procs && i < s->ncgroup_procs; i++)
        procs[i] = (int)ri64(&r);
    s->cgroup_procs_fds = procs;
    s->netns_fd = (int)ri64(&r);

    c->log_path = rstr(&r);
    c->exit_path = rstr(&r);
    c->oom_path = rstr(&r);
    c->oom_start = ri64(&r);
    c->exit_argv = rstrv(&r, NULL);
    c->stdin_fd = (int)ri64(&r);
    c->tty = (int)ri64(&r);
    c->attach_path = rstr(&r);
    c->ports = rstr(&r);
    c->log_max_size = ri64(&r);
    c->log_max_files = (int)ri64(&r);
    c->restart = (int)ri64(&r);
    c->restart_max = (int)ri64(&r);
    c->run_path = rstr(&r);
    c->stop_path = rstr(&r);
    if (r.bad || !s->argv[0] || !c->log_path || !c->exit_path)
        return -1;
    *out = s;
    return 0;
}

/* -- the caller's side --------------------------------------------------------- */

/* fd moved to a number >= 3 (close-on-exec), the original closed. */
static int move_high(int fd)
{
    if (fd < 0 || fd >= 3)
        return fd;
    int n = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    int err = errno;
    close(fd);
    errno = err;
    return n;
}

static void close_fds(int *fds, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (fds[i] >= 0) {
            close(fds[i]);
            fds[i] = -1;
        }
}

int pyrt_monitor_start(const struct pyrt_spawn_spec *spec, const struct pyrt_monitor_spec *m,
                       pid_t *container_pid, pid_t *monitor_pid, struct pyrt_error *e)
{
    memset(e, 0, sizeof *e);
    if (!m->monitor_path || !*m->monitor_path)
        return pyrt_fail_errno(e, EINVAL, "start monitor", "no pyrt-monitor program given");
    if (!m->log_path || m->log_path[0] != '/')
        return pyrt_fail_errno(e, EINVAL, "log path (must be absolute)", m->log_path);
    if (!m->exit_path || m->exit_path[0] != '/')
        return pyrt_fail_errno(e, EINVAL, "exit path (must be absolute)", m->exit_path);
    if (m->oom_path && m->oom_path[0] != '/')
        return pyrt_fail_errno(e, EINVAL, "oom path (must be absolute)", m->oom_path);
    if (!spec->argv || !spec->argv[0] || !spec->envp)
        return pyrt_fail_errno(e, EINVAL, "start monitor", "no command");

    /* Every fd the monitor inherits, duplicated to numbers >= 3 (0-2 become
     * /dev/null in the monitor): memfd, report pipe, cgroup fds, stdin. */
    size_t nkeep = 0, cap = 5 + spec->ncgroup_procs;
    int *keep = malloc(cap * sizeof *keep);
    int *procs = malloc((spec->ncgroup_procs + 1) * sizeof *procs);
    struct wbuf b = {NULL, 0, 0, 0};
    int rp[2] = {-1, -1};
    int rc = -1;
    if (!keep || !procs) {
        pyrt_fail_errno(e, ENOMEM, "start monitor", "");
        goto out;
    }
    int cgroup_fd = -1, stdin_fd = -1, netns_fd = -1;
    if (spec->cgroup_fd >= 0) {
        if ((cgroup_fd = fcntl(spec->cgroup_fd, F_DUPFD_CLOEXEC, 3)) < 0) {
            pyrt_fail(e, "dup", "cgroup directory");
            goto out;
        }
        keep[nkeep++] = cgroup_fd;
    }
    for (size_t i = 0; i < spec->ncgroup_procs; i++) {
        if ((procs[i] = fcntl(spec->cgroup_procs_fds[i], F_DUPFD_CLOEXEC, 3)) < 0) {
            pyrt_fail(e, "dup", "cgroup.procs");
            goto out;
        }
        keep[nkeep++] = procs[i];
    }
    if (spec->netns_fd >= 0) {
        if ((netns_fd = fcntl(spec->netns_fd, F_DUPFD_CLOEXEC, 3)) < 0) {
            pyrt_fail(e, "dup", "network namespace");
            goto out;
        }
        keep[nkeep++] = netns_fd;
    }
    if (m->stdin_fd >= 0) {
        if ((stdin_fd = fcntl(m->stdin_fd, F_DUPFD_CLOEXEC, 3)) < 0) {
            pyrt_fail(e, "dup", "stdin");
            goto out;
        }
        keep[nkeep++] = stdin_fd;
    }
    if (pipe2(rp, O_CLOEXEC) < 0) {
        pyrt_fail(e, "pipe", "");
        goto out;
    }
    rp[0] = move_high(rp[0]);
    rp[1] = move_high(rp[1]);
    if (rp[1] >= 0)
        keep[nkeep++] = rp[1]; /* closed with the others */
    if (rp[0] < 0 || rp[1] < 0) {
        pyrt_fail(e, "dup", "pipe");
        goto out;
    }
    int memfd = move_high(memfd_create("pyrt-monitor-spec", MFD_CLOEXEC));
    if (memfd < 0) {
        pyrt_fail(e, "memfd_create", "");
        goto out;
    }
    keep[nkeep++] = memfd;
    if (serialize(&b, spec, cgroup_fd, procs, netns_fd, m, stdin_fd, e) < 0)
        goto out;
    if (pyrt_write_all(memfd, b.p, b.len) < 0) {
        pyrt_fail(e, "write", "monitor spec");
        goto out;
    }

    char memfd_s[24], report_s[24];
    char *const argv[] = {"pyrt-monitor", pyrt_itoa(memfd, memfd_s), pyrt_itoa(rp[1], report_s), NULL};

    /* A plain fork (no atfork handlers) with every signal blocked: the child runs
     * no handler and stays blocked until the monitor sets its own mask. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    struct pyrt_clone_args ca;
    memset(&ca, 0, sizeof ca);
    ca.exit_signal = SIGCHLD;
    pid_t child = (pid_t)pyrt_clone3(&ca, sizeof ca);
    if (child == 0) {
        struct report rec;
        memset(&rec, 0, sizeof rec);
        if (pyrt_close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) < 0) {
            pyrt_fail(&rec.e, "close_range", "");
            goto child_fail;
        }
        for (size_t i = 0; i < nkeep; i++)
            if (fcntl(keep[i], F_SETFD, 0) < 0) {
                pyrt_fail(&rec.e, "fcntl", "monitor fds");
                goto child_fail;
            }
        int null = open("/dev/null", O_RDWR);
        if (null < 0) {
            pyrt_fail(&rec.e, "open", "/dev/null");
            goto child_fail;
        }
        for (int i = 0; i < 3; i++)
            if (null != i && dup2(null, i) < 0) {
                pyrt_fail(&rec.e, "dup2", "/dev/null");
                goto child_fail;
            }
        if (null > 2)
            close(null);
        if (chdir("/") < 0) { /* do not pin the caller's working directory */
            pyrt_fail(&rec.e, "chdir", "/");
            goto child_fail;
        }
        execve(m->monitor_path, argv, environ);
        pyrt_fail(&rec.e, "exec", m->monitor_path);
    child_fail:
        pyrt_write_all(rp[1], &rec, sizeof rec);
        _exit(127);
    }
    int clone_errno = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    close_fds(keep, nkeep); /* rp[1] included: EOF once the monitor is done with it */
    nkeep = 0;
    if (child < 0) {
        pyrt_fail_errno(e, clone_errno, "fork", "monitor");
        goto out;
    }

    struct report rec;
    ssize_t got = pyrt_read_full(rp[0], &rec, sizeof rec);
    int read_errno = errno;
    int status = 0;
    while (waitpid(child, &status, __WALL) < 0 && errno == EINTR)
        ;
    if (got == (ssize_t)sizeof rec) {
        if (rec.ok) {
            *container_pid = rec.container_pid;
            *monitor_pid = rec.monitor_pid;
            rc = 0;
        } else {
            *e = rec.e;
            e->op[sizeof e->op - 1] = '\0';
            e->path[sizeof e->path - 1] = '\0';
        }
    } else if (got < 0) {
        pyrt_fail_errno(e, read_errno, "read monitor report", m->monitor_path);
    } else {
        pyrt_fail_errno(e, EPIPE, "start monitor (no report)", m->monitor_path);
    }

out:
    if (keep)
        close_fds(keep, nkeep);
    if (rp[0] >= 0)
        close(rp[0]);
    free(keep);
    free(procs);
    free(b.p);
    return rc;
}

/* -- the monitor program --------------------------------------------------------- */

#define LINE_BUF 8192         /* longest line written as one record */
#define OUT_BUF (4 * LINE_BUF) /* records collected before one write */

struct stream {
    int fd;
    const char *name;
    size_t len;
    char buf[LINE_BUF];
};

static struct stream streams[2];
static char outbuf[OUT_BUF];
static size_t outlen;
static int logfd = -1;
static const char *log_path;
static long long log_size, log_max_size;
static int log_max_files = 1;

/* The log as docker's json-file driver rotates it: LOG becomes LOG.1, LOG.1 LOG.2,
 * ... and the oldest beyond max_files goes; a fresh LOG takes the new records. */
static void rotate(void)
{
    char from[4096], to[4096];
    for (int i = log_max_files - 1; i >= 1; i--) {
        if (i == 1)
            snprintf(from, sizeof from, "%s", log_path);
        else
            snprintf(from, sizeof from, "%s.%d", log_path, i - 1);
        snprintf(to, sizeof to, "%s.%d", log_path, i);
        rename(from, to); /* a missing one is fine */
    }
    int fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOCTTY, 0600);
    if (fd >= 0) {
        close(logfd);
        logfd = fd;
        log_size = 0;
    }
}

static void out_flush(void)
{
    if (!outlen)
        return;
    if (log_max_size > 0 && log_size > 0 && log_size + (long long)outlen > log_max_size)
        rotate();
    /* A log that cannot be written (disk full) loses lines; the container goes on. */
    if (pyrt_write_all(logfd, outbuf, outlen) == 0)
        log_size += (long long)outlen;
    outlen = 0;
}

static size_t timestamp(char *buf, size_t cap)
{
    struct timespec ts;
    struct tm tm;
    if (clock_gettime(CLOCK_REALTIME, &ts) < 0 || !gmtime_r(&ts.tv_sec, &tm))
        memset(&tm, 0, sizeof tm), ts.tv_nsec = 0;
    int n = snprintf(buf, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%09ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (long)ts.tv_nsec);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

/* One CRI log record: "<time> <stream> <F|P> <text>\n". */
static void emit(const char *ts, size_t tslen, const char *name, char tag, const char *data, size_t n)
{
    size_t namelen = strlen(name);
    size_t need = tslen + 1 + namelen + 3 + n + 1;
    if (outlen + need > sizeof outbuf)
        out_flush();
    char *p = outbuf + outlen;
    memcpy(p, ts, tslen);
    p += tslen;
    *p++ = ' ';
    memcpy(p, name, namelen);
    p += namelen;
    *p++ = ' ';
    *p++ = tag;
    *p++ = ' ';
    memcpy(p, data, n);
    p += n;
    *p++ = '\n';
    outlen += need;
}

/* Records for the complete lines in the buffer; a full buffer without a newline
 * goes out as a partial record. The rest waits for more data. */
static void lines(struct stream *s, int final)
{
    char ts[48];
    size_t tslen = timestamp(ts, sizeof ts);
    size_t start = 0;
    for (;;) {
        char *nl = memchr(s->buf + start, '\n', s->len - start);
        if (!nl)
            break;
        size_t n = (size_t)(nl - (s->buf + start));
        emit(ts, tslen, s->name, 'F', s->buf + start, n);
        start += n + 1;
    }
    if (start < s->len && (final || (start == 0 && s->len == sizeof s->buf))) {
        emit(ts, tslen, s->name, 'P', s->buf + start, s->len - start);
        start = s->len;
    }
    memmove(s->buf, s->buf + start, s->len - start);
    s->len -= start;
}

/* -- attached clients (monitor.h) -- */

#define MAX_CLIENTS 8

static int clients[MAX_CLIENTS];
static int nclients;
static int master_fd = -1; /* the terminal's master, or -1 */

static int attach_dirfd = -1;     /* the socket's directory */
static const char *attach_name;   /* its name there */

/* A socket path may be longer than sun_path holds: it is bound through an fd of
 * its directory (/proc/self/fd/N/NAME). */
static int listen_attach(const char *path, struct pyrt_error *e)
{
    const char *slash = strrchr(path, '/');
    if (!slash || !slash[1])
        return pyrt_fail_errno(e, EINVAL, "attach socket", path);
    char dir[4096];
    size_t dlen = (size_t)(slash - path);
    if (dlen >= sizeof dir)
        return pyrt_fail_errno(e, ENAMETOOLONG, "attach socket", path);
    memcpy(dir, path, dlen);
    dir[dlen ? dlen : 1] = '\0';
    if (!dlen)
        dir[0] = '/';
    attach_dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (attach_dirfd < 0)
        return pyrt_fail(e, "open", dir);
    attach_name = slash + 1;
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    int len = snprintf(sa.sun_path, sizeof sa.sun_path, "/proc/self/fd/%d/%s", attach_dirfd, attach_name);
    if (len < 0 || (size_t)len >= sizeof sa.sun_path)
        return pyrt_fail_errno(e, ENAMETOOLONG, "attach socket", path);
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return pyrt_fail(e, "socket", "attach");
    unlinkat(attach_dirfd, attach_name, 0); /* a stale one from an earlier run */
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, MAX_CLIENTS) < 0) {
        int err = errno;
        close(fd);
        return pyrt_fail_errno(e, err, "listen", path);
    }
    return fd;
}

static void unlink_attach(void)
{
    if (attach_dirfd >= 0) {
        unlinkat(attach_dirfd, attach_name, 0);
        close(attach_dirfd);
        attach_dirfd = -1;
    }
}

static void accept_client(int lfd)
{
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0)
        return;
    if (nclients == MAX_CLIENTS) {
        close(fd);
        return;
    }
    char kind = master_fd >= 0 ? 't' : 'p';
    if (pyrt_send_fds(fd, &kind, 1, &master_fd, master_fd >= 0 ? 1 : 0) < 0) {
        close(fd);
        return;
    }
    clients[nclients++] = fd;
}

static void drop_client(int i)
{
    close(clients[i]);
    clients[i] = clients[--nclients];
}

/* Output to every client; one that cannot keep up (a full socket) is dropped. */
static void broadcast(char stream, const char *data, size_t n)
{
    char msg[1 + LINE_BUF];
    msg[0] = stream;
    memcpy(msg + 1, data, n);
    for (int i = nclients - 1; i >= 0; i--)
        if (send(clients[i], msg, n + 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
            drop_client(i);
}

/* The master fd the container sent over the console socket, or -1. */
static int recv_master(int sock)
{
    char name[64];
    int fds[PYRT_MAX_PASSED_FDS];
    size_t nfds = 0;
    if (pyrt_recv_fds(sock, name, sizeof name, fds, &nfds) < 0 || nfds == 0)
        return -1;
    for (size_t i = 1; i < nfds; i++)
        close(fds[i]);
    return fds[0];
}

/* Read what is there (everything, until EAGAIN, when draining). */
static void pump(struct stream *s, int drain)
{
    while (s->fd >= 0) {
        ssize_t n = read(s->fd, s->buf + s->len, sizeof s->buf - s->len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) { /* EOF (or a broken pipe, or EIO: a terminal whose container ended) */
            lines(s, 1);
            if (s->fd == master_fd)
                master_fd = -1;
            close(s->fd);
            s->fd = -1;
            return;
        }
        if (nclients)
            broadcast(s == &streams[0] ? '1' : '2', s->buf + s->len, (size_t)n);
        s->len += (size_t)n;
        lines(s, 0);
        if (!drain)
            return;
    }
}

static long long read_oom_kills(const char *path)
{
    if (!path)
        return -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    char buf[2048];
    ssize_t n = pyrt_read_full(fd, buf, sizeof buf - 1);
    close(fd);
    if (n < 0)
        return -1;
    buf[n] = '\0';
    for (char *p = buf; p && *p;) {
        if (strncmp(p, "oom_kill ", 9) == 0)
            return strtoll(p + 9, NULL, 10);
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    return -1;
}

static void report(int fd, pid_t cpid, const struct pyrt_error *e)
{
    struct report rec;
    memset(&rec, 0, sizeof rec);
    rec.ok = e == NULL;
    rec.container_pid = cpid;
    rec.monitor_pid = getpid();
    if (e)
        rec.e = *e;
    if (pyrt_write_all(fd, &rec, sizeof rec) < 0) {
        /* the caller is gone: nobody to tell */
    }
}

/* path's content replaced at once (a temp file renamed over it). */
static int write_atomically(const char *path, const char *data, size_t n)
{
    char tmp[PATH_MAX];
    int t = snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (t <= 0 || (size_t)t >= sizeof tmp)
        return -1;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0)
        return -1;
    int rc = pyrt_write_all(fd, data, n);
    if (close(fd) < 0)
        rc = -1;
    if (rc == 0 && rename(tmp, path) < 0)
        rc = -1;
    if (rc < 0)
        unlink(tmp);
    return rc;
}

/* Field 22 of /proc/PID/stat (clock ticks after boot), as pyrt's Python reads it. */
static unsigned long long proc_start_time(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = pyrt_read_full(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    for (int field = 2; p && field < 22; field++)
        p = strchr(p + 1, ' ');
    return p ? strtoull(p + 1, NULL, 10) : 0;
}

/* With a restart policy, where later `pyrt` processes find the current run. */
static void write_run_record(const char *path, pid_t cpid, int restarts)
{
    char json[160];
    int n = snprintf(json, sizeof json, "{\"Pid\": %d, \"StartTime\": %llu, \"RestartCount\": %d}\n",
                     (int)cpid, proc_start_time(cpid), restarts);
    if (path && n > 0 && (size_t)n < sizeof json)
        write_atomically(path, json, (size_t)n);
}

static int exit_code(const siginfo_t *info)
{
    return info->si_code == CLD_EXITED ? (info->si_status & 0xff) : 128 + (info->si_status & 0x7f);
}

static int write_exit_record(const char *path, pid_t cpid, const siginfo_t *info, const struct rusage *ru,
                             const struct timespec *finished, int oom)
{
    int code = 0, sig = 0, core = 0;
    switch (info->si_code) {
    case CLD_EXITED:
        code = info->si_status & 0xff;
        break;
    case CLD_DUMPED:
        core = 1;
        /* fall through */
    default:
        sig = info->si_status & 0x7f;
        code = 128 + sig;
        break;
    }
    char json[512];
    int n = snprintf(json, sizeof json,
                     "{\"Pid\": %d, \"ExitCode\": %d, \"Signal\": %d, \"CoreDumped\": %s, "
                     "\"OOMKilled\": %s, \"FinishedAt\": %lld.%09ld, \"UserTime\": %ld.%06ld, "
                     "\"SystemTime\": %ld.%06ld, \"MaxRSS\": %ld}\n",
                     (int)cpid, code, sig, core ? "true" : "false", oom ? "true" : "false",
                     (long long)finished->tv_sec, (long)finished->tv_nsec, (long)ru->ru_utime.tv_sec,
                     (long)ru->ru_utime.tv_usec, (long)ru->ru_stime.tv_sec, (long)ru->ru_stime.tv_usec,
                     (long)ru->ru_maxrss);
    if (n <= 0 || (size_t)n >= sizeof json)
        return -1;
    return write_atomically(path, json, (size_t)n);
}

/* Whether an ended run is started again: its policy, and no stop by hand. */
static int restart_wanted(const struct monitor_cfg *c, const siginfo_t *info, int restarts)
{
    if (c->restart == PYRT_RESTART_NO || (c->stop_path && access(c->stop_path, F_OK) == 0))
        return 0;
    if (c->restart == PYRT_RESTART_ON_FAILURE)
        return exit_code(info) != 0 && (c->restart_max <= 0 || restarts < c->restart_max);
    return 1;
}

/* docker's back-off between restarts: 100 ms, doubling, at most 1.6 s; cut short
 * (returning 0) when the container is stopped by hand meanwhile. */
static int back_off(const struct monitor_cfg *c, int restarts)
{
    for (int slice = 0; slice < (2 << (restarts < 4 ? restarts : 4)); slice++) {
        if (c->stop_path && access(c->stop_path, F_OK) == 0)
            return 0;
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return 1;
}

static int monitor(struct pyrt_spawn_spec *spec, struct monitor_cfg *c, int report_fd)
{
    struct pyrt_error err;
    memset(&err, 0, sizeof err);
    int outp[2] = {-1, -1}, errp[2] = {-1, -1}, console[2] = {-1, -1}, in = c->stdin_fd, lfd = -1;
    struct pyrt_portfwd *ports = NULL; /* bound before the start: a port in use fails it */
    /* with a restart policy the pipes and the cgroup fds serve every run */
    const int keep = c->restart != PYRT_RESTART_NO;
    logfd = open(c->log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0600);
    if (logfd < 0) {
        pyrt_fail(&err, "open log", c->log_path);
        goto fail;
    }
    struct stat lst;
    log_path = c->log_path;
    log_size = fstat(logfd, &lst) == 0 ? (long long)lst.st_size : 0;
    log_max_size = c->log_max_size;
    log_max_files = c->log_max_files >= 1 ? c->log_max_files : 1;
    long long oom_start = c->oom_start >= 0 ? c->oom_start : read_oom_kills(c->oom_path);
    if (c->attach_path && (lfd = listen_attach(c->attach_path, &err)) < 0)
        goto fail;
    if (c->ports && c->ports[0] && !(ports = pyrt_portfwd_listen(c->ports, &err)))
        goto fail;
    if (!c->tty) {
        if (pipe2(outp, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0) {
            pyrt_fail(&err, "pipe", "stdout/stderr");
            goto fail;
        }
        if (in < 0 && (in = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0) {
            pyrt_fail(&err, "open", "/dev/null");
            goto fail;
        }
        spec->stdio[0] = in;
        spec->stdio[1] = outp[1];
        spec->stdio[2] = errp[1];
    }

    int restarts = 0, reaped = 0;
    pid_t cpid = 0;
    int pidfd = -1;
    siginfo_t info;
    struct rusage ru;
    memset(&info, 0, sizeof info);
    memset(&ru, 0, sizeof ru);
    struct timespec finished = {0, 0};
    for (;;) {
        if (c->tty) { /* the container makes its terminal and sends the master here */
            if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, console) < 0) {
                pyrt_fail(&err, "socketpair", "console");
                goto fail;
            }
            spec->console_fd = console[1];
        }
        int rc = pyrt_spawn(spec, &cpid, &pidfd, &err);
        int child_ends[] = {console[1], keep ? -1 : in, keep ? -1 : outp[1], keep ? -1 : errp[1]};
        close_fds(child_ends, 4);
        console[1] = -1;
        if (!keep) {
            if (spec->netns_fd >= 0)
                close(spec->netns_fd);
            if (spec->cgroup_fd >= 0)
                close(spec->cgroup_fd);
            for (size_t i = 0; i < spec->ncgroup_procs; i++)
                close(spec->cgroup_procs_fds[i]);
        }
        if (rc == 0 && c->tty && (master_fd = recv_master(console[0])) < 0) {
            pyrt_fail(&err, "receive the terminal of", "the container");
            pyrt_pidfd_send_signal(pidfd, SIGKILL, NULL, 0);
            rc = -1;
        }
        if (console[0] >= 0) {
            close(console[0]);
            console[0] = -1;
        }
        if (rc < 0 && restarts == 0) {
            int ours[] = {outp[0], errp[0], lfd, in, outp[1], errp[1]};
            close_fds(ours, 6);
            pyrt_portfwd_close(ports);
            unlink_attach();
            report(report_fd, 0, &err);
            return 1;
        }
        if (rc < 0)
            break; /* a restart that failed: the last run's end is the record */
        reaped = 0;
        if (ports)
            pyrt_portfwd_target(ports, pidfd);
        if (restarts == 0) {
            report(report_fd, cpid, NULL);
            close(report_fd);
        }
        if (keep)
            write_run_record(c->run_path, cpid, restarts);

        streams[0].fd = c->tty ? master_fd : outp[0];
        streams[0].name = "stdout";
        streams[1].fd = errp[0];
        streams[1].name = "stderr";
        for (int i = 0; i < 2; i++) {
            int fl = fcntl(streams[i].fd, F_GETFL);
            if (fl < 0 || fcntl(streams[i].fd, F_SETFL, fl | O_NONBLOCK) < 0) {
                /* blocking reads still work while the container runs; the final drain
                 * then stops at EOF */
            }
        }

        for (;;) {
            /* streams, the container, the attach socket, then the clients (whose only
             * message is their end) */
            struct pollfd p[4 + MAX_CLIENTS + PYRT_PORTFWD_MAX_POLL] = {
                {streams[0].fd, POLLIN, 0}, {streams[1].fd, POLLIN, 0}, {pidfd, POLLIN, 0}, {lfd, POLLIN, 0}};
            int nc = nclients;
            for (int i = 0; i < nc; i++)
                p[4 + i] = (struct pollfd){clients[i], POLLIN, 0};
            size_t np = ports ? pyrt_portfwd_poll(ports, p + 4 + nc) : 0;
            int n = poll(p, (nfds_t)(4 + nc) + np, -1);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                break; /* cannot happen with valid fds; fall through to the wait */
            }
            for (int i = nc - 1; i >= 0; i--)
                if (p[4 + i].revents)
                    drop_client(i);
            for (int i = 0; i < 2; i++)
                if (p[i].revents)
                    pump(&streams[i], 0);
            out_flush();
            if (p[3].revents)
                accept_client(lfd);
            if (np)
                pyrt_portfwd_handle(ports, p + 4 + nc, np);
            if (p[2].revents)
                break;
        }
        if (clock_gettime(CLOCK_REALTIME, &finished) < 0)
            finished.tv_sec = time(NULL);

        /* Status and rusage without reaping: the pid stays the container's until the
         * exit record exists. */
        memset(&info, 0, sizeof info);
        memset(&ru, 0, sizeof ru);
        while (syscall(SYS_waitid, P_PIDFD, pidfd, &info, WEXITED | WNOWAIT, &ru) < 0) {
            if (errno != EINTR)
                return 1;
        }
        if (!restart_wanted(c, &info, restarts))
            break;
        /* this run's output, then its end; a terminal of it is gone, and so are
         * the clients attached to it */
        for (int i = 0; i < 2; i++)
            pump(&streams[i], 1);
        out_flush();
        if (c->tty)
            while (nclients)
                drop_client(nclients - 1);
        siginfo_t gone;
        while (syscall(SYS_waitid, P_PIDFD, pidfd, &gone, WEXITED, NULL) < 0 && errno == EINTR)
            ;
        close(pidfd);
        pidfd = -1;
        reaped = 1;
        if (!back_off(c, restarts))
            break;
        oom_start = read_oom_kills(c->oom_path);
        restarts++;
    }

    /* The init has exited: what it wrote is in the pipes. Processes it left behind
     * (without a pid namespace) may keep them open: take what is there, no more. */
    int held[] = {in, outp[1], errp[1]};
    close_fds(held, 3);
    for (int i = 0; i < 2; i++) {
        pump(&streams[i], 1);
        if (streams[i].fd >= 0) {
            lines(&streams[i], 1);
            close(streams[i].fd);
            streams[i].fd = -1;
        }
    }
    out_flush();
    if (keep) {
        if (spec->netns_fd >= 0)
            close(spec->netns_fd);
        if (spec->cgroup_fd >= 0)
            close(spec->cgroup_fd);
        for (size_t i = 0; i < spec->ncgroup_procs; i++)
            close(spec->cgroup_procs_fds[i]);
    }
    /* attached clients see the end (before the exit record: they then read it) */
    if (lfd >= 0)
        close(lfd);
    unlink_attach();
    pyrt_portfwd_close(ports);
    while (nclients)
        drop_client(nclients - 1);

    long long oom_end = read_oom_kills(c->oom_path);
    int oom = oom_end > (oom_start > 0 ? oom_start : 0);
    int wrote = write_exit_record(c->exit_path, cpid, &info, &ru, &finished, oom);
    if (!reaped) {
        siginfo_t gone;
        memset(&gone, 0, sizeof gone);
        while (syscall(SYS_waitid, P_PIDFD, pidfd, &gone, WEXITED, NULL) < 0 && errno == EINTR)
            ;
        close(pidfd);
    }
    close(logfd);

    if (c->exit_argv && c->exit_argv[0]) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execvp(c->exit_argv[0], (char *const *)c->exit_argv);
        return 127;
    }
    return wrote < 0 ? 1 : 0;

fail:
    unlink_attach();
    pyrt_portfwd_close(ports);
    report(report_fd, 0, &err);
    return 1;
}

int pyrt_monitor_main(int argc, char **argv)
{
    if (argc != 3)
        return 127;
    int memfd = atoi(argv[1]), report_fd = atoi(argv[2]);
    struct pyrt_error err;
    memset(&err, 0, sizeof err);

    /* Dispositions back to the defaults (the caller's ignored signals survive
     * exec), then block every asynchronous signal: SIGTERM, SIGINT, SIGHUP,
     * SIGPIPE... stay pending and harmless. The container gets a clean mask. */
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            signal(sig, SIG_DFL); /* EINVAL for the libc-reserved ones: fine */
    sigset_t set;
    sigfillset(&set);
    int sync_sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGTRAP, SIGSYS};
    for (size_t i = 0; i < sizeof sync_sigs / sizeof *sync_sigs; i++)
        sigdelset(&set, sync_sigs[i]);
    if (sigprocmask(SIG_SETMASK, &set, NULL) < 0) {
        pyrt_fail(&err, "sigprocmask", "monitor");
        report(report_fd, 0, &err);
        return 1;
    }
    if (fcntl(report_fd, F_SETFD, FD_CLOEXEC) < 0 || fcntl(memfd, F_SETFD, FD_CLOEXEC) < 0) {
        pyrt_fail(&err, "fcntl", "monitor fds");
        report(report_fd, 0, &err);
        return 1;
    }

    struct stat st;
    if (fstat(memfd, &st) < 0) {
        pyrt_fail(&err, "read", "monitor spec");
        report(report_fd, 0, &err);
        return 1;
    }
    size_t size = (size_t)st.st_size;
    char *data = malloc(size ? size : 1);
    size_t got = 0;
    while (data && got < size) {
        ssize_t n = pread(memfd, data + got, size - got, (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(memfd);
    struct pyrt_spawn_spec *spec = NULL;
    struct monitor_cfg cfg;
    if (!data || got != size || deserialize(data, got, &spec, &cfg) < 0) {
        pyrt_fail_errno(&err, EINVAL, "read", "monitor spec");
        report(report_fd, 0, &err);
        return 1;
    }
    /* Mark the inherited fds close-on-exec: the container and exit_argv get none. */
    int inherited[] = {spec->cgroup_fd, cfg.stdin_fd, spec->netns_fd};
    for (size_t i = 0; i < 3; i++)
        if (inherited[i] >= 0 && fcntl(inherited[i], F_SETFD, FD_CLOEXEC) < 0) {
            pyrt_fail(&err, "fcntl", "monitor fds");
            report(report_fd, 0, &err);
            return 1;
        }
    for (size_t i = 0; i < spec->ncgroup_procs; i++)
        if (fcntl(spec->cgroup_procs_fds[i], F_SETFD, FD_CLOEXEC) < 0) {
            pyrt_fail(&err, "fcntl", "monitor fds");
            report(report_fd, 0, &err);
            return 1;
        }

    /* Double fork: a new session (no controlling terminal, no signals from the
     * caller's terminal), and a monitor that is nobody's child but init's. */
    if (setsid() < 0) {
        pyrt_fail(&err, "setsid", "monitor");
        report(report_fd, 0, &err);
        return 1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        pyrt_fail(&err, "fork", "monitor");
        report(report_fd, 0, &err);
        return 1;
    }
    if (pid > 0)
        _exit(0);
    return monitor(spec, &cfg, report_fd);
}
