/* See rt_cgroup.h. What it does mirrors pyrt/cgroups/cgroup.py (open, procs,
 * frozen, freeze/thaw, kill_all, remove) and pyrt/cgroups/systemd.py (stop_unit),
 * for pyrt-runtime's native commands. */
#include "rt_cgroup.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fdio.h"
#include "rt_cgroup_internal.h"
#include "rt_proc.h"
#include "syscalls.h"

static const char *const KNOWN[] = {"cpu", "cpuacct", "cpuset", "memory", "pids", "freezer", "blkio", "io",
                                    "devices", "hugetlb", "net_cls", "net_prio", "perf_event", "rdma", "misc",
                                    NULL};

/* a + b + c into out (capacity cap); -1 (ENAMETOOLONG) when it does not fit */
static int join(char *out, size_t cap, const char *a, const char *b, const char *c)
{
    size_t la = strlen(a), lb = strlen(b), lc = strlen(c);
    if (la + lb + lc >= cap) {
        errno = ENAMETOOLONG;
        out[0] = 0;
        return -1;
    }
    memcpy(out, a, la);
    memcpy(out + la, b, lb);
    memcpy(out + la + lb, c, lc + 1);
    return 0;
}

/* -- files ------------------------------------------------------------------------ */

/* The whole file (NUL terminated, malloc'd), or NULL with errno. */
char *rt_cg_read_text(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    while (buf != NULL) {
        if (cap - len < 2) {
            char *more = cap < (64u << 20) ? realloc(buf, cap * 2) : NULL;
            if (more == NULL) {
                free(buf);
                buf = NULL;
                errno = ENOMEM;
                break;
            }
            buf = more;
            cap *= 2;
        }
        ssize_t n = read(fd, buf + len, cap - len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            free(buf);
            buf = NULL;
            errno = e;
            break;
        }
        if (n == 0) {
            buf[len] = 0;
            break;
        }
        len += (size_t)n;
    }
    int e = errno;
    close(fd);
    errno = e;
    return buf;
}

static int write_text(const char *path, const char *value)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n;
    while ((n = write(fd, value, strlen(value))) < 0 && errno == EINTR)
        ;
    int e = errno;
    close(fd);
    errno = e;
    return n < 0 ? -1 : 0;
}

static int exists(const char *path)
{
    return access(path, F_OK) == 0;
}

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int cg_fail(struct rt_ctx *ctx, int err, const char *op, const char *path, const char *hint)
{
    return rt_fail(ctx, "%s \"%s\": %s%s%s%s", op, path, strerror(err), hint[0] ? " (" : "", hint,
                   hint[0] ? ")" : "");
}

/* -- the layout --------------------------------------------------------------------- */

static struct rt_layout the_layout;
static int layout_state; /* 0 unread, 1 read, -1 failed */

/* mountinfo escapes space, tab, newline and backslash as \ooo */
static void unescape(char *s)
{
    char *w = s;
    for (char *r = s; *r; r++) {
        if (r[0] == '\\' && r[1] >= '0' && r[1] <= '7' && r[2] >= '0' && r[2] <= '7' && r[3] >= '0' &&
            r[3] <= '7') {
            *w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
            r += 3;
        } else {
            *w++ = *r;
        }
    }
    *w = 0;
}

static int known(const char *name, const char *proc_cgroups)
{
    if (proc_cgroups == NULL) {
        for (const char *const *k = KNOWN; *k; k++)
            if (strcmp(*k, name) == 0)
                return 1;
        return 0;
    }
    size_t n = strlen(name);
    for (const char *line = proc_cgroups; *line;) {
        const char *end = strchr(line, '\n');
        if (end == NULL)
            end = line + strlen(line);
        if (*line != '#' && strncmp(line, name, n) == 0 && (line[n] == '\t' || line[n] == ' '))
            return 1;
        line = *end ? end + 1 : end;
    }
    return 0;
}

