/* The streaming layer unpacker's API (unpack.h): an unpacker's life. The top of
 * its layers (unpacker.h lists them): the tar parser (tarread.c, tarheader.c)
 * reads the bytes the caller pushes; the filesystem side (unpackfs.c,
 * unpackdata.c) creates what they hold; a failure is kept (unpackerr.c) and
 * handed back here. File data is written straight from the caller's buffer; only
 * headers, extension headers (bounded) and the directories' deferred metadata
 * (bounded) are kept in memory. */
#include "unpack.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "err.h"
#include "sbuf.h"
#include "tarread.h"
#include "unpacker.h"
#include "unpackerr.h"
#include "unpackfs.h"

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
