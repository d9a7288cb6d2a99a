/* The fields of tar headers (tarheader.h), for the layer unpacker's parser
 * (tarread.c): numbers, the header checksum, PAX records, the GNU sparse maps
 * (old GNU, PAX 0.0, 0.1 and 1.0). Parsing only: nothing here touches the
 * filesystem, and it calls nothing of the unpacker but its failures
 * (unpackerr.c). */
#include "tarheader.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "unpacker.h"
#include "unpackerr.h"

static const unsigned char zero_block[TAR_BLOCK];

/* ---------------------------------------------------------------- numbers */

/* A numeric header field: octal (spaces and NULs around it), or base-256 when the
 * first byte has its high bit set. Returns 0, or -1 if malformed. */
int pyrt_tar_field(const unsigned char *f, size_t n, int64_t *out)
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

int pyrt_tar_block_is_zero(const unsigned char *b)
{
    return memcmp(b, zero_block, TAR_BLOCK) == 0;
}

int pyrt_tar_checksum_ok(const unsigned char *b)
{
    int64_t stored;
    if (pyrt_tar_field(b + 148, 8, &stored) < 0)
        return 0;
    uint64_t usum = 0;
    int64_t ssum = 0;
    for (int i = 0; i < TAR_BLOCK; i++) {
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
            return pyrt_unpack_sysfail(u, "malloc");
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
        return pyrt_unpack_reject(u, "too many sparse segments", "more than %llu",
                                  (unsigned long long)u->lim.max_sparse_segments);
    if (u->nsegs == u->segcap) {
        size_t cap = u->segcap ? u->segcap * 2 : 16;
        uint64_t mem = (uint64_t)cap * sizeof(struct seg);
        if (mem > u->lim.max_meta_memory && u->lim.max_meta_memory != UINT64_MAX)
            return pyrt_unpack_reject(u, "sparse map too large", NULL);
        struct seg *s = realloc(u->segs, cap * sizeof *s);
        if (!s) {
            errno = ENOMEM;
            return pyrt_unpack_sysfail(u, "malloc");
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
int pyrt_tar_apply_pax(struct pyrt_unpacker *u, struct entry *e, const char *buf, size_t len,
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
            return pyrt_unpack_reject(u, "invalid PAX header",
                                      "malformed record at byte %zu", pos);
        }
        const char *rec = buf + pos;
        const char *end = rec + rlen - 1; /* the '\n' */
        if (buf + i + 1 > end || *end != '\n')
            return pyrt_unpack_reject(u, "invalid PAX header",
                                      "record at byte %zu not terminated", pos);
        const char *key = buf + i + 1;
        const char *eq = memchr(key, '=', (size_t)(end - key));
        if (!eq || eq == key)
            return pyrt_unpack_reject(u, "invalid PAX header",
                                      "record at byte %zu has no key", pos);
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
                return pyrt_unpack_reject(u, "invalid PAX header", "bad size");
        } else if (KEYIS(key, klen, "uid")) {
            e->has_uid = vlen > 0;
            if (vlen && parse_dec(val, vlen, &e->uid) < 0)
                return pyrt_unpack_reject(u, "invalid PAX header", "bad uid");
        } else if (KEYIS(key, klen, "gid")) {
            e->has_gid = vlen > 0;
            if (vlen && parse_dec(val, vlen, &e->gid) < 0)
                return pyrt_unpack_reject(u, "invalid PAX header", "bad gid");
        } else if (KEYIS(key, klen, "mtime")) {
            e->has_mtime = vlen > 0;
            if (vlen && parse_time(val, vlen, &e->mtime, &e->mtime_ns) < 0)
                return pyrt_unpack_reject(u, "invalid PAX header", "bad mtime");
        } else if (KEYIS(key, klen, "atime")) {
            e->has_atime = vlen > 0;
            if (vlen && parse_time(val, vlen, &e->atime, &e->atime_ns) < 0)
                return pyrt_unpack_reject(u, "invalid PAX header", "bad atime");
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
                    return pyrt_unpack_reject(u, "invalid PAX header", "bad GNU.sparse version");
                if (k[1] == 'a')
                    e->sp_major = (int)v;
                else
                    e->sp_minor = (int)v;
            } else if (KEYIS(k, kl, "size") || KEYIS(k, kl, "realsize")) {
                if (parse_dec(val, vlen, &e->sp_size) < 0)
                    return pyrt_unpack_reject(u, "invalid PAX header", "bad GNU.sparse size");
                e->has_sp_size = 1;
            } else if (KEYIS(k, kl, "numblocks")) {
                if (parse_dec(val, vlen, &e->sp_numblocks) < 0)
                    return pyrt_unpack_reject(u, "invalid PAX header", "bad GNU.sparse.numblocks");
                e->has_sp_numblocks = 1;
            } else if (KEYIS(k, kl, "offset")) {
                if (e->sp_off_pending || parse_dec(val, vlen, &e->sp_off) < 0)
                    return pyrt_unpack_reject(u, "invalid PAX header", "bad GNU.sparse.offset");
                e->sp_off_pending = 1;
            } else if (KEYIS(k, kl, "numbytes")) {
                if (!e->sp_off_pending || parse_dec(val, vlen, &v) < 0)
                    return pyrt_unpack_reject(u, "invalid PAX header", "bad GNU.sparse.numbytes");
                e->sp_off_pending = 0;
                if (push_seg(u, e->sp_off, v) < 0)
                    return -1;
            }
        }
        /* anything else (uname, gname, ctime, comment, LIBARCHIVE.*, ...) is ignored */
    }
    return 0;
}

