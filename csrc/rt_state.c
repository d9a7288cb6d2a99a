/* See rt_state.h. */
#include "rt_state.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fdio.h"
#include "procstat.h"
#include "rt_json.h"
#include "syscalls.h"

static int id_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '+' || c == '-' || c == '.' || c >= 0x80;
}

int rt_check_id(struct rt_ctx *ctx, const char *id)
{
    size_t n = strlen(id);
    int ok = n > 0 && n < 256 && strcmp(id, ".") != 0 && strcmp(id, "..") != 0;
    for (size_t i = 0; ok && i < n; i++)
        ok = id_char((unsigned char)id[i]);
    if (ok)
        return 0;
    /* shown as Python's repr would for the printable ones */
    char shown[128];
    size_t w = 0;
    for (size_t i = 0; i < n && w + 5 < sizeof shown; i++) {
        unsigned char c = (unsigned char)id[i];
        if (c >= 0x20 && c < 0x7f && c != '\\' && c != '\'')
            shown[w++] = (char)c;
        else
            w += (size_t)snprintf(shown + w, sizeof shown - w, "\\x%02x", c);
    }
    shown[w] = 0;
    return rt_fail(ctx, "invalid container id '%s'%s: use letters, digits and _ + - .", shown,
                   w < n && n >= sizeof shown - 5 ? "..." : "");
}

static int not_found(struct rt_ctx *ctx, const char *id)
{
    return rt_fail(ctx, "container '%s' does not exist (in %s)", id, ctx->root);
}

