/* See rt_cgroup.h: systemd scopes (pyrt/cgroups/systemd.py's start_unit) and an
 * ordinary user's delegated subtree (pyrt/cgroups/delegation.py), for
 * pyrt-runtime's native create. */
#include "rt_cgroup.h"

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rt_cgroup_internal.h"
#include "rt_proc.h"

/* -- delegation ------------------------------------------------------------------- */

#define HOW_TO                                                                                                     \
    "cgroups for an ordinary user need cgroup v2 and a subtree systemd delegates to you, with pyrt run inside "    \
    "it: run as root: loginctl enable-linger %s, then run pyrt in your session or with systemd-run --user "        \
    "--scope; for controllers beyond cpu, memory and pids, a Delegate= drop-in for user@.service"

/* os.path.normpath's effect on the paths compared here: no trailing slash */
static size_t trimmed(const char *s)
{
    size_t n = strlen(s);
    while (n > 1 && s[n - 1] == '/')
        n--;
    return n;
}

int rt_cgroup_delegated_root(char *buf, size_t len)
{
    const struct rt_layout *lay = rt_layout();
    if (lay == NULL || !lay->unified[0] || lay->nv1 > 0)
        return -1;
    char *text = rt_cg_read_text("/proc/self/cgroup");
    if (text == NULL)
        return -1;
    char own[PATH_MAX] = "";
    for (char *line = text; line && *line;) {
        char *end = strchr(line, '\n');
        if (strncmp(line, "0::", 3) == 0) {
            size_t n = end ? (size_t)(end - line - 3) : strlen(line + 3);
            snprintf(own, sizeof own, "%.*s", (int)n, line + 3);
            break;
        }
        line = end ? end + 1 : NULL;
    }
    free(text);
    size_t n = strlen(own); /* .strip() */
    while (n && (own[n - 1] == ' ' || own[n - 1] == '\t' || own[n - 1] == '\r'))
        own[--n] = 0;
    if (!own[0] || strcmp(own, "/") == 0)
        return -1;
    uid_t uid = geteuid();
    char d[PATH_MAX * 2], top[PATH_MAX * 2] = "";
    const char *rel = own + strspn(own, "/");
    snprintf(d, sizeof d, "%s/%s", lay->unified, rel);
    size_t ul = trimmed(lay->unified);
    while (!(trimmed(d) == ul && strncmp(d, lay->unified, ul) == 0)) {
        char p[sizeof d + 16];
        struct stat st;
        snprintf(p, sizeof p, "%s/cgroup.procs", d);
        if (stat(p, &st) < 0 || st.st_uid != uid)
            break;
        snprintf(top, sizeof top, "%s", d);
        char *slash = strrchr(d, '/');
        if (slash == NULL || slash == d)
            break;
        *slash = 0;
    }
    char want[64];
    snprintf(want, sizeof want, "user@%u.service", rt_host_uid()); /* the host's uid (a user namespace's root) */
    size_t tl = strlen(top), wl = strlen(want);
    if (!top[0] || tl < wl || strcmp(top + tl - wl, want) != 0 || tl <= ul + 1)
        return -1;
    if ((size_t)snprintf(buf, len, "%s", top + ul + 1) >= len)
        return -1;
    return 0;
}

int rt_cgroup_require_delegation(struct rt_ctx *ctx, const char *what)
{
    char root[PATH_MAX];
    if (!rt_ordinary_user() || rt_cgroup_delegated_root(root, sizeof root) == 0)
        return 0;
    /* the user's name from /etc/passwd (read without NSS: pyrt-runtime is linked
       statically), else the uid, as delegation.py says it */
    char name[64];
    unsigned uid = rt_host_uid(); /* in a user namespace too: the user the host knows */
    snprintf(name, sizeof name, "%u", uid);
    FILE *f = fopen("/etc/passwd", "re");
    if (f != NULL) {
        struct passwd *pw;
        while ((pw = fgetpwent(f)) != NULL)
            if (pw->pw_uid == uid && pw->pw_name != NULL) {
                snprintf(name, sizeof name, "%s", pw->pw_name);
                break;
            }
        fclose(f);
    }
    char hint[1024];
    snprintf(hint, sizeof hint, HOW_TO, name);
    return rt_fail(ctx, "%s: %s (%s)", what, strerror(EPERM), hint);
}

