/* The caller's side of the monitor (see monitor.h): pyrt_monitor_start runs in
 * a Python process. It serializes the spec to a memfd (monitor_wire.c), forks a
 * child that only moves fds and execs pyrt-monitor (nothing between fork and exec
 * takes a lock or allocates), and waits for the monitor's report. */
#include "monitor_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "err.h"
#include "fdio.h"
#include "syscalls.h"

extern char **environ;

/* fd moved to a number >= 3 (close-on-exec), the original closed. */
static int move_high(int fd)
{
    if (fd < 0 || fd >= 3)
        return fd;
    int n = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    int err = errno;
    close(fd);
    errno = err;
    return n;
}

int pyrt_monitor_start(const struct pyrt_spawn_spec *spec, const struct pyrt_monitor_spec *m,
                       pid_t *container_pid, pid_t *monitor_pid, struct pyrt_error *e)
{
    memset(e, 0, sizeof *e);
    if (!m->monitor_path || !*m->monitor_path)
        return pyrt_fail_errno(e, EINVAL, "start monitor", "no pyrt-monitor program given");
    if (!m->log_path || m->log_path[0] != '/')
        return pyrt_fail_errno(e, EINVAL, "log path (must be absolute)", m->log_path);
    if (!m->exit_path || m->exit_path[0] != '/')
        return pyrt_fail_errno(e, EINVAL, "exit path (must be absolute)", m->exit_path);
    if (m->oom_path && m->oom_path[0] != '/')
        return pyrt_fail_errno(e, EINVAL, "oom path (must be absolute)", m->oom_path);
    if (!spec->argv || !spec->argv[0] || !spec->envp)
        return pyrt_fail_errno(e, EINVAL, "start monitor", "no command");

    /* Every fd the monitor inherits, duplicated to numbers >= 3 (0-2 become
     * /dev/null in the monitor): memfd, report pipe, cgroup fds, stdin. */
    size_t nkeep = 0, cap = 7 + spec->ncgroup_procs;
    int *keep = malloc(cap * sizeof *keep);
    int *procs = malloc((spec->ncgroup_procs + 1) * sizeof *procs);
    struct pyrt_monitor_wbuf b = {NULL, 0, 0, 0};
    int rp[2] = {-1, -1};
    int rc = -1;
    if (!keep || !procs) {
        pyrt_fail_errno(e, ENOMEM, "start monitor", "");
        goto out;
    }
    int cgroup_fd = -1, stdin_fd = -1, netns_fd = -1;
    struct pyrt_spawn_spec moved = *spec; /* with the user namespace's fd as the monitor has it */
    if (spec->cgroup_fd >= 0) {
        if ((cgroup_fd = fcntl(spec->cgroup_fd, F_DUPFD_CLOEXEC, 3)) < 0) {
            pyrt_fail(e, "dup", "cgroup directory");
            goto out;
        }
        keep[nkeep++] = cgroup_fd;
    }
    for (size_t i = 0; i < spec->ncgroup_procs; i++) {
        if ((procs[i] = fcntl(spec->cgroup_procs_fds[i], F_DUPFD_CLOEXEC, 3)) < 0) {
            pyrt_fail(e, "dup", "cgroup.procs");
            goto out;
        }
        keep[nkeep++] = procs[i];
    }
    if (spec->netns_fd >= 0) {
        if ((netns_fd = fcntl(spec->netns_fd, F_DUPFD_CLOEXEC, 3)) < 0) {
            pyrt_fail(e, "dup", "network namespace");
            goto out;
        }
        keep[nkeep++] = netns_fd;
    }
    if (spec->userns_fd >= 0) {
        if ((moved.userns_fd = fcntl(spec->userns_fd, F_DUPFD_CLOEXEC, 3)) < 0) {
            pyrt_fail(e, "dup", "user namespace");
            goto out;
        }
        keep[nkeep++] = moved.userns_fd;
    }
    if (m->hold_fd >= 0) {
        int held = fcntl(m->hold_fd, F_DUPFD_CLOEXEC, 3);
        if (held < 0) {
            pyrt_fail(e, "dup", "network helper's fd");
            goto out;
        }
        keep[nkeep++] = held;
    }
    if (m->stdin_fd >= 0) {
        if ((stdin_fd = fcntl(m->stdin_fd, F_DUPFD_CLOEXEC, 3)) < 0) {
            pyrt_fail(e, "dup", "stdin");
            goto out;
        }
        keep[nkeep++] = stdin_fd;
    }
    if (pipe2(rp, O_CLOEXEC) < 0) {
        pyrt_fail(e, "pipe", "");
        goto out;
    }
    rp[0] = move_high(rp[0]);
    rp[1] = move_high(rp[1]);
    if (rp[1] >= 0)
        keep[nkeep++] = rp[1]; /* closed with the others */
    if (rp[0] < 0 || rp[1] < 0) {
        pyrt_fail(e, "dup", "pipe");
        goto out;
    }
    int memfd = move_high(memfd_create("pyrt-monitor-spec", MFD_CLOEXEC));
    if (memfd < 0) {
        pyrt_fail(e, "memfd_create", "");
        goto out;
    }
    keep[nkeep++] = memfd;
    if (pyrt_monitor_serialize(&b, &moved, cgroup_fd, procs, netns_fd, m, stdin_fd, e) < 0)
        goto out;
    if (pyrt_write_all(memfd, b.p, b.len) < 0) {
        pyrt_fail(e, "write", "monitor spec");
        goto out;
    }

    char memfd_s[24], report_s[24];
    char *const argv[] = {"pyrt-monitor", pyrt_itoa(memfd, memfd_s), pyrt_itoa(rp[1], report_s), NULL};

    /* A plain fork (no atfork handlers) with every signal blocked: the child runs
     * no handler and stays blocked until the monitor sets its own mask. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    struct pyrt_clone_args ca;
    memset(&ca, 0, sizeof ca);
    ca.exit_signal = SIGCHLD;
    pid_t child = (pid_t)pyrt_clone3(&ca, sizeof ca);
    if (child == 0) {
        struct pyrt_monitor_report rec;
        memset(&rec, 0, sizeof rec);
        if (pyrt_close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) < 0) {
            pyrt_fail(&rec.e, "close_range", "");
            goto child_fail;
        }
        for (size_t i = 0; i < nkeep; i++)
            if (fcntl(keep[i], F_SETFD, 0) < 0) {
                pyrt_fail(&rec.e, "fcntl", "monitor fds");
                goto child_fail;
            }
        int null = open("/dev/null", O_RDWR);
        if (null < 0) {
            pyrt_fail(&rec.e, "open", "/dev/null");
            goto child_fail;
        }
        for (int i = 0; i < 3; i++)
            if (null != i && dup2(null, i) < 0) {
                pyrt_fail(&rec.e, "dup2", "/dev/null");
                goto child_fail;
            }
        if (null > 2)
            close(null);
        if (chdir("/") < 0) { /* do not pin the caller's working directory */
            pyrt_fail(&rec.e, "chdir", "/");
            goto child_fail;
        }
        execve(m->monitor_path, argv, environ);
        pyrt_fail(&rec.e, "exec", m->monitor_path);
    child_fail:
        pyrt_write_all(rp[1], &rec, sizeof rec);
        _exit(127);
    }
    int clone_errno = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pyrt_monitor_close_fds(keep, nkeep); /* rp[1] included: EOF once the monitor is done with it */
    nkeep = 0;
    if (child < 0) {
        pyrt_fail_errno(e, clone_errno, "fork", "monitor");
        goto out;
    }

    struct pyrt_monitor_report rec;
    ssize_t got = pyrt_read_full(rp[0], &rec, sizeof rec);
    int read_errno = errno;
    int status = 0;
    while (waitpid(child, &status, __WALL) < 0 && errno == EINTR)
        ;
    if (got == (ssize_t)sizeof rec) {
        if (rec.ok) {
            *container_pid = rec.container_pid;
            *monitor_pid = rec.monitor_pid;
            rc = 0;
        } else {
            *e = rec.e;
            e->op[sizeof e->op - 1] = '\0';
            e->path[sizeof e->path - 1] = '\0';
        }
    } else if (got < 0) {
        pyrt_fail_errno(e, read_errno, "read monitor report", m->monitor_path);
    } else {
        pyrt_fail_errno(e, EPIPE, "start monitor (no report)", m->monitor_path);
    }

out:
    if (keep)
        pyrt_monitor_close_fds(keep, nkeep);
    if (rp[0] >= 0)
        close(rp[0]);
    free(keep);
    free(procs);
    free(b.p);
    return rc;
}
