/* The fields of tar headers (tarheader.c), for the tar parser (tarread.c). */
#ifndef PYRT_TARHEADER_H
#define PYRT_TARHEADER_H

#include <stddef.h>
#include <stdint.h>

#include "unpacker.h"

/* A numeric header field: octal (spaces and NULs around it), or base-256 when the
 * first byte has its high bit set. Returns 0, or -1 if malformed. */
int pyrt_tar_field(const unsigned char *f, size_t n, int64_t *out);
/* Whether the block is all zeros; whether its checksum is right. */
int pyrt_tar_block_is_zero(const unsigned char *b);
int pyrt_tar_checksum_ok(const unsigned char *b);
/* Apply the records of one PAX header buffer to e: an entry's own ('x'), or the
 * global attributes ('g': only uid, gid, mtime and atime are taken from it). */
int pyrt_tar_apply_pax(struct pyrt_unpacker *u, struct entry *e, const char *buf, size_t len,
                       int global);
/* The old GNU sparse entries of a header (n = 4) or extension block (21). */
int pyrt_tar_oldgnu_map(struct pyrt_unpacker *u, const unsigned char *p, int n);
/* The GNU.sparse.map record (format 0.1): "off,len,off,len,...". */
int pyrt_tar_pax01_map(struct pyrt_unpacker *u);
/* One byte of a PAX 1.0 sparse map (the start of the entry's data). */
int pyrt_tar_map_byte(struct pyrt_unpacker *u, unsigned char c);
/* The sparse map checked against the data that follows and the apparent size. */
int pyrt_tar_check_map(struct pyrt_unpacker *u, uint64_t datasize);

#endif
