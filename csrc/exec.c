/* exec into a running container (see exec.h).
 *
 * caller --clone--> intermediate: setns(pidfd, all but cgroup) -- its root and cwd
 *                   are now the container's; joining the pid namespace affects its
 *                   children only, so it
 *          --clone3(CLONE_PARENT [| CLONE_INTO_CGROUP])--> the final child, the
 *                   caller's child in the container's pid namespace: joins the v1
 *                   cgroups and the cgroup namespace, cwd, stdio, identity, exec.
 * The intermediate reports the final pid through a pipe and exits; the final
 * child's failures come back through a close-on-exec pipe as a typed message
 * (childmsg.h), as a spawned child's do; both end in the same tail (tail.h).
 * Nothing between clone and exec allocates or takes a lock. */
#include "exec.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "childmsg.h"
#include "err.h"
#include "fdio.h"
#include "syscalls.h"
#include "tail.h"

/* What the intermediate tells the caller. */
struct inter_report {
    int32_t ok;
    int32_t pid;
    struct pyrt_error e;
};

static const struct {
    uint64_t flag;
    const char *name;
} NAMESPACES[] = {
    {CLONE_NEWUSER, "user"}, {CLONE_NEWNS, "mnt"}, {CLONE_NEWUTS, "uts"},         {CLONE_NEWIPC, "ipc"},
    {CLONE_NEWNET, "net"},   {CLONE_NEWPID, "pid"}, {CLONE_NEWCGROUP, "cgroup"},
};

/* The namespaces in `want` where the target differs from the calling thread. */
static int namespaces_to_join(pid_t pid, uint64_t want, uint64_t *join, struct pyrt_error *e)
{
    *join = 0;
    for (size_t i = 0; i < sizeof NAMESPACES / sizeof *NAMESPACES; i++) {
        if (!(want & NAMESPACES[i].flag))
            continue;
        char mine[64], theirs[64];
        struct stat a, b;
        snprintf(mine, sizeof mine, "/proc/thread-self/ns/%s", NAMESPACES[i].name);
        snprintf(theirs, sizeof theirs, "/proc/%d/ns/%s", (int)pid, NAMESPACES[i].name);
        if (stat(mine, &a) < 0) {
            if (errno == ENOENT) /* a kind of namespace this kernel lacks */
                continue;
            return pyrt_fail(e, "stat", mine);
        }
        if (stat(theirs, &b) < 0)
            return pyrt_fail(e, errno == ENOENT ? "container init (exited?)" : "stat", theirs);
        if (a.st_dev != b.st_dev || a.st_ino != b.st_ino)
            *join |= NAMESPACES[i].flag;
    }
    return 0;
}

/* Field 22 of /proc/PID/stat: the start time, in clock ticks after boot. */
static int start_time_of(pid_t pid, unsigned long long *t, struct pyrt_error *e)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return pyrt_fail(e, errno == ENOENT ? "container init (exited?)" : "open", path);
    ssize_t n = pyrt_read_full(fd, buf, sizeof buf - 1);
    int err = errno;
    close(fd);
    if (n < 0)
        return pyrt_fail_errno(e, err, "read", path);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    for (int field = 2; p && field < 22; field++) { /* p is at the end of field `field` */
        p = strchr(p + 1, ' ');
    }
    if (!p)
        return pyrt_fail_errno(e, EINVAL, "parse", path);
    *t = strtoull(p + 1, NULL, 10);
    return 0;
}

/* The pid behind a pidfd (the "Pid:" line of its fdinfo). */
static pid_t pid_of_pidfd(int pidfd, struct pyrt_error *e)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", pidfd);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return pyrt_fail(e, "open", path);
    ssize_t n = pyrt_read_full(fd, buf, sizeof buf - 1);
    int err = errno;
    close(fd);
    if (n < 0)
        return pyrt_fail_errno(e, err, "read", path);
    buf[n] = '\0';
    char *p = strstr(buf, "\nPid:");
    long pid = p ? strtol(p + 5, NULL, 10) : 0;
    if (pid <= 0) /* -1: the process has exited */
        return pyrt_fail_errno(e, pid < 0 ? ESRCH : EINVAL, "container init (exited?)", "pidfd");
    return (pid_t)pid;
}

