/* See rt_pyval.h. */
#include "rt_pyval.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* repr() output past this is not needed: one-line error messages are cut at 2 KiB */
#define REPR_MAX 4096

static int put(struct sbuf *b, const char *s)
{
    return pyrt_sbuf_append(b, s, strlen(s));
}

yajl_val rt_py_get(yajl_val obj, const char *key)
{
    if (obj == NULL || !YAJL_IS_OBJECT(obj))
        return NULL;
    for (size_t i = obj->u.object.len; i-- > 0;)
        if (strcmp(obj->u.object.keys[i], key) == 0)
            return obj->u.object.values[i];
    return NULL;
}

int rt_py_is_int(yajl_val v)
{
    return v != NULL && YAJL_IS_NUMBER(v) && v->u.number.r != NULL && strpbrk(v->u.number.r, ".eE") == NULL;
}

const char *rt_py_int_text(yajl_val v)
{
    const char *r = v->u.number.r;
    return strcmp(r, "-0") == 0 ? "0" : r;
}

static double as_double(yajl_val v)
{
    return strtod(v->u.number.r, NULL); /* overflow gives inf, as Python's float() */
}

const char *rt_py_type(yajl_val v)
{
    if (v == NULL)
        return "NoneType";
    switch (v->type) {
    case yajl_t_string:
        return "str";
    case yajl_t_number:
        return rt_py_is_int(v) ? "int" : "float";
    case yajl_t_object:
        return "dict";
    case yajl_t_array:
        return "list";
    case yajl_t_true:
    case yajl_t_false:
        return "bool";
    default:
        return "NoneType";
    }
}

int rt_py_truthy(yajl_val v)
{
    if (v == NULL)
        return 0;
    switch (v->type) {
    case yajl_t_string:
        return v->u.string[0] != 0;
    case yajl_t_number:
        if (rt_py_is_int(v))
            return strcmp(rt_py_int_text(v), "0") != 0;
        return as_double(v) != 0;
    case yajl_t_object:
        return v->u.object.len > 0;
    case yajl_t_array:
        return v->u.array.len > 0;
    case yajl_t_true:
        return 1;
    default:
        return 0;
    }
}

int rt_py_eq(yajl_val v, long long n)
{
    if (v == NULL)
        return 0;
    if (YAJL_IS_TRUE(v))
        return n == 1;
    if (YAJL_IS_FALSE(v))
        return n == 0;
    if (!YAJL_IS_NUMBER(v))
        return 0;
    if (rt_py_is_int(v)) {
        char t[32];
        snprintf(t, sizeof t, "%lld", n);
        return strcmp(rt_py_int_text(v), t) == 0;
    }
    return as_double(v) == (double)n;
}

/* -- decimal text ------------------------------------------------------------------ */

static int mag_cmp(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la != lb)
        return la < lb ? -1 : 1;
    int c = strcmp(a, b);
    return c < 0 ? -1 : c > 0;
}

int rt_dec_cmp(const char *a, const char *b)
{
    int na = a[0] == '-', nb = b[0] == '-';
    if (na != nb)
        return na ? -1 : 1;
    int c = mag_cmp(a + na, b + nb);
    return na ? -c : c;
}

char *rt_dec_sub(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *out = malloc(la + 1);
    if (out == NULL)
        return NULL;
    int borrow = 0;
    for (size_t i = 0; i < la; i++) {
        int da = a[la - 1 - i] - '0' - borrow;
        int db = i < lb ? b[lb - 1 - i] - '0' : 0;
        borrow = da < db;
        out[la - 1 - i] = (char)('0' + da + (borrow ? 10 : 0) - db);
    }
    out[la] = 0;
    size_t z = 0;
    while (out[z] == '0' && out[z + 1])
        z++;
    memmove(out, out + z, la + 1 - z);
    return out;
}

/* -- repr ---------------------------------------------------------------------------- */

/* Python's repr of a float: the shortest digits that read back the same, fixed
 * notation for exponents -4..15, else d.ddde+XX. */