const struct rt_layout *rt_layout(void)
{
    if (layout_state != 0)
        return layout_state > 0 ? &the_layout : NULL;
    layout_state = -1;
    char *info = rt_cg_read_text("/proc/self/mountinfo");
    if (info == NULL)
        return NULL;
    char *cgroups = rt_cg_read_text("/proc/cgroups");
    struct rt_layout *lay = &the_layout;
    memset(lay, 0, sizeof *lay);
    char *save = NULL;
    for (char *line = strtok_r(info, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *fields[64];
        int nf = 0;
        char *fs = NULL;
        for (char *f = strtok_r(line, " ", &fs); f && nf < 64; f = strtok_r(NULL, " ", &fs))
            fields[nf++] = f;
        int sep = -1;
        for (int i = 0; i < nf; i++)
            if (strcmp(fields[i], "-") == 0) {
                sep = i;
                break;
            }
        if (sep < 0 || nf < sep + 4 || nf < 5)
            continue;
        const char *fstype = fields[sep + 1];
        char *mountpoint = fields[4];
        char *options = fields[sep + 3];
        unescape(mountpoint);
        if (strcmp(fstype, "cgroup2") == 0) {
            /* the first mount wins, except that one at /sys/fs/cgroup beats others */
            if (!lay->unified[0] || strcmp(mountpoint, "/sys/fs/cgroup") == 0)
                join(lay->unified, sizeof lay->unified, mountpoint, "", "");
        } else if (strcmp(fstype, "cgroup") == 0) {
            char *os = NULL;
            for (char *opt = strtok_r(options, ",", &os); opt; opt = strtok_r(NULL, ",", &os)) {
                if (!known(opt, cgroups) || strlen(opt) >= sizeof lay->v1[0].ctrl)
                    continue;
                int have = 0;
                for (size_t i = 0; i < lay->nv1; i++)
                    if (strcmp(lay->v1[i].ctrl, opt) == 0)
                        have = 1;
                if (have || lay->nv1 == RT_CG_MAX_V1)
                    continue;
                snprintf(lay->v1[lay->nv1].ctrl, sizeof lay->v1[0].ctrl, "%s", opt);
                join(lay->v1[lay->nv1].mount, sizeof lay->v1[0].mount, mountpoint, "", "");
                lay->nv1++;
            }
        }
    }
    free(info);
    free(cgroups);
    layout_state = 1;
    return lay;
}

/* -- finding a cgroup ------------------------------------------------------------------- */

static int name_char(char c, int first)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')
        return 1;
    return !first && (c == '.' || c == ':' || c == '@' || c == '-');
}

int rt_cgroup_name_ok(const char *name, int is_parent)
{
    if (name == NULL || !name[0])
        return 0;
    const char *part = name;
    for (;;) {
        const char *end = strchr(part, '/');
        size_t n = end ? (size_t)(end - part) : strlen(part);
        if (end && !is_parent)
            return 0;
        if (n == 0 || (n == 1 && part[0] == '.') || (n == 2 && part[0] == '.' && part[1] == '.'))
            return 0;
        for (size_t i = 0; i < n; i++)
            if (!name_char(part[i], i == 0))
                return 0;
        if (!end)
            return 1;
        part = end + 1;
    }
}

int rt_cgroup_open(struct rt_cgroup *cg, const char *name, const char *parent)
{
    memset(cg, 0, sizeof *cg);
    if (parent == NULL)
        parent = "pyrt";
    if (!rt_cgroup_name_ok(name, 0) || (parent[0] && !rt_cgroup_name_ok(parent, 1)))
        return -1;
    const struct rt_layout *lay = rt_layout();
    if (lay == NULL)
        return -1;
    if (join(cg->name, sizeof cg->name, name, "", "") < 0 || join(cg->parent, sizeof cg->parent, parent, "", "") < 0)
        return -1;
    char sub[PATH_MAX];
    if (join(sub, sizeof sub, parent, parent[0] ? "/" : "", name) < 0)
        return -1;
    char d[PATH_MAX];
    if (lay->unified[0]) {
        if (join(d, sizeof d, lay->unified, "/", sub) == 0 && is_dir(d))
            join(cg->v2, sizeof cg->v2, d, "", "");
    }
    for (size_t i = 0; i < lay->nv1; i++) {
        if (join(d, sizeof d, lay->v1[i].mount, "/", sub) == 0 && is_dir(d)) {
            snprintf(cg->v1[cg->nv1].ctrl, sizeof cg->v1[0].ctrl, "%s", lay->v1[i].ctrl);
            join(cg->v1[cg->nv1].dir, sizeof cg->v1[0].dir, d, "", "");
            cg->nv1++;
        }
    }
    return cg->v2[0] || cg->nv1 ? 0 : -1;
}

