/* pyrt-runtime: pyrt as an OCI runtime, with runc's command line, so that podman,
 * containerd (and anything else that drives runc or crun) run containers with
 * pyrt's C core. A native program: create, run, exec, state, start, kill, delete,
 * ps, list, pause, resume, features and spec are done here (csrc/rt_*.c) on the state
 * directory pyrt/ocirt/state.py also reads and writes. The create, run or exec
 * the native side does not take (csrc/rt_config.h's and rt_exec.h's hand-over
 * rule; PYRT_RUNTIME_PYTHON=1 for all of them), are handed to pyrt's Python
 * implementation (`python -P -m pyrt.cli.oci_runtime`, the same arguments).
 *
 *     pyrt-runtime [--root DIR] [--log FILE] [--log-format text|json] [--debug]
 *                  [--systemd-cgroup] COMMAND [OPTIONS] ...
 *
 * Options are taken with one or two dashes and as --opt=value, as runc's. An
 * error is one line on stderr (and a record in the --log file), exit status 1;
 * a usage error exits with 2. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yajl/yajl_gen.h>

#include "fdio.h"
#include "rt.h"
#include "rt_cli.h"
#include "rt_config_check.h"
#include "rt_create.h"
#include "rt_defaults.h"
#include "rt_exec.h"
#include "rt_json.h"
#include "rt_ops.h"
#include "rt_proc.h"
#include "rt_state.h"
#include "seccomp_compile.h"

#ifndef PYRT_VERSION
#define PYRT_VERSION "unknown"
#endif
#ifndef PYRT_PYTHON
#define PYRT_PYTHON ""
#endif


static const char USAGE[] =
    "usage: " PROG " [--root DIR] [--log FILE] [--log-format text|json] [--debug] [--systemd-cgroup] COMMAND ...\n"
    "\n"
    "commands: create, start, run, state, kill, delete, exec, ps, list, pause, resume, spec, features\n"
    "  create [--bundle B] [--pid-file F] [--console-socket S] ID   set up, wait for start\n"
    "  start ID · state ID · kill [--all] ID [SIGNAL] · delete [--force] ID\n"
    "  run [--bundle B] [--detach] ID · exec [--process F | ARGS] [-d] [-t] ID\n"
    "  ps [--format json] ID [PS-ARGS] · list [--format json] [--quiet] · pause ID · resume ID\n"
    "  spec [--bundle B] [--rootless] · features · --version\n"
    "\n"
    "create, run and exec are done by pyrt's Python implementation (python -m pyrt.cli.oci_runtime) when\n"
    "PYRT_RUNTIME_PYTHON=1 is set; otherwise they are native (what the native side does not take is\n"
    "handed over). COMMAND --help tells more.\n"
    "State: --root, else $PYRT_RUNTIME_ROOT, else /run/pyrt-runtime (an ordinary user:\n"
    "$XDG_RUNTIME_DIR/pyrt-runtime).\n";

struct help {
    const char *cmd, *text;
};

static const struct help HELP[] = {
    {"create", "create [--bundle B] [--pid-file F] [--console-socket S] [--no-pivot] [--no-new-keyring] ID\n"
               "  set the container up from B/config.json (default: the current directory) and leave its\n"
               "  process waiting for `start`\n"},
    {"run", "run [--bundle B] [--pid-file F] [--console-socket S] [--detach] ID\n"
            "  create + start; in the foreground also wait for the container and delete it\n"},
    {"exec", "exec [--process FILE | ARGS...] [--detach] [--pid-file F] [--console-socket S] [--tty]\n"
             "     [--cwd DIR] [--env K=V]... [--user UID[:GID]] ID\n"
             "  run another process in the container\n"},
    {"start", "start ID\n  let a created container's process run its program\n"},
    {"state", "state ID\n  print the container's state (JSON)\n"},
    {"kill", "kill [--all] ID [SIGNAL]\n  send SIGNAL (a name or number; default TERM) to the container's init,\n"
             "  or with --all to each of its processes\n"},
    {"delete", "delete [--force] ID\n  remove a stopped or created container; --force: any, killing it first\n"},
    {"ps", "ps [--format table|json] ID [PS-ARGS...]\n  the container's processes (table: ps's lines, ps -ef by "
           "default)\n"},
    {"list", "list [--format table|json] [--quiet]\n  the containers of the state directory\n"},
    {"pause", "pause ID\n  freeze every process of the container (its cgroup)\n"},
    {"resume", "resume ID\n  thaw a paused container\n"},
    {"spec", "spec [--bundle B] [--rootless]\n  write a default config.json into B (default: the current "
             "directory)\n"},
    {"features", "features\n  print what this runtime supports (JSON)\n"},
    {NULL, NULL},
};

static const struct optdef GLOBAL[] = {
    {"root", VALUE, K_ROOT}, {"log", VALUE, K_LOG}, {"log-format", VALUE, K_LOG_FORMAT},
    {"debug", FLAG, K_DEBUG}, {"systemd-cgroup", FLAG, K_SYSTEMD}, {"rootless", VALUE, K_ROOTLESS},
    {"criu", VALUE, K_CRIU}, {"version", FLAG, K_VERSION}, {"v", FLAG, K_VERSION}, {"help", FLAG, K_HELP},
    {"h", FLAG, K_HELP}, {NULL, FLAG, K_NKEYS}};
static const struct optdef NO_OPTS[] = {{NULL, FLAG, K_NKEYS}};
static const struct optdef KILL_OPTS[] = {{"all", FLAG, K_ALL}, {"a", FLAG, K_ALL}, {NULL, FLAG, K_NKEYS}};
static const struct optdef DELETE_OPTS[] = {{"force", FLAG, K_FORCE}, {"f", FLAG, K_FORCE}, {NULL, FLAG, K_NKEYS}};
static const struct optdef PS_OPTS[] = {{"format", VALUE, K_FORMAT}, {"f", VALUE, K_FORMAT}, {NULL, FLAG, K_NKEYS}};
static const struct optdef LIST_OPTS[] = {{"format", VALUE, K_FORMAT}, {"f", VALUE, K_FORMAT},
                                          {"quiet", FLAG, K_QUIET},    {"q", FLAG, K_QUIET},
                                          {NULL, FLAG, K_NKEYS}};
#define CREATE_OPT_DEFS                                                                                            \
    {"bundle", VALUE, K_BUNDLE}, {"b", VALUE, K_BUNDLE}, {"pid-file", VALUE, K_PID_FILE},                          \
        {"console-socket", VALUE, K_CONSOLE_SOCKET}, {"no-pivot", FLAG, K_NO_PIVOT},                               \
        {"no-new-keyring", FLAG, K_NO_NEW_KEYRING}, {"preserve-fds", VALUE, K_PRESERVE_FDS},                       \
        {"notify-socket", VALUE, K_NOTIFY_SOCKET}
static const struct optdef CREATE_OPTS[] = {CREATE_OPT_DEFS, {NULL, FLAG, K_NKEYS}};
static const struct optdef RUN_OPTS[] = {CREATE_OPT_DEFS, {"detach", FLAG, K_DETACH}, {"d", FLAG, K_DETACH},
                                         {"keep", FLAG, K_KEEP}, {NULL, FLAG, K_NKEYS}};
static const struct optdef EXEC_OPTS[] = {
    {"process", VALUE, K_PROCESS}, {"p", VALUE, K_PROCESS}, {"detach", FLAG, K_DETACH}, {"d", FLAG, K_DETACH},
    {"pid-file", VALUE, K_PID_FILE}, {"console-socket", VALUE, K_CONSOLE_SOCKET}, {"tty", FLAG, K_TTY},
    {"t", FLAG, K_TTY}, {"cwd", VALUE, K_CWD}, {"env", LIST, K_ENV}, {"e", LIST, K_ENV}, {"user", VALUE, K_USER},
    {"u", VALUE, K_USER}, {"additional-gids", LIST, K_GIDS}, {"g", LIST, K_GIDS}, {"cap", LIST, K_CAP},
    {"c", LIST, K_CAP}, {"no-new-privs", FLAG, K_NO_NEW_PRIVS}, {"preserve-fds", VALUE, K_PRESERVE_FDS},
    {"process-label", VALUE, K_LABEL}, {"apparmor", VALUE, K_APPARMOR}, {"ignore-paused", FLAG, K_IGNORE_PAUSED},
    {"cgroup", LIST, K_CGROUP}, {NULL, FLAG, K_NKEYS}};
static const struct optdef SPEC_OPTS[] = {{"bundle", VALUE, K_BUNDLE}, {"b", VALUE, K_BUNDLE},
                                          {"rootless", FLAG, K_ROOTLESS}, {NULL, FLAG, K_NKEYS}};

/* -- handing over to the Python implementation ------------------------------------------------------ */

