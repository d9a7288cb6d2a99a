/* The one child tail (see tail.h). */
#include "tail.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "console.h"
#include "err.h"
#include "execpath.h"
#include "fdio.h"
#include "identity.h"
#include "oci.h"
#include "resolve.h"
#include "seccomp_load.h"
#include "spawn.h" /* struct pyrt_rlimit */
#include "syscalls.h"

#ifndef MFD_EXEC
#define MFD_EXEC 0x0010U
#endif
#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010
#endif

int pyrt_child_begin(struct pyrt_error *e)
{
    signal(SIGPIPE, SIG_DFL);
    signal(SIGXFSZ, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    if (sigprocmask(SIG_SETMASK, &none, NULL) < 0)
        return pyrt_fail(e, "sigprocmask", "");
    return 0;
}

int pyrt_set_rlimits(const struct pyrt_rlimit *rl, size_t n, struct pyrt_error *e)
{
    for (size_t i = 0; i < n; i++)
        if (setrlimit(rl[i].resource, &rl[i].limit) < 0)
            return pyrt_fail(e, "setrlimit", "");
    return 0;
}

int pyrt_close_fds_except(int a, int b, int c, int d, struct pyrt_error *e)
{
    int keep[4] = {a, b, c, d};
    for (int i = 0; i < 4; i++) /* sort, four elements */
        for (int j = i + 1; j < 4; j++)
            if (keep[j] < keep[i]) {
                int t = keep[i];
                keep[i] = keep[j];
                keep[j] = t;
            }
    unsigned int next = 3;
    for (int i = 0; i < 4; i++) {
        if (keep[i] < (int)next)
            continue;
        if ((unsigned int)keep[i] > next && pyrt_close_range(next, (unsigned int)keep[i] - 1, 0) < 0)
            return pyrt_fail(e, "close_range", "");
        next = (unsigned int)keep[i] + 1;
    }
    if (pyrt_close_range(next, ~0U, 0) < 0)
        return pyrt_fail(e, "close_range", "");
    return 0;
}

int pyrt_sealed_copy(const char *path, struct pyrt_error *e)
{
    int src = open(path, O_RDONLY | O_CLOEXEC);
    if (src < 0)
        return pyrt_fail(e, "open init", path);
    struct stat st;
    if (fstat(src, &st) < 0) {
        int err = errno;
        close(src);
        return pyrt_fail_errno(e, err, "stat init", path);
    }
    /* MFD_EXEC: executable even where vm.memfd_noexec asks otherwise (6.3+);
     * older kernels do not know the flag and make it executable anyway. */
    int fd = (int)syscall(SYS_memfd_create, "pyrt-init", MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_EXEC);
    if (fd < 0 && errno == EINVAL)
        fd = (int)syscall(SYS_memfd_create, "pyrt-init", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) {
        int err = errno;
        close(src);
        return pyrt_fail_errno(e, err, "memfd_create", "pyrt-init");
    }
    off_t left = st.st_size;
    while (left > 0) {
        ssize_t n = sendfile(fd, src, NULL, (size_t)left);
        if (n <= 0) {
            int err = n < 0 ? errno : EIO;
            close(src);
            close(fd);
            return pyrt_fail_errno(e, err, "copy init", path);
        }
        left -= n;
    }
    close(src);
    if (fcntl(fd, F_ADD_SEALS, F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE) < 0) {
        int err = errno;
        close(fd);
        return pyrt_fail_errno(e, err, "seal", "pyrt-init");
    }
    return fd;
}

/* cwd: resolved from the root with openat2 (symlinks scoped to it, no magic links,
 * so never through an fd the process may hold), then checked: the kernel names a
 * cwd outside the process's root "(unreachable)...". */
static int enter_cwd(const char *cwd, struct pyrt_error *e)
{
    const char *want = cwd && *cwd ? cwd : "/";
    int root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root < 0)
        return pyrt_fail(e, "open", "/");
    int fd = pyrt_open_in_root(root, want, O_PATH | O_DIRECTORY);
    int err = errno;
    close(root);
    if (fd < 0)
        return pyrt_fail_errno(e, err, "chdir", want);
    int rc = fchdir(fd);
    err = errno;
    close(fd);
    if (rc < 0)
        return pyrt_fail_errno(e, err, "chdir", want);
    char buf[4096];
    long n = syscall(SYS_getcwd, buf, sizeof buf);
    if (n < 0 && errno != ERANGE && errno != ENAMETOOLONG)
        return pyrt_fail(e, "getcwd", want);
    if (n > 0 && buf[0] != '/')
        return pyrt_fail_errno(e, EXDEV, "chdir (outside the container's root)", want);
    return 0;
}

