/* The run of the native `pyrt` command (see front_run.h). */
#include "front_run.h"

#include <linux/capability.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "err.h"
#include "fdio.h"
#include "fdpass.h"
#include "front.h"
#include "reaper.h"
#include "relay.h"

static int g_wake = -1;
static const int *g_valid; /* Python's sys.std* (None for an fd closed when it started) */
static volatile sig_atomic_t g_interrupted;

static void noted(int sig)
{
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    if (write(g_wake, &b, 1) < 0) { /* full: the relay has enough to wake up for */
    }
    if (sig == SIGINT)
        g_interrupted = 1;
    errno = saved;
}

/* SyscallError's text (pyrt/errors.py), or -1 when Python would print it otherwise */
static int message(const struct pyrt_error *e, char *out, size_t cap)
{
    char op[sizeof e->op + 1], path[sizeof e->path + 1];
    pyrt_strlcpy(op, e->op, sizeof op);
    pyrt_strlcpy(path, e->path, sizeof path);
    for (const char *p = op; *p; p++)
        if (*p < 0x20 || *p >= 0x7f)
            return -1;
    for (const char *p = path; *p; p++)
        if (*p < 0x20 || *p >= 0x7f)
            return -1;
    const char *why = e->err ? strerror(e->err) : "failed";
    if (!op[0])
        snprintf(out, cap, "%s%s%s", path, path[0] ? ": " : "", why);
    else if (path[0])
        snprintf(out, cap, "%s \"%s\": %s", op, path, why);
    else
        snprintf(out, cap, "%s: %s", op, why);
    return 0;
}

/* main's way of failing (error_status): 127/126 for exec, 125 for the rest; -1
 * when Python would say it otherwise (print() with no sys.stderr writes to stdout) */
static int fail(const struct pyrt_error *e)
{
    char text[1024];
    if (!g_valid[2] || message(e, text, sizeof text) < 0)
        return -1;
    fprintf(stderr, "pyrt: %s\n", text);
    if (strcmp(e->op, "exec") == 0)
        return e->err == ENOENT || e->err == ENOTDIR ? 127 : 126;
    return 125;
}

static void disarm(int sock)
{
    if (sock < 0)
        return;
    (void)pyrt_send_fds(sock, "d", 1, NULL, 0); /* it may be gone: nothing to tell it then */
    close(sock);
}

static void kill_it(int pidfd)
{
    if (syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0) < 0 && errno != ESRCH)
        perror("pyrt: pidfd_send_signal"); /* (ESRCH: it has exited, not yet reaped) */
}

static int wait_for(int pidfd)
{
    int status = 0;
    struct rusage ru;
    while (pyrt_wait(pidfd, -1, &status, &ru) < 0)
        if (errno != EINTR)
            return 128 + SIGKILL; /* cannot happen for our own child: as killed */
    close(pidfd);
    return WIFSIGNALED(status) ? -WTERMSIG(status) : WEXITSTATUS(status);
}

static void restore_signals(const struct sigaction *old, unsigned long long changed)
{
    for (int sig = 1; sig <= 64; sig++)
        if (changed >> (sig - 1) & 1 && sigaction(sig, &old[sig], NULL) < 0)
            _exit(125); /* cannot be: these were set a moment ago */
}

