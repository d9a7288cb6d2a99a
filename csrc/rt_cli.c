/* pyrt-runtime's command-line plumbing (rt_cli.h): the log, runc-style options,
 * JSON output, signal names and the state directory's default. */
#include "rt_cli.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fdio.h"
#include "rt_json.h"
#include "rt_state.h"

/* -- logging -------------------------------------------------------------------------- */

struct rt_log RT_LOG;

static void log_write(const char *level, const char *msg)
{
    if (RT_LOG.path == NULL)
        return;
    char ts[64];
    rt_rfc3339(ts, sizeof ts);
    yajl_gen g = yajl_gen_alloc(NULL);
    if (g == NULL)
        return;
    if (RT_LOG.json) {
        yajl_gen_map_open(g);
        rt_gen_kv_str(g, "level", level);
        rt_gen_kv_str(g, "msg", msg);
        rt_gen_kv_str(g, "time", ts);
        yajl_gen_map_close(g);
    } else {
        rt_gen_str(g, msg); /* the msg quoted as a JSON string, as runc's text format */
    }
    const unsigned char *buf;
    size_t len;
    yajl_gen_get_buf(g, &buf, &len);
    int fd = open(RT_LOG.path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0) {
        char *line = malloc(len + strlen(ts) + strlen(level) + 64);
        if (line != NULL) {
            int n = RT_LOG.json ? sprintf(line, "%.*s\n", (int)len, (const char *)buf)
                             : sprintf(line, "time=\"%s\" level=%s msg=%.*s\n", ts, level, (int)len,
                                       (const char *)buf);
            (void)!write(fd, line, (size_t)n);
            free(line);
        }
        close(fd);
    }
    yajl_gen_free(g);
}

void rt_log_error(const char *msg)
{
    log_write("error", msg);
    fprintf(stderr, PROG ": %s\n", msg);
}

void rt_log_warn(struct rt_ctx *ctx, const char *msg)
{
    (void)ctx;
    log_write("warning", msg);
    if (RT_LOG.debug || RT_LOG.path == NULL)
        fprintf(stderr, PROG ": warning: %s\n", msg);
}

void rt_log_debug(const char *msg)
{
    if (!RT_LOG.debug)
        return;
    log_write("debug", msg);
    fprintf(stderr, PROG ": debug: %s\n", msg);
}

/* -- options (runc's style: -opt or --opt, --opt=value) ---------------------------------- */

const struct optdef *rt_find_opt(const struct optdef *defs, const char *name, size_t len)
{
    for (; defs->name; defs++)
        if (strlen(defs->name) == len && strncmp(defs->name, name, len) == 0)
            return defs;
    return NULL;
}

static int truthy(const char *v)
{
    return strcasecmp(v, "1") == 0 || strcasecmp(v, "true") == 0 || strcasecmp(v, "yes") == 0;
}

/* Parse args[0..n) against defs. stop_at_positional: everything from the first
 * positional on is positional. Returns 0, RT_WANTS_HELP (a --help/-h not in defs), or
 * -1 with the usage error in ctx. */
int rt_parse_opts(struct rt_ctx *ctx, char **args, int n, const struct optdef *defs, int stop_at_positional,
                      struct opts *o)
{
    o->pos = calloc((size_t)n + 1, sizeof *o->pos);
    o->lv = calloc((size_t)n + 1, sizeof *o->lv);
    o->lk = calloc((size_t)n + 1, sizeof *o->lk);
    if (o->pos == NULL || o->lv == NULL || o->lk == NULL)
        return rt_fail(ctx, "out of memory");
    for (int i = 0; i < n; i++) {
        char *a = args[i];
        if (strcmp(a, "--") == 0) {
            for (i++; i < n; i++)
                o->pos[o->npos++] = args[i];
            break;
        }
        if (a[0] == '-' && a[1] != 0 && !(stop_at_positional && o->npos > 0)) {
            const char *name = a + strspn(a, "-");
            const char *eq = strchr(name, '=');
            size_t len = eq ? (size_t)(eq - name) : strlen(name);
            const struct optdef *d = rt_find_opt(defs, name, len);
            if (d == NULL) {
                if ((len == 4 && strncmp(name, "help", 4) == 0) || (len == 1 && name[0] == 'h'))
                    return RT_WANTS_HELP;
                return rt_usage(ctx, "unknown option %.*s", (int)(strcspn(a, "=")), a);
            }
            if (d->kind == FLAG) {
                o->flag[d->key] = eq ? truthy(eq + 1) : 1;
            } else {
                char *v;
                if (eq)
                    v = (char *)eq + 1;
                else if (i + 1 < n)
                    v = args[++i];
                else
                    return rt_usage(ctx, "option %s needs a value", a);
                if (d->kind == LIST) {
                    o->lv[o->nl] = v;
                    o->lk[o->nl++] = d->key;
                } else {
                    o->value[d->key] = v;
                }
            }
        } else {
            o->pos[o->npos++] = a;
            if (stop_at_positional) {
                for (i++; i < n; i++)
                    o->pos[o->npos++] = args[i];
                break;
            }
        }
    }
    return 0;
}

