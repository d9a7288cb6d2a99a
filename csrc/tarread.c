/* The layer unpacker's tar parser (tarread.h; the layers are listed in
 * unpacker.h): the stream's states, each entry's header merged with its
 * extension headers (PAX, GNU long names) and the global PAX attributes, the
 * kinds of entry, the sparse formats, the limits. Driven by the API (unpack.c),
 * it calls only what stands below it: the headers' fields (tarheader.c), and,
 * since it writes nothing itself, the filesystem side for each entry
 * (unpackfs.c) and a regular file's data straight from the caller's buffer
 * (unpackdata.c). */
#include "tarread.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "sbuf.h"
#include "tarheader.h"
#include "unpacker.h"
#include "unpackdata.h"
#include "unpackerr.h"
#include "unpackfs.h"

static uint64_t min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

/* ---------------------------------------------------------------- entries */

void pyrt_tar_reset_entry(struct pyrt_unpacker *u)
{
    struct xref *x = u->e.xattrs;
    size_t xcap = u->e.xcap;
    memset(&u->e, 0, sizeof u->e);
    u->e.xattrs = x;
    u->e.xcap = xcap;
    u->have_entry = 0;
    u->pax.len = 0;
    u->longname.len = 0;
    u->longlink.len = 0;
    u->nsegs = 0;
    u->sparse = SPARSE_NONE;
}

static void start_skip(struct pyrt_unpacker *u, uint64_t n)
{
    u->remaining = 0;
    u->pad = n;
    u->state = ST_SKIP;
}

static uint64_t padding(uint64_t size)
{
    return (TAR_BLOCK - size % TAR_BLOCK) % TAR_BLOCK;
}

/* The entry is done: its file (if any) closed, its attributes forgotten. */
static int entry_done(struct pyrt_unpacker *u)
{
    if (pyrt_unpack_close_file(u) < 0)
        return -1;
    pyrt_tar_reset_entry(u);
    return 0;
}

/* After the data (or at once when there is none): padding, then the next header. */
static int data_done(struct pyrt_unpacker *u, uint64_t datasize)
{
    if (entry_done(u) < 0)
        return -1;
    start_skip(u, padding(datasize));
    if (u->pad == 0)
        u->state = ST_HEADER;
    return 0;
}

/* Start writing the data of the open regular file (remaining bytes of it). */
static int start_data(struct pyrt_unpacker *u, uint64_t datasize)
{
    if (u->sparse != SPARSE_NONE && pyrt_tar_check_map(u, u->remaining) < 0)
        return -1;
    if (u->remaining == 0)
        return data_done(u, datasize);
    u->state = ST_DATA;
    u->pad = padding(datasize);
    return 0;
}

/* An entry with nothing (more) to write: its data and padding are skipped. */
static void skip_entry(struct pyrt_unpacker *u, uint64_t datasize)
{
    start_skip(u, datasize + padding(datasize));
    pyrt_tar_reset_entry(u);
    if (u->pad == 0)
        u->state = ST_HEADER;
}

/* A directory, symlink, hardlink or device node (type), once placed. */
static int create_entry(struct pyrt_unpacker *u, const unsigned char *b, char type, mode_t mode)
{
    struct entry *e = &u->e;
    if (type == '5')
        return pyrt_unpack_dir(u, mode);
    if (type == '2') {
        if (!e->link || e->linklen == 0)
            return pyrt_unpack_reject(u, "symlink without a target", NULL);
        if (memchr(e->link, '\0', e->linklen))
            return pyrt_unpack_reject(u, "NUL byte in symlink target", NULL);
        char *t = strndup(e->link, e->linklen);
        if (!t) {
            errno = ENOMEM;
            return pyrt_unpack_sysfail(u, "malloc");
        }
        int rc = pyrt_unpack_symlink(u, t);
        free(t);
        return rc;
    }
    if (type == '1') {
        if (!e->link || e->linklen == 0)
            return pyrt_unpack_reject(u, "hardlink without a target", NULL);
        if (memchr(e->link, '\0', e->linklen))
            return pyrt_unpack_reject(u, "NUL byte in hardlink target", NULL);
        return pyrt_unpack_hardlink(u);
    }
    int64_t dmaj, dmin;
    if (pyrt_tar_field(b + 329, 8, &dmaj) < 0 || pyrt_tar_field(b + 337, 8, &dmin) < 0 ||
        dmaj < 0 || dmin < 0 || dmaj > 0xfff || dmin > 0xfffff)
        return pyrt_unpack_reject(u, "invalid tar header", "bad device number");
    mode_t kind = type == '3' ? S_IFCHR : type == '4' ? S_IFBLK : S_IFIFO;
    return pyrt_unpack_node(u, kind, mode,
                            type == '6' ? 0 : makedev((unsigned)dmaj, (unsigned)dmin));
}

