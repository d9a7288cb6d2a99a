/* See rt_proc.h. */
#include "rt_proc.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fdio.h"
#include "rt.h"
#include "syscalls.h"

#define CAPTURE_MAX (1 << 20)

extern char **environ;

static void close_pair(int p[2])
{
    for (int i = 0; i < 2; i++)
        if (p[i] >= 0) {
            close(p[i]);
            p[i] = -1;
        }
}

static __attribute__((noreturn)) void child(struct rt_proc *p, int in, int out, int err, int errpipe)
{
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    int e;
    if (in < 0)
        in = open("/dev/null", O_RDONLY);
    if (in < 0 || dup2(in, 0) < 0 || (out >= 0 && dup2(out, 1) < 0) || (err >= 0 && dup2(err, 2) < 0))
        goto fail;
    if (p->envp != NULL)
        environ = (char **)p->envp;
    if (strchr(p->path, '/') != NULL)
        execv(p->path, p->argv);
    else
        execvp(p->path, p->argv);
fail:
    e = errno;
    (void)!write(errpipe, &e, sizeof e);
    _exit(127);
}

static int append(char **buf, size_t *len, const char *data, size_t n)
{
    if (*len >= CAPTURE_MAX)
        return 0;
    if (n > CAPTURE_MAX - *len)
        n = CAPTURE_MAX - *len;
    char *more = realloc(*buf, *len + n + 1);
    if (more == NULL)
        return -1;
    memcpy(more + *len, data, n);
    *len += n;
    more[*len] = 0;
    *buf = more;
    return 0;
}

int rt_proc_run(struct rt_proc *p)
{
    int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1}, ep[2] = {-1, -1};
    p->status = 0;
    p->timed_out = 0;
    p->exec_errno = 0;
    p->out = p->err = NULL;
    p->out_len = p->err_len = 0;
    if ((p->input != NULL && pipe2(in, O_CLOEXEC) < 0) || (p->capture && pipe2(out, O_CLOEXEC) < 0) ||
        (p->capture && pipe2(err, O_CLOEXEC) < 0) || pipe2(ep, O_CLOEXEC) < 0) {
        int e = errno;
        close_pair(in), close_pair(out), close_pair(err), close_pair(ep);
        errno = e;
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close_pair(in), close_pair(out), close_pair(err), close_pair(ep);
        errno = e;
        return -1;
    }
    if (pid == 0)
        child(p, in[0], out[1], err[1], ep[1]);
    close(ep[1]);
    if (in[0] >= 0)
        close(in[0]);
    if (out[1] >= 0)
        close(out[1]);
    if (err[1] >= 0)
        close(err[1]);
    in[0] = out[1] = err[1] = ep[1] = -1;

    int e = 0;
    ssize_t n;
    while ((n = read(ep[0], &e, sizeof e)) < 0 && errno == EINTR)
        ;
    close(ep[0]);
    if (n == (ssize_t)sizeof e)
        p->exec_errno = e;

    double deadline = p->timeout > 0 ? rt_now() + p->timeout : 0;
    size_t written = 0;
    if (in[1] >= 0) {
        fcntl(in[1], F_SETFL, O_NONBLOCK);
        if (p->input_len == 0 || p->exec_errno) {
            close(in[1]);
            in[1] = -1;
        }
    }
    while (in[1] >= 0 || out[0] >= 0 || err[0] >= 0) {
        struct pollfd fds[3];
        int nfds = 0, iw = -1, io = -1, ie = -1;
        if (in[1] >= 0)
            iw = nfds, fds[nfds++] = (struct pollfd){.fd = in[1], .events = POLLOUT};
        if (out[0] >= 0)
            io = nfds, fds[nfds++] = (struct pollfd){.fd = out[0], .events = POLLIN};
        if (err[0] >= 0)
            ie = nfds, fds[nfds++] = (struct pollfd){.fd = err[0], .events = POLLIN};
        int ms = -1;
        if (deadline > 0) {
            double left = deadline - rt_now();
            if (left <= 0) {
                p->timed_out = 1;
                break;
            }
            ms = (int)(left * 1000) + 1;
        }
        int r = poll(fds, (nfds_t)nfds, ms);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            break;
        if (iw >= 0 && fds[iw].revents) {
            n = write(in[1], (const char *)p->input + written, p->input_len - written);
            if (n > 0)
                written += (size_t)n;
            if ((n < 0 && errno != EAGAIN && errno != EINTR) || written == p->input_len) {
                close(in[1]); /* done, or the reader is gone (EPIPE) */
                in[1] = -1;
            }
        }
        int which[2] = {io, ie};
        int *fdp[2] = {&out[0], &err[0]};
        char **bufs[2] = {&p->out, &p->err};
        size_t *lens[2] = {&p->out_len, &p->err_len};
        for (int k = 0; k < 2; k++) {
            if (which[k] < 0 || !fds[which[k]].revents)
                continue;
            char chunk[8192];
            n = read(*fdp[k], chunk, sizeof chunk);
            if (n < 0 && (errno == EINTR || errno == EAGAIN))
                continue;
            if (n <= 0 || append(bufs[k], lens[k], chunk, (size_t)n) < 0) {
                close(*fdp[k]);
                *fdp[k] = -1;
            }
        }
    }
    if (in[1] >= 0)
        close(in[1]);
    if (out[0] >= 0)
        close(out[0]);
    if (err[0] >= 0)
        close(err[0]);
    if (p->timed_out)
        kill(pid, SIGKILL);
    for (;;) {
        pid_t w = waitpid(pid, &p->status, p->timed_out || deadline <= 0 ? 0 : WNOHANG);
        if (w == pid)
            break;
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        if (rt_now() >= deadline) { /* its output closed but it ran on */
            p->timed_out = 1;
            kill(pid, SIGKILL);
            continue;
        }
        rt_sleep(0.002);
    }
    return 0;
}

