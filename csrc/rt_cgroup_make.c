/* See rt_cgroup.h: making a container's cgroup for pyrt-runtime's native create,
 * as pyrt/ocirt/operations.py does it in Python: Cgroup.create(name, Limits(),
 * parent, accounting=resource_controllers(resources), devices=None) (the
 * directories, pyrt/cgroups/cgroup.py), apply_resources (the limit files,
 * pyrt/cgroups/oci.py), then spawn_fds. The same directories, the same files
 * written in the same order, the same errors; nothing left on failure. */
#include "rt_cgroup.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "devices.h"
#include "rt_cgroup_internal.h"
#include "rt_pyval.h"
#include "rt_resources.h"

/* The controllers pyrt knows (layout.py's KNOWN_CONTROLLERS) in sorted order: a
 * set of them is a bit mask, and walking its bits is Python's sorted(). */
static const char *const CTRL[] = {"blkio",   "cpu",  "cpuacct", "cpuset",  "devices",  "freezer",    "hugetlb",
                                   "io",      "memory", "misc",  "net_cls", "net_prio", "perf_event", "pids",
                                   "rdma"};
#define NCTRL (sizeof CTRL / sizeof CTRL[0])

static int ctrl_index(const char *name, size_t len)
{
    for (size_t i = 0; i < NCTRL; i++)
        if (strlen(CTRL[i]) == len && strncmp(CTRL[i], name, len) == 0)
            return (int)i;
    return -1;
}

static unsigned bit(const char *name)
{
    int i = ctrl_index(name, strlen(name));
    return i < 0 ? 0 : 1u << i;
}

struct mk {
    struct rt_ctx *ctx;
    const struct rt_layout *lay;
    struct rt_cgroup_made *out;
    char made[RT_CG_MAX_V1 + 1][PATH_MAX]; /* the cgroups made, for the rollback */
    size_t nmade;
};

/* os.path.join(a, b) */
static int pjoin(struct mk *m, char *out, const char *a, const char *b)
{
    size_t la = strlen(a);
    int slash = la == 0 || a[la - 1] != '/';
    if ((size_t)snprintf(out, PATH_MAX, "%s%s%s", a, slash ? "/" : "", b) >= PATH_MAX) {
        char path[PATH_MAX + 64];
        snprintf(path, sizeof path, "%.*s...", PATH_MAX - 64, a);
        return rt_fail(m->ctx, "create cgroup \"%s\": %s", path, strerror(ENAMETOOLONG));
    }
    return 0;
}

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* cgroup.py's _write: one write(); op_prefix names the config's field in the
 * error instead of the file operation (oci.py's block I/O writes) */
static int pywrite(struct mk *m, const char *path, const char *value, const char *op_prefix)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    int e = errno;
    ssize_t n = 0;
    if (fd >= 0) {
        while ((n = write(fd, value, strlen(value))) < 0 && errno == EINTR)
            ;
        e = errno;
        close(fd);
        if (n >= 0)
            return 0;
    }
    if (fd < 0 && op_prefix == NULL) {
        rt_fail(m->ctx, "open \"%s\": %s", path, strerror(e));
    } else {
        struct sbuf v = {0};
        (void)rt_py_repr_str(&v, value);
        rt_fail(m->ctx, "%s%swrite %s to \"%s\": %s", op_prefix ? op_prefix : "", op_prefix ? ": " : "",
                v.p ? v.p : "?", path, strerror(e));
        pyrt_sbuf_free(&v);
    }
    errno = e;
    return -1;
}

/* -- the directories (cgroup.py's _make_v2, _make_v1, _fresh_dir) --------------------- */

static unsigned v2_controllers(const struct rt_layout *lay)
{
    static int done;
    static unsigned mask;
    if (done || !lay->unified[0])
        return mask;
    done = 1;
    char p[PATH_MAX + 32];
    snprintf(p, sizeof p, "%s/cgroup.controllers", lay->unified);
    char *text = rt_cg_read_text(p);
    for (char *s = text; s && *s;) {
        s += strspn(s, " \t\n");
        size_t n = strcspn(s, " \t\n");
        int i = n ? ctrl_index(s, n) : -1;
        if (i >= 0)
            mask |= 1u << i;
        s += n;
    }
    free(text);
    return mask;
}

