/* Test driver of pyrt-runtime's native cgroup side (csrc/rt_resources.c,
 * csrc/rt_cgroup_make.c, csrc/rt_cgroup_user.c), built by tests/test_rt_cgroup.py
 * from csrc/ and yajl; internal, not installed. It includes rt_cgroup_make.c to
 * reach its cpu.weight conversion.
 *
 *   probe parse CONFIG [nodevfs]    linux.resources of CONFIG validated: JSON on
 *                                   stdout (resources.py's form), or the error
 *   probe create CONFIG NAME PARENT [ignore-devices]
 *                                   the cgroup made and its limits written (it is
 *                                   left for the test to compare and remove):
 *                                   {"v2": dir, "v1": {ctrl: dir}, "fds": n}
 *   probe bench CONFIG NAME PARENT N  N rounds of parse + create (+ remove, not timed):
 *                                   the mean time of one, in ms
 *   probe weights                   cpu_shares_to_weight of 0..262145, one a line
 *   probe require WHAT              delegation.py's require
 *   probe delegated                 delegation.py's delegated_root (or "None")
 *   probe start-unit UNIT SLICE DESCRIPTION [SCOPE] / stop-unit UNIT SCOPE
 *
 * An error: its line on stderr, exit status 1. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../csrc/rt_cgroup_make.c"
#include "rt_json.h"
#include "rt_resources.h"

static void jstr(const char *s)
{
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if (*p < 0x20)
            printf("\\u%04x", *p);
        else
            putchar(*p);
    }
    putchar('"');
}

static void jnum(const char *dec)
{
    fputs(dec ? dec : "-1", stdout);
}

static void blk_list(const char *key, const struct rt_res_blk *v, size_t n, int *first)
{
    if (!n)
        return;
    printf("%s\"%s\": [", *first ? "" : ", ", key);
    *first = 0;
    for (size_t i = 0; i < n; i++)
        printf("%s[\"%s\", %llu]", i ? ", " : "", v[i].dev, (unsigned long long)v[i].value);
    printf("]");
}

static void dump(const struct rt_resources *r)
{
    int first = 1;
    printf("{");
    if (r->has_memory) {
        int f = 1;
        printf("\"memory\": {");
        if (r->mem_limit)
            printf("%s\"limit\": %s", f ? "" : ", ", r->mem_limit), f = 0;
        if (r->mem_reservation)
            printf("%s\"reservation\": %s", f ? "" : ", ", r->mem_reservation), f = 0;
        if (r->mem_swap)
            printf("%s\"swap\": %s", f ? "" : ", ", r->mem_swap), f = 0;
        if (r->mem_swappiness >= 0)
            printf("%s\"swappiness\": %d", f ? "" : ", ", r->mem_swappiness), f = 0;
        if (r->mem_disable_oom)
            printf("%s\"disableOOMKiller\": true", f ? "" : ", "), f = 0;
        printf("}");
        first = 0;
    }
    if (r->has_cpu) {
        int f = 1;
        printf("%s\"cpu\": {", first ? "" : ", ");
        if (r->cpu_shares)
            printf("%s\"shares\": %s", f ? "" : ", ", r->cpu_shares), f = 0;
        if (r->cpu_quota)
            printf("%s\"quota\": %s", f ? "" : ", ", r->cpu_quota), f = 0;
        if (r->cpu_period)
            printf("%s\"period\": %ld", f ? "" : ", ", r->cpu_period), f = 0;
        if (r->cpus)
            printf("%s\"cpus\": ", f ? "" : ", "), jstr(r->cpus), f = 0;
        if (r->mems)
            printf("%s\"mems\": ", f ? "" : ", "), jstr(r->mems), f = 0;
        printf("}");
        first = 0;
    }
    if (r->pids) {
        printf("%s\"pids\": %s", first ? "" : ", ", r->pids);
        first = 0;
    }
    if (r->ndevices) {
        printf("%s\"devices\": [", first ? "" : ", ");
        for (size_t i = 0; i < r->ndevices; i++) {
            const struct rt_res_dev *d = &r->devices[i];
            printf("%s[\"%c\", ", i ? ", " : "", d->type);
            jnum(d->major);
            printf(", ");
            jnum(d->minor);
            printf(", \"%s\", %s]", d->access, d->allow ? "true" : "false");
        }
        printf("]");
        first = 0;
    }
    if (r->has_blkio) {
        int f = 1;
        printf("%s\"blockIO\": {", first ? "" : ", ");
        if (r->blk_weight)
            printf("\"weight\": %d", r->blk_weight), f = 0;
        if (r->blk_leaf_weight)
            printf("%s\"leafWeight\": %d", f ? "" : ", ", r->blk_leaf_weight), f = 0;
        blk_list("weightDevice", r->weight_dev, r->nweight_dev, &f);
        blk_list("leafWeightDevice", r->leaf_weight_dev, r->nleaf_weight_dev, &f);
        static const char *const names[] = {"read_bps", "write_bps", "read_iops", "write_iops"};
        for (int k = 0; k < RT_RES_NTHROTTLES; k++)
            blk_list(names[k], r->throttle[k], r->nthrottle[k], &f);
        printf("}");
        first = 0;
    }
    if (r->nunified) {
        printf("%s\"unified\": {", first ? "" : ", ");
        for (size_t i = 0; i < r->nunified; i++) {
            printf("%s", i ? ", " : "");
            jstr(r->unified_keys[i]);
            printf(": ");
            jstr(r->unified_values[i]);
        }
        printf("}");
    }
    printf("}\n");
}

static yajl_val load(const char *path)
{
    char why[512] = "";
    yajl_val cfg = rt_json_load_at(AT_FDCWD, path, why, sizeof why);
    if (cfg == NULL) {
        fprintf(stderr, "load %s: %s %s\n", path, strerror(errno), why);
        exit(2);
    }
    return cfg;
}

static int failed(struct rt_ctx *ctx)
{
    fprintf(stderr, "%s\n", ctx->err);
    return 1;
}

int main(int argc, char **argv)
{
    struct rt_ctx ctx = {0};
    if (argc >= 3 && strcmp(argv[1], "parse") == 0) {
        yajl_val cfg = load(argv[2]);
        struct rt_resources r;
        int dev_is_fs = !(argc > 3 && strcmp(argv[3], "nodevfs") == 0);
        if (rt_resources_parse_ex(&ctx, rt_json_get(cfg, "linux"), dev_is_fs, &r) < 0) {
            yajl_tree_free(cfg);
            return failed(&ctx);
        }
        dump(&r);
        printf("any=%d any_nodev=%d\n", rt_resources_any(&r, 0), rt_resources_any(&r, 1));
        rt_resources_free(&r);
        yajl_tree_free(cfg);
        return 0;
    }
    if (argc >= 5 && strcmp(argv[1], "create") == 0) {
        yajl_val cfg = load(argv[2]);
        struct rt_resources r;
        if (rt_resources_parse(&ctx, rt_json_get(cfg, "linux"), &r) < 0) {
            yajl_tree_free(cfg);
            return failed(&ctx);
        }
        struct rt_cgroup_made made;
        int ignore = argc > 5 && strcmp(argv[5], "ignore-devices") == 0;
        int rc = rt_cgroup_create(&ctx, argv[3], argv[4], &r, ignore, &made);
        rt_resources_free(&r);
        yajl_tree_free(cfg);
        if (rc < 0)
            return failed(&ctx);
        printf("{\"v2\": ");
        if (made.cg.v2[0])
            jstr(made.cg.v2);
        else
            printf("null");
        printf(", \"v1\": {");
        for (size_t i = 0; i < made.cg.nv1; i++) {
            printf("%s\"%s\": ", i ? ", " : "", made.cg.v1[i].ctrl);
            jstr(made.cg.v1[i].dir);
        }
        printf("}, \"fds\": %zu, \"cgroup_fd\": %d}\n", made.nprocs, made.cgroup_fd >= 0);
        rt_cgroup_made_close(&made);
        rt_cgroup_made_close(&made); /* twice: idempotent */
        return 0;
    }
    if (argc == 6 && strcmp(argv[1], "bench") == 0) {
        yajl_val cfg = load(argv[2]);
        long n = strtol(argv[5], NULL, 10);
        double spent = 0;
        for (long i = 0; i < n; i++) {
            struct rt_resources r;
            struct rt_cgroup_made made;
            double t = rt_now();
            if (rt_resources_parse(&ctx, rt_json_get(cfg, "linux"), &r) < 0 ||
                rt_cgroup_create(&ctx, argv[3], argv[4], &r, 0, &made) < 0)
                return failed(&ctx);
            rt_cgroup_made_close(&made);
            spent += rt_now() - t;
            rt_resources_free(&r);
            if (rt_cgroup_remove(&ctx, &made.cg, 10) < 0)
                return failed(&ctx);
        }
        yajl_tree_free(cfg);
        printf("%.3f\n", spent / (double)n * 1e3);
        return 0;
    }
    if (argc == 2 && strcmp(argv[1], "weights") == 0) {
        for (long s = 0; s <= 262145; s++) {
            char t[32];
            snprintf(t, sizeof t, "%ld", s);
            printf("%ld\n", shares_to_weight(t));
        }
        return 0;
    }
    if (argc == 3 && strcmp(argv[1], "require") == 0) {
        if (rt_cgroup_require_delegation(&ctx, argv[2]) < 0)
            return failed(&ctx);
        printf("ok\n");
        return 0;
    }
    if (argc == 2 && strcmp(argv[1], "delegated") == 0) {
        char root[PATH_MAX];
        printf("%s\n", rt_cgroup_delegated_root(root, sizeof root) == 0 ? root : "None");
        return 0;
    }
    if (argc >= 5 && strcmp(argv[1], "start-unit") == 0) {
        if (rt_systemd_start_unit(&ctx, argv[2], argv[3], argv[4], argc > 5 ? argv[5] : NULL) < 0)
            return failed(&ctx);
        printf("ok\n");
        return 0;
    }
    if (argc == 4 && strcmp(argv[1], "stop-unit") == 0) {
        if (rt_systemd_stop_unit(&ctx, argv[2], argv[3]) < 0)
            return failed(&ctx);
        printf("ok\n");
        return 0;
    }
    fprintf(stderr, "usage: see the head of rt_cgroup_probe.c\n");
    return 2;
}