/* Its directories: cgroup2 first, then each v1 one once. */
static size_t dirs(const struct rt_cgroup *cg, const char *out[], int with_v2)
{
    size_t n = 0;
    if (with_v2 && cg->v2[0])
        out[n++] = cg->v2;
    for (size_t i = 0; i < cg->nv1; i++) {
        int seen = 0;
        for (size_t j = 0; j < n; j++)
            if (strcmp(out[j], cg->v1[i].dir) == 0)
                seen = 1;
        if (!seen)
            out[n++] = cg->v1[i].dir;
    }
    return n;
}

static const char *v1_dir(const struct rt_cgroup *cg, const char *ctrl)
{
    for (size_t i = 0; i < cg->nv1; i++)
        if (strcmp(cg->v1[i].ctrl, ctrl) == 0)
            return cg->v1[i].dir;
    return NULL;
}

static int v2_has(const struct rt_cgroup *cg, const char *fname)
{
    char p[PATH_MAX];
    if (!cg->v2[0])
        return 0;
    if (join(p, sizeof p, cg->v2, "/", fname) < 0)
        return 0;
    return exists(p);
}

int rt_cgroup_procs(const struct rt_cgroup *cg, pid_t **pids, size_t *n)
{
    const char *ds[RT_CG_MAX_V1 + 1];
    size_t nd = cg->v2[0] ? (ds[0] = cg->v2, 1) : dirs(cg, ds, 0);
    pid_t *out = NULL;
    size_t len = 0, cap = 0;
    for (size_t i = 0; i < nd; i++) {
        char p[PATH_MAX];
        join(p, sizeof p, ds[i], "/cgroup.procs", "");
        char *text = rt_cg_read_text(p);
        if (text == NULL) {
            if (errno == ENOENT)
                continue;
            free(out);
            return -1;
        }
        for (char *s = text; *s;) {
            char *end;
            long v = strtol(s, &end, 10);
            if (end == s) {
                s++;
                continue;
            }
            s = end;
            int seen = 0;
            for (size_t j = 0; j < len; j++)
                if (out[j] == (pid_t)v)
                    seen = 1;
            if (seen || v <= 0)
                continue;
            if (len == cap) {
                cap = cap ? cap * 2 : 16;
                pid_t *more = realloc(out, cap * sizeof *out);
                if (more == NULL) {
                    free(out);
                    free(text);
                    errno = ENOMEM;
                    return -1;
                }
                out = more;
            }
            out[len++] = (pid_t)v;
        }
        free(text);
    }
    *pids = out;
    *n = len;
    return 0;
}

static int has_procs(const struct rt_cgroup *cg)
{
    pid_t *pids = NULL;
    size_t n = 0;
    if (rt_cgroup_procs(cg, &pids, &n) < 0)
        return 0;
    free(pids);
    return n > 0;
}

static int in_list(const pid_t *pids, size_t n, pid_t pid)
{
    for (size_t i = 0; i < n; i++)
        if (pids[i] == pid)
            return 1;
    return 0;
}

/* -- freezing ------------------------------------------------------------------------------ */

int rt_cgroup_frozen(const struct rt_cgroup *cg)
{
    char p[PATH_MAX];
    if (v2_has(cg, "cgroup.freeze")) {
        join(p, sizeof p, cg->v2, "/cgroup.events", "");
        char *text = rt_cg_read_text(p);
        int frozen = text != NULL && (strncmp(text, "frozen 1", 8) == 0 || strstr(text, "\nfrozen 1") != NULL);
        free(text);
        return frozen;
    }
    const char *d = v1_dir(cg, "freezer");
    if (d == NULL)
        return -1;
    join(p, sizeof p, d, "/freezer.state", "");
    char *text = rt_cg_read_text(p);
    int frozen = text != NULL && strncmp(text, "FROZEN", 6) == 0 && (text[6] == 0 || text[6] == '\n');
    free(text);
    return frozen;
}

