/* The root, mounts and devices of a config for pyrt-runtime's native create: the
 * native side of pyrt/ocirt/spec.py's root and mounts step and
 * pyrt/ocirt/mounts.py (mount_entry, check_proc_mount, device, cgroup_mounts).
 * Destinations are checked as far as the config shows them (nothing over or
 * inside /proc but what runc allows, through the rootfs's symlinks too); the
 * spawn core checks again where each one really resolves, with fds. */
#include "rt_config.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "spawn.h"

static const char NO_MOUNTS_WHY[] = "the container has no mount namespace of its own, and pyrt-runtime never "
                                    "mounts in a mount namespace it did not create (the host's, or one joined "
                                    "by path)";

static const struct {
    const char *name;
    unsigned long flags;
} PROPAGATION[] = {{"private", MS_PRIVATE},       {"rprivate", MS_PRIVATE | MS_REC},
                   {"slave", MS_SLAVE},           {"rslave", MS_SLAVE | MS_REC},
                   {"shared", MS_SHARED},         {"rshared", MS_SHARED | MS_REC},
                   {"unbindable", MS_UNBINDABLE}, {"runbindable", MS_UNBINDABLE | MS_REC},
                   {NULL, 0}};

static const struct {
    const char *name;
    unsigned int flag;
    int set;
} FLAG_OPTS[] = {{"ro", PYRT_MNT_RDONLY, 1},   {"nosuid", PYRT_MNT_NOSUID, 1}, {"nodev", PYRT_MNT_NODEV, 1},
                 {"noexec", PYRT_MNT_NOEXEC, 1}, {"rw", PYRT_MNT_RDONLY, 0},   {"suid", PYRT_MNT_NOSUID, 0},
                 {"dev", PYRT_MNT_NODEV, 0},     {"exec", PYRT_MNT_NOEXEC, 0}, {NULL, 0, 0}};

static const char *const IGNORED_OPTS[] = {
    "defaults", "relatime", "norelatime", "noatime", "atime", "strictatime", "nostrictatime", "nodiratime",
    "diratime", "sync", "async", "dirsync", "mand", "nomand", "lazytime", "nolazytime", "silent", "loud",
    "iversion", "noiversion", "z", "Z", "tmpcopyup", "notmpcopyup", "copy", "nocopy", "remount", "U", NULL};

static const char *const PROC_MOUNT_OK[] = {"/proc/cpuinfo", "/proc/diskstats", "/proc/meminfo", "/proc/stat",
                                            "/proc/swaps", "/proc/uptime", "/proc/loadavg", "/proc/slabinfo",
                                            "/proc/net/dev", "/proc/sys/kernel/ns_last_pid", NULL};

static const struct {
    const char *path;
    unsigned int major, minor;
} DEFAULT_DEVICES[] = {{"/dev/null", 1, 3},   {"/dev/zero", 1, 5},    {"/dev/full", 1, 7},
                       {"/dev/random", 1, 8}, {"/dev/urandom", 1, 9}, {"/dev/tty", 5, 0}};

static int in_list(const char *const *list, const char *s)
{
    for (; *list; list++)
        if (strcmp(*list, s) == 0)
            return 1;
    return 0;
}

static int oom(struct rt_ctx *ctx)
{
    return rt_fail(ctx, "create: out of memory");
}

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The anchor each container's root is attached to (pyrt/launch/spec.py's _anchor). */
static const char *anchor(struct rt_plan *p)
{
    char tmp[64];
    snprintf(tmp, sizeof tmp, "/tmp/pyrt-%u", (unsigned)getuid());
    const char *bases[] = {"/run/pyrt", tmp};
    for (int i = 0; i < 2; i++) {
        if (mkdir(bases[i], 0777) < 0 && errno != EEXIST)
            continue;
        char *path = rt_arena_printf(&p->arena, "%s/rootfs", bases[i]);
        if (path == NULL)
            return NULL;
        if ((mkdir(path, 0700) == 0 || errno == EEXIST) && is_dir(path))
            return path;
    }
    return NULL;
}

