/* An OCI config's linux.resources validated for pyrt-runtime's native create (the
 * native side of pyrt/ocirt/resources.py's parse_resources): the same input
 * accepted, the same one-line errors ("config.json: linux.resources.X: ..."), and
 * the same validated form, which rt_cgroup_create (rt_cgroup_make.c) writes into
 * the container's cgroup as pyrt/cgroups/oci.py's apply_resources does.
 *
 * Integers are kept as decimal text: JSON integers have no bound, and what
 * Python accepts (a memory limit of 2**70, say) reaches the cgroup file as the
 * same digits, where the kernel judges it. */
#ifndef PYRT_RT_RESOURCES_H
#define PYRT_RT_RESOURCES_H

#include <stddef.h>
#include <stdint.h>

#include <yajl/yajl_tree.h>

#include "rt.h"

/* A device rule (pyrt/cgroups/devices.py's (type, major, minor, access, allow)). */
struct rt_res_dev {
    char type;       /* 'a', 'b' or 'c' */
    char *major;     /* decimal text, NULL: any (-1) */
    char *minor;     /* decimal text, NULL: any (-1) */
    char access[4];  /* a subset of "rwm", in that order */
    int allow;
};

/* A blockIO per-device weight or rate: "MAJ:MIN" and its value. */
struct rt_res_blk {
    char dev[24];
    uint64_t value;
};

enum { RT_RES_READ_BPS, RT_RES_WRITE_BPS, RT_RES_READ_IOPS, RT_RES_WRITE_IOPS, RT_RES_NTHROTTLES };

struct rt_resources {
    /* memory ("memory" in resources.py's result when has_memory) */
    int has_memory;
    char *mem_limit;        /* > 0, or NULL */
    char *mem_reservation;  /* > 0, or NULL */
    char *mem_swap;         /* > 0 or "-1", or NULL */
    int mem_swappiness;     /* 0..100, -1: unset */
    int mem_disable_oom;

    /* cpu and cpuset ("cpu" when has_cpu) */
    int has_cpu;
    char *cpu_shares;       /* >= 0, or NULL */
    char *cpu_quota;        /* != 0 (negative: no quota), or NULL */
    long cpu_period;        /* 1000..1000000, 0: unset */
    char *cpus, *mems;      /* as the kernel writes a cpuset ("0-3,5"), or NULL */

    /* pids */
    char *pids;             /* >= -1, or NULL */

    /* devices: the spec's rules, then an allow rule per c/b device of linux.devices
       (and the default devices when /dev is the container's own), then pyrt's
       default rules (resources.py's DEFAULT_DEVICE_RULES); none when the spec
       gives no rule */
    struct rt_res_dev *devices;
    size_t ndevices;

    /* blockIO (has_blkio: any of them set) */
    int has_blkio;
    int blk_weight, blk_leaf_weight;      /* 10..1000, 0: unset */
    struct rt_res_blk *weight_dev, *leaf_weight_dev;
    size_t nweight_dev, nleaf_weight_dev;
    struct rt_res_blk *throttle[RT_RES_NTHROTTLES]; /* rates, in RT_RES_* order */
    size_t nthrottle[RT_RES_NTHROTTLES];

    /* unified: file -> value, in the config's order (a repeated key: its last
       value at its first place, as Python's json) */
    char **unified_keys, **unified_values;
    size_t nunified;
};

/* Validate config's "linux" object (resources + devices; NULL: none); -1 with
 * ctx->err set (same message as resources.py). linux.devices are checked as
 * pyrt/ocirt/mounts.py's device() does (the same messages), and /dev is taken to
 * be the container's own (a tmpfs mount, as in every usual config): see
 * rt_resources_parse_ex. */
int rt_resources_parse(struct rt_ctx *ctx, yajl_val linux_obj, struct rt_resources *out);

/* The same; dev_is_fs: whether the config mounts a /dev of its own (not a bind
 * mount), which adds runc's default devices (mounts.py's DEFAULT_DEVICES) that
 * linux.devices does not name to the device rules (spec.py's parse). */
int rt_resources_parse_ex(struct rt_ctx *ctx, yajl_val linux_obj, int dev_is_fs, struct rt_resources *out);

void rt_resources_free(struct rt_resources *r);

/* Whether any limit is asked (ignore_devices: as for an ordinary user, who gets
 * no device cgroup). */
int rt_resources_any(const struct rt_resources *r, int ignore_devices);

/* The cgroup controllers the resources need (pyrt/cgroups/oci.py's
 * resource_controllers), NULL terminated into out[8]; their count. */
size_t rt_resources_controllers(const struct rt_resources *r, int ignore_devices, const char *out[8]);

#endif
