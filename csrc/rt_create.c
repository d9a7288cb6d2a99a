/* See rt_create.h. The steps and their order are Operations.create's (the
 * comments name them); a failure anywhere undoes everything made so far: the
 * process killed and reaped, its cgroup removed, the poststop hooks run once the
 * create hooks could have run, the state directory removed. */
#include "rt_create.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <yajl/yajl_gen.h>

#include "oci.h"
#include "rt_cgroup.h"
#include "rt_cli.h"
#include "rt_config.h"
#include "rt_hooks.h"
#include "rt_json.h"
#include "rt_ops.h"
#include "rt_proc.h"
#include "rt_resources.h"
#include "rt_state.h"
#include "spawn.h"

static const char *CMD = "create"; /* the command an OSError is reported under, as Python's main() */

struct creation {
    struct rt_plan p;
    const char *id;
    int rootfd, dirfd;
    char created[64];
    int have_cg, scope;
    struct rt_cgroup_made cg;
    pid_t pid;
    unsigned long long start_time;
    int pidfd, wait_fd, msgfd, go_fd;
    int fds[RT_MAX_JOINS + 1];
    size_t nfds;
};

/* An OSError as Python's main() prints it ("create: [Errno 2] No such file or
 * directory: 'PATH'"). */
void rt_create_set_cmd(const char *cmd)
{
    CMD = cmd;
}

static int os_error(struct rt_ctx *ctx, int err, const char *path)
{
    if (path != NULL)
        return rt_fail(ctx, "%s: [Errno %d] %s: '%s'", CMD, err, strerror(err), path);
    return rt_fail(ctx, "%s: [Errno %d] %s", CMD, err, strerror(err));
}

/* -- the record ----------------------------------------------------------------------------------------------- */

static void gen_or_empty(yajl_gen g, const char *key, yajl_val v)
{
    rt_gen_str(g, key);
    if (v != NULL) {
        rt_json_gen(g, v);
    } else {
        yajl_gen_map_open(g);
        yajl_gen_map_close(g);
    }
}

/* state.json, written whole (a temporary file renamed), as state.py's save(). */
static int save(struct rt_ctx *ctx, struct creation *c, const char *status)
{
    struct rt_plan *p = &c->p;
    yajl_gen g = yajl_gen_alloc(NULL);
    if (g == NULL)
        return rt_fail(ctx, "create: out of memory");
    yajl_gen_map_open(g);
    rt_gen_kv_str(g, "id", c->id);
    rt_gen_kv_str(g, "status", status);
    rt_gen_kv_str(g, "bundle", p->bundle);
    rt_gen_kv_str(g, "rootfs", p->rootfs);
    rt_gen_kv_str(g, "created", c->created);
    rt_gen_kv_str(g, "owner", "");
    gen_or_empty(g, "annotations", p->annotations);
    rt_gen_kv_str(g, "oci_version", p->oci_version);
    gen_or_empty(g, "hooks", p->hooks);
    rt_gen_str(g, "process");
    rt_json_gen(g, p->process);
    rt_gen_str(g, "pid");
    yajl_gen_integer(g, c->pid);
    rt_gen_str(g, "start_time");
    yajl_gen_integer(g, (long long)c->start_time);
    rt_gen_str(g, "started");
    yajl_gen_bool(g, 0);
    rt_gen_str(g, "seccomp");
    if (p->seccomp != NULL)
        rt_json_gen(g, p->seccomp);
    else
        yajl_gen_null(g);
    if (c->scope) {
        rt_gen_kv_str(g, "systemd_unit", p->systemd_unit);
        rt_gen_kv_str(g, "systemd_scope", p->systemd_scope);
        rt_gen_kv_str(g, "cgroup_parent", p->cgroup_parent);
    }
    if (c->have_cg) {
        rt_gen_kv_str(g, "cgroup_name", p->cgroup_name);
        if (!c->scope)
            rt_gen_kv_str(g, "cgroup_parent", p->cgroup_parent);
    }
    yajl_gen_map_close(g);
    int rc = rt_state_write(c->dirfd, g);
    int err = errno;
    yajl_gen_free(g);
    if (rc < 0) {
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s/%s", ctx->root, c->id, RT_STATE_TMP);
        return os_error(ctx, err, path);
    }
    return 0;
}

