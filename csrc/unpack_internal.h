/* The layer unpacker's insides (its API is unpack.h), shared by its parts:
 *
 *  - unpack.c     the API: an unpacker's life (new, feed, finish, free), its
 *                 errors and buffers;
 *  - tarread.c    the tar parser: the stream's states, entry headers merged with
 *                 their extension headers, the kinds of entry, the limits;
 *    tarheader.c  its fields: numbers, checksums, PAX records, GNU sparse maps.
 *                 The parser writes nothing: it hands each entry to
 *  - unpackfs.c   the filesystem side: names cleaned and confined to the
 *                 destination (openat2 for parents, no-follow *at calls for the
 *                 last component), entries created and replaced, OCI whiteouts
 *                 translated, xattrs, owners, modes and times set, the
 *                 directories' metadata applied at the end;
 *    unpackdata.c the regular files' data (holes, sparse segments).
 *
 * The parsed entry (struct entry, the sparse map, the file's apparent size) is
 * written by the parser and read by the filesystem side; struct unpack_fs is the
 * filesystem side's own. */
#ifndef PYRT_UNPACK_INTERNAL_H
#define PYRT_UNPACK_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

#include "unpack.h"

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

struct sbuf {
    char *p;
    size_t len, cap;
};

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

/* -- unpack.c: errors and buffers */

/* A system call failed (errno): fills u->err with op and the entry's name. -1. */
int pyrt_unpack_sysfail(struct pyrt_unpacker *u, const char *op);
/* The layer is rejected: why (short), and an optional longer explanation. -1. */
__attribute__((format(printf, 3, 4))) int pyrt_unpack_reject(struct pyrt_unpacker *u,
                                                             const char *why, const char *fmt,
                                                             ...);
/* Room for need bytes in b; -1 (u->err filled) when memory runs out. */
int pyrt_sbuf_reserve(struct pyrt_unpacker *u, struct sbuf *b, size_t need);
/* Append n bytes and keep the buffer NUL-terminated. */
int pyrt_sbuf_append(struct pyrt_unpacker *u, struct sbuf *b, const void *data, size_t n);
void pyrt_sbuf_free(struct sbuf *b);

/* -- tarheader.c: fields */

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

/* -- tarread.c: the parser */

/* Consume len bytes of the stream. 0, or -1 with u->err filled. */
int pyrt_tar_feed(struct pyrt_unpacker *u, const unsigned char *p, size_t len);
/* Forget the entry read last (its extension headers and sparse map too). */
void pyrt_tar_reset_entry(struct pyrt_unpacker *u);

/* -- unpackfs.c, unpackdata.c: the filesystem side */

/* Results of pyrt_unpack_place. */
enum { PLACE_DONE, PLACE_READY };

/* Start with the directory destfd (st: its stat); -1 with e filled. */
int pyrt_unpack_fs_open(struct pyrt_unpacker *u, int destfd, const struct stat *st,
                        struct pyrt_error *e);
void pyrt_unpack_fs_free(struct pyrt_unpacker *u);
/* Clean a name lexically into out: drop the leading "/", empty and "."
 * components, collapse "a/..". Returns the length, -1 if ".." climbs above the
 * root, -2 if memory runs out (u->err filled). */
long pyrt_unpack_clean_name(struct pyrt_unpacker *u, const char *raw, size_t rawlen,
                            struct sbuf *out);
/* Where the entry u->e (of kind type, once normalized) goes: its name cleaned
 * (rejected if it climbs out), the layer root's own metadata applied, whiteouts
 * made and aufs metadata skipped (PLACE_DONE: nothing more to create), or its
 * parent resolved inside the root, missing directories created (PLACE_READY:
 * create it with one of the calls below). -1 on error. */
int pyrt_unpack_place(struct pyrt_unpacker *u, char type);
int pyrt_unpack_dir(struct pyrt_unpacker *u, mode_t mode);
int pyrt_unpack_symlink(struct pyrt_unpacker *u, const char *target);
int pyrt_unpack_hardlink(struct pyrt_unpacker *u);
int pyrt_unpack_node(struct pyrt_unpacker *u, mode_t kind, mode_t mode, dev_t dev);
/* A regular file, opened for its data (u->file_size, u->sparse, u->segs set). */
int pyrt_unpack_open_file(struct pyrt_unpacker *u);
/* Its next n bytes of data: at their place in the sparse map, or (plain files)
 * after the last ones, aligned blocks of zeros left as holes. */
int pyrt_unpack_write(struct pyrt_unpacker *u, const unsigned char *p, size_t n);
/* The file's data is all written: size, owner, xattrs, mode, times; closed. A
 * no-op when no file is open. */
int pyrt_unpack_close_file(struct pyrt_unpacker *u);
/* After an error: the open file (if any) closed as is. */
void pyrt_unpack_abandon_file(struct pyrt_unpacker *u);
/* The end: the directories' deferred modes and times. -1 with u->err filled. */
int pyrt_unpack_finish_dirs(struct pyrt_unpacker *u);
/* The entry's xattrs set on fd or, when fd < 0, on name below pfd (not followed). */
int pyrt_unpack_xattrs(struct pyrt_unpacker *u, int fd, int pfd, const char *name);
/* The entry's atime and mtime. */
void pyrt_unpack_times(struct pyrt_unpacker *u, struct timespec ts[2]);
/* Whether to chown what the entry made (fresh) or found. */
int pyrt_unpack_want_chown(struct pyrt_unpacker *u, int fresh);

#endif
