/* See rt_config_check.h. */
#include "rt_config_check.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

static const char *defer_why = "";

int rt_defer(const char *why)
{
    defer_why = why;
    return RT_DEFER;
}

const char *rt_defer_reason(void)
{
    return defer_why;
}

void *rt_arena_alloc(struct rt_arena *a, size_t size)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        void **more = realloc(a->p, cap * sizeof *more);
        if (more == NULL)
            return NULL;
        a->p = more;
        a->cap = cap;
    }
    void *m = calloc(1, size ? size : 1);
    if (m != NULL)
        a->p[a->n++] = m;
    return m;
}

char *rt_arena_strdup(struct rt_arena *a, const char *s)
{
    if (s == NULL)
        return NULL;
    size_t n = strlen(s);
    char *d = rt_arena_alloc(a, n + 1);
    if (d != NULL)
        memcpy(d, s, n + 1);
    return d;
}

char *rt_arena_printf(struct rt_arena *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    char *d = rt_arena_alloc(a, (size_t)n + 1);
    if (d == NULL)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(d, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return d;
}

void rt_arena_free(struct rt_arena *a)
{
    for (size_t i = 0; i < a->n; i++)
        free(a->p[i]);
    free(a->p);
    a->p = NULL;
    a->n = a->cap = 0;
}

int rt_cfg_err(struct rt_ctx *ctx, const char *where, const char *fmt, ...)
{
    char msg[1800];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return rt_fail(ctx, "config.json: %s: %s", where, msg);
}

/* An integer beyond 64 bits (yajl keeps its text only). */
static int bigint(yajl_val v)
{
    return v != NULL && YAJL_IS_NUMBER(v) && !YAJL_IS_INTEGER(v) && strpbrk(v->u.number.r, ".eE") == NULL;
}

const char *rt_cfg_tname(yajl_val v)
{
    if (v == NULL || YAJL_IS_NULL(v))
        return "NoneType";
    if (YAJL_IS_TRUE(v) || YAJL_IS_FALSE(v))
        return "bool";
    if (YAJL_IS_STRING(v))
        return "str";
    if (YAJL_IS_INTEGER(v) || bigint(v))
        return "int";
    if (YAJL_IS_NUMBER(v))
        return "float";
    if (YAJL_IS_OBJECT(v))
        return "dict";
    return "list";
}

int rt_cfg_repr(yajl_val v, char *buf, size_t len)
{
    if (v == NULL || YAJL_IS_NULL(v)) {
        snprintf(buf, len, "None");
        return 0;
    }
    if (YAJL_IS_TRUE(v) || YAJL_IS_FALSE(v)) {
        snprintf(buf, len, "%s", YAJL_IS_TRUE(v) ? "True" : "False");
        return 0;
    }
    if (YAJL_IS_INTEGER(v)) {
        snprintf(buf, len, "%lld", YAJL_GET_INTEGER(v));
        return 0;
    }
    if (bigint(v) && strlen(v->u.number.r) < len) {
        snprintf(buf, len, "%s", v->u.number.r);
        return 0;
    }
    if (!YAJL_IS_STRING(v))
        return rt_defer("an error quotes a value only Python's repr writes");
    const char *s = v->u.string;
    size_t n = strlen(s);
    if (n + 3 > len)
        return rt_defer("an error quotes a long value");
    int single = 0, dbl = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c >= 0x7f || c == '\\')
            return rt_defer("an error quotes a value only Python's repr writes");
        single |= c == '\'';
        dbl |= c == '"';
    }
    if (single && dbl)
        return rt_defer("an error quotes a value only Python's repr writes");
    char q = single ? '"' : '\'';
    snprintf(buf, len, "%c%s%c", q, s, q);
    return 0;
}

int rt_cfg_truthy(yajl_val v)
{
    if (v == NULL || YAJL_IS_NULL(v) || YAJL_IS_FALSE(v))
        return 0;
    if (YAJL_IS_TRUE(v))
        return 1;
    if (YAJL_IS_STRING(v))
        return v->u.string[0] != 0;
    if (YAJL_IS_INTEGER(v))
        return YAJL_GET_INTEGER(v) != 0;
    if (YAJL_IS_NUMBER(v))
        return YAJL_IS_DOUBLE(v) ? YAJL_GET_DOUBLE(v) != 0.0 : 1;
    if (YAJL_IS_OBJECT(v))
        return v->u.object.len > 0;
    return v->u.array.len > 0;
}

yajl_val rt_cfg_get(yajl_val obj, const char *key)
{
    if (obj == NULL || !YAJL_IS_OBJECT(obj))
        return NULL;
    for (size_t i = 0; i < obj->u.object.len; i++)
        if (strcmp(obj->u.object.keys[i], key) == 0)
            return obj->u.object.values[i];
    return NULL;
}

yajl_val rt_cfg_get_or(yajl_val obj, const char *key)
{
    yajl_val v = rt_cfg_get(obj, key);
    return rt_cfg_truthy(v) ? v : NULL;
}

static int type_err(struct rt_ctx *ctx, yajl_val v, const char *where, const char *what)
{
    return rt_cfg_err(ctx, where, "expected %s, got %s", what, rt_cfg_tname(v));
}