/* A real entry's header: merge the extension headers, check the entry, have it
 * placed and created. */
static int begin_entry(struct pyrt_unpacker *u, const unsigned char *b)
{
    struct entry *e = &u->e;
    int posix = memcmp(b + 257, "ustar\0", 6) == 0;
    int64_t v;
    char type = (char)b[156];
    e->type = type;
    e->sp_major = e->sp_minor = -1;
    u->have_entry = 1;

    /* name and link from the header fields; copied, since b may be the caller's */
    u->namebuf.len = 0;
    size_t plen = posix ? strnlen((const char *)b + 345, 155) : 0;
    size_t nlen = strnlen((const char *)b, 100);
    if (pyrt_sbuf_reserve(&u->namebuf, plen + nlen + 2 + 101) < 0)
        return pyrt_unpack_sysfail(u, "malloc");
    char *nb = u->namebuf.p;
    if (plen) {
        memcpy(nb, b + 345, plen);
        nb[plen++] = '/';
    }
    memcpy(nb + plen, b, nlen);
    nb[plen + nlen] = '\0';
    const char *hname = nb, *hlink = nb + plen + nlen + 1;
    size_t hnamelen = plen + nlen;
    char *lb = nb + plen + nlen + 1;
    size_t hlinklen = strnlen((const char *)b + 157, 100);
    memcpy(lb, b + 157, hlinklen);
    lb[hlinklen] = '\0';
    if (u->longname.len) {
        hname = u->longname.p;
        hnamelen = strnlen(u->longname.p, u->longname.len);
    }
    if (u->longlink.len) {
        hlink = u->longlink.p;
        hlinklen = strnlen(u->longlink.p, u->longlink.len);
    }
    e->name = hname; /* for messages until the PAX records are read */
    e->namelen = hnamelen;

    if (pyrt_tar_field(b + 100, 8, &v) < 0)
        return pyrt_unpack_reject(u, "invalid tar header", "bad mode field");
    mode_t mode = (mode_t)v & 07777;
    e->mode = mode;
    int64_t size, uid, gid, mtime;
    if (pyrt_tar_field(b + 124, 12, &size) < 0 || size < 0 ||
        pyrt_tar_field(b + 108, 8, &uid) < 0 || pyrt_tar_field(b + 116, 8, &gid) < 0 ||
        pyrt_tar_field(b + 136, 12, &mtime) < 0)
        return pyrt_unpack_reject(u, "invalid tar header", "bad numeric field");

    /* PAX records: the global attributes, then the entry's own; what they do not
     * set (or set to "") comes from the header */
    e->has_uid = u->g.has_uid;
    e->uid = u->g.uid;
    e->has_gid = u->g.has_gid;
    e->gid = u->g.gid;
    e->has_mtime = u->g.has_mtime;
    e->mtime = u->g.mtime;
    e->mtime_ns = u->g.mtime_ns;
    e->has_atime = u->g.has_atime;
    e->atime = u->g.atime;
    e->atime_ns = u->g.atime_ns;
    if (u->pax.len && pyrt_tar_apply_pax(u, e, u->pax.p, u->pax.len, 0) < 0)
        return -1;
    if (e->pname) {
        e->name = e->pname;
        e->namelen = e->pnamelen;
    }
    e->link = hlink;
    e->linklen = hlinklen;
    if (e->plink) {
        e->link = e->plink;
        e->linklen = e->plinklen;
    }
    if (e->sp_name && e->sp_namelen) {
        e->name = e->sp_name;
        e->namelen = e->sp_namelen;
    }
    if (!e->has_uid) {
        if (uid < 0)
            return pyrt_unpack_reject(u, "uid or gid out of range", NULL);
        e->uid = (uint64_t)uid;
    }
    if (!e->has_gid) {
        if (gid < 0)
            return pyrt_unpack_reject(u, "uid or gid out of range", NULL);
        e->gid = (uint64_t)gid;
    }
    if (!e->has_mtime) {
        e->mtime = mtime;
        e->mtime_ns = 0;
    }
    if (!e->has_size)
        e->size = (uint64_t)size;
    if (e->uid > 0xfffffffeULL || e->gid > 0xfffffffeULL)
        return pyrt_unpack_reject(u, "uid or gid out of range", NULL);
    uint64_t datasize = e->size;

    u->stats.entries++;
    if (u->stats.entries > u->lim.max_entries)
        return pyrt_unpack_reject(u, "too many entries", "more than max_entries (%llu)",
                                  (unsigned long long)u->lim.max_entries);

    /* the kind of entry */
    int is_sparse_pax = e->sp_major >= 0 || e->sp_map || e->has_sp_numblocks || u->nsegs;
    switch (type) {
    case '0': case '\0': case '7':
        /* the old convention: a "file" whose name ends with a slash is a directory */
        if (e->namelen && e->name[e->namelen - 1] == '/' && !is_sparse_pax)
            type = '5';
        break;
    case 'S':
        break;
    case '1': case '2': case '3': case '4': case '5': case '6':
        datasize = 0; /* header-only: any size field is ignored */
        break;
    case 'D': /* GNU dumpdir: a directory, its listing skipped */
        type = '5';
        break;
    default:
        return pyrt_unpack_reject(u, "unsupported entry type", "type '%c' (0x%02x)",
                                  (type >= 32 && type < 127) ? type : '?', (unsigned char)type);
    }
    if (is_sparse_pax && type != '0' && type != '\0' && type != '7')
        return pyrt_unpack_reject(u, "invalid sparse entry",
                                  "sparse records on a non-regular entry");

    /* the name */
    if (memchr(e->name, '\0', e->namelen))
        return pyrt_unpack_reject(u, "NUL byte in name", NULL);
    if (e->namelen > u->lim.max_path || e->linklen > u->lim.max_path)
        return pyrt_unpack_reject(u, "name too long", "longer than max_path (%llu)",
                                  (unsigned long long)u->lim.max_path);

    /* a regular file's data goes to disk; everything else skips its data */
    int regular = type == '0' || type == '\0' || type == '7' || type == 'S';
    int placed = pyrt_unpack_place(u, type);
    if (placed < 0)
        return -1;
    if (placed == PLACE_DONE || !regular) {
        if (placed == PLACE_READY && create_entry(u, b, type, mode) < 0)
            return -1;
        skip_entry(u, datasize);
        return 0;
    }

    /* a regular file */
    if (datasize > u->lim.max_file_size)
        return pyrt_unpack_reject(u, "file too large", "%llu bytes, max_file_size is %llu",
                                  (unsigned long long)datasize,
                                  (unsigned long long)u->lim.max_file_size);
    if (datasize > u->lim.max_bytes - u->declared)
        return pyrt_unpack_reject(u, "layer too large", "its files exceed max_bytes (%llu)",
                                  (unsigned long long)u->lim.max_bytes);
    u->declared += datasize;
    u->file_size = datasize;
    if (type == 'S') {
        int64_t real;
        u->sparse = SPARSE_OLDGNU;
        if (pyrt_tar_field(b + 483, 12, &real) < 0 || real < 0)
            return pyrt_unpack_reject(u, "invalid sparse map", "bad GNU real size");
        u->file_size = (uint64_t)real;
        if (pyrt_tar_oldgnu_map(u, b + 386, 4) < 0)
            return -1;
    } else if (is_sparse_pax) {
        if (!e->has_sp_size)
            return pyrt_unpack_reject(u, "invalid sparse entry", "no GNU.sparse size");
        u->file_size = e->sp_size;
        if (e->sp_major == 1 && e->sp_minor == 0) {
            u->sparse = SPARSE_PAX1;
        } else if (e->sp_major <= 0 && e->sp_minor <= 1) {
            u->sparse = SPARSE_PAX0;
            if (e->sp_off_pending)
                return pyrt_unpack_reject(u, "invalid sparse map",
                                          "GNU.sparse.offset without numbytes");
            if (pyrt_tar_pax01_map(u) < 0)
                return -1;
            if (e->has_sp_numblocks && e->sp_numblocks != u->nsegs)
                return pyrt_unpack_reject(u, "invalid sparse map",
                                          "GNU.sparse.numblocks mismatch");
        } else {
            return pyrt_unpack_reject(u, "unsupported sparse format", "GNU.sparse %d.%d",
                                      e->sp_major, e->sp_minor);
        }
    }
    if (pyrt_unpack_open_file(u) < 0)
        return -1;
    u->remaining = datasize;
    if (type == 'S' && b[482]) {
        u->state = ST_SPARSE_EXT;
        u->pad = datasize; /* the data size, kept for after the extension blocks */
        return 0;
    }
    if (u->sparse == SPARSE_PAX1) {
        u->map_count = u->map_needed = u->map_num = u->map_bytes = 0;
        u->map_digits = u->map_have_count = u->map_padding = 0;
        u->pad = padding(datasize);
        u->state = ST_SPARSE_MAP;
        if (u->remaining == 0)
            return pyrt_unpack_reject(u, "invalid sparse map", "no map in the data");
        return 0;
    }
    return start_data(u, datasize);
}