int rt_one_id(struct rt_ctx *ctx, struct opts *o, const char *cmd, int extra)
{
    if (o->npos < 1 || o->npos > 1 + extra)
        return rt_usage(ctx, "%s takes a container id%s", cmd, extra ? " (and a signal)" : "");
    return 0;
}

/* -- output ---------------------------------------------------------------------------------- */

/* Write the generator's text to fd as Python's json.dumps does (indent NULL: on
 * one line), a newline after it. */
int rt_write_gen(yajl_gen g, int fd, const char *indent)
{
    const unsigned char *buf;
    size_t len;
    if (yajl_gen_get_buf(g, &buf, &len) != yajl_gen_status_ok) {
        errno = EINVAL;
        return -1;
    }
    size_t n;
    char *text = rt_json_pretty(buf, len, indent, &n);
    if (text == NULL)
        return -1;
    int rc = pyrt_write_all(fd, text, n);
    free(text);
    return rc;
}

int rt_print_gen(struct rt_ctx *ctx, yajl_gen g, const char *indent)
{
    fflush(stdout);
    if (rt_write_gen(g, 1, indent) < 0)
        return rt_fail(ctx, "write the output: %s", strerror(errno));
    return 0;
}

/* -- signals ------------------------------------------------------------------------------------ */

static const struct {
    const char *name;
    int sig;
} SIGNALS[] = {
    {"ABRT", SIGABRT}, {"ALRM", SIGALRM}, {"BUS", SIGBUS}, {"CHLD", SIGCHLD}, {"CLD", SIGCHLD},
    {"CONT", SIGCONT}, {"FPE", SIGFPE}, {"HUP", SIGHUP}, {"ILL", SIGILL}, {"INT", SIGINT}, {"IO", SIGIO},
    {"IOT", SIGIOT}, {"KILL", SIGKILL}, {"PIPE", SIGPIPE}, {"POLL", SIGPOLL}, {"PROF", SIGPROF},
    {"PWR", SIGPWR}, {"QUIT", SIGQUIT}, {"SEGV", SIGSEGV}, {"STKFLT", SIGSTKFLT}, {"STOP", SIGSTOP},
    {"SYS", SIGSYS}, {"TERM", SIGTERM}, {"TRAP", SIGTRAP}, {"TSTP", SIGTSTP}, {"TTIN", SIGTTIN},
    {"TTOU", SIGTTOU}, {"URG", SIGURG}, {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"VTALRM", SIGVTALRM},
    {"WINCH", SIGWINCH}, {"XCPU", SIGXCPU}, {"XFSZ", SIGXFSZ}, {NULL, 0}};

/* A signal name (TERM, SIGTERM, term, RTMIN+3) or number; -1 when not one. */
int rt_parse_signal(const char *text)
{
    char up[32];
    size_t n = strlen(text);
    if (n == 0 || n >= sizeof up)
        return -1;
    if (strspn(text, "0123456789") == n) {
        long v = strtol(text, NULL, 10);
        return v <= SIGRTMAX ? (int)v : -1;
    }
    for (size_t i = 0; i <= n; i++)
        up[i] = (char)(text[i] >= 'a' && text[i] <= 'z' ? text[i] - 32 : text[i]);
    const char *name = strncmp(up, "SIG", 3) == 0 ? up + 3 : up;
    for (int i = 0; SIGNALS[i].name; i++)
        if (strcmp(SIGNALS[i].name, name) == 0)
            return SIGNALS[i].sig;
    int base = strncmp(name, "RTMIN", 5) == 0 ? SIGRTMIN : strncmp(name, "RTMAX", 5) == 0 ? SIGRTMAX : -1;
    if (base < 0)
        return -1;
    const char *rest = name + 5;
    if (!*rest)
        return base;
    if ((*rest != '+' && *rest != '-') || !rest[1] || strspn(rest + 1, "0123456789") != strlen(rest + 1))
        return -1;
    long off = strtol(rest + 1, NULL, 10);
    long sig = *rest == '+' ? base + off : base - off;
    return sig >= SIGRTMIN && sig <= SIGRTMAX ? (int)sig : -1;
}

/* -- the state directory's default --------------------------------------------------------------- */