static const char *v1_mount(const struct rt_layout *lay, const char *ctrl)
{
    for (size_t i = 0; i < lay->nv1; i++)
        if (strcmp(lay->v1[i].ctrl, ctrl) == 0)
            return lay->v1[i].mount;
    return NULL;
}

static int fresh_dir(struct mk *m, const char *path)
{
    if (mkdir(path, 0755) < 0) {
        if (errno != EEXIST)
            return rt_fail(m->ctx, "create cgroup \"%s\": %s", path, strerror(errno));
        char procs[PATH_MAX];
        if (pjoin(m, procs, path, "cgroup.procs") < 0)
            return -1;
        char *text = rt_cg_read_text(procs);
        if (text == NULL && errno != ENOENT)
            return rt_fail(m->ctx, "read \"%s\": %s", procs, strerror(errno));
        int busy = text != NULL && text[strspn(text, " \t\n\r\v\f")] != 0;
        free(text);
        if (busy)
            return rt_fail(m->ctx, "cgroup %s already exists and has processes", path);
        if (rmdir(path) < 0 || mkdir(path, 0755) < 0)
            return rt_fail(m->ctx, "replace leftover cgroup \"%s\": %s", path, strerror(errno));
    }
    snprintf(m->made[m->nmade++], PATH_MAX, "%s", path);
    return 0;
}

static int mkdir_level(struct mk *m, const char *d)
{
    if (mkdir(d, 0755) < 0 && errno != EEXIST)
        return rt_fail(m->ctx, "create cgroup \"%s\": %s", d, strerror(errno));
    return 0;
}

static char *strip_dup(const char *s)
{
    if (s == NULL)
        return NULL;
    s += strspn(s, " \t\n\r\v\f");
    size_t n = strlen(s);
    while (n && strchr(" \t\n\r\v\f", s[n - 1]))
        n--;
    return strndup(s, n);
}

/* A v1 cpuset cgroup starts with empty cpus and mems (and then takes no task):
 * copied from its parent when they are empty (_cpuset_fill). */
