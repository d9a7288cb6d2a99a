/* The layer unpacker's state, shared by its parts (its API is unpack.h). They
 * stand in layers, each calling only those below it:
 *
 *  - unpack.c     the API: an unpacker's life (new, feed, finish, free);
 *  - tarread.c    the tar parser: the stream's states, entry headers merged with
 *                 their extension headers, the kinds of entry, the limits;
 *    tarheader.c  its fields: numbers, checksums, PAX records, GNU sparse maps.
 *                 The parser writes nothing: it hands each entry to
 *  - unpackdata.c the regular files' data (holes, sparse segments), and
 *    unpackfs.c   the filesystem side: names cleaned and confined to the
 *                 destination (openat2 for parents, no-follow *at calls for the
 *                 last component), entries created and replaced, OCI whiteouts
 *                 translated, xattrs, owners, modes and times set, the
 *                 directories' metadata applied at the end;
 *  - unpackerr.c  the failures all of them report (a system call's, a
 *                 rejection), and sbuf.c, the growable buffers they keep.
 *
 * This header holds types only, no part's functions: the parsed entry (struct
 * entry, the sparse map, the file's apparent size) is written by the parser and
 * read by the filesystem side; struct unpack_fs is the filesystem side's own;
 * struct pyrt_unpacker holds them all, with the limits, the statistics and the
 * failure being reported. */
#ifndef PYRT_UNPACKER_H
#define PYRT_UNPACKER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

#include "err.h"          /* struct pyrt_error */
#include "sbuf.h"         /* struct sbuf */
#include "unpack_types.h" /* limits, flags, stats */

#define TAR_BLOCK 512
#define UNPACK_NCACHE 4

/* Parser states. */
enum {
    ST_HEADER,     /* collecting a header block */
    ST_EOF1,       /* one zero block seen: the next one must be zero too */
    ST_SPARSE_EXT, /* collecting an old GNU sparse extension block */
    ST_EXT,        /* copying an extension header's data (PAX, GNU long name) */
    ST_SPARSE_MAP, /* parsing a PAX 1.0 sparse map at the start of the data */
    ST_DATA,       /* writing a regular file's data */
    ST_SKIP,       /* discarding data and padding */
    ST_DONE,       /* end-of-archive seen; the rest (record padding) is ignored */
};

enum { EXT_NONE, EXT_PAX, EXT_GLOBAL, EXT_LONGNAME, EXT_LONGLINK };

enum { SPARSE_NONE, SPARSE_OLDGNU, SPARSE_PAX0, SPARSE_PAX1 };

struct seg {
    uint64_t off, len;
};

struct xref {
    const char *name;
    size_t nlen;
    const char *val;
    size_t vlen;
};

/* A directory whose mode and times are applied at the end. */
struct dirrec {
    size_t pathoff; /* into dirpaths */
    mode_t mode;
    struct timespec times[2];
};

/* Attributes of the entry being read: header fields overridden by PAX records.
 * Strings point into buffers the unpacker owns, valid until the entry is done. */
struct entry {
    char type;
    const char *name; /* raw name, as in the archive */
    size_t namelen;
    const char *link;
    size_t linklen;
    const char *pname, *plink; /* from PAX records */
    size_t pnamelen, plinklen;
    int has_size, has_uid, has_gid, has_mtime, has_atime;
    mode_t mode;
    uint64_t size, uid, gid;
    int64_t mtime, atime;
    long mtime_ns, atime_ns;
    struct xref *xattrs;
    size_t nxattrs, xcap;
    /* GNU sparse in PAX records */
    int sp_major, sp_minor;
    int has_sp_size;
    uint64_t sp_size;
    const char *sp_name;
    size_t sp_namelen;
    const char *sp_map;
    size_t sp_maplen;
    int has_sp_numblocks;
    uint64_t sp_numblocks;
    int sp_off_pending;
    uint64_t sp_off;
};

/* The filesystem side's state (unpackfs.c). */
struct unpack_fs {
    int rootfd;
    uid_t euid;
    gid_t egid;
    int root_setgid;

    struct sbuf path; /* the entry's cleaned name ("" for the root) */
    struct sbuf tmp;  /* scratch */
    int pfd;          /* where it goes: its parent directory (owned by the cache) */
    const char *base; /* and its last component (into path) */

    /* the regular file being written */
    int fd;
    uint64_t file_off; /* next offset for plain files */
    uint64_t written_end;
    int detect_holes;
    size_t carry; /* zero bytes of a block split between feeds, not written yet */
    size_t segi;  /* the sparse segment being written, and how much of it is */
    uint64_t seg_done;

    /* parent directory cache: paths and O_PATH fds */
    char *cache_path[UNPACK_NCACHE];
    size_t cache_len[UNPACK_NCACHE];
    int cache_fd[UNPACK_NCACHE];
    unsigned int cache_next;

    struct dirrec *dirs;
    size_t ndirs, dircap;
    struct sbuf dirpaths;
    uint64_t meta_mem;
};

struct pyrt_unpacker {
    struct pyrt_unpack_limits lim;
    int state;
    int failed;
    struct pyrt_error err;
    char detail[256];

    unsigned char hdr[TAR_BLOCK];
    size_t hdr_fill;

    /* extension headers waiting for their entry */
    int ext_kind;
    struct sbuf pax, gpax, longname, longlink, namebuf;
    uint64_t remaining; /* data bytes left in the current phase */
    uint64_t pad;       /* padding after them */

    struct entry e;
    struct entry g; /* attributes from global PAX headers */
    int have_entry;

    /* the layout of the regular file being read */
    int sparse;         /* SPARSE_* */
    uint64_t file_size; /* apparent size */
    struct seg *segs;   /* its data segments, when sparse */
    size_t nsegs, segcap;
    /* PAX 1.0 map parser */
    uint64_t map_count, map_needed, map_num, map_bytes;
    int map_digits, map_have_count, map_padding;

    uint64_t declared;  /* file data announced so far (bounded by max_bytes) */
    uint64_t block_off; /* stream offset of the block being parsed */
    struct pyrt_unpack_stats stats;

    struct unpack_fs fs;
};

#endif