/* create, run and exec: exec pyrt's Python implementation with our arguments. The
 * interpreter: the python3 (or python) next to this executable in its bin
 * directory (a venv's, or the one pip installed both into), else the one pyrt was
 * built with, else python3 on PATH. -P: the working directory (a bundle) is not put on its path. */
static int hand_over(struct rt_ctx *ctx, int argc, char **argv)
{
    char self[PATH_MAX - 16];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    char cands[3][PATH_MAX];
    int nc = 0;
    if (n > 0) {
        self[n] = 0;
        char *slash = strrchr(self, '/');
        if (slash != NULL) {
            *slash = 0;
            snprintf(cands[nc++], PATH_MAX, "%s/python3", self);
            snprintf(cands[nc++], PATH_MAX, "%s/python", self);
        }
    }
    if (PYRT_PYTHON[0])
        snprintf(cands[nc++], PATH_MAX, "%s", PYRT_PYTHON);
    char **nargv = calloc((size_t)argc + 5, sizeof *nargv);
    if (nargv == NULL)
        return rt_fail(ctx, "out of memory");
    for (int i = 0; i < nc; i++) {
        if (access(cands[i], X_OK) < 0)
            continue;
        nargv[0] = cands[i];
        nargv[1] = "-P";
        nargv[2] = "-m";
        nargv[3] = "pyrt.cli.oci_runtime";
        for (int k = 1; k < argc; k++)
            nargv[3 + k] = argv[k];
        fflush(NULL);
        execv(cands[i], nargv);
    }
    /* last: a python3 on PATH (a wheel built elsewhere, installed beside no python) */
    nargv[0] = "python3";
    nargv[1] = "-P";
    nargv[2] = "-m";
    nargv[3] = "pyrt.cli.oci_runtime";
    for (int k = 1; k < argc; k++)
        nargv[3 + k] = argv[k];
    execvp("python3", nargv);
    free(nargv);
    return rt_fail(ctx, "create, run and exec are done by pyrt's Python implementation: no Python found (%s%s%s, "
                   "python3 on PATH)", nc > 0 ? cands[0] : "", nc > 2 ? ", " : "", nc > 2 ? cands[2] : "");
}

