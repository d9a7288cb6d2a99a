/* A growable byte buffer (the layer unpacker's names, extension headers and the
 * directories' paths). Knows nothing of the unpacker: a failure is -1 with errno
 * set (ENOMEM), which the caller reports. */
#ifndef PYRT_SBUF_H
#define PYRT_SBUF_H

#include <stddef.h>

struct sbuf {
    char *p;
    size_t len, cap;
};

/* Room for need bytes in b; -1 (errno ENOMEM) when memory runs out. */
int pyrt_sbuf_reserve(struct sbuf *b, size_t need);
/* Append n bytes and keep the buffer NUL-terminated; -1 as above. */
int pyrt_sbuf_append(struct sbuf *b, const void *data, size_t n);
void pyrt_sbuf_free(struct sbuf *b);

#endif