/* --init: this process (the container's pid 1) forks; the child execs the
 * program, this process execs the tiny init, which forwards signals to the
 * program and reaps every child. Signals stay blocked from before the fork until
 * the init waits for them, so none sent to pid 1 in between is lost. The program
 * starts once pid 1 is the init (the close-on-exec pipe `gate` closes on that exec). */
static int run_init(const struct pyrt_tail *t, struct pyrt_error *e)
{
    sigset_t all, none;
    sigfillset(&all);
    sigemptyset(&none);
    int gate[2];
    if (pipe2(gate, O_CLOEXEC) < 0)
        return pyrt_fail(e, "pipe", "init");
    if (sigprocmask(SIG_SETMASK, &all, NULL) < 0)
        return pyrt_fail(e, "sigprocmask", "init");
    pid_t child = (pid_t)pyrt_fork(); /* without glibc's atfork handlers */
    if (child < 0)
        return pyrt_fail(e, "fork", "init");
    if (child == 0) {
        close(gate[1]);
        close(t->init_fd);
        char c;
        ssize_t n;
        while ((n = read(gate[0], &c, 1)) < 0 && errno == EINTR)
            ;
        if (n != 0) /* pid 1 never writes: EOF is its exec (if that fails, it kills us) */
            return pyrt_fail_errno(e, n < 0 ? errno : EPROTO, "wait for init", "");
        close(gate[0]);
        if (sigprocmask(SIG_SETMASK, &none, NULL) < 0)
            return pyrt_fail(e, "sigprocmask", "");
        pyrt_exec_path(t->argv, t->envp, t->path, e);
        return -1;
    }
    close(gate[0]);
    char num[24];
    char *const argv[] = {"pyrt-init", pyrt_itoa(child, num), NULL};
    char *const envp[] = {NULL};
    syscall(SYS_execveat, t->init_fd, "", argv, envp, AT_EMPTY_PATH);
    int err = errno;
    kill(child, SIGKILL);
    return pyrt_fail_errno(e, err, "exec", "pyrt-init");
}

int pyrt_tail(const struct pyrt_tail *t, struct pyrt_error *e)
{
    if (pyrt_setup_stdio(t->stdio, e) < 0)
        return -1;
    if (pyrt_setup_console(t->console_fd, t->uid, t->gid, e) < 0)
        return -1;
    /* Nothing of the caller's survives past here: only stdio, the error pipe, the
     * init and the OCI start fd, before any path from the image or the user is used. */
    if (pyrt_close_fds_except(t->errfd, t->init_fd, t->oci ? t->oci->wait_fd : -1, -1, e) < 0)
        return -1;
    if (t->host_root) {
        if (t->cwd && chdir(t->cwd) < 0)
            return pyrt_fail(e, "chdir", t->cwd);
    } else if (enter_cwd(t->cwd, e) < 0) {
        return -1;
    }
    /* A session of its own: the caller's terminal (if stdio is one) is then not the
     * container's controlling terminal, so TIOCSTI and job control cannot reach it.
     * A process that already leads its session (a parked pool member) keeps it. */
    if (getsid(0) != getpid() && setsid() < 0)
        return pyrt_fail(e, "setsid", "");
    if (t->ctty && isatty(0) && ioctl(0, TIOCSCTTY, 0) < 0)
        return pyrt_fail(e, "set controlling terminal", "stdin");
    if (t->oci && pyrt_oci_before_identity(t->oci, e) < 0)
        return -1;
    /* Without no_new_privs a filter needs CAP_SYS_ADMIN: load it while we have it. */
    if (t->seccomp && !t->no_new_privs &&
        pyrt_load_seccomp(t->seccomp, t->seccomp_len, t->seccomp_flags, e) < 0)
        return -1;
    if (pyrt_setup_identity(t->set_user, t->uid, t->gid, t->groups, t->ngroups, t->caps, e) < 0)
        return -1;
    if (t->no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return pyrt_fail(e, "no_new_privs", "");
    umask(t->umask >= 0 ? (mode_t)t->umask : 022);
    if (t->oci && pyrt_oci_after_identity(t->oci, e) < 0)
        return -1;
    if (t->oci && pyrt_oci_wait(t->oci, t->argv[0], t->path, e) < 0) /* create/start */
        goto failed;
    /* Last, so the filter only ever sees the program's (or its init's) calls, and
     * nothing pyrt needs is subject to it but execve. */
    if (t->seccomp && t->no_new_privs &&
        pyrt_load_seccomp(t->seccomp, t->seccomp_len, t->seccomp_flags, e) < 0)
        goto failed;
    if (t->init_fd >= 0)
        run_init(t, e);
    else
        pyrt_exec_path(t->argv, t->envp, t->path, e);
failed:
    if (t->oci)
        pyrt_oci_late_error(e); /* after "waiting" nobody reads the error pipe */
    return -1;
}