int rt_cgroup_set_frozen(struct rt_ctx *ctx, const struct rt_cgroup *cg, int frozen, double timeout)
{
    char path[PATH_MAX];
    int v2 = v2_has(cg, "cgroup.freeze");
    const char *value;
    if (v2) {
        join(path, sizeof path, cg->v2, "/cgroup.freeze", "");
        value = frozen ? "1" : "0";
    } else if (v1_dir(cg, "freezer") != NULL) {
        join(path, sizeof path, v1_dir(cg, "freezer"), "/freezer.state", "");
        value = frozen ? "FROZEN" : "THAWED";
    } else {
        return rt_fail(ctx, "the freezer controller is not available: this cgroup has no cgroup.freeze and no "
                            "v1 freezer");
    }
    if (write_text(path, value) < 0) {
        char op[64];
        snprintf(op, sizeof op, "write '%s' to", value);
        return cg_fail(ctx, errno, op, path, "");
    }
    double deadline = rt_now() + timeout, delay = 0.0005;
    while (rt_cgroup_frozen(cg) != frozen) {
        if (rt_now() >= deadline)
            return cg_fail(ctx, ETIMEDOUT, frozen ? "freeze" : "thaw", path, "");
        if (!v2 && frozen) /* v1 retries a freeze that met a busy task on write */
            (void)write_text(path, "FROZEN");
        rt_sleep(delay);
        delay = delay * 2 < 0.02 ? delay * 2 : 0.02;
    }
    return 0;
}

/* -- killing ---------------------------------------------------------------------------------- */

/* Signal each pid still in the cgroup once its pidfd is held (a pid reused before
 * pidfd_open is not signalled); the count signalled. */
static int signal_each(const struct rt_cgroup *cg, const pid_t *pids, size_t n, int sig)
{
    int hit = 0;
    for (size_t i = 0; i < n; i++) {
        int fd = pyrt_pidfd_open(pids[i], 0);
        if (fd < 0)
            continue;
        pid_t *now = NULL;
        size_t nn = 0;
        if (rt_cgroup_procs(cg, &now, &nn) == 0 && in_list(now, nn, pids[i]) &&
            pyrt_pidfd_send_signal(fd, sig, NULL, 0) == 0)
            hit++;
        free(now);
        close(fd);
    }
    return hit;
}

void rt_cgroup_signal_all(const struct rt_cgroup *cg, int sig)
{
    pid_t *pids = NULL;
    size_t n = 0;
    if (rt_cgroup_procs(cg, &pids, &n) == 0)
        signal_each(cg, pids, n, sig);
    free(pids);
}

static void kill_v1(struct rt_ctx *ctx, const struct rt_cgroup *cg, double deadline)
{
    int can_freeze = v1_dir(cg, "freezer") != NULL || v2_has(cg, "cgroup.freeze");
    struct rt_ctx quiet = *ctx; /* a failed freeze or thaw is not the error to report */
    double left = deadline - rt_now();
    if (can_freeze)
        (void)rt_cgroup_set_frozen(&quiet, cg, 1, left < 0.1 ? 0.1 : left > 2.0 ? 2.0 : left);
    for (int round = 0; round < 100; round++) {
        pid_t *pids = NULL;
        size_t n = 0;
        if (rt_cgroup_procs(cg, &pids, &n) < 0 || n == 0) {
            free(pids);
            break;
        }
        int hit = signal_each(cg, pids, n, SIGKILL);
        if (!can_freeze || hit == 0) {
            free(pids);
            break;
        }
        pid_t *now = NULL;
        size_t nn = 0;
        int grew = 0;
        if (rt_cgroup_procs(cg, &now, &nn) == 0)
            for (size_t i = 0; i < nn; i++)
                if (!in_list(pids, n, now[i]))
                    grew = 1;
        free(now);
        free(pids);
        if (!grew)
            break; /* nothing new forked in; the rest die once thawed */
    }
    if (can_freeze) {
        left = deadline - rt_now();
        (void)rt_cgroup_set_frozen(&quiet, cg, 0, left < 0.1 ? 0.1 : left > 2.0 ? 2.0 : left);
    }
}

int rt_cgroup_kill_all(struct rt_ctx *ctx, const struct rt_cgroup *cg, double timeout)
{
    double deadline = rt_now() + timeout, delay = 0.0005;
    int v2kill = v2_has(cg, "cgroup.kill");
    if (v2kill) {
        char p[PATH_MAX];
        join(p, sizeof p, cg->v2, "/cgroup.kill", "");
        if (write_text(p, "1") < 0)
            return cg_fail(ctx, errno, "write '1' to", p, "");
    } else {
        kill_v1(ctx, cg, deadline);
    }
    while (has_procs(cg)) {
        if (rt_now() >= deadline) {
            const char *ds[RT_CG_MAX_V1 + 1];
            dirs(cg, ds, 1);
            return cg_fail(ctx, ETIMEDOUT, "kill the processes of", ds[0], "some are left");
        }
        if (!v2kill)
            kill_v1(ctx, cg, deadline);
        rt_sleep(delay);
        delay = delay * 2 < 0.02 ? delay * 2 : 0.02;
    }
    return 0;
}

