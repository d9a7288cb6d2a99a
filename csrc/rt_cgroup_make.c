/* See rt_cgroup.h: making a container's cgroup. */
#include "rt_cgroup.h"

#include <string.h>
#include <unistd.h>

#include "rt_resources.h"

int rt_cgroup_create(struct rt_ctx *ctx, const char *name, const char *parent, const struct rt_resources *r,
                     int ignore_devices, struct rt_cgroup_made *out)
{
    (void)name;
    (void)parent;
    (void)r;
    (void)ignore_devices;
    memset(out, 0, sizeof *out);
    out->cgroup_fd = -1;
    return rt_fail(ctx, "create cgroup: not implemented yet");
}

void rt_cgroup_made_close(struct rt_cgroup_made *m)
{
    if (m->cgroup_fd >= 0)
        close(m->cgroup_fd);
    m->cgroup_fd = -1;
    for (size_t i = 0; i < m->nprocs; i++)
        close(m->procs_fds[i]);
    m->nprocs = 0;
}

int rt_systemd_start_unit(struct rt_ctx *ctx, const char *unit, const char *slice, const char *description,
                          const char *scope)
{
    (void)slice;
    (void)description;
    (void)scope;
    return rt_fail(ctx, "systemd StartTransientUnit \"%s\": not implemented yet", unit);
}

int rt_cgroup_delegated_root(char *buf, size_t len)
{
    (void)buf;
    (void)len;
    return -1;
}

int rt_cgroup_require_delegation(struct rt_ctx *ctx, const char *what)
{
    if (geteuid() == 0)
        return 0;
    return rt_fail(ctx, "%s: Operation not permitted", what);
}
