/* The reaper of a foreground run (see reaper.h). Two halves: pyrt_reaper_start
 * runs in the caller (a Python process) and only vforks and execs; pyrt_reaper_main
 * is the pyrt-reaper program, a plain single-threaded C process. */
#include "reaper.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "err.h"
#include "fdpass.h"
#include "syscalls.h"

extern char **environ;

#define REAPER_SOCK 3

/* vfork: the child shares the caller's memory until it execs, and only moves
 * fds, makes its own session and execs (no allocation, no lock); an exec failure
 * is left in *child_errno. The caller blocks every signal around it, so no
 * handler of the caller's runs in the child; the reaper starts with them blocked
 * and sets its own mask. Its own session from before exec: a signal to the
 * caller's process group (`timeout -s KILL`, ctrl-c on a terminal) never reaches
 * it. A function of its own: nothing of the caller's frame lives across vfork. */
static __attribute__((noinline)) pid_t vfork_reaper(const char *path, int null, int sock_end,
                                                    volatile int *child_errno)
{
    char *const argv[] = {"pyrt-reaper", NULL};
    pid_t child = vfork();
    if (child == 0) {
        if (dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0 || dup2(sock_end, REAPER_SOCK) < 0 ||
            setsid() < 0) {
            *child_errno = errno;
            _exit(127);
        }
        execve(path, argv, environ);
        *child_errno = errno;
        _exit(127);
    }
    return child;
}

int pyrt_reaper_start(const char *reaper_path, int *sock, pid_t *pid, struct pyrt_error *e)
{
    int sv[2] = {-1, -1}, child_end = -1, null = -1, rc = -1;

    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
        pyrt_fail(e, "socketpair", "reaper");
        goto out;
    }
    /* Above stdio and REAPER_SOCK, so that the child's dup2s cannot clobber them. */
    child_end = fcntl(sv[1], F_DUPFD_CLOEXEC, REAPER_SOCK + 1);
    if (child_end < 0) {
        pyrt_fail(e, "fcntl", "reaper socket");
        goto out;
    }
    int low = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (low < 0) {
        pyrt_fail(e, "open", "/dev/null");
        goto out;
    }
    null = fcntl(low, F_DUPFD_CLOEXEC, REAPER_SOCK + 1);
    close(low);
    if (null < 0) {
        pyrt_fail(e, "fcntl", "/dev/null");
        goto out;
    }

    sigset_t all, old;
    sigfillset(&all);
    int err = pthread_sigmask(SIG_SETMASK, &all, &old);
    if (err != 0) {
        pyrt_fail_errno(e, err, "sigprocmask", "reaper");
        goto out;
    }
    volatile int child_errno = 0;
    pid_t child = vfork_reaper(reaper_path, null, child_end, &child_errno);
    int fork_errno = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL); /* the mask it had: cannot fail */
    if (child < 0) {
        pyrt_fail_errno(e, fork_errno, "fork", "reaper");
        goto out;
    }
    if (child_errno != 0) { /* it exited: reap it */
        int status;
        while (waitpid(child, &status, 0) < 0 && errno == EINTR)
            ;
        pyrt_fail_errno(e, child_errno, "exec reaper", reaper_path); /* not "exec": that is the container's */
        goto out;
    }
    *sock = sv[0];
    sv[0] = -1;
    *pid = child;
    rc = 0;
out:;
    int fds[] = {sv[0], sv[1], child_end, null};
    for (size_t i = 0; i < sizeof fds / sizeof *fds; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    return rc;
}

/* -- the pyrt-reaper program ---------------------------------------------------- */

static void close_all(const int *fds, size_t n)
{
    for (size_t i = 0; i < n; i++)
        close(fds[i]);
}

/* The payload of an 'a' or 'r' message: NUL-terminated words, at least one,
 * each an absolute path (the clean-up command's program and its arguments, or
 * directories). Returns a NULL-terminated vector (one allocation) or NULL when the
 * payload is not that. */
