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

#include "childmsg.h"
#include "console.h"
#include "err.h"
#include "fdio.h"
#include "fdpass.h"
#include "identity.h"
#include "mounts.h"
#include "oci.h"
#include "park.h"
#include "syscalls.h"
#include "tail.h"
#include "userns.h"

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

static int child_exec(const struct pyrt_spawn_spec *s, int errfd, int init_fd, struct pyrt_error *e);
static int park_then_exec(const struct pyrt_spawn_spec *s, int errfd, int parkfd, int init_fd,
                          struct pyrt_error *e);

/* parkfd >= 0: park before the command's part (cwd, stdio, identity, exec) and
 * take argv, env, cwd and stdio from the message (park.h). */
static int child_setup(const struct pyrt_spawn_spec *s, int syncfd, int errfd, int parkfd,
                       struct pyrt_error *e)
{
    if (pyrt_child_begin(e) < 0)
        return -1;
    if (syncfd >= 0) { /* the parent writes id maps / joins cgroups first */
        char c;
        ssize_t n;
        do
            n = read(syncfd, &c, 1);
        while (n < 0 && errno == EINTR);
        if (n != 1)
            return pyrt_fail_errno(e, n < 0 ? errno : EPIPE, "wait for parent", "");
        close(syncfd);
        /* The cgroup namespace is made only now that the parent has moved us into
         * the v1 cgroups, so that they are its root (see delayed_flags). */
        if ((s->clone_flags & CLONE_NEWCGROUP) && s->ncgroup_procs && unshare(CLONE_NEWCGROUP) < 0)
            return pyrt_fail(e, "unshare", "cgroup namespace");
    }
    /* Until execve no process of the container may open this one's /proc/PID/exe
     * (the host's interpreter), fds or memory (after the parent wrote the id maps,
     * which a non-dumpable process's /proc files would refuse a rootless parent). */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
        return pyrt_fail(e, "prctl", "PR_SET_DUMPABLE");
    int init_fd = -1; /* a sealed copy of the init, made from the host file before
                       * pivot_root and with the caller's ids */
    if (s->init) {
        if (!s->init_path)
            return pyrt_fail_errno(e, EINVAL, "init", "no init program given");
        init_fd = pyrt_sealed_copy(s->init_path, e);
        if (init_fd < 0)
            return -1;
    }
    if (s->netns_fd >= 0 && setns(s->netns_fd, CLONE_NEWNET) < 0)
        return pyrt_fail(e, "join", "network namespace");
    if (s->oci && pyrt_oci_begin(s->oci, errfd, e) < 0) /* namespaces joined by path */
        return -1;
    /* In a new user namespace the child still has the caller's ids, which are not
     * mapped there (files it creates would fail with EOVERFLOW): become the
     * namespace's root, keeping its capabilities. */
    if (s->gid_map && ((!s->setgroups_deny && pyrt_raw_setgroups(0, NULL) < 0) || pyrt_raw_setresgid(0) < 0))
        return pyrt_fail(e, "setresgid", "0 in the user namespace");
    if (s->uid_map && pyrt_raw_setresuid(0) < 0)
        return pyrt_fail(e, "setresuid", "0 in the user namespace");
    umask(0);
    /* the hostname before the root: an OCI container's create hooks, which run
     * before pivot_root (oci.h), see it already */
    if (s->hostname && sethostname(s->hostname, strlen(s->hostname)) < 0)
        return pyrt_fail(e, "sethostname", s->hostname);
    if ((s->rootfs || s->nlower) && pyrt_setup_rootfs(s, e) < 0)
        return -1;
    if (s->oci && pyrt_oci_hooks_stop(s->oci, e) < 0) /* (done already before pivot_root) */
        return -1;
    if ((s->setup & PYRT_SETUP_LOOPBACK) && loopback_up(e) < 0)
        return -1;
    if (pyrt_set_rlimits(s->rlimits, s->nrlimits, e) < 0)
        return -1;
    if ((s->setup & PYRT_SETUP_NO_ASLR) && personality(ADDR_NO_RANDOMIZE) < 0)
        return pyrt_fail(e, "personality", "ADDR_NO_RANDOMIZE");
    if (parkfd >= 0)
        return park_then_exec(s, errfd, parkfd, init_fd, e);
    return child_exec(s, errfd, init_fd, e);
}