static int cpuset_fill(struct mk *m, const char *d)
{
    char up[PATH_MAX];
    snprintf(up, sizeof up, "%s", d);
    char *slash = strrchr(up, '/'); /* os.path.dirname */
    if (slash != NULL) {
        char *end = slash;
        while (end > up && end[-1] == '/')
            end--;
        *(end == up ? slash + 1 : end) = 0;
    }
    static const char *const files[] = {"cpuset.cpus", "cpuset.mems"};
    for (int i = 0; i < 2; i++) {
        char path[PATH_MAX], from[PATH_MAX];
        if (pjoin(m, path, d, files[i]) < 0 || pjoin(m, from, up, files[i]) < 0)
            return -1;
        char *raw = rt_cg_read_text(path), *mine = strip_dup(raw);
        int empty = mine == NULL || !mine[0];
        free(raw);
        free(mine);
        if (!empty)
            continue;
        raw = rt_cg_read_text(from);
        char *theirs = strip_dup(raw);
        free(raw);
        int rc = pywrite(m, path, theirs && theirs[0] ? theirs : "\n", NULL);
        free(theirs);
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* Each level of `parent` below `mount` in turn (parent.split("/"): "" is one
 * empty level), given to each(); the last one in d. */
static int walk_levels(struct mk *m, const char *mount, const char *parent, char *d,
                       int (*each)(struct mk *, const char *))
{
    snprintf(d, PATH_MAX, "%s", mount);
    const char *part = parent;
    for (;;) {
        const char *end = strchr(part, '/');
        size_t n = end ? (size_t)(end - part) : strlen(part);
        char level[PATH_MAX], name[PATH_MAX];
        snprintf(name, sizeof name, "%.*s", (int)n, part);
        if (pjoin(m, level, d, name) < 0)
            return -1;
        snprintf(d, PATH_MAX, "%s", level);
        if (each(m, d) < 0)
            return -1;
        if (!end)
            return 0;
        part = end + 1;
    }
}

static int mkdir_cpuset(struct mk *m, const char *d)
{
    return mkdir_level(m, d) < 0 ? -1 : cpuset_fill(m, d);
}

/* the controllers to enable, for enable() */
static unsigned enable_mask;

/* cgroup.subtree_control of one level: the controllers of enable_mask enabled */
static int enable(struct mk *m, const char *level)
{
    char path[PATH_MAX];
    if (pjoin(m, path, level, "cgroup.subtree_control") < 0)
        return -1;
    char *text = rt_cg_read_text(path);
    for (size_t i = 0; i < NCTRL; i++) {
        if (!(enable_mask & (1u << i)))
            continue;
        int on = 0;
        for (char *s = text; s && *s && !on;) {
            s += strspn(s, " \t\n");
            size_t n = strcspn(s, " \t\n");
            on = n && ctrl_index(s, n) == (int)i;
            s += n;
        }
        if (on)
            continue;
        char plus[32];
        snprintf(plus, sizeof plus, "+%s", CTRL[i]);
        if (pywrite(m, path, plus, NULL) == 0)
            continue;
        int e = errno;
        free(text);
        if (e == EBUSY) {
            char line[sizeof m->ctx->err];
            snprintf(line, sizeof line, "%s", m->ctx->err);
            return rt_fail(m->ctx, "%s (cannot enable the '%s' controller below %s: it has processes of its own "
                                   "(cgroup v2's no-internal-processes rule))",
                           line, CTRL[i], level);
        }
        if (e == ENOENT || e == EINVAL)
            return rt_fail(m->ctx, "cgroup controller '%s' is not available on this host (not offered to %s)",
                           CTRL[i], level);
        return -1;
    }
    free(text);
    return 0;
}

static int make_v2(struct mk *m, const char *parent, const char *name, unsigned ctrls, char *dir)
{
    char d[PATH_MAX];
    if (walk_levels(m, m->lay->unified, parent, d, mkdir_level) < 0)
        return -1;
    enable_mask = ctrls;
    if (ctrls && (enable(m, m->lay->unified) < 0 || walk_levels(m, m->lay->unified, parent, d, enable) < 0))
        return -1;
    if (pjoin(m, dir, d, name) < 0)
        return -1;
    return fresh_dir(m, dir);
}

static int make_v1(struct mk *m, const char *mount, const char *parent, const char *name, int cpuset, char *dir)
{
    char up[PATH_MAX];
    if (walk_levels(m, mount, parent, up, cpuset ? mkdir_cpuset : mkdir_level) < 0 || pjoin(m, dir, up, name) < 0 ||
        fresh_dir(m, dir) < 0)
        return -1;
    return cpuset ? cpuset_fill(m, dir) : 0;
}

/* -- the limits (oci.py's apply_resources) ------------------------------------------------- */

/* where(ctrl): its v1 directory when the cgroup joined that hierarchy, else the
 * cgroup2 one; NULL with the error set when it has neither */
static const char *where(struct mk *m, const char *ctrl, int *v1)
{
    const struct rt_cgroup *cg = &m->out->cg;
    for (size_t i = 0; i < cg->nv1; i++)
        if (strcmp(cg->v1[i].ctrl, ctrl) == 0) {
            *v1 = 1;
            return cg->v1[i].dir;
        }
    *v1 = 0;
    if (cg->v2[0])
        return cg->v2;
    rt_fail(m->ctx, "cgroup controller '%s' is not available on this host", ctrl);
    return NULL;
}

static int put(struct mk *m, const char *d, const char *name, const char *value, int optional)
{
    char path[PATH_MAX];
    if (pjoin(m, path, d, name) < 0)
        return -1;
    if (optional && !exists(path))
        return 0;
    return pywrite(m, path, value, NULL);
}

/* limits.py's cpu_shares_to_weight (runc's conversion), for shares 3..262143 */
static long shares_to_weight(const char *shares)
{
    if (rt_dec_cmp(shares, "0") <= 0)
        return 0;
    if (rt_dec_cmp(shares, "2") <= 0)
        return 1;
    if (rt_dec_cmp(shares, "262144") >= 0)
        return 10000;
    double lg = log2((double)strtol(shares, NULL, 10));
    double x = pow(10, (lg * lg + 125 * lg) / 612.0 - 7.0 / 34.0);
    char r[64];
    snprintf(r, sizeof r, "%.9f", x); /* round(x, 9): correctly rounded, as Python's */
    return (long)ceil(strtod(r, NULL));
}

static int apply_memory(struct mk *m, const struct rt_resources *r)
{
    int v1;
    const char *d = where(m, "memory", &v1);
    if (d == NULL)
        return -1;
    if (v1) {
        if ((r->mem_limit && put(m, d, "memory.limit_in_bytes", r->mem_limit, 0) < 0) ||
            (r->mem_swap && put(m, d, "memory.memsw.limit_in_bytes", r->mem_swap, 1) < 0) ||
            (r->mem_reservation && put(m, d, "memory.soft_limit_in_bytes", r->mem_reservation, 0) < 0))
            return -1;
        if (r->mem_swappiness >= 0) {
            char v[16];
            snprintf(v, sizeof v, "%d", r->mem_swappiness);
            if (put(m, d, "memory.swappiness", v, 1) < 0)
                return -1;
        }
        return r->mem_disable_oom ? put(m, d, "memory.oom_control", "1", 0) : 0;
    }
    if (r->mem_limit && put(m, d, "memory.max", r->mem_limit, 0) < 0)
        return -1;
    if (r->mem_swap) {
        const char *limit = r->mem_limit ? r->mem_limit : "0";
        char *swap = strcmp(r->mem_swap, "-1") == 0 ? strdup("max")
                     : rt_dec_cmp(r->mem_swap, limit) <= 0 ? strdup("0")
                                                            : rt_dec_sub(r->mem_swap, limit);
        if (swap == NULL)
            return rt_fail(m->ctx, "linux.resources.memory.swap: %s", strerror(ENOMEM));
        int rc = put(m, d, "memory.swap.max", swap, 1);
        free(swap);
        if (rc < 0)
            return -1;
    }
    return r->mem_reservation ? put(m, d, "memory.low", r->mem_reservation, 0) : 0;
}

static int apply_cpu(struct mk *m, const struct rt_resources *r)
{
    int v1;
    const char *d = where(m, "cpu", &v1);
    if (d == NULL)
        return -1;
    char period[32], v[96];
    snprintf(period, sizeof period, "%ld", r->cpu_period ? r->cpu_period : 100000L);
    if (v1) {
        if ((r->cpu_shares && put(m, d, "cpu.shares", r->cpu_shares, 0) < 0) ||
            ((r->cpu_period || r->cpu_quota) && put(m, d, "cpu.cfs_period_us", period, 0) < 0) ||
            (r->cpu_quota && put(m, d, "cpu.cfs_quota_us", r->cpu_quota, 0) < 0))
            return -1;
        return 0;
    }
    if (r->cpu_shares) {
        snprintf(v, sizeof v, "%ld", shares_to_weight(r->cpu_shares));
        if (put(m, d, "cpu.weight", v, 0) < 0)
            return -1;
    }
    if (r->cpu_period || r->cpu_quota) {
        const char *q = r->cpu_quota && r->cpu_quota[0] != '-' ? r->cpu_quota : "max";
        size_t len = strlen(q) + strlen(period) + 2;
        char *line = malloc(len);
        if (line == NULL)
            return rt_fail(m->ctx, "linux.resources.cpu: %s", strerror(ENOMEM));
        snprintf(line, len, "%s %s", q, period);
        int rc = put(m, d, "cpu.max", line, 0);
        free(line);
        return rc;
    }
    return 0;
}

static int devnum(const char *text, int64_t *out)
{
    if (text == NULL) {
        *out = -1;
        return 0;
    }
    if (rt_dec_cmp(text, "9223372036854775807") > 0)
        return -1;
    *out = strtoll(text, NULL, 10);
    return 0;
}

static int apply_devices(struct mk *m, const struct rt_resources *r, const char *name, const char *parent)
{
    const struct rt_cgroup *cg = &m->out->cg;
    int v1;
    const char *d = where(m, "devices", &v1);
    if (d != NULL && v1) {
        for (size_t i = 0; i < r->ndevices; i++) {
            const struct rt_res_dev *x = &r->devices[i];
            struct sbuf line = {0};
            int ok;
            if (x->type == 'a' && x->major == NULL && x->minor == NULL) {
                ok = pyrt_sbuf_append(&line, "a", 1) == 0;
            } else {
                char head[4] = {x->type, ' ', 0, 0};
                ok = pyrt_sbuf_append(&line, head, 2) == 0 &&
                     pyrt_sbuf_append(&line, x->major ? x->major : "*", strlen(x->major ? x->major : "*")) == 0 &&
                     pyrt_sbuf_append(&line, ":", 1) == 0 &&
                     pyrt_sbuf_append(&line, x->minor ? x->minor : "*", strlen(x->minor ? x->minor : "*")) == 0 &&
                     pyrt_sbuf_append(&line, " ", 1) == 0 && pyrt_sbuf_append(&line, x->access, strlen(x->access)) == 0;
            }
            int rc = ok ? put(m, d, x->allow ? "devices.allow" : "devices.deny", line.p, 0)
                        : rt_fail(m->ctx, "linux.resources.devices: %s", strerror(ENOMEM));
            pyrt_sbuf_free(&line);
            if (rc < 0)
                return -1;
        }
        return 0;
    }
    if (!cg->v2[0])
        return rt_fail(m->ctx, "linux.resources.devices needs the devices controller or cgroup2 \"%s/%s\": %s", parent,
                       name, strerror(ENODEV));
    /* cgroup2: an eBPF program. A new v1 devices cgroup starts allowing
       everything, then takes the rules in order: the same here. */
    struct pyrt_dev_rule *rules = calloc(r->ndevices + 1, sizeof *rules);
    if (rules == NULL)
        return rt_fail(m->ctx, "linux.resources.devices: %s", strerror(ENOMEM));
    rules[0] = (struct pyrt_dev_rule){'a', -1, -1, PYRT_DEV_MKNOD | PYRT_DEV_READ | PYRT_DEV_WRITE, 1};
    for (size_t i = 0; i < r->ndevices; i++) {
        const struct rt_res_dev *x = &r->devices[i];
        struct pyrt_dev_rule *y = &rules[i + 1];
        y->type = x->type;
        y->allow = x->allow;
        y->access = (strchr(x->access, 'm') ? PYRT_DEV_MKNOD : 0) | (strchr(x->access, 'r') ? PYRT_DEV_READ : 0) |
                    (strchr(x->access, 'w') ? PYRT_DEV_WRITE : 0);
        if (devnum(x->major, &y->major) < 0 || devnum(x->minor, &y->minor) < 0) {
            free(rules);
            return rt_fail(m->ctx, "device rule number: %s", strerror(EINVAL));
        }
    }
    int fd = open(cg->v2, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        free(rules);
        return rt_fail(m->ctx, "open cgroup \"%s\": %s", cg->v2, strerror(errno));
    }
    struct pyrt_error e;
    int rc = pyrt_devices_attach(fd, cg->v2, rules, r->ndevices + 1, &e);
    close(fd);
    free(rules);
    if (rc < 0 && !(e.err == EPERM && rt_ordinary_user())) /* an ordinary user may not: none, as set_devices */
        return rt_fail(m->ctx, "%s%s%s%s: %s", e.op, e.path[0] ? " \"" : "", e.path, e.path[0] ? "\"" : "",
                       strerror(e.err));
    return 0;
}

/* oci.py's _apply_block_io: a weight to the first file of the scheduler that
 * weighs, the throttles to blkio.throttle.* or io.max */
static int blk_weights(struct mk *m, int v1, const char *d, const char *what, const char *const *files,
                       const struct rt_res_blk *values, size_t n)
{
    char op[128], path[PATH_MAX];
    snprintf(op, sizeof op, "linux.resources.blockIO.%s", what);
    const char *name = NULL;
    for (const char *const *f = files; *f && name == NULL; f++) {
        if (pjoin(m, path, d, *f) < 0)
            return -1;
        if (exists(path))
            name = *f;
    }
    if (name == NULL) {
        if (!files[0])
            return rt_fail(m->ctx, "%s: cgroup2 has no leaf weights \"%s\": %s", op, d, strerror(EOPNOTSUPP));
        return rt_fail(m->ctx, "%s: this host's block I/O controller has no %s%s%s (no scheduler that weighs, such "
                               "as BFQ) \"%s\": %s",
                       op, files[0], files[1] ? " nor " : "", files[1] ? files[1] : "", d, strerror(ENOENT));
    }
    if (pjoin(m, path, d, name) < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        uint64_t w = values[i].value;
        if (!v1 && strcmp(name, "io.weight") == 0)
            w = 1 + (w - 10) * 9999 / 990; /* limits.py's io_weight */
        char line[64];
        if (values[i].dev[0])
            snprintf(line, sizeof line, "%s %llu", values[i].dev, (unsigned long long)w);
        else
            snprintf(line, sizeof line, v1 ? "%llu" : "default %llu", (unsigned long long)w);
        if (pywrite(m, path, line, op) < 0)
            return -1;
    }
    return 0;
}

static int apply_block_io(struct mk *m, const struct rt_resources *r)
{
    int v1;
    const char *d = where(m, "blkio", &v1);
    if (d == NULL)
        return -1;
    static const char *const w1[] = {"blkio.weight", "blkio.bfq.weight", NULL};
    static const char *const wd1[] = {"blkio.weight_device", "blkio.bfq.weight_device", NULL};
    static const char *const w2[] = {"io.bfq.weight", "io.weight", NULL};
    static const char *const l1[] = {"blkio.leaf_weight", NULL};
    static const char *const ld1[] = {"blkio.leaf_weight_device", NULL};
    static const char *const none[] = {NULL};
    struct rt_res_blk one = {"", 0};
    if (r->blk_weight) {
        one.value = (uint64_t)r->blk_weight;
        if (blk_weights(m, v1, d, "weight", v1 ? w1 : w2, &one, 1) < 0)
            return -1;
    }
    if (r->nweight_dev && blk_weights(m, v1, d, "weightDevice", v1 ? wd1 : w2, r->weight_dev, r->nweight_dev) < 0)
        return -1;
    if (r->blk_leaf_weight) {
        one.value = (uint64_t)r->blk_leaf_weight;
        if (blk_weights(m, v1, d, "leafWeight", v1 ? l1 : none, &one, 1) < 0)
            return -1;
    }
    if (r->nleaf_weight_dev && blk_weights(m, v1, d, "weightDevice[].leafWeight", v1 ? ld1 : none,
                                           r->leaf_weight_dev, r->nleaf_weight_dev) < 0)
        return -1;
    static const char *const field[] = {"throttleReadBpsDevice", "throttleWriteBpsDevice", "throttleReadIOPSDevice",
                                        "throttleWriteIOPSDevice"};
    static const char *const v1file[] = {"blkio.throttle.read_bps_device", "blkio.throttle.write_bps_device",
                                         "blkio.throttle.read_iops_device", "blkio.throttle.write_iops_device"};
    static const char *const v2key[] = {"rbps", "wbps", "riops", "wiops"};
    for (int k = 0; k < RT_RES_NTHROTTLES; k++)
        for (size_t i = 0; i < r->nthrottle[k]; i++) {
            char path[PATH_MAX], op[96], line[96];
            const struct rt_res_blk *t = &r->throttle[k][i];
            snprintf(op, sizeof op, "linux.resources.blockIO.%s", field[k]);
            if (v1)
                snprintf(line, sizeof line, "%s %llu", t->dev, (unsigned long long)t->value);
            else
                snprintf(line, sizeof line, "%s %s=%llu", t->dev, v2key[k], (unsigned long long)t->value);
            if (pjoin(m, path, d, v1 ? v1file[k] : "io.max") < 0 || pywrite(m, path, line, op) < 0)
                return -1;
        }
    return 0;
}

static int apply(struct mk *m, const struct rt_resources *r, int ignore_devices, const char *name,
                 const char *parent)
{
    int v1;
    const char *d;
    const char *sets[2] = {r->cpus, r->mems};
    static const char *const files[2] = {"cpuset.cpus", "cpuset.mems"};
    for (int i = 0; i < 2; i++)
        if (sets[i] && ((d = where(m, "cpuset", &v1)) == NULL || put(m, d, files[i], sets[i], 0) < 0))
            return -1;
    if (r->has_memory && apply_memory(m, r) < 0)
        return -1;
    if ((r->cpu_shares || r->cpu_quota || r->cpu_period) && apply_cpu(m, r) < 0)
        return -1;
    if (r->pids) {
        if ((d = where(m, "pids", &v1)) == NULL || put(m, d, "pids.max", r->pids[0] == '-' ? "max" : r->pids, 0) < 0)
            return -1;
    }
    if (r->ndevices && !ignore_devices && apply_devices(m, r, name, parent) < 0)
        return -1;
    if (r->has_blkio && apply_block_io(m, r) < 0)
        return -1;
    for (size_t i = 0; i < r->nunified; i++) {
        if (!m->out->cg.v2[0])
            return rt_fail(m->ctx, "linux.resources.unified needs cgroup v2 \"%s\": %s", r->unified_keys[i],
                           strerror(ENOENT));
        if (put(m, m->out->cg.v2, r->unified_keys[i], r->unified_values[i], 0) < 0)
            return -1;
    }
    return 0;
}

/* -- the cgroup ------------------------------------------------------------------------------ */

static int name_error(struct rt_ctx *ctx, const char *what, const char *name, int parts_ok)
{
    struct sbuf b = {0};
    (void)rt_py_repr_str(&b, name);
    if (!name[0])
        rt_fail(ctx, "invalid cgroup %s %s", what, b.p ? b.p : "''");
    else if (parts_ok)
        rt_fail(ctx, "invalid cgroup %s %s: no '/' (nest with parent=)", what, b.p ? b.p : "?");
    else
        rt_fail(ctx, "invalid cgroup %s %s: use letters, digits and _ . - (and / between the levels of a parent)",
                what, b.p ? b.p : "?");
    pyrt_sbuf_free(&b);
    return -1;
}

/* spawn_fds: the cgroup2 directory and each v1 cgroup.procs */
static int open_fds(struct mk *m)
{
    struct rt_cgroup_made *o = m->out;
    const struct rt_cgroup *cg = &o->cg;
    if (cg->v2[0] && (o->cgroup_fd = open(cg->v2, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        return rt_fail(m->ctx, "open cgroup \"%s\": %s", cg->v2, strerror(errno));
    for (size_t i = 0; i < cg->nv1; i++) {
        int seen = 0;
        for (size_t j = 0; j < i && !seen; j++)
            seen = strcmp(cg->v1[j].dir, cg->v1[i].dir) == 0;
        if (seen)
            continue;
        char path[PATH_MAX];
        if (pjoin(m, path, cg->v1[i].dir, "cgroup.procs") < 0)
            return -1;
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
            return rt_fail(m->ctx, "open cgroup \"%s\": %s", path, strerror(errno));
        o->procs_fds[o->nprocs++] = fd;
    }
    return 0;
}

static int make(struct mk *m, const char *name, const char *parent, const struct rt_resources *r,
                int ignore_devices)
{
    const struct rt_layout *lay = m->lay;
    const char *acct[8];
    size_t nacct = rt_resources_controllers(r, ignore_devices, acct);
    unsigned v2c = v2_controllers(lay), onv1 = 0, v1_ctrls = 0, v2_ctrls = 0;
    for (size_t i = 0; i < lay->nv1; i++)
        onv1 |= bit(lay->v1[i].ctrl);
    /* accounting is read where the host has it, never a reason to refuse */
    for (size_t i = 0; i < nacct; i++) {
        unsigned b = bit(acct[i]);
        if (b & onv1)
            v1_ctrls |= b;
        else if (b & v2c)
            v2_ctrls |= b;
    }
    unsigned free_ones = bit("memory") | bit("pids") | bit("cpu");
    if (lay->unified[0])
        v2_ctrls = (v2_ctrls | (free_ones & v2c)) & ~onv1; /* joining cgroup2 is free: account there */
    else
        v1_ctrls |= (bit("cpuacct") | bit("memory") | bit("pids") | bit("freezer")) & onv1;

    struct rt_cgroup *cg = &m->out->cg;
    snprintf(cg->name, sizeof cg->name, "%s", name);
    snprintf(cg->parent, sizeof cg->parent, "%s", parent);
    if (lay->unified[0] && make_v2(m, parent, name, v2_ctrls, cg->v2) < 0)
        return -1;
    /* the v1 hierarchies by mount point, in sorted order; each one's controllers sorted */
    const char *mounts[RT_CG_MAX_V1];
    size_t nm = 0;
    for (size_t i = 0; i < NCTRL; i++) {
        const char *mp = (v1_ctrls & (1u << i)) ? v1_mount(lay, CTRL[i]) : NULL;
        int seen = mp == NULL;
        for (size_t j = 0; j < nm && !seen; j++)
            seen = strcmp(mounts[j], mp) == 0;
        if (!seen && nm < RT_CG_MAX_V1)
            mounts[nm++] = mp;
    }
    for (size_t i = 1; i < nm; i++)
        for (size_t j = i; j > 0 && strcmp(mounts[j - 1], mounts[j]) > 0; j--) {
            const char *t = mounts[j];
            mounts[j] = mounts[j - 1];
            mounts[j - 1] = t;
        }
    for (size_t k = 0; k < nm; k++) {
        unsigned here = 0;
        for (size_t i = 0; i < NCTRL; i++)
            if ((v1_ctrls & (1u << i)) && strcmp(v1_mount(lay, CTRL[i]), mounts[k]) == 0)
                here |= 1u << i;
        char dir[PATH_MAX];
        if (make_v1(m, mounts[k], parent, name, (here & bit("cpuset")) != 0, dir) < 0)
            return -1;
        for (size_t i = 0; i < NCTRL && cg->nv1 < RT_CG_MAX_V1; i++)
            if (here & (1u << i)) {
                snprintf(cg->v1[cg->nv1].ctrl, sizeof cg->v1[0].ctrl, "%s", CTRL[i]);
                snprintf(cg->v1[cg->nv1].dir, sizeof cg->v1[0].dir, "%s", dir);
                cg->nv1++;
            }
    }
    if (r != NULL && apply(m, r, ignore_devices, name, parent) < 0)
        return -1;
    return open_fds(m);
}

int rt_cgroup_create(struct rt_ctx *ctx, const char *name, const char *parent, const struct rt_resources *r,
                     int ignore_devices, struct rt_cgroup_made *out)
{
    memset(out, 0, sizeof *out);
    out->cgroup_fd = -1;
    if (parent == NULL)
        parent = "pyrt";
    if (!rt_cgroup_name_ok(name, 1))
        return name_error(ctx, "name", name, 0);
    if (parent[0] && !rt_cgroup_name_ok(parent, 1))
        return name_error(ctx, "parent", parent, 0);
    if (strchr(name, '/'))
        return name_error(ctx, "name", name, 1);
    const struct rt_layout *lay = rt_layout();
    if (lay == NULL)
        return rt_fail(ctx, "read \"/proc/self/mountinfo\": %s", strerror(errno));
    if (!lay->unified[0] && lay->nv1 == 0)
        return rt_fail(ctx, "create cgroup \"%s/%s\": %s (no cgroup hierarchy is mounted)", parent, name,
                       strerror(ENODEV));
    struct mk *m = calloc(1, sizeof *m);
    if (m == NULL)
        return rt_fail(ctx, "create cgroup \"%s/%s\": %s", parent, name, strerror(ENOMEM));
    m->ctx = ctx;
    m->lay = lay;
    m->out = out;
    int rc = make(m, name, parent, r, ignore_devices);
    if (rc < 0) {
        rt_cgroup_made_close(out);
        while (m->nmade > 0) /* the cgroups made (empty: nothing joined them yet) */
            (void)rmdir(m->made[--m->nmade]);
        memset(&out->cg, 0, sizeof out->cg);
    }
    free(m);
    return rc;
}

void rt_cgroup_made_close(struct rt_cgroup_made *m)
{
    if (m->cgroup_fd >= 0)
        close(m->cgroup_fd);
    m->cgroup_fd = -1;
    for (size_t i = 0; i < m->nprocs; i++)
        close(m->procs_fds[i]);
    m->nprocs = 0;
}
