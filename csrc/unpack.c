/* The streaming layer unpacker (see unpack.h): a tar parser driven by the bytes the
 * caller pushes. File data is written straight from the caller's buffer; only
 * headers, extension headers (bounded) and the directories' deferred metadata
 * (bounded) are kept in memory. */
#include "unpack.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "err.h"
#include "resolve.h"
#include "syscalls.h"

#define BLOCK 512
#define HOLE_BLOCK 4096
#define NCACHE 4
#define MAX_REMOVE_DEPTH 1024

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
    size_t pathoff; /* into u->dirpaths */
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

struct pyrt_unpacker {
    int rootfd;
    uid_t euid;
    gid_t egid;
    int root_setgid;
    struct pyrt_unpack_limits lim;
    int state;
    int failed;
    struct pyrt_error err;
    char detail[256];

    unsigned char hdr[BLOCK];
    size_t hdr_fill;

    /* extension headers waiting for their entry */
    int ext_kind;
    struct sbuf pax, gpax, longname, longlink, namebuf, path, tmp;
    uint64_t remaining; /* data bytes left in the current phase */
    uint64_t pad;       /* padding after them */

    struct entry e;
    struct entry g; /* attributes from global PAX headers */
    int have_entry;

    /* the regular file being written */
    int fd;
    int sparse;
    uint64_t file_size;  /* apparent size */
    uint64_t file_off;   /* next offset for plain files */
    uint64_t written_end;
    int detect_holes;
    size_t carry; /* zero bytes of a block split between feeds, not written yet */
    struct seg *segs;
    size_t nsegs, segcap, segi;
    uint64_t seg_done;
    /* PAX 1.0 map parser */
    uint64_t map_count, map_needed, map_num, map_bytes;
    int map_digits, map_have_count, map_padding;

    /* parent directory cache: paths and O_PATH fds */
    char *cache_path[NCACHE];
    size_t cache_len[NCACHE];
    int cache_fd[NCACHE];
    unsigned int cache_next;

    struct dirrec *dirs;
    size_t ndirs, dircap;
    struct sbuf dirpaths;
    uint64_t meta_mem;

    uint64_t declared;  /* file data announced so far (bounded by max_bytes) */
    uint64_t block_off; /* stream offset of the block being parsed */
    struct pyrt_unpack_stats stats;
};

static const unsigned char zero_block[HOLE_BLOCK];

/* Close a descriptor nothing was written through (O_PATH, a directory, or a file
 * abandoned after an error): close(2) cannot lose data there, so its result is
 * deliberately not acted on. The files written are closed by finish_file(),
 * which checks it. */
static void drop_fd(int fd)
{
    int saved = errno; /* the error being reported, if any */
    if (fd >= 0)
        (void)close(fd);
    errno = saved;
}

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

/* A system call failed. */
static int sysfail(struct pyrt_unpacker *u, const char *op)
{
    int saved = errno;
    pyrt_fail_errno(&u->err, saved ? saved : EIO, op, "");
    set_path(u);
    u->detail[0] = '\0';
    errno = saved;
    return -1;
}

/* The layer is rejected: why (short), and an optional longer explanation. */
__attribute__((format(printf, 3, 4))) static int reject(struct pyrt_unpacker *u,
                                                        const char *why, const char *fmt,
                                                        ...)
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

