/* A bundle's config.json read and validated for pyrt-runtime's native create
 * (the native side of pyrt/ocirt/spec.py's load_config and parse, with
 * pyrt/ocirt/mounts.py and pyrt/launch/seccomp.py's compile_seccomp): the same
 * checks in the same order, the same one-line errors, the same spawn spec.
 *
 * The hand-over rule. The Python implementation creates the container instead
 * (it then reads the config again and decides everything itself) when
 * rt_create.c's hand_over_reason says so before the config is read, or when
 * rt_config_load or rt_config_parse return RT_DEFER (through rt_defer(why):
 * `pyrt-runtime --debug` prints why). That is the case for:
 *   - what is not native yet: an ordinary user (rootless; root of a user
 *     namespace, as rootless engines run the runtime, is native unless its
 *     cgroup is to be in a subtree systemd delegates), --preserve-fds, a
 *     host without any cgroup hierarchy;
 *   - a config.json the native reader does not take as Python's json does: one
 *     that is missing, unreadable, larger than 16 MiB, not valid strict JSON
 *     (comments, NaN, a BOM), not an object, nested deeper than 64, with a
 *     duplicate key, an escaped NUL or surrogate;
 *   - an error whose message quotes a value in a form only Python's repr gives
 *     exactly (anything but None, a bool, an integer or printable ASCII text),
 *     and a few shapes Python iterates or fails on in its own ways (a non-list
 *     where a list is read with `or []`, a list where a name is looked up,
 *     non-ASCII capability names or ids, numbers beyond what the binding takes).
 * Everything else is done natively. exec (rt_exec.c) follows the same rule for
 * its process (a --process file read by rt_config_read, checked by
 * rt_config_process); its own cases are listed in rt_exec.h. PYRT_RUNTIME_PYTHON=1
 * in the environment hands every create, run and exec over (the tests compare
 * both sides with it). */
#ifndef PYRT_RT_CONFIG_H
#define PYRT_RT_CONFIG_H

#include <stddef.h>
#include <yajl/yajl_tree.h>

#include "oci.h"
#include "rt.h"
#include "rt_cgroup.h"
#include "rt_config_check.h"
#include "rt_resources.h"

#define RT_MAX_JOINS 8
#define RT_MAX_CGROUP_MOUNTS 16

struct rt_plan {
    struct rt_arena arena;
    yajl_val cfg;
    const char *bundle;      /* absolute */
    const char *rootfs;      /* the state's "rootfs" (root.path, real) */
    const char *oci_version; /* the config's ociVersion */

    struct pyrt_spawn_spec spec;
    struct pyrt_oci oci;
    struct pyrt_mount *mounts; /* spec.mounts */
    size_t nmounts;
    size_t cgroup_mounts[RT_MAX_CGROUP_MOUNTS]; /* indexes of `cgroup` mounts, replaced once the cgroup is made */
    size_t ncgroup_mounts;
    int cgroupns;          /* a cgroup namespace, new or joined */
    unsigned ns_seen, ns_made; /* namespaces named, made (bits in CLONE's order: mount, uts, ipc, user,
                                  pid, network, cgroup, time) */
    int dev_is_fs;         /* the config mounts a /dev of its own */

    int join_types[RT_MAX_JOINS]; /* namespaces joined by path (user first) */
    const char *join_paths[RT_MAX_JOINS];
    size_t njoins;
    const char *pid_join; /* a pid namespace: joined by the runtime before the spawn */

    const char *cgroup_parent, *cgroup_name; /* name NULL: no cgroup */
    const char *systemd_slice, *systemd_unit, *systemd_scope; /* --systemd-cgroup: the scope made */
    int has_resources;
    struct rt_resources res;
    int oom_set, oom_score_adj;
    int terminal;
    yajl_val hooks, annotations, process, seccomp;

    const char **warnings;
    size_t nwarnings;
    void *seccomp_prog; /* malloc'd */
};

/* Read <bundle>/config.json; 0, or RT_DEFER (see above). */
int rt_config_load(struct rt_ctx *ctx, const char *bundle, struct rt_plan *p);

/* A JSON object from path (config.json, exec's --process file) under the same rule:
 * *out (yajl_tree_free it), or RT_DEFER when Python's json would read it otherwise. */
int rt_config_read(struct rt_ctx *ctx, const char *path, yajl_val *out);

/* A `process` object into p->spec (argv, env, path, cwd, user, umask, caps,
 * rlimits, no_new_privs), p->oci's capability sets and p->terminal: what
 * pyrt/ocirt/spec.py's parse reads from it, with the same errors. */
int rt_config_process(struct rt_ctx *ctx, struct rt_plan *p, yajl_val proc);

/* Validate and resolve it for container `id`: 0, -1 with ctx->err, or RT_DEFER. */
int rt_config_parse(struct rt_ctx *ctx, struct rt_plan *p, const char *id, int systemd_cgroup);

/* Replace the `cgroup` mounts by what shows the container's cgroups (cg: the one
 * made for it, or NULL), as pyrt/ocirt/mounts.py's cgroup_mounts. */
int rt_config_cgroup_mounts(struct rt_ctx *ctx, struct rt_plan *p, const struct rt_cgroup *cg);

void rt_plan_free(struct rt_plan *p);

/* -- parts (rt_config_mounts.c, rt_config_seccomp.c) -- */
int rt_config_mounts(struct rt_ctx *ctx, struct rt_plan *p, yajl_val lnx);
int rt_config_seccomp(struct rt_ctx *ctx, struct rt_plan *p, yajl_val sc);
/* --systemd-cgroup's cgroupsPath (slice:prefix:name) into the plan's scope */
int rt_config_systemd(struct rt_ctx *ctx, struct rt_plan *p, const char *cpath, const char *id);
/* Why --systemd-cgroup cannot be used here (spec.py's systemd_unavailable), or NULL. */
const char *rt_systemd_unavailable(void);

#endif