/* Where `dest` lands in the rootfs, its symlinks resolved in it as the mount will
 * resolve them (mounts.py's _in_root: a part that is no symlink, or not there, is
 * taken as it is); NULL when too long to follow. */
static char *in_root(struct rt_arena *a, const char *rootfs, const char *dest)
{
    size_t cap = 4 * PATH_MAX;
    char *rest = rt_arena_alloc(a, cap), *done = rt_arena_alloc(a, cap), *probe = rt_arena_alloc(a, 2 * cap);
    if (rest == NULL || done == NULL || probe == NULL || strlen(dest) >= cap)
        return NULL;
    strcpy(rest, dest);
    size_t pos = 0; /* rest[pos..] is what is left */
    int links = 0;
    for (;;) {
        pos += strspn(rest + pos, "/");
        if (!rest[pos])
            break;
        size_t n = strcspn(rest + pos, "/");
        char part[PATH_MAX];
        if (n >= sizeof part)
            return NULL;
        memcpy(part, rest + pos, n);
        part[n] = 0;
        pos += n;
        if (strcmp(part, ".") == 0)
            continue;
        if (strcmp(part, "..") == 0) {
            char *slash = strrchr(done, '/');
            *(slash != NULL ? slash : done) = 0;
            continue;
        }
        snprintf(probe, 2 * cap, "%s/%s%s%s", rootfs, done, done[0] ? "/" : "", part);
        char target[PATH_MAX];
        ssize_t t = readlink(probe, target, sizeof target - 1);
        if (t < 0) {
            if (strlen(done) + n + 2 >= cap)
                return NULL;
            if (done[0])
                strcat(done, "/");
            strcat(done, part);
            continue;
        }
        target[t] = 0;
        if (++links > 40)
            break;
        if (target[0] == '/')
            done[0] = 0;
        size_t left = strlen(rest + pos);
        if ((size_t)t + 1 + left >= cap)
            return NULL;
        memmove(rest + t + 1, rest + pos, left + 1);
        memcpy(rest, target, (size_t)t);
        rest[t] = '/';
        pos = 0;
    }
    return rt_arena_printf(a, "/%s", done);
}

static int check_proc_mount(struct rt_ctx *ctx, struct rt_plan *p, const struct pyrt_mount *m, const char *where,
                            const char *rootfs)
{
    const char *inside = in_root(&p->arena, rootfs, m->target);
    if (inside == NULL)
        return rt_defer("a mount destination too long to follow in the rootfs");
    const char *ds[2] = {m->target, inside};
    char w[300];
    snprintf(w, sizeof w, "%s.destination", where);
    for (int i = 0; i < 2; i++) {
        if (i == 1 && strcmp(ds[0], ds[1]) == 0)
            break;
        const char *d = ds[i];
        char r[PATH_MAX + 8];
        struct yajl_val_s fake = {.type = yajl_t_string, .u.string = (char *)m->target};
        if (strcmp(d, "/proc") == 0) {
            if (m->kind == PYRT_MOUNT_FS && strcmp(m->fstype, "proc") == 0)
                continue;
            if (m->kind == PYRT_MOUNT_BIND) {
                char real[PATH_MAX];
                if (realpath(m->source, real) != NULL && strcmp(real, "/proc") == 0)
                    continue;
            }
            RT_TRY(rt_cfg_repr(&fake, r, sizeof r));
            return rt_cfg_err(ctx, w, "%s cannot be mounted because it is not of type proc", r);
        }
        if (strncmp(d, "/proc/", 6) == 0 && !in_list(PROC_MOUNT_OK, d)) {
            RT_TRY(rt_cfg_repr(&fake, r, sizeof r));
            return rt_cfg_err(ctx, w, "%s cannot be mounted because it is inside /proc", r);
        }
    }
    return 0;
}

