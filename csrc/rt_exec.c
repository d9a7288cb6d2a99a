/* pyrt-runtime's exec, natively: what pyrt/cli/oci_runtime.py's cmd_exec and
 * pyrt/ocirt/operations.py's Operations.exec do, with the same messages and exit
 * statuses. See rt_exec.h for what is handed over to Python instead. */
#include "rt_exec.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <yajl/yajl_gen.h>
#include <yajl/yajl_tree.h>

#include "exec.h"
#include "fdpass.h"
#include "syscalls.h"
#include "rt_cgroup.h"
#include "rt_config.h"
#include "rt_create.h"
#include "rt_json.h"
#include "rt_proc.h"
#include "rt_state.h"
#include "spawn.h"

/* A decimal id as Python's int() reads plain digits into the JSON number text
 * (leading zeros dropped); NULL (hand over) for anything else: signs, spaces,
 * underscores and non-digits are Python's to judge, as are 20 digits or more. */
static const char *digits(const char *s, char *buf, size_t cap)
{
    size_t n = strlen(s);
    if (n == 0 || n >= 20 || strspn(s, "0123456789") != n)
        return NULL;
    while (n > 1 && *s == '0')
        s++, n--;
    if (n >= cap)
        return NULL;
    memcpy(buf, s, n + 1);
    return buf;
}

static void gen_str(yajl_gen g, const char *s)
{
    yajl_gen_string(g, (const unsigned char *)s, strlen(s));
}

/* base[key] (a list or falsy) followed by the extra strings with keys `key` */
static int gen_list_plus(yajl_gen g, yajl_val base, const char *name, const struct rt_exec_opts *o, int key)
{
    yajl_val v = rt_json_get(base, name);
    if (v != NULL && !YAJL_IS_ARRAY(v) && rt_json_truthy(base, name))
        return rt_defer("exec: a list of the container's process is neither a list nor empty");
    gen_str(g, name);
    yajl_gen_array_open(g);
    if (v != NULL && YAJL_IS_ARRAY(v))
        for (size_t i = 0; i < v->u.array.len; i++)
            rt_json_gen(g, v->u.array.values[i]);
    for (int i = 0; i < o->nlist; i++)
        if (o->list_keys[i] == key)
            gen_str(g, o->list[i]);
    yajl_gen_array_close(g);
    return 0;
}

static int gen_user(yajl_gen g, yajl_val base_user, const struct rt_exec_opts *o)
{
    char ub[24], gb[24];
    const char *uid = NULL, *gid = "0";
    if (o->user != NULL && o->user[0]) {
        char u[32];
        const char *colon = strchr(o->user, ':');
        size_t n = colon ? (size_t)(colon - o->user) : strlen(o->user);
        if (n >= sizeof u)
            return rt_defer("exec: --user is not UID[:GID] in plain digits");
        memcpy(u, o->user, n);
        u[n] = 0;
        uid = digits(u, ub, sizeof ub);
        if (colon && colon[1] && (gid = digits(colon + 1, gb, sizeof gb)) == NULL)
            return rt_defer("exec: --user is not UID[:GID] in plain digits");
        if (uid == NULL)
            return rt_defer("exec: --user is not UID[:GID] in plain digits");
    }
    int ngids = 0;
    for (int i = 0; i < o->nlist; i++)
        ngids += o->list_keys[i] == RT_EXEC_GID;
    if (uid == NULL && ngids == 0)
        return 1; /* the user is the container's */
    if (uid == NULL && base_user != NULL && !YAJL_IS_OBJECT(base_user))
        return rt_defer("exec: the container's process.user is not an object");
    gen_str(g, "user");
    yajl_gen_map_open(g);
    if (uid != NULL) {
        gen_str(g, "uid");
        yajl_gen_number(g, uid, strlen(uid));
        gen_str(g, "gid");
        yajl_gen_number(g, gid, strlen(gid));
    } else if (base_user != NULL) {
        for (size_t i = 0; i < base_user->u.object.len; i++)
            if (strcmp(base_user->u.object.keys[i], "additionalGids") != 0) {
                gen_str(g, base_user->u.object.keys[i]);
                rt_json_gen(g, base_user->u.object.values[i]);
            }
    }
    if (ngids > 0) {
        gen_str(g, "additionalGids");
        yajl_gen_array_open(g);
        for (int i = 0; i < o->nlist; i++)
            if (o->list_keys[i] == RT_EXEC_GID) {
                char b[24];
                const char *d = digits(o->list[i], b, sizeof b);
                if (d == NULL)
                    return rt_defer("exec: an --additional-gids value is not plain digits");
                yajl_gen_number(g, d, strlen(d));
            }
        yajl_gen_array_close(g);
    }
    yajl_gen_map_close(g);
    return 0;
}

