/* The layer unpacker's failures (unpackerr.h): a system call's errno or a
 * rejection of the layer, with the name of the entry being read. The bottom of
 * the unpacker: it calls none of its other parts. */
#include "unpackerr.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "err.h"
#include "unpacker.h"

static void set_path(struct pyrt_unpacker *u)
{
    const char *n = u->have_entry && u->e.name ? u->e.name : "";
    size_t len = u->have_entry && u->e.name ? u->e.namelen : 0;
    if (len >= sizeof u->err.path)
        len = sizeof u->err.path - 1;
    memcpy(u->err.path, n, len);
    u->err.path[len] = '\0';
    /* a name may hold NUL bytes (it is rejected then): cut there */
}

int pyrt_unpack_sysfail(struct pyrt_unpacker *u, const char *op)
{
    int saved = errno;
    pyrt_fail_errno(&u->err, saved ? saved : EIO, op, "");
    set_path(u);
    u->detail[0] = '\0';
    errno = saved;
    return -1;
}

int pyrt_unpack_reject(struct pyrt_unpacker *u, const char *why, const char *fmt, ...)
{
    pyrt_fail_errno(&u->err, 0, why, "");
    set_path(u);
    u->detail[0] = '\0';
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(u->detail, sizeof u->detail, fmt, ap);
        va_end(ap);
    }
    return -1;
}
