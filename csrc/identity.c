#include "identity.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "err.h"
#include "syscalls.h"
#include "userns.h"

int pyrt_write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

ssize_t pyrt_read_full(int fd, void *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, (char *)buf + got, len - got);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

int pyrt_raw_setgroups(size_t n, const gid_t *groups)
{
    return (int)syscall(SYS_setgroups, n, groups);
}

int pyrt_raw_setresgid(gid_t g)
{
    return (int)syscall(SYS_setresgid, g, g, g);
}

int pyrt_raw_setresuid(uid_t u)
{
    return (int)syscall(SYS_setresuid, u, u, u);
}

/* Sources are first moved above 2 so that e.g. stdout=2 / stderr=1 do not
 * clobber each other. */
int pyrt_setup_stdio(const int stdio[3], struct pyrt_error *e)
{
    int fds[3];
    for (int i = 0; i < 3; i++) {
        fds[i] = stdio[i];
        if (fds[i] >= 0 && fds[i] < 3 && fds[i] != i) {
            fds[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
            if (fds[i] < 0)
                return pyrt_fail(e, "dup", "stdio");
        }
    }
    for (int i = 0; i < 3; i++) {
        if (fds[i] < 0)
            continue;
        if (fds[i] == i) {
            if (fcntl(i, F_SETFD, 0) < 0)
                return pyrt_fail(e, "fcntl", "stdio");
        } else if (dup2(fds[i], i) < 0) {
            return pyrt_fail(e, "dup2", "stdio");
        }
    }
    return 0;
}

int pyrt_setup_identity(int set_user, uid_t uid, gid_t gid, const gid_t *groups, size_t ngroups,
                        uint64_t caps, struct pyrt_error *e)
{
    for (int cap = 0; cap < 64; cap++) {
        if (caps & (1ULL << cap))
            continue;
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
            if (errno == EINVAL) /* past the last capability this kernel knows */
                break;
            return pyrt_fail(e, "drop capability", "bounding set");
        }
    }
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        return pyrt_fail(e, "clear ambient capabilities", "");
    if (set_user) {
        /* An ordinary user's namespace that denies setgroups keeps the caller's
         * groups (userns.h): asking for none is then not an error. */
        if (pyrt_raw_setgroups(ngroups, groups) < 0 &&
            !(errno == EPERM && ngroups == 0 && pyrt_userns_setgroups_denied()))
            return pyrt_fail(e, "setgroups", "");
        if (pyrt_raw_setresgid(gid) < 0)
            return pyrt_fail(e, "setresgid", "");
        if (pyrt_raw_setresuid(uid) < 0)
            return pyrt_fail(e, "setresuid", "");
    }
    uint32_t eff[2], prm[2], inh[2];
    if (pyrt_capget(eff, prm, inh) < 0)
        return pyrt_fail(e, "capget", "");
    for (int i = 0; i < 2; i++) {
        uint32_t want = (uint32_t)(caps >> (32 * i));
        prm[i] &= want;
        eff[i] = prm[i];
        inh[i] = 0;
    }
    if (pyrt_capset(eff, prm, inh) < 0)
        return pyrt_fail(e, "capset", "");
    return 0;
}

int pyrt_load_seccomp(const void *filter, size_t len, unsigned int flags, struct pyrt_error *e)
{
    struct sock_fprog prog;
    memset(&prog, 0, sizeof prog);
    prog.len = (unsigned short)len;
    prog.filter = (struct sock_filter *)filter;
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog) < 0)
        return pyrt_fail(e, "seccomp", "load the filter");
    return 0;
}

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

char *pyrt_itoa(long long v, char *buf)
{
    char tmp[24];
    int n = 0, neg = v < 0;
    unsigned long long u = neg ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    char *p = buf;
    if (neg)
        *p++ = '-';
    while (n)
        *p++ = tmp[--n];
    *p = '\0';
    return buf;
}