/* -- commands ----------------------------------------------------------------------------------------- */

static int run_status; /* run's exit status: the container's */

static void create_opts(struct opts *o, struct rt_create_opts *c)
{
    memset(c, 0, sizeof *c);
    c->bundle = o->value[K_BUNDLE];
    c->pid_file = o->value[K_PID_FILE];
    c->console_socket = o->value[K_CONSOLE_SOCKET];
    c->preserve_fds = o->value[K_PRESERVE_FDS];
    c->no_new_keyring = o->flag[K_NO_NEW_KEYRING];
}

/* create and run: natively, unless the config is to be handed over (RT_DEFER) */
static int cmd_create(struct rt_ctx *ctx, struct opts *o, int run, int argc, char **argv)
{
    if (rt_one_id(ctx, o, run ? "run" : "create", 0) < 0)
        return -1;
    struct rt_create_opts c;
    create_opts(o, &c);
    int rc = run ? rt_op_run(ctx, o->pos[0], &c, o->flag[K_DETACH], o->flag[K_KEEP], &run_status)
                 : rt_op_create(ctx, o->pos[0], &c);
    if (rc == RT_DEFER) {
        char why[512];
        snprintf(why, sizeof why, "%s: handed over to pyrt's Python implementation: %s", run ? "run" : "create",
                 rt_defer_reason());
        rt_log_debug(why);
        hand_over(ctx, argc, argv);
        return -1;
    }
    return rc;
}