static int sbuf_reserve(struct pyrt_unpacker *u, struct sbuf *b, size_t need)
{
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        errno = ENOMEM;
        return sysfail(u, "malloc");
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

static int sbuf_append(struct pyrt_unpacker *u, struct sbuf *b, const void *data, size_t n)
{
    if (sbuf_reserve(u, b, b->len + n + 1) < 0)
        return -1;
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

static void sbuf_free(struct sbuf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

/* ---------------------------------------------------------------- numbers */

/* A numeric header field: octal (spaces and NULs around it), or base-256 when the
 * first byte has its high bit set. Returns 0, or -1 if malformed. */
static int parse_field(const unsigned char *f, size_t n, int64_t *out)
{
    if (n && (f[0] & 0x80)) {
        /* base-256, big-endian two's complement; 0x40 of the first byte is the sign */
        unsigned char inv = (f[0] & 0x40) ? 0xff : 0;
        uint64_t x = 0;
        for (size_t i = 0; i < n; i++) {
            unsigned char c = f[i] ^ inv;
            if (i == 0)
                c &= 0x7f;
            if (x >> 56)
                return -1;
            x = (x << 8) | c;
        }
        if (x >> 63)
            return -1;
        *out = inv ? ~(int64_t)x : (int64_t)x;
        return 0;
    }
    size_t i = 0;
    while (i < n && (f[i] == ' ' || f[i] == '\0'))
        i++;
    uint64_t v = 0;
    int digits = 0;
    for (; i < n && f[i] >= '0' && f[i] <= '7'; i++) {
        if (v >> 60)
            return -1;
        v = v * 8 + (uint64_t)(f[i] - '0');
        digits++;
    }
    for (; i < n; i++)
        if (f[i] != ' ' && f[i] != '\0')
            return -1;
    (void)digits;
    if (v > (uint64_t)INT64_MAX)
        return -1;
    *out = (int64_t)v;
    return 0;
}

static int parse_dec(const char *s, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    if (n == 0 || n > 20)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* A PAX time: [-]seconds[.fraction]. */
static int parse_time(const char *s, size_t n, int64_t *sec, long *nsec)
{
    int neg = 0;
    if (n && s[0] == '-') {
        neg = 1;
        s++;
        n--;
    }
    const char *dot = memchr(s, '.', n);
    size_t ilen = dot ? (size_t)(dot - s) : n;
    uint64_t whole;
    if (parse_dec(s, ilen, &whole) < 0 || whole > (uint64_t)INT64_MAX - 1)
        return -1;
    long frac = 0;
    if (dot) {
        size_t flen = n - ilen - 1;
        long scale = 100000000;
        for (size_t i = 0; i < flen; i++) {
            char c = dot[1 + i];
            if (c < '0' || c > '9')
                return -1;
            if (scale) {
                frac += (c - '0') * scale;
                scale /= 10;
            }
        }
    }
    if (neg) {
        *sec = -(int64_t)whole;
        if (frac) {
            *sec -= 1;
            frac = 1000000000L - frac;
        }
    } else {
        *sec = (int64_t)whole;
    }
    *nsec = frac;
    return 0;
}

/* ---------------------------------------------------------------- headers */

static int block_is_zero(const unsigned char *b)
{
    return memcmp(b, zero_block, BLOCK) == 0;
}

static int checksum_ok(const unsigned char *b)
{
    int64_t stored;
    if (parse_field(b + 148, 8, &stored) < 0)
        return 0;
    uint64_t usum = 0;
    int64_t ssum = 0;
    for (int i = 0; i < BLOCK; i++) {
        unsigned char c = (i >= 148 && i < 156) ? ' ' : b[i];
        usum += c;
        ssum += (signed char)c;
    }
    return (uint64_t)stored == usum || stored == ssum;
}

/* ---------------------------------------------------------------- PAX records */

static int add_xattr(struct pyrt_unpacker *u, const char *name, size_t nlen, const char *val,
                     size_t vlen)
{
    struct entry *e = &u->e;
    /* kept in order: set in order, a repeated name ends with its last value */
    if (e->nxattrs == e->xcap) {
        size_t cap = e->xcap ? e->xcap * 2 : 8;
        struct xref *x = realloc(e->xattrs, cap * sizeof *x);
        if (!x) {
            errno = ENOMEM;
            return sysfail(u, "malloc");
        }
        e->xattrs = x;
        e->xcap = cap;
    }
    e->xattrs[e->nxattrs++] = (struct xref){name, nlen, val, vlen};
    return 0;
}

static int push_seg(struct pyrt_unpacker *u, uint64_t off, uint64_t len)
{
    if (u->nsegs >= u->lim.max_sparse_segments)
        return reject(u, "too many sparse segments", "more than %llu",
                      (unsigned long long)u->lim.max_sparse_segments);
    if (u->nsegs == u->segcap) {
        size_t cap = u->segcap ? u->segcap * 2 : 16;
        uint64_t mem = (uint64_t)cap * sizeof(struct seg);
        if (mem > u->lim.max_meta_memory && u->lim.max_meta_memory != UINT64_MAX)
            return reject(u, "sparse map too large", NULL);
        struct seg *s = realloc(u->segs, cap * sizeof *s);
        if (!s) {
            errno = ENOMEM;
            return sysfail(u, "malloc");
        }
        u->segs = s;
        u->segcap = cap;
    }
    u->segs[u->nsegs++] = (struct seg){off, len};
    return 0;
}

#define KEYIS(k, kl, lit) ((kl) == sizeof(lit) - 1 && memcmp((k), (lit), sizeof(lit) - 1) == 0)

/* Apply the records of one PAX header buffer to e: an entry's own ('x'), or the
 * global attributes ('g': parsed once when it arrives; only uid, gid, mtime and
 * atime are taken from it). */
static int apply_pax(struct pyrt_unpacker *u, struct entry *e, const char *buf, size_t len,
                     int global)
{
    size_t pos = 0;
    while (pos < len) {
        /* "%d %s=%s\n", the length counting itself */
        size_t i = pos;
        uint64_t rlen = 0;
        while (i < len && buf[i] >= '0' && buf[i] <= '9' && i - pos < 18) {
            rlen = rlen * 10 + (uint64_t)(buf[i] - '0');
            i++;
        }
        if (i == pos || i >= len || buf[i] != ' ' || rlen < 5 || rlen > len - pos) {
            /* NUL padding after the last record is tolerated */
            if (buf[pos] == '\0')
                break;
            return reject(u, "invalid PAX header", "malformed record at byte %zu", pos);
        }
        const char *rec = buf + pos;
        const char *end = rec + rlen - 1; /* the '\n' */
        if (buf + i + 1 > end || *end != '\n')
            return reject(u, "invalid PAX header", "record at byte %zu not terminated", pos);
        const char *key = buf + i + 1;
        const char *eq = memchr(key, '=', (size_t)(end - key));
        if (!eq || eq == key)
            return reject(u, "invalid PAX header", "record at byte %zu has no key", pos);
        size_t klen = (size_t)(eq - key);
        const char *val = eq + 1;
        size_t vlen = (size_t)(end - val);
        pos += rlen;

        if (global && !KEYIS(key, klen, "uid") && !KEYIS(key, klen, "gid") &&
            !KEYIS(key, klen, "mtime") && !KEYIS(key, klen, "atime"))
            continue;
        if (KEYIS(key, klen, "path")) {
            e->pname = vlen ? val : NULL;
            e->pnamelen = vlen;
        } else if (KEYIS(key, klen, "linkpath")) {
            e->plink = vlen ? val : NULL;
            e->plinklen = vlen;
        } else if (KEYIS(key, klen, "size")) {
            e->has_size = vlen > 0;
            if (vlen && parse_dec(val, vlen, &e->size) < 0)
                return reject(u, "invalid PAX header", "bad size");
        } else if (KEYIS(key, klen, "uid")) {
            e->has_uid = vlen > 0;
            if (vlen && parse_dec(val, vlen, &e->uid) < 0)
                return reject(u, "invalid PAX header", "bad uid");
        } else if (KEYIS(key, klen, "gid")) {
            e->has_gid = vlen > 0;
            if (vlen && parse_dec(val, vlen, &e->gid) < 0)
                return reject(u, "invalid PAX header", "bad gid");
        } else if (KEYIS(key, klen, "mtime")) {
            e->has_mtime = vlen > 0;
            if (vlen && parse_time(val, vlen, &e->mtime, &e->mtime_ns) < 0)
                return reject(u, "invalid PAX header", "bad mtime");
        } else if (KEYIS(key, klen, "atime")) {
            e->has_atime = vlen > 0;
            if (vlen && parse_time(val, vlen, &e->atime, &e->atime_ns) < 0)
                return reject(u, "invalid PAX header", "bad atime");
        } else if (klen > 13 && memcmp(key, "SCHILY.xattr.", 13) == 0) {
            if (add_xattr(u, key + 13, klen - 13, val, vlen) < 0)
                return -1;
        } else if (klen > 11 && memcmp(key, "GNU.sparse.", 11) == 0) {
            const char *k = key + 11;
            size_t kl = klen - 11;
            uint64_t v = 0;
            if (KEYIS(k, kl, "name")) {
                e->sp_name = val;
                e->sp_namelen = vlen;
            } else if (KEYIS(k, kl, "map")) {
                e->sp_map = val;
                e->sp_maplen = vlen;
            } else if (KEYIS(k, kl, "major") || KEYIS(k, kl, "minor")) {
                if (parse_dec(val, vlen, &v) < 0 || v > 100)
                    return reject(u, "invalid PAX header", "bad GNU.sparse version");
                if (k[1] == 'a')
                    e->sp_major = (int)v;
                else
                    e->sp_minor = (int)v;
            } else if (KEYIS(k, kl, "size") || KEYIS(k, kl, "realsize")) {
                if (parse_dec(val, vlen, &e->sp_size) < 0)
                    return reject(u, "invalid PAX header", "bad GNU.sparse size");
                e->has_sp_size = 1;
            } else if (KEYIS(k, kl, "numblocks")) {
                if (parse_dec(val, vlen, &e->sp_numblocks) < 0)
                    return reject(u, "invalid PAX header", "bad GNU.sparse.numblocks");
                e->has_sp_numblocks = 1;
            } else if (KEYIS(k, kl, "offset")) {
                if (e->sp_off_pending || parse_dec(val, vlen, &e->sp_off) < 0)
                    return reject(u, "invalid PAX header", "bad GNU.sparse.offset");
                e->sp_off_pending = 1;
            } else if (KEYIS(k, kl, "numbytes")) {
                if (!e->sp_off_pending || parse_dec(val, vlen, &v) < 0)
                    return reject(u, "invalid PAX header", "bad GNU.sparse.numbytes");
                e->sp_off_pending = 0;
                if (push_seg(u, e->sp_off, v) < 0)
                    return -1;
            }
        }
        /* anything else (uname, gname, ctime, comment, LIBARCHIVE.*, ...) is ignored */
    }
    return 0;
}

/* ---------------------------------------------------------------- paths */

/* Clean a name lexically into u->path: drop the leading "/", empty and "."
 * components, collapse "a/..". Returns the length, or -1 if ".." climbs above the
 * root. u->path holds "" for the root itself. */
static long clean_name(struct pyrt_unpacker *u, const char *raw, size_t rawlen,
                       struct sbuf *out)
{
    if (sbuf_reserve(u, out, rawlen + 1) < 0)
        return -2;
    char *o = out->p;
    size_t olen = 0;
    size_t i = 0;
    while (i < rawlen) {
        while (i < rawlen && raw[i] == '/')
            i++;
        size_t start = i;
        while (i < rawlen && raw[i] != '/')
            i++;
        size_t clen = i - start;
        if (clen == 0 || (clen == 1 && raw[start] == '.'))
            continue;
        if (clen == 2 && raw[start] == '.' && raw[start + 1] == '.') {
            if (olen == 0)
                return -1;
            while (olen > 0 && o[olen - 1] != '/')
                olen--;
            if (olen > 0)
                olen--; /* the '/' */
            continue;
        }
        if (olen)
            o[olen++] = '/';
        memcpy(o + olen, raw + start, clen);
        olen += clen;
    }
    o[olen] = '\0';
    out->len = olen;
    return (long)olen;
}

static void cache_clear(struct pyrt_unpacker *u)
{
    for (int i = 0; i < NCACHE; i++) {
        if (u->cache_fd[i] >= 0)
            drop_fd(u->cache_fd[i]);
        u->cache_fd[i] = -1;
        free(u->cache_path[i]);
        u->cache_path[i] = NULL;
        u->cache_len[i] = 0;
    }
}

/* Remember fd (taken over) as the directory at dir. */
static void cache_put(struct pyrt_unpacker *u, const char *dir, size_t len, int fd)
{
    unsigned int i = u->cache_next++ % NCACHE;
    char *copy = malloc(len + 1);
    if (!copy) {
        drop_fd(fd);
        return;
    }
    memcpy(copy, dir, len);
    copy[len] = '\0';
    if (u->cache_fd[i] >= 0)
        drop_fd(u->cache_fd[i]);
    free(u->cache_path[i]);
    u->cache_path[i] = copy;
    u->cache_len[i] = len;
    u->cache_fd[i] = fd;
}

static int open_in_root_retry(int rootfd, const char *path, int flags)
{
    int fd;
    for (int tries = 0; tries < 8; tries++) {
        fd = pyrt_open_in_root(rootfd, path, flags);
        if (fd >= 0 || errno != EAGAIN)
            break;
    }
    return fd;
}

/* An fd (owned by the cache: do not close) of directory dir (len bytes of a
 * cleaned path), resolved inside the root; missing directories are created. */
static int parent_fd(struct pyrt_unpacker *u, const char *dir, size_t len)
{
    if (len == 0)
        return u->rootfd;
    for (int i = 0; i < NCACHE; i++)
        if (u->cache_fd[i] >= 0 && u->cache_len[i] == len &&
            memcmp(u->cache_path[i], dir, len) == 0)
            return u->cache_fd[i];
    if (sbuf_reserve(u, &u->tmp, len + 1) < 0)
        return -1;
    memcpy(u->tmp.p, dir, len);
    u->tmp.p[len] = '\0';
    int fd = open_in_root_retry(u->rootfd, u->tmp.p, O_PATH | O_DIRECTORY);
    if (fd < 0 && errno == ENOENT) {
        /* parents the archive did not list: create them (0755, owned by us) */
        int p = pyrt_ensure_in_root(u->rootfd, u->tmp.p, 0);
        if (p < 0)
            return sysfail(u, "mkdirat");
        drop_fd(p);
        fd = open_in_root_retry(u->rootfd, u->tmp.p, O_PATH | O_DIRECTORY);
    }
    if (fd < 0)
        return sysfail(u, "openat2");
    cache_put(u, dir, len, fd);
    return fd;
}

/* Remove the directory name below pfd and everything in it, never following a
 * symlink. */
static int remove_tree(struct pyrt_unpacker *u, int pfd, const char *name, int depth)
{
    if (depth > MAX_REMOVE_DEPTH) {
        errno = ELOOP;
        return sysfail(u, "unlinkat");
    }
    int dfd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0)
        return sysfail(u, "openat");
    DIR *d = fdopendir(dfd);
    if (!d) {
        drop_fd(dfd);
        return sysfail(u, "fdopendir");
    }
    int rc = 0;
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de) {
            if (errno)
                rc = sysfail(u, "readdir");
            break;
        }
        const char *n = de->d_name;
        if (n[0] == '.' && (n[1] == '\0' || (n[1] == '.' && n[2] == '\0')))
            continue;
        if (de->d_type != DT_DIR && unlinkat(dirfd(d), n, 0) == 0)
            continue;
        if (de->d_type != DT_DIR && errno != EISDIR) {
            rc = sysfail(u, "unlinkat");
            break;
        }
        if (remove_tree(u, dirfd(d), n, depth + 1) < 0) {
            rc = -1;
            break;
        }
    }
    closedir(d);
    if (rc == 0 && unlinkat(pfd, name, AT_REMOVEDIR) < 0)
        rc = sysfail(u, "unlinkat");
    return rc;
}

/* Make room for a new entry name below pfd. Returns 1 if an existing directory
 * is kept (keep_dir), 0 if the name is free now, -1 on error. */
static int make_room(struct pyrt_unpacker *u, int pfd, const char *name, int keep_dir)
{
    struct stat st;
    if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        if (errno == ENOENT)
            return 0;
        return sysfail(u, "fstatat");
    }
    if (S_ISDIR(st.st_mode) && keep_dir)
        return 1;
    cache_clear(u); /* a cached parent may go through what is removed */
    if (S_ISDIR(st.st_mode))
        return remove_tree(u, pfd, name, 0) < 0 ? -1 : 0;
    if (unlinkat(pfd, name, 0) < 0)
        return sysfail(u, "unlinkat");
    return 0;
}