int rt_cfg_object(struct rt_ctx *ctx, yajl_val v, const char *where)
{
    return v != NULL && YAJL_IS_OBJECT(v) ? 0 : type_err(ctx, v, where, "an object");
}

int rt_cfg_string(struct rt_ctx *ctx, yajl_val v, const char *where)
{
    return v != NULL && YAJL_IS_STRING(v) ? 0 : type_err(ctx, v, where, "a string");
}

int rt_cfg_str_list(struct rt_ctx *ctx, yajl_val v, const char *where)
{
    if (v == NULL)
        return 0;
    if (!YAJL_IS_ARRAY(v))
        return type_err(ctx, v, where, "a list of strings");
    for (size_t i = 0; i < v->u.array.len; i++) {
        if (!YAJL_IS_STRING(v->u.array.values[i])) {
            char w[512];
            snprintf(w, sizeof w, "%s[%zu]", where, i);
            return type_err(ctx, v->u.array.values[i], w, "a string");
        }
    }
    return 0;
}

int rt_cfg_int(struct rt_ctx *ctx, yajl_val v, const char *where, long long lo, long long hi, long long *out)
{
    if (bigint(v)) {
        if (lo == LLONG_MIN || hi == LLONG_MAX)
            return rt_defer("an integer beyond 64 bits where Python fails its own way");
        return rt_cfg_err(ctx, where, "%s is out of range", v->u.number.r);
    }
    if (v == NULL || !YAJL_IS_INTEGER(v))
        return type_err(ctx, v, where, "an integer");
    long long x = YAJL_GET_INTEGER(v);
    if (x < lo || x > hi)
        return rt_cfg_err(ctx, where, "%lld is out of range", x);
    if (out != NULL)
        *out = x;
    return 0;
}

int rt_cfg_u64(struct rt_ctx *ctx, yajl_val v, const char *where, uint64_t *out)
{
    if (bigint(v)) {
        const char *r = v->u.number.r;
        char *end = NULL;
        errno = 0;
        unsigned long long x = strtoull(r, &end, 10);
        if (r[0] == '-' || errno == ERANGE || end == r || *end)
            return rt_cfg_err(ctx, where, "%s is out of range", r);
        *out = x;
        return 0;
    }
    if (v == NULL || !YAJL_IS_INTEGER(v))
        return rt_cfg_int(ctx, v, where, 0, 0, NULL); /* the type error */
    long long x = YAJL_GET_INTEGER(v);
    if (x < 0)
        return rt_cfg_err(ctx, where, "%lld is out of range", x);
    *out = (uint64_t)x;
    return 0;
}

int rt_cfg_is_list(yajl_val v)
{
    return v == NULL || YAJL_IS_ARRAY(v);
}

size_t rt_cfg_len(yajl_val v)
{
    return v != NULL && YAJL_IS_ARRAY(v) ? v->u.array.len : 0;
}

void rt_format_error(const struct pyrt_error *e, char *buf, size_t len)
{
    char why[128];
    if (e->err)
        snprintf(why, sizeof why, "%s", strerror(e->err));
    else
        snprintf(why, sizeof why, "failed");
    if (!e->op[0]) {
        if (e->path[0])
            snprintf(buf, len, "%.480s: %s", e->path, why);
        else
            snprintf(buf, len, "%s", why);
    } else if (e->path[0]) {
        snprintf(buf, len, "%.32s \"%.480s\": %s", e->op, e->path, why);
    } else {
        snprintf(buf, len, "%.32s: %s", e->op, why);
    }
}

/* -- paths ---------------------------------------------------------------------------------------------- */

char *rt_path_join(struct rt_arena *a, const char *dir, const char *name)
{
    if (name[0] == '/')
        return rt_arena_strdup(a, name);
    size_t n = strlen(dir);
    return rt_arena_printf(a, "%s%s%s", dir, n > 0 && dir[n - 1] != '/' ? "/" : "", name);
}

char *rt_normpath(struct rt_arena *a, const char *path)
{
    /* posixpath.normpath: "." and ".." resolved, slashes collapsed; exactly two
       leading slashes are kept */
    size_t n = strlen(path);
    int lead = path[0] == '/' ? (path[1] == '/' && path[2] != '/' ? 2 : 1) : 0;
    char *out = rt_arena_alloc(a, n + 3);
    char *copy = rt_arena_strdup(a, path);
    if (out == NULL || copy == NULL)
        return NULL;
    const char *parts[PATH_MAX / 2];
    size_t np = 0;
    char *save = NULL;
    for (char *t = strtok_r(copy, "/", &save); t != NULL; t = strtok_r(NULL, "/", &save)) {
        if (strcmp(t, ".") == 0)
            continue;
        if (strcmp(t, "..") == 0) {
            if (np > 0 && strcmp(parts[np - 1], "..") != 0)
                np--;
            else if (!lead)
                parts[np++] = t;
            continue;
        }
        if (np == sizeof parts / sizeof parts[0])
            return NULL;
        parts[np++] = t;
    }
    size_t w = 0;
    for (int i = 0; i < lead; i++)
        out[w++] = '/';
    for (size_t i = 0; i < np; i++) {
        size_t l = strlen(parts[i]);
        if (i > 0)
            out[w++] = '/';
        memcpy(out + w, parts[i], l);
        w += l;
    }
    if (w == 0)
        out[w++] = '.';
    out[w] = 0;
    return out;
}
