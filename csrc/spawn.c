/* clone -> set up the container -> exec, with no Python (and no allocation) in the
 * child. Failures in the child come back to the parent through a pipe as a
 * struct pyrt_error. */
#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "err.h"
#include "mounts.h"
#include "syscalls.h"

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

static int write_all(int fd, const void *buf, size_t len)
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

/* glibc's setresuid/setresgid/setgroups broadcast the change to every thread of
 * the process and wait for them: in a child cloned from a threaded process those
 * threads do not exist and the wait never ends. The raw calls act on this thread,
 * which is the whole child. */
static int raw_setgroups(size_t n, const gid_t *groups)
{
    return (int)syscall(SYS_setgroups, n, groups);
}

static int raw_setresgid(gid_t g)
{
    return (int)syscall(SYS_setresgid, g, g, g);
}

static int raw_setresuid(uid_t u)
{
    return (int)syscall(SYS_setresuid, u, u, u);
}

static int loopback_up(struct pyrt_error *e)
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return pyrt_fail(e, "socket", "lo");
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    pyrt_strlcpy(ifr.ifr_name, "lo", sizeof ifr.ifr_name);
    int rc = ioctl(s, SIOCGIFFLAGS, &ifr);
    if (rc == 0) {
        ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
        rc = ioctl(s, SIOCSIFFLAGS, &ifr);
    }
    int err = errno;
    close(s);
    return rc < 0 ? pyrt_fail_errno(e, err, "bring up", "lo") : 0;
}

/* Put the requested fds on 0, 1, 2. Sources are first moved above 2 so that
 * e.g. stdout=2 / stderr=1 do not clobber each other. */
