/* The layer writer (see tarwrite.h). */
#include "tarwrite.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "err.h"
#include "syscalls.h"
#include "treewalk.h"

#define TW_BUF (1u << 20)          /* output buffer */
#define TW_SMALL (128u << 10)      /* files up to this are read into the buffer */
#define TW_MAX_DEPTH 400

struct tw {
    int outfd;
    unsigned flags;
    struct pyrt_error *e;
    struct pyrt_layer_stats *st;
    char *buf;
    size_t len;
    struct pyrt_path path; /* current entry, relative to the tree */
    char *name;            /* scratch: the tar name being written */
    size_t name_cap;
    char *pax;             /* pax records of the entry being written */
    size_t pax_len, pax_cap;
    char *link;            /* scratch: symlink target */
    size_t link_cap;
    struct pyrt_inomap links;
    struct pyrt_xattrs xa;
    int sendfile_ok;
    int depth;
};

struct ent {
    const char *name;
    const char *link; /* NULL or the link target */
    char type;
    unsigned mode;
    uint64_t uid, gid, size;
    int64_t mtime;
    unsigned major, minor;
    const struct pyrt_xattrs *xa; /* NULL: none */
};

static int tw_fail(struct tw *t, const char *op)
{
    return pyrt_fail(t->e, op, t->path.len ? t->path.buf : ".");
}

static int tw_fail_errno(struct tw *t, int err, const char *op)
{
    return pyrt_fail_errno(t->e, err, op, t->path.len ? t->path.buf : ".");
}

/* ------------------------------------------------------------------ output */

static int write_all(struct tw *t, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(t->outfd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return tw_fail(t, "write layer");
        }
        p += w;
        n -= (size_t)w;
        if (t->st)
            t->st->bytes += (uint64_t)w;
    }
    return 0;
}

static int flush(struct tw *t)
{
    int rc = write_all(t, t->buf, t->len);
    t->len = 0;
    return rc;
}

/* Room for n more bytes in the buffer (n <= TW_BUF). */
static int room(struct tw *t, size_t n)
{
    return TW_BUF - t->len < n ? flush(t) : 0;
}

static int put(struct tw *t, const void *p, size_t n)
{
    while (n) {
        if (t->len == TW_BUF && flush(t) < 0)
            return -1;
        size_t k = TW_BUF - t->len < n ? TW_BUF - t->len : n;
        memcpy(t->buf + t->len, p, k);
        t->len += k;
        p = (const char *)p + k;
        n -= k;
    }
    return 0;
}

static int zeros(struct tw *t, uint64_t n)
{
    while (n) {
        if (t->len == TW_BUF && flush(t) < 0)
            return -1;
        size_t k = TW_BUF - t->len < n ? TW_BUF - t->len : (size_t)n;
        memset(t->buf + t->len, 0, k);
        t->len += k;
        n -= k;
    }
    return 0;
}

static int pad(struct tw *t, uint64_t size)
{
    return zeros(t, (512 - size % 512) % 512);
}

/* ------------------------------------------------------------------ headers */

static int fits(uint64_t v, size_t width)
{
    /* width - 1 octal digits and a NUL */
    return (width - 1) * 3 >= 64 || v < ((uint64_t)1 << ((width - 1) * 3));
}

static void octal(char *f, size_t width, uint64_t v)
{
    f[width - 1] = '\0';
    for (size_t i = width - 1; i-- > 0;) {
        f[i] = (char)('0' + (v & 7));
        v >>= 3;
    }
}

static size_t ndigits(size_t v)
{
    size_t d = 1;
    while (v >= 10) {
        v /= 10;
        d++;
    }
    return d;
}

static int pax_add(struct tw *t, const char *key, const char *val, size_t vlen)
{
    size_t klen = strlen(key);
    size_t base = klen + vlen + 3; /* ' ', '=', '\n' */
    size_t d = 1;
    while (ndigits(base + d) > d)
        d++;
    size_t len = base + d;
    if (pyrt_grow(&t->pax, &t->pax_cap, t->pax_len + len + 1, 1) < 0)
        return tw_fail(t, "pax header");
    char *p = t->pax + t->pax_len;
    p += sprintf(p, "%zu %s=", len, key);
    if (vlen)
        memcpy(p, val, vlen);
    p[vlen] = '\n';
    t->pax_len += len;
    return 0;
}