/* exec: natively, unless handed over (csrc/rt_exec.h) */
static int cmd_exec(struct rt_ctx *ctx, struct opts *o, int argc, char **argv)
{
    if (o->npos < 1)
        return rt_usage(ctx, "exec takes a container id");
    struct rt_exec_opts e;
    memset(&e, 0, sizeof e);
    e.process = o->value[K_PROCESS];
    e.argv = o->pos + 1;
    e.argc = o->npos - 1;
    int keys[o->nl + 1];
    int n = 0;
    for (int i = 0; i < o->nl; i++) {
        int k = o->lk[i] == K_ENV ? RT_EXEC_ENV : o->lk[i] == K_GIDS ? RT_EXEC_GID : o->lk[i] == K_CAP ? RT_EXEC_CAP : 0;
        if (k) {
            o->lv[n] = o->lv[i];
            keys[n++] = k;
        }
    }
    e.list = (const char *const *)o->lv;
    e.list_keys = keys;
    e.nlist = n;
    e.cwd = o->value[K_CWD];
    e.user = o->value[K_USER];
    e.pid_file = o->value[K_PID_FILE];
    e.console_socket = o->value[K_CONSOLE_SOCKET];
    e.preserve_fds = o->value[K_PRESERVE_FDS];
    e.detach = o->flag[K_DETACH];
    e.tty = o->flag[K_TTY];
    e.no_new_privs = o->flag[K_NO_NEW_PRIVS];
    e.ignore_paused = o->flag[K_IGNORE_PAUSED];
    const char *force = getenv("PYRT_RUNTIME_PYTHON");
    int rc = force != NULL && force[0] && strcmp(force, "0") != 0 ? rt_defer("PYRT_RUNTIME_PYTHON is set")
                                                                   : rt_op_exec(ctx, o->pos[0], &e, &run_status);
    if (rc == RT_DEFER) {
        char why[512];
        snprintf(why, sizeof why, "exec: handed over to pyrt's Python implementation: %s", rt_defer_reason());
        rt_log_debug(why);
        hand_over(ctx, argc, argv);
        return -1;
    }
    return rc;
}

static int cmd_state(struct rt_ctx *ctx, struct opts *o)
{
    if (rt_one_id(ctx, o, "state", 0) < 0)
        return -1;
    yajl_gen g = yajl_gen_alloc(NULL);
    int rc = rt_op_state(ctx, o->pos[0], g);
    if (rc == 0)
        rc = rt_print_gen(ctx, g, "  ");
    yajl_gen_free(g);
    return rc;
}

static int cmd_start(struct rt_ctx *ctx, struct opts *o)
{
    return rt_one_id(ctx, o, "start", 0) < 0 ? -1 : rt_op_start(ctx, o->pos[0]);
}

static int cmd_kill(struct rt_ctx *ctx, struct opts *o)
{
    if (rt_one_id(ctx, o, "kill", 1) < 0)
        return -1;
    int sig = SIGTERM;
    if (o->npos > 1 && (sig = rt_parse_signal(o->pos[1])) < 0)
        return rt_usage(ctx, "invalid signal '%s'", o->pos[1]);
    return rt_op_kill(ctx, o->pos[0], sig, o->flag[K_ALL]);
}

static int cmd_delete(struct rt_ctx *ctx, struct opts *o)
{
    return rt_one_id(ctx, o, "delete", 0) < 0 ? -1 : rt_op_delete(ctx, o->pos[0], o->flag[K_FORCE]);
}

static int cmd_pause(struct rt_ctx *ctx, struct opts *o, int freeze)
{
    return rt_one_id(ctx, o, freeze ? "pause" : "resume", 0) < 0 ? -1 : rt_op_pause(ctx, o->pos[0], freeze);
}