static int setup_stdio(const struct pyrt_spawn_spec *s, struct pyrt_error *e)
{
    int fds[3];
    for (int i = 0; i < 3; i++) {
        fds[i] = s->stdio[i];
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

/* Capabilities: the bounding set reduced to s->caps, ambient cleared, then the
 * user switched (which clears permitted/effective for a non-root uid). */
static int setup_identity(const struct pyrt_spawn_spec *s, struct pyrt_error *e)
{
    for (int cap = 0; cap < 64; cap++) {
        if (s->caps & (1ULL << cap))
            continue;
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
            if (errno == EINVAL) /* past the last capability this kernel knows */
                break;
            return pyrt_fail(e, "drop capability", "bounding set");
        }
    }
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        return pyrt_fail(e, "clear ambient capabilities", "");
    if (s->set_user) {
        if (raw_setgroups(s->ngroups, s->groups) < 0)
            return pyrt_fail(e, "setgroups", "");
        if (raw_setresgid(s->gid) < 0)
            return pyrt_fail(e, "setresgid", "");
        if (raw_setresuid(s->uid) < 0)
            return pyrt_fail(e, "setresuid", "");
    }
    uint32_t eff[2], prm[2], inh[2];
    if (pyrt_capget(eff, prm, inh) < 0)
        return pyrt_fail(e, "capget", "");
    for (int i = 0; i < 2; i++) {
        uint32_t want = (uint32_t)(s->caps >> (32 * i));
        prm[i] &= want;
        eff[i] = prm[i];
        inh[i] = 0;
    }
    if (pyrt_capset(eff, prm, inh) < 0)
        return pyrt_fail(e, "capset", "");
    return 0;
}

/* execvp, but with the container's PATH rather than the caller's environment. */
static void exec_program(const struct pyrt_spawn_spec *s, struct pyrt_error *e)
{
    const char *file = s->argv[0];
    char *const *argv = (char *const *)s->argv;
    char *const *envp = (char *const *)s->envp;
    if (!*file) {
        pyrt_fail_errno(e, ENOENT, "exec", file);
        return;
    }
    if (strchr(file, '/')) {
        execve(file, argv, envp);
        pyrt_fail(e, "exec", file);
        return;
    }
    const char *p = s->path ? s->path : DEFAULT_PATH;
    size_t flen = strlen(file);
    int seen_eacces = 0;
    char buf[4096];
    while (1) {
        const char *end = strchr(p, ':');
        size_t dlen = end ? (size_t)(end - p) : strlen(p);
        if (dlen + flen + 2 <= sizeof buf) {
            size_t n = 0;
            if (dlen == 0)
                buf[n++] = '.';
            memcpy(buf + n, p, dlen);
            n += dlen;
            buf[n++] = '/';
            memcpy(buf + n, file, flen + 1);
            execve(buf, argv, envp);
            if (errno == EACCES)
                seen_eacces = 1;
            else if (errno != ENOENT && errno != ENOTDIR && errno != ESTALE && errno != ENODEV) {
                pyrt_fail(e, "exec", buf);
                return;
            }
        }
        if (!end)
            break;
        p = end + 1;
    }
    pyrt_fail_errno(e, seen_eacces ? EACCES : ENOENT, "exec", file);
}

static int child_setup(const struct pyrt_spawn_spec *s, int syncfd, struct pyrt_error *e)
{
    /* Python ignores SIGPIPE and SIGXFSZ; the program gets the defaults (handlers
     * were already reset by CLONE_CLEAR_SIGHAND). */
    signal(SIGPIPE, SIG_DFL);
    signal(SIGXFSZ, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    if (sigprocmask(SIG_SETMASK, &none, NULL) < 0)
        return pyrt_fail(e, "sigprocmask", "");

    if (syncfd >= 0) { /* the parent writes id maps / joins cgroups first */
        char c;
        ssize_t n;
        do
            n = read(syncfd, &c, 1);
        while (n < 0 && errno == EINTR);
        if (n != 1)
            return pyrt_fail_errno(e, n < 0 ? errno : EPIPE, "wait for parent", "");
        close(syncfd);
    }
    /* In a new user namespace the child still has the caller's ids, which are not
     * mapped there (files it creates would fail with EOVERFLOW): become the
     * namespace's root, keeping its capabilities. */
    if (s->gid_map && (raw_setgroups(0, NULL) < 0 || raw_setresgid(0) < 0))
        return pyrt_fail(e, "setresgid", "0 in the user namespace");
    if (s->uid_map && raw_setresuid(0) < 0)
        return pyrt_fail(e, "setresuid", "0 in the user namespace");
    umask(0);
    if ((s->setup & PYRT_SETUP_SETSID) && setsid() < 0)
        return pyrt_fail(e, "setsid", "");
    if ((s->rootfs || s->nlower) && pyrt_setup_rootfs(s, e) < 0)
        return -1;
    if (s->hostname && sethostname(s->hostname, strlen(s->hostname)) < 0)
        return pyrt_fail(e, "sethostname", s->hostname);
    if ((s->setup & PYRT_SETUP_LOOPBACK) && loopback_up(e) < 0)
        return -1;
    for (size_t i = 0; i < s->nrlimits; i++)
        if (setrlimit(s->rlimits[i].resource, &s->rlimits[i].limit) < 0)
            return pyrt_fail(e, "setrlimit", "");
    if ((s->setup & PYRT_SETUP_NO_ASLR) && personality(ADDR_NO_RANDOMIZE) < 0)
        return pyrt_fail(e, "personality", "ADDR_NO_RANDOMIZE");
    if (s->cwd && chdir(s->cwd) < 0)
        return pyrt_fail(e, "chdir", s->cwd);
    if (setup_stdio(s, e) < 0)
        return -1;
    if (setup_identity(s, e) < 0)
        return -1;
    if ((s->setup & PYRT_SETUP_NO_NEW_PRIVS) && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return pyrt_fail(e, "no_new_privs", "");
    umask(s->umask >= 0 ? (mode_t)s->umask : 022);
    /* Only stdio survives exec; the error pipe closes on exec, telling the parent. */
    if (pyrt_close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
        return pyrt_fail(e, "close_range", "");
    exec_program(s, e);
    return -1;
}

static int write_file(const char *path, const char *data, struct pyrt_error *e)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return pyrt_fail(e, "open", path);
    int rc = write_all(fd, data, strlen(data));
    int err = errno;
    close(fd);
    return rc < 0 ? pyrt_fail_errno(e, err, "write", path) : 0;
}

/* Parent side, between clone and letting the child go on. */
static int parent_prepare(const struct pyrt_spawn_spec *s, pid_t pid, struct pyrt_error *e)
{
    char path[64];
    if (s->uid_map) {
        snprintf(path, sizeof path, "/proc/%d/uid_map", (int)pid);
        if (write_file(path, s->uid_map, e) < 0)
            return -1;
    }
    if (s->gid_map) {
        snprintf(path, sizeof path, "/proc/%d/setgroups", (int)pid);
        if (write_file(path, "allow", e) < 0 && e->err != ENOENT)
            return -1;
        snprintf(path, sizeof path, "/proc/%d/gid_map", (int)pid);
        if (write_file(path, s->gid_map, e) < 0)
            return -1;
    }
    char num[24];
    int n = snprintf(num, sizeof num, "%d", (int)pid);
    for (size_t i = 0; i < s->ncgroup_procs; i++)
        if (write(s->cgroup_procs_fds[i], num, (size_t)n) < 0)
            return pyrt_fail(e, "join cgroup", "cgroup.procs");
    return 0;
}

static pid_t do_clone(const struct pyrt_spawn_spec *s, int *pidfd)
{
    struct pyrt_clone_args ca;
    memset(&ca, 0, sizeof ca);
    ca.flags = s->clone_flags | CLONE_PIDFD | CLONE_CLEAR_SIGHAND;
    ca.pidfd = (uint64_t)(uintptr_t)pidfd;
    ca.exit_signal = SIGCHLD;
    if (s->cgroup_fd >= 0) {
        ca.flags |= CLONE_INTO_CGROUP;
        ca.cgroup = (uint64_t)s->cgroup_fd;
    }
    pid_t pid = (pid_t)pyrt_clone3(&ca, sizeof ca);
    if (pid < 0 && errno == ENOSYS && s->cgroup_fd < 0) /* kernel before 5.3 */
        pid = (pid_t)syscall(SYS_clone, (unsigned long)(s->clone_flags | CLONE_PIDFD | SIGCHLD), NULL, pidfd,
                             NULL, 0);
    return pid;
}

static void reap(pid_t pid)
{
    while (waitpid(pid, NULL, __WALL) < 0 && errno == EINTR)
        ;
}

int pyrt_spawn(const struct pyrt_spawn_spec *s, pid_t *pidp, int *pidfdp, struct pyrt_error *e)
{
    memset(e, 0, sizeof *e);
    int errpipe[2], syncpipe[2] = {-1, -1};
    int need_sync = s->uid_map || s->gid_map || s->ncgroup_procs;
    if (pipe2(errpipe, O_CLOEXEC) < 0)
        return pyrt_fail(e, "pipe", "");
    if (need_sync && pipe2(syncpipe, O_CLOEXEC) < 0) {
        pyrt_fail(e, "pipe", "");
        close(errpipe[0]);
        close(errpipe[1]);
        return -1;
    }

    /* No signal handler of the caller may run in the child before its handlers
     * are reset; block everything around clone. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int pidfd = -1;
    pid_t pid = do_clone(s, &pidfd);
    if (pid == 0) {
        close(errpipe[0]);
        if (syncpipe[1] >= 0)
            close(syncpipe[1]);
        struct pyrt_error ce;
        memset(&ce, 0, sizeof ce);
        child_setup(s, syncpipe[0], &ce);
        write_all(errpipe[1], &ce, sizeof ce);
        _exit(127);
    }
    int clone_errno = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    close(errpipe[1]);
    if (syncpipe[0] >= 0)
        close(syncpipe[0]);
    if (pid < 0) {
        pyrt_fail_errno(e, clone_errno, "clone", "");
        close(errpipe[0]);
        if (syncpipe[1] >= 0)
            close(syncpipe[1]);
        return -1;
    }

    int rc = 0;
    if (need_sync) {
        if (parent_prepare(s, pid, e) < 0) {
            pyrt_pidfd_send_signal(pidfd, SIGKILL, NULL, 0);
            rc = -1;
        } else if (write_all(syncpipe[1], "g", 1) < 0) {
            rc = pyrt_fail(e, "start child", "");
        }
        close(syncpipe[1]);
    }

    /* EOF: the child exec'd. A full record: it failed and is exiting. */
    if (rc == 0) {
        struct pyrt_error ce;
        size_t got = 0;
        while (got < sizeof ce) {
            ssize_t n = read(errpipe[0], (char *)&ce + got, sizeof ce - got);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                break;
            got += (size_t)n;
        }
        if (got == sizeof ce) {
            *e = ce;
            e->op[sizeof e->op - 1] = '\0';
            e->path[sizeof e->path - 1] = '\0';
            rc = -1;
        } else if (got != 0) {
            rc = pyrt_fail_errno(e, EPIPE, "read child status", "");
        }
    }
    close(errpipe[0]);
    if (rc < 0) {
        reap(pid);
        close(pidfd);
        return -1;
    }
    *pidp = pid;
    *pidfdp = pidfd;
    return 0;
}

int pyrt_wait(int pidfd, int timeout_ms, int *status, struct rusage *usage)
{
    if (timeout_ms >= 0) {
        struct pollfd p = {pidfd, POLLIN, 0};
        int n = poll(&p, 1, timeout_ms);
        if (n < 0)
            return -1;
        if (n == 0)
            return 0;
    }
    siginfo_t info;
    memset(&info, 0, sizeof info);
    memset(usage, 0, sizeof *usage);
    /* The raw waitid also returns the child's rusage. */
    if (syscall(SYS_waitid, P_PIDFD, pidfd, &info, WEXITED | (timeout_ms >= 0 ? WNOHANG : 0), usage) < 0)
        return -1;
    if (info.si_pid == 0)
        return 0;
    switch (info.si_code) {
    case CLD_EXITED:
        *status = (info.si_status & 0xff) << 8;
        break;
    case CLD_DUMPED:
        *status = (info.si_status & 0x7f) | 0x80;
        break;
    default:
        *status = info.si_status & 0x7f;
        break;
    }
    return 1;
}