static int pax_num(struct tw *t, const char *key, uint64_t v, int negative)
{
    char num[32];
    int n = negative ? snprintf(num, sizeof num, "-%" PRIu64, v)
                     : snprintf(num, sizeof num, "%" PRIu64, v);
    return pax_add(t, key, num, (size_t)n);
}

static int keep_xattr(unsigned flags, const char *name)
{
    if (strncmp(name, "user.", 5) == 0)
        return !((flags & PYRT_LAYER_USERXATTR) && (strncmp(name, "user.overlay.", 13) == 0 ||
                                                    strncmp(name, "user.fuseoverlayfs.", 19) == 0));
    return strcmp(name, "security.capability") == 0;
}

static void ustar(char *h, const char *name, size_t namelen, const char *link, char type,
                  unsigned mode, uint64_t uid, uint64_t gid, uint64_t size, uint64_t mtime,
                  int dev, unsigned major, unsigned minor)
{
    memset(h, 0, 512);
    memcpy(h, name, namelen > 100 ? 100 : namelen);
    octal(h + 100, 8, mode);
    octal(h + 108, 8, uid);
    octal(h + 116, 8, gid);
    octal(h + 124, 12, size);
    octal(h + 136, 12, mtime);
    h[156] = type;
    if (link) {
        size_t ll = strlen(link);
        memcpy(h + 157, link, ll > 100 ? 100 : ll);
    }
    memcpy(h + 257, "ustar", 6);
    memcpy(h + 263, "00", 2);
    if (dev) {
        octal(h + 329, 8, major);
        octal(h + 337, 8, minor);
    }
    unsigned sum = 0;
    memset(h + 148, ' ', 8);
    for (int i = 0; i < 512; i++)
        sum += (unsigned char)h[i];
    octal(h + 148, 7, sum);
    h[155] = ' ';
}

static int header(struct tw *t, const struct ent *en)
{
    size_t namelen = strlen(en->name);
    int dev = en->type == '3' || en->type == '4';
    uint64_t mtime = en->mtime < 0 ? (uint64_t)(-(en->mtime + 1)) + 1 : (uint64_t)en->mtime;

    t->pax_len = 0;
    if (namelen > 100 && pax_add(t, "path", en->name, namelen) < 0)
        return -1;
    if (en->link && strlen(en->link) > 100 && pax_add(t, "linkpath", en->link, strlen(en->link)) < 0)
        return -1;
    if (!fits(en->size, 12) && pax_num(t, "size", en->size, 0) < 0)
        return -1;
    if (!fits(en->uid, 8) && pax_num(t, "uid", en->uid, 0) < 0)
        return -1;
    if (!fits(en->gid, 8) && pax_num(t, "gid", en->gid, 0) < 0)
        return -1;
    if ((en->mtime < 0 || !fits(mtime, 12)) && pax_num(t, "mtime", mtime, en->mtime < 0) < 0)
        return -1;
    if (en->xa) {
        char key[300];
        for (size_t i = 0; i < en->xa->n; i++) {
            const struct pyrt_xattr *a = &en->xa->items[i];
            if (!keep_xattr(t->flags, a->name))
                continue;
            snprintf(key, sizeof key, "SCHILY.xattr.%s", a->name);
            if (pax_add(t, key, a->value, a->size) < 0)
                return -1;
        }
    }
    if (room(t, 1024) < 0)
        return -1;
    if (t->pax_len) {
        ustar(t->buf + t->len, "././@PaxHeader", 14, NULL, 'x', 0644, 0, 0, t->pax_len, 0, 0,
              0, 0);
        t->len += 512;
        if (put(t, t->pax, t->pax_len) < 0 || pad(t, t->pax_len) < 0 || room(t, 512) < 0)
            return -1;
    }
    ustar(t->buf + t->len, en->name, namelen, en->link, en->type, en->mode & 07777,
          fits(en->uid, 8) ? en->uid : 0, fits(en->gid, 8) ? en->gid : 0,
          fits(en->size, 12) ? en->size : 0,
          en->mtime >= 0 && fits(mtime, 12) ? mtime : 0, dev, en->major, en->minor);
    t->len += 512;
    if (t->st)
        t->st->entries++;
    return 0;
}

