/* The parent's part of a container's user namespace (see userns.h). */
#include "userns.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "err.h"
#include "fdio.h"
#include "syscalls.h"

/* A map holds at most 340 lines (the kernel's limit) of three numbers. */
#define MAX_MAP_WORDS (340 * 3)

static int write_proc(pid_t pid, const char *file, const char *data, struct pyrt_error *e)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, file);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return pyrt_fail(e, "open", path);
    int rc = pyrt_write_all(fd, data, strlen(data));
    int err = errno;
    close(fd);
    return rc < 0 ? pyrt_fail_errno(e, err, "write", path) : 0;
}

struct helper {
    const char *what; /* "uid map", "gid map" */
    const char *path;
    pid_t pid;
    int out; /* its stdout and stderr */
    char words[4096];
    char *argv[MAX_MAP_WORDS + 3];
    char pidstr[24];
    char msg[400];
};

/* Start `newuidmap PID inside outside count ...` with the map's numbers as its
 * arguments, its output on a pipe. */
static int helper_start(struct helper *h, pid_t target, const char *map, struct pyrt_error *e)
{
    h->pid = -1;
    h->out = -1;
    h->msg[0] = '\0';
    if (pyrt_strlcpy(h->words, map, sizeof h->words) + 1 >= sizeof h->words)
        return pyrt_fail_errno(e, E2BIG, h->what, "longer than a page");
    size_t n = 0;
    h->argv[n++] = (char *)h->path;
    h->argv[n++] = pyrt_itoa(target, h->pidstr);
    for (char *save = NULL, *w = strtok_r(h->words, " \t\n", &save); w; w = strtok_r(NULL, " \t\n", &save)) {
        if (n >= MAX_MAP_WORDS + 2)
            return pyrt_fail_errno(e, E2BIG, h->what, "more than 340 lines");
        h->argv[n++] = w;
    }
    h->argv[n] = NULL;
    if (n < 5 || (n - 2) % 3)
        return pyrt_fail_errno(e, EINVAL, h->what, map);

    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) < 0)
        return pyrt_fail(e, "pipe", h->what);
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (devnull < 0) {
        int err = errno;
        close(pipefd[0]);
        close(pipefd[1]);
        return pyrt_fail_errno(e, err, "open", "/dev/null");
    }
    static char *const envp[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL};
    volatile int exec_err = 0; /* set by the child, which shares our memory until it execs */
    /* vfork: no page tables copied from a big caller. The child only moves fds and
     * execs; every signal stays blocked in it (no handler of the caller may run
     * on our stack), and the helper starts with nothing of ours but stdio. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid_t pid = vfork();
    if (pid == 0) {
        if (dup2(devnull, 0) < 0 || dup2(pipefd[1], 1) < 0 || dup2(pipefd[1], 2) < 0 ||
            pyrt_close_range(3, ~0U, 0) < 0) {
            exec_err = errno;
            _exit(127);
        }
        execve(h->path, h->argv, envp);
        exec_err = errno;
        _exit(127);
    }
    int err = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    close(devnull);
    close(pipefd[1]);
    if (pid < 0) {
        close(pipefd[0]);
        return pyrt_fail_errno(e, err, "vfork", h->path);
    }
    h->pid = pid;
    if (exec_err) { /* the child has exited already: vfork waits for exec or exit */
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
        h->pid = -1;
        close(pipefd[0]);
        return pyrt_fail_errno(e, exec_err, "exec", h->path);
    }
    h->out = pipefd[0];
    return 0;
}