/* mounts.py's mount_entry; *is_cgroup set for a `cgroup` mount. */
static int mount_entry(struct rt_ctx *ctx, struct rt_plan *p, yajl_val m, const char *where, struct pyrt_mount *out,
                       int *is_cgroup)
{
    struct rt_arena *a = &p->arena;
    char w[300];
    RT_TRY(rt_cfg_object(ctx, m, where));
    yajl_val dest = rt_cfg_get(m, "destination");
    snprintf(w, sizeof w, "%s.destination", where);
    if (dest == NULL || !YAJL_IS_STRING(dest) || !dest->u.string[0])
        return rt_cfg_err(ctx, w, "missing");
    char *d = dest->u.string[0] == '/' ? dest->u.string : rt_arena_printf(a, "/%s", dest->u.string);
    if (d == NULL || (d = rt_normpath(a, d)) == NULL)
        return rt_defer("a mount destination too long");
    yajl_val kind = rt_cfg_get_or(m, "type");
    snprintf(w, sizeof w, "%s.type", where);
    if (kind != NULL)
        RT_TRY(rt_cfg_string(ctx, kind, w));
    const char *k = kind != NULL ? kind->u.string : "";
    yajl_val opts = rt_cfg_get_or(m, "options");
    snprintf(w, sizeof w, "%s.options", where);
    RT_TRY(rt_cfg_str_list(ctx, opts, w));
    yajl_val source = rt_cfg_get_or(m, "source");
    snprintf(w, sizeof w, "%s.source", where);
    if (source != NULL)
        RT_TRY(rt_cfg_string(ctx, source, w));
    if (rt_cfg_truthy(rt_cfg_get(m, "uidMappings")) || rt_cfg_truthy(rt_cfg_get(m, "gidMappings")))
        return rt_cfg_err(ctx, where, "id-mapped mounts are not supported");
    unsigned int flags = 0;
    unsigned long prop = 0;
    int bind = strcmp(k, "bind") == 0, recursive = 0, named_bind = 0;
    size_t nopts = rt_cfg_len(opts), dlen = 0;
    char *data = rt_arena_alloc(a, 1);
    for (size_t i = 0; i < nopts; i++) {
        const char *o = opts->u.array.values[i]->u.string;
        int done = 0;
        if (strcmp(o, "bind") == 0 || strcmp(o, "rbind") == 0) {
            bind = named_bind = 1;
            recursive = recursive || strcmp(o, "rbind") == 0;
            continue;
        }
        for (int f = 0; FLAG_OPTS[f].name && !done; f++)
            if (strcmp(FLAG_OPTS[f].name, o) == 0) {
                flags = FLAG_OPTS[f].set ? flags | FLAG_OPTS[f].flag : flags & ~FLAG_OPTS[f].flag;
                done = 1;
            }
        for (int f = 0; PROPAGATION[f].name && !done; f++)
            if (strcmp(PROPAGATION[f].name, o) == 0) {
                prop = PROPAGATION[f].flags;
                done = 1;
            }
        if (done || in_list(IGNORED_OPTS, o))
            continue;
        if (strcmp(o, "idmap") == 0 || strcmp(o, "ridmap") == 0) {
            snprintf(w, sizeof w, "%s.options", where);
            return rt_cfg_err(ctx, w, "%s: id-mapped mounts are not supported", o);
        }
        char *more = rt_arena_printf(a, "%s%s%s", data, dlen ? "," : "", o);
        if (more == NULL)
            return oom(ctx);
        data = more;
        dlen = strlen(data);
    }
    memset(out, 0, sizeof *out);
    out->flags = flags;
    out->target = d;
    out->propagation = prop;
    *is_cgroup = 0;
    if (bind) {
        if (strcmp(k, "bind") == 0 && !named_bind)
            recursive = 1; /* type bind without an option: as runc, a recursive bind */
        snprintf(w, sizeof w, "%s.source", where);
        if (source == NULL)
            return rt_cfg_err(ctx, w, "a bind mount needs a source");
        char *src = rt_path_join(a, p->bundle, source->u.string);
        if (src == NULL)
            return oom(ctx);
        struct stat st;
        if (stat(src, &st) < 0)
            return rt_cfg_err(ctx, w, "%s: no such file or directory", src);
        out->kind = PYRT_MOUNT_BIND;
        out->source = src;
        if (!recursive)
            out->flags |= PYRT_MNT_NOREC;
        return 0;
    }
    if (!k[0]) {
        snprintf(w, sizeof w, "%s.type", where);
        return rt_cfg_err(ctx, w, "missing (and no bind option)");
    }
    out->kind = PYRT_MOUNT_FS;
    out->fstype = k;
    if (strcmp(k, "cgroup") == 0)
        *is_cgroup = 1;
    else
        out->data = dlen ? data : NULL;
    return 0;
}

