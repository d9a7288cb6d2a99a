/* The OCI runtime's part of the spawn child (see oci.h). Raw syscalls only: this
 * runs between clone and exec in a child of a possibly threaded process. */
#include "oci.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <termios.h>
#include <unistd.h>

#include "childmsg.h"
#include "err.h"
#include "execpath.h"
#include "fdio.h"
#include "resolve.h"
#include "syscalls.h"

#ifndef TIOCGPTPEER
#define TIOCGPTPEER _IO('T', 0x41)
#endif
#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_RAISE 2
#endif

/* The child's error pipe, and whether the caller was told "waiting" (then
 * nobody reads that pipe any more). Set in the child only (its own memory). */
static int oci_errfd = -1;
static int oci_waited;

static const char *ns_name(int type)
{
    switch (type) {
    case CLONE_NEWUSER:
        return "user namespace";
    case CLONE_NEWNS:
        return "mount namespace";
    case CLONE_NEWNET:
        return "network namespace";
    case CLONE_NEWIPC:
        return "ipc namespace";
    case CLONE_NEWUTS:
        return "uts namespace";
    case CLONE_NEWPID:
        return "pid namespace";
    case CLONE_NEWCGROUP:
        return "cgroup namespace";
    default:
        return "namespace";
    }
}

int pyrt_oci_begin(const struct pyrt_oci *o, int errfd, struct pyrt_error *e)
{
    oci_errfd = errfd;
    for (size_t i = 0; i < o->njoins; i++)
        if (setns(o->joins[i].fd, o->joins[i].type) < 0)
            return pyrt_fail(e, "join", ns_name(o->joins[i].type));
    if (o->unshare_flags && unshare((int)o->unshare_flags) < 0)
        return pyrt_fail(e, "unshare", "namespaces after the joined ones");
    if (o->chroot_path) {
        int fd = open(o->chroot_path, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
            return pyrt_fail(e, "open root", o->chroot_path);
        int rc = fchdir(fd);
        int err = errno;
        close(fd);
        if (rc < 0)
            return pyrt_fail_errno(e, err, "chdir", o->chroot_path);
        if (chroot(".") < 0)
            return pyrt_fail(e, "chroot", o->chroot_path);
    }
    /* KEYCTL_JOIN_SESSION_KEYRING (1) with no name: a new anonymous one */
    if (o->new_keyring && syscall(SYS_keyctl, 1, 0, 0, 0, 0) < 0 && errno != ENOSYS)
        return pyrt_fail(e, "join a new session keyring", "");
    return 0;
}

/* -- inside the root ------------------------------------------------------------ */

/* A device node at d->path; where mknod is not allowed (a user namespace), a bind
 * of the host's node of that path. An existing file is kept. */
static int make_device(int rootfd, const struct pyrt_device *d, struct pyrt_error *e)
{
    char dir[4096];
    size_t n = pyrt_strlcpy(dir, d->path, sizeof dir);
    if (n + 1 >= sizeof dir)
        return pyrt_fail_errno(e, ENAMETOOLONG, "device", d->path);
    char *slash = strrchr(dir, '/');
    if (!slash || !slash[1])
        return pyrt_fail_errno(e, EINVAL, "device path", d->path);
    const char *name = slash + 1;
    if (slash == dir)
        dir[1] = '\0', name = d->path + 1;
    else
        *slash = '\0';
    int dirfd = pyrt_ensure_in_root(rootfd, dir, 0);
    if (dirfd < 0)
        return pyrt_fail(e, "device directory", dir);
    int rc = 0;
    if (mknodat(dirfd, name, d->mode, makedev(d->major, d->minor)) == 0) {
        if (fchownat(dirfd, name, d->uid, d->gid, AT_SYMLINK_NOFOLLOW) < 0)
            rc = pyrt_fail(e, "chown device", d->path);
    } else if (errno == EEXIST) {
        /* kept when it is that device already; anything else at the path is an error
         * (the spec: a file that does not match the requested device) */
        struct stat st;
        if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
            rc = pyrt_fail(e, "stat device", d->path);
        else if ((st.st_mode & S_IFMT) != (d->mode & S_IFMT) ||
                 (!S_ISFIFO(st.st_mode) && st.st_rdev != makedev(d->major, d->minor)))
            rc = pyrt_fail_errno(e, EEXIST, "device (another file is at its path)", d->path);
    } else if (errno == EPERM) {
        int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0 && errno != EEXIST) {
            rc = pyrt_fail(e, "create", d->path);
        } else {
            if (fd >= 0)
                close(fd);
            int mfd = pyrt_open_tree(AT_FDCWD, d->path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
            if (mfd < 0 || pyrt_move_mount(mfd, "", dirfd, name, MOVE_MOUNT_F_EMPTY_PATH) < 0)
                rc = pyrt_fail(e, "bind host device", d->path);
            if (mfd >= 0)
                close(mfd);
        }
    } else {
        rc = pyrt_fail(e, "mknod", d->path);
    }
    close(dirfd);
    return rc;
}

static const char *const dev_links[][2] = {
    {"fd", "/proc/self/fd"},       {"stdin", "/proc/self/fd/0"}, {"stdout", "/proc/self/fd/1"},
    {"stderr", "/proc/self/fd/2"}, {"ptmx", "pts/ptmx"},
};

static int write_sysctl(int rootfd, const char *key, const char *value, struct pyrt_error *e)
{
    char path[512];
    size_t n = pyrt_strlcpy(path, "/proc/sys/", sizeof path);
    if (n + pyrt_strlcpy(path + n, key, sizeof path - n) + 1 >= sizeof path)
        return pyrt_fail_errno(e, ENAMETOOLONG, "sysctl", key);
    int fd = pyrt_open_in_root(rootfd, path, O_WRONLY);
    if (fd < 0)
        return pyrt_fail(e, "sysctl", path);
    int rc = pyrt_write_all(fd, value, strlen(value));
    int err = errno;
    close(fd);
    return rc < 0 ? pyrt_fail_errno(e, err, "sysctl", path) : 0;
}

int pyrt_oci_rootfs(const struct pyrt_oci *o, int rootfd, struct pyrt_error *e)
{
    for (size_t i = 0; i < o->ndevices; i++)
        if (make_device(rootfd, &o->devices[i], e) < 0)
            return -1;
    if (o->dev_links) {
        int devfd = pyrt_open_in_root(rootfd, "/dev", O_PATH | O_DIRECTORY);
        if (devfd < 0 && errno != ENOENT)
            return pyrt_fail(e, "open", "/dev");
        for (size_t i = 0; devfd >= 0 && i < sizeof dev_links / sizeof dev_links[0]; i++)
            if (symlinkat(dev_links[i][1], devfd, dev_links[i][0]) < 0 && errno != EEXIST) {
                int err = errno;
                close(devfd);
                return pyrt_fail_errno(e, err, "symlink /dev", dev_links[i][0]);
            }
        if (devfd >= 0)
            close(devfd);
    }
    for (size_t i = 0; o->sysctls && o->sysctls[i] && o->sysctls[i + 1]; i += 2)
        if (write_sysctl(rootfd, o->sysctls[i], o->sysctls[i + 1], e) < 0)
            return -1;
    return 0;
}

/* -- identity --------------------------------------------------------------------- */

int pyrt_oci_before_identity(const struct pyrt_oci *o, struct pyrt_error *e)
{
    if (o->cap_sets && prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
        return pyrt_fail(e, "keep capabilities", "");
    return 0;
}

int pyrt_oci_after_identity(const struct pyrt_oci *o, struct pyrt_error *e)
{
    if (!o->cap_sets)
        return 0;
    uint32_t eff[2], prm[2], inh[2];
    if (pyrt_capget(eff, prm, inh) < 0)
        return pyrt_fail(e, "capget", "");
    for (int i = 0; i < 2; i++) {
        prm[i] &= (uint32_t)(o->cap_permitted >> (32 * i));
        eff[i] = prm[i] & (uint32_t)(o->cap_effective >> (32 * i));
        inh[i] = prm[i] & (uint32_t)(o->cap_inheritable >> (32 * i));
    }
    if (pyrt_capset(eff, prm, inh) < 0)
        return pyrt_fail(e, "capset", "");
    for (int cap = 0; cap < 64; cap++) {
        if (!(o->cap_ambient & (1ULL << cap)))
            continue;
        uint32_t bit = 1U << (cap % 32);
        if (!(prm[cap / 32] & bit) || !(inh[cap / 32] & bit))
            continue; /* the kernel allows ambient only within permitted and inheritable */
        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) < 0)
            return pyrt_fail(e, "raise ambient capability", "");
    }
    if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0)
        return pyrt_fail(e, "keep capabilities", "");
    return 0;
}