static int gen_caps(yajl_gen g, yajl_val base_caps, const struct rt_exec_opts *o)
{
    if (base_caps != NULL && !YAJL_IS_OBJECT(base_caps))
        return rt_defer("exec: the container's process.capabilities is not an object");
    static const char *const ADDED[] = {"bounding", "effective", "permitted", "ambient"};
    gen_str(g, "capabilities");
    yajl_gen_map_open(g);
    for (size_t i = 0; base_caps != NULL && i < base_caps->u.object.len; i++) {
        const char *k = base_caps->u.object.keys[i];
        int added = 0;
        for (int j = 0; j < 4; j++)
            added |= strcmp(k, ADDED[j]) == 0;
        if (!added) {
            gen_str(g, k);
            rt_json_gen(g, base_caps->u.object.values[i]);
        }
    }
    for (int j = 0; j < 4; j++)
        RT_TRY(gen_list_plus(g, base_caps, ADDED[j], o, RT_EXEC_CAP));
    yajl_gen_map_close(g);
    return 0;
}

/* _exec_process's command-line form: the container's own process with the
 * command line's args and flags, as a tree (*out). */
static int cmdline_process(struct rt_ctx *ctx, yajl_val base, const struct rt_exec_opts *o, yajl_val *out)
{
    if (base != NULL && !YAJL_IS_OBJECT(base) && !YAJL_IS_NULL(base))
        return rt_defer("exec: the container's recorded process is not an object");
    if (base != NULL && YAJL_IS_NULL(base))
        base = NULL;
    int caps = 0;
    for (int i = 0; i < o->nlist; i++)
        caps |= o->list_keys[i] == RT_EXEC_CAP;
    yajl_gen g = yajl_gen_alloc(NULL);
    if (g == NULL)
        return rt_fail(ctx, "out of memory");
    int rc = 0, user_done = 0;
    yajl_gen_map_open(g);
    for (size_t i = 0; base != NULL && i < base->u.object.len && rc == 0; i++) {
        const char *k = base->u.object.keys[i];
        yajl_val v = base->u.object.values[i];
        if (strcmp(k, "args") == 0 || strcmp(k, "env") == 0 || strcmp(k, "terminal") == 0 ||
            (strcmp(k, "cwd") == 0 && o->cwd != NULL && o->cwd[0]) ||
            (strcmp(k, "noNewPrivileges") == 0 && o->no_new_privs) || (strcmp(k, "capabilities") == 0 && caps))
            continue;
        if (strcmp(k, "user") == 0) {
            rc = gen_user(g, v, o);
            user_done = 1;
            if (rc != 1)
                continue;
            rc = 0;
        }
        gen_str(g, k);
        rt_json_gen(g, v);
    }
    if (rc == 0 && !user_done)
        rc = gen_user(g, NULL, o) == RT_DEFER ? RT_DEFER : 0;
    if (rc == 0) {
        gen_str(g, "args");
        yajl_gen_array_open(g);
        for (int i = 0; i < o->argc; i++)
            gen_str(g, o->argv[i]);
        yajl_gen_array_close(g);
        rc = gen_list_plus(g, base, "env", o, RT_EXEC_ENV);
    }
    if (rc == 0 && o->cwd != NULL && o->cwd[0]) {
        gen_str(g, "cwd");
        gen_str(g, o->cwd);
    }
    if (rc == 0) {
        gen_str(g, "terminal");
        yajl_gen_bool(g, o->tty);
        if (o->no_new_privs) {
            gen_str(g, "noNewPrivileges");
            yajl_gen_bool(g, 1);
        }
        if (caps)
            rc = gen_caps(g, rt_json_get(base, "capabilities"), o);
    }
    yajl_gen_map_close(g);
    const unsigned char *buf;
    size_t len;
    if (rc == 0 && yajl_gen_get_buf(g, &buf, &len) == yajl_gen_status_ok) {
        char *text = strndup((const char *)buf, len);
        char why[128];
        *out = text != NULL ? yajl_tree_parse(text, why, sizeof why) : NULL;
        free(text);
        if (*out == NULL)
            rc = rt_defer("exec: the process made from the command line could not be read back");
    } else if (rc == 0) {
        rc = rt_defer("exec: the process made from the command line could not be written");
    }
    yajl_gen_free(g);
    return rc;
}