/* mounts.py's device(): the spec's device into out. */
static int device(struct rt_ctx *ctx, struct rt_plan *p, yajl_val d, const char *where, struct pyrt_device *out)
{
    char w[300];
    RT_TRY(rt_cfg_object(ctx, d, where));
    yajl_val path = rt_cfg_get(d, "path");
    snprintf(w, sizeof w, "%s.path", where);
    if (path == NULL || !YAJL_IS_STRING(path) || path->u.string[0] != '/')
        return rt_cfg_err(ctx, w, "an absolute path is needed");
    yajl_val kind = rt_cfg_get(d, "type");
    const char *ks = kind != NULL && YAJL_IS_STRING(kind) ? kind->u.string : "";
    unsigned int type = strcmp(ks, "c") == 0 || strcmp(ks, "u") == 0 ? S_IFCHR
                        : strcmp(ks, "b") == 0                       ? S_IFBLK
                        : strcmp(ks, "p") == 0                       ? S_IFIFO
                                                                     : 0;
    if (type == 0) {
        char r[256];
        snprintf(w, sizeof w, "%s.type", where);
        RT_TRY(rt_cfg_repr(kind, r, sizeof r));
        return rt_cfg_err(ctx, w, "unknown device type %s (c, b, u or p)", r);
    }
    long long major = 0, minor = 0, mode = 0666, uid = 0, gid = 0;
    yajl_val v;
    if (type != S_IFIFO) {
        snprintf(w, sizeof w, "%s.major", where);
        if ((v = rt_cfg_get(d, "major")) != NULL)
            RT_TRY(rt_cfg_int(ctx, v, w, 0, LLONG_MAX, &major));
        snprintf(w, sizeof w, "%s.minor", where);
        if ((v = rt_cfg_get(d, "minor")) != NULL)
            RT_TRY(rt_cfg_int(ctx, v, w, 0, LLONG_MAX, &minor));
    }
    snprintf(w, sizeof w, "%s.fileMode", where);
    if ((v = rt_cfg_get(d, "fileMode")) != NULL && !YAJL_IS_NULL(v))
        RT_TRY(rt_cfg_int(ctx, v, w, 0, 0177777, &mode));
    mode &= 07777; /* the permissions; an st_mode's file type bits (podman writes them) are dropped */
    snprintf(w, sizeof w, "%s.uid", where);
    if ((v = rt_cfg_get(d, "uid")) != NULL)
        RT_TRY(rt_cfg_int(ctx, v, w, 0, LLONG_MAX, &uid));
    snprintf(w, sizeof w, "%s.gid", where);
    if ((v = rt_cfg_get(d, "gid")) != NULL)
        RT_TRY(rt_cfg_int(ctx, v, w, 0, LLONG_MAX, &gid));
    if (major > 0xffffffffLL || minor > 0xffffffffLL || uid > 0xffffffffLL || gid > 0xffffffffLL)
        return rt_defer("a device number or owner beyond 32 bits");
    out->path = rt_normpath(&p->arena, path->u.string);
    if (out->path == NULL)
        return rt_defer("a device path too long");
    out->mode = type | (unsigned int)mode;
    out->major = (unsigned int)major;
    out->minor = (unsigned int)minor;
    out->uid = (uid_t)uid;
    out->gid = (gid_t)gid;
    return 0;
}