/* ---------------------------------------------------------------- sparse maps */

/* Validate the sparse map against the data that follows (datasize bytes) and the
 * apparent size. */
int pyrt_tar_check_map(struct pyrt_unpacker *u, uint64_t datasize)
{
    uint64_t end = 0, total = 0;
    for (size_t i = 0; i < u->nsegs; i++) {
        struct seg *s = &u->segs[i];
        if (s->off < end || s->len > UINT64_MAX - s->off || s->off + s->len > u->file_size)
            return pyrt_unpack_reject(u, "invalid sparse map",
                                      "segment %zu (%llu+%llu) out of order or past the size %llu",
                                      i, (unsigned long long)s->off, (unsigned long long)s->len,
                                      (unsigned long long)u->file_size);
        end = s->off + s->len;
        total += s->len;
    }
    if (total != datasize)
        return pyrt_unpack_reject(u, "invalid sparse map",
                                  "segments hold %llu bytes, the entry %llu",
                                  (unsigned long long)total, (unsigned long long)datasize);
    if (u->file_size > (uint64_t)INT64_MAX)
        return pyrt_unpack_reject(u, "file too large", NULL);
    return 0;
}

/* Parse the old GNU sparse entries of a header (4) or extension block (21). */
int pyrt_tar_oldgnu_map(struct pyrt_unpacker *u, const unsigned char *p, int n)
{
    for (int i = 0; i < n; i++) {
        const unsigned char *f = p + i * 24;
        if (f[0] == '\0')
            break;
        int64_t off, len;
        if (pyrt_tar_field(f, 12, &off) < 0 || pyrt_tar_field(f + 12, 12, &len) < 0 || off < 0 ||
            len < 0)
            return pyrt_unpack_reject(u, "invalid sparse map", "bad GNU sparse entry");
        if (push_seg(u, (uint64_t)off, (uint64_t)len) < 0)
            return -1;
    }
    return 0;
}

/* Parse a 0.1 map: "off,len,off,len,...". */
int pyrt_tar_pax01_map(struct pyrt_unpacker *u)
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
            return pyrt_unpack_reject(u, "invalid sparse map", "bad GNU.sparse.map");
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
        return pyrt_unpack_reject(u, "invalid sparse map",
                                  "odd number of values in GNU.sparse.map");
    return 0;
}

/* One byte of a PAX 1.0 sparse map: decimal numbers, one per line: the count,
 * then offset and size pairs; the map is padded to a block. */
int pyrt_tar_map_byte(struct pyrt_unpacker *u, unsigned char c)
{
    if (u->map_padding)
        return 0;
    if (c >= '0' && c <= '9') {
        if (++u->map_digits > 20 || u->map_num > (UINT64_MAX - 9) / 10)
            return pyrt_unpack_reject(u, "invalid sparse map", "number too long");
        u->map_num = u->map_num * 10 + (uint64_t)(c - '0');
        return 0;
    }
    if (c != '\n' || u->map_digits == 0)
        return pyrt_unpack_reject(u, "invalid sparse map", "unexpected byte 0x%02x", c);
    uint64_t n = u->map_num;
    u->map_num = 0;
    u->map_digits = 0;
    if (!u->map_have_count) {
        u->map_have_count = 1;
        if (n > u->lim.max_sparse_segments || n > UINT64_MAX / 4)
            return pyrt_unpack_reject(u, "too many sparse segments", "%llu, more than %llu",
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