/* ---------------------------------------------------------------- metadata */

static int xattr_allowed(const char *name, size_t nlen)
{
    static const char *const deny[] = {"security.", "trusted.overlay.", "user.overlay."};
    if (nlen == 0 || nlen > XATTR_NAME_MAX || memchr(name, '\0', nlen))
        return 0;
    for (size_t i = 0; i < sizeof deny / sizeof deny[0]; i++) {
        size_t dl = strlen(deny[i]);
        if (nlen >= dl && memcmp(name, deny[i], dl) == 0)
            return 0;
    }
    return 1;
}

/* Set the entry's xattrs on fd (a real fd) or, if fd < 0, on name below pfd
 * without following it. */
static int apply_xattrs(struct pyrt_unpacker *u, int fd, int pfd, const char *name)
{
    struct entry *e = &u->e;
    for (size_t i = 0; i < e->nxattrs; i++) {
        struct xref *x = &e->xattrs[i];
        if (!xattr_allowed(x->name, x->nlen)) {
            u->stats.skipped++;
            continue;
        }
        if (x->vlen > u->lim.max_xattr_size)
            return reject(u, "xattr too large", "%zu bytes, max_xattr_size is %llu", x->vlen,
                          (unsigned long long)u->lim.max_xattr_size);
        char xname[XATTR_NAME_MAX + 1];
        memcpy(xname, x->name, x->nlen);
        xname[x->nlen] = '\0';
        int rc;
        if (fd >= 0) {
            rc = fsetxattr(fd, xname, x->val, x->vlen, 0);
        } else {
            char proc[64 + NAME_MAX];
            int n = snprintf(proc, sizeof proc, "/proc/self/fd/%d/%s", pfd, name);
            if (n < 0 || (size_t)n >= sizeof proc) {
                errno = ENAMETOOLONG;
                return sysfail(u, "lsetxattr");
            }
            rc = lsetxattr(proc, xname, x->val, x->vlen, 0);
        }
        if (rc < 0) {
            /* not every filesystem takes every namespace (user.* on a symlink or
             * a device): skipped, like other runtimes do */
            if (errno == ENOTSUP || errno == EOPNOTSUPP || errno == EPERM) {
                u->stats.skipped++;
                continue;
            }
            return sysfail(u, "setxattr");
        }
    }
    return 0;
}

