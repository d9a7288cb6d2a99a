/* See rt_hooks.h. */
#include "rt_hooks.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "exec.h"
#include "fdio.h"
#include "rt_json.h"
#include "rt_proc.h"

#define ALL_NAMESPACES \
    (CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWCGROUP)

/* The strings of a JSON array (NULL-terminated, pointing into the tree; the
 * array itself malloc'd), `first` put in front when not NULL; NULL when empty. */
static char **strv(yajl_val arr, const char *first, int skip_first)
{
    size_t n = arr != NULL && YAJL_IS_ARRAY(arr) ? arr->u.array.len : 0;
    char **v = calloc(n + 2, sizeof *v);
    if (v == NULL)
        return NULL;
    size_t w = 0;
    if (first != NULL)
        v[w++] = (char *)first;
    for (size_t i = skip_first ? 1 : 0; i < n; i++)
        if (YAJL_IS_STRING(arr->u.array.values[i]))
            v[w++] = arr->u.array.values[i]->u.string;
    return v;
}

static int exit_code(int status)
{
    return WIFEXITED(status) ? WEXITSTATUS(status) : WIFSIGNALED(status) ? -WTERMSIG(status) : -1;
}

/* One hook in the runtime's namespaces. */
static int run_here(struct rt_ctx *ctx, yajl_val hook, const char *kind, const char *path, long long timeout,
                    const char *state, size_t len)
{
    yajl_val args = rt_json_get(hook, "args");
    char **argv = args != NULL && YAJL_IS_ARRAY(args) && args->u.array.len > 0 ? strv(args, NULL, 0)
                                                                              : strv(NULL, path, 0);
    char **envp = strv(rt_json_get(hook, "env"), NULL, 0);
    if (argv == NULL || envp == NULL) {
        free(argv);
        free(envp);
        return rt_fail(ctx, "%s hook %s: out of memory", kind, path);
    }
    struct rt_proc p = {.path = path, .argv = argv, .envp = envp, .input = state, .input_len = len,
                        .capture = 1, .timeout = timeout > 0 ? (double)timeout : 0};
    int rc = rt_proc_run(&p);
    int err = errno;
    free(argv);
    free(envp);
    if (rc < 0)
        return rt_fail(ctx, "%s hook %s: %s", kind, path, strerror(err));
    if (p.exec_errno) {
        rt_proc_free(&p);
        return rt_fail(ctx, "%s hook %s: %s", kind, path, strerror(p.exec_errno));
    }
    if (p.timed_out) {
        rt_proc_free(&p);
        return rt_fail(ctx, "%s hook %s: timed out after %llds", kind, path, timeout);
    }
    int code = exit_code(p.status);
    if (code != 0) {
        /* its stderr (else its stdout), stripped, as the message's detail */
        char *detail = p.err_len > 0 && p.err[strspn(p.err, " \t\r\n")] ? p.err : p.out;
        if (detail != NULL) {
            detail += strspn(detail, " \t\r\n");
            size_t n = strlen(detail);
            while (n > 0 && strchr(" \t\r\n", detail[n - 1]))
                detail[--n] = 0;
        }
        rt_fail(ctx, "%s hook %s exited with status %d%s%s", kind, path, code, detail && *detail ? ": " : "",
                detail && *detail ? detail : "");
        rt_proc_free(&p);
        return -1;
    }
    rt_proc_free(&p);
    return 0;
}

/* One hook in the container's namespaces (all of them, or all but its mount
 * namespace), exec'd by its absolute path. */
static int run_inside(struct rt_ctx *ctx, struct rt_container *c, yajl_val hook, const char *kind, const char *path,
                      long long timeout, const char *state, size_t len, int mount_ns)
{
    char **argv = strv(rt_json_get(hook, "args"), path, 1);
    char **envp = strv(rt_json_get(hook, "env"), NULL, 0);
    int pfd[2] = {-1, -1};
    if (argv == NULL || envp == NULL || pipe2(pfd, O_CLOEXEC) < 0) {
        int err = argv == NULL || envp == NULL ? ENOMEM : errno;
        free(argv);
        free(envp);
        return rt_fail(ctx, "%s hook %s: %s", kind, path, strerror(err));
    }
    struct pyrt_exec_spec s;
    memset(&s, 0, sizeof s);
    s.pid = rt_container_pid(c);
    s.pidfd = -1;
    s.start_time = (unsigned long long)rt_json_int(c->rec, "start_time", 0);
    s.namespaces = mount_ns ? ALL_NAMESPACES : (ALL_NAMESPACES & ~(uint64_t)CLONE_NEWNS);
    s.argv = (const char *const *)argv;
    s.envp = (const char *const *)envp;
    s.path = "/";
    s.cwd = "/";
    s.set_user = 1;
    s.caps = ~(uint64_t)0;
    s.umask = -1;
    s.stdio[0] = pfd[0];
    s.stdio[1] = s.stdio[2] = -1;
    s.cgroup_fd = -1;
    pid_t pid = 0;
    int pidfd = -1;
    struct pyrt_error e;
    int rc = pyrt_exec(&s, &pid, &pidfd, &e);
    close(pfd[0]);
    free(argv);
    free(envp);
    if (rc < 0) {
        close(pfd[1]);
        return rt_fail(ctx, "%s hook %s: %s%s%s%s: %s", kind, path, e.op, e.path[0] ? " \"" : "", e.path,
                       e.path[0] ? "\"" : "", strerror(e.err));
    }
    (void)pyrt_write_all(pfd[1], state, len); /* a hook that does not read is not an error */
    close(pfd[1]);
    int status = 0;
    struct rusage ru;
    int w = pyrt_wait(pidfd, timeout > 0 ? (int)(timeout * 1000) : -1, &status, &ru);
    if (w == 0) {
        kill(pid, SIGKILL);
        pyrt_wait(pidfd, -1, &status, &ru);
        close(pidfd);
        return rt_fail(ctx, "%s hook %s: timed out after %llds", kind, path, timeout);
    }
    close(pidfd);
    if (w < 0)
        return rt_fail(ctx, "%s hook %s: wait: %s", kind, path, strerror(errno));
    int code = exit_code(status);
    if (code != 0)
        return rt_fail(ctx, "%s hook %s exited with status %d", kind, path, code);
    return 0;
}

int rt_run_hooks(struct rt_ctx *ctx, struct rt_container *c, const char *kind, const char *state,
                 size_t state_len, int warn_only)
{
    yajl_val list = rt_json_get(rt_json_get(c->rec, "hooks"), kind);
    if (list == NULL || !YAJL_IS_ARRAY(list))
        return 0;
    int in_container = strcmp(kind, "createContainer") == 0 || strcmp(kind, "startContainer") == 0;
    for (size_t i = 0; i < list->u.array.len; i++) {
        yajl_val hook = list->u.array.values[i];
        const char *path = rt_json_str(hook, "path", NULL);
        long long timeout = rt_json_int(hook, "timeout", 0);
        int rc;
        if (path == NULL || !path[0])
            rc = rt_fail(ctx, "%s hook %zu: no path", kind, i);
        else if (in_container)
            rc = run_inside(ctx, c, hook, kind, path, timeout, state, state_len,
                            strcmp(kind, "startContainer") == 0);
        else
            rc = run_here(ctx, hook, kind, path, timeout, state, state_len);
        if (rc < 0) {
            if (!warn_only)
                return -1;
            rt_warn(ctx, "%s", ctx->err);
        }
    }
    return 0;
}
