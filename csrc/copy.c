/* Tree copy (see copy.h). */
#include "copy.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "err.h"
#include "resolve.h"
#include "syscalls.h"
#include "treewalk.h"

#ifndef FICLONE
#define FICLONE _IOW(0x94, 9, int)
#endif

#define COPY_MAX_DEPTH 400
#define COPY_BUF (1u << 20)

struct cp {
    unsigned flags;
    struct pyrt_error *e;
    struct pyrt_copy_stats *st;
    struct pyrt_inomap links; /* src (dev, ino) -> dst path, for nlink > 1 */
    struct pyrt_path path;    /* current path, relative to the roots */
    struct pyrt_xattrs xa;
    int dstroot;
    int reflink;  /* still worth trying FICLONE */
    int cfr;      /* still worth trying copy_file_range */
    int root;     /* running as root */
    int depth;
    char *buf;
    char *link; /* a symlink's target */
    size_t link_cap;
};

static int cp_fail(struct cp *c, const char *op)
{
    return pyrt_fail(c->e, op, c->path.len ? c->path.buf : ".");
}

static int cp_fail_errno(struct cp *c, int err, const char *op)
{
    return pyrt_fail_errno(c->e, err, op, c->path.len ? c->path.buf : ".");
}

static int is_overlay_xattr(unsigned flags, const char *name)
{
    if (strncmp(name, "trusted.overlay.", 16) == 0)
        return 1;
    return (flags & PYRT_COPY_USERXATTR) && strncmp(name, "user.overlay.", 13) == 0;
}

/* Whether the dir whose xattrs are in x is opaque (trusted.overlay.opaque=y). */
static int is_opaque(const struct pyrt_xattrs *x, unsigned flags)
{
    const struct pyrt_xattr *a =
        pyrt_xattrs_overlay(x, (flags & PYRT_COPY_USERXATTR) != 0, "opaque");
    return a && a->size == 1 && a->value[0] == 'y';
}

/* Remove dirfd/name whatever it is, recursively, never following symlinks. */
static int remove_at(struct cp *c, int dirfd, const char *name, int depth);

static int empty_dir(struct cp *c, int dfd, int depth)
{
    struct pyrt_names names;
    if (pyrt_names_read(dfd, &names) < 0)
        return cp_fail(c, "read dir");
    int rc = 0;
    for (size_t i = 0; i < names.n && rc == 0; i++)
        rc = remove_at(c, dfd, names.v[i], depth + 1);
    pyrt_names_free(&names);
    return rc;
}

static int remove_at(struct cp *c, int dirfd, const char *name, int depth)
{
    if (unlinkat(dirfd, name, 0) == 0) {
        if (c->st)
            c->st->removed++;
        return 0;
    }
    if (errno == ENOENT)
        return 0;
    if (errno != EISDIR && errno != EPERM)
        return cp_fail(c, "unlink");
    if (depth > COPY_MAX_DEPTH)
        return cp_fail_errno(c, ELOOP, "remove (too deep)");
    int dfd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0)
        return cp_fail(c, "open dir to remove");
    int rc = empty_dir(c, dfd, depth);
    close(dfd);
    if (rc < 0)
        return -1;
    if (unlinkat(dirfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
        return cp_fail(c, "rmdir");
    if (c->st)
        c->st->removed++;
    return 0;
}

static int copy_range_rw(struct cp *c, int sfd, int dfd, off_t off, off_t len, off_t *done)
{
    while (len > 0) {
        size_t want = len > (off_t)COPY_BUF ? COPY_BUF : (size_t)len;
        ssize_t n = pread(sfd, c->buf, want, off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return cp_fail(c, "read");
        }
        if (n == 0)
            break;
        for (ssize_t w = 0; w < n;) {
            ssize_t m = pwrite(dfd, c->buf + w, (size_t)(n - w), off + w);
            if (m < 0) {
                if (errno == EINTR)
                    continue;
                return cp_fail(c, "write");
            }
            w += m;
        }
        off += n;
        len -= n;
        *done += n;
    }
    return 0;
}

static int copy_range(struct cp *c, int sfd, int dfd, off_t off, off_t len, off_t *done)
{
    while (len > 0 && c->cfr) {
        loff_t so = off, doff = off;
        size_t want = len > (off_t)(1u << 30) ? (1u << 30) : (size_t)len;
        ssize_t n = copy_file_range(sfd, &so, dfd, &doff, want, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP ||
                errno == EBADF) {
                c->cfr = 0;
                break;
            }
            return cp_fail(c, "copy_file_range");
        }
        if (n == 0)
            return 0; /* the file shrank */
        off += n;
        len -= n;
        *done += n;
    }
    return copy_range_rw(c, sfd, dfd, off, len, done);
}