static int cmd_ps(struct rt_ctx *ctx, struct opts *o)
{
    if (o->npos < 1)
        return rt_usage(ctx, "ps takes a container id");
    const char *format = o->value[K_FORMAT] ? o->value[K_FORMAT] : "table";
    if (strcmp(format, "table") != 0 && strcmp(format, "json") != 0)
        return rt_usage(ctx, "--format must be table or json");
    pid_t *pids = NULL;
    size_t n = 0;
    if (rt_op_pids(ctx, o->pos[0], &pids, &n) < 0)
        return -1;
    if (strcmp(format, "json") == 0) {
        yajl_gen g = yajl_gen_alloc(NULL);
        yajl_gen_array_open(g);
        for (size_t i = 0; i < n; i++)
            yajl_gen_integer(g, pids[i]);
        yajl_gen_array_close(g);
        int rc = rt_print_gen(ctx, g, NULL);
        yajl_gen_free(g);
        free(pids);
        return rc;
    }
    /* `ps ARGS` (default -ef), its header and the lines of the container's pids */
    char *def[] = {"ps", "-ef", NULL};
    char **argv = def;
    if (o->npos > 1) {
        argv = calloc((size_t)o->npos + 1, sizeof *argv);
        if (argv == NULL) {
            free(pids);
            return rt_fail(ctx, "out of memory");
        }
        argv[0] = "ps";
        for (int i = 1; i < o->npos; i++)
            argv[i] = o->pos[i];
    }
    struct rt_proc p = {.path = "ps", .argv = argv, .capture = 1, .timeout = 60};
    int rc = rt_proc_run(&p);
    int err = errno;
    if (argv != def)
        free(argv);
    if (rc < 0 || p.exec_errno) {
        free(pids);
        rt_proc_free(&p);
        return rt_fail(ctx, "ps: %s", strerror(rc < 0 ? err : p.exec_errno));
    }
    if (p.err_len)
        fwrite(p.err, 1, p.err_len, stderr);
    rc = 0;
    char *text = p.out, *save = NULL;
    char *header = text ? strtok_r(text, "\n", &save) : NULL;
    if (header != NULL) {
        int col = -1, k = 0;
        char hcopy[4096];
        snprintf(hcopy, sizeof hcopy, "%s", header);
        char *hs = NULL;
        for (char *f = strtok_r(hcopy, " \t", &hs); f; f = strtok_r(NULL, " \t", &hs), k++)
            if (col < 0 && strcmp(f, "PID") == 0)
                col = k;
        if (col < 0) {
            rc = rt_fail(ctx, "ps output has no PID column");
        } else {
            printf("%s\n", header);
            for (char *line = strtok_r(NULL, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                char lcopy[8192];
                snprintf(lcopy, sizeof lcopy, "%s", line);
                char *ls = NULL, *f = strtok_r(lcopy, " \t", &ls);
                for (k = 0; f && k < col; k++)
                    f = strtok_r(NULL, " \t", &ls);
                if (f == NULL || strspn(f, "0123456789") != strlen(f))
                    continue;
                long pid = strtol(f, NULL, 10);
                for (size_t i = 0; i < n; i++)
                    if (pids[i] == (pid_t)pid) {
                        printf("%s\n", line);
                        break;
                    }
            }
        }
    }
    rt_proc_free(&p);
    free(pids);
    return rc;
}

static int cmd_list(struct rt_ctx *ctx, struct opts *o)
{
    if (o->npos > 0)
        return rt_usage(ctx, "list takes no arguments");
    const char *format = o->value[K_FORMAT] ? o->value[K_FORMAT] : "table";
    if (strcmp(format, "table") != 0 && strcmp(format, "json") != 0)
        return rt_usage(ctx, "--format must be table or json");
    char **ids = rt_list_ids(ctx);
    if (ids == NULL)
        return rt_fail(ctx, "out of memory");
    int json = strcmp(format, "json") == 0;
    yajl_gen g = json ? yajl_gen_alloc(NULL) : NULL;
    if (g != NULL)
        yajl_gen_array_open(g);
    /* the table: columns as wide as their widest cell, 3 spaces apart */
    size_t rows = 0, cap = 0;
    char **cells = NULL; /* 6 per row */
    for (char **id = ids; *id; id++) {
        struct rt_container c;
        struct rt_ctx quiet = *ctx;
        if (rt_container_open(&quiet, &c, *id, 0) < 0)
            continue; /* gone meanwhile, or a broken record: not listed */
        if (o->flag[K_QUIET]) {
            printf("%s\n", *id);
        } else if (json) {
            rt_gen_state(g, &c, NULL);
        } else {
            if (rows == cap) {
                cap = cap ? cap * 2 : 16;
                char **more = realloc(cells, cap * 6 * sizeof *cells);
                if (more == NULL) {
                    rt_container_close(&c);
                    break;
                }
                cells = more;
            }
            const char *st = rt_container_status(&c);
            char pid[24];
            snprintf(pid, sizeof pid, "%d", strcmp(st, "stopped") == 0 ? 0 : (int)rt_container_pid(&c));
            const char *owner = rt_json_str(c.rec, "owner", "");
            cells[rows * 6 + 0] = strdup(*id);
            cells[rows * 6 + 1] = strdup(pid);
            cells[rows * 6 + 2] = strdup(st);
            cells[rows * 6 + 3] = strdup(rt_json_str(c.rec, "bundle", ""));
            cells[rows * 6 + 4] = strdup(rt_json_str(c.rec, "created", ""));
            cells[rows * 6 + 5] = strdup(owner[0] ? owner : "root");
            rows++;
        }
        rt_container_close(&c);
    }
    rt_free_list(ids);
    int rc = 0;
    if (json) {
        yajl_gen_array_close(g);
        rc = rt_print_gen(ctx, g, NULL);
        yajl_gen_free(g);
    } else if (!o->flag[K_QUIET]) {
        static const char *const head[6] = {"ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"};
        size_t w[6];
        for (int k = 0; k < 6; k++) {
            w[k] = strlen(head[k]);
            for (size_t r = 0; r < rows; r++)
                if (cells[r * 6 + k] && strlen(cells[r * 6 + k]) > w[k])
                    w[k] = strlen(cells[r * 6 + k]);
        }
        for (size_t r = 0; r <= rows; r++) {
            char line[8192];
            size_t len = 0;
            for (int k = 0; k < 6; k++) {
                const char *v = r == 0 ? head[k] : cells[(r - 1) * 6 + k] ? cells[(r - 1) * 6 + k] : "";
                int written = snprintf(line + len, sizeof line - len, "%s%-*s", k ? "   " : "", (int)w[k], v);
                if (written > 0)
                    len = len + (size_t)written < sizeof line ? len + (size_t)written : sizeof line - 1;
            }
            while (len > 0 && line[len - 1] == ' ')
                line[--len] = 0;
            printf("%s\n", line);
        }
    }
    for (size_t i = 0; i < rows * 6; i++)
        free(cells[i]);
    free(cells);
    return rc;
}

static int cmd_spec(struct rt_ctx *ctx, struct opts *o)
{
    if (o->npos > 0)
        return rt_usage(ctx, "spec takes no arguments");
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/config.json", o->value[K_BUNDLE] ? o->value[K_BUNDLE] : ".");
    /* a new file: never over an existing one, nor through a symlink planted there */
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0) {
        if (errno == EEXIST)
            return rt_fail(ctx, "%s exists: remove it first", path);
        return rt_fail(ctx, "spec: create %s: %s", path, strerror(errno));
    }
    yajl_gen g = yajl_gen_alloc(NULL);
    rt_gen_default_config(g, o->flag[K_ROOTLESS]);
    int rc = rt_write_gen(g, fd, "\t");
    int err = errno;
    yajl_gen_free(g);
    if (close(fd) < 0 && rc == 0) {
        rc = -1;
        err = errno;
    }
    if (rc < 0) {
        unlink(path);
        return rt_fail(ctx, "spec: write %s: %s", path, strerror(err));
    }
    return 0;
}

