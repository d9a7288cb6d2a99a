/* See rt_cpuset.h. */
#include "rt_cpuset.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt_pyval.h"

static void msg(struct sbuf *why, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void msg(struct sbuf *why, const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    (void)pyrt_sbuf_append(why, line, strlen(line));
}

/* The zero of each run of ten Unicode decimal digits (category Nd, which Python's
 * re \d matches and int() reads) */
static const unsigned ND_ZEROS[] = {
    0x30,    0x660,   0x6f0,   0x7c0,   0x966,   0x9e6,   0xa66,   0xae6,   0xb66,   0xbe6,   0xc66,
    0xce6,   0xd66,   0xde6,   0xe50,   0xed0,   0xf20,   0x1040,  0x1090,  0x17e0,  0x1810,  0x1946,
    0x19d0,  0x1a80,  0x1a90,  0x1b50,  0x1bb0,  0x1c40,  0x1c50,  0xa620,  0xa8d0,  0xa900,  0xa9d0,
    0xa9f0,  0xaa50,  0xabf0,  0xff10,  0x104a0, 0x10d30, 0x11066, 0x110f0, 0x11136, 0x111d0, 0x112f0,
    0x11450, 0x114d0, 0x11650, 0x116c0, 0x11730, 0x118e0, 0x11950, 0x11c50, 0x11d50, 0x11da0, 0x16a60,
    0x16ac0, 0x16b50, 0x1d7ce, 0x1d7d8, 0x1d7e2, 0x1d7ec, 0x1d7f6, 0x1e140, 0x1e2f0, 0x1e950, 0x1fbf0,
};

/* The decimal digit at s (UTF-8), its value in *d and its length; 0 when none. */
static size_t digit_at(const char *s, int *d)
{
    const unsigned char *u = (const unsigned char *)s;
    unsigned cp;
    size_t n;
    if (u[0] < 0x80) {
        cp = u[0];
        n = 1;
    } else if (u[0] >= 0xf0 && u[1] && u[2] && u[3]) {
        cp = ((u[0] & 7u) << 18) | ((u[1] & 63u) << 12) | ((u[2] & 63u) << 6) | (u[3] & 63u);
        n = 4;
    } else if (u[0] >= 0xe0 && u[1] && u[2]) {
        cp = ((u[0] & 15u) << 12) | ((u[1] & 63u) << 6) | (u[2] & 63u);
        n = 3;
    } else if (u[0] >= 0xc0 && u[1]) {
        cp = ((u[0] & 31u) << 6) | (u[1] & 63u);
        n = 2;
    } else {
        return 0;
    }
    for (size_t i = 0; i < sizeof ND_ZEROS / sizeof ND_ZEROS[0]; i++)
        if (cp >= ND_ZEROS[i] && cp < ND_ZEROS[i] + 10) {
            *d = (int)(cp - ND_ZEROS[i]);
            return n;
        }
    return 0;
}

/* Digits at *s into a number (-1 when it is above 65535); 0 when there is no digit. */
static int number_at(const char **s, long *v)
{
    int d, any = 0;
    size_t n;
    *v = 0;
    while ((n = digit_at(*s, &d)) > 0) {
        if (*v >= 0)
            *v = *v * 10 + d > 65535 ? -1 : *v * 10 + d;
        *s += n;
        any = 1;
    }
    return any;
}

#define CPUSET_MAX 65536

int rt_cpuset_format(yajl_val v, const char *what, char **out, struct sbuf *why)
{
    struct sbuf items = {0}; /* the items, each NUL terminated */
    size_t nitems = 0;
    int rc = -1;
    unsigned char *set = NULL;
    struct sbuf val = {0}, txt = {0};
    if (rt_py_repr(&val, v) < 0)
        goto nomem;
    if (rt_py_is_int(v)) {
        if (pyrt_sbuf_append(&items, rt_py_int_text(v), strlen(rt_py_int_text(v)) + 1) < 0)
            goto nomem;
        nitems = 1;
    } else if (YAJL_IS_ARRAY(v)) {
        for (size_t i = 0; i < v->u.array.len; i++) {
            struct sbuf one = {0};
            if (rt_py_str(&one, v->u.array.values[i]) < 0 ||
                pyrt_sbuf_append(&items, one.p ? one.p : "", (one.p ? one.len : 0) + 1) < 0) {
                pyrt_sbuf_free(&one);
                goto nomem;
            }
            pyrt_sbuf_free(&one);
            nitems++;
        }
    } else if (YAJL_IS_STRING(v)) {
        const char *s = v->u.string;
        for (;; s++) {
            if (*s == ' ')
                continue;
            char c = *s == ',' ? 0 : *s;
            if (pyrt_sbuf_append(&items, &c, 1) < 0)
                goto nomem;
            if (c == 0)
                nitems++;
            if (*s == 0)
                break;
        }
    } else {
        msg(why, "invalid value %s for %s", val.p, what);
        goto out;
    }
    set = calloc(CPUSET_MAX, 1);
    if (set == NULL)
        goto nomem;
    const char *item = items.p;
    int any = 0;
    for (size_t i = 0; i < nitems; item += strlen(item) + 1, i++) {
        const char *s = item;
        long lo, hi;
        int ok = number_at(&s, &lo);
        hi = lo;
        if (ok && *s == '-') {
            s++;
            ok = number_at(&s, &hi);
        }
        if (!ok || *s) {
            msg(why, "invalid value %s for %s: use a list like 0-3,5", val.p, what);
            goto out;
        }
        /* lo above 65535 with no hi above it is hi < lo */
        if (hi < 0 || lo < 0 || hi < lo) {
            struct sbuf ir = {0};
            if (rt_py_repr_str(&ir, item) < 0)
                goto nomem;
            msg(why, "invalid value %s for %s: bad range %s", val.p, what, ir.p);
            pyrt_sbuf_free(&ir);
            goto out;
        }
        memset(set + lo, 1, (size_t)(hi - lo + 1));
        any = 1;
    }
    if (!any) {
        msg(why, "invalid value %s for %s: empty", val.p, what);
        goto out;
    }
    for (long c = 0; c < CPUSET_MAX; c++) {
        if (!set[c])
            continue;
        long e = c;
        while (e + 1 < CPUSET_MAX && set[e + 1])
            e++;
        char part[48];
        if (e > c)
            snprintf(part, sizeof part, "%s%ld-%ld", txt.len ? "," : "", c, e);
        else
            snprintf(part, sizeof part, "%s%ld", txt.len ? "," : "", c);
        if (pyrt_sbuf_append(&txt, part, strlen(part)) < 0)
            goto nomem;
        c = e;
    }
    *out = txt.p;
    txt.p = NULL;
    rc = 0;
    goto out;
nomem:
    pyrt_sbuf_free(why);
    errno = ENOMEM;
out:
    pyrt_sbuf_free(&items);
    pyrt_sbuf_free(&val);
    pyrt_sbuf_free(&txt);
    free(set);
    return rc;
}

