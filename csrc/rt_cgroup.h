/* A container's cgroup as pyrt-runtime finds it again (the native side of
 * pyrt/cgroups/cgroup.py's Cgroup.open and what `kill --all`, `ps`, `pause`,
 * `resume` and `delete` do with it): `<parent>/<name>` in the cgroup2 hierarchy
 * and in every v1 hierarchy where the directory exists, on v1, v2 and hybrid hosts
 * alike; the host's layout read from /proc/self/mountinfo once. */
#ifndef PYRT_RT_CGROUP_H
#define PYRT_RT_CGROUP_H

#include <limits.h>
#include <sys/types.h>

#include "rt.h"

#define RT_CG_MAX_V1 32

struct rt_layout {
    char unified[PATH_MAX]; /* the cgroup2 mount point, "" when none */
    size_t nv1;
    struct {
        char ctrl[32];
        char mount[PATH_MAX];
    } v1[RT_CG_MAX_V1]; /* controller -> its hierarchy, in mountinfo's order */
};

struct rt_cgroup {
    char name[256];
    char parent[PATH_MAX];
    char v2[PATH_MAX]; /* its cgroup2 directory, "" when none */
    size_t nv1;
    struct {
        char ctrl[32];
        char dir[PATH_MAX];
    } v1[RT_CG_MAX_V1];
};

/* The host's layout (read on first use); NULL when /proc/self/mountinfo cannot be
 * read. */
const struct rt_layout *rt_layout(void);

/* Whether `name` is a valid cgroup name (`parent`: levels joined by '/'), as
 * pyrt/cgroups/cgroup.py's _check_name says. */
int rt_cgroup_name_ok(const char *name, int is_parent);

/* Open the existing cgroup; 0, or -1 when it is not there in any hierarchy (or the
 * names are not valid: a record is never followed outside the hierarchies). */
int rt_cgroup_open(struct rt_cgroup *cg, const char *name, const char *parent);

/* Its pids (from its cgroup2 directory when it has one): a malloc'd array (free()
 * it), its length in *n; -1 with errno on failure. */
int rt_cgroup_procs(const struct rt_cgroup *cg, pid_t **pids, size_t *n);

/* 1 frozen, 0 not, -1 when it has no freezer. */
int rt_cgroup_frozen(const struct rt_cgroup *cg);

/* Freeze or thaw, and wait until done (timeout in seconds); -1 with ctx->err set. */
int rt_cgroup_set_frozen(struct rt_ctx *ctx, const struct rt_cgroup *cg, int frozen, double timeout);

/* SIGKILL every process and wait until none is left (cgroup.kill where the kernel
 * has it, else freeze, signal through pidfds, thaw, repeat). */
int rt_cgroup_kill_all(struct rt_ctx *ctx, const struct rt_cgroup *cg, double timeout);

/* Send `sig` to each process of the cgroup (each checked to be still in it
 * through its pidfd). */
void rt_cgroup_signal_all(const struct rt_cgroup *cg, int sig);

/* Remove it from every hierarchy (killing what is left first); the systemd scope
 * pyrt made for it too (a parent machine.slice/pyrt-ID.scope). Gone already is
 * not an error. */
int rt_cgroup_remove(struct rt_ctx *ctx, const struct rt_cgroup *cg, double timeout);

/* Stop a systemd scope (busctl StopUnit; a unit not loaded is not an error) and
 * wait up to 10 s until its cgroup `scope` (below the cgroup2 mount) is gone. */
int rt_systemd_stop_unit(struct rt_ctx *ctx, const char *unit, const char *scope);

/* Whether systemd runs this host with pure cgroup2 (--systemd-cgroup usable). */
int rt_systemd_available(void);

/* -- making a container's cgroup (rt_cgroup_make.c; rt_resources.h validates the
 * limits) ------------------------------------------------------------------------
 *
 * create's cgroup steps, as pyrt/ocirt/operations.py's Operations.create takes them:
 *
 *   rt_resources_parse(ctx, linux, &r)                      (config errors first)
 *   user = geteuid() != 0;                                  (an ordinary user: no device cgroup)
 *   if (user && !systemd_unit && (rt_resources_any(&r, 1) || systemd_cgroup))
 *       rt_cgroup_require_delegation(ctx, systemd_cgroup ? "--systemd-cgroup" : "linux.resources");
 *   if (systemd_unit) rt_systemd_start_unit(ctx, unit, slice, "pyrt-runtime container ID", scope);
 *   if (user && !systemd_unit) no cgroup;
 *   else if (a hierarchy is mounted (rt_layout()) && cgroup_name)
 *       rt_cgroup_create(ctx, cgroup_name, cgroup_parent, &r, user, &made);
 *       -> spawn with made.cgroup_fd (CLONE_INTO_CGROUP) and made.procs_fds, then
 *          rt_cgroup_made_close(&made); on a later failure rt_cgroup_remove(ctx, &made.cg, 10)
 *   else if (rt_resources_any(&r, user))
 *       fail "linux.resources: no cgroup hierarchy is mounted on this host"
 */

struct rt_resources;

struct rt_cgroup_made {
    struct rt_cgroup cg;         /* as rt_cgroup_open fills it */
    int cgroup_fd;               /* cgroup2 directory for CLONE_INTO_CGROUP, or -1 */
    int procs_fds[RT_CG_MAX_V1]; /* v1 cgroup.procs files the parent writes the pid to */
    size_t nprocs;
};

/* Make <parent>/<name> in every hierarchy the resources need (as Cgroup.create
 * with accounting=resource_controllers(r), devices=None, then apply_resources),
 * write the limits and open the spawn's fds (as spawn_fds); on failure -1 with
 * ctx->err and nothing left (the parent levels made stay, as in Python). r may
 * be NULL (no limits). ignore_devices: as for an ordinary user (no device
 * cgroup). */
int rt_cgroup_create(struct rt_ctx *ctx, const char *name, const char *parent, const struct rt_resources *r,
                     int ignore_devices, struct rt_cgroup_made *out);

/* Close the fds (the cgroup stays: rt_cgroup_remove(&m->cg) removes it).
 * Idempotent. */
void rt_cgroup_made_close(struct rt_cgroup_made *m);

/* Start a delegated transient scope `unit` in `slice` (busctl StartTransientUnit
 * with Delegate=yes, a placeholder process holding it in its supervisor/ leaf, as
 * systemd.py's start_unit); `scope` is its cgroup below the cgroup2 mount (NULL:
 * <slice's path>/<unit>). -1 with ctx->err, and nothing left. */
int rt_systemd_start_unit(struct rt_ctx *ctx, const char *unit, const char *slice, const char *description,
                          const char *scope);

/* An ordinary user's delegated cgroup2 subtree (pyrt/cgroups/delegation.py's
 * delegated_root: user.slice/user-UID.slice/user@UID.service, below the cgroup2
 * mount) into buf; 0, or -1 when there is none. */
int rt_cgroup_delegated_root(char *buf, size_t len);

/* 0 when this process may have cgroups made for its containers (root, or an
 * ordinary user in a delegated subtree); else -1 with ctx->err the one-line
 * refusal of delegation.py's require(what) ("linux.resources" or
 * "--systemd-cgroup": what asked for it). */
int rt_cgroup_require_delegation(struct rt_ctx *ctx, const char *what);

#endif
