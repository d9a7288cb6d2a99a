/* The growable byte buffer of sbuf.h. */
#include "sbuf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int pyrt_sbuf_reserve(struct sbuf *b, size_t need)
{
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        errno = ENOMEM;
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

int pyrt_sbuf_append(struct sbuf *b, const void *data, size_t n)
{
    if (pyrt_sbuf_reserve(b, b->len + n + 1) < 0)
        return -1;
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

void pyrt_sbuf_free(struct sbuf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}