int pyrt_front_run(const struct pyrt_front_run *in)
{
    struct pyrt_spawn_spec *spec = in->spec;
    struct pyrt_ctr *ctr = in->ctr;
    g_valid = in->valid;
    struct pyrt_front_cgroup cg = {.dir = "", .fd = -1};
    int made = ctr ? 0 : pyrt_front_cgroup_make(&cg, getpid()), log_fd = -1;
    if (made < 0)
        return PYRT_FRONT_HAND_OVER;
    int wake[2];
    if (pipe2(wake, O_NONBLOCK | O_CLOEXEC) < 0) {
        pyrt_front_cgroup_remove(&cg);
        return PYRT_FRONT_HAND_OVER;
    }
    g_wake = wake[1];
    /* the signals as Python sets them (run.py _Signals: forwarded_signals(tty=False)
     * noted for the relay; without --sig-proxy only SIGINT, Python's KeyboardInterrupt,
     * unless it was ignored when we started; SIGPIPE and SIGXFSZ ignored, as Python
     * does at start), the old ones kept for a hand-over */
    static struct sigaction old[65];
    unsigned long long forward = 0, changed = 0;
    struct sigaction sa, ign;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = noted;
    sigemptyset(&sa.sa_mask);
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    sigemptyset(&ign.sa_mask);
    if (in->sig_proxy) {
        int sigs[] = {SIGHUP, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM, SIGTERM, SIGPWR, SIGWINCH};
        for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
            forward |= 1ULL << (sigs[i] - 1);
        for (int sig = SIGRTMIN; sig <= SIGRTMAX; sig++)
            forward |= 1ULL << (sig - 1);
    } else if (sigaction(SIGINT, NULL, &old[SIGINT]) == 0 && old[SIGINT].sa_handler == SIG_DFL) {
        changed |= 1ULL << (SIGINT - 1);
    }
    int bad = 0;
    for (int sig = 1; sig <= 64 && !bad; sig++) {
        int note = (forward | changed) >> (sig - 1) & 1, ignore = sig == SIGPIPE || sig == SIGXFSZ;
        if ((note || ignore) && sigaction(sig, note ? &sa : &ign, &old[sig]) < 0)
            bad = 1;
        else if (note || ignore)
            changed |= 1ULL << (sig - 1);
    }
    if (bad) {
        restore_signals(old, changed);
        pyrt_front_cgroup_remove(&cg);
        return PYRT_FRONT_HAND_OVER;
    }

    struct pyrt_error e;
    int sock = -1, ours[3] = {-1, -1, -1}, theirs[3] = {-1, -1, -1}, rc;
    pid_t reaper_pid, pid = 0;
    int pidfd = -1, started = 0;
    char reaper[PATH_MAX + 16], msg[sizeof cg.dir + 2];
    snprintf(reaper, sizeof reaper, "%s/pyrt-reaper", in->pkg);
    if (pyrt_reaper_start(reaper, &sock, &reaper_pid, &e) < 0)
        goto failed;
    if (ctr) { /* run_image: the container made, the reaper told its clean-up, its log */
        int st = pyrt_ctr_create(ctr, sock);
        if (st != 0) {
            disarm(sock);
            return st;
        }
        started = 1; /* (from here on: never handed over) */
        if ((log_fd = pyrt_ctr_log(ctr)) < 0) {
            pyrt_fail(&e, "open", ctr->cdir);
            goto failed;
        }
        char name[80];
        if (pyrt_front_cgroup_usable() > 0 && pyrt_front_cgroup_make_named(&cg, pyrt_ctr_cgroup_name(ctr, name, sizeof name)) > 0)
            made = 1; /* (else none, as Python when it cannot make it) */
    } else if (made) {
        msg[0] = 'r';
        size_t n = strlen(cg.dir) + 1;
        memcpy(msg + 1, cg.dir, n);
        if (pyrt_send_fds(sock, msg, n + 1, NULL, 0) < 0) {
            pyrt_fail(&e, "sendmsg", "reaper socket");
            goto failed;
        }
    }
    int fds[2];
    for (int i = 0; i < 2; i++) { /* stdout, stderr: read ends ours, non-blocking */
        if (pyrt_relay_pipe(fds, 0, &e) < 0)
            goto failed;
        ours[i] = fds[0];
        theirs[i] = fds[1];
    }
    if (in->interactive) {
        if (pyrt_relay_pipe(fds, 1, &e) < 0)
            goto failed;
        ours[2] = fds[1];
        theirs[2] = fds[0];
    } else if ((theirs[2] = open("/dev/null", O_RDWR | O_CLOEXEC)) < 0) {
        pyrt_fail(&e, "open", "/dev/null");
        goto failed;
    }
    spec->stdio[0] = theirs[2];
    spec->stdio[1] = theirs[0];
    spec->stdio[2] = theirs[1];
    if (!made) { /* no device cgroup holds it: pyrt/launch/process.py's confine_without_device_cgroup */
        spec->setup |= PYRT_SETUP_NODEV;
        spec->caps &= ~(1ULL << CAP_MKNOD);
    }
    spec->cgroup_fd = cg.fd;
    spec->reaper_fd = sock;
    rc = pyrt_spawn(spec, &pid, &pidfd, &e);
    pyrt_front_cgroup_close(&cg);
    for (int i = 0; i < 3; i++)
        if (theirs[i] >= 0)
            close(theirs[i]), theirs[i] = -1;
    if (rc < 0)
        goto failed;
    if (ctr)
        pyrt_ctr_started(ctr, pid, made > 0);

    struct pyrt_relay_spec rs = {
        .pidfd = pidfd, .pid = pid, .sig_fd = wake[0], .forward = forward, .in_tty = 0,
        .out_src = ours[0], .out_dst = g_valid[1] ? 1 : -1, .err_src = ours[1], .err_dst = g_valid[2] ? 2 : -1,
        .in_src = in->interactive && g_valid[0] ? 0 : -1, .in_dst = in->interactive ? ours[2] : -1, .log_fd = log_fd,
    };
    struct pyrt_relay *r = pyrt_relay_new(&rs, &e);
    if (r == NULL) { /* it ran: it ends, and is not started again by Python */
        kill_it(pidfd);
        int gone = wait_for(pidfd);
        if (ctr)
            (void)pyrt_ctr_finished(ctr, gone, cg.dir);
        started = 1;
        ctr = NULL;
        goto failed;
    }
    int status = 0, interrupted = 0;
    struct pyrt_error re;
    for (;;) {
        int k = pyrt_relay_run(r, &re);
        if (k == PYRT_RELAY_SIGNAL && !(g_interrupted && !in->sig_proxy))
            continue;
        if (k != PYRT_RELAY_DONE) { /* KeyboardInterrupt, or the relay failed: it ends with us */
            interrupted = k == PYRT_RELAY_SIGNAL;
            kill_it(pidfd);
            status = interrupted ? 130 : fail(&re);
        }
        break;
    }
    int sigpipe = pyrt_relay_ended_by_sigpipe(r);
    int log_error = pyrt_relay_free(r);
    int code = wait_for(pidfd);
    if (sigpipe && code == -SIGKILL)
        code = -SIGPIPE;
    if (ctr) {
        int st = pyrt_ctr_finished(ctr, code, cg.dir);
        cg.dir[0] = 0;
        close(log_fd);
        if (st != 0 && status == 0)
            status = st;
        if (log_error && st == 0)
            fprintf(stderr, "pyrt: WARNING: the log of container %s misses output: %s\n", ctr->name, strerror(log_error));
    }
    disarm(sock);
    pyrt_front_cgroup_remove(&cg);
    if (status > 0 || status < 0)
        return status < 0 ? 125 : status;
    return code < 0 ? 128 - code : code;

failed:
    if (log_fd >= 0)
        close(log_fd);
    pyrt_front_cgroup_remove(&cg);
    if (ctr) /* its start failed: with --rm it goes */
        pyrt_ctr_not_started(ctr);
    for (int i = 0; i < 3; i++) {
        if (ours[i] >= 0)
            close(ours[i]);
        if (theirs[i] >= 0)
            close(theirs[i]);
    }
    disarm(sock);
    pyrt_front_cgroup_remove(&cg);
    rc = fail(&e);
    if (rc >= 0 || started)
        return rc >= 0 ? rc : 125;
    restore_signals(old, changed); /* as Python would have found them */
    close(wake[0]);
    close(wake[1]);
    return PYRT_FRONT_HAND_OVER;
}

