#include "init.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

static int status_code(int st)
{
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return 255;
}

int pyrt_init_main(int argc, char **argv)
{
    if (argc != 2)
        return 127;
    char *end;
    long child = strtol(argv[1], &end, 10);
    if (*end || child <= 0)
        return 127;

    sigset_t all;
    sigfillset(&all);
    /* Already blocked by the spawn core; blocked signals are never ignored, even
     * for a pid namespace's init, so each one reaches sigwaitinfo below. */
    if (sigprocmask(SIG_SETMASK, &all, NULL) < 0)
        return 127;
    if (signal(SIGCHLD, SIG_DFL) == SIG_ERR) /* SIG_IGN would reap children behind our back */
        return 127;
    if (getpid() != 1 && prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0)
        return 127; /* no pid namespace: it must still adopt the orphans */
    /* The program has the container's stdio; holding it here would keep a reader
     * from seeing EOF when the program closes its end. */
    for (int fd = 0; fd < 3; fd++)
        close(fd); /* EBADF (not open) is fine */

    for (;;) {
        int st;
        pid_t p;
        while ((p = waitpid(-1, &st, WNOHANG)) > 0)
            if (p == (pid_t)child)
                return status_code(st);
        if (p < 0 && errno == ECHILD) /* cannot happen while the program lives */
            return 127;
        siginfo_t si;
        int sig = sigwaitinfo(&all, &si);
        if (sig < 0 || sig == SIGCHLD)
            continue;
        kill((pid_t)child, sig); /* ESRCH: it exited, reaped on the next round */
    }
}
