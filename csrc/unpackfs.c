/* The layer unpacker's filesystem side (unpackfs.h; the layers are listed in
 * unpacker.h): what the tar parser reads is created below the destination, and
 * only there.
 * Names are cleaned lexically, parents are resolved with openat2 inside the root
 * (created when missing), the last component is made with *at calls that never
 * follow a symlink, and what an earlier entry left under the same name is
 * replaced. OCI whiteouts become overlayfs whiteouts and opaque directories;
 * xattrs (never security.*, trusted.overlay.*, user.overlay.*, user.fuseoverlayfs.*), owners, modes
 * and times are set (unpackdata.c writes the files' data); the directories'
 * modes and times wait for the end. Called by the parser (tarread.c), the files'
 * data (unpackdata.c) and the API (unpack.c); it calls none of them: below it
 * stand only the unpacker's failures (unpackerr.c) and buffers (sbuf.c). */
#include "unpackfs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "err.h"
#include "resolve.h"
#include "sbuf.h"
#include "syscalls.h"
#include "unpacker.h"
#include "unpackerr.h"

#define MAX_REMOVE_DEPTH 1024


/* Close a descriptor nothing was written through (O_PATH, a directory, or a file
 * abandoned after an error): close(2) cannot lose data there, so its result is
 * deliberately not acted on. The files written are closed by
 * pyrt_unpack_close_file(), which checks it. */
static void drop_fd(int fd)
{
    int saved = errno; /* the error being reported, if any */
    if (fd >= 0)
        (void)close(fd);
    errno = saved;
}

/* ---------------------------------------------------------------- paths */

long pyrt_unpack_clean_name(struct pyrt_unpacker *u, const char *raw, size_t rawlen,
                            struct sbuf *out)
{
    if (pyrt_sbuf_reserve(out, rawlen + 1) < 0) {
        pyrt_unpack_sysfail(u, "malloc");
        return -2;
    }
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
    for (int i = 0; i < UNPACK_NCACHE; i++) {
        if (u->fs.cache_fd[i] >= 0)
            drop_fd(u->fs.cache_fd[i]);
        u->fs.cache_fd[i] = -1;
        free(u->fs.cache_path[i]);
        u->fs.cache_path[i] = NULL;
        u->fs.cache_len[i] = 0;
    }
}

/* Remember fd (taken over) as the directory at dir. */
static void cache_put(struct pyrt_unpacker *u, const char *dir, size_t len, int fd)
{
    unsigned int i = u->fs.cache_next++ % UNPACK_NCACHE;
    char *copy = malloc(len + 1);
    if (!copy) {
        drop_fd(fd);
        return;
    }
    memcpy(copy, dir, len);
    copy[len] = '\0';
    if (u->fs.cache_fd[i] >= 0)
        drop_fd(u->fs.cache_fd[i]);
    free(u->fs.cache_path[i]);
    u->fs.cache_path[i] = copy;
    u->fs.cache_len[i] = len;
    u->fs.cache_fd[i] = fd;
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
        return u->fs.rootfd;
    for (int i = 0; i < UNPACK_NCACHE; i++)
        if (u->fs.cache_fd[i] >= 0 && u->fs.cache_len[i] == len &&
            memcmp(u->fs.cache_path[i], dir, len) == 0)
            return u->fs.cache_fd[i];
    if (pyrt_sbuf_reserve(&u->fs.tmp, len + 1) < 0)
        return pyrt_unpack_sysfail(u, "malloc");
    memcpy(u->fs.tmp.p, dir, len);
    u->fs.tmp.p[len] = '\0';
    int fd = open_in_root_retry(u->fs.rootfd, u->fs.tmp.p, O_PATH | O_DIRECTORY);
    if (fd < 0 && errno == ENOENT) {
        /* parents the archive did not list: create them (0755, owned by us) */
        int p = pyrt_ensure_in_root(u->fs.rootfd, u->fs.tmp.p, 0);
        if (p < 0)
            return pyrt_unpack_sysfail(u, "mkdirat");
        drop_fd(p);
        fd = open_in_root_retry(u->fs.rootfd, u->fs.tmp.p, O_PATH | O_DIRECTORY);
    }
    if (fd < 0)
        return pyrt_unpack_sysfail(u, "openat2");
    cache_put(u, dir, len, fd);
    return fd;
}

/* The entry named by cleaned path u->fs.path: split into its parent's fd and the
 * last component (a pointer into u->fs.path), kept in u->fs.pfd and u->fs.base. */
