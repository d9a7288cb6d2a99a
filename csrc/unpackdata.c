/* The data of the regular files a layer holds (unpackdata.h), as the tar parser
 * (tarread.c) reads it: written from the caller's buffer at its offsets, aligned
 * 4 KiB blocks of zeros of plain files left as holes (with
 * PYRT_UNPACK_DETECT_HOLES), sparse files' segments at their places; then the
 * file's size, owner, xattrs, mode and times, set through the filesystem side
 * (unpackfs.c), which stands below it. */
#include "unpackdata.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "unpacker.h"
#include "unpackerr.h"
#include "unpackfs.h"

#define HOLE_BLOCK 4096

static const unsigned char zero_block[HOLE_BLOCK];

static uint64_t min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

static int write_at(struct pyrt_unpacker *u, const unsigned char *p, size_t n, uint64_t off)
{
    u->stats.bytes += n;
    while (n > 0) {
        ssize_t w = pwrite(u->fs.fd, p, n, (off_t)off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return pyrt_unpack_sysfail(u, "write");
        }
        if (w == 0) {
            errno = EIO;
            return pyrt_unpack_sysfail(u, "write");
        }
        p += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    if (off > u->fs.written_end)
        u->fs.written_end = off;
    return 0;
}

static int is_zero(const unsigned char *p, size_t n)
{
    return n == 0 || (p[0] == 0 && memcmp(p, zero_block, n) == 0);
}

/* Plain file data at u->fs.file_off; blocks of zeros (HOLE_BLOCK, aligned in the
 * file) become holes. A block split between two feeds is completed first: the zero
 * bytes of its first part wait in u->fs.carry (a count: they are zeros). */
static int write_plain(struct pyrt_unpacker *u, const unsigned char *p, size_t n)
{
    uint64_t off = u->fs.file_off;
    u->fs.file_off += n;
    if (!u->fs.detect_holes)
        return write_at(u, p, n, off);
    if (u->fs.carry) {
        size_t k = HOLE_BLOCK - u->fs.carry;
        if (k > n)
            k = n;
        if (!is_zero(p, k)) {
            if (write_at(u, zero_block, u->fs.carry, off - u->fs.carry) < 0)
                return -1;
            u->fs.carry = 0;
        } else {
            u->fs.carry += k;
            p += k;
            n -= k;
            off += k;
            if (u->fs.carry < HOLE_BLOCK)
                return 0; /* still incomplete: n is 0 */
            u->fs.carry = 0; /* a whole block of zeros: a hole */
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
        u->fs.carry = n - i;
        n = i;
    }
    if (n > run)
        return write_at(u, p + run, n - run, off + run);
    return 0;
}

static int write_sparse(struct pyrt_unpacker *u, const unsigned char *p, size_t n)
{
    while (n > 0) {
        if (u->fs.segi >= u->nsegs) {
            errno = EIO; /* cannot happen: the map's total was checked */
            return pyrt_unpack_sysfail(u, "write");
        }
        struct seg *s = &u->segs[u->fs.segi];
        uint64_t left = s->len - u->fs.seg_done;
        size_t take = (size_t)min_u64(left, n);
        if (take && write_at(u, p, take, s->off + u->fs.seg_done) < 0)
            return -1;
        u->fs.seg_done += take;
        p += take;
        n -= take;
        if (u->fs.seg_done == s->len) {
            u->fs.segi++;
            u->fs.seg_done = 0;
        }
    }
    return 0;
}

int pyrt_unpack_write(struct pyrt_unpacker *u, const unsigned char *p, size_t n)
{
    return u->sparse != SPARSE_NONE ? write_sparse(u, p, n) : write_plain(u, p, n);
}

int pyrt_unpack_close_file(struct pyrt_unpacker *u)
{
    int fd = u->fs.fd;
    struct timespec ts[2];
    if (fd < 0)
        return 0;
    u->fs.carry = 0; /* trailing zeros: the ftruncate below makes them a hole */
    if (u->fs.written_end < u->file_size && ftruncate(fd, (off_t)u->file_size) < 0)
        return pyrt_unpack_sysfail(u, "ftruncate");
    if (pyrt_unpack_want_chown(u, 1) && fchown(fd, (uid_t)u->e.uid, (gid_t)u->e.gid) < 0)
        return pyrt_unpack_sysfail(u, "fchown");
    if (u->e.nxattrs && pyrt_unpack_xattrs(u, fd, -1, NULL) < 0)
        return -1;
    if (fchmod(fd, u->e.mode) < 0)
        return pyrt_unpack_sysfail(u, "fchmod");
    pyrt_unpack_times(u, ts);
    if (futimens(fd, ts) < 0)
        return pyrt_unpack_sysfail(u, "futimens");
    u->fs.fd = -1;
    if (close(fd) < 0)
        return pyrt_unpack_sysfail(u, "close");
    return 0;
}