/* -- removing ----------------------------------------------------------------------------------- */

static int rmdir_retry(struct rt_ctx *ctx, const char *path, double deadline)
{
    double delay = 0.001;
    for (;;) {
        if (rmdir(path) == 0 || errno == ENOENT)
            return 0;
        if (errno != EBUSY || rt_now() >= deadline)
            return cg_fail(ctx, errno, "remove cgroup", path, errno == EBUSY ? "it still has processes" : "");
        rt_sleep(delay);
        delay = delay * 2 < 0.05 ? delay * 2 : 0.05;
    }
}

#define SCOPE_SLICE "machine.slice/pyrt-"

int rt_cgroup_remove(struct rt_ctx *ctx, const struct rt_cgroup *cg, double timeout)
{
    double deadline = rt_now() + timeout;
    const char *ds[RT_CG_MAX_V1 + 1];
    size_t nd = dirs(cg, ds, 1);
    int any = 0;
    for (size_t i = 0; i < nd; i++)
        any |= is_dir(ds[i]);
    if (any && has_procs(cg) && rt_cgroup_kill_all(ctx, cg, timeout) < 0)
        return -1;
    for (size_t i = 0; i < nd; i++)
        if (rmdir_retry(ctx, ds[i], deadline) < 0)
            return -1;
    /* and the scope `pyrt run --cgroup-manager systemd` made for it (as Cgroup.remove);
       an ordinary user's scopes are not looked for here */
    size_t lp = strlen(cg->parent), ls = strlen(SCOPE_SLICE);
    if (!rt_ordinary_user() && lp > ls + 6 && strncmp(cg->parent, SCOPE_SLICE, ls) == 0 &&
        strcmp(cg->parent + lp - 6, ".scope") == 0) {
        const char *cid = strrchr(cg->parent, '/') + 1 + 5; /* after "/pyrt-" */
        char unit[PATH_MAX];
        snprintf(unit, sizeof unit, "pyrt-%.*s.scope", (int)(cg->parent + lp - 6 - cid), cid);
        char scope[PATH_MAX + 32];
        snprintf(scope, sizeof scope, "machine.slice/%s", unit);
        return rt_systemd_stop_unit(ctx, unit, scope);
    }
    return 0;
}

/* -- systemd ---------------------------------------------------------------------------------------- */

int rt_systemd_stop_unit(struct rt_ctx *ctx, const char *unit, const char *scope)
{
    char *argv[] = {"busctl", rt_ordinary_user() ? "--user" : "--system", "call", "org.freedesktop.systemd1",
                    "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager", "StopUnit", "ss",
                    (char *)unit, "replace", NULL};
    struct rt_proc p = {.path = "busctl", .argv = argv, .capture = 1, .timeout = 30};
    if (rt_proc_run(&p) < 0)
        return rt_fail(ctx, "systemd StopUnit \"%s\": %s", unit, strerror(errno));
    if (p.exec_errno == ENOENT) {
        rt_proc_free(&p);
        return rt_fail(ctx, "systemd cgroup manager \"busctl\": No such file or directory (busctl not found)");
    }
    if (p.status != 0 || p.timed_out) {
        const char *why = p.err != NULL ? p.err : "";
        if (strstr(why, "not loaded") == NULL && strstr(why, "NoSuchUnit") == NULL) {
            char line[512];
            snprintf(line, sizeof line, "%s", why);
            line[strcspn(line, "\n")] = 0;
            rt_proc_free(&p);
            return rt_fail(ctx, "systemd StopUnit \"%s\": %s", unit, line[0] ? line : "busctl failed");
        }
    }
    rt_proc_free(&p);
    const struct rt_layout *lay = rt_layout();
    if (lay == NULL || !lay->unified[0])
        return 0;
    char d[PATH_MAX * 2];
    if (join(d, sizeof d, lay->unified, "/", scope) < 0)
        return 0;
    double deadline = rt_now() + 10;
    while (is_dir(d) && rt_now() < deadline)
        rt_sleep(0.005);
    return 0;
}

int rt_systemd_available(void)
{
    const struct rt_layout *lay = rt_layout();
    return is_dir("/run/systemd/system") && lay != NULL && lay->unified[0] && lay->nv1 == 0;
}
