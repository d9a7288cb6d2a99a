/* What pyrt_monitor_start hands to pyrt-monitor (monitor_internal.h), through a
 * memfd: MAGIC, then typed records, each a struct record (its kind and length)
 * and its payload (8-aligned), every payload a struct packed the one way specs
 * travel in (specpack.h: pointers turned into offsets):
 *
 *   REC_SPEC      the spawn spec (pyrt_spec_pack);
 *   REC_FDS       struct wire_fds: the fds the spec and the monitor use that
 *                 pack leaves out, as numbers valid in the monitor;
 *   REC_SETTINGS  struct pyrt_monitor_spec: the monitor's own settings.
 *
 * Written and read on the same machine by the same build. */
#include "monitor_internal.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "specpack.h"

#define MAGIC "PYRTMON3"

enum { REC_SPEC = 1, REC_FDS = 2, REC_SETTINGS = 3 };

struct record {
    uint32_t kind; /* REC_* */
    uint32_t pad;
    uint64_t len; /* of the payload that follows (then padding to 8) */
};

struct wire_fds {
    int cgroup_fd, netns_fd, userns_fd, stdin_fd;
    size_t nprocs;
    const int *procs;
};

/* pyrt_monitor_spec is packed whole: this mirror makes the build fail when a
 * field is added until pack_settings and unpack_settings learn it. */
struct settings_layout {
    const char *monitor_path, *log_path, *exit_path, *oom_path;
    long long oom_start;
    const char *const *exit_argv;
    int stdin_fd, tty;
    const char *attach_path, *ports;
    long long log_max_size;
    int log_max_files, restart, restart_max;
    const char *run_path, *stop_path;
    int hold_fd;
};
_Static_assert(sizeof(struct settings_layout) == sizeof(struct pyrt_monitor_spec),
               "struct pyrt_monitor_spec changed: teach monitor_wire.c its new fields");

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
    if (d)
        memcpy(b->p + b->len, d, n);
    else
        memset(b->p + b->len, 0, n);
    b->len += n;
}

#define AS_PTR(type, off) ((type)(uintptr_t)(off))

static ssize_t pack_fds(const struct wire_fds *f, char *buf, size_t cap, struct pyrt_error *e)
{
    struct pyrt_packer p = {buf, cap, 0, 0};
    uintptr_t at = pyrt_pack_bytes(&p, f, sizeof *f);
    struct wire_fds c = *f;
    c.procs = AS_PTR(const int *, f->nprocs ? pyrt_pack_bytes(&p, f->procs, f->nprocs * sizeof *f->procs) : 0);
    if (p.overflow || !at)
        return pyrt_fail_errno(e, E2BIG, "start monitor", "");
    memcpy(buf + at - 1, &c, sizeof c);
    return (ssize_t)p.len;
}

static ssize_t pack_settings(const struct pyrt_monitor_spec *m, char *buf, size_t cap, struct pyrt_error *e)
{
    struct pyrt_packer p = {buf, cap, 0, 0};
    uintptr_t at = pyrt_pack_bytes(&p, m, sizeof *m);
    struct pyrt_monitor_spec c = *m;
    c.monitor_path = AS_PTR(const char *, pyrt_pack_str(&p, m->monitor_path));
    c.log_path = AS_PTR(const char *, pyrt_pack_str(&p, m->log_path));
    c.exit_path = AS_PTR(const char *, pyrt_pack_str(&p, m->exit_path));
    c.oom_path = AS_PTR(const char *, pyrt_pack_str(&p, m->oom_path));
    c.exit_argv = AS_PTR(const char *const *, pyrt_pack_strv(&p, m->exit_argv));
    c.attach_path = AS_PTR(const char *, pyrt_pack_str(&p, m->attach_path));
    c.ports = AS_PTR(const char *, pyrt_pack_str(&p, m->ports));
    c.run_path = AS_PTR(const char *, pyrt_pack_str(&p, m->run_path));
    c.stop_path = AS_PTR(const char *, pyrt_pack_str(&p, m->stop_path));
    c.stdin_fd = -1; /* in REC_FDS */
    c.hold_fd = -1;  /* inherited and kept open by the monitor, never used by number */
    if (p.overflow || !at)
        return pyrt_fail_errno(e, E2BIG, "start monitor", "");
    memcpy(buf + at - 1, &c, sizeof c);
    return (ssize_t)p.len;
}

/* One record: its payload packed by pack(arg, ...) into a buffer grown until it fits. */
static int put_record(struct pyrt_monitor_wbuf *b, uint32_t kind, const void *arg,
                      ssize_t (*pack)(const void *, char *, size_t, struct pyrt_error *), struct pyrt_error *e)
{
    char *buf = NULL;
    ssize_t n = -1;
    for (size_t cap = 4096; n < 0 && cap <= ((size_t)1 << 30); cap *= 2) {
        char *q = realloc(buf, cap);
        if (!q) {
            free(buf);
            return pyrt_fail_errno(e, ENOMEM, "start monitor", "");
        }
        buf = q;
        n = pack(arg, buf, cap, e);
        if (n < 0 && e->err != E2BIG) {
            free(buf);
            return -1;
        }
    }
    if (n < 0) {
        free(buf);
        return -1;
    }
    struct record r = {kind, 0, (uint64_t)n};
    wput(b, &r, sizeof r);
    wput(b, buf, (size_t)n);
    wput(b, NULL, (8 - (size_t)n % 8) % 8);
    free(buf);
    return 0;
}