static int split_path(struct pyrt_unpacker *u)
{
    char *p = u->fs.path.p;
    char *slash = strrchr(p, '/');
    if (!slash) {
        u->fs.pfd = u->fs.rootfd;
        u->fs.base = p;
        return 0;
    }
    int fd = parent_fd(u, p, (size_t)(slash - p));
    if (fd < 0)
        return -1;
    u->fs.pfd = fd;
    u->fs.base = slash + 1;
    return 0;
}

/* Remove the directory name below pfd and everything in it, never following a
 * symlink. */
static int remove_tree(struct pyrt_unpacker *u, int pfd, const char *name, int depth)
{
    if (depth > MAX_REMOVE_DEPTH) {
        errno = ELOOP;
        return pyrt_unpack_sysfail(u, "unlinkat");
    }
    int dfd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0)
        return pyrt_unpack_sysfail(u, "openat");
    DIR *d = fdopendir(dfd);
    if (!d) {
        drop_fd(dfd);
        return pyrt_unpack_sysfail(u, "fdopendir");
    }
    int rc = 0;
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de) {
            if (errno)
                rc = pyrt_unpack_sysfail(u, "readdir");
            break;
        }
        const char *n = de->d_name;
        if (n[0] == '.' && (n[1] == '\0' || (n[1] == '.' && n[2] == '\0')))
            continue;
        if (de->d_type != DT_DIR && unlinkat(dirfd(d), n, 0) == 0)
            continue;
        if (de->d_type != DT_DIR && errno != EISDIR) {
            rc = pyrt_unpack_sysfail(u, "unlinkat");
            break;
        }
        if (remove_tree(u, dirfd(d), n, depth + 1) < 0) {
            rc = -1;
            break;
        }
    }
    closedir(d);
    if (rc == 0 && unlinkat(pfd, name, AT_REMOVEDIR) < 0)
        rc = pyrt_unpack_sysfail(u, "unlinkat");
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
        return pyrt_unpack_sysfail(u, "fstatat");
    }
    if (S_ISDIR(st.st_mode) && keep_dir)
        return 1;
    cache_clear(u); /* a cached parent may go through what is removed */
    if (S_ISDIR(st.st_mode))
        return remove_tree(u, pfd, name, 0) < 0 ? -1 : 0;
    if (unlinkat(pfd, name, 0) < 0)
        return pyrt_unpack_sysfail(u, "unlinkat");
    return 0;
}

/* ---------------------------------------------------------------- metadata */

static int xattr_allowed(const char *name, size_t nlen)
{
    /* user.fuseoverlayfs.*: fuse-overlayfs's own state, which it reads from lower layers too */
    static const char *const deny[] = {"security.", "trusted.overlay.", "user.overlay.", "user.fuseoverlayfs."};
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
int pyrt_unpack_xattrs(struct pyrt_unpacker *u, int fd, int pfd, const char *name)
{
    struct entry *e = &u->e;
    for (size_t i = 0; i < e->nxattrs; i++) {
        struct xref *x = &e->xattrs[i];
        if (!xattr_allowed(x->name, x->nlen)) {
            u->stats.skipped++;
            continue;
        }
        if (x->vlen > u->lim.max_xattr_size)
            return pyrt_unpack_reject(u, "xattr too large", "%zu bytes, max_xattr_size is %llu",
                                      x->vlen, (unsigned long long)u->lim.max_xattr_size);
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
                return pyrt_unpack_sysfail(u, "lsetxattr");
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
            return pyrt_unpack_sysfail(u, "setxattr");
        }
    }
    return 0;
}

void pyrt_unpack_times(struct pyrt_unpacker *u, struct timespec ts[2])
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
int pyrt_unpack_want_chown(struct pyrt_unpacker *u, int fresh)
{
    if (u->lim.flags & PYRT_UNPACK_NO_CHOWN)
        return 0;
    return !fresh || u->fs.root_setgid || (uid_t)u->e.uid != u->fs.euid ||
           (gid_t)u->e.gid != u->fs.egid;
}

