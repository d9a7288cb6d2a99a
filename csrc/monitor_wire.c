/* What pyrt_monitor_start hands to pyrt-monitor (monitor_internal.h), through a
 * memfd: a flat host-endian stream of u64s and strings (u64 length with the NUL, 0
 * for NULL, then the bytes); string vectors as a u64 count (UINT64_MAX for NULL)
 * then the strings. Written and read on the same machine by the same build. The
 * spec itself is in it as pyrt_spec_pack (specpack.h) makes it. */
#include "monitor_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "specpack.h"

#define SPEC_MAGIC "PYRTMON2"

static void wput(struct pyrt_monitor_wbuf *b, const void *d, size_t n)
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

static void wu64(struct pyrt_monitor_wbuf *b, uint64_t v)
{
    wput(b, &v, sizeof v);
}

static void wi64(struct pyrt_monitor_wbuf *b, long long v)
{
    wu64(b, (uint64_t)(int64_t)v);
}

static void wstr(struct pyrt_monitor_wbuf *b, const char *s)
{
    if (!s) {
        wu64(b, 0);
        return;
    }
    size_t n = strlen(s) + 1;
    wu64(b, n);
    wput(b, s, n);
}

static void wstrn(struct pyrt_monitor_wbuf *b, const char *const *v, size_t n)
{
    wu64(b, n);
    for (size_t i = 0; i < n; i++)
        wstr(b, v[i] ? v[i] : "");
}

static void wstrv(struct pyrt_monitor_wbuf *b, const char *const *v)
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

/* The stream: SPEC_MAGIC, the spec as pyrt_spec_pack makes it (a u64 length,
 * then the bytes, 8-aligned in the file), then what pack leaves out: the cgroup
 * fds and the network and user namespaces' (numbers valid in the monitor), then
 * the monitor's own settings. */
int pyrt_monitor_serialize(struct pyrt_monitor_wbuf *b, const struct pyrt_spawn_spec *s, int cgroup_fd, const int *procs,
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
    wi64(b, s->userns_fd);

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
int pyrt_monitor_deserialize(char *data, size_t len, struct pyrt_spawn_spec **out, struct pyrt_monitor_cfg *c)
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
    s->netns_fd = (int)ri64(&r);
    s->userns_fd = (int)ri64(&r);
    s->cgroup_procs_fds = procs;

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