/* A parked child: spawn-time stdio on 0-2, every other fd of the caller's closed
 * (a parked child must not hold copies of other children's pipes and sockets,
 * which would keep their parent from seeing EOF), then the wait for the command,
 * which replaces argv, env, PATH, cwd and stdio. Apart from child_setup, so that
 * only this path has the inbox on its stack. */
static __attribute__((noinline)) int park_then_exec(const struct pyrt_spawn_spec *s, int errfd, int parkfd,
                                                    int init_fd, struct pyrt_error *e)
{
    if (pyrt_setup_stdio(s->stdio, e) < 0)
        return -1;
    if (pyrt_close_fds_except(errfd, parkfd, init_fd, -1, e) < 0)
        return -1;
    struct pyrt_park_inbox in;
    struct pyrt_unpark_cmd cmd;
    if (pyrt_park_wait(errfd, parkfd, &in, &cmd, e) < 0)
        return -1;
    struct pyrt_spawn_spec run = *s;
    run.argv = cmd.argv;
    run.envp = cmd.envp;
    if (cmd.path)
        run.path = cmd.path;
    if (cmd.cwd)
        run.cwd = cmd.cwd;
    for (int i = 0; i < 3; i++)
        run.stdio[i] = cmd.stdio[i];
    return child_exec(&run, errfd, init_fd, e);
}

static int child_exec(const struct pyrt_spawn_spec *s, int errfd, int init_fd, struct pyrt_error *e)
{
    struct pyrt_tail t = {
        .argv = s->argv, .envp = s->envp, .path = s->path, .cwd = s->cwd,
        .host_root = !s->rootfs && !s->nlower && !(s->oci && s->oci->chroot_path), .stdio = s->stdio, .console_fd = s->console_fd, .ctty = 0, .set_user = s->set_user, .uid = s->uid, .gid = s->gid,
        .groups = s->groups, .ngroups = s->ngroups, .caps = s->caps,
        .no_new_privs = (s->setup & PYRT_SETUP_NO_NEW_PRIVS) != 0, .umask = s->umask,
        .seccomp = s->seccomp, .seccomp_len = s->seccomp_len, .seccomp_flags = s->seccomp_flags,
        .errfd = errfd, .init_fd = init_fd, .oci = s->oci,
    };
    return pyrt_tail(&t, e);
}

/* Parent side, between clone and letting the child go on. */
static int parent_prepare(const struct pyrt_spawn_spec *s, pid_t pid, struct pyrt_error *e)
{
    if ((s->uid_map || s->gid_map) && s->userns_fd < 0 && !pyrt_userns_entered() &&
        pyrt_userns_write_maps(s, pid, e) < 0)
        return -1;
    char num[24];
    int n = snprintf(num, sizeof num, "%d", (int)pid);
    for (size_t i = 0; i < s->ncgroup_procs; i++)
        if (write(s->cgroup_procs_fds[i], num, (size_t)n) < 0)
            return pyrt_fail(e, "join cgroup", "cgroup.procs");
    return 0;
}

/* Namespaces the child makes itself after the parent's part, rather than at clone. */
static uint64_t delayed_flags(const struct pyrt_spawn_spec *s)
{
    return s->ncgroup_procs ? CLONE_NEWCGROUP : 0;
}

/* The child, from clone to exec (or to its failure report). */
struct child_ctx {
    const struct pyrt_spawn_spec *s;
    int errpipe[2], syncpipe[2], parksock[2];
};

static void child_main(void *arg)
{
    struct child_ctx *c = arg;
    close(c->errpipe[0]);
    if (c->syncpipe[1] >= 0)
        close(c->syncpipe[1]);
    if (c->parksock[0] >= 0)
        close(c->parksock[0]);
    struct pyrt_error ce;
    memset(&ce, 0, sizeof ce);
    child_setup(c->s, c->syncpipe[0], c->errpipe[1], c->parksock[1], &ce);
    pyrt_child_failed(c->errpipe[1], &ce);
    _exit(127);
}