/* ------------------------------------------------------------------ names */

/* t->name = t->path[0:cut] + sep + a + b, where sep is "/" unless cut is 0. */
static const char *make_name(struct tw *t, size_t cut, const char *a, const char *b)
{
    size_t al = strlen(a), bl = strlen(b);
    if (pyrt_grow(&t->name, &t->name_cap, cut + al + bl + 2, 1) < 0)
        return NULL;
    memcpy(t->name, t->path.buf, cut);
    size_t n = cut;
    if (cut && (al || bl))
        t->name[n++] = '/';
    memcpy(t->name + n, a, al);
    memcpy(t->name + n + al, b, bl + 1);
    return t->name;
}

static void fill(struct ent *en, const struct stat *st)
{
    memset(en, 0, sizeof *en);
    en->mode = st->st_mode & 07777;
    en->uid = st->st_uid;
    en->gid = st->st_gid;
    en->mtime = st->st_mtim.tv_sec;
}

/* `.wh.NAME` next to the current path (whose parent ends at cut). Markers carry
 * fixed metadata (root, 0600, time 0): the same deletion gives the same bytes
 * whenever it was made. */
static int whiteout(struct tw *t, size_t cut, const char *base, const struct stat *st)
{
    struct ent en;
    (void)st;
    memset(&en, 0, sizeof en);
    en.mode = 0600;
    en.type = '0';
    if (!(en.name = make_name(t, cut, ".wh.", base)))
        return tw_fail(t, "whiteout name");
    if (t->st)
        t->st->whiteouts++;
    return header(t, &en);
}

static int opaque_marker(struct tw *t, const struct stat *st)
{
    struct ent en;
    (void)st;
    memset(&en, 0, sizeof en);
    en.mode = 0600;
    en.type = '0';
    if (!(en.name = make_name(t, t->path.len, "", ".wh..wh..opq")))
        return tw_fail(t, "whiteout name");
    if (t->st)
        t->st->whiteouts++;
    return header(t, &en);
}

/* ------------------------------------------------------------------ file data */

static int file_data(struct tw *t, int fd, uint64_t size)
{
    uint64_t done = 0;
    if (size <= TW_SMALL) {
        if (room(t, (size_t)size + 512) < 0)
            return -1;
        while (done < size) {
            ssize_t n = pread(fd, t->buf + t->len + done, (size_t)(size - done), (off_t)done);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                return tw_fail(t, "read");
            }
            if (n == 0)
                break; /* shrank while we read: padded with zeros like GNU tar */
            done += (uint64_t)n;
        }
        t->len += (size_t)done;
    } else {
        if (flush(t) < 0)
            return -1;
        off_t off = 0;
        while (t->sendfile_ok && done < size) {
            size_t want = size - done > (1u << 30) ? (1u << 30) : (size_t)(size - done);
            ssize_t n = sendfile(t->outfd, fd, &off, want);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                if ((errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP) && done == 0) {
                    t->sendfile_ok = 0;
                    break;
                }
                return tw_fail(t, "sendfile");
            }
            if (n == 0)
                break;
            done += (uint64_t)n;
            if (t->st)
                t->st->bytes += (uint64_t)n;
        }
        if (!t->sendfile_ok) {
            while (done < size) {
                if (t->len == TW_BUF && flush(t) < 0)
                    return -1;
                size_t want = TW_BUF - t->len;
                if (want > size - done)
                    want = (size_t)(size - done);
                ssize_t n = pread(fd, t->buf + t->len, want, (off_t)done);
                if (n < 0) {
                    if (errno == EINTR)
                        continue;
                    return tw_fail(t, "read");
                }
                if (n == 0)
                    break;
                t->len += (size_t)n;
                done += (uint64_t)n;
            }
        }
    }
    if (zeros(t, size - done) < 0)
        return -1;
    return pad(t, size);
}