static int path_list(struct rt_ctx *ctx, struct rt_plan *p, yajl_val lnx, const char *key,
                     const char *const **out)
{
    char w[64];
    snprintf(w, sizeof w, "linux.%s", key);
    yajl_val l = rt_cfg_get_or(lnx, key);
    RT_TRY(rt_cfg_str_list(ctx, l, w));
    const char **v = rt_arena_alloc(&p->arena, (rt_cfg_len(l) + 1) * sizeof *v);
    if (v == NULL)
        return oom(ctx);
    for (size_t i = 0; i < rt_cfg_len(l); i++)
        v[i] = l->u.array.values[i]->u.string;
    *out = v;
    return 0;
}

static int check_absolute(struct rt_ctx *ctx, const char *key, const char *const *paths)
{
    for (size_t i = 0; paths[i]; i++)
        if (paths[i][0] != '/') {
            char w[80], r[PATH_MAX];
            struct yajl_val_s fake = {.type = yajl_t_string, .u.string = (char *)paths[i]};
            snprintf(w, sizeof w, "linux.%s[%zu]", key, i);
            RT_TRY(rt_cfg_repr(&fake, r, sizeof r));
            return rt_cfg_err(ctx, w, "%s is not an absolute path", r);
        }
    return 0;
}

int rt_config_mounts(struct rt_ctx *ctx, struct rt_plan *p, yajl_val lnx)
{
    struct rt_arena *a = &p->arena;
    yajl_val root = rt_cfg_get(p->cfg, "root");
    yajl_val rpath = rt_cfg_get(root, "path");
    if (root == NULL || !YAJL_IS_OBJECT(root) || rpath == NULL || !YAJL_IS_STRING(rpath) || !rpath->u.string[0])
        return rt_cfg_err(ctx, "root.path", "missing");
    char *rootfs = rt_path_join(a, p->bundle, rpath->u.string);
    if (rootfs == NULL)
        return oom(ctx);
    int mount_joined = (p->ns_seen & 1u) && !(p->ns_made & 1u);
    if (!mount_joined && !is_dir(rootfs))
        return rt_cfg_err(ctx, "root.path", "%s: not a directory", rootfs);
    char real[PATH_MAX];
    if (realpath(rootfs, real) == NULL)
        return rt_defer("root.path does not resolve (a joined mount namespace's)");
    if ((p->rootfs = rt_arena_strdup(a, real)) == NULL)
        return oom(ctx);

    if (!(p->ns_made & 1u)) {
        /* no mount namespace of its own: chroot, and nothing mounted */
        static const char *const ASKS[][2] = {{"mounts", "mounts"}, {"linux.maskedPaths", "maskedPaths"},
                                             {"linux.readonlyPaths", "readonlyPaths"},
                                             {"root.readonly", "readonly"},
                                             {"linux.rootfsPropagation", "rootfsPropagation"},
                                             {"linux.devices", "devices"}};
        for (size_t i = 0; i < sizeof ASKS / sizeof ASKS[0]; i++) {
            yajl_val from = i == 0 ? p->cfg : i == 3 ? root : lnx;
            if (rt_cfg_truthy(rt_cfg_get(from, ASKS[i][1])))
                return rt_cfg_err(ctx, ASKS[i][0], "%s: add a new mount namespace, or leave this out", NO_MOUNTS_WHY);
        }
        p->oci.chroot_path = mount_joined ? rootfs : p->rootfs;
        return 0;
    }

    p->spec.rootfs = p->rootfs;
    p->spec.readonly_root = rt_cfg_truthy(rt_cfg_get(root, "readonly"));
    if ((p->spec.anchor = anchor(p)) == NULL)
        return rt_defer("no mount anchor directory (Python says why)");
    yajl_val mounts = rt_cfg_get_or(p->cfg, "mounts");
    if (!rt_cfg_is_list(mounts))
        return rt_defer("mounts is not a list");
    size_t n = rt_cfg_len(mounts);
    p->mounts = rt_arena_alloc(a, (n + 1) * sizeof *p->mounts);
    if (p->mounts == NULL)
        return oom(ctx);
    for (size_t i = 0; i < n; i++) {
        char where[64];
        int is_cgroup = 0;
        snprintf(where, sizeof where, "mounts[%zu]", i);
        struct pyrt_mount *m = &p->mounts[p->nmounts];
        RT_TRY(mount_entry(ctx, p, mounts->u.array.values[i], where, m, &is_cgroup));
        RT_TRY(check_proc_mount(ctx, p, m, where, p->rootfs));
        if (is_cgroup) {
            if (p->ncgroup_mounts == RT_MAX_CGROUP_MOUNTS)
                return rt_defer("more than 16 cgroup mounts");
            p->cgroup_mounts[p->ncgroup_mounts++] = p->nmounts;
        }
        if (strcmp(m->target, "/dev") == 0)
            p->dev_is_fs = m->kind != PYRT_MOUNT_BIND;
        p->nmounts++;
    }
    p->spec.mounts = p->mounts;
    p->spec.nmounts = p->nmounts;

    yajl_val devs = rt_cfg_get_or(lnx, "devices");
    if (!rt_cfg_is_list(devs))
        return rt_defer("linux.devices is not a list");
    size_t nd = rt_cfg_len(devs);
    struct pyrt_device *dv = rt_arena_alloc(a, (nd + 7) * sizeof *dv);
    if (dv == NULL)
        return oom(ctx);
    for (size_t i = 0; i < nd; i++) {
        char where[64];
        snprintf(where, sizeof where, "linux.devices[%zu]", i);
        RT_TRY(device(ctx, p, devs->u.array.values[i], where, &dv[i]));
    }
    size_t ndev = nd;
    if (p->dev_is_fs) {
        for (size_t k = 0; k < sizeof DEFAULT_DEVICES / sizeof DEFAULT_DEVICES[0]; k++) {
            int named = 0;
            for (size_t i = 0; i < nd; i++)
                named |= strcmp(dv[i].path, DEFAULT_DEVICES[k].path) == 0;
            if (named)
                continue;
            dv[ndev].path = DEFAULT_DEVICES[k].path;
            dv[ndev].mode = S_IFCHR | 0666;
            dv[ndev].major = DEFAULT_DEVICES[k].major;
            dv[ndev].minor = DEFAULT_DEVICES[k].minor;
            ndev++;
        }
        p->oci.dev_links = 1;
    }
    p->oci.devices = dv;
    p->oci.ndevices = ndev;

    const char *const *masked, *const *ro;
    RT_TRY(path_list(ctx, p, lnx, "maskedPaths", &masked));
    RT_TRY(path_list(ctx, p, lnx, "readonlyPaths", &ro));
    RT_TRY(check_absolute(ctx, "maskedPaths", masked));
    RT_TRY(check_absolute(ctx, "readonlyPaths", ro));
    if (masked[0] || ro[0]) {
        p->spec.setup |= PYRT_SETUP_MASK;
        p->spec.masked_paths = masked;
        p->spec.readonly_paths = ro;
    }
    yajl_val prop = rt_cfg_get_or(lnx, "rootfsPropagation");
    if (prop != NULL) {
        for (int i = 0; PROPAGATION[i].name; i++)
            if (YAJL_IS_STRING(prop) && strcmp(PROPAGATION[i].name, prop->u.string) == 0) {
                p->oci.root_propagation = PROPAGATION[i].flags;
                return 0;
            }
        if (YAJL_IS_ARRAY(prop) || YAJL_IS_OBJECT(prop))
            return rt_defer("linux.rootfsPropagation is a list or an object");
        char r[256];
        RT_TRY(rt_cfg_repr(prop, r, sizeof r));
        return rt_cfg_err(ctx, "linux.rootfsPropagation", "unknown propagation %s", r);
    }
    return 0;
}