static int remember_dir(struct pyrt_unpacker *u, const char *path, size_t len, mode_t mode)
{
    uint64_t need = sizeof(struct dirrec) + len + 1;
    if (u->lim.max_meta_memory != UINT64_MAX && u->fs.meta_mem + need > u->lim.max_meta_memory)
        return pyrt_unpack_reject(u, "too many directories",
                                  "their metadata exceeds max_meta_memory (%llu)",
                                  (unsigned long long)u->lim.max_meta_memory);
    if (u->fs.ndirs == u->fs.dircap) {
        size_t cap = u->fs.dircap ? u->fs.dircap * 2 : 64;
        struct dirrec *d = realloc(u->fs.dirs, cap * sizeof *d);
        if (!d) {
            errno = ENOMEM;
            return pyrt_unpack_sysfail(u, "malloc");
        }
        u->fs.dirs = d;
        u->fs.dircap = cap;
    }
    struct dirrec *r = &u->fs.dirs[u->fs.ndirs];
    r->pathoff = u->fs.dirpaths.len;
    if (pyrt_sbuf_append(&u->fs.dirpaths, len ? path : ".", len ? len : 1) < 0)
        return pyrt_unpack_sysfail(u, "malloc");
    u->fs.dirpaths.len++; /* keep the NUL */
    r->mode = mode;
    pyrt_unpack_times(u, r->times);
    u->fs.ndirs++;
    u->fs.meta_mem += need;
    return 0;
}

/* ---------------------------------------------------------------- entries */

static int open_regular(struct pyrt_unpacker *u, int pfd, const char *base)
{
    for (int tries = 0;; tries++) {
        int fd = openat(pfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd >= 0)
            return fd;
        if (errno != EEXIST || tries > 0)
            return pyrt_unpack_sysfail(u, "openat");
        if (make_room(u, pfd, base, 0) < 0)
            return -1;
    }
}

int pyrt_unpack_open_file(struct pyrt_unpacker *u)
{
    u->fs.file_off = 0;
    u->fs.written_end = 0;
    u->fs.carry = 0;
    u->fs.segi = 0;
    u->fs.seg_done = 0;
    u->fs.detect_holes =
        (u->lim.flags & PYRT_UNPACK_DETECT_HOLES) != 0 && u->sparse == SPARSE_NONE;
    u->fs.fd = open_regular(u, u->fs.pfd, u->fs.base);
    if (u->fs.fd < 0)
        return -1;
    u->stats.files++;
    u->stats.apparent += u->file_size;
    return 0;
}

void pyrt_unpack_abandon_file(struct pyrt_unpacker *u)
{
    if (u->fs.fd >= 0) {
        drop_fd(u->fs.fd);
        u->fs.fd = -1;
    }
}

int pyrt_unpack_dir(struct pyrt_unpacker *u, mode_t mode)
{
    int pfd = u->fs.pfd;
    const char *base = u->fs.base;
    /* the owner can always create inside until the mode is applied, at the end
     * (the special bits too, so that nothing inherits a setgid group meanwhile) */
    mode_t initial = (mode & 0777) | 0700;
    int kept = 0;
    if (mkdirat(pfd, base, initial) < 0) {
        if (errno != EEXIST)
            return pyrt_unpack_sysfail(u, "mkdirat");
        kept = make_room(u, pfd, base, 1);
        if (kept < 0)
            return -1;
        if (!kept && mkdirat(pfd, base, initial) < 0)
            return pyrt_unpack_sysfail(u, "mkdirat");
    }
    if (pyrt_unpack_want_chown(u, !kept) &&
        fchownat(pfd, base, (uid_t)u->e.uid, (gid_t)u->e.gid, AT_SYMLINK_NOFOLLOW) < 0)
        return pyrt_unpack_sysfail(u, "fchownat");
    if (u->e.nxattrs) {
        int dfd = openat(pfd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dfd < 0)
            return pyrt_unpack_sysfail(u, "openat");
        int rc = pyrt_unpack_xattrs(u, dfd, -1, NULL);
        drop_fd(dfd);
        if (rc < 0)
            return -1;
    }
    /* the next entries are likely inside: cache it */
    if (!kept) {
        int dfd = openat(pfd, base, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dfd >= 0)
            cache_put(u, u->fs.path.p, u->fs.path.len, dfd);
    }
    u->stats.dirs++;
    return remember_dir(u, u->fs.path.p, u->fs.path.len, mode);
}

/* Owner, xattrs, mode (unless a symlink) and times of a node below pfd, without
 * following it. */
static int node_meta(struct pyrt_unpacker *u, int pfd, const char *base, mode_t mode,
                     int is_link)
{
    struct timespec ts[2];
    if (pyrt_unpack_want_chown(u, 1) &&
        fchownat(pfd, base, (uid_t)u->e.uid, (gid_t)u->e.gid, AT_SYMLINK_NOFOLLOW) < 0)
        return pyrt_unpack_sysfail(u, "fchownat");
    if (u->e.nxattrs && pyrt_unpack_xattrs(u, -1, pfd, base) < 0)
        return -1;
    if (!is_link && fchmodat(pfd, base, mode, AT_SYMLINK_NOFOLLOW) < 0)
        return pyrt_unpack_sysfail(u, "fchmodat");
    pyrt_unpack_times(u, ts);
    if (utimensat(pfd, base, ts, AT_SYMLINK_NOFOLLOW) < 0)
        return pyrt_unpack_sysfail(u, "utimensat");
    return 0;
}

