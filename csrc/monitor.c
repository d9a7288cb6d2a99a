/* The pyrt-monitor program (see monitor.h and monitor_internal.h): a plain,
 * single-threaded C process, free to use libc. It reads what pyrt_monitor_start
 * sent (monitor_wire.c), forks away from the caller, starts the container and
 * watches it: its output to the log (monitor_log.c) and to attached clients
 * (monitor_attach.c), its exit recorded (monitor_exit.c), and started again when
 * its restart policy says so (monitor_restart.c). */
#include "monitor_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "err.h"
#include "fdio.h"
#include "portfwd.h"
#include "syscalls.h"

static struct pyrt_monitor_stream streams[2];

static void report(int fd, pid_t cpid, const struct pyrt_error *e)
{
    struct pyrt_monitor_report rec;
    memset(&rec, 0, sizeof rec);
    rec.ok = e == NULL;
    rec.container_pid = cpid;
    rec.monitor_pid = getpid();
    if (e)
        rec.e = *e;
    if (pyrt_write_all(fd, &rec, sizeof rec) < 0) {
        /* the caller is gone: nobody to tell */
    }
}

static int monitor(struct pyrt_spawn_spec *spec, struct pyrt_monitor_cfg *c, int report_fd)
{
    struct pyrt_error err;
    memset(&err, 0, sizeof err);
    int outp[2] = {-1, -1}, errp[2] = {-1, -1}, console[2] = {-1, -1}, in = c->stdin_fd, lfd = -1;
    struct pyrt_portfwd *ports = NULL; /* bound before the start: a port in use fails it */
    /* with a restart policy the pipes and the cgroup fds serve every run */
    const int keep = c->restart != PYRT_RESTART_NO;
    if (pyrt_monitor_log_open(c->log_path, c->log_max_size, c->log_max_files) < 0) {
        pyrt_fail(&err, "open log", c->log_path);
        goto fail;
    }
    long long oom_start = c->oom_start >= 0 ? c->oom_start : pyrt_monitor_oom_kills(c->oom_path);
    if (c->attach_path && (lfd = pyrt_monitor_attach_listen(c->attach_path, &err)) < 0)
        goto fail;
    if (c->ports && c->ports[0] && !(ports = pyrt_portfwd_listen(c->ports, &err)))
        goto fail;
    if (!c->tty) {
        if (pipe2(outp, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0) {
            pyrt_fail(&err, "pipe", "stdout/stderr");
            goto fail;
        }
        if (in < 0 && (in = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0) {
            pyrt_fail(&err, "open", "/dev/null");
            goto fail;
        }
        spec->stdio[0] = in;
        spec->stdio[1] = outp[1];
        spec->stdio[2] = errp[1];
    }

    int restarts = 0, reaped = 0;
    pid_t cpid = 0;
    int pidfd = -1;
    siginfo_t info;
    struct rusage ru;
    memset(&info, 0, sizeof info);
    memset(&ru, 0, sizeof ru);
    struct timespec finished = {0, 0};
    for (;;) {
        if (c->tty) { /* the container makes its terminal and sends the master here */
            if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, console) < 0) {
                pyrt_fail(&err, "socketpair", "console");
                goto fail;
            }
            spec->console_fd = console[1];
        }
        int rc = pyrt_spawn(spec, &cpid, &pidfd, &err);
        int child_ends[] = {console[1], keep ? -1 : in, keep ? -1 : outp[1], keep ? -1 : errp[1]};
        pyrt_monitor_close_fds(child_ends, 4);
        console[1] = -1;
        if (!keep) {
            if (spec->netns_fd >= 0)
                close(spec->netns_fd);
            if (spec->userns_fd >= 0)
                close(spec->userns_fd);
            if (spec->cgroup_fd >= 0)
                close(spec->cgroup_fd);
            for (size_t i = 0; i < spec->ncgroup_procs; i++)
                close(spec->cgroup_procs_fds[i]);
        }
        int master = -1; /* the terminal's */
        if (rc == 0 && c->tty && (master = pyrt_monitor_attach_recv_master(console[0])) < 0) {
            pyrt_fail(&err, "receive the terminal of", "the container");
            pyrt_pidfd_send_signal(pidfd, SIGKILL, NULL, 0);
            rc = -1;
        }
        if (console[0] >= 0) {
            close(console[0]);
            console[0] = -1;
        }
        if (rc < 0 && restarts == 0) {
            int ours[] = {outp[0], errp[0], lfd, in, outp[1], errp[1]};
            pyrt_monitor_close_fds(ours, 6);
            pyrt_portfwd_close(ports);
            pyrt_monitor_attach_unlink();
            report(report_fd, 0, &err);
            return 1;
        }
        if (rc < 0)
            break; /* a restart that failed: the last run's end is the record */
        reaped = 0;
        if (ports)
            pyrt_portfwd_target(ports, pidfd);
        if (restarts == 0) {
            report(report_fd, cpid, NULL);
            close(report_fd);
        }
        if (keep)
            pyrt_monitor_write_run_record(c->run_path, cpid, restarts);

        streams[0].fd = c->tty ? master : outp[0];
        streams[0].name = "stdout";
        streams[0].id = '1';
        streams[1].fd = errp[0];
        streams[1].name = "stderr";
        streams[1].id = '2';
        for (int i = 0; i < 2; i++) {
            int fl = fcntl(streams[i].fd, F_GETFL);
            if (fl < 0 || fcntl(streams[i].fd, F_SETFL, fl | O_NONBLOCK) < 0) {
                /* blocking reads still work while the container runs; the final drain
                 * then stops at EOF */
            }
        }

        for (;;) {
            /* streams, the container, the attach socket, then the clients (whose only
             * message is their end) */
            struct pollfd p[4 + PYRT_MONITOR_MAX_CLIENTS + PYRT_PORTFWD_MAX_POLL] = {
                {streams[0].fd, POLLIN, 0}, {streams[1].fd, POLLIN, 0}, {pidfd, POLLIN, 0}, {lfd, POLLIN, 0}};
            int nc = pyrt_monitor_attach_pollfds(p + 4);
            size_t np = ports ? pyrt_portfwd_poll(ports, p + 4 + nc) : 0;
            int n = poll(p, (nfds_t)(4 + nc) + np, -1);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                break; /* cannot happen with valid fds; fall through to the wait */
            }
            pyrt_monitor_attach_hangups(p + 4, nc);
            for (int i = 0; i < 2; i++)
                if (p[i].revents)
                    pyrt_monitor_pump(&streams[i], 0);
            pyrt_monitor_log_flush();
            if (p[3].revents)
                pyrt_monitor_attach_accept(lfd);
            if (np)
                pyrt_portfwd_handle(ports, p + 4 + nc, np);
            if (p[2].revents)
                break;
        }
        if (clock_gettime(CLOCK_REALTIME, &finished) < 0)
            finished.tv_sec = time(NULL);

        /* Status and rusage without reaping: the pid stays the container's until the
         * exit record exists. */
        memset(&info, 0, sizeof info);
        memset(&ru, 0, sizeof ru);
        while (syscall(SYS_waitid, P_PIDFD, pidfd, &info, WEXITED | WNOWAIT, &ru) < 0) {
            if (errno != EINTR)
                return 1;
        }
        if (!pyrt_monitor_restart_wanted(c, &info, restarts))
            break;
        /* this run's output, then its end; a terminal of it is gone, and so are
         * the clients attached to it */
        for (int i = 0; i < 2; i++)
            pyrt_monitor_pump(&streams[i], 1);
        pyrt_monitor_log_flush();
        if (c->tty)
            pyrt_monitor_attach_drop_all();
        siginfo_t gone;
        while (syscall(SYS_waitid, P_PIDFD, pidfd, &gone, WEXITED, NULL) < 0 && errno == EINTR)
            ;
        close(pidfd);
        pidfd = -1;
        reaped = 1;
        if (!pyrt_monitor_back_off(c, restarts))
            break;
        oom_start = pyrt_monitor_oom_kills(c->oom_path);
        restarts++;
    }

    /* The init has exited: what it wrote is in the pipes. Processes it left behind
     * (without a pid namespace) may keep them open: take what is there, no more. */
    int held[] = {in, outp[1], errp[1]};
    pyrt_monitor_close_fds(held, 3);
    for (int i = 0; i < 2; i++) {
        pyrt_monitor_pump(&streams[i], 1);
        if (streams[i].fd >= 0) {
            pyrt_monitor_lines(&streams[i], 1);
            close(streams[i].fd);
            streams[i].fd = -1;
        }
    }
    pyrt_monitor_log_flush();
    if (keep) {
        if (spec->netns_fd >= 0)
            close(spec->netns_fd);
        if (spec->userns_fd >= 0)
            close(spec->userns_fd);
        if (spec->cgroup_fd >= 0)
            close(spec->cgroup_fd);
        for (size_t i = 0; i < spec->ncgroup_procs; i++)
            close(spec->cgroup_procs_fds[i]);
    }
    /* attached clients see the end (before the exit record: they then read it) */
    if (lfd >= 0)
        close(lfd);
    pyrt_monitor_attach_unlink();
    pyrt_portfwd_close(ports);
    pyrt_monitor_attach_drop_all();

    long long oom_end = pyrt_monitor_oom_kills(c->oom_path);
    int oom = oom_end > (oom_start > 0 ? oom_start : 0);
    int wrote = pyrt_monitor_write_exit_record(c->exit_path, cpid, &info, &ru, &finished, oom);
    if (!reaped) {
        siginfo_t gone;
        memset(&gone, 0, sizeof gone);
        while (syscall(SYS_waitid, P_PIDFD, pidfd, &gone, WEXITED, NULL) < 0 && errno == EINTR)
            ;
        close(pidfd);
    }
    pyrt_monitor_log_close();

    if (c->exit_argv && c->exit_argv[0]) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execvp(c->exit_argv[0], (char *const *)c->exit_argv);
        return 127;
    }
    return wrote < 0 ? 1 : 0;