/* -- waiting for start ------------------------------------------------------------ */

static int is_exec_file(const char *path, int *eacces)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return 0;
    if (!S_ISREG(st.st_mode) || access(path, X_OK) < 0) {
        *eacces = 1;
        return 0;
    }
    return 1;
}

/* What execve would say about the program, asked before the caller is told all is
 * set (so that a missing program fails `create`, as with runc). */
static int check_program(const char *file, const char *path, struct pyrt_error *e)
{
    int eacces = 0;
    if (!*file)
        return pyrt_fail_errno(e, ENOENT, "exec", file);
    if (strchr(file, '/')) {
        if (is_exec_file(file, &eacces))
            return 0;
        return pyrt_fail_errno(e, eacces ? EACCES : ENOENT, "exec", file);
    }
    const char *p = path ? path : PYRT_DEFAULT_PATH;
    char buf[4096];
    while (pyrt_path_next(&p, file, buf, sizeof buf))
        if (is_exec_file(buf, &eacces))
            return 0;
    return pyrt_fail_errno(e, eacces ? EACCES : ENOENT, "exec (not found in the container's PATH)", file);
}

int pyrt_oci_wait(const struct pyrt_oci *o, const char *program, const char *path, struct pyrt_error *e)
{
    if (o->wait_fd >= 0) {
        if (check_program(program, path, e) < 0)
            return -1;
        if (pyrt_child_waiting(oci_errfd) < 0)
            return pyrt_fail(e, "report waiting", "");
        oci_waited = 1;
        char c;
        ssize_t n;
        do
            n = read(o->wait_fd, &c, 1);
        while (n < 0 && errno == EINTR);
        if (n != 1)
            _exit(n == 0 ? 0 : 127); /* nobody will start it */
        close(o->wait_fd);
    }
    return 0;
}

void pyrt_oci_late_error(const struct pyrt_error *e)
{
    if (!oci_waited)
        return;
    char num[24];
    const char *desc = NULL;
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
    desc = strerrordesc_np(e->err); /* a static string: no locale, no allocation */
#endif
    const char *parts[] = {"pyrt-runtime: ", e->op, " ", e->path, ": ", desc ? desc : "errno ",
                           desc ? "" : pyrt_itoa(e->err, num), "\n"};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
        if (pyrt_write_all(2, parts[i], strlen(parts[i])) < 0)
            break;
    _exit(127);
}
