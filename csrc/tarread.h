/* The layer unpacker's tar parser (tarread.c), driven by its API (unpack.c). */
#ifndef PYRT_TARREAD_H
#define PYRT_TARREAD_H

#include <stddef.h>

#include "unpacker.h"

/* Consume len bytes of the stream. 0, or -1 with u->err filled. */
int pyrt_tar_feed(struct pyrt_unpacker *u, const unsigned char *p, size_t len);
/* Forget the entry read last (its extension headers and sparse map too). */
void pyrt_tar_reset_entry(struct pyrt_unpacker *u);

#endif
