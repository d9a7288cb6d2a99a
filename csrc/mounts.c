#include "mounts.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/utsname.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <linux/magic.h>

#include "err.h"
#include "oci.h"
#include "resolve.h"
#include "syscalls.h"

static unsigned int mount_attrs(unsigned int flags)
{
    unsigned int a = 0;
    if (flags & PYRT_MNT_RDONLY)
        a |= MOUNT_ATTR_RDONLY;
    if (flags & PYRT_MNT_NOSUID)
        a |= MOUNT_ATTR_NOSUID;
    if (flags & PYRT_MNT_NODEV)
        a |= MOUNT_ATTR_NODEV;
    if (flags & PYRT_MNT_NOEXEC)
        a |= MOUNT_ATTR_NOEXEC;
    return a;
}

/* Keep the kernel's own explanation of a failed fsconfig (read from the context). */
static int fs_fail(struct pyrt_error *e, int fsfd, const char *op, const char *path)
{
    int err = errno;
    char msg[256];
    ssize_t n = read(fsfd, msg, sizeof msg - 1);
    pyrt_fail_errno(e, err, op, path);
    if (n > 2) {
        msg[n] = '\0';
        size_t len = strlen(e->path);
        pyrt_strlcpy(e->path + len, " (", sizeof e->path - len);
        len = strlen(e->path);
        pyrt_strlcpy(e->path + len, msg + 2, sizeof e->path - len); /* skip "e " */
        len = strlen(e->path);
        pyrt_strlcpy(e->path + len, ")", sizeof e->path - len);
    }
    close(fsfd);
    errno = err;
    return -1;
}

/* Apply "key=value,flag,..." options to a filesystem context. */
static int fs_options(int fsfd, const char *options, struct pyrt_error *e, const char *what)
{
    char buf[1024];
    if (!options || !*options)
        return 0;
    if (pyrt_strlcpy(buf, options, sizeof buf) + 1 >= sizeof buf)
        return pyrt_fail_errno(e, E2BIG, "mount options", what);
    char *p = buf;
    while (p && *p) {
        char *next = strchr(p, ',');
        if (next)
            *next++ = '\0';
        char *eq = strchr(p, '=');
        int rc;
        if (eq) {
            *eq = '\0';
            rc = pyrt_fsconfig(fsfd, FSCONFIG_SET_STRING, p, eq + 1, 0);
        } else {
            rc = pyrt_fsconfig(fsfd, FSCONFIG_SET_FLAG, p, NULL, 0);
        }
        if (rc < 0)
            return fs_fail(e, fsfd, "mount option", p);
        p = next;
    }
    return 0;
}