/* The final child: the container's namespaces are joined but cgroup; the rest. */
static int final_child(const struct pyrt_exec_spec *s, int pidfd, uint64_t join, int errfd,
                       struct pyrt_error *e)
{
    if (pyrt_child_begin(e) < 0)
        return -1;
    for (size_t i = 0; i < s->ncgroup_procs; i++)
        if (write(s->cgroup_procs_fds[i], "0", 1) < 0)
            return pyrt_fail(e, "join cgroup", "cgroup.procs");
    /* After the cgroups: the cgroup namespace's root is the container's cgroup. */
    if ((join & CLONE_NEWCGROUP) && setns(pidfd, CLONE_NEWCGROUP) < 0)
        return pyrt_fail(e, "setns", "cgroup namespace");
    if (pyrt_set_rlimits(s->rlimits, s->nrlimits, e) < 0)
        return -1;
    struct pyrt_tail t = {
        .argv = s->argv, .envp = s->envp, .path = s->path, .cwd = s->cwd, .stdio = s->stdio,
        .console_fd = -1, .ctty = (s->setup & PYRT_SETUP_SETSID) != 0, .set_user = s->set_user,
        .uid = s->uid, .gid = s->gid, .groups = s->groups, .ngroups = s->ngroups, .caps = s->caps,
        .no_new_privs = (s->setup & PYRT_SETUP_NO_NEW_PRIVS) != 0, .umask = s->umask,
        .seccomp = s->seccomp, .seccomp_len = s->seccomp_len, .seccomp_flags = s->seccomp_flags,
        .errfd = errfd, .init_fd = -1, .oci = NULL,
    };
    return pyrt_tail(&t, e);
}

/* The intermediate: returns the final child's pid, or -1 with e filled. */
static pid_t intermediate(const struct pyrt_exec_spec *s, int pidfd, uint64_t join, int errfd,
                          const char *target, struct pyrt_error *e)
{
    /* From here until the final child's execve, nothing in the container may open
     * these processes' /proc/PID/exe (the host's interpreter), fds or memory. */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) {
        pyrt_fail(e, "prctl", "PR_SET_DUMPABLE");
        return -1;
    }
    uint64_t now = join & ~(uint64_t)CLONE_NEWCGROUP;
    if (now && setns(pidfd, (int)now) < 0) {
        pyrt_fail(e, "setns", target);
        return -1;
    }
    struct pyrt_clone_args ca;
    memset(&ca, 0, sizeof ca);
    ca.flags = CLONE_PARENT; /* exit_signal must be 0: the intermediate's (SIGCHLD) is used */
    if (s->cgroup_fd >= 0) {
        ca.flags |= CLONE_INTO_CGROUP;
        ca.cgroup = (uint64_t)s->cgroup_fd;
    }
    pid_t pid = (pid_t)pyrt_clone3(&ca, sizeof ca);
    if (pid < 0) {
        pyrt_fail(e, "clone", s->cgroup_fd >= 0 ? "into the container's cgroup" : target);
        return -1;
    }
    if (pid == 0) {
        struct pyrt_error ce;
        memset(&ce, 0, sizeof ce);
        final_child(s, pidfd, join, errfd, &ce);
        pyrt_child_failed(errfd, &ce);
        _exit(127);
    }
    return pid;
}

static void reap(pid_t pid)
{
    while (waitpid(pid, NULL, __WALL) < 0 && errno == EINTR)
        ;
}

