/* PATH lookup and exec (see execpath.h). */
#include "execpath.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "err.h"

int pyrt_path_next(const char **p, const char *file, char *buf, size_t cap)
{
    size_t flen = strlen(file);
    while (*p) {
        const char *dir = *p;
        const char *end = strchr(dir, ':');
        size_t dlen = end ? (size_t)(end - dir) : strlen(dir);
        *p = end ? end + 1 : NULL;
        if (dlen + flen + 3 > cap)
            continue; /* too long to be a real candidate */
        size_t n = 0;
        if (dlen == 0)
            buf[n++] = '.'; /* an empty PATH entry is the working directory */
        memcpy(buf + n, dir, dlen);
        n += dlen;
        buf[n++] = '/';
        memcpy(buf + n, file, flen + 1);
        return 1;
    }
    return 0;
}

void pyrt_exec_path(const char *const *argv_, const char *const *envp_, const char *path,
                    struct pyrt_error *e)
{
    const char *file = argv_[0];
    char *const *argv = (char *const *)argv_;
    char *const *envp = (char *const *)envp_;
    if (!*file) {
        pyrt_fail_errno(e, ENOENT, "exec", file);
        return;
    }
    if (strchr(file, '/')) {
        execve(file, argv, envp);
        pyrt_fail(e, "exec", file);
        return;
    }
    const char *p = path ? path : PYRT_DEFAULT_PATH;
    int seen_eacces = 0;
    char buf[4096];
    while (pyrt_path_next(&p, file, buf, sizeof buf)) {
        execve(buf, argv, envp);
        if (errno == EACCES)
            seen_eacces = 1;
        else if (errno != ENOENT && errno != ENOTDIR && errno != ESTALE && errno != ENODEV) {
            pyrt_fail(e, "exec", buf);
            return;
        }
    }
    pyrt_fail_errno(e, seen_eacces ? EACCES : ENOENT, "exec", file);
}