static int cmd_features(struct rt_ctx *ctx)
{
    yajl_gen g = yajl_gen_alloc(NULL);
    rt_gen_features(g, PYRT_VERSION, pyrt_seccomp_available());
    int rc = rt_print_gen(ctx, g, "  ");
    yajl_gen_free(g);
    return rc;
}

/* -- main -------------------------------------------------------------------------------------------- */

static const char *const NATIVE[] = {"create", "run", "exec", "start", "state", "kill", "delete", "ps", "list", "pause",
                                     "resume", "spec", "features", NULL};

static int in(const char *const *list, const char *s)
{
    for (; *list; list++)
        if (strcmp(*list, s) == 0)
            return 1;
    return 0;
}

static void command_help(const char *cmd)
{
    for (const struct help *h = HELP; h->cmd; h++)
        if (strcmp(h->cmd, cmd) == 0) {
            printf("usage: " PROG " [GLOBAL OPTIONS] %s", h->text);
            return;
        }
}

int main(int argc, char **argv)
{
    struct rt_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.warn = rt_log_warn;
    signal(SIGPIPE, SIG_IGN); /* a hook that does not read its state is not our end */

    /* global options come before the command */
    int i = 1;
    while (i < argc && argv[i][0] == '-') {
        const char *name = argv[i] + strspn(argv[i], "-");
        size_t len = strcspn(name, "=");
        const struct optdef *d = rt_find_opt(GLOBAL, name, len);
        if (d != NULL && d->kind == VALUE && name[len] != '=' && i + 1 < argc)
            i++;
        i++;
    }
    struct opts g;
    memset(&g, 0, sizeof g);
    int prc = rt_parse_opts(&ctx, argv + 1, i - 1, GLOBAL, 0, &g);
    free(g.pos); /* global options take no positionals: only the values are kept */
    g.pos = NULL;
    if (prc < 0) {
        fprintf(stderr, PROG ": %s\n%s", ctx.err, USAGE);
        return 2;
    }
    RT_LOG.path = g.value[K_LOG];
    RT_LOG.debug = g.flag[K_DEBUG];
    const char *fmt = g.value[K_LOG_FORMAT] ? g.value[K_LOG_FORMAT] : "text";
    if (strcasecmp(fmt, "text") != 0 && strcasecmp(fmt, "json") != 0) {
        fprintf(stderr, PROG ": --log-format must be text or json\n");
        return 2;
    }
    RT_LOG.json = strcasecmp(fmt, "json") == 0;
    if (g.flag[K_VERSION]) {
        printf(PROG " version %s\nspec: %s\nlibseccomp: %s\n", PYRT_VERSION, RT_SPEC_VERSION,
               pyrt_seccomp_available() ? "yes" : "no");
        return 0;
    }
    if (i >= argc || g.flag[K_HELP]) {
        fputs(USAGE, g.flag[K_HELP] ? stdout : stderr);
        return g.flag[K_HELP] ? 0 : 2;
    }
    const char *cmd = argv[i];
    char **args = argv + i + 1;
    int nargs = argc - i - 1;
    if (RT_LOG.debug) {
        char line[4096];
        size_t len = (size_t)snprintf(line, sizeof line, "%s", cmd);
        for (int k = 0; k < nargs && len < sizeof line; k++)
            len += (size_t)snprintf(line + len, sizeof line - len, " %s", args[k]);
        rt_log_debug(line);
    }
    if (!in(NATIVE, cmd)) {
        snprintf(ctx.err, sizeof ctx.err,
                 "unknown command '%s' (commands: create, start, run, state, kill, delete, exec, ps, list, "
                 "pause, resume, spec, features)", cmd);
        rt_log_error(ctx.err);
        return 2;
    }
    /* the state directory */
    char root[PATH_MAX];
    const char *want = g.value[K_ROOT] ? g.value[K_ROOT] : getenv("PYRT_RUNTIME_ROOT");
    if (strcmp(cmd, "spec") != 0 && strcmp(cmd, "features") != 0) {
        char dflt[PATH_MAX];
        if ((want == NULL || !want[0]) && rt_default_root(&ctx, dflt, sizeof dflt) < 0) {
            rt_log_error(ctx.err);
            return 1;
        }
        if (rt_abspath(want && want[0] ? want : dflt, root, sizeof root) < 0) {
            snprintf(ctx.err, sizeof ctx.err, "--root: %s", strerror(errno));
            rt_log_error(ctx.err);
            return 1;
        }
        ctx.root = root;
    }
    ctx.systemd_cgroup = g.flag[K_SYSTEMD];

    const struct optdef *defs = NO_OPTS;
    int stop = 0;
    if (strcmp(cmd, "kill") == 0)
        defs = KILL_OPTS;
    else if (strcmp(cmd, "delete") == 0)
        defs = DELETE_OPTS;
    else if (strcmp(cmd, "ps") == 0)
        defs = PS_OPTS, stop = 1;
    else if (strcmp(cmd, "list") == 0)
        defs = LIST_OPTS;
    else if (strcmp(cmd, "spec") == 0)
        defs = SPEC_OPTS;
    else if (strcmp(cmd, "create") == 0)
        defs = CREATE_OPTS;
    else if (strcmp(cmd, "run") == 0)
        defs = RUN_OPTS;
    else if (strcmp(cmd, "exec") == 0)
        defs = EXEC_OPTS, stop = 1;
    struct opts o;
    memset(&o, 0, sizeof o);
    int rc = strcmp(cmd, "features") == 0 ? 0 : rt_parse_opts(&ctx, args, nargs, defs, stop, &o);
    if (rc == RT_WANTS_HELP) {
        command_help(cmd);
        free(o.pos);
        free(o.lv);
        free(o.lk);
        return 0;
    }
    if (rc == 0) {
        if (strcmp(cmd, "create") == 0 || strcmp(cmd, "run") == 0)
            rc = cmd_create(&ctx, &o, strcmp(cmd, "run") == 0, argc, argv);
        else if (strcmp(cmd, "exec") == 0)
            rc = cmd_exec(&ctx, &o, argc, argv);
        else if (strcmp(cmd, "state") == 0)
            rc = cmd_state(&ctx, &o);
        else if (strcmp(cmd, "start") == 0)
            rc = cmd_start(&ctx, &o);
        else if (strcmp(cmd, "kill") == 0)
            rc = cmd_kill(&ctx, &o);
        else if (strcmp(cmd, "delete") == 0)
            rc = cmd_delete(&ctx, &o);
        else if (strcmp(cmd, "ps") == 0)
            rc = cmd_ps(&ctx, &o);
        else if (strcmp(cmd, "list") == 0)
            rc = cmd_list(&ctx, &o);
        else if (strcmp(cmd, "pause") == 0)
            rc = cmd_pause(&ctx, &o, 1);
        else if (strcmp(cmd, "resume") == 0)
            rc = cmd_pause(&ctx, &o, 0);
        else if (strcmp(cmd, "spec") == 0)
            rc = cmd_spec(&ctx, &o);
        else
            rc = cmd_features(&ctx);
    }
    free(o.pos);
    free(o.lv);
    free(o.lk);
    fflush(stdout);
    if (rc < 0) {
        if (ctx.code == 2) {
            /* "kill: unknown option -s"; a message that names the command already
               ("delete takes a container id") stands as it is */
            char msg[sizeof ctx.err + 64];
            size_t n = strlen(cmd);
            int named = strncmp(ctx.err, cmd, n) == 0 && ctx.err[n] == ' ' &&
                        strcmp(ctx.err, "exec needs a command (or --process FILE)") != 0; /* Python's prefixes it */
            snprintf(msg, sizeof msg, "%s%s%s", named ? "" : cmd, named ? "" : ": ", ctx.err);
            rt_log_error(msg);
            return 2;
        }
        rt_log_error(ctx.err);
        return 1;
    }
    return run_status;
}
