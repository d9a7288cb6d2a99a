#include "resolve.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"
#include "syscalls.h"

int pyrt_open_in_root(int rootfd, const char *path, int flags)
{
    struct pyrt_open_how how;
    memset(&how, 0, sizeof how);
    how.flags = (uint64_t)(flags | O_CLOEXEC);
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    return pyrt_openat2(rootfd, path, &how, sizeof how);
}

#define MAX_LINKS 40 /* symlinks followed while creating one path (as the kernel's) */

static int ensure(int rootfd, const char *path, int as_file, int links, int targets);

/* `name` below pfd (reached as `parent`) is a symlink whose target is missing:
 * create that target, as docker does for a mount destination through it. */
static int ensure_link_target(int rootfd, int pfd, const char *parent, const char *name, int as_file,
                              int links)
{
    char target[4096], next[4096];
    ssize_t n = readlinkat(pfd, name, target, sizeof target - 1);
    if (n < 0)
        return -1;
    target[n] = '\0';
    if (links >= MAX_LINKS) {
        errno = ELOOP;
        return -1;
    }
    size_t len;
    if (target[0] == '/') /* absolute: from the root (RESOLVE_IN_ROOT reads it so too) */
        len = pyrt_strlcpy(next, target, sizeof next);
    else {
        len = pyrt_strlcpy(next, parent[0] ? parent : "/", sizeof next);
        if (len + 1 < sizeof next)
            len += pyrt_strlcpy(next + len, "/", sizeof next - len);
        if (len < sizeof next)
            len += pyrt_strlcpy(next + len, target, sizeof next - len);
    }
    if (len >= sizeof next) {
        errno = ENAMETOOLONG;
        return -1;
    }
    int fd = ensure(rootfd, next, as_file, links + 1, 1);
    if (fd >= 0)
        close(fd);
    return fd < 0 ? -1 : 0;
}

int pyrt_ensure_in_root(int rootfd, const char *path, int as_file)
{
    return ensure(rootfd, path, as_file, 0, 0);
}

int pyrt_make_mount_target(int rootfd, const char *path, int as_file)
{
    return ensure(rootfd, path, as_file, 0, 1);
}

/* targets: also create what a dangling symlink on the way points to. */
static int ensure(int rootfd, const char *path, int as_file, int links, int targets)
{
    int fd = pyrt_open_in_root(rootfd, path, O_PATH);
    if (fd >= 0 || errno != ENOENT)
        return fd;

    /* Split into parent and last component; create the parent first. */
    char parent[4096];
    size_t len = pyrt_strlcpy(parent, path, sizeof parent);
    if (len + 1 >= sizeof parent) {
        errno = ENAMETOOLONG;
        return -1;
    }
    while (len > 1 && parent[len - 1] == '/')
        parent[--len] = '\0';
    char *slash = strrchr(parent, '/');
    const char *name = slash ? slash + 1 : parent;
    if (!*name || strcmp(name, ".") == 0 || strcmp(name, "..") == 0) {
        errno = EINVAL;
        return -1;
    }
    int pfd;
    if (slash) {
        *slash = '\0';
        pfd = ensure(rootfd, parent[0] ? parent : "/", 0, links, targets);
        *slash = '/';
    } else {
        pfd = dup(rootfd);
    }
    if (pfd < 0)
        return -1;

    /* One component below a directory already resolved inside the root: mkdirat
     * and O_CREAT|O_EXCL never follow a symlink in the last component. */
    int rc;
    if (as_file) {
        rc = openat(pfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (rc >= 0)
            close(rc);
    } else {
        rc = mkdirat(pfd, name, 0755);
    }
    if (rc < 0 && errno != EEXIST) {
        int saved = errno;
        close(pfd);
        errno = saved;
        return -1;
    }
    fd = pyrt_open_in_root(rootfd, path, O_PATH);
    if (targets && fd < 0 && errno == ENOENT && rc < 0) { /* there, yet unresolved: a dangling symlink */
        if (slash)
            *slash = '\0';
        rc = ensure_link_target(rootfd, pfd, slash ? parent : "", name, as_file, links);
        if (slash)
            *slash = '/';
        fd = rc < 0 ? -1 : pyrt_open_in_root(rootfd, path, O_PATH);
    }
    int saved = errno;
    close(pfd);
    errno = saved;
    return fd;
}