/* -- the cgroup mounts ------------------------------------------------------------------------------------ */

/* This process's cgroup of `ctrl` ("" for cgroup2), from /proc/self/cgroup. */
static const char *own_cgroup(struct rt_arena *a, const char *ctrl)
{
    FILE *f = fopen("/proc/self/cgroup", "re");
    if (f == NULL)
        return "/";
    char line[4096];
    const char *found = "/";
    while (fgets(line, sizeof line, f) != NULL) {
        line[strcspn(line, "\n")] = 0;
        char *c1 = strchr(line, ':');
        char *c2 = c1 != NULL ? strchr(c1 + 1, ':') : NULL;
        if (c2 == NULL)
            continue;
        *c2 = 0;
        const char *ctrls = c1 + 1;
        int match = !ctrls[0] ? !ctrl[0] : 0;
        char *save = NULL;
        char *copy = rt_arena_strdup(a, ctrls);
        for (char *t = copy ? strtok_r(copy, ",", &save) : NULL; t != NULL && !match; t = strtok_r(NULL, ",", &save))
            match = strcmp(t, ctrl) == 0;
        if (match) {
            found = rt_arena_strdup(a, c2 + 1);
            break; /* (the first line of a controller: as a dict built in order keeps the last, both agree
                      while each controller is listed once) */
        }
    }
    fclose(f);
    return found != NULL ? found : "/";
}