/* ---------------------------------------------------------------- the stream */

static int on_block(struct pyrt_unpacker *u, const unsigned char *b)
{
    if (u->state == ST_SPARSE_EXT) {
        if (pyrt_tar_oldgnu_map(u, b, 21) < 0)
            return -1;
        if (b[504])
            return 0; /* another extension block follows */
        uint64_t datasize = u->pad;
        return start_data(u, datasize);
    }
    if (pyrt_tar_block_is_zero(b)) {
        if (u->state == ST_EOF1) {
            u->state = ST_DONE;
        } else {
            u->state = ST_EOF1;
        }
        return 0;
    }
    if (u->state == ST_EOF1)
        return pyrt_unpack_reject(u, "invalid tar stream", "data after an end-of-archive block");
    if (!pyrt_tar_checksum_ok(b))
        return pyrt_unpack_reject(u, "invalid tar header", "checksum mismatch at byte %llu",
                                  (unsigned long long)u->block_off);
    char type = (char)b[156];
    int kind = type == 'x' ? EXT_PAX
             : type == 'g' ? EXT_GLOBAL
             : type == 'L' ? EXT_LONGNAME
             : type == 'K' ? EXT_LONGLINK
             : type == 'V' ? -1 : EXT_NONE;
    if (kind == EXT_NONE)
        return begin_entry(u, b);
    int64_t size;
    if (pyrt_tar_field(b + 124, 12, &size) < 0 || size < 0)
        return pyrt_unpack_reject(u, "invalid tar header", "bad size field");
    if (kind < 0) { /* a volume label */
        start_skip(u, (uint64_t)size + padding((uint64_t)size));
        if (u->pad == 0)
            u->state = ST_HEADER;
        return 0;
    }
    struct sbuf *dst = kind == EXT_PAX ? &u->pax
                     : kind == EXT_GLOBAL ? &u->gpax
                     : kind == EXT_LONGNAME ? &u->longname : &u->longlink;
    if (kind == EXT_LONGNAME || kind == EXT_LONGLINK)
        dst->len = 0; /* a repeated one replaces */
    if ((uint64_t)size > u->lim.max_header_size ||
        dst->len + (uint64_t)size > u->lim.max_header_size)
        return pyrt_unpack_reject(u, "extension header too large",
                                  "%lld bytes, max_header_size is %llu", (long long)size,
                                  (unsigned long long)u->lim.max_header_size);
    if (pyrt_sbuf_reserve(dst, dst->len + (size_t)size + 1) < 0)
        return pyrt_unpack_sysfail(u, "malloc");
    u->ext_kind = kind;
    u->remaining = (uint64_t)size;
    u->pad = padding((uint64_t)size);
    u->state = ST_EXT;
    if (size == 0)
        u->state = u->pad ? ST_SKIP : ST_HEADER;
    return 0;
}