static pid_t do_clone(const struct pyrt_spawn_spec *s, int *pidfd, struct child_ctx *c, const char **op)
{
    struct pyrt_clone_args ca;
    memset(&ca, 0, sizeof ca);
    ca.flags = (s->clone_flags & ~delayed_flags(s)) | CLONE_PIDFD | CLONE_CLEAR_SIGHAND;
    ca.pidfd = (uint64_t)(uintptr_t)pidfd;
    /* CLONE_PARENT (zygote.c) takes the caller's own exit signal */
    ca.exit_signal = (s->clone_flags & CLONE_PARENT) ? 0 : SIGCHLD;
    if (s->cgroup_fd >= 0) {
        ca.flags |= CLONE_INTO_CGROUP;
        ca.cgroup = (uint64_t)s->cgroup_fd;
    }
    if (pyrt_userns_entered()) /* a helper already in the user namespace (pyrt-zygote) */
        ca.flags &= ~(uint64_t)CLONE_NEWUSER;
    else if (s->userns_fd >= 0) { /* rootless, into the process's shared user namespace */
        ca.flags &= ~(uint64_t)CLONE_NEWUSER;
        return pyrt_userns_clone(s->userns_fd, (s->setup & PYRT_SETUP_JOIN_MNT) != 0, &ca, child_main, c, op);
    }
    pid_t pid = (pid_t)pyrt_clone3(&ca, sizeof ca);
    if (pid < 0 && errno == ENOSYS && s->cgroup_fd < 0) /* kernel before 5.3 */
        pid = (pid_t)syscall(SYS_clone, (unsigned long)((s->clone_flags & ~delayed_flags(s)) | CLONE_PIDFD | SIGCHLD),
                             NULL, pidfd, NULL, 0);
    return pid;
}

static void reap(pid_t pid)
{
    while (waitpid(pid, NULL, __WALL) < 0 && errno == EINTR)
        ;
}

