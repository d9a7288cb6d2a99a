/* The regular files' data (unpackdata.c), written as the tar parser (tarread.c)
 * reads it; the file is opened by pyrt_unpack_open_file (unpackfs.h). */
#ifndef PYRT_UNPACKDATA_H
#define PYRT_UNPACKDATA_H

#include <stddef.h>

#include "unpacker.h"

/* The open file's next n bytes of data: at their place in the sparse map, or (plain files)
 * after the last ones, aligned blocks of zeros left as holes. */
int pyrt_unpack_write(struct pyrt_unpacker *u, const unsigned char *p, size_t n);
/* The file's data is all written: size, owner, xattrs, mode, times; closed. A
 * no-op when no file is open. */
int pyrt_unpack_close_file(struct pyrt_unpacker *u);

#endif
