/* The layer unpacker's failures (unpackerr.c), which every part of it reports
 * through: the error is kept in the unpacker (struct pyrt_unpacker, unpacker.h)
 * with the name of the entry being read, and the API (unpack.c) hands it to the
 * caller. */
#ifndef PYRT_UNPACKERR_H
#define PYRT_UNPACKERR_H

struct pyrt_unpacker;

/* A system call failed (errno): fills u->err with op and the entry's name. -1. */
int pyrt_unpack_sysfail(struct pyrt_unpacker *u, const char *op);
/* The layer is rejected: why (short), and an optional longer explanation. -1. */
__attribute__((format(printf, 3, 4))) int pyrt_unpack_reject(struct pyrt_unpacker *u,
                                                             const char *why, const char *fmt,
                                                             ...);

#endif