static void entry_times(struct pyrt_unpacker *u, struct timespec ts[2])
{
    struct entry *e = &u->e;
    ts[1].tv_sec = (time_t)e->mtime;
    ts[1].tv_nsec = e->mtime_ns;
    if (e->has_atime) {
        ts[0].tv_sec = (time_t)e->atime;
        ts[0].tv_nsec = e->atime_ns;
    } else {
        ts[0] = ts[1];
    }
}

/* Whether to chown: always for what existed before (fresh == 0); a node this
 * entry just created already belongs to us (no setgid directory is made before
 * the end, so no group is inherited, unless the root itself is setgid). */
static int want_chown(struct pyrt_unpacker *u, int fresh)
{
    if (u->lim.flags & PYRT_UNPACK_NO_CHOWN)
        return 0;
    return !fresh || u->root_setgid || (uid_t)u->e.uid != u->euid ||
           (gid_t)u->e.gid != u->egid;
}

static int remember_dir(struct pyrt_unpacker *u, const char *path, size_t len, mode_t mode)
{
    uint64_t need = sizeof(struct dirrec) + len + 1;
    if (u->lim.max_meta_memory != UINT64_MAX && u->meta_mem + need > u->lim.max_meta_memory)
        return reject(u, "too many directories", "their metadata exceeds max_meta_memory (%llu)",
                      (unsigned long long)u->lim.max_meta_memory);
    if (u->ndirs == u->dircap) {
        size_t cap = u->dircap ? u->dircap * 2 : 64;
        struct dirrec *d = realloc(u->dirs, cap * sizeof *d);
        if (!d) {
            errno = ENOMEM;
            return sysfail(u, "malloc");
        }
        u->dirs = d;
        u->dircap = cap;
    }
    struct dirrec *r = &u->dirs[u->ndirs];
    r->pathoff = u->dirpaths.len;
    if (sbuf_append(u, &u->dirpaths, len ? path : ".", len ? len : 1) < 0)
        return -1;
    u->dirpaths.len++; /* keep the NUL */
    r->mode = mode;
    entry_times(u, r->times);
    u->ndirs++;
    u->meta_mem += need;
    return 0;
}

/* ---------------------------------------------------------------- entries */

static void reset_entry(struct pyrt_unpacker *u)
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
    u->segi = 0;
    u->seg_done = 0;
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
    return (BLOCK - size % BLOCK) % BLOCK;
}

/* The regular file's data is all written: size, owner, xattrs, mode, times. */
static int finish_file(struct pyrt_unpacker *u)
{
    int fd = u->fd;
    struct timespec ts[2];
    u->carry = 0; /* trailing zeros: the ftruncate below makes them a hole */
    if (u->written_end < u->file_size && ftruncate(fd, (off_t)u->file_size) < 0)
        return sysfail(u, "ftruncate");
    if (want_chown(u, 1) && fchown(fd, (uid_t)u->e.uid, (gid_t)u->e.gid) < 0)
        return sysfail(u, "fchown");
    if (u->e.nxattrs && apply_xattrs(u, fd, -1, NULL) < 0)
        return -1;
    if (fchmod(fd, u->e.mode) < 0)
        return sysfail(u, "fchmod");
    entry_times(u, ts);
    if (futimens(fd, ts) < 0)
        return sysfail(u, "futimens");
    u->fd = -1;
    if (close(fd) < 0)
        return sysfail(u, "close");
    return 0;
}