/* A new detached mount of a filesystem (proc, tmpfs, ...). */
static int new_mount(const char *fstype, const char *options, unsigned int attrs,
                     struct pyrt_error *e, const char *what)
{
    int fsfd = pyrt_fsopen(fstype, FSOPEN_CLOEXEC);
    if (fsfd < 0)
        return pyrt_fail(e, "fsopen", fstype);
    if (pyrt_fsconfig(fsfd, FSCONFIG_SET_STRING, "source", fstype, 0) < 0)
        return fs_fail(e, fsfd, "mount", what);
    if (fs_options(fsfd, options, e, what) < 0)
        return -1;
    if (pyrt_fsconfig(fsfd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
        return fs_fail(e, fsfd, "mount", what);
    int mfd = pyrt_fsmount(fsfd, FSMOUNT_CLOEXEC, attrs);
    int err = errno;
    close(fsfd);
    if (mfd < 0)
        return pyrt_fail_errno(e, err, "mount", what);
    return mfd;
}

static int attach(int mfd, int targetfd)
{
    return pyrt_move_mount(mfd, "", targetfd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH);
}

static int set_attrs(int mfd, unsigned int attrs, int recursive)
{
    struct pyrt_mount_attr a;
    memset(&a, 0, sizeof a);
    a.attr_set = attrs;
    return pyrt_mount_setattr(mfd, "", AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0), &a, sizeof a);
}

/* Refuse a mount over the container root itself (a destination like "/", "../.."
 * or a symlink to "/"): it would hide the whole root. */
static int is_root(int rootfd, int fd)
{
    struct stat a, b;
    if (fstat(rootfd, &a) < 0 || fstat(fd, &b) < 0)
        return 0;
    return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

/* Files under /proc a bind may cover (lxcfs's, as runc allows). */
static const char *const proc_bind_ok[] = {
    "/proc/cpuinfo", "/proc/diskstats", "/proc/meminfo", "/proc/stat", "/proc/swaps", "/proc/uptime",
    "/proc/loadavg", "/proc/slabinfo", "/proc/net/dev", "/proc/sys/kernel/ns_last_pid",
    "/proc/sys/crypto/fips_enabled",
};

/* Nothing but a proc filesystem goes onto the container's proc (the CVE-2019-19921
 * class: a bind over /proc/self/attr or /proc/sys hides what the kernel enforces),
 * wherever the destination resolved, through symlinks of the image too. */
static int proc_target_ok(int tfd, int mfd, const char *target)
{
    struct statfs t, m;
    if (fstatfs(tfd, &t) < 0 || t.f_type != PROC_SUPER_MAGIC)
        return 1;
    if (fstatfs(mfd, &m) == 0 && m.f_type == PROC_SUPER_MAGIC)
        return 1;
    for (size_t i = 0; i < sizeof proc_bind_ok / sizeof proc_bind_ok[0]; i++)
        if (strcmp(target, proc_bind_ok[i]) == 0)
            return 1;
    return 0;
}

/* Attach mfd at `target` inside the root (created when missing). Closes mfd. */
static int mount_at(int rootfd, int mfd, const char *target, int as_file, struct pyrt_error *e)
{
    int tfd = pyrt_make_mount_target(rootfd, target, as_file);
    if (tfd < 0) {
        int err = errno;
        close(mfd);
        return pyrt_fail_errno(e, err, "mount destination", target);
    }
    if (!proc_target_ok(tfd, mfd, target)) {
        close(tfd);
        close(mfd);
        return pyrt_fail_errno(e, EPERM, "mount destination inside /proc", target);
    }
    if (is_root(rootfd, tfd)) {
        close(tfd);
        close(mfd);
        return pyrt_fail_errno(e, EXDEV, "mount destination resolves to the container root", target);
    }
    int rc = attach(mfd, tfd);
    int err = errno;
    close(tfd);
    close(mfd);
    if (rc < 0)
        return pyrt_fail_errno(e, err, "mount", target);
    return 0;
}

/* Whether overlay takes "lowerdir+" (6.8+). Asked of uname rather than tried:
 * every refused try writes a line to the kernel log, and before 6.5 the generic
 * mount context takes the key and the filesystem refuses it only at create, where
 * it cannot be told from a real error. */
static int has_lowerdir_plus(void)
{
    struct utsname u;
    if (uname(&u) < 0)
        return 1; /* try, and fall back on EINVAL */
    char *p = u.release;
    long major = strtol(p, &p, 10), minor = *p == '.' ? strtol(p + 1, NULL, 10) : 0;
    return major > 6 || (major == 6 && minor >= 8);
}

/* The overlay with the new mount API: one fsconfig per layer, so the number of
 * layers is not limited by the one-page mount data of mount(2). */
static int overlay_new_api(const struct pyrt_spawn_spec *s, struct pyrt_error *e)
{
    int fsfd = pyrt_fsopen("overlay", FSOPEN_CLOEXEC);
    if (fsfd < 0)
        return pyrt_fail(e, "fsopen", "overlay");
    if (pyrt_fsconfig(fsfd, FSCONFIG_SET_STRING, "source", "overlay", 0) < 0)
        return fs_fail(e, fsfd, "mount overlay", "source");
    for (size_t i = 0; i < s->nlower; i++) {
        if (pyrt_fsconfig(fsfd, FSCONFIG_SET_STRING, "lowerdir+", s->lowerdirs[i], 0) < 0) {
            /* A kernel whose version claims "lowerdir+" (6.8) but lacks it */
            if (i == 0 && errno == EINVAL) {
                close(fsfd);
                errno = ENOSYS;
                return -2;
            }
            return fs_fail(e, fsfd, "mount overlay lowerdir", s->lowerdirs[i]);
        }
    }
    if (s->upperdir) {
        if (pyrt_fsconfig(fsfd, FSCONFIG_SET_STRING, "upperdir", s->upperdir, 0) < 0)
            return fs_fail(e, fsfd, "mount overlay upperdir", s->upperdir);
        if (pyrt_fsconfig(fsfd, FSCONFIG_SET_STRING, "workdir", s->workdir, 0) < 0)
            return fs_fail(e, fsfd, "mount overlay workdir", s->workdir);
    }
    if (fs_options(fsfd, s->overlay_options, e, "overlay") < 0)
        return -1;
    if (pyrt_fsconfig(fsfd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
        return fs_fail(e, fsfd, "mount overlay", s->upperdir ? s->upperdir : s->lowerdirs[0]);
    int mfd = pyrt_fsmount(fsfd, FSMOUNT_CLOEXEC, 0);
    int err = errno;
    close(fsfd);
    if (mfd < 0)
        return pyrt_fail_errno(e, err, "mount overlay", s->anchor);
    return mfd;
}

/* Older kernels (before 6.8): mount(2) with the layers in one option string of one
 * page. Each layer is named by a short relative path, an fd number in
 * /proc/self/fd as the cwd (as containers/storage does with short link names), so
 * that overlay's limit of 500 layers fits in a page whatever the store's path. */
static int overlay_legacy(const struct pyrt_spawn_spec *s, struct pyrt_error *e)
{
    char data[4096];
    int fds[PYRT_MAX_LAYERS], rc = -1, oldcwd = -1;
    size_t nfds = 0;
    if (s->nlower > PYRT_MAX_LAYERS)
        return pyrt_fail_errno(e, E2BIG, "mount overlay (more layers than overlay stacks)", s->anchor);
    size_t n = pyrt_strlcpy(data, "lowerdir=", sizeof data);
    for (; nfds < s->nlower; nfds++) {
        fds[nfds] = open(s->lowerdirs[nfds], O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (fds[nfds] < 0) {
            pyrt_fail(e, "mount overlay lowerdir", s->lowerdirs[nfds]);
            goto out;
        }
        char name[16];
        snprintf(name, sizeof name, "%s%d", nfds ? ":" : "", fds[nfds]);
        n += pyrt_strlcpy(data + n, name, n < sizeof data ? sizeof data - n : 0);
    }
    if (s->upperdir) {
        n += pyrt_strlcpy(data + n, ",upperdir=", n < sizeof data ? sizeof data - n : 0);
        n += pyrt_strlcpy(data + n, s->upperdir, n < sizeof data ? sizeof data - n : 0);
        n += pyrt_strlcpy(data + n, ",workdir=", n < sizeof data ? sizeof data - n : 0);
        n += pyrt_strlcpy(data + n, s->workdir, n < sizeof data ? sizeof data - n : 0);
    }
    if (s->overlay_options && *s->overlay_options) {
        n += pyrt_strlcpy(data + n, ",", n < sizeof data ? sizeof data - n : 0);
        n += pyrt_strlcpy(data + n, s->overlay_options, n < sizeof data ? sizeof data - n : 0);
    }
    if (n + 1 >= sizeof data) {
        pyrt_fail_errno(e, E2BIG, "mount overlay (options longer than a page)", s->anchor);
        goto out;
    }
    oldcwd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (oldcwd < 0) {
        pyrt_fail(e, "open", "current directory");
        goto out;
    }
    if (chdir("/proc/self/fd") < 0) {
        pyrt_fail(e, "mount overlay: chdir", "/proc/self/fd");
        goto out;
    }
    if (mount("overlay", s->anchor, "overlay", 0, data) < 0)
        pyrt_fail(e, "mount overlay", s->anchor);
    else
        rc = 0;
    if (fchdir(oldcwd) < 0 && rc == 0)
        rc = pyrt_fail(e, "fchdir", "previous directory");
out:
    if (oldcwd >= 0)
        close(oldcwd);
    while (nfds > 0)
        close(fds[--nfds]);
    return rc;
}

/* A volatile upper: a fresh tmpfs at the anchor (in this mount namespace only)
 * holds upper/ (with the mode and owner of the top layer's root, which the
 * container's / shows) and work/; the overlay of the lower dirs over them, with
 * option volatile (no syncs: the layer dies with the container), is returned
 * detached (or -3: mounted at the anchor already, by the legacy API). */
static int overlay_volatile(const struct pyrt_spawn_spec *s, struct pyrt_error *e)
{
    int tfd = new_mount("tmpfs", s->upper_tmpfs, 0, e, "volatile upper (tmpfs)");
    if (tfd < 0)
        return -1;
    int rc = pyrt_move_mount(tfd, "", AT_FDCWD, s->anchor, MOVE_MOUNT_F_EMPTY_PATH);
    int err = errno;
    close(tfd);
    if (rc < 0)
        return pyrt_fail_errno(e, err, "mount volatile upper at", s->anchor);
    char upper[1024], work[1024], options[1024];
    size_t n = pyrt_strlcpy(upper, s->anchor, sizeof upper);
    size_t m = pyrt_strlcpy(work, s->anchor, sizeof work);
    if (n + sizeof "/upper" > sizeof upper || m + sizeof "/work" > sizeof work)
        return pyrt_fail_errno(e, ENAMETOOLONG, "volatile upper", s->anchor);
    pyrt_strlcpy(upper + n, "/upper", sizeof upper - n);
    pyrt_strlcpy(work + m, "/work", sizeof work - m);
    struct stat st;
    if (stat(s->lowerdirs[0], &st) < 0)
        return pyrt_fail(e, "stat", s->lowerdirs[0]);
    if (mkdir(upper, st.st_mode & 07777) < 0)
        return pyrt_fail(e, "mkdir", upper);
    if ((st.st_uid != 0 || st.st_gid != 0) && chown(upper, st.st_uid, st.st_gid) < 0)
        return pyrt_fail(e, "chown", upper);
    if (mkdir(work, 0700) < 0)
        return pyrt_fail(e, "mkdir", work);
    n = pyrt_strlcpy(options, "volatile", sizeof options);
    if (s->overlay_options && *s->overlay_options) {
        n += pyrt_strlcpy(options + n, ",", sizeof options - n);
        n += pyrt_strlcpy(options + n, s->overlay_options, sizeof options - n);
    }
    if (n + 1 >= sizeof options)
        return pyrt_fail_errno(e, E2BIG, "overlay options", s->overlay_options);
    struct pyrt_spawn_spec v = *s;
    v.upperdir = upper;
    v.workdir = work;
    v.overlay_options = options;
    int mfd = has_lowerdir_plus() ? overlay_new_api(&v, e) : -2;
    if (mfd == -2)
        return overlay_legacy(&v, e) == 0 ? -3 : -1;
    return mfd;
}

/* Mount the root at the anchor; returns an O_PATH fd of it. */
static int mount_root(const struct pyrt_spawn_spec *s, struct pyrt_error *e)
{
    int mfd = -1;
    if (s->upper_tmpfs && s->nlower && !s->upperdir && !s->rootfs) {
        mfd = overlay_volatile(s, e);
        if (mfd == -1)
            return -1;
    } else if (s->rootfs) {
        mfd = pyrt_open_tree(AT_FDCWD, s->rootfs, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
        if (mfd < 0)
            return pyrt_fail(e, "bind rootfs", s->rootfs);
    } else if (!s->upperdir && s->nlower == 1) {
        /* A single read-only layer: overlay wants two lowers without an upper. */
        mfd = pyrt_open_tree(AT_FDCWD, s->lowerdirs[0], OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
        if (mfd < 0)
            return pyrt_fail(e, "bind rootfs", s->lowerdirs[0]);
    } else {
        mfd = has_lowerdir_plus() ? overlay_new_api(s, e) : -2;
        if (mfd == -2 && overlay_legacy(s, e) == 0)
            mfd = -3; /* already mounted at the anchor */
        else if (mfd < 0)
            return -1;
    }
    if (mfd >= 0) {
        int rc = pyrt_move_mount(mfd, "", AT_FDCWD, s->anchor, MOVE_MOUNT_F_EMPTY_PATH);
        int err = errno;
        close(mfd);
        if (rc < 0)
            return pyrt_fail_errno(e, err, "mount rootfs at", s->anchor);
    }
    int rootfd = open(s->anchor, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0)
        return pyrt_fail(e, "open rootfs", s->anchor);
    return rootfd;
}

static int mount_proc(int rootfd, struct pyrt_error *e)
{
    int mfd = new_mount("proc", NULL, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC, e, "/proc");
    return mfd < 0 ? -1 : mount_at(rootfd, mfd, "/proc", 0, e);
}

static int mount_sys(int rootfd, struct pyrt_error *e)
{
    unsigned int attrs = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;
    int mfd = new_mount("sysfs", NULL, attrs, e, "/sys");
    if (mfd < 0 && e->err == EPERM) {
        /* sysfs may only be mounted by the owner of the net namespace: bind the host's. */
        mfd = pyrt_open_tree(AT_FDCWD, "/sys", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
        if (mfd < 0 || set_attrs(mfd, attrs, 1) < 0)
            return pyrt_fail(e, "bind", "/sys");
    }
    return mfd < 0 ? -1 : mount_at(rootfd, mfd, "/sys", 0, e);
}

struct devnode {
    const char *name;
    unsigned int major, minor;
};

static const struct devnode devnodes[] = {
    {"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0},
};

static const char *const devlinks[][2] = {
    {"fd", "/proc/self/fd"},         {"stdin", "/proc/self/fd/0"}, {"stdout", "/proc/self/fd/1"},
    {"stderr", "/proc/self/fd/2"},   {"ptmx", "pts/ptmx"},
};

/* A device node; where mknod is not allowed (a user namespace), a bind of the
 * host's node. */
static int make_dev(int devfd, const struct devnode *d, struct pyrt_error *e)
{
    char host[64] = "/dev/";
    pyrt_strlcpy(host + 5, d->name, sizeof host - 5);
    if (mknodat(devfd, d->name, S_IFCHR | 0666, makedev(d->major, d->minor)) == 0)
        return 0;
    if (errno != EPERM)
        return pyrt_fail(e, "mknod", host);
    int fd = openat(devfd, d->name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0)
        return pyrt_fail(e, "create", host);
    close(fd);
    int mfd = pyrt_open_tree(AT_FDCWD, host, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
    if (mfd < 0)
        return pyrt_fail(e, "bind", host);
    /* nothing but the node itself: no exec, no setuid through it (as rootless podman) */
    if (set_attrs(mfd, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC, 0) < 0) {
        int err = errno;
        close(mfd);
        return pyrt_fail_errno(e, err, "bind", host);
    }
    int rc = pyrt_move_mount(mfd, "", devfd, d->name, MOVE_MOUNT_F_EMPTY_PATH);
    int err = errno;
    close(mfd);
    return rc < 0 ? pyrt_fail_errno(e, err, "bind", host) : 0;
}

/* /dev: a fresh tmpfs populated here, never what the rootfs has at /dev. */
static int mount_dev(int rootfd, struct pyrt_error *e)
{
    int mfd = new_mount("tmpfs", "mode=755,size=65536k", MOUNT_ATTR_NOSUID | MOUNT_ATTR_STRICTATIME, e, "/dev");
    if (mfd < 0 || mount_at(rootfd, mfd, "/dev", 0, e) < 0)
        return -1;
    int devfd = pyrt_open_in_root(rootfd, "/dev", O_PATH | O_DIRECTORY);
    if (devfd < 0)
        return pyrt_fail(e, "open", "/dev");
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < sizeof devnodes / sizeof devnodes[0]; i++)
        rc = make_dev(devfd, &devnodes[i], e);
    for (size_t i = 0; rc == 0 && i < sizeof devlinks / sizeof devlinks[0]; i++)
        if (symlinkat(devlinks[i][1], devfd, devlinks[i][0]) < 0)
            rc = pyrt_fail(e, "symlink /dev", devlinks[i][0]);
    if (rc == 0 && (mkdirat(devfd, "pts", 0755) < 0 || mkdirat(devfd, "shm", 01777) < 0 ||
                    mkdirat(devfd, "mqueue", 0755) < 0))
        rc = pyrt_fail(e, "mkdir", "/dev");
    close(devfd);
    if (rc < 0)
        return -1;

    unsigned int nosuid_noexec = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC;
    mfd = new_mount("devpts", "newinstance,ptmxmode=0666,mode=0620,gid=5", nosuid_noexec, e, "/dev/pts");
    if (mfd < 0 && e->err == EINVAL) /* gid 5 not mapped in a user namespace */
        mfd = new_mount("devpts", "newinstance,ptmxmode=0666,mode=0620", nosuid_noexec, e, "/dev/pts");
    if (mfd < 0 || mount_at(rootfd, mfd, "/dev/pts", 0, e) < 0)
        return -1;
    mfd = new_mount("tmpfs", "mode=1777,size=65536k", nosuid_noexec | MOUNT_ATTR_NODEV, e, "/dev/shm");
    if (mfd < 0 || mount_at(rootfd, mfd, "/dev/shm", 0, e) < 0)
        return -1;
    mfd = new_mount("mqueue", NULL, nosuid_noexec | MOUNT_ATTR_NODEV, e, "/dev/mqueue");
    if (mfd < 0 || mount_at(rootfd, mfd, "/dev/mqueue", 0, e) < 0)
        return -1;
    return 0;
}

/* Masked paths: /dev/null over files, an empty read-only tmpfs over directories.
 * Read-only paths: a read-only bind of themselves. Missing paths are skipped; a
 * symlink is followed inside the root (what it leads to is masked or made
 * read-only, as the spec's readers of the path see it). */
static int mask_paths(const struct pyrt_spawn_spec *s, int rootfd, struct pyrt_error *e)
{
    int emptyfd = -1, rc = 0;
    for (size_t i = 0; rc == 0 && s->masked_paths && s->masked_paths[i]; i++) {
        const char *p = s->masked_paths[i];
        int fd = pyrt_open_in_root(rootfd, p, O_PATH);
        if (fd < 0) {
            if (errno != ENOENT)
                rc = pyrt_fail(e, "mask", p);
            continue;
        }
        struct stat st;
        int src = -1;
        if (fstat(fd, &st) < 0) {
            rc = pyrt_fail(e, "mask", p);
        } else if (S_ISDIR(st.st_mode) && emptyfd < 0) {
            /* The first masked directory gets a new empty tmpfs; the others get clones of
             * it once it is attached: before 6.15 a detached mount cannot be cloned. */
            emptyfd = new_mount("tmpfs", "size=0,mode=555", MOUNT_ATTR_RDONLY, e, p);
            if (emptyfd < 0)
                rc = -1;
            else if (attach(emptyfd, fd) < 0)
                rc = pyrt_fail(e, "mask", p);
            close(fd);
            continue;
        } else if (S_ISDIR(st.st_mode)) {
            src = pyrt_open_tree(emptyfd, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH);
        } else {
            /* the host's /dev/null (still reachable before pivot_root): the root may
             * have none, or a file of the image's at that path */
            src = pyrt_open_tree(AT_FDCWD, "/dev/null", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
        }
        if (rc == 0 && (src < 0 || attach(src, fd) < 0))
            rc = pyrt_fail(e, "mask", p);
        if (src >= 0)
            close(src);
        close(fd);
    }
    if (emptyfd >= 0)
        close(emptyfd);
    for (size_t i = 0; rc == 0 && s->readonly_paths && s->readonly_paths[i]; i++) {
        const char *p = s->readonly_paths[i];
        int fd = pyrt_open_in_root(rootfd, p, O_PATH);
        if (fd < 0) {
            if (errno != ENOENT)
                rc = pyrt_fail(e, "read-only path", p);
            continue;
        }
        int src = pyrt_open_tree(fd, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH | AT_RECURSIVE);
        if (src < 0 || set_attrs(src, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC, 1) < 0 ||
            attach(src, fd) < 0)
            rc = pyrt_fail(e, "read-only path", p);
        if (src >= 0)
            close(src);
        close(fd);
    }
    return rc;
}

/* A new filesystem named by the spec (PYRT_MOUNT_FS), read-write for now (see
 * late_attrs). sysfs, which only the owner of the network namespace may mount,
 * falls back to a bind of the host's /sys (as runc does); devpts to no gid= where
 * that group is not mapped (a user namespace). */
static int fs_mount(const struct pyrt_mount *m, unsigned int attrs, struct pyrt_error *e)
{
    attrs &= ~(unsigned int)MOUNT_ATTR_RDONLY;
    int mfd = new_mount(m->fstype, m->data, attrs, e, m->target);
    if (mfd < 0 && e->err == EPERM && strcmp(m->fstype, "sysfs") == 0) {
        mfd = pyrt_open_tree(AT_FDCWD, "/sys", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
        if (mfd < 0 || (attrs && set_attrs(mfd, attrs, 1) < 0))
            return pyrt_fail(e, "bind", "/sys");
    } else if (mfd < 0 && e->err == EINVAL && strcmp(m->fstype, "devpts") == 0 && m->data) {
        char opts[1024], *w = opts;
        const char *p = m->data;
        while (*p && (size_t)(w - opts) + 2 < sizeof opts) { /* copy all but gid=N */
            const char *end = strchr(p, ',');
            size_t len = end ? (size_t)(end - p) : strlen(p);
            if (strncmp(p, "gid=", 4) != 0 && (size_t)(w - opts) + len + 2 < sizeof opts) {
                if (w != opts)
                    *w++ = ',';
                memcpy(w, p, len);
                w += len;
            }
            p += len + (end ? 1 : 0);
        }
        *w = '\0';
        mfd = new_mount(m->fstype, opts, attrs, e, m->target);
    }
    return mfd;
}

/* Once everything is mounted: read-only for the new filesystems that asked for it,
 * propagation for every mount that names one. */
static int late_attrs(const struct pyrt_spawn_spec *s, int rootfd, struct pyrt_error *e)
{
    for (size_t i = 0; i < s->nmounts; i++) {
        const struct pyrt_mount *m = &s->mounts[i];
        int ro = m->kind == PYRT_MOUNT_FS && (m->flags & PYRT_MNT_RDONLY);
        if (!ro && !m->propagation)
            continue;
        int fd = pyrt_open_in_root(rootfd, m->target, O_PATH | O_NOFOLLOW);
        if (fd < 0)
            return pyrt_fail(e, "open mount", m->target);
        int rc = 0;
        if (ro && set_attrs(fd, MOUNT_ATTR_RDONLY, 0) < 0) {
            rc = pyrt_fail(e, "make read-only", m->target);
        } else if (m->propagation) {
            struct pyrt_mount_attr a;
            memset(&a, 0, sizeof a);
            a.propagation = m->propagation & ~(unsigned long)MS_REC;
            if (pyrt_mount_setattr(fd, "", AT_EMPTY_PATH | ((m->propagation & MS_REC) ? AT_RECURSIVE : 0), &a,
                                   sizeof a) < 0)
                rc = pyrt_fail(e, "set propagation of", m->target);
        }
        close(fd);
        if (rc < 0)
            return -1;
    }
    return 0;
}

static int extra_mounts(const struct pyrt_spawn_spec *s, int rootfd, struct pyrt_error *e)
{
    for (size_t i = 0; i < s->nmounts; i++) {
        const struct pyrt_mount *m = &s->mounts[i];
        /* without a device cgroup: nodev, but for a device node the caller binds in */
        unsigned int nodev = (s->setup & PYRT_SETUP_NODEV) ? PYRT_MNT_NODEV : 0;
        unsigned int attrs = mount_attrs(m->flags | nodev);
        int mfd, as_file = 0;
        if (m->kind == PYRT_MOUNT_BIND) {
            int rec = (m->flags & PYRT_MNT_NOREC) ? 0 : AT_RECURSIVE;
            mfd = pyrt_open_tree(AT_FDCWD, m->source, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | rec);
            if (mfd < 0)
                return pyrt_fail(e, "bind source", m->source);
            struct stat st;
            int rc = fstat(mfd, &st);
            if (rc == 0 && (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)))
                attrs = mount_attrs(m->flags);
            if (rc < 0 || (attrs && set_attrs(mfd, attrs, rec != 0) < 0)) {
                int err = errno;
                close(mfd);
                return pyrt_fail_errno(e, err, "bind", m->source);
            }
            as_file = !S_ISDIR(st.st_mode);
        } else if (m->kind == PYRT_MOUNT_TMPFS) {
            mfd = new_mount("tmpfs", m->data, attrs, e, m->target);
            if (mfd < 0)
                return -1;
        } else if (m->kind == PYRT_MOUNT_FS && m->fstype) {
            mfd = fs_mount(m, attrs, e);
            if (mfd < 0)
                return -1;
        } else {
            return pyrt_fail_errno(e, EINVAL, "mount kind", m->target);
        }
        if (mount_at(rootfd, mfd, m->target, as_file, e) < 0)
            return -1;
    }
    return late_attrs(s, rootfd, e);
}

int pyrt_setup_rootfs(const struct pyrt_spawn_spec *s, struct pyrt_error *e)
{
    /* Nothing done here may propagate back to the host (an OCI bundle asking for
     * a shared or slave root: host mounts may still propagate in). */
    unsigned long want = s->oci ? s->oci->root_propagation : 0;
    if (mount(NULL, "/", NULL, MS_REC | ((want & (MS_SHARED | MS_SLAVE)) ? MS_SLAVE : MS_PRIVATE), NULL) < 0)
        return pyrt_fail(e, "make mounts private", "/");
    int rootfd = mount_root(s, e);
    if (rootfd < 0)
        return -1;
    int rc = 0;
    if ((s->setup & PYRT_SETUP_NODEV) && set_attrs(rootfd, MOUNT_ATTR_NODEV, 1) < 0)
        rc = pyrt_fail(e, "make rootfs nodev", s->anchor);
    else if ((s->setup & PYRT_SETUP_PROC) && mount_proc(rootfd, e) < 0)
        rc = -1;
    else if ((s->setup & PYRT_SETUP_SYS) && mount_sys(rootfd, e) < 0)
        rc = -1;
    else if ((s->setup & PYRT_SETUP_DEV) && mount_dev(rootfd, e) < 0)
        rc = -1;
    else if (extra_mounts(s, rootfd, e) < 0)
        rc = -1;
    else if (s->oci && pyrt_oci_rootfs(s->oci, rootfd, e) < 0)
        rc = -1;
    else if (s->oci && pyrt_oci_hooks_stop(s->oci, e) < 0) /* the create hooks run now */
        rc = -1;
    else if ((s->setup & PYRT_SETUP_MASK) && mask_paths(s, rootfd, e) < 0)
        rc = -1;
    else if (s->readonly_root && set_attrs(rootfd, MOUNT_ATTR_RDONLY, 0) < 0)
        rc = pyrt_fail(e, "make rootfs read-only", s->anchor);
    if (rc < 0) {
        close(rootfd);
        return -1;
    }
    /* pivot_root(".", ".") stacks the old root under the new one; detach it. */
    if (fchdir(rootfd) < 0)
        rc = pyrt_fail(e, "chdir", s->anchor);
    else if (pyrt_pivot_root(".", ".") < 0)
        rc = pyrt_fail(e, "pivot_root", s->anchor);
    else if (umount2(".", MNT_DETACH) < 0)
        rc = pyrt_fail(e, "detach old root", "/");
    else if (chdir("/") < 0)
        rc = pyrt_fail(e, "chdir", "/");
    else if (want && mount(NULL, "/", NULL, want, NULL) < 0)
        rc = pyrt_fail(e, "set propagation of", "/");
    close(rootfd);
    return rc;
}