/* Wait for a started helper: 0 when it succeeded, else -1 with its complaint. */
static int helper_finish(struct helper *h, struct pyrt_error *e)
{
    size_t got = 0;
    for (;;) {
        char buf[256];
        ssize_t n = read(h->out, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        size_t take = (size_t)n < sizeof h->msg - 1 - got ? (size_t)n : sizeof h->msg - 1 - got;
        memcpy(h->msg + got, buf, take);
        got += take;
    }
    h->msg[got] = '\0';
    close(h->out);
    h->out = -1;
    int status = 0;
    pid_t r;
    while ((r = waitpid(h->pid, &status, 0)) < 0 && errno == EINTR)
        ;
    if (r < 0)
        return pyrt_fail(e, "wait for", h->path);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    /* "newuidmap: uid range [1-65537) -> [100000-165536) not allowed\n": keep the
     * first line, without the program's name */
    char *line = h->msg, *nl = strchr(line, '\n');
    if (nl)
        *nl = '\0';
    const char *base = strrchr(h->path, '/');
    base = base ? base + 1 : h->path;
    size_t blen = strlen(base);
    if (strncmp(line, base, blen) == 0 && line[blen] == ':')
        line += blen + 1;
    while (*line == ' ')
        line++;
    char op[32];
    snprintf(op, sizeof op, "%s (%s)", h->what, base);
    if (!*line)
        line = WIFEXITED(status) ? "failed" : "killed";
    return pyrt_fail_errno(e, EPERM, op, line);
}

int pyrt_userns_write_maps(const struct pyrt_spawn_spec *s, pid_t pid, struct pyrt_error *e)
{
    struct helper uh = {.what = "uid map", .path = s->uid_map_helper, .pid = -1, .out = -1};
    struct helper gh = {.what = "gid map", .path = s->gid_map_helper, .pid = -1, .out = -1};
    int rc = 0;
    /* The helpers run at the same time: each is an exec of a setuid program. */
    if (s->uid_map && s->uid_map_helper)
        rc = helper_start(&uh, pid, s->uid_map, e);
    if (rc == 0 && s->gid_map && s->gid_map_helper)
        rc = helper_start(&gh, pid, s->gid_map, e);
    if (rc == 0 && s->uid_map && !s->uid_map_helper)
        rc = write_proc(pid, "uid_map", s->uid_map, e);
    if (rc == 0 && s->gid_map && !s->gid_map_helper) {
        /* Root allows setgroups in the namespace; an ordinary user must deny it
         * before it may write a gid map (kernels older than 3.19 have no file). */
        if (write_proc(pid, "setgroups", s->setgroups_deny ? "deny" : "allow", e) < 0 && e->err != ENOENT)
            rc = -1;
        else if (write_proc(pid, "gid_map", s->gid_map, e) < 0)
            rc = -1;
    }
    struct pyrt_error he;
    memset(&he, 0, sizeof he);
    if (uh.pid > 0 && helper_finish(&uh, &he) < 0 && rc == 0) {
        *e = he;
        rc = -1;
    }
    if (gh.pid > 0 && helper_finish(&gh, &he) < 0 && rc == 0) {
        *e = he;
        rc = -1;
    }
    return rc;
}

int pyrt_userns_setgroups_denied(void)
{
    char buf[16];
    int fd = open("/proc/self/setgroups", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    return strncmp(buf, "deny", 4) == 0;
}

int pyrt_userns_create(const struct pyrt_spawn_spec *s, struct pyrt_error *e)
{
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) < 0)
        return pyrt_fail(e, "pipe", "user namespace");
    struct pyrt_clone_args ca;
    memset(&ca, 0, sizeof ca);
    ca.flags = CLONE_NEWUSER;
    ca.exit_signal = SIGCHLD;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid_t pid = (pid_t)pyrt_clone3(&ca, sizeof ca);
    if (pid == 0) { /* holds the namespace until the parent has an fd of it */
        char c;
        close(pipefd[1]);
        while (read(pipefd[0], &c, 1) < 0 && errno == EINTR)
            ;
        _exit(0);
    }
    int err = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    close(pipefd[0]);
    if (pid < 0) {
        close(pipefd[1]);
        return pyrt_fail_errno(e, err, "clone", "new user namespace");
    }
    int fd = -1;
    if (pyrt_userns_write_maps(s, pid, e) == 0) {
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/ns/user", (int)pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            pyrt_fail(e, "open", path);
    }
    close(pipefd[1]);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
    return fd;
}

/* The child runs its whole setup on (a copy of) this stack: a parked one keeps a
 * 128 KiB message on it. Pages are only made when touched. */
static int entered;

int pyrt_userns_enter(int fd)
{
    if (setns(fd, CLONE_NEWUSER) < 0)
        return -1;
    entered = 1;
    return 0;
}

int pyrt_userns_entered(void)
{
    return entered;
}

#define JOINER_STACK (1024 * 1024)

struct joiner {
    int userns_fd;
    int nstype;
    struct pyrt_clone_args *ca;
    void (*fn)(void *);
    void *arg;
    pid_t pid;
    int err;
    const char *op;
};