/* The container's hooks of `kind` with its state (status NULL: as derived). */
static int hooks(struct rt_ctx *ctx, struct creation *cr, const char *kind, const char *status, int warn_only)
{
    yajl_val list = rt_cfg_get(cr->p.hooks, kind);
    if (list == NULL || !YAJL_IS_ARRAY(list) || list->u.array.len == 0)
        return 0;
    struct rt_container c;
    struct rt_ctx sub = *ctx;
    if (rt_container_open(&sub, &c, cr->id, 0) < 0)
        return warn_only ? 0 : rt_fail(ctx, "%s", sub.err);
    yajl_gen g = yajl_gen_alloc(NULL);
    rt_gen_state(g, &c, status);
    const unsigned char *buf;
    size_t len = 0;
    int rc;
    if (g == NULL || yajl_gen_get_buf(g, &buf, &len) != yajl_gen_status_ok) {
        rc = rt_fail(ctx, "%s hooks: out of memory", kind);
    } else {
        char *state = strndup((const char *)buf, len);
        rc = state != NULL ? rt_run_hooks(ctx, &c, kind, state, len, warn_only)
                           : rt_fail(ctx, "%s hooks: out of memory", kind);
        free(state);
    }
    if (g != NULL)
        yajl_gen_free(g);
    rt_container_close(&c);
    return rc;
}

/* -- steps ------------------------------------------------------------------------------------------------------- */

static int connect_console(struct rt_ctx *ctx, const char *path, int *out)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return os_error(ctx, errno, NULL);
    while (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        if (errno == EINTR)
            continue;
        int err = errno;
        close(fd);
        return rt_fail(ctx, "connect to the console socket %s: %s", path, strerror(err));
    }
    *out = fd;
    return 0;
}

/* operations.py's _open_namespace: a namespace file of linux.namespaces[].path,
 * never waiting (a FIFO put there since the config was checked) nor taking a
 * terminal, and a regular file (as nsfs files are) or refused. */
static int open_namespace(struct rt_ctx *ctx, const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0)
        return os_error(ctx, errno, path);
    struct stat st;
    int err = fstat(fd, &st) < 0 ? errno : S_ISREG(st.st_mode) ? 0 : EINVAL;
    if (err) {
        close(fd);
        return os_error(ctx, err, path);
    }
    return fd;
}

/* state.py's write_pid_file: the pid, no newline, through a new temporary file. */
int rt_write_pid_file(struct rt_ctx *ctx, const char *file, pid_t pid)
{
    char path[PATH_MAX], tmp[PATH_MAX + 64], rnd[17];
    if (rt_abspath(file, path, sizeof path) < 0)
        return os_error(ctx, errno, file);
    unsigned char bytes[8];
    int ufd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (ufd < 0 || read(ufd, bytes, sizeof bytes) != (ssize_t)sizeof bytes) {
        int err = errno;
        if (ufd >= 0)
            close(ufd);
        return os_error(ctx, err ? err : EIO, "/dev/urandom");
    }
    close(ufd);
    for (int i = 0; i < 8; i++)
        snprintf(rnd + 2 * i, 3, "%02x", bytes[i]);
    char *slash = strrchr(path, '/');
    *slash = 0;
    snprintf(tmp, sizeof tmp, "%s/.%s.%s.tmp", path[0] ? path : "", slash + 1, rnd);
    *slash = '/';
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0)
        return os_error(ctx, errno, tmp);
    char text[24];
    int n = snprintf(text, sizeof text, "%d", (int)pid);
    ssize_t w = write(fd, text, (size_t)n);
    int err = errno;
    if (close(fd) < 0 && w == n) {
        w = -1;
        err = errno;
    }
    if (w != n || rename(tmp, path) < 0) {
        if (w == n)
            err = errno;
        unlink(tmp);
        return os_error(ctx, err, w == n ? tmp : NULL);
    }
    return 0;
}

