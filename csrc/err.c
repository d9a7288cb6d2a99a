#include "err.h"

#include <errno.h>

size_t pyrt_strlcpy(char *dst, const char *src, size_t cap)
{
    size_t n = 0;
    if (cap == 0)
        return 0;
    if (src)
        for (; src[n] && n + 1 < cap; n++)
            dst[n] = src[n];
    dst[n] = '\0';
    return n;
}

int pyrt_fail_errno(struct pyrt_error *e, int err, const char *op, const char *path)
{
    e->err = err;
    pyrt_strlcpy(e->op, op, sizeof e->op);
    pyrt_strlcpy(e->path, path ? path : "", sizeof e->path);
    return -1;
}

int pyrt_fail(struct pyrt_error *e, const char *op, const char *path)
{
    return pyrt_fail_errno(e, errno, op, path);
}

char *pyrt_itoa(long long v, char *buf)
{
    char tmp[24];
    int n = 0, neg = v < 0;
    unsigned long long u = neg ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    char *p = buf;
    if (neg)
        *p++ = '-';
    while (n)
        *p++ = tmp[--n];
    *p = '\0';
    return buf;
}