static int copy_data(struct cp *c, int sfd, int dfd, const struct stat *st)
{
    if (st->st_size == 0)
        return 0;
    if (c->reflink) {
        if (ioctl(dfd, FICLONE, sfd) == 0) {
            if (c->st)
                c->st->reflinked++;
            return 0;
        }
        if (errno != EINTR)
            c->reflink = 0; /* not on this filesystem (pair): don't ask again */
    }
    off_t done = 0;
    if ((off_t)st->st_blocks * 512 < st->st_size) {
        /* Sparse: set the size, then copy only the data segments. */
        if (ftruncate(dfd, st->st_size) < 0)
            return cp_fail(c, "truncate");
        off_t off = 0;
        while (off < st->st_size) {
            off_t data = lseek(sfd, off, SEEK_DATA);
            if (data < 0) {
                if (errno == ENXIO)
                    break;
                if (errno == EINVAL || errno == EOPNOTSUPP) { /* no SEEK_DATA here */
                    if (copy_range(c, sfd, dfd, off, st->st_size - off, &done) < 0)
                        return -1;
                    break;
                }
                return cp_fail(c, "lseek");
            }
            if (data >= st->st_size)
                break;
            off_t hole = lseek(sfd, data, SEEK_HOLE);
            if (hole < 0)
                return cp_fail(c, "lseek");
            if (hole > st->st_size)
                hole = st->st_size;
            if (copy_range(c, sfd, dfd, data, hole - data, &done) < 0)
                return -1;
            off = hole;
        }
    } else if (copy_range(c, sfd, dfd, 0, st->st_size, &done) < 0) {
        return -1;
    }
    if (c->st)
        c->st->bytes += (uint64_t)done;
    return 0;
}

/* Apply xattrs read into c->xa to dst (fd, or dirfd/name through /proc). */
static int set_xattrs(struct cp *c, int fd, int dirfd, const char *name)
{
    if (c->flags & PYRT_COPY_NO_XATTRS)
        return 0;
    char proc[512];
    if (fd < 0 && c->xa.n) {
        int n = snprintf(proc, sizeof proc, "/proc/self/fd/%d/%s", dirfd, name);
        if (n < 0 || (size_t)n >= sizeof proc)
            return cp_fail_errno(c, ENAMETOOLONG, "setxattr");
    }
    for (size_t i = 0; i < c->xa.n; i++) {
        const struct pyrt_xattr *a = &c->xa.items[i];
        if (!(c->flags & PYRT_COPY_OVERLAY_XATTRS) && is_overlay_xattr(c->flags, a->name))
            continue;
        int rc = fd >= 0 ? fsetxattr(fd, a->name, a->value, a->size, 0)
                         : lsetxattr(proc, a->name, a->value, a->size, 0);
        if (rc < 0) {
            /* A filesystem without xattrs, or a namespace it refuses (e.g. user.* on
             * tmpfs of old kernels): the copy goes on without them. */
            if (errno == ENOTSUP)
                continue;
            if (errno == EPERM && !c->root)
                continue;
            char op[32];
            snprintf(op, sizeof op, "setxattr %.20s", a->name);
            return cp_fail(c, op);
        }
    }
    return 0;
}

static int read_xattrs(struct cp *c, int fd, int dirfd, const char *name)
{
    c->xa.n = 0;
    if ((c->flags & PYRT_COPY_NO_XATTRS) && !(c->flags & PYRT_COPY_WHITEOUTS))
        return 0;
    if (pyrt_xattrs_read(&c->xa, fd, dirfd, name) < 0)
        return cp_fail(c, "getxattr");
    return 0;
}

static int set_owner(struct cp *c, int fd, int dirfd, const char *name, const struct stat *st)
{
    if (c->flags & PYRT_COPY_NO_OWNERS)
        return 0;
    int rc = fd >= 0 ? fchown(fd, st->st_uid, st->st_gid)
                     : fchownat(dirfd, name, st->st_uid, st->st_gid, AT_SYMLINK_NOFOLLOW);
    if (rc < 0 && !(errno == EPERM && !c->root))
        return cp_fail(c, "chown");
    return 0;
}

static int set_times(struct cp *c, int fd, int dirfd, const char *name, const struct stat *st)
{
    struct timespec ts[2] = {st->st_atim, st->st_mtim};
    int rc = fd >= 0 ? futimens(fd, ts) : utimensat(dirfd, name, ts, AT_SYMLINK_NOFOLLOW);
    if (rc < 0)
        return cp_fail(c, "utimensat");
    return 0;
}