int pyrt_unpack_symlink(struct pyrt_unpacker *u, const char *target)
{
    int pfd = u->fs.pfd;
    const char *base = u->fs.base;
    for (int tries = 0;; tries++) {
        if (symlinkat(target, pfd, base) == 0)
            break;
        if (errno != EEXIST || tries > 0)
            return pyrt_unpack_sysfail(u, "symlinkat");
        if (make_room(u, pfd, base, 0) < 0)
            return -1;
    }
    u->stats.symlinks++;
    return node_meta(u, pfd, base, 0, 1);
}

int pyrt_unpack_node(struct pyrt_unpacker *u, mode_t kind, mode_t mode, dev_t dev)
{
    if ((u->lim.flags & PYRT_UNPACK_SKIP_DEVICES) && (kind == S_IFCHR || kind == S_IFBLK)) {
        u->stats.devices_skipped++; /* an ordinary user's store (unpack.h) */
        return 0;
    }
    int pfd = u->fs.pfd;
    const char *base = u->fs.base;
    for (int tries = 0;; tries++) {
        if (mknodat(pfd, base, kind | 0600, dev) == 0)
            break;
        if (errno != EEXIST || tries > 0)
            return pyrt_unpack_sysfail(u, "mknodat");
        if (make_room(u, pfd, base, 0) < 0)
            return -1;
    }
    u->stats.devices++;
    return node_meta(u, pfd, base, mode, 0);
}