/* ------------------------------------------------------------------ the walk */

/* The overlay xattr trusted.overlay.<suffix> (user.overlay.<suffix> too with
 * userxattr) of the entry whose xattrs are in t->xa, or NULL. */
static const struct pyrt_xattr *ovl_xattr(struct tw *t, const char *suffix)
{
    return pyrt_xattrs_overlay(&t->xa, (t->flags & PYRT_LAYER_USERXATTR) != 0, suffix);
}

static int open_nofollow(int dirfd, const char *name, int flags)
{
    int fd = openat(dirfd, name, flags | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOATIME);
    if (fd < 0 && errno == EPERM)
        fd = openat(dirfd, name, flags | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    return fd;
}

static int walk_dir(struct tw *t, int dirfd, int opaque, const struct stat *dst);

/* Write dirfd/name, whose path is t->path (its parent ends at cut). */
static int entry(struct tw *t, int dirfd, const char *name, size_t cut, int recurse)
{
    int raw = (t->flags & PYRT_LAYER_RAW) != 0;
    struct stat st;
    struct ent en;
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return tw_fail(t, "stat");

    switch (st.st_mode & S_IFMT) {
    case S_IFCHR:
    case S_IFBLK:
        if (!raw && S_ISCHR(st.st_mode) && st.st_rdev == 0)
            return whiteout(t, cut, name, &st);
        /* fallthrough */
    case S_IFIFO:
    case S_IFLNK: {
        fill(&en, &st);
        if (S_ISLNK(st.st_mode)) {
            if (pyrt_readlink_buf(dirfd, name, (size_t)st.st_size, &t->link, &t->link_cap) < 0)
                return tw_fail(t, "readlink");
            en.type = '2';
            en.link = t->link;
        } else {
            en.type = S_ISCHR(st.st_mode) ? '3' : S_ISBLK(st.st_mode) ? '4' : '6';
            if (en.type != '6') {
                en.major = major(st.st_rdev);
                en.minor = minor(st.st_rdev);
            }
        }
        if (st.st_nlink > 1) {
            const char *first = pyrt_inomap_get(&t->links, st.st_dev, st.st_ino);
            if (first) {
                en.type = '1';
                en.link = first;
            } else if (pyrt_inomap_put(&t->links, st.st_dev, st.st_ino, t->path.buf) < 0) {
                return tw_fail(t, "hardlink map");
            }
        }
        en.name = t->path.buf;
        return header(t, &en);
    }
    case S_IFREG: {
        int fd = open_nofollow(dirfd, name, O_RDONLY);
        if (fd < 0)
            return tw_fail(t, "open");
        int rc = -1;
        if (fstat(fd, &st) < 0) {
            tw_fail(t, "stat");
            goto reg_out;
        }
        if (!S_ISREG(st.st_mode)) {
            tw_fail_errno(t, EAGAIN, "open (replaced meanwhile)");
            goto reg_out;
        }
        if (pyrt_xattrs_read(&t->xa, fd, -1, NULL) < 0) {
            tw_fail(t, "getxattr");
            goto reg_out;
        }
        if (!raw && st.st_size == 0 && ovl_xattr(t, "whiteout")) {
            rc = whiteout(t, cut, name, &st);
            goto reg_out;
        }
        if (!raw && ovl_xattr(t, "metacopy")) {
            tw_fail_errno(t, EOPNOTSUPP, "overlay metacopy");
            goto reg_out;
        }
        fill(&en, &st);
        en.name = t->path.buf;
        en.type = '0';
        en.size = (uint64_t)st.st_size;
        en.xa = &t->xa;
        if (st.st_nlink > 1) {
            const char *first = pyrt_inomap_get(&t->links, st.st_dev, st.st_ino);
            if (first) {
                en.type = '1';
                en.link = first;
                en.size = 0;
            } else if (pyrt_inomap_put(&t->links, st.st_dev, st.st_ino, t->path.buf) < 0) {
                tw_fail(t, "hardlink map");
                goto reg_out;
            }
        }
        rc = header(t, &en);
        if (rc == 0 && en.type == '0')
            rc = file_data(t, fd, en.size);
    reg_out:
        close(fd);
        return rc;
    }
    case S_IFDIR: {
        int fd = open_nofollow(dirfd, name, O_RDONLY | O_DIRECTORY);
        if (fd < 0)
            return tw_fail(t, "open");
        int rc = -1, opaque = 0;
        if (fstat(fd, &st) < 0) {
            tw_fail(t, "stat");
            goto dir_out;
        }
        if (pyrt_xattrs_read(&t->xa, fd, -1, NULL) < 0) {
            tw_fail(t, "getxattr");
            goto dir_out;
        }
        if (!raw) {
            if (ovl_xattr(t, "redirect")) {
                tw_fail_errno(t, EOPNOTSUPP, "overlay redirect_dir");
                goto dir_out;
            }
            const struct pyrt_xattr *o = ovl_xattr(t, "opaque");
            opaque = o && o->size == 1 && o->value[0] == 'y';
        }
        fill(&en, &st);
        en.type = '5';
        en.xa = &t->xa;
        if (pyrt_grow(&t->name, &t->name_cap, t->path.len + 2, 1) < 0) {
            tw_fail(t, "name");
            goto dir_out;
        }
        memcpy(t->name, t->path.buf, t->path.len);
        memcpy(t->name + t->path.len, "/", 2);
        en.name = t->name;
        if (header(t, &en) < 0)
            goto dir_out;
        if (!recurse) {
            rc = 0;
            goto dir_out;
        }
        if (t->depth >= TW_MAX_DEPTH) {
            tw_fail_errno(t, ELOOP, "walk (too deep)");
            goto dir_out;
        }
        t->depth++;
        rc = walk_dir(t, fd, opaque, &st);
        t->depth--;
    dir_out:
        close(fd);
        return rc;
    }
    default:
        return 0; /* sockets: a tar cannot hold them (like GNU tar, skipped) */
    }
}

static int walk_child(void *ctx, int dirfd, const char *name, size_t cut)
{
    return entry(ctx, dirfd, name, cut, 1);
}

static int walk_dir(struct tw *t, int dirfd, int opaque, const struct stat *dst)
{
    if (opaque && opaque_marker(t, dst) < 0)
        return -1;
    return pyrt_walk_dir(dirfd, &t->path, walk_child, t, t->e);
}

static int tw_init(struct tw *t, int outfd, unsigned flags, struct pyrt_layer_stats *stats,
                   struct pyrt_error *e)
{
    memset(t, 0, sizeof *t);
    t->outfd = outfd;
    t->flags = flags;
    t->e = e;
    t->st = stats;
    t->sendfile_ok = 1;
    pyrt_inomap_init(&t->links);
    if (stats)
        memset(stats, 0, sizeof *stats);
    t->buf = malloc(TW_BUF);
    if (!t->buf || pyrt_path_push(&t->path, "") == (size_t)-1) {
        free(t->buf);
        return pyrt_fail_errno(e, ENOMEM, "write layer", ".");
    }
    return 0;
}

static int tw_finish(struct tw *t, int rc)
{
    if (rc == 0 && !(t->flags & PYRT_LAYER_NO_TRAILER))
        rc = zeros(t, 1024);
    if (rc == 0)
        rc = flush(t);
    pyrt_inomap_free(&t->links);
    pyrt_xattrs_free(&t->xa);
    free(t->path.buf);
    free(t->name);
    free(t->pax);
    free(t->link);
    free(t->buf);
    return rc;
}

int pyrt_write_layer(int upperfd, int outfd, unsigned flags, struct pyrt_layer_stats *stats,
                     struct pyrt_error *e)
{
    struct tw t;
    if (tw_init(&t, outfd, flags, stats, e) < 0)
        return -1;
    struct stat st;
    int rc = 0;
    if (fstat(upperfd, &st) < 0)
        rc = tw_fail(&t, "stat");
    else if (!S_ISDIR(st.st_mode))
        rc = tw_fail_errno(&t, ENOTDIR, "write layer");
    if (rc == 0)
        rc = walk_dir(&t, upperfd, 0, &st);
    return tw_finish(&t, rc);
}

/* ------------------------------------------------------------------ entries */

static int bad_component(const char *s, size_t n)
{
    return n == 0 || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.');
}

int pyrt_write_entries(int rootfd, const struct pyrt_layer_entry *entries, size_t n, int outfd,
                       unsigned flags, struct pyrt_layer_stats *stats, struct pyrt_error *e)
{
    struct tw t;
    if (tw_init(&t, outfd, flags | PYRT_LAYER_RAW, stats, e) < 0)
        return -1;
    int rc = 0, pfd = -1;
    char *parent = NULL; /* the path pfd is open on */
    size_t parent_len = 0;

    for (size_t i = 0; i < n && rc == 0; i++) {
        const char *p = entries[i].path;
        pyrt_path_pop(&t.path, 0);
        if (pyrt_path_push(&t.path, p) == (size_t)-1) {
            rc = tw_fail_errno(&t, ENOMEM, "path");
            break;
        }
        /* Validate: relative, no empty, "." or ".." component. */
        const char *s = p;
        int bad = *p == '/' || !*p;
        while (!bad && *s) {
            const char *slash = strchr(s, '/');
            size_t len = slash ? (size_t)(slash - s) : strlen(s);
            bad = bad_component(s, len);
            s += len + (slash ? 1 : 0);
            if (slash && !*s)
                bad = 1;
        }
        if (bad) {
            rc = tw_fail_errno(&t, EINVAL, "bad entry path");
            break;
        }
        const char *slash = strrchr(p, '/');
        size_t cut = slash ? (size_t)(slash - p) : 0;
        const char *base = slash ? slash + 1 : p;

        if (pfd < 0 || cut != parent_len || (cut && memcmp(parent, p, cut) != 0)) {
            if (pfd >= 0 && pfd != rootfd)
                close(pfd);
            pfd = -1;
            if (cut == 0) {
                pfd = rootfd;
            } else {
                char *np = realloc(parent, cut + 1);
                if (!np) {
                    rc = tw_fail_errno(&t, ENOMEM, "path");
                    break;
                }
                parent = np;
                memcpy(parent, p, cut);
                parent[cut] = '\0';
                struct pyrt_open_how how;
                memset(&how, 0, sizeof how);
                how.flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC;
                how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
                pfd = pyrt_openat2(rootfd, parent, &how, sizeof how);
                if (pfd < 0) {
                    rc = tw_fail(&t, "open parent");
                    break;
                }
            }
            parent_len = cut;
        }

        switch (entries[i].kind) {
        case PYRT_ENTRY_PATH:
            rc = entry(&t, pfd, base, cut, 0);
            break;
        case PYRT_ENTRY_WHITEOUT:
            rc = whiteout(&t, cut, base, NULL);
            break;
        case PYRT_ENTRY_OPAQUE: {
            struct stat st;
            if (fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) < 0)
                rc = tw_fail(&t, "stat");
            else if (!S_ISDIR(st.st_mode))
                rc = tw_fail_errno(&t, ENOTDIR, "opaque entry");
            else
                rc = opaque_marker(&t, &st);
            break;
        }
        default:
            rc = tw_fail_errno(&t, EINVAL, "entry kind");
        }
    }
    if (pfd >= 0 && pfd != rootfd)
        close(pfd);
    free(parent);
    return tw_finish(&t, rc);
}