static int repr_float(struct sbuf *b, double d)
{
    if (isinf(d))
        return put(b, d < 0 ? "-inf" : "inf");
    if (isnan(d))
        return put(b, "nan");
    char e[40];
    for (int p = 1; p <= 17; p++) {
        snprintf(e, sizeof e, "%.*e", p - 1, d);
        if (strtod(e, NULL) == d)
            break;
    }
    char digits[24];
    size_t nd = 0;
    const char *s = e;
    int neg = *s == '-';
    s += neg;
    for (; *s && *s != 'e'; s++)
        if (*s >= '0' && *s <= '9' && nd < sizeof digits - 1)
            digits[nd++] = *s;
    int exp = *s == 'e' ? atoi(s + 1) : 0;
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    digits[nd] = 0;
    char out[64];
    size_t o = 0;
    if (neg)
        out[o++] = '-';
    if (exp < -4 || exp >= 16) {
        out[o++] = digits[0];
        if (nd > 1) {
            out[o++] = '.';
            memcpy(out + o, digits + 1, nd - 1);
            o += nd - 1;
        }
        snprintf(out + o, sizeof out - o, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    } else if (exp < 0) {
        out[o++] = '0';
        out[o++] = '.';
        for (int i = -1; i > exp; i--)
            out[o++] = '0';
        memcpy(out + o, digits, nd);
        out[o + nd] = 0;
    } else {
        for (int i = 0; i <= exp; i++)
            out[o++] = (size_t)i < nd ? digits[i] : '0';
        out[o++] = '.';
        if ((size_t)exp + 1 < nd) {
            memcpy(out + o, digits + exp + 1, nd - (size_t)exp - 1);
            o += nd - (size_t)exp - 1;
        } else {
            out[o++] = '0';
        }
        out[o] = 0;
    }
    return put(b, out);
}

/* What str.isprintable() calls not printable, for the characters configs carry
 * (a table of every unassigned code point is not kept). */
static int unprintable(unsigned cp)
{
    if (cp < 0x20 || (cp >= 0x7f && cp <= 0xa0) || cp == 0xad)
        return 1;
    if ((cp >= 0x600 && cp <= 0x605) || cp == 0x61c || cp == 0x6dd || cp == 0x70f || cp == 0x180e ||
        cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200f) || (cp >= 0x2028 && cp <= 0x202f) ||
        (cp >= 0x205f && cp <= 0x206f) || cp == 0x3000 || (cp >= 0xd800 && cp <= 0xf8ff) ||
        (cp >= 0xfdd0 && cp <= 0xfdef) || cp == 0xfeff || (cp >= 0xfff0 && cp <= 0xfffb) || cp >= 0xffffe)
        return 1;
    return (cp & 0xfffe) == 0xfffe || cp >= 0xf0000;
}

int rt_py_repr_str(struct sbuf *b, const char *s)
{
    char q = strchr(s, '\'') != NULL && strchr(s, '"') == NULL ? '"' : '\'';
    char qs[2] = {q, 0};
    if (put(b, qs) < 0)
        return -1;
    const unsigned char *p = (const unsigned char *)s;
    while (*p && b->len < REPR_MAX) {
        char tmp[16];
        unsigned cp = *p;
        size_t n = 1;
        if (cp >= 0xf0 && p[1] && p[2] && p[3]) {
            cp = ((cp & 7u) << 18) | ((p[1] & 63u) << 12) | ((p[2] & 63u) << 6) | (p[3] & 63u);
            n = 4;
        } else if (cp >= 0xe0 && p[1] && p[2]) {
            cp = ((cp & 15u) << 12) | ((p[1] & 63u) << 6) | (p[2] & 63u);
            n = 3;
        } else if (cp >= 0xc0 && p[1]) {
            cp = ((cp & 31u) << 6) | (p[1] & 63u);
            n = 2;
        }
        if (cp == '\\' || cp == (unsigned)q) {
            snprintf(tmp, sizeof tmp, "\\%c", (char)cp);
        } else if (cp == '\t' || cp == '\n' || cp == '\r') {
            snprintf(tmp, sizeof tmp, "\\%c", cp == '\t' ? 't' : cp == '\n' ? 'n' : 'r');
        } else if (unprintable(cp)) {
            snprintf(tmp, sizeof tmp, cp < 0x100 ? "\\x%02x" : cp < 0x10000 ? "\\u%04x" : "\\U%08x", cp);
        } else {
            if (pyrt_sbuf_append(b, p, n) < 0)
                return -1;
            p += n;
            continue;
        }
        if (put(b, tmp) < 0)
            return -1;
        p += n;
    }
    return put(b, qs);
}

int rt_py_repr(struct sbuf *b, yajl_val v)
{
    if (b->len >= REPR_MAX)
        return 0;
    if (v == NULL || YAJL_IS_NULL(v))
        return put(b, "None");
    switch (v->type) {
    case yajl_t_true:
        return put(b, "True");
    case yajl_t_false:
        return put(b, "False");
    case yajl_t_string:
        return rt_py_repr_str(b, v->u.string);
    case yajl_t_number:
        return rt_py_is_int(v) ? put(b, rt_py_int_text(v)) : repr_float(b, as_double(v));
    case yajl_t_array:
        if (put(b, "[") < 0)
            return -1;
        for (size_t i = 0; i < v->u.array.len && b->len < REPR_MAX; i++)
            if ((i && put(b, ", ") < 0) || rt_py_repr(b, v->u.array.values[i]) < 0)
                return -1;
        return put(b, "]");
    case yajl_t_object: {
        if (put(b, "{") < 0)
            return -1;
        int first = 1;
        for (size_t i = 0; i < v->u.object.len && b->len < REPR_MAX; i++) {
            const char *k = v->u.object.keys[i];
            int dup = 0; /* a dict keeps a repeated key at its first place, with its last value */
            for (size_t j = 0; j < i && !dup; j++)
                dup = strcmp(v->u.object.keys[j], k) == 0;
            if (dup)
                continue;
            if ((!first && put(b, ", ") < 0) || rt_py_repr_str(b, k) < 0 || put(b, ": ") < 0 ||
                rt_py_repr(b, rt_py_get(v, k)) < 0)
                return -1;
            first = 0;
        }
        return put(b, "}");
    }
    default:
        return put(b, "None");
    }
}

int rt_py_str(struct sbuf *b, yajl_val v)
{
    if (v != NULL && YAJL_IS_STRING(v))
        return put(b, v->u.string);
    return rt_py_repr(b, v);
}
