/* See rt_resources.h. Each check is made in the order pyrt/ocirt/resources.py
 * (parse_resources, block_io) and pyrt/ocirt/mounts.py (device) make it, so the
 * first error is the same one. Python values are judged as Python sees them
 * (rt_pyval.h): truth, types, equality (-1.0 == -1, false == 0). */
#include "rt_resources.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt_cpuset.h"
#include "rt_pyval.h"

#define MAJOR_MAX "4095"   /* dev_t: a 12-bit major, */
#define MINOR_MAX "1048575" /* a 20-bit minor */
#define U64_MAX "18446744073709551615"

struct p {
    struct rt_ctx *ctx;
    struct rt_resources *r;
    size_t cap; /* of r->devices */
};

static int fail(struct p *p, const char *where, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(struct p *p, const char *where, const char *fmt, ...)
{
    char msg[1800];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return rt_fail(p->ctx, "config.json: %s: %s", where, msg);
}

static int oom(struct p *p)
{
    return rt_fail(p->ctx, "linux.resources: %s", strerror(ENOMEM));
}

/* fields.typed for dict/list, on a value that was `x or {}`: a falsy value is
 * the empty one */
static int check_obj(struct p *p, yajl_val v, const char *where)
{
    if (rt_py_truthy(v) && !YAJL_IS_OBJECT(v))
        return fail(p, where, "expected an object, got %s", rt_py_type(v));
    return 0;
}

static int check_list(struct p *p, yajl_val v, const char *where)
{
    if (rt_py_truthy(v) && !YAJL_IS_ARRAY(v))
        return fail(p, where, "expected a list, got %s", rt_py_type(v));
    return 0;
}

/* fields.integer: the value's decimal text, or NULL with the error set */
static const char *integer(struct p *p, yajl_val v, const char *where, const char *lo, const char *hi)
{
    if (!rt_py_is_int(v)) {
        fail(p, where, "expected an integer, got %s", rt_py_type(v));
        return NULL;
    }
    const char *t = rt_py_int_text(v);
    if ((lo && rt_dec_cmp(t, lo) < 0) || (hi && rt_dec_cmp(t, hi) > 0)) {
        fail(p, where, "%s is out of range", t);
        return NULL;
    }
    return t;
}

static int small(const char *t)
{
    return (int)strtol(t, NULL, 10);
}

static int dup_to(struct p *p, char **dst, const char *t)
{
    free(*dst);
    *dst = strdup(t);
    return *dst == NULL ? oom(p) : 0;
}

/* The elements of `x or []` as Python iterates them: a list's items, an object's
 * keys, a string's characters; n = 0 for a falsy value. A truthy number or true
 * is no iterable: Python fails there with a TypeError, reported here as a type
 * error of the field. */
static int elements(struct p *p, yajl_val v, const char *where, size_t *n)
{
    *n = 0;
    if (!rt_py_truthy(v))
        return 0;
    if (YAJL_IS_ARRAY(v))
        *n = v->u.array.len;
    else if (YAJL_IS_OBJECT(v) || YAJL_IS_STRING(v))
        *n = 1; /* its first element is a str, the item check fails on it */
    else
        return fail(p, where, "expected a list, got %s", rt_py_type(v));
    return 0;
}

static yajl_val element(yajl_val v, size_t i)
{
    return YAJL_IS_ARRAY(v) ? v->u.array.values[i] : v; /* v: a string or object (see elements) */
}

static int check_item_obj(struct p *p, yajl_val list, yajl_val d, const char *where)
{
    if (!YAJL_IS_ARRAY(list)) /* a string's character or an object's key */
        return fail(p, where, "expected an object, got str");
    if (d == NULL || !YAJL_IS_OBJECT(d))
        return fail(p, where, "expected an object, got %s", rt_py_type(d));
    return 0;
}

static int repr_of(struct p *p, yajl_val v, struct sbuf *b)
{
    if (rt_py_repr(b, v) < 0)
        return oom(p);
    return 0;
}

/* -- device rules -------------------------------------------------------------------- */

static int add_rule(struct p *p, char type, const char *major, const char *minor, const char *access, int allow)
{
    struct rt_resources *r = p->r;
    if (r->ndevices == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 16;
        struct rt_res_dev *more = realloc(r->devices, cap * sizeof *more);
        if (more == NULL)
            return oom(p);
        r->devices = more;
        p->cap = cap;
    }
    struct rt_res_dev *d = &r->devices[r->ndevices];
    memset(d, 0, sizeof *d);
    d->type = type;
    d->allow = allow;
    snprintf(d->access, sizeof d->access, "%s", access);
    r->ndevices++;
    if ((major && (d->major = strdup(major)) == NULL) || (minor && (d->minor = strdup(minor)) == NULL))
        return oom(p);
    return 0;
}

/* DEFAULT_DEVICE_RULES of resources.py, in its order */
static const struct {
    char type;
    const char *major, *minor, *access;
} DEFAULT_RULES[] = {
    {'c', NULL, NULL, "m"},      {'b', NULL, NULL, "m"},     {'c', "1", "3", "rwm"},  {'c', "1", "8", "rwm"},
    {'c', "1", "7", "rwm"},      {'c', "5", "0", "rwm"},     {'c', "1", "5", "rwm"},  {'c', "1", "9", "rwm"},
    {'c', "5", "1", "rwm"},      {'c', "136", NULL, "rwm"},  {'c', "5", "2", "rwm"},  {'c', "10", "200", "rwm"},
};

/* mounts.py's DEFAULT_DEVICES */
static const struct {
    const char *path, *major, *minor;
} DEFAULT_DEVICES[] = {
    {"/dev/null", "1", "3"}, {"/dev/zero", "1", "5"},    {"/dev/full", "1", "7"},
    {"/dev/random", "1", "8"}, {"/dev/urandom", "1", "9"}, {"/dev/tty", "5", "0"},
};

/* os.path.normpath of an absolute path (in place) */
static void normpath(char *s)
{
    size_t n = strlen(s);
    int two = n >= 2 && s[0] == '/' && s[1] == '/' && (n == 2 || s[2] != '/'); /* "//" is kept */
    char *out = s + (two ? 2 : 1);
    const char *r = s;
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", s);
    r = buf;
    char *w = out;
    while (*r) {
        while (*r == '/')
            r++;
        const char *e = strchr(r, '/');
        size_t len = e ? (size_t)(e - r) : strlen(r);
        if (len == 0)
            break;
        if (len == 1 && r[0] == '.') {
        } else if (len == 2 && r[0] == '.' && r[1] == '.') {
            while (w > out && w[-1] != '/')
                w--;
            if (w > out)
                w--;
        } else {
            if (w > out)
                *w++ = '/';
            memmove(w, r, len);
            w += len;
        }
        r += len;
    }
    *w = 0;
}

struct spec_dev {
    char type;        /* 'c' or 'b' (a fifo makes no rule) */
    const char *major, *minor;
};

/* linux.devices, checked as mounts.py's device(); the c and b ones into devs. */
static int spec_devices(struct p *p, yajl_val lx, int dev_is_fs, struct spec_dev **devs, size_t *ndevs,
                        char ***names, size_t *nnames)
{
    yajl_val list = rt_py_get(lx, "devices");
    size_t n;
    if (elements(p, list, "linux.devices", &n) < 0)
        return -1;
    *devs = calloc(n + 6, sizeof **devs);
    *names = calloc(n + 1, sizeof **names);
    if (*devs == NULL || *names == NULL)
        return oom(p);
    for (size_t i = 0; i < n; i++) {
        char where[64], w2[96];
        snprintf(where, sizeof where, "linux.devices[%zu]", i);
        yajl_val d = element(list, i);
        if (check_item_obj(p, list, d, where) < 0)
            return -1;
        yajl_val pv = rt_py_get(d, "path");
        if (pv == NULL || !YAJL_IS_STRING(pv) || pv->u.string[0] != '/') {
            snprintf(w2, sizeof w2, "%s.path", where);
            return fail(p, w2, "an absolute path is needed");
        }
        yajl_val kv = rt_py_get(d, "type");
        const char *k = kv != NULL && YAJL_IS_STRING(kv) ? kv->u.string : "";
        if (strcmp(k, "c") && strcmp(k, "u") && strcmp(k, "b") && strcmp(k, "p")) {
            struct sbuf b = {0};
            if (repr_of(p, kv, &b) < 0)
                return -1;
            snprintf(w2, sizeof w2, "%s.type", where);
            fail(p, w2, "unknown device type %s (c, b, u or p)", b.p);
            pyrt_sbuf_free(&b);
            return -1;
        }
        const char *major = "0", *minor = "0";
        if (k[0] != 'p') {
            yajl_val mj = rt_py_get(d, "major"), mn = rt_py_get(d, "minor");
            snprintf(w2, sizeof w2, "%s.major", where);
            if (mj != NULL && (major = integer(p, mj, w2, "0", NULL)) == NULL)
                return -1;
            snprintf(w2, sizeof w2, "%s.minor", where);
            if (mn != NULL && (minor = integer(p, mn, w2, "0", NULL)) == NULL)
                return -1;
        }
        yajl_val mode = rt_py_get(d, "fileMode");
        snprintf(w2, sizeof w2, "%s.fileMode", where);
        if (mode != NULL && !YAJL_IS_NULL(mode) && integer(p, mode, w2, "0", "65535") == NULL) /* an st_mode (type bits) too */
            return -1;
        static const char *const ids[] = {"uid", "gid"};
        for (int j = 0; j < 2; j++) {
            yajl_val id = rt_py_get(d, ids[j]);
            snprintf(w2, sizeof w2, "%s.%s", where, ids[j]);
            if (id != NULL && integer(p, id, w2, "0", NULL) == NULL)
                return -1;
        }
        char *name = strdup(pv->u.string);
        if (name == NULL)
            return oom(p);
        normpath(name);
        (*names)[(*nnames)++] = name;
        if (k[0] != 'p')
            (*devs)[(*ndevs)++] = (struct spec_dev){k[0] == 'b' ? 'b' : 'c', major, minor};
    }
    if (dev_is_fs)
        for (size_t i = 0; i < sizeof DEFAULT_DEVICES / sizeof DEFAULT_DEVICES[0]; i++) {
            int named = 0;
            for (size_t j = 0; j < *nnames && !named; j++)
                named = strcmp((*names)[j], DEFAULT_DEVICES[i].path) == 0;
            if (!named)
                (*devs)[(*ndevs)++] = (struct spec_dev){'c', DEFAULT_DEVICES[i].major, DEFAULT_DEVICES[i].minor};
        }
    return 0;
}

/* limits.py's parse_cpuset then format_cpuset, the error wrapped as resources.py does */
static int cpuset(struct p *p, yajl_val v, const char *key, char **out)
{
    char where[64], what[32];
    snprintf(where, sizeof where, "linux.resources.cpu.%s", key);
    snprintf(what, sizeof what, "cpuset %s", key);
    struct sbuf why = {0};
    int rc = rt_cpuset_format(v, what, out, &why);
    if (rc < 0 && why.p != NULL)
        fail(p, where, "%s", why.p);
    else if (rc < 0)
        oom(p);
    pyrt_sbuf_free(&why);
    return rc;
}

/* -- blockIO -------------------------------------------------------------------------------- */

static int blk_device(struct p *p, yajl_val list, yajl_val d, const char *where, char dev[24])
{
    char w[160];
    if (check_item_obj(p, list, d, where) < 0)
        return -1;
    snprintf(w, sizeof w, "%s.major", where);
    const char *mj = integer(p, rt_py_get(d, "major"), w, "0", MAJOR_MAX);
    if (mj == NULL)
        return -1;
    snprintf(w, sizeof w, "%s.minor", where);
    const char *mn = integer(p, rt_py_get(d, "minor"), w, "0", MINOR_MAX);
    if (mn == NULL)
        return -1;
    snprintf(dev, 24, "%s:%s", mj, mn);
    return 0;
}

static int blk_add(struct p *p, struct rt_res_blk **arr, size_t *n, const char *dev, uint64_t value)
{
    if ((*n & (*n - 1)) == 0) { /* 0, 1, 2, 4...: grow to the next power of two */
        struct rt_res_blk *more = realloc(*arr, (*n ? *n * 2 : 1) * sizeof *more);
        if (more == NULL)
            return oom(p);
        *arr = more;
    }
    snprintf((*arr)[*n].dev, sizeof (*arr)[*n].dev, "%s", dev);
    (*arr)[(*n)++].value = value;
    p->r->has_blkio = 1;
    return 0;
}

static const char *const THROTTLES[RT_RES_NTHROTTLES] = {"throttleReadBpsDevice", "throttleWriteBpsDevice",
                                                         "throttleReadIOPSDevice", "throttleWriteIOPSDevice"};

static int block_io(struct p *p, yajl_val bio)
{
    struct rt_resources *r = p->r;
    if (check_obj(p, bio, "linux.resources.blockIO") < 0)
        return -1;
    static const char *const wkeys[] = {"weight", "leafWeight"};
    for (int i = 0; i < 2; i++) {
        yajl_val v = rt_py_get(bio, wkeys[i]);
        char w[64];
        snprintf(w, sizeof w, "linux.resources.blockIO.%s", wkeys[i]);
        if (v != NULL && !YAJL_IS_NULL(v) && !rt_py_eq(v, 0)) {
            const char *t = integer(p, v, w, "10", "1000");
            if (t == NULL)
                return -1;
            *(i ? &r->blk_leaf_weight : &r->blk_weight) = small(t);
            r->has_blkio = 1;
        }
    }
    yajl_val wd = rt_py_get(bio, "weightDevice");
    if (check_list(p, wd, "linux.resources.blockIO.weightDevice") < 0)
        return -1;
    size_t n = rt_py_truthy(wd) ? wd->u.array.len : 0;
    for (size_t i = 0; i < n; i++) {
        char where[96], w[128], dev[24];
        snprintf(where, sizeof where, "linux.resources.blockIO.weightDevice[%zu]", i);
        yajl_val d = wd->u.array.values[i];
        if (blk_device(p, wd, d, where, dev) < 0)
            return -1;
        for (int j = 0; j < 2; j++) {
            yajl_val v = rt_py_get(d, wkeys[j]);
            if (v == NULL || YAJL_IS_NULL(v) || rt_py_eq(v, 0))
                continue;
            snprintf(w, sizeof w, "%s.%s", where, wkeys[j]);
            const char *t = integer(p, v, w, "10", "1000");
            if (t == NULL)
                return -1;
            if (j == 0 ? blk_add(p, &r->weight_dev, &r->nweight_dev, dev, (uint64_t)small(t))
                       : blk_add(p, &r->leaf_weight_dev, &r->nleaf_weight_dev, dev, (uint64_t)small(t)))
                return -1;
        }
    }
    for (int k = 0; k < RT_RES_NTHROTTLES; k++) {
        char lw[64];
        snprintf(lw, sizeof lw, "linux.resources.blockIO.%s", THROTTLES[k]);
        yajl_val items = rt_py_get(bio, THROTTLES[k]);
        if (check_list(p, items, lw) < 0)
            return -1;
        n = rt_py_truthy(items) ? items->u.array.len : 0;
        for (size_t i = 0; i < n; i++) {
            char where[96], w[128], dev[24];
            snprintf(where, sizeof where, "%s[%zu]", lw, i);
            yajl_val d = items->u.array.values[i];
            if (blk_device(p, items, d, where, dev) < 0)
                return -1;
            snprintf(w, sizeof w, "%s.rate", where);
            const char *t = integer(p, rt_py_get(d, "rate"), w, "0", U64_MAX);
            if (t == NULL)
                return -1;
            uint64_t rate = strtoull(t, NULL, 10);
            if (rate && blk_add(p, &r->throttle[k], &r->nthrottle[k], dev, rate) < 0)
                return -1;
        }
    }
    return 0;
}

/* -- linux.resources ------------------------------------------------------------------------ */

static int parse(struct p *p, yajl_val lx, int dev_is_fs)
{
    struct rt_resources *r = p->r;
    struct spec_dev *devs = NULL;
    char **names = NULL;
    size_t ndevs = 0, nnames = 0;
    int rc = -1;
    if (lx != NULL && !YAJL_IS_OBJECT(lx))
        lx = NULL;
    if (spec_devices(p, lx, dev_is_fs, &devs, &ndevs, &names, &nnames) < 0)
        goto out;

    yajl_val res = rt_py_get(lx, "resources");
    if (check_obj(p, res, "linux.resources") < 0)
        goto out;
    static const char *const unsupported[] = {"hugepageLimits", "network", "rdma"};
    for (int i = 0; i < 3; i++)
        if (rt_py_truthy(rt_py_get(res, unsupported[i]))) {
            char w[64];
            snprintf(w, sizeof w, "linux.resources.%s", unsupported[i]);
            fail(p, w, "not supported by pyrt-runtime");
            goto out;
        }
    yajl_val mem = rt_py_get(res, "memory"), cpu = rt_py_get(res, "cpu");
    /* (Python reads these before it checks the types: a truthy non-object stops at
       the type check below here) */
    if (check_obj(p, mem, "linux.resources.memory") < 0)
        goto out;
    static const char *const kernel[] = {"kernel", "kernelTCP"};
    for (int i = 0; i < 2; i++) {
        yajl_val v = rt_py_get(mem, kernel[i]);
        if (v != NULL && !YAJL_IS_NULL(v) && !rt_py_eq(v, -1) && !rt_py_eq(v, 0)) {
            char w[64];
            snprintf(w, sizeof w, "linux.resources.memory.%s", kernel[i]);
            fail(p, w, "not supported by pyrt-runtime (nor by cgroup2)");
            goto out;
        }
    }
    if (check_obj(p, cpu, "linux.resources.cpu") < 0)
        goto out;
    static const char *const realtime[] = {"realtimeRuntime", "realtimePeriod"};
    for (int i = 0; i < 2; i++)
        if (rt_py_truthy(rt_py_get(cpu, realtime[i]))) {
            char w[64];
            snprintf(w, sizeof w, "linux.resources.cpu.%s", realtime[i]);
            fail(p, w, "not supported by pyrt-runtime");
            goto out;
        }

    /* memory */
    static const char *const mkeys[] = {"limit", "reservation", "swap"};
    char **mdst[] = {&r->mem_limit, &r->mem_reservation, &r->mem_swap};
    for (int i = 0; i < 3; i++) {
        yajl_val v = rt_py_get(mem, mkeys[i]);
        char w[64];
        snprintf(w, sizeof w, "linux.resources.memory.%s", mkeys[i]);
        if (v == NULL || YAJL_IS_NULL(v))
            continue;
        /* bounded: a v1 kernel takes a larger number as 0 (a container killed at once) */
        const char *t = integer(p, v, w, NULL, "9223372036854775807");
        if (t == NULL)
            goto out;
        if ((rt_dec_cmp(t, "0") > 0 || (i == 2 && strcmp(t, "-1") == 0)) && dup_to(p, mdst[i], t) < 0)
            goto out;
    }
    yajl_val sw = rt_py_get(mem, "swappiness");
    if (sw != NULL && !YAJL_IS_NULL(sw)) {
        const char *t = integer(p, sw, "linux.resources.memory.swappiness", "0", "100");
        if (t == NULL)
            goto out;
        r->mem_swappiness = small(t);
    }
    r->mem_disable_oom = rt_py_truthy(rt_py_get(mem, "disableOOMKiller"));
    if (r->mem_limit && r->mem_swap && rt_dec_cmp(r->mem_swap, "0") > 0 &&
        rt_dec_cmp(r->mem_swap, r->mem_limit) < 0) {
        fail(p, "linux.resources.memory.swap", "memory+swap must not be below the memory limit");
        goto out;
    }
    r->has_memory = r->mem_limit || r->mem_reservation || r->mem_swap || r->mem_swappiness >= 0 ||
                    r->mem_disable_oom;

    /* cpu */
    yajl_val v = rt_py_get(cpu, "shares");
    if (rt_py_truthy(v)) {
        const char *t = integer(p, v, "linux.resources.cpu.shares", "0", NULL);
        if (t == NULL || dup_to(p, &r->cpu_shares, t) < 0)
            goto out;
    }
    v = rt_py_get(cpu, "quota");
    if (v != NULL && !YAJL_IS_NULL(v) && !rt_py_eq(v, 0)) {
        const char *t = integer(p, v, "linux.resources.cpu.quota", NULL, NULL);
        if (t == NULL || dup_to(p, &r->cpu_quota, t) < 0)
            goto out;
    }
    v = rt_py_get(cpu, "period");
    if (rt_py_truthy(v)) {
        const char *t = integer(p, v, "linux.resources.cpu.period", "1000", "1000000");
        if (t == NULL)
            goto out;
        r->cpu_period = strtol(t, NULL, 10);
    }
    if (rt_py_truthy(rt_py_get(cpu, "cpus")) && cpuset(p, rt_py_get(cpu, "cpus"), "cpus", &r->cpus) < 0)
        goto out;
    if (rt_py_truthy(rt_py_get(cpu, "mems")) && cpuset(p, rt_py_get(cpu, "mems"), "mems", &r->mems) < 0)
        goto out;
    r->has_cpu = r->cpu_shares || r->cpu_quota || r->cpu_period || r->cpus || r->mems;

    /* pids */
    yajl_val pids = rt_py_get(res, "pids");
    if (check_obj(p, pids, "linux.resources.pids") < 0)
        goto out;
    v = rt_py_get(pids, "limit");
    if (v != NULL && !YAJL_IS_NULL(v) && !rt_py_eq(v, 0)) {
        const char *t = integer(p, v, "linux.resources.pids.limit", "-1", NULL);
        if (t == NULL || dup_to(p, &r->pids, t) < 0)
            goto out;
    }

    /* devices */
    yajl_val list = rt_py_get(res, "devices");
    size_t n;
    if (elements(p, list, "linux.resources.devices", &n) < 0)
        goto out;
    for (size_t i = 0; i < n; i++) {
        char where[64], w[96];
        snprintf(where, sizeof where, "linux.resources.devices[%zu]", i);
        yajl_val d = element(list, i);
        if (check_item_obj(p, list, d, where) < 0)
            goto out;
        yajl_val kv = rt_py_get(d, "type");
        char kind = 'a';
        if (rt_py_truthy(kv)) {
            if (!YAJL_IS_STRING(kv) || (strcmp(kv->u.string, "a") && strcmp(kv->u.string, "b") &&
                                        strcmp(kv->u.string, "c"))) {
                struct sbuf b = {0};
                if (repr_of(p, kv, &b) < 0)
                    goto out;
                snprintf(w, sizeof w, "%s.type", where);
                fail(p, w, "unknown device type %s", b.p);
                pyrt_sbuf_free(&b);
                goto out;
            }
            kind = kv->u.string[0];
        }
        yajl_val av = rt_py_get(d, "access");
        const char *access = "rwm";
        if (rt_py_truthy(av)) {
            if (!YAJL_IS_STRING(av) || av->u.string[strspn(av->u.string, "rwm")] != 0) {
                struct sbuf b = {0};
                if (repr_of(p, av, &b) < 0)
                    goto out;
                snprintf(w, sizeof w, "%s.access", where);
                fail(p, w, "invalid access %s", b.p);
                pyrt_sbuf_free(&b);
                goto out;
            }
            access = av->u.string;
        }
        const char *num[2] = {NULL, NULL};
        static const char *const nkeys[] = {"major", "minor"};
        for (int j = 0; j < 2; j++) {
            yajl_val nv = rt_py_get(d, nkeys[j]);
            if (nv == NULL || YAJL_IS_NULL(nv) || rt_py_eq(nv, -1))
                continue;
            snprintf(w, sizeof w, "%s.%s", where, nkeys[j]);
            if ((num[j] = integer(p, nv, w, "0", NULL)) == NULL)
                goto out;
        }
        char acc[4];
        size_t na = 0;
        for (const char *c = "rwm"; *c; c++)
            if (strchr(access, *c))
                acc[na++] = *c;
        acc[na] = 0;
        if (kind == 'a')
            num[0] = num[1] = NULL;
        if (add_rule(p, kind, num[0], num[1], acc, rt_py_truthy(rt_py_get(d, "allow"))) < 0)
            goto out;
    }
    if (r->ndevices) {
        /* as runc: the devices the container gets are allowed after the spec's rules */
        for (size_t i = 0; i < ndevs; i++)
            if (add_rule(p, devs[i].type, devs[i].major, devs[i].minor, "rwm", 1) < 0)
                goto out;
        for (size_t i = 0; i < sizeof DEFAULT_RULES / sizeof DEFAULT_RULES[0]; i++)
            if (add_rule(p, DEFAULT_RULES[i].type, DEFAULT_RULES[i].major, DEFAULT_RULES[i].minor,
                         DEFAULT_RULES[i].access, 1) < 0)
                goto out;
    }

    /* blockIO */
    if (block_io(p, rt_py_get(res, "blockIO")) < 0)
        goto out;

    /* unified */
    yajl_val uni = rt_py_get(res, "unified");
    if (check_obj(p, uni, "linux.resources.unified") < 0)
        goto out;
    n = rt_py_truthy(uni) ? uni->u.object.len : 0;
    if (n) {
        r->unified_keys = calloc(n, sizeof *r->unified_keys);
        r->unified_values = calloc(n, sizeof *r->unified_values);
        if (r->unified_keys == NULL || r->unified_values == NULL) {
            oom(p);
            goto out;
        }
    }
    for (size_t i = 0; i < n; i++) {
        const char *k = uni->u.object.keys[i];
        int seen = 0; /* a repeated key: its first place, its last value */
        for (size_t j = 0; j < r->nunified && !seen; j++)
            seen = strcmp(r->unified_keys[j], k) == 0;
        if (seen)
            continue;
        yajl_val uv = rt_py_get(uni, k);
        if (strchr(k, '/') || k[0] == '.' || uv == NULL || !YAJL_IS_STRING(uv)) {
            char w[1024];
            snprintf(w, sizeof w, "linux.resources.unified.%s", k);
            fail(p, w, "invalid");
            goto out;
        }
        /* cgroup.procs and cgroup.threads would move any host process in (and delete
         * kill it), cgroup.kill, .freeze, .subtree_control, .type act on the tree */
        if (strncmp(k, "cgroup.", 7) == 0 && strcmp(k, "cgroup.max.depth") != 0 &&
            strcmp(k, "cgroup.max.descendants") != 0) {
            char w[1024];
            snprintf(w, sizeof w, "linux.resources.unified.%s", k);
            fail(p, w, "not a resource limit: only cgroup.max.depth and cgroup.max.descendants of the "
                       "cgroup.* files may be set");
            goto out;
        }
        if ((r->unified_keys[r->nunified] = strdup(k)) == NULL ||
            (r->unified_values[r->nunified] = strdup(uv->u.string)) == NULL) {
            r->nunified++;
            oom(p);
            goto out;
        }
        r->nunified++;
    }
    rc = 0;
out:
    for (size_t i = 0; i < nnames; i++)
        free(names[i]);
    free(names);
    free(devs);
    return rc;
}

int rt_resources_parse_ex(struct rt_ctx *ctx, yajl_val linux_obj, int dev_is_fs, struct rt_resources *out)
{
    memset(out, 0, sizeof *out);
    out->mem_swappiness = -1;
    struct p p = {ctx, out, 0};
    if (parse(&p, linux_obj, dev_is_fs) < 0) {
        rt_resources_free(out);
        return -1;
    }
    return 0;
}

int rt_resources_parse(struct rt_ctx *ctx, yajl_val linux_obj, struct rt_resources *out)
{
    return rt_resources_parse_ex(ctx, linux_obj, 1, out);
}

void rt_resources_free(struct rt_resources *r)
{
    free(r->mem_limit);
    free(r->mem_reservation);
    free(r->mem_swap);
    free(r->cpu_shares);
    free(r->cpu_quota);
    free(r->cpus);
    free(r->mems);
    free(r->pids);
    for (size_t i = 0; i < r->ndevices; i++) {
        free(r->devices[i].major);
        free(r->devices[i].minor);
    }
    free(r->devices);
    free(r->weight_dev);
    free(r->leaf_weight_dev);
    for (int k = 0; k < RT_RES_NTHROTTLES; k++)
        free(r->throttle[k]);
    for (size_t i = 0; i < r->nunified; i++) {
        free(r->unified_keys[i]);
        free(r->unified_values[i]);
    }
    free(r->unified_keys);
    free(r->unified_values);
    memset(r, 0, sizeof *r);
    r->mem_swappiness = -1;
}

int rt_resources_any(const struct rt_resources *r, int ignore_devices)
{
    return r != NULL && (r->has_memory || r->has_cpu || r->pids || (r->ndevices && !ignore_devices) ||
                         r->has_blkio || r->nunified);
}

size_t rt_resources_controllers(const struct rt_resources *r, int ignore_devices, const char *out[8])
{
    size_t n = 0;
    if (r != NULL) {
        if (r->has_memory)
            out[n++] = "memory";
        if (r->cpu_shares || r->cpu_quota || r->cpu_period)
            out[n++] = "cpu";
        if (r->cpus || r->mems)
            out[n++] = "cpuset";
        if (r->pids)
            out[n++] = "pids";
        if (r->ndevices && !ignore_devices)
            out[n++] = "devices";
        if (r->has_blkio) {
            out[n++] = "blkio"; /* v1's name and cgroup2's: each counts where the host has it */
            out[n++] = "io";
        }
    }
    out[n] = NULL;
    return n;
}
