/* The streaming layer unpacker (see unpack.h): its life and its errors. The tar
 * parser (tarread.c, tarheader.c) reads the bytes the caller pushes; the
 * filesystem side (unpackfs.c, unpackdata.c) creates what they hold. File data is
 * written straight from the caller's buffer; only headers, extension headers
 * (bounded) and the directories' deferred metadata (bounded) are kept in memory. */
#include "unpack_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "err.h"

/* ---------------------------------------------------------------- errors */

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

/* ---------------------------------------------------------------- buffers */

int pyrt_sbuf_reserve(struct pyrt_unpacker *u, struct sbuf *b, size_t need)
{
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        errno = ENOMEM;
        return pyrt_unpack_sysfail(u, "malloc");
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

int pyrt_sbuf_append(struct pyrt_unpacker *u, struct sbuf *b, const void *data, size_t n)
{
    if (pyrt_sbuf_reserve(u, b, b->len + n + 1) < 0)
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

/* ---------------------------------------------------------------- API */

void pyrt_unpack_limits_init(struct pyrt_unpack_limits *lim)
{
    lim->max_bytes = 64ULL << 30;
    lim->max_entries = 1000000;
    lim->max_file_size = 16ULL << 30;
    lim->max_path = 4096;
    lim->max_xattr_size = 65536;
    lim->max_header_size = 1 << 20;
    lim->max_sparse_segments = 1 << 20;
    lim->max_meta_memory = 64ULL << 20;
    lim->flags = PYRT_UNPACK_DETECT_HOLES;
}

struct pyrt_unpacker *pyrt_unpacker_new(int destfd, const struct pyrt_unpack_limits *lim,
                                        struct pyrt_error *e)
{
    struct stat st;
    if (fstat(destfd, &st) < 0) {
        pyrt_fail(e, "fstat", "");
        return NULL;
    }
    if (!S_ISDIR(st.st_mode)) {
        pyrt_fail_errno(e, ENOTDIR, "unpack", "");
        return NULL;
    }
    struct pyrt_unpacker *u = calloc(1, sizeof *u);
    if (!u) {
        pyrt_fail_errno(e, ENOMEM, "malloc", "");
        return NULL;
    }
    if (pyrt_unpack_fs_open(u, destfd, &st, e) < 0) {
        free(u);
        return NULL;
    }
    if (lim)
        u->lim = *lim;
    else
        pyrt_unpack_limits_init(&u->lim);
    u->state = ST_HEADER;
    pyrt_tar_reset_entry(u);
    return u;
}

static int replay(struct pyrt_unpacker *u, struct pyrt_error *e)
{
    *e = u->err;
    return -1;
}

int pyrt_unpacker_feed(struct pyrt_unpacker *u, const void *buf, size_t len,
                       struct pyrt_error *e)
{
    if (u->failed)
        return replay(u, e);
    if (pyrt_tar_feed(u, buf, len) < 0) {
        u->failed = 1;
        pyrt_unpack_abandon_file(u);
        return replay(u, e);
    }
    return 0;
}

int pyrt_unpacker_finish(struct pyrt_unpacker *u, struct pyrt_error *e)
{
    if (u->failed)
        return replay(u, e);
    if (u->state != ST_DONE && u->state != ST_EOF1) {
        if (u->state == ST_HEADER && u->hdr_fill == 0 && !u->pax.len && !u->longname.len &&
            !u->longlink.len)
            pyrt_unpack_reject(u, "truncated stream", "no end-of-archive blocks");
        else if (u->state == ST_DATA || u->state == ST_SPARSE_MAP)
            pyrt_unpack_reject(u, "truncated stream", "%llu bytes of the entry's data missing",
                               (unsigned long long)u->remaining);
        else
            pyrt_unpack_reject(u, "truncated stream", "it ends inside a header");
        if (u->state != ST_DATA && u->state != ST_SPARSE_MAP && u->state != ST_SPARSE_EXT)
            u->err.path[0] = '\0';
        u->failed = 1;
        pyrt_unpack_abandon_file(u);
        return replay(u, e);
    }
    pyrt_tar_reset_entry(u);
    if (pyrt_unpack_finish_dirs(u) < 0) {
        u->failed = 1;
        return replay(u, e);
    }
    u->state = ST_DONE;
    return 0;
}

void pyrt_unpacker_stats(const struct pyrt_unpacker *u, struct pyrt_unpack_stats *st)
{
    *st = u->stats;
}

const char *pyrt_unpacker_detail(const struct pyrt_unpacker *u)
{
    return u->detail;
}

void pyrt_unpacker_free(struct pyrt_unpacker *u)
{
    if (!u)
        return;
    pyrt_unpack_fs_free(u);
    pyrt_sbuf_free(&u->pax);
    pyrt_sbuf_free(&u->gpax);
    pyrt_sbuf_free(&u->longname);
    pyrt_sbuf_free(&u->longlink);
    pyrt_sbuf_free(&u->namebuf);
    free(u->e.xattrs);
    free(u->segs);
    free(u);
}