/* One message of a child's error pipe (childmsg.h): the bytes read (0: EOF). */
static size_t read_msg(int fd, struct pyrt_child_msg *m)
{
    size_t got = 0;
    while (got < sizeof *m) {
        ssize_t n = read(fd, (char *)m + got, sizeof *m - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    return got;
}

/* park != NULL: the child parks before exec (park.h); park is filled once it has.
 * msgfd != NULL: an OCI child may stop for the create hooks (oci.h); *msgfd is
 * then its message pipe, else -1. */
static int spawn_child(const struct pyrt_spawn_spec *s, struct pyrt_parked *park, pid_t *pidp, int *pidfdp,
                       int *msgfd, struct pyrt_error *e)
{
    if (msgfd)
        *msgfd = -1;
    memset(e, 0, sizeof *e);
    int errpipe[2], syncpipe[2] = {-1, -1}, parksock[2] = {-1, -1};
    int need_sync = ((s->uid_map || s->gid_map) && s->userns_fd < 0 && !pyrt_userns_entered()) || s->ncgroup_procs
                    || s->reaper_fd >= 0;
    if (pipe2(errpipe, O_CLOEXEC) < 0)
        return pyrt_fail(e, "pipe", "");
    if ((need_sync && pipe2(syncpipe, O_CLOEXEC) < 0) ||
        (park && socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, parksock) < 0)) {
        pyrt_fail(e, park ? "socketpair" : "pipe", "");
        close(errpipe[0]);
        close(errpipe[1]);
        if (syncpipe[0] >= 0) {
            close(syncpipe[0]);
            close(syncpipe[1]);
        }
        return -1;
    }

    /* No signal handler of the caller may run in the child before its handlers
     * are reset; block everything around clone. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int pidfd = -1;
    struct child_ctx ctx = {s, {errpipe[0], errpipe[1]}, {syncpipe[0], syncpipe[1]}, {parksock[0], parksock[1]}};
    const char *clone_op = "clone";
    pid_t pid = do_clone(s, &pidfd, &ctx, &clone_op);
    if (pid == 0)
        child_main(&ctx);
    int clone_errno = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    close(errpipe[1]);
    if (syncpipe[0] >= 0)
        close(syncpipe[0]);
    if (parksock[1] >= 0)
        close(parksock[1]);
    if (pid < 0) {
        pyrt_fail_errno(e, clone_errno, clone_op,
                        s->userns_fd < 0 ? ""
                        : (s->setup & PYRT_SETUP_JOIN_MNT) ? "the user and mount namespaces to clone from"
                                                           : "the containers' user namespace");
        close(errpipe[0]);
        if (syncpipe[1] >= 0)
            close(syncpipe[1]);
        if (parksock[0] >= 0)
            close(parksock[0]);
        return -1;
    }

    int rc = 0;
    if (need_sync) {
        if (parent_prepare(s, pid, e) < 0) {
            pyrt_pidfd_send_signal(pidfd, SIGKILL, NULL, 0);
            rc = -1;
        } else if (s->reaper_fd >= 0 && pyrt_send_fds(s->reaper_fd, "p", 1, &pidfd, 1) < 0) {
            rc = pyrt_fail(e, "sendmsg", "reaper socket");
            pyrt_pidfd_send_signal(pidfd, SIGKILL, NULL, 0);
        } else if (pyrt_write_all(syncpipe[1], "g", 1) < 0) {
            rc = pyrt_fail(e, "start child", "");
        }
        close(syncpipe[1]);
    }

    /* EOF: the child exec'd. A message (childmsg.h): it failed and is exiting, or
     * (when parking) it parked, or (OCI) it waits for start. */
    int parked = 0, stopped = 0;
    if (rc == 0) {
        struct pyrt_child_msg m;
        size_t got = read_msg(errpipe[0], &m);
        if (got == sizeof m && msgfd && s->oci && s->oci->hooks_fd >= 0 && m.kind == PYRT_CHILD_HOOKS) {
            stopped = 1; /* waits for the create hooks (oci.h) */
        } else if (got == sizeof m && park && m.kind == PYRT_CHILD_PARKED) {
            park->usage = m.usage;
            parked = 1;
        } else if (got == sizeof m && s->oci && m.kind == PYRT_CHILD_WAITING) {
            /* set up and waiting for start (oci.h) */
        } else if (got == sizeof m) {
            pyrt_child_msg_error(&m, e);
            rc = -1;
        } else if (got != 0 || park) {
            rc = pyrt_fail_errno(e, EPIPE, "read child status", park ? "exited before parking" : "");
        }
    }
    if (rc < 0) {
        if (parksock[0] >= 0)
            close(parksock[0]);
        close(errpipe[0]);
        pyrt_pidfd_send_signal(pidfd, SIGKILL, NULL, 0); /* a parked one would wait */
        reap(pid);
        close(pidfd);
        if (park) /* with CLONE_PARENT (zygote.c) it is our parent's to reap */
            park->pid = pid;
        return -1;
    }
    if (parked) {
        park->sock = parksock[0];
        park->errfd = errpipe[0];
    } else if (stopped) {
        *msgfd = errpipe[0];
    } else {
        close(errpipe[0]);
    }
    *pidp = pid;
    *pidfdp = pidfd;
    return 0;
}

int pyrt_spawn(const struct pyrt_spawn_spec *s, pid_t *pidp, int *pidfdp, struct pyrt_error *e)
{
    return spawn_child(s, NULL, pidp, pidfdp, NULL, e);
}

int pyrt_spawn_oci(const struct pyrt_spawn_spec *s, pid_t *pidp, int *pidfdp, int *msgfd, struct pyrt_error *e)
{
    return spawn_child(s, NULL, pidp, pidfdp, msgfd, e);
}

int pyrt_spawn_resume(int msgfd, int go_fd, struct pyrt_error *e)
{
    memset(e, 0, sizeof *e);
    int rc = 0;
    if (pyrt_write_all(go_fd, "g", 1) < 0) {
        rc = pyrt_fail(e, "resume after the create hooks", "");
    } else {
        struct pyrt_child_msg m;
        size_t got = read_msg(msgfd, &m);
        if (got == sizeof m && m.kind == PYRT_CHILD_WAITING) {
            /* set up and waiting for start */
        } else if (got == sizeof m) {
            pyrt_child_msg_error(&m, e);
            rc = -1;
        } else if (got != 0) { /* EOF: it exec'd (no wait before exec) */
            rc = pyrt_fail_errno(e, EPIPE, "read child status", "after the create hooks");
        }
    }
    if (close(msgfd) < 0 && rc == 0)
        rc = pyrt_fail(e, "close", "the child's message pipe");
    return rc;
}

int pyrt_spawn_parked(const struct pyrt_spawn_spec *s, struct pyrt_parked *out, struct pyrt_error *e)
{
    memset(out, 0, sizeof *out);
    out->sock = out->errfd = out->pidfd = -1;
    return spawn_child(s, out, &out->pid, &out->pidfd, NULL, e);
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
