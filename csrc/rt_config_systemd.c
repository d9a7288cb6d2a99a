/* --systemd-cgroup for pyrt-runtime's native create (root): the container's
 * cgroup is the `container` leaf of a delegated transient scope, as
 * pyrt/ocirt/spec.py's systemd_cgroups_path and systemd_unavailable say, with
 * the same checks and messages. */
#include "rt_config.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define LEAF "container"

const char *rt_systemd_unavailable(void)
{
    struct stat st;
    if (stat("/run/systemd/system", &st) < 0 || !S_ISDIR(st.st_mode))
        return "systemd is not running on this host (no /run/systemd/system)";
    const struct rt_layout *lay = rt_layout();
    if (lay == NULL || !lay->unified[0] || lay->nv1 > 0)
        return "this host's cgroups are not pure cgroup2 (pyrt-runtime's systemd scopes need it)";
    return NULL;
}

/* [A-Za-z0-9_.-]+ */
static int unit_word(const char *s)
{
    if (!s[0])
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_' ||
              *s == '.' || *s == '-'))
            return 0;
    return 1;
}

static int ends_with(const char *s, const char *end)
{
    size_t n = strlen(s), m = strlen(end);
    return n >= m && strcmp(s + n - m, end) == 0;
}

static int quoted(const char *s, char *buf, size_t len)
{
    struct yajl_val_s v = {.type = yajl_t_string, .u.string = (char *)s};
    return rt_cfg_repr(&v, buf, len);
}

int rt_config_systemd(struct rt_ctx *ctx, struct rt_plan *p, const char *cpath, const char *id)
{
    static const char *const where = "linux.cgroupsPath";
    struct rt_arena *a = &p->arena;
    char r[600];
    const char *parts[3] = {"", "", ""};
    char *copy = rt_arena_strdup(a, cpath);
    if (copy == NULL)
        return rt_fail(ctx, "create: out of memory");
    if (cpath[0]) {
        char *c1 = strchr(copy, ':'), *c2 = c1 != NULL ? strchr(c1 + 1, ':') : NULL;
        if (c2 == NULL || strchr(c2 + 1, ':') != NULL) {
            RT_TRY(quoted(cpath, r, sizeof r));
            return rt_cfg_err(ctx, where, "%s: with --systemd-cgroup it is slice:prefix:name (as "
                              "machine.slice:libpod:ID), not a path", r);
        }
        *c1 = *c2 = 0;
        parts[0] = copy;
        parts[1] = c1 + 1;
        parts[2] = c2 + 1;
    }
    const char *slice = parts[0][0] ? parts[0] : "system.slice";
    const char *prefix = cpath[0] ? parts[1] : "pyrt-runtime";
    const char *name = parts[2][0] ? parts[2] : id;
    if (!unit_word(slice) || !ends_with(slice, ".slice") || strcmp(slice, "-.slice") == 0 || slice[0] == '-' ||
        strstr(slice, "--") != NULL || ends_with(slice, "-.slice") || slice[0] == '.') {
        RT_TRY(quoted(slice, r, sizeof r));
        return rt_cfg_err(ctx, where, "%s is not a systemd slice name (as machine.slice or machine-pods.slice)", r);
    }
    const char *what[2] = {"prefix", "name"}, *word[2] = {prefix, name};
    for (int i = 0; i < 2; i++)
        if ((word[i][0] || i == 1) && (!unit_word(word[i]) || word[i][0] == '.' || word[i][0] == '-')) {
            RT_TRY(quoted(word[i], r, sizeof r));
            return rt_cfg_err(ctx, where, "invalid %s %s: letters, digits, '_', '.' and '-' only", what[i], r);
        }
    if (ends_with(name, ".slice")) {
        RT_TRY(quoted(name, r, sizeof r));
        return rt_cfg_err(ctx, where, "%s: pyrt-runtime puts a container in a scope, not a slice", r);
    }
    char *unit = prefix[0] ? rt_arena_printf(a, "%s-%s.scope", prefix, name) : rt_arena_printf(a, "%s.scope", name);
    if (unit == NULL)
        return rt_fail(ctx, "create: out of memory");
    if (strlen(unit) > 255 || strlen(slice) > 255) {
        RT_TRY(quoted(cpath, r, sizeof r));
        return rt_cfg_err(ctx, where, "%s: a systemd unit name is at most 255 characters", r);
    }
    /* the slice's cgroup as systemd nests them: a-b.slice is a.slice/a-b.slice */
    size_t stem = strlen(slice) - strlen(".slice");
    char *path = rt_arena_alloc(a, stem * (stem + 8) + 8);
    if (path == NULL)
        return rt_fail(ctx, "create: out of memory");
    for (size_t i = 0; i <= stem; i++)
        if (i == stem || slice[i] == '-') {
            size_t n = strlen(path);
            snprintf(path + n, stem + 8, "%s%.*s.slice", n ? "/" : "", (int)i, slice);
        }
    p->systemd_slice = slice;
    p->systemd_unit = unit;
    p->systemd_scope = rt_arena_printf(a, "%s/%s", path, unit);
    if (p->systemd_scope == NULL)
        return rt_fail(ctx, "create: out of memory");
    p->cgroup_parent = p->systemd_scope;
    p->cgroup_name = LEAF;
    return 0;
}