static char **parse_words(const char *p, size_t len, int all_absolute)
{
    if (len < 2 || p[0] != '/' || p[len - 1] != '\0')
        return NULL;
    for (size_t i = 0; all_absolute && i < len; i += strlen(p + i) + 1)
        if (p[i] != '/')
            return NULL;
    size_t words = 0;
    for (size_t i = 0; i < len; i++)
        words += p[i] == '\0';
    char **v = malloc((words + 1) * sizeof *v + len);
    if (!v)
        return NULL;
    char *text = (char *)(v + words + 1);
    memcpy(text, p, len);
    size_t k = 0;
    for (size_t i = 0; i < len; i += strlen(text + i) + 1)
        v[k++] = text + i;
    v[k] = NULL;
    return v;
}

/* Close every fd from `first` on (close_range, or one by one before Linux 5.9). */
static void close_from(unsigned int first)
{
    if (pyrt_close_range(first, ~0U, 0) == 0)
        return;
    long max = sysconf(_SC_OPEN_MAX);
    for (long fd = first; fd < (max > 0 ? max : 1024); fd++)
        close((int)fd);
}

int pyrt_reaper_main(int argc, char **argv)
{
    (void)argv;
    if (argc != 1)
        return 127;
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            signal(sig, SIG_DFL); /* EINVAL for the libc-reserved ones: fine */
    sigset_t blocked, none;
    sigfillset(&blocked);
    sigemptyset(&none);
    int sync_sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGTRAP, SIGSYS};
    for (size_t i = 0; i < sizeof sync_sigs / sizeof *sync_sigs; i++)
        sigdelset(&blocked, sync_sigs[i]);
    if (sigprocmask(SIG_SETMASK, &blocked, NULL) < 0)
        return 1;
    /* Nothing of the caller's but the socket (stdio is /dev/null), and no hold on
     * its working directory; the clean-up command does not get the socket. */
    close_from(REAPER_SOCK + 1);
    if (chdir("/") < 0 || fcntl(REAPER_SOCK, F_SETFD, FD_CLOEXEC) < 0)
        return 1;

    static char buf[PYRT_REAPER_MAX_MESSAGE];
    int pidfd = -1;
    char **cleanup = NULL, **dirs = NULL;
    for (;;) {
        int fds[PYRT_MAX_PASSED_FDS];
        size_t nfds = 0;
        ssize_t n = pyrt_recv_fds(REAPER_SOCK, buf, sizeof buf, fds, &nfds);
        if (n < 0 && errno == EMSGSIZE) { /* not a message of ours: dropped */
            close_all(fds, nfds);
            continue;
        }
        if (n <= 0) /* the caller's end is closed (no empty messages are sent): it died */
            break;
        if (buf[0] == 'd') /* the caller ended the run itself */
            return 0;
        if (buf[0] == 'p' && nfds == 1) {
            if (pidfd >= 0)
                close(pidfd);
            pidfd = fds[0];
            continue;
        }
        close_all(fds, nfds);
        if (buf[0] == 'a' || buf[0] == 'r') {
            char **v = parse_words(buf + 1, (size_t)n - 1, buf[0] == 'r');
            char ***slot = buf[0] == 'a' ? &cleanup : &dirs;
            if (v) {
                free(*slot);
                *slot = v;
            }
        }
    }

    if (pidfd >= 0) {
        if (pyrt_pidfd_send_signal(pidfd, SIGKILL, NULL, 0) == 0 || errno == ESRCH) {
            struct pollfd p = {.fd = pidfd, .events = POLLIN};
            while (poll(&p, 1, -1) < 0 && errno == EINTR)
                ;
        }
        close(pidfd);
    }
    /* Only empty directories go (cgroups the dead caller made for its process):
     * whatever another process has put in one meanwhile keeps it. */
    for (char **d = dirs; d && *d; d++) {
        if (rmdir(*d) < 0) {
            /* gone already, or not empty: left as it is (nobody to tell) */
        }
    }
    if (!cleanup)
        return 0;
    if (sigprocmask(SIG_SETMASK, &none, NULL) < 0)
        return 1;
    execv(cleanup[0], cleanup);
    return 127;
}