int rt_container_open(struct rt_ctx *ctx, struct rt_container *c, const char *id, int lock)
{
    memset(c, 0, sizeof *c);
    c->dirfd = -1;
    if (rt_check_id(ctx, id) < 0)
        return -1;
    snprintf(c->id, sizeof c->id, "%s", id);
    int rootfd = open(ctx->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            return not_found(ctx, id);
        return rt_fail(ctx, "open the state directory %s: %s", ctx->root, strerror(errno));
    }
    /* a symlink (or anything else) in the place of the directory is no container */
    c->dirfd = openat(rootfd, id, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int err = errno;
    close(rootfd);
    if (c->dirfd < 0) {
        if (err == ENOENT || err == ENOTDIR || err == ELOOP)
            return not_found(ctx, id);
        return rt_fail(ctx, "open %s/%s: %s", ctx->root, id, strerror(err));
    }
    while (lock && flock(c->dirfd, LOCK_EX) < 0) {
        if (errno != EINTR) {
            err = errno;
            rt_container_close(c);
            return rt_fail(ctx, "lock %s/%s: %s", ctx->root, id, strerror(err));
        }
    }
    char why[300] = "";
    c->rec = rt_json_load_at(c->dirfd, RT_STATE_FILE, why, sizeof why);
    if (c->rec == NULL) {
        err = errno;
        rt_container_close(c);
        if (err == ENOENT)
            return not_found(ctx, id);
        return rt_fail(ctx, "container '%s': broken state file: %s", id, why[0] ? why : strerror(err));
    }
    if (!YAJL_IS_OBJECT(c->rec)) {
        rt_container_close(c);
        return rt_fail(ctx, "container '%s': broken state file: not a JSON object", id);
    }
    return 0;
}

void rt_container_close(struct rt_container *c)
{
    if (c->dirfd >= 0)
        close(c->dirfd);
    c->dirfd = -1;
    if (c->rec != NULL)
        yajl_tree_free(c->rec);
    c->rec = NULL;
}

unsigned long long rt_start_time(pid_t pid)
{
    char state;
    unsigned long long t = pyrt_proc_start_time(pid, &state);
    return state == 'Z' ? 0 : t;
}

pid_t rt_container_pid(const struct rt_container *c)
{
    long long pid = rt_json_int(c->rec, "pid", 0);
    return pid > 0 && pid < (1LL << 31) ? (pid_t)pid : 0;
}

int rt_container_alive(const struct rt_container *c)
{
    pid_t pid = rt_container_pid(c);
    return pid > 0 && (long long)rt_start_time(pid) == rt_json_int(c->rec, "start_time", -1);
}

const struct rt_cgroup *rt_container_cgroup(struct rt_container *c)
{
    if (c->have_cg == 0) {
        const char *name = rt_json_str(c->rec, "cgroup_name", NULL);
        yajl_val pv = rt_json_get(c->rec, "cgroup_parent");
        const char *parent = pv != NULL && YAJL_IS_STRING(pv) ? pv->u.string : "pyrt";
        c->have_cg = name != NULL && name[0] && rt_cgroup_open(&c->cg, name, parent) == 0 ? 1 : -1;
    }
    return c->have_cg > 0 ? &c->cg : NULL;
}

const char *rt_container_status(struct rt_container *c)
{
    const char *st = rt_json_str(c->rec, "status", "");
    if (strcmp(st, "creating") == 0)
        return "creating";
    if (!rt_container_alive(c))
        return "stopped";
    if (!rt_json_truthy(c->rec, "started"))
        return "created";
    const struct rt_cgroup *cg = rt_container_cgroup(c);
    if (cg != NULL && rt_cgroup_frozen(cg) == 1)
        return "paused";
    return "running";
}

static void gen_member(yajl_gen g, struct rt_container *c, const char *key, const char *rec_key,
                       const char *dflt)
{
    rt_gen_str(g, key);
    yajl_val v = rt_json_get(c->rec, rec_key);
    if (v != NULL)
        rt_json_gen(g, v);
    else
        rt_gen_str(g, dflt);
}

void rt_gen_state(yajl_gen g, struct rt_container *c, const char *status)
{
    if (status == NULL)
        status = rt_container_status(c);
    yajl_gen_map_open(g);
    gen_member(g, c, "ociVersion", "oci_version", "1.1.0");
    rt_gen_kv_str(g, "id", c->id);
    rt_gen_str(g, "pid");
    yajl_val pid = rt_json_get(c->rec, "pid");
    if (strcmp(status, "stopped") != 0 && pid != NULL)
        rt_json_gen(g, pid);
    else
        yajl_gen_integer(g, 0);
    rt_gen_kv_str(g, "status", status);
    gen_member(g, c, "bundle", "bundle", "");
    gen_member(g, c, "rootfs", "rootfs", "");
    gen_member(g, c, "created", "created", "");
    gen_member(g, c, "owner", "owner", "");
    rt_gen_str(g, "annotations");
    if (rt_json_truthy(c->rec, "annotations")) {
        rt_json_gen(g, rt_json_get(c->rec, "annotations"));
    } else {
        yajl_gen_map_open(g);
        yajl_gen_map_close(g);
    }
    yajl_gen_map_close(g);
}

int rt_container_pidfd(const struct rt_container *c)
{
    pid_t pid = rt_container_pid(c);
    if (pid <= 0)
        return -1;
    int fd = pyrt_pidfd_open(pid, 0);
    if (fd < 0)
        return -1;
    /* checked after the pidfd is held: the pid cannot be reused behind it any more */
    if ((long long)rt_start_time(pid) != rt_json_int(c->rec, "start_time", -1)) {
        close(fd);
        return -1;
    }
    return fd;
}

int rt_state_write(int dirfd, yajl_gen g)
{
    int fd = openat(dirfd, RT_STATE_TMP, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    int rc = rt_gen_write(g, fd);
    int err = errno;
    if (close(fd) < 0 && rc == 0) {
        rc = -1;
        err = errno;
    }
    if (rc == 0 && renameat(dirfd, RT_STATE_TMP, dirfd, RT_STATE_FILE) < 0) {
        rc = -1;
        err = errno;
    }
    errno = err;
    return rc;
}

int rt_container_set_started(struct rt_ctx *ctx, struct rt_container *c)
{
    yajl_gen g = yajl_gen_alloc(NULL);
    if (g == NULL)
        return rt_fail(ctx, "save the state of %s: out of memory", c->id);
    int have = 0;
    yajl_gen_map_open(g);
    for (size_t i = 0; i < c->rec->u.object.len; i++) {
        const char *k = c->rec->u.object.keys[i];
        rt_gen_str(g, k);
        if (strcmp(k, "started") == 0) {
            yajl_gen_bool(g, 1);
            have = 1;
        } else {
            rt_json_gen(g, c->rec->u.object.values[i]);
        }
    }
    if (!have) {
        rt_gen_str(g, "started");
        yajl_gen_bool(g, 1);
    }
    yajl_gen_map_close(g);
    int rc = rt_state_write(c->dirfd, g);
    int err = errno;
    yajl_gen_free(g);
    if (rc < 0) {
        unlinkat(c->dirfd, RT_STATE_TMP, 0);
        return rt_fail(ctx, "save the state of %s: %s", c->id, strerror(err));
    }
    return 0;
}

/* Remove what the directory dfd holds (not following symlinks), then close it. */
static void empty_dir(int dfd, int depth)
{
    DIR *d = fdopendir(dfd);
    if (d == NULL) {
        close(dfd);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (unlinkat(dirfd(d), e->d_name, 0) == 0)
            continue;
        if ((errno == EISDIR || errno == EPERM) && depth < 16) {
            int sub = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub >= 0)
                empty_dir(sub, depth + 1);
            unlinkat(dirfd(d), e->d_name, AT_REMOVEDIR);
        }
    }
    closedir(d);
}

void rt_container_remove(struct rt_ctx *ctx, const char *id)
{
    int rootfd = open(ctx->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0)
        return;
    struct stat st;
    if (fstatat(rootfd, id, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        if (S_ISDIR(st.st_mode)) {
            int dfd = openat(rootfd, id, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (dfd >= 0)
                empty_dir(dfd, 0);
            unlinkat(rootfd, id, AT_REMOVEDIR);
        } else {
            unlinkat(rootfd, id, 0); /* a symlink or file planted there: only the entry goes */
        }
    }
    close(rootfd);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

char **rt_list_ids(struct rt_ctx *ctx)
{
    size_t n = 0, cap = 16;
    char **ids = calloc(cap, sizeof *ids);
    if (ids == NULL)
        return NULL;
    DIR *d = opendir(ctx->root);
    if (d == NULL)
        return ids; /* no root yet: no containers */
    struct rt_ctx quiet = *ctx;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (rt_check_id(&quiet, e->d_name) < 0)
            continue;
        if (n + 1 >= cap) {
            char **more = realloc(ids, cap * 2 * sizeof *ids);
            if (more == NULL)
                break;
            ids = more;
            cap *= 2;
        }
        ids[n] = strdup(e->d_name);
        if (ids[n] != NULL)
            n++;
        ids[n] = NULL;
    }
    closedir(d);
    qsort(ids, n, sizeof *ids, cmp_str);
    return ids;
}

void rt_free_list(char **ids)
{
    if (ids == NULL)
        return;
    for (char **p = ids; *p; p++)
        free(*p);
    free(ids);
}

void rt_rfc3339(char *buf, size_t len)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char day[32];
    strftime(day, sizeof day, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, len, "%s.%09ldZ", day, ts.tv_nsec);
}