/* -- systemd scopes ------------------------------------------------------------------- */

/* busctl call ... Manager `method`: 0, or -1 with the error as systemd.py's _busctl */
static int busctl(struct rt_ctx *ctx, const char *method, const char *signature, char *const *args)
{
    char *argv[64];
    size_t n = 0;
    argv[n++] = "busctl";
    argv[n++] = rt_ordinary_user() ? "--user" : "--system";
    argv[n++] = "call";
    argv[n++] = "org.freedesktop.systemd1";
    argv[n++] = "/org/freedesktop/systemd1";
    argv[n++] = "org.freedesktop.systemd1.Manager";
    argv[n++] = (char *)method;
    argv[n++] = (char *)signature;
    for (size_t i = 0; args[i] && n < 63; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    struct rt_proc p = {.path = "busctl", .argv = argv, .capture = 1, .timeout = 30};
    if (rt_proc_run(&p) < 0)
        return rt_fail(ctx, "systemd %s \"%s\": %s", method, args[0], strerror(errno));
    if (p.exec_errno == ENOENT) {
        rt_proc_free(&p);
        return rt_fail(ctx, "systemd cgroup manager \"busctl\": %s (busctl not found: systemd's cgroup manager "
                            "needs it (pyrt's --cgroup-manager cgroupfs, pyrt-runtime without --systemd-cgroup as "
                            "root, do without))",
                       strerror(ENOENT));
    }
    if (p.status == 0 && !p.timed_out) {
        rt_proc_free(&p);
        return 0;
    }
    char why[1024];
    const char *e = p.err ? p.err : "";
    e += strspn(e, " \t\n\r");
    size_t len = strlen(e);
    while (len && strchr(" \t\n\r", e[len - 1]))
        len--;
    snprintf(why, sizeof why, "%.*s", (int)len, e);
    if (p.timed_out && !why[0])
        snprintf(why, sizeof why, "busctl timed out");
    if (strstr(why, "connect to bus"))
        snprintf(why + strlen(why), sizeof why - strlen(why),
                 "; is systemd running? (pyrt's --cgroup-manager cgroupfs, pyrt-runtime without --systemd-cgroup "
                 "as root, do without it)");
    rt_proc_free(&p);
    return rt_fail(ctx, "systemd %s \"%s\": %s%s%s%s", method, args[0], strerror(EIO), why[0] ? " (" : "", why,
                   why[0] ? ")" : "");
}

/* A process that sleeps until killed, already reparented away from us, in a
 * session of its own (systemd.py's _placeholder): its pid, or -1 with errno. */
static pid_t placeholder(void)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0)
        return -1;
    pid_t child = fork();
    if (child < 0) {
        int e = errno;
        close(fds[0]);
        close(fds[1]);
        errno = e;
        return -1;
    }
    if (child == 0) {
        if (setsid() < 0)
            _exit(1);
        pid_t pid = fork();
        if (pid != 0) {
            int w = pid > 0 ? (int)write(fds[1], &pid, sizeof pid) : -1;
            _exit(w == (int)sizeof pid ? 0 : 1);
        }
        int null = open("/dev/null", O_RDWR);
        if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0)
            _exit(127);
        if (syscall(SYS_close_range, 3U, ~0U, 0U) < 0)
            for (int fd = 3; fd < 4096; fd++)
                close(fd);
        execlp("sleep", "sleep", "infinity", (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    pid_t pid = -1;
    ssize_t n;
    while ((n = read(fds[0], &pid, sizeof pid)) < 0 && errno == EINTR)
        ;
    close(fds[0]);
    int status;
    while (waitpid(child, &status, 0) < 0 && errno == EINTR)
        ;
    if (n != (ssize_t)sizeof pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        errno = ECHILD;
        return -1;
    }
    return pid;
}

/* systemd.py's slice_path: "a-b.slice" -> "a.slice/a-b.slice" */
static void slice_path(const char *slice, char *out, size_t len)
{
    size_t stem = strlen(slice) > 6 ? strlen(slice) - 6 : 0, o = 0;
    out[0] = 0;
    for (size_t i = 0; i <= stem; i++)
        if (i == stem || slice[i] == '-')
            o += (size_t)snprintf(out + o, o < len ? len - o : 0, "%s%.*s.slice", o ? "/" : "", (int)i, slice);
}

int rt_systemd_start_unit(struct rt_ctx *ctx, const char *unit, const char *slice, const char *description,
                          const char *scope)
{
    const struct rt_layout *lay = rt_layout();
    char spath[PATH_MAX * 2 + 2];
    if (scope == NULL) {
        char sp[PATH_MAX];
        slice_path(slice, sp, sizeof sp);
        snprintf(spath, sizeof spath, "%s/%.*s", sp, PATH_MAX - 1, unit);
        scope = spath;
    }
    if (strlen(scope) >= PATH_MAX)
        return rt_fail(ctx, "systemd start scope \"%.64s...\": %s", scope, strerror(ENAMETOOLONG));
    pid_t pid = placeholder();
    if (pid < 0)
        return rt_fail(ctx, "start the placeholder of \"%s\": %s", unit, strerror(errno));
    char pids[24];
    snprintf(pids, sizeof pids, "%d", (int)pid);
    char *args[] = {(char *)unit, "fail",      "4",    "Description", "s",   (char *)description,
                    "Slice",      "s",         (char *)slice,   "Delegate",    "b",   "true",
                    "PIDs",       "au",        "1",    pids,          "0",   NULL};
    if (busctl(ctx, "StartTransientUnit", "ssa(sv)a(sa(sv))", args) < 0)
        goto undo;
    /* the job runs asynchronously: done once the placeholder is in */
    char want[PATH_MAX + 16], path[64];
    snprintf(want, sizeof want, "0::/%.4095s\n", scope);
    snprintf(path, sizeof path, "/proc/%d/cgroup", (int)pid);
    double deadline = rt_now() + 10;
    for (;;) {
        char *text = rt_cg_read_text(path);
        if (text == NULL) {
            rt_fail(ctx, "open \"%s\": %s", path, strerror(errno));
            goto undo;
        }
        int in = strcmp(text, want) == 0;
        free(text);
        if (in)
            break;
        if (rt_now() > deadline) {
            rt_fail(ctx, "systemd start scope \"%s\": %s (the placeholder never moved in)", scope, strerror(ETIMEDOUT));
            goto undo;
        }
        rt_sleep(0.002);
    }
    char sup[PATH_MAX * 2 + 32], procs[PATH_MAX * 2 + 48];
    snprintf(sup, sizeof sup, "%.4095s/%.4095s/supervisor", lay ? lay->unified : "", scope);
    snprintf(procs, sizeof procs, "%s/cgroup.procs", sup);
    if (mkdir(sup, 0755) < 0) {
        rt_fail(ctx, "create cgroup \"%s\": %s", sup, strerror(errno));
        goto undo;
    }
    int fd = open(procs, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, pids, strlen(pids)) < 0) {
        rt_fail(ctx, "%s \"%s\": %s", fd < 0 ? "open" : "write", procs, strerror(errno));
        if (fd >= 0)
            close(fd);
        goto undo;
    }
    close(fd);
    return 0;
undo: {
    /* what got made; the first failure is the one to report */
    struct rt_ctx quiet = *ctx;
    (void)rt_systemd_stop_unit(&quiet, unit, scope);
    kill(pid, SIGKILL);
    return -1;
}
}