/* The state directory and the container's own (state.py's create_dir). */
static int create_dir(struct rt_ctx *ctx, struct creation *c)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s", ctx->root);
    for (char *s = path + 1; *s; s++) { /* os.makedirs(root, 0o700, exist_ok=True) */
        if (*s != '/')
            continue;
        *s = 0;
        if (mkdir(path, 0777) < 0 && errno != EEXIST)
            return os_error(ctx, errno, path);
        *s = '/';
    }
    if (mkdir(path, 0700) < 0 && errno != EEXIST)
        return os_error(ctx, errno, path);
    c->rootfd = open(ctx->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (c->rootfd < 0)
        return os_error(ctx, errno, ctx->root);
    if (mkdirat(c->rootfd, c->id, 0700) < 0) {
        if (errno == EEXIST)
            return rt_fail(ctx, "container '%s' already exists (in %s)", c->id, ctx->root);
        snprintf(path, sizeof path, "%s/%s", ctx->root, c->id);
        return os_error(ctx, errno, path);
    }
    c->dirfd = openat(c->rootfd, c->id, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (c->dirfd < 0) {
        snprintf(path, sizeof path, "%s/%s", ctx->root, c->id);
        int err = errno;
        unlinkat(c->rootfd, c->id, AT_REMOVEDIR);
        return os_error(ctx, err, path);
    }
    return 0;
}

/* Everything after the config is read, up to "created"; *made: the directory is
 * ours (to remove on failure), *in_hooks: the create hooks could have run. */
static int steps(struct rt_ctx *ctx, struct creation *c, const struct rt_create_opts *o, int *made, int *in_hooks)
{
    struct rt_plan *p = &c->p;
    RT_TRY(create_dir(ctx, c));
    *made = 1;
    rt_rfc3339(c->created, sizeof c->created);

    /* the cgroup (always: ps, kill --all, pause, delete use it) and its limits;
       with --systemd-cgroup in a delegated scope of its own */
    if (p->systemd_unit != NULL) {
        char desc[300];
        snprintf(desc, sizeof desc, "pyrt-runtime container %s", c->id);
        if (rt_systemd_start_unit(ctx, p->systemd_unit, p->systemd_slice, desc, p->systemd_scope) < 0)
            return -1;
        c->scope = 1;
    }
    const struct rt_layout *lay = rt_layout();
    if (lay != NULL && (lay->unified[0] || lay->nv1 > 0) && p->cgroup_name != NULL) {
        const struct rt_resources *res = p->has_resources ? &p->res : NULL;
        if (rt_cgroup_create(ctx, p->cgroup_name, p->cgroup_parent, res, 0, &c->cg) < 0)
            return -1;
        c->have_cg = 1;
        p->spec.cgroup_fd = c->cg.cgroup_fd;
        p->spec.cgroup_procs_fds = c->cg.procs_fds;
        p->spec.ncgroup_procs = c->cg.nprocs;
    }
    RT_TRY(rt_config_cgroup_mounts(ctx, p, c->have_cg ? &c->cg.cg : NULL));
    RT_TRY(save(ctx, c, "creating")); /* a crash from here on leaves what delete --force cleans up */

    p->oci.new_keyring = !o->no_new_keyring;
    if (mkfifoat(c->dirfd, RT_FIFO, 0600) < 0 ||
        (c->wait_fd = openat(c->dirfd, RT_FIFO, O_RDWR | O_CLOEXEC | O_NOFOLLOW)) < 0) {
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s/%s", ctx->root, c->id, RT_FIFO);
        return os_error(ctx, errno, path);
    }
    p->oci.wait_fd = c->wait_fd;
    if (o->console_socket != NULL && o->console_socket[0]) {
        RT_TRY(connect_console(ctx, o->console_socket, &c->fds[c->nfds]));
        if (p->terminal)
            p->spec.console_fd = c->fds[c->nfds];
        c->nfds++;
    }
    struct pyrt_ns_join *joins = rt_arena_alloc(&p->arena, (p->njoins + 1) * sizeof *joins);
    if (joins == NULL)
        return rt_fail(ctx, "create: out of memory");
    for (size_t i = 0; i < p->njoins; i++) {
        int fd = open_namespace(ctx, p->join_paths[i]);
        if (fd < 0)
            return -1;
        c->fds[c->nfds++] = fd;
        joins[i] = (struct pyrt_ns_join){.fd = fd, .type = p->join_types[i]};
    }
    p->oci.joins = joins;
    p->oci.njoins = p->njoins;
    if (p->pid_join != NULL) {
        int fd = open_namespace(ctx, p->pid_join);
        if (fd < 0)
            return -1;
        int rc = setns(fd, CLONE_NEWPID); /* our next child is born in it */
        int err = errno;
        close(fd);
        if (rc < 0)
            return rt_fail(ctx, "setns \"%s\": %s", p->pid_join, strerror(err));
    }

    struct pyrt_error e;
    int early = 0;
    static const char *const EARLY[] = {"prestart", "createRuntime", "createContainer"};
    for (int i = 0; i < 3; i++)
        early |= rt_cfg_truthy(rt_cfg_get(p->hooks, EARLY[i]));
    int rc;
    if (early) {
        /* the child stops for these hooks once its mounts are made, before
           pivot_root (csrc/oci.h), and goes on to wait for start after them */
        int pipefd[2];
        if (pipe2(pipefd, O_CLOEXEC) < 0)
            return os_error(ctx, errno, NULL);
        c->go_fd = pipefd[1];
        p->oci.hooks_fd = pipefd[0];
        p->oci.hooks_wfd = pipefd[1];
        rc = pyrt_spawn_oci(&p->spec, &c->pid, &c->pidfd, &c->msgfd, &e);
        close(pipefd[0]);
    } else {
        rc = pyrt_spawn(&p->spec, &c->pid, &c->pidfd, &e);
    }
    if (rc < 0) {
        char msg[700];
        rt_format_error(&e, msg, sizeof msg);
        return rt_fail(ctx, "%s", msg);
    }
    c->start_time = rt_start_time(c->pid);
    RT_TRY(save(ctx, c, "creating")); /* still "creating" (the hooks' state says so) until it waits */
    if (p->oom_set) {
        char path[64], text[16];
        snprintf(path, sizeof path, "/proc/%d/oom_score_adj", (int)c->pid);
        int n = snprintf(text, sizeof text, "%d", p->oom_score_adj);
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        ssize_t w = fd >= 0 ? write(fd, text, (size_t)n) : -1;
        int err = errno;
        if (fd >= 0 && close(fd) < 0 && w == n) {
            w = -1;
            err = errno;
        }
        if (w != n)
            return rt_fail(ctx, "set oom_score_adj to %d: %s", p->oom_score_adj, strerror(err));
    }
    *in_hooks = 1; /* from here a failure also runs the poststop hooks (the spec's step 12) */
    RT_TRY(hooks(ctx, c, "prestart", NULL, 0));
    RT_TRY(hooks(ctx, c, "createRuntime", NULL, 0));
    RT_TRY(hooks(ctx, c, "createContainer", NULL, 0));
    if (c->msgfd >= 0) {
        int fd = c->msgfd;
        c->msgfd = -1;
        if (pyrt_spawn_resume(fd, c->go_fd, &e) < 0) { /* pivot_root, the rest of the set-up, the wait */
            char msg[700];
            rt_format_error(&e, msg, sizeof msg);
            return rt_fail(ctx, "%s", msg);
        }
    }
    RT_TRY(save(ctx, c, "created"));
    if (o->pid_file != NULL && o->pid_file[0])
        RT_TRY(rt_write_pid_file(ctx, o->pid_file, c->pid));
    return 0;
}

/* The hand-over rule's first part (rt_config.h): what is decided before the
 * config is read. The reason, or NULL when create can be native. */
static const char *hand_over_reason(const char *id, const struct rt_create_opts *o)
{
    const char *force = getenv("PYRT_RUNTIME_PYTHON");
    if (force != NULL && force[0] && strcmp(force, "0") != 0)
        return "PYRT_RUNTIME_PYTHON is set";
    if (geteuid() != 0)
        return "an ordinary user's container (rootless)";
    if (o->preserve_fds != NULL && strcmp(o->preserve_fds, "0") != 0)
        return "--preserve-fds (refused by the Python implementation)";
    for (const char *s = id; *s; s++)
        if ((unsigned char)*s >= 0x80)
            return "a non-ASCII id (Python's \\w is Unicode's idea of a letter)";
    if (o->console_socket != NULL && strlen(o->console_socket) >= sizeof(((struct sockaddr_un *)0)->sun_path))
        return "a console socket path too long for a unix socket address";
    const struct rt_layout *lay = rt_layout();
    if (lay == NULL || (!lay->unified[0] && lay->nv1 == 0))
        return "no cgroup hierarchy is mounted";
    return NULL;
}

/* create; *out_pidfd (and *out_wait_fd when wanted) the caller's. */
static int create(struct rt_ctx *ctx, const char *id, const struct rt_create_opts *o, int *out_pidfd,
                  int *out_wait_fd)
{
    const char *why = hand_over_reason(id, o);
    if (why != NULL)
        return rt_defer(why);
    if (ctx->systemd_cgroup && (why = rt_systemd_unavailable()) != NULL)
        return rt_fail(ctx, "--systemd-cgroup: systemd cgroups are not available: %s; use cgroupfs (podman "
                            "--cgroup-manager cgroupfs; containerd: SystemdCgroup = false)", why);
    char bundle[PATH_MAX];
    if (rt_abspath(o->bundle != NULL && o->bundle[0] ? o->bundle : ".", bundle, sizeof bundle) < 0)
        return rt_defer("the bundle's path cannot be made absolute");
    struct creation c;
    memset(&c, 0, sizeof c);
    c.id = id;
    c.rootfd = c.dirfd = c.pidfd = c.wait_fd = c.msgfd = c.go_fd = -1;
    int rc = rt_config_load(ctx, bundle, &c.p);
    if (rc == 0)
        rc = rt_config_parse(ctx, &c.p, id, ctx->systemd_cgroup);
    if (rc < 0) {
        rt_plan_free(&c.p);
        return rc;
    }
    for (size_t i = 0; i < c.p.nwarnings; i++)
        rt_warn(ctx, "%s", c.p.warnings[i]);
    /* root of a user namespace (an ordinary user's are handed over): no device
       cgroup (the user namespace and the host's permissions keep devices out); a
       limit, or --systemd-cgroup, only with a delegated subtree (operations.py) */
    if (rt_ordinary_user() && c.p.systemd_unit == NULL &&
        ((c.p.has_resources && rt_resources_any(&c.p.res, 1)) || ctx->systemd_cgroup) &&
        rt_cgroup_require_delegation(ctx, ctx->systemd_cgroup ? "--systemd-cgroup" : "linux.resources") < 0) {
        rt_plan_free(&c.p);
        return -1;
    }
    if (c.p.terminal && (o->console_socket == NULL || !o->console_socket[0])) {
        rt_plan_free(&c.p);
        return rt_fail(ctx, "process.terminal is true: a --console-socket is needed to pass the terminal (set "
                            "terminal to false to run without one)");
    }
    if (rt_check_id(ctx, id) < 0) {
        rt_plan_free(&c.p);
        return -1;
    }

    int made = 0, in_hooks = 0;
    rc = steps(ctx, &c, o, &made, &in_hooks);
    if (c.have_cg)
        rt_cgroup_made_close(&c.cg);
    for (size_t i = 0; i < c.nfds; i++)
        close(c.fds[i]);
    if (c.msgfd >= 0)
        close(c.msgfd);
    if (c.go_fd >= 0)
        close(c.go_fd);
    if (rc < 0) {
        struct rt_ctx sub = *ctx;
        if (c.pidfd >= 0) {
            rt_kill_and_reap(c.pidfd);
            c.pidfd = -1;
        }
        if (c.wait_fd >= 0)
            close(c.wait_fd);
        c.wait_fd = -1;
        if (c.have_cg && rt_cgroup_remove(&sub, &c.cg.cg, 10) < 0)
            rt_warn(ctx, "remove cgroup: %s", sub.err);
        if (c.scope && rt_systemd_stop_unit(&sub, c.p.systemd_unit, c.p.systemd_scope) < 0)
            rt_warn(ctx, "stop the scope %s of %s: %s", c.p.systemd_unit, id, sub.err);
        if (in_hooks)
            (void)hooks(&sub, &c, "poststop", "stopped", 1);
        if (made)
            rt_container_remove(ctx, id);
    }
    if (c.dirfd >= 0)
        close(c.dirfd);
    if (c.rootfd >= 0)
        close(c.rootfd);
    rt_plan_free(&c.p);
    if (rc < 0)
        return rc;
    *out_pidfd = c.pidfd;
    if (out_wait_fd != NULL)
        *out_wait_fd = c.wait_fd;
    else
        close(c.wait_fd);
    return 0;
}

int rt_op_create(struct rt_ctx *ctx, const char *id, const struct rt_create_opts *o)
{
    CMD = "create";
    int pidfd = -1;
    int rc = create(ctx, id, o, &pidfd, NULL);
    if (rc == 0)
        close(pidfd);
    return rc;
}

/* -- run ------------------------------------------------------------------------------------------------------------ */

static int exists(struct rt_ctx *ctx, const char *id)
{
    char path[PATH_MAX];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s/%s", ctx->root, id, RT_STATE_FILE);
    return lstat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int rt_op_run(struct rt_ctx *ctx, const char *id, const struct rt_create_opts *o, int detach, int keep, int *code)
{
    CMD = "run";
    static const int SIGS[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
    const size_t NSIGS = sizeof SIGS / sizeof SIGS[0];
    int pidfd = -1, wait_fd = -1;
    *code = 0;
    if (!detach)
        rt_forward_hold(SIGS, NSIGS); /* from before its process exists: none is missed */
    int rc = create(ctx, id, o, &pidfd, detach ? NULL : &wait_fd);
    if (rc < 0) {
        if (!detach)
            rt_forward_release(SIGS, NSIGS);
        return rc;
    }
    if (detach) {
        rc = rt_op_start(ctx, id);
        if (rc < 0 && exists(ctx, id)) {
            struct rt_ctx sub = *ctx;
            (void)rt_op_delete(&sub, id, 1);
        }
        close(pidfd);
        return rc;
    }
    rt_forward_signals(ctx, pidfd, SIGS, NSIGS);
    close(wait_fd); /* (the process holds the FIFO open: start writes to it) */
    rc = rt_op_start(ctx, id);
    int status = 0;
    struct rusage ru;
    if (rc == 0) {
        int w;
        while ((w = pyrt_wait(pidfd, -1, &status, &ru)) < 0 && errno == EINTR)
            ;
        if (w < 0)
            rc = os_error(ctx, errno, NULL);
    }
    if (rc < 0) {
        struct rt_ctx sub = *ctx;
        rt_forward_stop();
        rt_kill_and_reap(pidfd);
        if (exists(ctx, id)) /* (a failed startContainer hook deleted it already) */
            (void)rt_op_delete(&sub, id, 1);
        return -1;
    }
    rt_forward_stop();
    close(pidfd);
    *code = WIFEXITED(status) ? WEXITSTATUS(status) : WIFSIGNALED(status) ? 128 + WTERMSIG(status) : 1;
    if (!keep)
        return rt_op_delete(ctx, id, 1);
    return 0;
}