/* path made absolute and normalized (as os.path.rt_abspath) into out */
int rt_abspath(const char *path, char *out, size_t cap)
{
    char joined[PATH_MAX * 2];
    if (path[0] == '/') {
        snprintf(joined, sizeof joined, "%s", path);
    } else {
        char cwd[PATH_MAX];
        if (getcwd(cwd, sizeof cwd) == NULL)
            return -1;
        snprintf(joined, sizeof joined, "%s/%s", cwd, path);
    }
    size_t w = 0;
    out[w++] = '/';
    for (char *s = joined; *s;) {
        while (*s == '/')
            s++;
        if (!*s)
            break;
        size_t len = strcspn(s, "/");
        if (len == 1 && s[0] == '.') {
        } else if (len == 2 && s[0] == '.' && s[1] == '.') {
            while (w > 1 && out[w - 1] != '/')
                w--;
            if (w > 1)
                w--;
            while (w > 1 && out[w - 1] != '/')
                w--;
        } else {
            if (w + len + 2 >= cap) {
                errno = ENAMETOOLONG;
                return -1;
            }
            if (w > 1 && out[w - 1] != '/')
                out[w++] = '/';
            memcpy(out + w, s, len);
            w += len;
        }
        s += len;
    }
    if (w > 1 && out[w - 1] == '/')
        w--;
    out[w] = 0;
    return 0;
}

/* The uid that ids without a mapping show as (root of the host, seen from a user
 * namespace): /proc/sys/kernel/overflowuid, 65534 unless changed. */
static uid_t overflow_uid(void)
{
    char buf[32];
    if (pyrt_read_small("/proc/sys/kernel/overflowuid", buf, sizeof buf) < 0)
        return 65534;
    return (uid_t)strtoul(buf, NULL, 10);
}

/* An ordinary user's state directory: made 0700 when missing, checked to be a
 * directory of its own whose every ancestor only it or root can change (or is
 * sticky), as pyrt/paths.py's check_private_dir (root of the host, in a user
 * namespace: the overflow uid). */
int rt_private_dir(struct rt_ctx *ctx, const char *path, char *out, size_t cap)
{
    if (mkdir(path, 0700) < 0 && errno != EEXIST)
        return rt_fail(ctx, "state directory %s: %s", path, strerror(errno));
    char real[PATH_MAX];
    if (realpath(path, real) == NULL)
        return rt_fail(ctx, "state directory %s: %s", path, strerror(errno));
    struct stat st;
    uid_t uid = geteuid();
    if (stat(real, &st) < 0)
        return rt_fail(ctx, "state directory %s: %s", real, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return rt_fail(ctx, "state directory %s is not a directory", real);
    if (st.st_uid != uid)
        return rt_fail(ctx, "state directory %s is owned by uid %u, not by you (uid %u): use a directory of "
                            "your own (--root)", real, (unsigned)st.st_uid, (unsigned)uid);
    /* in a user namespace the host's root is unmapped: its directories (/run,
     * /run/user) show as the overflow uid, which then counts as root */
    uid_t host_root = rt_in_user_namespace() ? overflow_uid() : 0;
    char d[PATH_MAX];
    snprintf(d, sizeof d, "%s", real);
    while (strcmp(d, "/") != 0) {
        char *slash = strrchr(d, '/');
        if (slash == d)
            d[1] = 0;
        else
            *slash = 0;
        struct stat a;
        if (stat(d, &a) < 0)
            return rt_fail(ctx, "state directory %s: %s: %s", real, d, strerror(errno));
        if (a.st_uid != 0 && a.st_uid != uid && a.st_uid != host_root)
            return rt_fail(ctx, "state directory %s is inside %s, owned by uid %u, who could replace it: use a "
                                "directory of your own (--root)", real, d, (unsigned)a.st_uid);
        if ((a.st_mode & 022) && !(a.st_mode & S_ISVTX))
            return rt_fail(ctx, "state directory %s is inside %s, which others may write to (mode %o): use a "
                                "directory of your own (--root)", real, d, (unsigned)(a.st_mode & 07777));
    }
    if ((st.st_mode & 077) && chmod(real, 0700) < 0)
        return rt_fail(ctx, "state directory %s: chmod: %s", real, strerror(errno));
    snprintf(out, cap, "%s", real);
    return 0;
}

int rt_default_root(struct rt_ctx *ctx, char *out, size_t cap)
{
    const char *base = getenv("XDG_RUNTIME_DIR");
    struct stat st;
    int usable = base != NULL && base[0] == '/' && stat(base, &st) == 0 && S_ISDIR(st.st_mode);
    /* root of a user namespace (rootless podman and containerd run the runtime so)
     * keeps its state where its user does, as runc and crun do */
    if (geteuid() == 0 && !(usable && rt_in_user_namespace())) {
        snprintf(out, cap, "/run/pyrt-runtime");
        return 0;
    }
    char path[PATH_MAX];
    if (usable)
        snprintf(path, sizeof path, "%s/pyrt-runtime", base);
    else
        snprintf(path, sizeof path, "/tmp/pyrt-runtime-%u", (unsigned)geteuid());
    return rt_private_dir(ctx, path, out, cap);
}