void rt_proc_free(struct rt_proc *p)
{
    free(p->out);
    free(p->err);
    p->out = p->err = NULL;
}

/* -- a foreground process ------------------------------------------------------------------------------------------- */

static volatile sig_atomic_t the_pidfd = -1;

static void forward(int sig)
{
    int saved = errno;
    if (the_pidfd >= 0)
        (void)pyrt_pidfd_send_signal((int)the_pidfd, sig, NULL, 0);
    errno = saved;
}

static void mask(int how, const int *sigs, size_t nsigs)
{
    sigset_t set;
    sigemptyset(&set);
    for (size_t i = 0; i < nsigs; i++)
        sigaddset(&set, sigs[i]);
    (void)sigprocmask(how, &set, NULL); /* (fails only for a bad `how`) */
}

void rt_forward_hold(const int *sigs, size_t nsigs)
{
    mask(SIG_BLOCK, sigs, nsigs);
}

void rt_forward_release(const int *sigs, size_t nsigs)
{
    mask(SIG_UNBLOCK, sigs, nsigs);
}

void rt_forward_signals(struct rt_ctx *ctx, int pidfd, const int *sigs, size_t nsigs)
{
    the_pidfd = pidfd;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = forward;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < nsigs; i++)
        if (sigaction(sigs[i], &sa, NULL) < 0)
            rt_warn(ctx, "forward signal %d: %s", sigs[i], strerror(errno));
    rt_forward_release(sigs, nsigs); /* what was held meanwhile is forwarded now */
}

void rt_forward_stop(void)
{
    the_pidfd = -1;
}

void rt_kill_and_reap(int pidfd)
{
    (void)pyrt_pidfd_send_signal(pidfd, SIGKILL, NULL, 0); /* ESRCH: it has exited already */
    siginfo_t info;
    while (waitid(P_PIDFD, (id_t)pidfd, &info, WEXITED) < 0 && errno == EINTR)
        ;
    close(pidfd);
}