int pyrt_unpack_hardlink(struct pyrt_unpacker *u)
{
    /* the target (checked by the parser: there is one, without NUL bytes):
     * cleaned like a name, resolved inside the root without crossing any symlink */
    int pfd = u->fs.pfd;
    const char *base = u->fs.base;
    struct entry *e = &u->e;
    long len = pyrt_unpack_clean_name(u, e->link, e->linklen, &u->fs.tmp);
    if (len == -2)
        return -1;
    if (len < 0)
        return pyrt_unpack_reject(u, "hardlink target outside layer", "target \"%.*s\"",
                                  (int)(e->linklen > 200 ? 200 : e->linklen), e->link);
    if (len == 0)
        return pyrt_unpack_reject(u, "hardlink to the layer root", NULL);
    char *t = u->fs.tmp.p;
    char *slash = strrchr(t, '/');
    const char *tbase = t;
    int tpfd = u->fs.rootfd, own = 0;
    if (slash) {
        *slash = '\0';
        struct pyrt_open_how how;
        memset(&how, 0, sizeof how);
        how.flags = O_PATH | O_DIRECTORY | O_CLOEXEC;
        how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
        for (int tries = 0; tries < 8; tries++) {
            tpfd = pyrt_openat2(u->fs.rootfd, t, &how, sizeof how);
            if (tpfd >= 0 || errno != EAGAIN)
                break;
        }
        *slash = '/';
        if (tpfd < 0) {
            if (errno == ELOOP)
                return pyrt_unpack_reject(u, "hardlink target through symlink",
                                          "target \"%.200s\"", t);
            if (errno == ENOENT || errno == ENOTDIR)
                return pyrt_unpack_reject(u, "hardlink target not in layer",
                                          "target \"%.200s\"", t);
            return pyrt_unpack_sysfail(u, "openat2");
        }
        own = 1;
        tbase = slash + 1;
    }
    int rc = 0;
    for (int tries = 0;; tries++) {
        if (linkat(tpfd, tbase, pfd, base, 0) == 0)
            break;
        if (errno == ENOENT && faccessat(tpfd, tbase, F_OK, AT_SYMLINK_NOFOLLOW) < 0) {
            rc = pyrt_unpack_reject(u, "hardlink target not in layer", "target \"%.200s\"",
                                    t);
            break;
        }
        if (errno != EEXIST || tries > 0) {
            rc = pyrt_unpack_sysfail(u, "linkat");
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
            return pyrt_unpack_sysfail(u, "openat");
        const char *xname = (u->lim.flags & PYRT_UNPACK_USERXATTR) ? "user.overlay.opaque" : "trusted.overlay.opaque";
        int rc = fsetxattr(dfd, xname, "y", 1, 0);
        drop_fd(dfd);
        if (rc < 0)
            return pyrt_unpack_sysfail(u, "setxattr");
        u->stats.opaques++;
        return 0;
    }
    if (!*name || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return pyrt_unpack_reject(u, "invalid whiteout name", NULL);
    if (mknodat(pfd, name, S_IFCHR, makedev(0, 0)) < 0) {
        if (errno != EEXIST)
            return pyrt_unpack_sysfail(u, "mknodat");
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
    if (pyrt_unpack_want_chown(u, 0) && fchown(u->fs.rootfd, (uid_t)u->e.uid, (gid_t)u->e.gid) < 0)
        return pyrt_unpack_sysfail(u, "fchown");
    if (u->e.nxattrs && pyrt_unpack_xattrs(u, u->fs.rootfd, -1, NULL) < 0)
        return -1;
    u->stats.dirs++;
    return remember_dir(u, "", 0, mode);
}

/* ---------------------------------------------------------------- placing */

int pyrt_unpack_place(struct pyrt_unpacker *u, char type)
{
    struct entry *e = &u->e;
    long clen = pyrt_unpack_clean_name(u, e->name, e->namelen, &u->fs.path);
    if (clen == -2)
        return -1;
    if (clen < 0)
        return pyrt_unpack_reject(u, "path escapes the layer root", "\"..\" above the root");
    if (clen == 0) {
        if (type != '5')
            return pyrt_unpack_reject(u, "entry replaces the layer root", NULL);
        return do_root(u, e->mode) < 0 ? -1 : PLACE_DONE;
    }

    /* OCI whiteouts and aufs metadata */
    const char *last = strrchr(u->fs.path.p, '/');
    last = last ? last + 1 : u->fs.path.p;
    int skip = 0, whiteout = 0;
    const int plain = (u->lim.flags & PYRT_UNPACK_PLAIN) != 0;
    for (const char *c = plain ? NULL : u->fs.path.p; c; c = strchr(c, '/')) {
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
            return pyrt_unpack_reject(u, "whiteout used as a directory", NULL);
        }
    }
    if (skip) {
        u->stats.skipped++;
        return PLACE_DONE;
    }
    if (split_path(u) < 0)
        return -1;
    if (whiteout)
        return do_whiteout(u, u->fs.pfd, u->fs.base) < 0 ? -1 : PLACE_DONE;
    return PLACE_READY;
}

/* ---------------------------------------------------------------- start and end */

int pyrt_unpack_fs_open(struct pyrt_unpacker *u, int destfd, const struct stat *st,
                        struct pyrt_error *e)
{
    u->fs.fd = -1;
    for (int i = 0; i < UNPACK_NCACHE; i++)
        u->fs.cache_fd[i] = -1;
    u->fs.rootfd = openat(destfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (u->fs.rootfd < 0)
        return pyrt_fail(e, "openat", "");
    u->fs.euid = geteuid();
    u->fs.egid = getegid();
    u->fs.root_setgid = (st->st_mode & S_ISGID) != 0;
    return 0;
}

int pyrt_unpack_finish_dirs(struct pyrt_unpacker *u)
{
    /* the directories' modes and times, now that nothing more is created inside */
    cache_clear(u);
    for (size_t i = 0; i < u->fs.ndirs; i++) {
        struct dirrec *r = &u->fs.dirs[i];
        const char *path = u->fs.dirpaths.p + r->pathoff;
        int fd = open_in_root_retry(u->fs.rootfd, path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
        if (fd < 0) {
            if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP)
                continue; /* replaced by a later entry */
            return pyrt_fail(&u->err, "openat2", path);
        }
        const char *op = NULL;
        if (fchmod(fd, r->mode) < 0)
            op = "fchmod";
        else if (futimens(fd, r->times) < 0)
            op = "futimens";
        if (op) {
            pyrt_fail(&u->err, op, path);
            drop_fd(fd);
            return -1;
        }
        drop_fd(fd);
    }
    u->fs.ndirs = 0;
    return 0;
}

void pyrt_unpack_fs_free(struct pyrt_unpacker *u)
{
    pyrt_unpack_abandon_file(u);
    cache_clear(u);
    if (u->fs.rootfd >= 0)
        drop_fd(u->fs.rootfd);
    pyrt_sbuf_free(&u->fs.path);
    pyrt_sbuf_free(&u->fs.tmp);
    pyrt_sbuf_free(&u->fs.dirpaths);
    free(u->fs.dirs);
}