/* The container's cgroup as the new process joins it (Cgroup.spawn_fds). */
static int cgroup_fds(struct rt_ctx *ctx, struct rt_container *c, int *v2, int *procs, size_t *nprocs)
{
    *v2 = -1;
    *nprocs = 0;
    const struct rt_cgroup *cg = rt_container_cgroup(c);
    if (cg == NULL)
        return 0;
    const char *failed = NULL;
    if (cg->v2[0] && (*v2 = open(cg->v2, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        failed = cg->v2;
    char path[PATH_MAX + 16];
    for (size_t i = 0; failed == NULL && i < cg->nv1; i++) {
        int dup = 0;
        for (size_t j = 0; j < i; j++)
            dup |= strcmp(cg->v1[j].dir, cg->v1[i].dir) == 0;
        if (dup)
            continue;
        snprintf(path, sizeof path, "%s/cgroup.procs", cg->v1[i].dir);
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
            failed = path;
        else
            procs[(*nprocs)++] = fd;
    }
    if (failed == NULL)
        return 0;
    int err = errno;
    rt_fail(ctx, "open cgroup \"%s\": %s", failed, strerror(err));
    for (size_t i = 0; i < *nprocs; i++)
        close(procs[i]);
    if (*v2 >= 0)
        close(*v2);
    *v2 = -1;
    *nprocs = 0;
    return -1;
}

/* pyrt/launch/tty.py's open_pty_in: a pty of the devpts instance in process
 * pid's root, opened through that root (*master, *slave), its size 24x80. Any
 * failure hands over (Python gives the error). */
static int open_pty_in(pid_t pid, int *master, int *slave)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/root", (int)pid);
    int rootfd = open(path, O_PATH | O_CLOEXEC);
    if (rootfd < 0)
        return rt_defer("exec: the container's root cannot be opened for a terminal (Python says why)");
    struct pyrt_open_how how = {.flags = O_RDWR | O_NOCTTY | O_CLOEXEC, .mode = 0, .resolve = RESOLVE_IN_ROOT};
    int m = pyrt_openat2(rootfd, "/dev/ptmx", &how, sizeof how);
    if (m < 0)
        m = pyrt_openat2(rootfd, "/dev/pts/ptmx", &how, sizeof how);
    close(rootfd);
    if (m < 0)
        return rt_defer("exec: no /dev/ptmx in the container (Python says why)");
    int unlock = 0;
    int s = ioctl(m, TIOCSPTLCK, &unlock) < 0 ? -1 : ioctl(m, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (s < 0) {
        close(m);
        return rt_defer("exec: the container's pty could not be opened (Python says why)");
    }
    struct winsize ws = {.ws_row = 24, .ws_col = 80};
    (void)ioctl(m, TIOCSWINSZ, &ws); /* (as Python: a size that does not take is no failure) */
    *master = m;
    *slave = s;
    return 0;
}

/* operations.py's _send_fd: the master over the console socket. */
static int send_console(struct rt_ctx *ctx, const char *path, int master)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int rc = fd < 0 ? -1 : 0;
    while (rc == 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
        if (errno != EINTR)
            rc = -1;
    static const char WHAT[] = "/dev/ptmx";
    if (rc == 0 && pyrt_send_fds(fd, WHAT, sizeof WHAT - 1, &master, 1) < 0)
        rc = -1;
    int err = errno;
    if (fd >= 0)
        close(fd);
    return rc < 0 ? rt_fail(ctx, "send the terminal over %s: %s", path, strerror(err)) : 0;
}

static int run_exec(struct rt_ctx *ctx, struct rt_container *c, struct rt_plan *p, const struct rt_exec_opts *o,
                    int *code)
{
    yajl_val sc = rt_json_get(c->rec, "seccomp");
    if (sc != NULL && rt_json_truthy(c->rec, "seccomp"))
        RT_TRY(rt_config_seccomp(ctx, p, sc));
    if (p->terminal && (o->console_socket == NULL || !o->console_socket[0]))
        return rt_fail(ctx, "exec with a terminal needs --console-socket");
    if (p->terminal && strlen(o->console_socket) >= sizeof(((struct sockaddr_un *)0)->sun_path))
        return rt_defer("exec: a console socket path too long for a unix socket address");
    int master = -1, slave = -1;
    if (p->terminal)
        RT_TRY(open_pty_in(rt_container_pid(c), &master, &slave));
    int v2, procs[RT_CG_MAX_V1];
    size_t nprocs;
    if (cgroup_fds(ctx, c, &v2, procs, &nprocs) < 0) {
        if (master >= 0)
            close(master), close(slave);
        return -1;
    }
    struct pyrt_exec_spec es;
    memset(&es, 0, sizeof es);
    es.pid = rt_container_pid(c);
    es.pidfd = -1;
    es.start_time = (unsigned long long)rt_json_int(c->rec, "start_time", 0);
    es.namespaces = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET | CLONE_NEWPID |
                    CLONE_NEWCGROUP;
    es.argv = p->spec.argv;
    es.envp = p->spec.envp;
    es.path = p->spec.path;
    es.cwd = p->spec.cwd;
    es.set_user = 1;
    es.uid = p->spec.uid;
    es.gid = p->spec.gid;
    es.groups = p->spec.groups;
    es.ngroups = p->spec.ngroups;
    es.caps = p->spec.caps;
    es.setup = p->spec.setup & PYRT_SETUP_NO_NEW_PRIVS;
    es.umask = p->spec.umask;
    es.rlimits = p->spec.rlimits;
    es.nrlimits = p->spec.nrlimits;
    es.stdio[0] = es.stdio[1] = es.stdio[2] = slave;
    if (p->terminal)
        es.setup |= PYRT_SETUP_SETSID;
    es.cgroup_fd = v2;
    es.cgroup_procs_fds = procs;
    es.ncgroup_procs = nprocs;
    es.seccomp = p->spec.seccomp;
    es.seccomp_len = p->spec.seccomp_len;
    es.seccomp_flags = p->spec.seccomp_flags;
    pid_t pid = 0;
    int pidfd = -1;
    struct pyrt_error e;
    struct rusage ru;
    static const int SIGS[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
    const size_t NSIGS = sizeof SIGS / sizeof SIGS[0];
    if (!o->detach)
        rt_forward_hold(SIGS, NSIGS); /* from before it runs: none is missed */
    int rc = pyrt_exec(&es, &pid, &pidfd, &e);
    for (size_t i = 0; i < nprocs; i++)
        close(procs[i]);
    if (v2 >= 0)
        close(v2);
    if (slave >= 0)
        close(slave);
    if (rc < 0) {
        char msg[700];
        rt_format_error(&e, msg, sizeof msg);
        if (master >= 0)
            close(master);
        return rt_fail(ctx, "exec in %s: %s", c->id, msg);
    }
    if (master >= 0) {
        rc = send_console(ctx, o->console_socket, master);
        close(master);
        if (rc < 0) {
            rt_kill_and_reap(pidfd); /* a process whose terminal nobody has is not left behind */
            return -1;
        }
    }
    if (o->pid_file != NULL && o->pid_file[0]) {
        rt_create_set_cmd("exec");
        if (rt_write_pid_file(ctx, o->pid_file, pid) < 0) {
            /* nobody would know of it */
            rt_kill_and_reap(pidfd);
            return -1;
        }
    }
    if (o->detach) {
        close(pidfd);
        *code = 0;
        return 0;
    }
    rt_forward_signals(ctx, pidfd, SIGS, NSIGS);
    int status = 0, w;
    while ((w = pyrt_wait(pidfd, -1, &status, &ru)) < 0 && errno == EINTR)
        ;
    int err = errno;
    rt_forward_stop();
    close(pidfd);
    if (w < 0)
        return rt_fail(ctx, "exec: [Errno %d] %s", err, strerror(err));
    *code = WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
    return 0;
}

int rt_op_exec(struct rt_ctx *ctx, const char *id, const struct rt_exec_opts *o, int *code)
{
    *code = 0;
    if (geteuid() != 0)
        return rt_defer("exec: an ordinary user (rootless) is not native yet");
    for (const char *s = id; *s; s++)
        if ((unsigned char)*s >= 0x80)
            return rt_defer("exec: a non-ASCII id (Python's \\w is Unicode's idea of a letter)");
    if (o->preserve_fds != NULL && strcmp(o->preserve_fds, "0") != 0)
        return rt_defer("exec: --preserve-fds other than 0");
    struct rt_container c;
    RT_TRY(rt_container_open(ctx, &c, id, 0));
    yajl_val proc = NULL;
    int rc;
    if (o->process != NULL && o->process[0])
        rc = rt_config_read(ctx, o->process, &proc);
    else if (o->argc == 0)
        rc = rt_usage(ctx, "exec needs a command (or --process FILE)");
    else
        rc = cmdline_process(ctx, rt_json_get(c.rec, "process"), o, &proc);
    const char *st = rc == 0 ? rt_container_status(&c) : "";
    if (rc == 0 && strcmp(st, "paused") == 0 && !o->ignore_paused)
        rc = rt_fail(ctx, "container %s is paused: resume it first", id);
    else if (rc == 0 && strcmp(st, "created") != 0 && strcmp(st, "running") != 0 && strcmp(st, "paused") != 0)
        rc = rt_fail(ctx, "container %s is %s: cannot exec in it", id, st);
    struct rt_plan p;
    memset(&p, 0, sizeof p);
    p.spec.umask = -1;
    if (rc == 0)
        rc = rt_config_process(ctx, &p, proc);
    if (rc == 0)
        rc = run_exec(ctx, &c, &p, o, code);
    rt_plan_free(&p);
    if (proc != NULL)
        yajl_tree_free(proc);
    rt_container_close(&c);
    return rc;
}