fail:
    pyrt_monitor_attach_unlink();
    pyrt_portfwd_close(ports);
    report(report_fd, 0, &err);
    return 1;
}

int pyrt_monitor_main(int argc, char **argv)
{
    if (argc != 3)
        return 127;
    int memfd = atoi(argv[1]), report_fd = atoi(argv[2]);
    struct pyrt_error err;
    memset(&err, 0, sizeof err);

    /* Dispositions back to the defaults (the caller's ignored signals survive
     * exec), then block every asynchronous signal: SIGTERM, SIGINT, SIGHUP,
     * SIGPIPE... stay pending and harmless. The container gets a clean mask. */
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            signal(sig, SIG_DFL); /* EINVAL for the libc-reserved ones: fine */
    sigset_t set;
    sigfillset(&set);
    int sync_sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGTRAP, SIGSYS};
    for (size_t i = 0; i < sizeof sync_sigs / sizeof *sync_sigs; i++)
        sigdelset(&set, sync_sigs[i]);
    if (sigprocmask(SIG_SETMASK, &set, NULL) < 0) {
        pyrt_fail(&err, "sigprocmask", "monitor");
        report(report_fd, 0, &err);
        return 1;
    }
    if (fcntl(report_fd, F_SETFD, FD_CLOEXEC) < 0 || fcntl(memfd, F_SETFD, FD_CLOEXEC) < 0) {
        pyrt_fail(&err, "fcntl", "monitor fds");
        report(report_fd, 0, &err);
        return 1;
    }

    struct stat st;
    if (fstat(memfd, &st) < 0) {
        pyrt_fail(&err, "read", "monitor spec");
        report(report_fd, 0, &err);
        return 1;
    }
    size_t size = (size_t)st.st_size;
    char *data = malloc(size ? size : 1);
    size_t got = 0;
    while (data && got < size) {
        ssize_t n = pread(memfd, data + got, size - got, (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(memfd);
    struct pyrt_spawn_spec *spec = NULL;
    struct pyrt_monitor_cfg cfg;
    if (!data || got != size || pyrt_monitor_deserialize(data, got, &spec, &cfg) < 0) {
        pyrt_fail_errno(&err, EINVAL, "read", "monitor spec");
        report(report_fd, 0, &err);
        return 1;
    }
    /* Mark the inherited fds close-on-exec: the container and exit_argv get none. */
    int inherited[] = {spec->cgroup_fd, cfg.stdin_fd, spec->netns_fd};
    for (size_t i = 0; i < 3; i++)
        if (inherited[i] >= 0 && fcntl(inherited[i], F_SETFD, FD_CLOEXEC) < 0) {
            pyrt_fail(&err, "fcntl", "monitor fds");
            report(report_fd, 0, &err);
            return 1;
        }
    for (size_t i = 0; i < spec->ncgroup_procs; i++)
        if (fcntl(spec->cgroup_procs_fds[i], F_SETFD, FD_CLOEXEC) < 0) {
            pyrt_fail(&err, "fcntl", "monitor fds");
            report(report_fd, 0, &err);
            return 1;
        }

    /* Double fork: a new session (no controlling terminal, no signals from the
     * caller's terminal), and a monitor that is nobody's child but init's. */
    if (setsid() < 0) {
        pyrt_fail(&err, "setsid", "monitor");
        report(report_fd, 0, &err);
        return 1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        pyrt_fail(&err, "fork", "monitor");
        report(report_fd, 0, &err);
        return 1;
    }
    if (pid > 0)
        _exit(0);
    return monitor(spec, &cfg, report_fd);
}