/* Link dirfd/name to the dst path already made for the same src inode. */
static int make_link(struct cp *c, const char *first, int dirfd, const char *name)
{
    int fd = pyrt_open_in_root(c->dstroot, first, O_PATH | O_NOFOLLOW);
    if (fd < 0)
        return cp_fail(c, "open link target");
    int rc = linkat(fd, "", dirfd, name, AT_EMPTY_PATH);
    if (rc < 0 && (errno == ENOENT || errno == EPERM)) {
        /* AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH; /proc does not. */
        char proc[64];
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
        rc = linkat(AT_FDCWD, proc, dirfd, name, AT_SYMLINK_FOLLOW);
    }
    int saved = errno;
    close(fd);
    if (rc < 0)
        return cp_fail_errno(c, saved, "link");
    if (c->st)
        c->st->links++;
    return 0;
}

static int copy_dir(struct cp *c, int sfd, int dfd);

static int copy_entry(struct cp *c, int sdir, int ddir, const char *name)
{
    struct stat st, dst;
    if (fstatat(sdir, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return cp_fail(c, "stat");
    int whiteouts = (c->flags & PYRT_COPY_WHITEOUTS) != 0;

    if (whiteouts && S_ISCHR(st.st_mode) && st.st_rdev == 0)
        return remove_at(c, ddir, name, c->depth);

    int have = fstatat(ddir, name, &dst, AT_SYMLINK_NOFOLLOW) == 0;
    if (!have && errno != ENOENT)
        return cp_fail(c, "stat in destination");

    if (S_ISDIR(st.st_mode)) {
        if (c->depth >= COPY_MAX_DEPTH)
            return cp_fail_errno(c, ELOOP, "copy (too deep)");
        int sfd = openat(sdir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sfd < 0)
            return cp_fail(c, "open");
        int rc = -1, dfd = -1;
        if (fstat(sfd, &st) < 0) {
            cp_fail(c, "stat");
            goto dir_out;
        }
        if (read_xattrs(c, sfd, -1, NULL) < 0)
            goto dir_out;
        int opaque = whiteouts && is_opaque(&c->xa, c->flags);
        if (have && !S_ISDIR(dst.st_mode)) {
            if (remove_at(c, ddir, name, c->depth) < 0)
                goto dir_out;
            have = 0;
        }
        if (!have && mkdirat(ddir, name, 0700) < 0) {
            cp_fail(c, "mkdir");
            goto dir_out;
        }
        dfd = openat(ddir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dfd < 0) {
            cp_fail(c, "open in destination");
            goto dir_out;
        }
        if (have && opaque && empty_dir(c, dfd, c->depth) < 0)
            goto dir_out;
        c->depth++;
        rc = copy_dir(c, sfd, dfd);
        c->depth--;
        if (rc < 0)
            goto dir_out;
        /* Metadata after the children: the mtime stays, setuid survives chown. */
        rc = -1;
        if (read_xattrs(c, sfd, -1, NULL) < 0 || set_owner(c, dfd, -1, NULL, &st) < 0)
            goto dir_out;
        if (fchmod(dfd, st.st_mode & 07777) < 0) {
            cp_fail(c, "chmod");
            goto dir_out;
        }
        if (set_xattrs(c, dfd, -1, NULL) < 0 || set_times(c, dfd, -1, NULL, &st) < 0)
            goto dir_out;
        rc = 0;
    dir_out:
        close(sfd);
        if (dfd >= 0)
            close(dfd);
        return rc;
    }

    /* Not a directory: it replaces whatever dst has. */
    int sfd = -1;
    if (S_ISREG(st.st_mode)) {
        sfd = openat(sdir, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (sfd < 0)
            return cp_fail(c, "open");
        if (fstat(sfd, &st) < 0 || !S_ISREG(st.st_mode)) {
            int err = S_ISREG(st.st_mode) ? errno : EAGAIN; /* replaced meanwhile */
            close(sfd);
            return cp_fail_errno(c, err, "open");
        }
        if (read_xattrs(c, sfd, -1, NULL) < 0) {
            close(sfd);
            return -1;
        }
        if (whiteouts && st.st_size == 0 &&
            pyrt_xattrs_overlay(&c->xa, (c->flags & PYRT_COPY_USERXATTR) != 0, "whiteout")) {
            close(sfd);
            return remove_at(c, ddir, name, c->depth);
        }
    }
    if (have && remove_at(c, ddir, name, c->depth) < 0)
        goto fail;

    if (st.st_nlink > 1) {
        const char *first = pyrt_inomap_get(&c->links, st.st_dev, st.st_ino);
        if (first) {
            if (sfd >= 0)
                close(sfd);
            return make_link(c, first, ddir, name);
        }
    }

    if (S_ISREG(st.st_mode)) {
        int dfd = openat(ddir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (dfd < 0) {
            cp_fail(c, "create");
            goto fail;
        }
        int rc = copy_data(c, sfd, dfd, &st);
        if (rc == 0)
            rc = set_owner(c, dfd, -1, NULL, &st);
        if (rc == 0 && fchmod(dfd, st.st_mode & 07777) < 0)
            rc = cp_fail(c, "chmod");
        if (rc == 0)
            rc = set_xattrs(c, dfd, -1, NULL);
        if (rc == 0)
            rc = set_times(c, dfd, -1, NULL, &st);
        close(dfd);
        close(sfd);
        sfd = -1;
        if (rc < 0)
            return -1;
        if (c->st)
            c->st->files++;
    } else {
        if (S_ISLNK(st.st_mode)) {
            if (pyrt_readlink_buf(sdir, name, (size_t)st.st_size, &c->link, &c->link_cap) < 0)
                return cp_fail(c, "readlink");
            if (symlinkat(c->link, ddir, name) < 0)
                return cp_fail(c, "symlink");
        } else {
            if (!(c->flags & PYRT_COPY_NO_XATTRS) && read_xattrs(c, -1, sdir, name) < 0)
                return -1;
            mode_t type = st.st_mode & S_IFMT;
            if (mknodat(ddir, name, type | 0600, S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)
                                                     ? st.st_rdev : 0) < 0)
                return cp_fail(c, "mknod");
            if (set_owner(c, -1, ddir, name, &st) < 0)
                return -1;
            if (fchmodat(ddir, name, st.st_mode & 07777, 0) < 0)
                return cp_fail(c, "chmod");
            if (set_xattrs(c, -1, ddir, name) < 0)
                return -1;
        }
        if (S_ISLNK(st.st_mode) && set_owner(c, -1, ddir, name, &st) < 0)
            return -1;
        if (set_times(c, -1, ddir, name, &st) < 0)
            return -1;
    }
    if (st.st_nlink > 1 && pyrt_inomap_put(&c->links, st.st_dev, st.st_ino, c->path.buf) < 0)
        return cp_fail(c, "hardlink map");
    return 0;

fail:
    if (sfd >= 0)
        close(sfd);
    return -1;
}

/* One directory being copied: the copy, and the destination dir. */
struct cp_dir {
    struct cp *c;
    int dfd;
};

static int copy_child(void *ctx, int sfd, const char *name, size_t cut)
{
    struct cp_dir *d = ctx;
    (void)cut;
    return copy_entry(d->c, sfd, d->dfd, name);
}

static int copy_dir(struct cp *c, int sfd, int dfd)
{
    struct cp_dir d = {c, dfd};
    return pyrt_walk_dir(sfd, &c->path, copy_child, &d, c->e);
}

int pyrt_copy_tree(int srcfd, int dstfd, unsigned flags, struct pyrt_copy_stats *stats,
                   struct pyrt_error *e)
{
    struct cp c;
    memset(&c, 0, sizeof c);
    c.flags = flags;
    c.e = e;
    c.st = stats;
    c.dstroot = dstfd;
    c.reflink = !(flags & PYRT_COPY_NO_REFLINK);
    c.cfr = 1;
    c.root = geteuid() == 0;
    pyrt_inomap_init(&c.links);
    if (stats)
        memset(stats, 0, sizeof *stats);
    c.buf = malloc(COPY_BUF);
    if (!c.buf)
        return pyrt_fail_errno(e, ENOMEM, "copy", ".");
    if (pyrt_path_push(&c.path, "") == (size_t)-1) {
        free(c.buf);
        return pyrt_fail_errno(e, ENOMEM, "copy", ".");
    }

    int rc = -1;
    struct stat st, dst;
    if (fstat(srcfd, &st) < 0 || fstat(dstfd, &dst) < 0) {
        cp_fail(&c, "stat");
        goto out;
    }
    if (!S_ISDIR(st.st_mode) || !S_ISDIR(dst.st_mode)) {
        cp_fail_errno(&c, ENOTDIR, "copy");
        goto out;
    }
    if (read_xattrs(&c, srcfd, -1, NULL) < 0)
        goto out;
    if ((flags & PYRT_COPY_WHITEOUTS) && is_opaque(&c.xa, flags) && empty_dir(&c, dstfd, 0) < 0)
        goto out;
    if (copy_dir(&c, srcfd, dstfd) < 0)
        goto out;
    if (read_xattrs(&c, srcfd, -1, NULL) < 0 || set_owner(&c, dstfd, -1, NULL, &st) < 0)
        goto out;
    if (fchmod(dstfd, st.st_mode & 07777) < 0) {
        cp_fail(&c, "chmod");
        goto out;
    }
    if (set_xattrs(&c, dstfd, -1, NULL) < 0 || set_times(&c, dstfd, -1, NULL, &st) < 0)
        goto out;
    rc = 0;
out:
    pyrt_inomap_free(&c.links);
    pyrt_xattrs_free(&c.xa);
    free(c.path.buf);
    free(c.link);
    free(c.buf);
    return rc;
}
