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

int pyrt_ensure_in_root(int rootfd, const char *path, int as_file)
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
        pfd = pyrt_ensure_in_root(rootfd, parent[0] ? parent : "/", 0);
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
    close(pfd);
    return pyrt_open_in_root(rootfd, path, O_PATH);
}