int pyrt_exec(const struct pyrt_exec_spec *s, pid_t *pidp, int *pidfdp, struct pyrt_error *e)
{
    memset(e, 0, sizeof *e);
    if (!s->argv || !s->argv[0] || !s->envp)
        return pyrt_fail_errno(e, EINVAL, "exec", "no command");
    if (s->pid <= 0 && s->pidfd < 0)
        return pyrt_fail_errno(e, EINVAL, "exec", "no container process");

    pid_t target_pid = s->pid > 0 ? s->pid : pid_of_pidfd(s->pidfd, e);
    if (target_pid < 0)
        return -1;
    char target[64];
    snprintf(target, sizeof target, "container pid %d", (int)target_pid);
    int own_pidfd = -1, target_fd = s->pidfd;
    int rp[2] = {-1, -1}, ep[2] = {-1, -1};
    int rc = -1;
    if (target_fd < 0) {
        if ((own_pidfd = target_fd = pyrt_pidfd_open(target_pid, 0)) < 0)
            return pyrt_fail(e, "pidfd_open", target);
    }
    /* Once the pidfd is open, a matching start time proves it is the container's. */
    if (s->start_time) {
        unsigned long long t = 0;
        if (start_time_of(target_pid, &t, e) < 0)
            goto out;
        if (t != s->start_time) {
            pyrt_fail_errno(e, ESRCH, "container init (pid reused)", target);
            goto out;
        }
    }
    uint64_t join = 0;
    if (namespaces_to_join(target_pid, s->namespaces, &join, e) < 0)
        goto out;
    /* The process behind /proc/PID was the pidfd's unless it exited meanwhile:
     * then setns through the pidfd fails (ESRCH). */

    if (pipe2(rp, O_CLOEXEC) < 0 || pipe2(ep, O_CLOEXEC) < 0) {
        pyrt_fail(e, "pipe", "");
        goto out;
    }

    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    struct pyrt_clone_args ca;
    memset(&ca, 0, sizeof ca);
    ca.flags = CLONE_CLEAR_SIGHAND;
    ca.exit_signal = SIGCHLD;
    pid_t inter = (pid_t)pyrt_clone3(&ca, sizeof ca);
    if (inter == 0) {
        struct inter_report r;
        memset(&r, 0, sizeof r);
        close(rp[0]);
        close(ep[0]);
        pid_t pid = intermediate(s, target_fd, join, ep[1], target, &r.e);
        r.ok = pid > 0;
        r.pid = pid > 0 ? pid : 0;
        pyrt_write_all(rp[1], &r, sizeof r);
        _exit(0);
    }
    int clone_errno = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    close(rp[1]);
    close(ep[1]);
    rp[1] = ep[1] = -1;
    if (inter < 0) {
        pyrt_fail_errno(e, clone_errno, "clone", "exec");
        goto out;
    }

    struct inter_report r;
    ssize_t got = pyrt_read_full(rp[0], &r, sizeof r);
    int read_errno = errno;
    reap(inter);
    if (got != (ssize_t)sizeof r) {
        pyrt_fail_errno(e, got < 0 ? read_errno : EPIPE, "exec", "the intermediate process died");
        goto out;
    }
    if (!r.ok) {
        *e = r.e;
        e->op[sizeof e->op - 1] = '\0';
        e->path[sizeof e->path - 1] = '\0';
        goto out;
    }
    /* Our child (CLONE_PARENT), not yet waited for: its pid cannot be reused. */
    int pidfd = pyrt_pidfd_open(r.pid, 0);
    if (pidfd < 0) {
        pyrt_fail(e, "pidfd_open", "exec'd process");
        kill(r.pid, SIGKILL);
        reap(r.pid);
        goto out;
    }
    /* EOF: it exec'd. A message (childmsg.h): it failed and is exiting. */
    struct pyrt_child_msg m;
    got = pyrt_read_full(ep[0], &m, sizeof m);
    if (got == (ssize_t)sizeof m) {
        pyrt_child_msg_error(&m, e);
    } else if (got != 0) {
        pyrt_fail_errno(e, got < 0 ? errno : EPIPE, "read child status", "exec");
    } else {
        *pidp = r.pid;
        *pidfdp = pidfd;
        rc = 0;
    }
    if (rc < 0) {
        if (got != (ssize_t)sizeof m)
            kill(r.pid, SIGKILL);
        reap(r.pid);
        close(pidfd);
    }

out:
    for (int i = 0; i < 2; i++) {
        if (rp[i] >= 0)
            close(rp[i]);
        if (ep[i] >= 0)
            close(ep[i]);
    }
    if (own_pidfd >= 0)
        close(own_pidfd);
    return rc;
}