int rt_config_cgroup_mounts(struct rt_ctx *ctx, struct rt_plan *p, const struct rt_cgroup *cg)
{
    if (p->ncgroup_mounts == 0)
        return 0;
    const struct rt_layout *lay = rt_layout();
    if (lay == NULL)
        return rt_fail(ctx, "create: cannot read /proc/self/mountinfo");
    struct rt_arena *a = &p->arena;
    size_t cap = p->nmounts + p->ncgroup_mounts * (lay->nv1 + 2);
    struct pyrt_mount *out = rt_arena_alloc(a, (cap + 1) * sizeof *out);
    if (out == NULL)
        return oom(ctx);
    /* the hierarchies by mount point, sorted, each with its first (sorted) controller */
    struct {
        const char *mount, *ctrl, *ctrls;
    } hs[RT_CG_MAX_V1 + 1];
    size_t nh = 0;
    for (size_t i = 0; i < lay->nv1; i++) {
        size_t k = 0;
        while (k < nh && strcmp(hs[k].mount, lay->v1[i].mount) != 0)
            k++;
        if (k == nh) {
            hs[nh].mount = lay->v1[i].mount;
            hs[nh].ctrl = lay->v1[i].ctrl;
            hs[nh++].ctrls = lay->v1[i].ctrl;
        } else {
            char *joined = rt_arena_printf(a, "%s,%s", hs[k].ctrls, lay->v1[i].ctrl);
            if (joined == NULL)
                return oom(ctx);
            hs[k].ctrls = joined; /* (sorted below) */
            if (strcmp(lay->v1[i].ctrl, hs[k].ctrl) < 0)
                hs[k].ctrl = lay->v1[i].ctrl;
        }
    }
    for (size_t k = 0; k < nh; k++) { /* co-mounted controllers in sorted order */
        char *copy = rt_arena_strdup(a, hs[k].ctrls);
        const char *names[RT_CG_MAX_V1];
        size_t nn = 0;
        char *save = NULL;
        for (char *t = copy ? strtok_r(copy, ",", &save) : NULL; t != NULL && nn < RT_CG_MAX_V1; t = strtok_r(NULL, ",", &save))
            names[nn++] = t;
        for (size_t i = 1; i < nn; i++)
            for (size_t j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
                const char *t = names[j];
                names[j] = names[j - 1];
                names[j - 1] = t;
            }
        char *s = rt_arena_alloc(a, strlen(hs[k].ctrls) + 1);
        if (s == NULL)
            return oom(ctx);
        for (size_t i = 0; i < nn; i++) {
            if (i)
                strcat(s, ",");
            strcat(s, names[i]);
        }
        hs[k].ctrls = s;
    }
    if (lay->unified[0]) {
        hs[nh].mount = lay->unified;
        hs[nh].ctrl = NULL;
        hs[nh++].ctrls = NULL;
    }
    for (size_t i = 1; i < nh; i++)
        for (size_t j = i; j > 0 && strcmp(hs[j - 1].mount, hs[j].mount) > 0; j--) {
            __typeof__(hs[0]) t = hs[j];
            hs[j] = hs[j - 1];
            hs[j - 1] = t;
        }
    int has_ns = p->cgroupns;
    size_t w = 0;
    for (size_t i = 0; i < p->nmounts; i++) {
        int replace = 0;
        for (size_t k = 0; k < p->ncgroup_mounts; k++)
            replace |= p->cgroup_mounts[k] == i;
        const struct pyrt_mount *m = &p->mounts[i];
        if (!replace) {
            out[w++] = *m;
            continue;
        }
        if (lay->unified[0] && lay->nv1 == 0) {
            struct pyrt_mount c = {.kind = PYRT_MOUNT_FS, .flags = m->flags, .target = m->target,
                                   .fstype = "cgroup2", .propagation = m->propagation};
            if (!has_ns) {
                c.kind = PYRT_MOUNT_BIND;
                c.fstype = NULL;
                c.source = cg != NULL && cg->v2[0] ? rt_arena_strdup(a, cg->v2)
                                                   : rt_path_join(a, lay->unified, own_cgroup(a, "") + 1);
                if (c.source == NULL)
                    return oom(ctx);
            }
            out[w++] = c;
            continue;
        }
        out[w++] = (struct pyrt_mount){.kind = PYRT_MOUNT_FS, .flags = m->flags, .target = m->target,
                                       .data = "mode=755", .fstype = "tmpfs", .propagation = m->propagation};
        for (size_t k = 0; k < nh; k++) {
            char *base = rt_arena_strdup(a, hs[k].mount);
            char *target = base != NULL ? rt_path_join(a, m->target, basename(base)) : NULL;
            if (target == NULL)
                return oom(ctx);
            if (has_ns) {
                out[w++] = (struct pyrt_mount){.kind = PYRT_MOUNT_FS, .flags = m->flags, .target = target,
                                               .data = hs[k].ctrls, .fstype = hs[k].ctrls ? "cgroup" : "cgroup2"};
                continue;
            }
            const char *src = NULL;
            if (hs[k].ctrl == NULL) {
                src = cg != NULL && cg->v2[0] ? cg->v2 : NULL;
            } else if (cg != NULL) {
                for (size_t j = 0; j < cg->nv1 && src == NULL; j++)
                    if (strcmp(cg->v1[j].ctrl, hs[k].ctrl) == 0)
                        src = cg->v1[j].dir;
            }
            char *s = src != NULL ? rt_arena_strdup(a, src)
                                  : rt_path_join(a, hs[k].mount, own_cgroup(a, hs[k].ctrl ? hs[k].ctrl : "") + 1);
            if (s == NULL)
                return oom(ctx);
            if (is_dir(s))
                out[w++] = (struct pyrt_mount){.kind = PYRT_MOUNT_BIND, .flags = m->flags | PYRT_MNT_NOREC,
                                               .source = s, .target = target};
        }
    }
    p->mounts = out;
    p->nmounts = w;
    p->spec.mounts = out;
    p->spec.nmounts = w;
    p->ncgroup_mounts = 0;
    return 0;
}