int pyrt_tar_feed(struct pyrt_unpacker *u, const unsigned char *p, size_t len)
{
    while (len > 0) {
        size_t before = len;
        switch (u->state) {
        case ST_HEADER:
        case ST_EOF1:
        case ST_SPARSE_EXT: {
            const unsigned char *blk;
            if (u->hdr_fill == 0 && len >= TAR_BLOCK) {
                blk = p;
                p += TAR_BLOCK;
                len -= TAR_BLOCK;
            } else {
                size_t take = TAR_BLOCK - u->hdr_fill;
                if (take > len)
                    take = len;
                memcpy(u->hdr + u->hdr_fill, p, take);
                u->hdr_fill += take;
                p += take;
                len -= take;
                if (u->hdr_fill < TAR_BLOCK) {
                    u->stats.stream += before - len;
                    return 0;
                }
                u->hdr_fill = 0;
                blk = u->hdr;
            }
            u->stats.stream += before - len;
            before = len;
            u->block_off = u->stats.stream - TAR_BLOCK;
            if (on_block(u, blk) < 0)
                return -1;
            break;
        }
        case ST_EXT: {
            struct sbuf *dst = u->ext_kind == EXT_PAX ? &u->pax
                             : u->ext_kind == EXT_GLOBAL ? &u->gpax
                             : u->ext_kind == EXT_LONGNAME ? &u->longname : &u->longlink;
            size_t take = (size_t)min_u64(u->remaining, len);
            memcpy(dst->p + dst->len, p, take); /* reserved at the header */
            dst->len += take;
            dst->p[dst->len] = '\0';
            p += take;
            len -= take;
            u->remaining -= take;
            if (u->remaining == 0) {
                u->state = u->pad ? ST_SKIP : ST_HEADER;
                if (u->ext_kind == EXT_GLOBAL) {
                    if (pyrt_tar_apply_pax(u, &u->g, u->gpax.p, u->gpax.len, 1) < 0)
                        return -1;
                    u->gpax.len = 0;
                }
            }
            break;
        }
        case ST_SPARSE_MAP: {
            size_t take = (size_t)min_u64(u->remaining, len);
            size_t i = 0;
            for (; i < take; i++) {
                if (u->map_padding && u->map_bytes % TAR_BLOCK == 0)
                    break;
                if (pyrt_tar_map_byte(u, p[i]) < 0)
                    return -1;
                u->map_bytes++;
            }
            p += i;
            len -= i;
            u->remaining -= i;
            if (u->map_padding && u->map_bytes % TAR_BLOCK == 0) {
                /* the map and its padding are done: the data follows */
                uint64_t datasize = u->remaining + u->map_bytes;
                if (start_data(u, datasize) < 0)
                    return -1;
            } else if (u->remaining == 0) {
                return pyrt_unpack_reject(u, "invalid sparse map",
                                          "the map runs past the entry's data");
            }
            break;
        }
        case ST_DATA: {
            size_t take = (size_t)min_u64(u->remaining, len);
            if (pyrt_unpack_write(u, p, take) < 0)
                return -1;
            p += take;
            len -= take;
            u->remaining -= take;
            if (u->remaining == 0) {
                uint64_t pad = u->pad;
                if (entry_done(u) < 0)
                    return -1;
                start_skip(u, pad);
                if (pad == 0)
                    u->state = ST_HEADER;
            }
            break;
        }
        case ST_SKIP: {
            size_t take = (size_t)min_u64(u->pad, len);
            p += take;
            len -= take;
            u->pad -= take;
            if (u->pad == 0)
                u->state = ST_HEADER;
            break;
        }
        case ST_DONE:
            len = 0; /* the record's padding */
            break;
        }
        u->stats.stream += before - len;
    }
    return 0;
}