static ssize_t pack_spec_cb(const void *a, char *buf, size_t cap, struct pyrt_error *e)
{
    return pyrt_spec_pack(a, buf, cap, e);
}

static ssize_t pack_fds_cb(const void *a, char *buf, size_t cap, struct pyrt_error *e)
{
    return pack_fds(a, buf, cap, e);
}

static ssize_t pack_settings_cb(const void *a, char *buf, size_t cap, struct pyrt_error *e)
{
    return pack_settings(a, buf, cap, e);
}

int pyrt_monitor_serialize(struct pyrt_monitor_wbuf *b, const struct pyrt_spawn_spec *s, int cgroup_fd, const int *procs,
                           int netns_fd, const struct pyrt_monitor_spec *m, int stdin_fd, struct pyrt_error *e)
{
    if (s->oci) /* only the OCI runtime sets it, and it runs no monitor */
        return pyrt_fail_errno(e, EINVAL, "start monitor", "OCI options cannot go through the monitor");
    struct wire_fds f = {cgroup_fd, netns_fd, s->userns_fd, stdin_fd, s->ncgroup_procs, procs};
    wput(b, MAGIC, 8);
    if (put_record(b, REC_SPEC, s, pack_spec_cb, e) < 0 || put_record(b, REC_FDS, &f, pack_fds_cb, e) < 0 ||
        put_record(b, REC_SETTINGS, m, pack_settings_cb, e) < 0)
        return -1;
    if (b->failed)
        return pyrt_fail_errno(e, ENOMEM, "start monitor", "");
    return 0;
}

static int unpack_fds(char *buf, size_t len, struct wire_fds **out)
{
    if (len < sizeof(struct wire_fds))
        return -1;
    struct wire_fds *f = (struct wire_fds *)buf;
    if (f->nprocs > len / sizeof(int) || pyrt_unpack_ptr(&f->procs, buf, len, f->nprocs * sizeof(int)) < 0)
        return -1;
    *out = f;
    return 0;
}

static int unpack_settings(char *buf, size_t len, struct pyrt_monitor_spec **out)
{
    if (len < sizeof(struct pyrt_monitor_spec))
        return -1;
    struct pyrt_monitor_spec *m = (struct pyrt_monitor_spec *)buf;
    int bad = 0;
    bad |= pyrt_unpack_str(&m->monitor_path, buf, len) | pyrt_unpack_str(&m->log_path, buf, len);
    bad |= pyrt_unpack_str(&m->exit_path, buf, len) | pyrt_unpack_str(&m->oom_path, buf, len);
    bad |= pyrt_unpack_strv(&m->exit_argv, buf, len);
    bad |= pyrt_unpack_str(&m->attach_path, buf, len) | pyrt_unpack_str(&m->ports, buf, len);
    bad |= pyrt_unpack_str(&m->run_path, buf, len) | pyrt_unpack_str(&m->stop_path, buf, len);
    if (bad)
        return -1;
    *out = m;
    return 0;
}

/* data: the whole stream, 8-aligned (malloc'd); the spec and cfg point into it. */
int pyrt_monitor_deserialize(char *data, size_t len, struct pyrt_spawn_spec **out, struct pyrt_monitor_cfg *c)
{
    memset(c, 0, sizeof *c);
    if (len < 8 || memcmp(data, MAGIC, 8) != 0)
        return -1;
    struct pyrt_spawn_spec *s = NULL;
    struct wire_fds *f = NULL;
    struct pyrt_monitor_spec *m = NULL;
    for (size_t at = 8; at < len;) {
        struct record r;
        if (len - at < sizeof r)
            return -1;
        memcpy(&r, data + at, sizeof r);
        at += sizeof r;
        if (r.len > len - at)
            return -1;
        char *payload = data + at;
        size_t n = (size_t)r.len;
        at += n + (8 - n % 8) % 8;
        int rc = -1;
        if (r.kind == REC_SPEC && !s)
            rc = pyrt_spec_unpack(payload, n, &s);
        else if (r.kind == REC_FDS && !f)
            rc = unpack_fds(payload, n, &f);
        else if (r.kind == REC_SETTINGS && !m)
            rc = unpack_settings(payload, n, &m);
        if (rc < 0) /* malformed, twice, or of an unknown kind */
            return -1;
    }
    if (!s || !f || !m || !s->argv[0] || !m->log_path || !m->exit_path)
        return -1;
    s->stdio[0] = s->stdio[1] = s->stdio[2] = -1;
    s->cgroup_fd = f->cgroup_fd;
    s->cgroup_procs_fds = f->procs;
    s->ncgroup_procs = f->nprocs;
    s->netns_fd = f->netns_fd;
    s->userns_fd = f->userns_fd;

    c->log_path = m->log_path;
    c->exit_path = m->exit_path;
    c->oom_path = m->oom_path;
    c->oom_start = m->oom_start;
    c->exit_argv = (const char **)m->exit_argv;
    c->stdin_fd = f->stdin_fd;
    c->tty = m->tty;
    c->attach_path = m->attach_path;
    c->ports = m->ports;
    c->log_max_size = m->log_max_size;
    c->log_max_files = m->log_max_files;
    c->restart = m->restart;
    c->restart_max = m->restart_max;
    c->run_path = m->run_path;
    c->stop_path = m->stop_path;
    *out = s;
    return 0;
}