static int entry_done(struct pyrt_unpacker *u)
{
    if (u->fd >= 0 && finish_file(u) < 0)
        return -1;
    reset_entry(u);
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

static int write_at(struct pyrt_unpacker *u, const unsigned char *p, size_t n, uint64_t off)
{
    u->stats.bytes += n;
    while (n > 0) {
        ssize_t w = pwrite(u->fd, p, n, (off_t)off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return sysfail(u, "write");
        }
        if (w == 0) {
            errno = EIO;
            return sysfail(u, "write");
        }
        p += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    if (off > u->written_end)
        u->written_end = off;
    return 0;
}

static int is_zero(const unsigned char *p, size_t n)
{
    return n == 0 || (p[0] == 0 && memcmp(p, zero_block, n) == 0);
}

/* Plain file data at u->file_off; blocks of zeros (HOLE_BLOCK, aligned in the file)
 * become holes. A block split between two feeds is completed first: the zero bytes
 * of its first part wait in u->carry (a count: they are zeros). */
static int write_plain(struct pyrt_unpacker *u, const unsigned char *p, size_t n)
{
    uint64_t off = u->file_off;
    u->file_off += n;
    if (!u->detect_holes)
        return write_at(u, p, n, off);
    if (u->carry) {
        size_t k = HOLE_BLOCK - u->carry;
        if (k > n)
            k = n;
        if (!is_zero(p, k)) {
            if (write_at(u, zero_block, u->carry, off - u->carry) < 0)
                return -1;
            u->carry = 0;
        } else {
            u->carry += k;
            p += k;
            n -= k;
            off += k;
            if (u->carry < HOLE_BLOCK)
                return 0; /* still incomplete: n is 0 */
            u->carry = 0; /* a whole block of zeros: a hole */
        }
    }
    size_t i = (size_t)((HOLE_BLOCK - off % HOLE_BLOCK) % HOLE_BLOCK);
    size_t run = 0; /* start of the data not written yet */
    while (i + HOLE_BLOCK <= n) {
        if (!is_zero(p + i, HOLE_BLOCK)) {
            i += HOLE_BLOCK;
            continue;
        }
        if (i > run && write_at(u, p + run, i - run, off + run) < 0)
            return -1;
        i += HOLE_BLOCK;
        while (i + HOLE_BLOCK <= n && is_zero(p + i, HOLE_BLOCK))
            i += HOLE_BLOCK;
        run = i;
    }
    /* the tail [i, n) starts a block (if i < n): zeros wait for the next feed */
    if (i < n && i >= run && is_zero(p + i, n - i)) {
        u->carry = n - i;
        n = i;
    }
    if (n > run)
        return write_at(u, p + run, n - run, off + run);
    return 0;
}

static int write_sparse(struct pyrt_unpacker *u, const unsigned char *p, size_t n)
{
    while (n > 0) {
        if (u->segi >= u->nsegs) {
            errno = EIO; /* cannot happen: the map's total was checked */
            return sysfail(u, "write");
        }
        struct seg *s = &u->segs[u->segi];
        uint64_t left = s->len - u->seg_done;
        size_t take = (size_t)min_u64(left, n);
        if (take && write_at(u, p, take, s->off + u->seg_done) < 0)
            return -1;
        u->seg_done += take;
        p += take;
        n -= take;
        if (u->seg_done == s->len) {
            u->segi++;
            u->seg_done = 0;
        }
    }
    return 0;
}

/* Validate the sparse map against the data that follows (datasize bytes) and the
 * apparent size. */
static int check_map(struct pyrt_unpacker *u, uint64_t datasize)
{
    uint64_t end = 0, total = 0;
    for (size_t i = 0; i < u->nsegs; i++) {
        struct seg *s = &u->segs[i];
        if (s->off < end || s->len > UINT64_MAX - s->off || s->off + s->len > u->file_size)
            return reject(u, "invalid sparse map", "segment %zu (%llu+%llu) out of order or past "
                          "the size %llu", i, (unsigned long long)s->off,
                          (unsigned long long)s->len, (unsigned long long)u->file_size);
        end = s->off + s->len;
        total += s->len;
    }
    if (total != datasize)
        return reject(u, "invalid sparse map", "segments hold %llu bytes, the entry %llu",
                      (unsigned long long)total, (unsigned long long)datasize);
    if (u->file_size > (uint64_t)INT64_MAX)
        return reject(u, "file too large", NULL);
    /* skip empty leading segments */
    while (u->segi < u->nsegs && u->segs[u->segi].len == 0)
        u->segi++;
    return 0;
}

/* Start writing the data of the open regular file (remaining bytes of it). */
static int start_data(struct pyrt_unpacker *u, uint64_t datasize)
{
    if (u->sparse != SPARSE_NONE && check_map(u, u->remaining) < 0)
        return -1;
    if (u->remaining == 0)
        return data_done(u, datasize);
    u->state = ST_DATA;
    u->pad = padding(datasize);
    return 0;
}

/* Parse the old GNU sparse entries of a header (4) or extension block (21). */
static int parse_oldgnu_map(struct pyrt_unpacker *u, const unsigned char *p, int n)
{
    for (int i = 0; i < n; i++) {
        const unsigned char *f = p + i * 24;
        if (f[0] == '\0')
            break;
        int64_t off, len;
        if (parse_field(f, 12, &off) < 0 || parse_field(f + 12, 12, &len) < 0 || off < 0 ||
            len < 0)
            return reject(u, "invalid sparse map", "bad GNU sparse entry");
        if (push_seg(u, (uint64_t)off, (uint64_t)len) < 0)
            return -1;
    }
    return 0;
}

/* Parse a 0.1 map: "off,len,off,len,...". */
static int parse_pax01_map(struct pyrt_unpacker *u)
{
    const char *s = u->e.sp_map;
    size_t n = u->e.sp_maplen, i = 0;
    uint64_t nums[2];
    int k = 0;
    if (n == 0)
        return 0;
    for (;;) {
        size_t start = i;
        while (i < n && s[i] != ',')
            i++;
        if (parse_dec(s + start, i - start, &nums[k]) < 0)
            return reject(u, "invalid sparse map", "bad GNU.sparse.map");
        if (++k == 2) {
            if (push_seg(u, nums[0], nums[1]) < 0)
                return -1;
            k = 0;
        }
        if (i == n)
            break;
        i++;
    }
    if (k != 0)
        return reject(u, "invalid sparse map", "odd number of values in GNU.sparse.map");
    return 0;
}

/* The entry named by cleaned path u->path: split into its parent's fd and the
 * last component (a pointer into u->path). */
static int split_path(struct pyrt_unpacker *u, int *pfd, const char **base)
{
    char *p = u->path.p;
    char *slash = strrchr(p, '/');
    if (!slash) {
        *pfd = u->rootfd;
        *base = p;
        return 0;
    }
    int fd = parent_fd(u, p, (size_t)(slash - p));
    if (fd < 0)
        return -1;
    *pfd = fd;
    *base = slash + 1;
    return 0;
}

static int open_regular(struct pyrt_unpacker *u, int pfd, const char *base)
{
    for (int tries = 0;; tries++) {
        int fd = openat(pfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd >= 0)
            return fd;
        if (errno != EEXIST || tries > 0)
            return sysfail(u, "openat");
        if (make_room(u, pfd, base, 0) < 0)
            return -1;
    }
}

static int do_dir(struct pyrt_unpacker *u, int pfd, const char *base, mode_t mode)
{
    /* the owner can always create inside until the mode is applied, at the end
     * (the special bits too, so that nothing inherits a setgid group meanwhile) */
    mode_t initial = (mode & 0777) | 0700;
    int kept = 0;
    if (mkdirat(pfd, base, initial) < 0) {
        if (errno != EEXIST)
            return sysfail(u, "mkdirat");
        kept = make_room(u, pfd, base, 1);
        if (kept < 0)
            return -1;
        if (!kept && mkdirat(pfd, base, initial) < 0)
            return sysfail(u, "mkdirat");
    }
    if (want_chown(u, !kept) &&
        fchownat(pfd, base, (uid_t)u->e.uid, (gid_t)u->e.gid, AT_SYMLINK_NOFOLLOW) < 0)
        return sysfail(u, "fchownat");
    if (u->e.nxattrs) {
        int dfd = openat(pfd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dfd < 0)
            return sysfail(u, "openat");
        int rc = apply_xattrs(u, dfd, -1, NULL);
        drop_fd(dfd);
        if (rc < 0)
            return -1;
    }
    /* the next entries are likely inside: cache it */
    if (!kept) {
        int dfd = openat(pfd, base, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dfd >= 0)
            cache_put(u, u->path.p, u->path.len, dfd);
    }
    u->stats.dirs++;
    return remember_dir(u, u->path.p, u->path.len, mode);
}

/* Owner, xattrs, mode (unless a symlink) and times of a node below pfd, without
 * following it. */
static int node_meta(struct pyrt_unpacker *u, int pfd, const char *base, mode_t mode,
                     int is_link)
{
    struct timespec ts[2];
    if (want_chown(u, 1) &&
        fchownat(pfd, base, (uid_t)u->e.uid, (gid_t)u->e.gid, AT_SYMLINK_NOFOLLOW) < 0)
        return sysfail(u, "fchownat");
    if (u->e.nxattrs && apply_xattrs(u, -1, pfd, base) < 0)
        return -1;
    if (!is_link && fchmodat(pfd, base, mode, AT_SYMLINK_NOFOLLOW) < 0)
        return sysfail(u, "fchmodat");
    entry_times(u, ts);
    if (utimensat(pfd, base, ts, AT_SYMLINK_NOFOLLOW) < 0)
        return sysfail(u, "utimensat");
    return 0;
}

static int do_symlink(struct pyrt_unpacker *u, int pfd, const char *base, const char *target)
{
    for (int tries = 0;; tries++) {
        if (symlinkat(target, pfd, base) == 0)
            break;
        if (errno != EEXIST || tries > 0)
            return sysfail(u, "symlinkat");
        if (make_room(u, pfd, base, 0) < 0)
            return -1;
    }
    u->stats.symlinks++;
    return node_meta(u, pfd, base, 0, 1);
}

static int do_node(struct pyrt_unpacker *u, int pfd, const char *base, mode_t kind, mode_t mode,
                   dev_t dev)
{
    if ((u->lim.flags & PYRT_UNPACK_SKIP_DEVICES) && (kind == S_IFCHR || kind == S_IFBLK)) {
        u->stats.devices_skipped++;
        return 0;
    }
    for (int tries = 0;; tries++) {
        if (mknodat(pfd, base, kind | 0600, dev) == 0)
            break;
        if (errno != EEXIST || tries > 0)
            return sysfail(u, "mknodat");
        if (make_room(u, pfd, base, 0) < 0)
            return -1;
    }
    u->stats.devices++;
    return node_meta(u, pfd, base, mode, 0);
}

static int do_hardlink(struct pyrt_unpacker *u, int pfd, const char *base)
{
    /* the target: cleaned like a name, resolved inside the root without crossing
     * any symlink */
    struct entry *e = &u->e;
    if (!e->link || e->linklen == 0)
        return reject(u, "hardlink without a target", NULL);
    if (memchr(e->link, '\0', e->linklen))
        return reject(u, "NUL byte in hardlink target", NULL);
    long len = clean_name(u, e->link, e->linklen, &u->tmp);
    if (len == -2)
        return -1;
    if (len < 0)
        return reject(u, "hardlink target outside layer", "target \"%.*s\"",
                      (int)(e->linklen > 200 ? 200 : e->linklen), e->link);
    if (len == 0)
        return reject(u, "hardlink to the layer root", NULL);
    char *t = u->tmp.p;
    char *slash = strrchr(t, '/');
    const char *tbase = t;
    int tpfd = u->rootfd, own = 0;
    if (slash) {
        *slash = '\0';
        struct pyrt_open_how how;
        memset(&how, 0, sizeof how);
        how.flags = O_PATH | O_DIRECTORY | O_CLOEXEC;
        how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
        for (int tries = 0; tries < 8; tries++) {
            tpfd = pyrt_openat2(u->rootfd, t, &how, sizeof how);
            if (tpfd >= 0 || errno != EAGAIN)
                break;
        }
        *slash = '/';
        if (tpfd < 0) {
            if (errno == ELOOP)
                return reject(u, "hardlink target through symlink", "target \"%.200s\"", t);
            if (errno == ENOENT || errno == ENOTDIR)
                return reject(u, "hardlink target not in layer", "target \"%.200s\"", t);
            return sysfail(u, "openat2");
        }
        own = 1;
        tbase = slash + 1;
    }
    int rc = 0;
    for (int tries = 0;; tries++) {
        if (linkat(tpfd, tbase, pfd, base, 0) == 0)
            break;
        if (errno == ENOENT && faccessat(tpfd, tbase, F_OK, AT_SYMLINK_NOFOLLOW) < 0) {
            rc = reject(u, "hardlink target not in layer", "target \"%.200s\"", t);
            break;
        }
        if (errno != EEXIST || tries > 0) {
            rc = sysfail(u, "linkat");
            break;
        }
        /* already the same file (a link to itself, or a repeated entry)? */
        struct stat a, b;
        if (fstatat(tpfd, tbase, &a, AT_SYMLINK_NOFOLLOW) == 0 &&
            fstatat(pfd, base, &b, AT_SYMLINK_NOFOLLOW) == 0 && a.st_dev == b.st_dev &&
            a.st_ino == b.st_ino)
            break;
        if (make_room(u, pfd, base, 0) < 0) {
            rc = -1;
            break;
        }
    }
    if (own)
        drop_fd(tpfd);
    if (rc == 0)
        u->stats.hardlinks++;
    return rc;
}

/* ".wh.NAME" (a whiteout) or ".wh..wh..opq" (an opaque directory). */
static int do_whiteout(struct pyrt_unpacker *u, int pfd, const char *base)
{
    const char *name = base + 4;
    if (strcmp(name, ".wh..opq") == 0) {
        /* the directory holding it (pfd, resolved in the root) becomes opaque */
        int dfd = openat(pfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
            return sysfail(u, "openat");
        const char *xname = (u->lim.flags & PYRT_UNPACK_USERXATTR) ? "user.overlay.opaque" : "trusted.overlay.opaque";
        int rc = fsetxattr(dfd, xname, "y", 1, 0);
        drop_fd(dfd);
        if (rc < 0)
            return sysfail(u, "setxattr");
        u->stats.opaques++;
        return 0;
    }
    if (!*name || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return reject(u, "invalid whiteout name", NULL);
    if (mknodat(pfd, name, S_IFCHR, makedev(0, 0)) < 0) {
        if (errno != EEXIST)
            return sysfail(u, "mknodat");
        /* something of this layer has that name: a whiteout only hides what the
         * lower layers have, so it is kept */
    }
    u->stats.whiteouts++;
    return 0;
}

/* The metadata of the layer root ("." or "/" entries): owner, xattrs; mode and
 * times at the end. */
static int do_root(struct pyrt_unpacker *u, mode_t mode)
{
    if (want_chown(u, 0) && fchown(u->rootfd, (uid_t)u->e.uid, (gid_t)u->e.gid) < 0)
        return sysfail(u, "fchown");
    if (u->e.nxattrs && apply_xattrs(u, u->rootfd, -1, NULL) < 0)
        return -1;
    u->stats.dirs++;
    return remember_dir(u, "", 0, mode);
}

/* A real entry's header: merge the extension headers, clean the name, create. */
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
    if (sbuf_reserve(u, &u->namebuf, plen + nlen + 2 + 101) < 0)
        return -1;
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

    if (parse_field(b + 100, 8, &v) < 0)
        return reject(u, "invalid tar header", "bad mode field");
    mode_t mode = (mode_t)v & 07777;
    e->mode = mode;
    int64_t size, uid, gid, mtime, dmaj, dmin;
    if (parse_field(b + 124, 12, &size) < 0 || size < 0 || parse_field(b + 108, 8, &uid) < 0 ||
        parse_field(b + 116, 8, &gid) < 0 || parse_field(b + 136, 12, &mtime) < 0)
        return reject(u, "invalid tar header", "bad numeric field");

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
    if (u->pax.len && apply_pax(u, e, u->pax.p, u->pax.len, 0) < 0)
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
            return reject(u, "uid or gid out of range", NULL);
        e->uid = (uint64_t)uid;
    }
    if (!e->has_gid) {
        if (gid < 0)
            return reject(u, "uid or gid out of range", NULL);
        e->gid = (uint64_t)gid;
    }
    if (!e->has_mtime) {
        e->mtime = mtime;
        e->mtime_ns = 0;
    }
    if (!e->has_size)
        e->size = (uint64_t)size;
    if (e->uid > 0xfffffffeULL || e->gid > 0xfffffffeULL)
        return reject(u, "uid or gid out of range", NULL);
    uint64_t datasize = e->size;

    u->stats.entries++;
    if (u->stats.entries > u->lim.max_entries)
        return reject(u, "too many entries", "more than max_entries (%llu)",
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
        return reject(u, "unsupported entry type", "type '%c' (0x%02x)",
                      (type >= 32 && type < 127) ? type : '?', (unsigned char)type);
    }
    if (is_sparse_pax && type != '0' && type != '\0' && type != '7')
        return reject(u, "invalid sparse entry", "sparse records on a non-regular entry");

    /* the name */
    if (memchr(e->name, '\0', e->namelen))
        return reject(u, "NUL byte in name", NULL);
    if (e->namelen > u->lim.max_path || e->linklen > u->lim.max_path)
        return reject(u, "name too long", "longer than max_path (%llu)",
                      (unsigned long long)u->lim.max_path);
    long clen = clean_name(u, e->name, e->namelen, &u->path);
    if (clen == -2)
        return -1;
    if (clen < 0)
        return reject(u, "path escapes the layer root", "\"..\" above the root");

    /* a regular file's data goes to disk; everything else skips its data */
    int regular = type == '0' || type == '\0' || type == '7' || type == 'S';
    int pfd;
    const char *base;

    if (clen == 0) {
        if (type != '5')
            return reject(u, "entry replaces the layer root", NULL);
        if (do_root(u, mode) < 0)
            return -1;
        start_skip(u, datasize + padding(datasize));
        reset_entry(u);
        if (u->pad == 0)
            u->state = ST_HEADER;
        return 0;
    }

    /* OCI whiteouts and aufs metadata */
    const char *last = strrchr(u->path.p, '/');
    last = last ? last + 1 : u->path.p;
    int skip = 0, whiteout = 0;
    const int plain = (u->lim.flags & PYRT_UNPACK_PLAIN) != 0;
    for (const char *c = plain ? NULL : u->path.p; c; c = strchr(c, '/')) {
        if (*c == '/')
            c++;
        if (strncmp(c, ".wh.", 4) != 0)
            continue;
        if (c == last) {
            if (strncmp(c, ".wh..wh.", 8) == 0 && strcmp(c, ".wh..wh..opq") != 0)
                skip = 1; /* aufs metadata (.wh..wh.plnk, .wh..wh.aufs, ...) */
            else
                whiteout = 1;
        } else if (strncmp(c, ".wh..wh.", 8) == 0) {
            skip = 1; /* inside an aufs metadata directory */
        } else {
            return reject(u, "whiteout used as a directory", NULL);
        }
    }
    if (skip) {
        u->stats.skipped++;
        start_skip(u, datasize + padding(datasize));
        reset_entry(u);
        if (u->pad == 0)
            u->state = ST_HEADER;
        return 0;
    }

    if (split_path(u, &pfd, &base) < 0)
        return -1;

    if (whiteout || !regular) {
        int rc;
        if (whiteout)
            rc = do_whiteout(u, pfd, base);
        else if (type == '5')
            rc = do_dir(u, pfd, base, mode);
        else if (type == '2') {
            if (!e->link || e->linklen == 0)
                return reject(u, "symlink without a target", NULL);
            if (memchr(e->link, '\0', e->linklen))
                return reject(u, "NUL byte in symlink target", NULL);
            char *t = strndup(e->link, e->linklen);
            if (!t) {
                errno = ENOMEM;
                return sysfail(u, "malloc");
            }
            rc = do_symlink(u, pfd, base, t);
            free(t);
        } else if (type == '1')
            rc = do_hardlink(u, pfd, base);
        else {
            if (parse_field(b + 329, 8, &dmaj) < 0 || parse_field(b + 337, 8, &dmin) < 0 ||
                dmaj < 0 || dmin < 0 || dmaj > 0xfff || dmin > 0xfffff)
                return reject(u, "invalid tar header", "bad device number");
            mode_t kind = type == '3' ? S_IFCHR : type == '4' ? S_IFBLK : S_IFIFO;
            rc = do_node(u, pfd, base, kind, mode,
                         type == '6' ? 0 : makedev((unsigned)dmaj, (unsigned)dmin));
        }
        if (rc < 0)
            return -1;
        start_skip(u, datasize + padding(datasize));
        reset_entry(u);
        if (u->pad == 0)
            u->state = ST_HEADER;
        return 0;
    }

    /* a regular file */
    if (datasize > u->lim.max_file_size)
        return reject(u, "file too large", "%llu bytes, max_file_size is %llu",
                      (unsigned long long)datasize, (unsigned long long)u->lim.max_file_size);
    if (datasize > u->lim.max_bytes - u->declared)
        return reject(u, "layer too large", "its files exceed max_bytes (%llu)",
                      (unsigned long long)u->lim.max_bytes);
    u->declared += datasize;
    u->file_size = datasize;
    u->file_off = 0;
    u->written_end = 0;
    u->carry = 0;
    u->detect_holes = (u->lim.flags & PYRT_UNPACK_DETECT_HOLES) != 0;
    if (type == 'S') {
        int64_t real;
        u->sparse = SPARSE_OLDGNU;
        if (parse_field(b + 483, 12, &real) < 0 || real < 0)
            return reject(u, "invalid sparse map", "bad GNU real size");
        u->file_size = (uint64_t)real;
        if (parse_oldgnu_map(u, b + 386, 4) < 0)
            return -1;
    } else if (is_sparse_pax) {
        if (!e->has_sp_size)
            return reject(u, "invalid sparse entry", "no GNU.sparse size");
        u->file_size = e->sp_size;
        if (e->sp_major == 1 && e->sp_minor == 0) {
            u->sparse = SPARSE_PAX1;
        } else if (e->sp_major <= 0 && e->sp_minor <= 1) {
            u->sparse = SPARSE_PAX0;
            if (e->sp_off_pending)
                return reject(u, "invalid sparse map", "GNU.sparse.offset without numbytes");
            if (parse_pax01_map(u) < 0)
                return -1;
            if (e->has_sp_numblocks && e->sp_numblocks != u->nsegs)
                return reject(u, "invalid sparse map", "GNU.sparse.numblocks mismatch");
        } else {
            return reject(u, "unsupported sparse format", "GNU.sparse %d.%d", e->sp_major,
                          e->sp_minor);
        }
    }
    if (u->sparse != SPARSE_NONE)
        u->detect_holes = 0;
    u->fd = open_regular(u, pfd, base);
    if (u->fd < 0)
        return -1;
    u->stats.files++;
    u->stats.apparent += u->file_size;
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
            return reject(u, "invalid sparse map", "no map in the data");
        return 0;
    }
    return start_data(u, datasize);
}

static int on_block(struct pyrt_unpacker *u, const unsigned char *b)
{
    if (u->state == ST_SPARSE_EXT) {
        if (parse_oldgnu_map(u, b, 21) < 0)
            return -1;
        if (b[504])
            return 0; /* another extension block follows */
        uint64_t datasize = u->pad;
        return start_data(u, datasize);
    }
    if (block_is_zero(b)) {
        if (u->state == ST_EOF1) {
            u->state = ST_DONE;
        } else {
            u->state = ST_EOF1;
        }
        return 0;
    }
    if (u->state == ST_EOF1)
        return reject(u, "invalid tar stream", "data after an end-of-archive block");
    if (!checksum_ok(b))
        return reject(u, "invalid tar header", "checksum mismatch at byte %llu",
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
    if (parse_field(b + 124, 12, &size) < 0 || size < 0)
        return reject(u, "invalid tar header", "bad size field");
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
        return reject(u, "extension header too large", "%lld bytes, max_header_size is %llu",
                      (long long)size, (unsigned long long)u->lim.max_header_size);
    if (sbuf_reserve(u, dst, dst->len + (size_t)size + 1) < 0)
        return -1;
    u->ext_kind = kind;
    u->remaining = (uint64_t)size;
    u->pad = padding((uint64_t)size);
    u->state = ST_EXT;
    if (size == 0)
        u->state = u->pad ? ST_SKIP : ST_HEADER;
    return 0;
}

/* One byte of a PAX 1.0 sparse map: decimal numbers, one per line: the count,
 * then offset and size pairs; the map is padded to a block. */
static int map_byte(struct pyrt_unpacker *u, unsigned char c)
{
    if (u->map_padding)
        return 0;
    if (c >= '0' && c <= '9') {
        if (++u->map_digits > 20 || u->map_num > (UINT64_MAX - 9) / 10)
            return reject(u, "invalid sparse map", "number too long");
        u->map_num = u->map_num * 10 + (uint64_t)(c - '0');
        return 0;
    }
    if (c != '\n' || u->map_digits == 0)
        return reject(u, "invalid sparse map", "unexpected byte 0x%02x", c);
    uint64_t n = u->map_num;
    u->map_num = 0;
    u->map_digits = 0;
    if (!u->map_have_count) {
        u->map_have_count = 1;
        if (n > u->lim.max_sparse_segments || n > UINT64_MAX / 4)
            return reject(u, "too many sparse segments", "%llu, more than %llu",
                          (unsigned long long)n,
                          (unsigned long long)u->lim.max_sparse_segments);
        u->map_count = n;
        u->map_needed = 2 * n;
    } else if (u->map_needed % 2 == 0) {
        u->map_count = n; /* an offset, kept until its size */
        u->map_needed--;
    } else {
        if (push_seg(u, u->map_count, n) < 0)
            return -1;
        u->map_needed--;
    }
    if (u->map_needed == 0)
        u->map_padding = 1;
    return 0;
}

static int feed(struct pyrt_unpacker *u, const unsigned char *p, size_t len)
{
    while (len > 0) {
        size_t before = len;
        switch (u->state) {
        case ST_HEADER:
        case ST_EOF1:
        case ST_SPARSE_EXT: {
            const unsigned char *blk;
            if (u->hdr_fill == 0 && len >= BLOCK) {
                blk = p;
                p += BLOCK;
                len -= BLOCK;
            } else {
                size_t take = BLOCK - u->hdr_fill;
                if (take > len)
                    take = len;
                memcpy(u->hdr + u->hdr_fill, p, take);
                u->hdr_fill += take;
                p += take;
                len -= take;
                if (u->hdr_fill < BLOCK) {
                    u->stats.stream += before - len;
                    return 0;
                }
                u->hdr_fill = 0;
                blk = u->hdr;
            }
            u->stats.stream += before - len;
            before = len;
            u->block_off = u->stats.stream - BLOCK;
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
                    if (apply_pax(u, &u->g, u->gpax.p, u->gpax.len, 1) < 0)
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
                if (u->map_padding && u->map_bytes % BLOCK == 0)
                    break;
                if (map_byte(u, p[i]) < 0)
                    return -1;
                u->map_bytes++;
            }
            p += i;
            len -= i;
            u->remaining -= i;
            if (u->map_padding && u->map_bytes % BLOCK == 0) {
                /* the map and its padding are done: the data follows */
                uint64_t datasize = u->remaining + u->map_bytes;
                if (start_data(u, datasize) < 0)
                    return -1;
            } else if (u->remaining == 0) {
                return reject(u, "invalid sparse map", "the map runs past the entry's data");
            }
            break;
        }
        case ST_DATA: {
            size_t take = (size_t)min_u64(u->remaining, len);
            int rc = u->sparse != SPARSE_NONE ? write_sparse(u, p, take)
                                              : write_plain(u, p, take);
            if (rc < 0)
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
    u->rootfd = openat(destfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (u->rootfd < 0) {
        pyrt_fail(e, "openat", "");
        free(u);
        return NULL;
    }
    if (lim)
        u->lim = *lim;
    else
        pyrt_unpack_limits_init(&u->lim);
    u->euid = geteuid();
    u->egid = getegid();
    u->root_setgid = (st.st_mode & S_ISGID) != 0;
    u->fd = -1;
    for (int i = 0; i < NCACHE; i++)
        u->cache_fd[i] = -1;
    u->state = ST_HEADER;
    reset_entry(u);
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
    if (feed(u, buf, len) < 0) {
        u->failed = 1;
        if (u->fd >= 0) {
            drop_fd(u->fd);
            u->fd = -1;
        }
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
            reject(u, "truncated stream", "no end-of-archive blocks");
        else if (u->state == ST_DATA || u->state == ST_SPARSE_MAP)
            reject(u, "truncated stream", "%llu bytes of the entry's data missing",
                   (unsigned long long)u->remaining);
        else
            reject(u, "truncated stream", "it ends inside a header");
        if (u->state != ST_DATA && u->state != ST_SPARSE_MAP && u->state != ST_SPARSE_EXT)
            u->err.path[0] = '\0';
        u->failed = 1;
        if (u->fd >= 0) {
            drop_fd(u->fd);
            u->fd = -1;
        }
        return replay(u, e);
    }
    /* the directories' modes and times, now that nothing more is created inside */
    reset_entry(u);
    cache_clear(u);
    for (size_t i = 0; i < u->ndirs; i++) {
        struct dirrec *r = &u->dirs[i];
        const char *path = u->dirpaths.p + r->pathoff;
        int fd = open_in_root_retry(u->rootfd, path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
        if (fd < 0) {
            if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP)
                continue; /* replaced by a later entry */
            pyrt_fail(&u->err, "openat2", path);
            u->failed = 1;
            return replay(u, e);
        }
        const char *op = NULL;
        if (fchmod(fd, r->mode) < 0)
            op = "fchmod";
        else if (futimens(fd, r->times) < 0)
            op = "futimens";
        if (op) {
            pyrt_fail(&u->err, op, path);
            drop_fd(fd);
            u->failed = 1;
            return replay(u, e);
        }
        drop_fd(fd);
    }
    u->ndirs = 0;
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
    if (u->fd >= 0)
        drop_fd(u->fd);
    cache_clear(u);
    if (u->rootfd >= 0)
        drop_fd(u->rootfd);
    sbuf_free(&u->pax);
    sbuf_free(&u->gpax);
    sbuf_free(&u->longname);
    sbuf_free(&u->longlink);
    sbuf_free(&u->namebuf);
    sbuf_free(&u->path);
    sbuf_free(&u->tmp);
    sbuf_free(&u->dirpaths);
    free(u->e.xattrs);
    free(u->segs);
    free(u->dirs);
    free(u);
}