/* The intermediate: it shares the caller's memory and fds but has a credentials
 * and namespace set of its own, so it may join the user namespace that the
 * caller (a threaded process) cannot. */
static int joiner_main(void *p)
{
    struct joiner *j = p;
    if (setns(j->userns_fd, j->nstype) < 0) {
        j->err = errno;
        j->op = "setns";
        return 1;
    }
    pid_t pid = (pid_t)pyrt_clone3(j->ca, sizeof *j->ca);
    if (pid == 0) {
        j->fn(j->arg); /* in the child's own copy of memory, on a copy of this stack */
        _exit(127);
    }
    if (pid < 0) {
        j->err = errno;
        j->op = "clone";
        return 1;
    }
    j->pid = pid;
    return 0;
}

pid_t pyrt_userns_clone(int userns_fd, int join_mnt, struct pyrt_clone_args *ca, void (*fn)(void *), void *arg,
                        const char **op)
{
    struct joiner j = {.userns_fd = userns_fd, .nstype = CLONE_NEWUSER | (join_mnt ? CLONE_NEWNS : 0), .ca = ca, .fn = fn, .arg = arg, .pid = -1, .err = 0, .op = "clone"};
    ca->flags |= CLONE_PARENT;
    ca->exit_signal = 0; /* CLONE_PARENT: the intermediate's own, SIGCHLD */
    void *stack = mmap(NULL, JOINER_STACK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK | MAP_NORESERVE, -1, 0);
    if (stack == MAP_FAILED) {
        *op = "mmap";
        return -1;
    }
    pid_t mid = clone(joiner_main, (char *)stack + JOINER_STACK, CLONE_VM | CLONE_VFORK | CLONE_FILES | SIGCHLD, &j);
    int err = errno;
    if (mid > 0) { /* it has exited (CLONE_VFORK): reap it */
        while (waitpid(mid, NULL, __WALL) < 0 && errno == EINTR)
            ;
    }
    munmap(stack, JOINER_STACK);
    if (mid < 0) {
        *op = "clone";
        errno = err;
        return -1;
    }
    if (j.pid < 0) {
        *op = j.op;
        errno = j.err ? j.err : ECHILD;
        return -1;
    }
    return j.pid;
}

struct netns_maker {
    int userns_fd;
    int fd;
    int err;
    const char *op;
};

/* The intermediate of pyrt_netns_create: it shares the caller's memory and fd
 * table, joins the user namespace (which a threaded caller cannot), unshares a
 * network namespace there and opens it: the fd lands in the caller's table. */
static int netns_maker_main(void *p)
{
    struct netns_maker *m = p;
    if (setns(m->userns_fd, CLONE_NEWUSER) < 0) {
        m->err = errno;
        m->op = "setns";
        return 1;
    }
    if (unshare(CLONE_NEWNET) < 0) {
        m->err = errno;
        m->op = "unshare";
        return 1;
    }
    m->fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (m->fd < 0) {
        m->err = errno;
        m->op = "open";
        return 1;
    }
    return 0;
}

int pyrt_netns_create(int userns_fd, struct pyrt_error *e)
{
    struct netns_maker m = {.userns_fd = userns_fd, .fd = -1, .err = 0, .op = "clone"};
    void *stack = mmap(NULL, JOINER_STACK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK | MAP_NORESERVE, -1, 0);
    if (stack == MAP_FAILED)
        return pyrt_fail(e, "mmap", "network namespace");
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old); /* no handler may run on the shared memory */
    pid_t mid = clone(netns_maker_main, (char *)stack + JOINER_STACK, CLONE_VM | CLONE_VFORK | CLONE_FILES | SIGCHLD, &m);
    int err = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (mid > 0) { /* it has exited (CLONE_VFORK): reap it */
        while (waitpid(mid, NULL, __WALL) < 0 && errno == EINTR)
            ;
    }
    munmap(stack, JOINER_STACK);
    if (mid < 0)
        return pyrt_fail_errno(e, err, "clone", "network namespace");
    if (m.fd < 0)
        return pyrt_fail_errno(e, m.err ? m.err : ECHILD, m.op,
                               strcmp(m.op, "setns") == 0 ? "the containers' user namespace" : "new network namespace");
    return m.fd;
}
