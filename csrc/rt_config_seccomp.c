/* linux.seccomp of a config for pyrt-runtime's native create: checked as
 * pyrt/launch/seccomp.py's compile_seccomp checks it (the same messages, in the
 * same order) and compiled by csrc/seccomp_compile.c into the spawn spec's filter. */
#include "rt_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "seccomp_compile.h"

static const struct {
    const char *name;
    uint32_t value;
} ACTIONS[] = {{"SCMP_ACT_KILL", 0x00000000},  {"SCMP_ACT_KILL_THREAD", 0x00000000},
               {"SCMP_ACT_KILL_PROCESS", 0x80000000U}, {"SCMP_ACT_TRAP", 0x00030000},
               {"SCMP_ACT_ERRNO", 0x00050000}, {"SCMP_ACT_TRACE", 0x7ff00000},
               {"SCMP_ACT_LOG", 0x7ffc0000},   {"SCMP_ACT_ALLOW", 0x7fff0000},
               {NULL, 0}};

static const struct {
    const char *name;
    int op;
} OPS[] = {{"SCMP_CMP_NE", PYRT_SCMP_NE}, {"SCMP_CMP_LT", PYRT_SCMP_LT}, {"SCMP_CMP_LE", PYRT_SCMP_LE},
           {"SCMP_CMP_EQ", PYRT_SCMP_EQ}, {"SCMP_CMP_GE", PYRT_SCMP_GE}, {"SCMP_CMP_GT", PYRT_SCMP_GT},
           {"SCMP_CMP_MASKED_EQ", PYRT_SCMP_MASKED_EQ}, {NULL, 0}};

static const struct {
    const char *name;
    unsigned int flag;
} FLAGS[] = {{"SECCOMP_FILTER_FLAG_TSYNC", 1}, {"SECCOMP_FILTER_FLAG_LOG", 2},
             {"SECCOMP_FILTER_FLAG_SPEC_ALLOW", 4}, {NULL, 0}};

static const char *const ARCHS[][2] = {
    {"SCMP_ARCH_X86", "x86"},           {"SCMP_ARCH_X86_64", "x86_64"},       {"SCMP_ARCH_X32", "x32"},
    {"SCMP_ARCH_ARM", "arm"},           {"SCMP_ARCH_AARCH64", "aarch64"},     {"SCMP_ARCH_MIPS", "mips"},
    {"SCMP_ARCH_MIPS64", "mips64"},     {"SCMP_ARCH_MIPS64N32", "mips64n32"}, {"SCMP_ARCH_MIPSEL", "mipsel"},
    {"SCMP_ARCH_MIPSEL64", "mipsel64"}, {"SCMP_ARCH_MIPSEL64N32", "mipsel64n32"},
    {"SCMP_ARCH_PPC", "ppc"},           {"SCMP_ARCH_PPC64", "ppc64"},         {"SCMP_ARCH_PPC64LE", "ppc64le"},
    {"SCMP_ARCH_S390", "s390"},         {"SCMP_ARCH_S390X", "s390x"},         {"SCMP_ARCH_PARISC", "parisc"},
    {"SCMP_ARCH_PARISC64", "parisc64"}, {"SCMP_ARCH_RISCV64", "riscv64"},     {NULL, NULL}};

/* A value Python would look up in a dict: a list or an object raises there. */
static int hashable(yajl_val v)
{
    return v == NULL || !(YAJL_IS_ARRAY(v) || YAJL_IS_OBJECT(v));
}

static int action(struct rt_ctx *ctx, yajl_val name, yajl_val errno_ret, const char *where, uint32_t *out)
{
    if (!hashable(name))
        return rt_defer("a seccomp action that is a list or an object");
    const char *s = name != NULL && YAJL_IS_STRING(name) ? name->u.string : NULL;
    if (s != NULL && strcmp(s, "SCMP_ACT_NOTIFY") == 0)
        return rt_cfg_err(ctx, where, "SCMP_ACT_NOTIFY is not supported");
    int k = 0;
    while (ACTIONS[k].name && (s == NULL || strcmp(ACTIONS[k].name, s) != 0))
        k++;
    if (ACTIONS[k].name == NULL) {
        char r[256];
        RT_TRY(rt_cfg_repr(name, r, sizeof r));
        return rt_cfg_err(ctx, where, "unknown action %s", r);
    }
    *out = ACTIONS[k].value;
    if (strcmp(s, "SCMP_ACT_ERRNO") == 0 || strcmp(s, "SCMP_ACT_TRACE") == 0) {
        long long e = 1;
        if (errno_ret != NULL && !YAJL_IS_NULL(errno_ret))
            RT_TRY(rt_cfg_int(ctx, errno_ret, where, 0, 0xffff, &e));
        *out |= (uint32_t)e & 0xffff;
    }
    return 0;
}

int rt_config_seccomp(struct rt_ctx *ctx, struct rt_plan *p, yajl_val sc)
{
    struct rt_arena *a = &p->arena;
    RT_TRY(rt_cfg_object(ctx, sc, "linux.seccomp"));
    if (!pyrt_seccomp_available())
        return rt_cfg_err(ctx, "linux.seccomp", "this pyrt was built without libseccomp (apt-get install "
                          "libseccomp-dev, then reinstall pyrt): the profile cannot be loaded");
    if (rt_cfg_truthy(rt_cfg_get(sc, "listenerPath")))
        return rt_cfg_err(ctx, "linux.seccomp.listenerPath", "seccomp notify is not supported");
    struct pyrt_seccomp_profile prof = {0};
    RT_TRY(action(ctx, rt_cfg_get(sc, "defaultAction"), rt_cfg_get(sc, "defaultErrnoRet"),
                  "linux.seccomp.defaultAction", &prof.default_action));
    yajl_val archs = rt_cfg_get_or(sc, "architectures");
    RT_TRY(rt_cfg_str_list(ctx, archs, "linux.seccomp.architectures"));
    const char **av = rt_arena_alloc(a, (rt_cfg_len(archs) + 1) * sizeof *av);
    if (av == NULL)
        return rt_fail(ctx, "create: out of memory");
    for (size_t i = 0; i < rt_cfg_len(archs); i++) {
        yajl_val v = archs->u.array.values[i];
        int k = 0;
        while (ARCHS[k][0] && strcmp(ARCHS[k][0], v->u.string) != 0)
            k++;
        if (ARCHS[k][0] == NULL) {
            char r[256];
            RT_TRY(rt_cfg_repr(v, r, sizeof r));
            return rt_cfg_err(ctx, "linux.seccomp.architectures", "unknown architecture %s", r);
        }
        av[i] = ARCHS[k][1];
    }
    prof.archs = av;
    yajl_val flags = rt_cfg_get_or(sc, "flags");
    RT_TRY(rt_cfg_str_list(ctx, flags, "linux.seccomp.flags"));
    unsigned int fl = 0;
    for (size_t i = 0; i < rt_cfg_len(flags); i++) {
        yajl_val v = flags->u.array.values[i];
        int k = 0;
        while (FLAGS[k].name && strcmp(FLAGS[k].name, v->u.string) != 0)
            k++;
        if (FLAGS[k].name == NULL) {
            char r[256];
            RT_TRY(rt_cfg_repr(v, r, sizeof r));
            return rt_cfg_err(ctx, "linux.seccomp.flags", "unknown flag %s", r);
        }
        fl |= FLAGS[k].flag;
    }
    yajl_val calls = rt_cfg_get_or(sc, "syscalls");
    if (!rt_cfg_is_list(calls))
        return rt_defer("linux.seccomp.syscalls is not a list");
    size_t nr = rt_cfg_len(calls);
    struct pyrt_seccomp_rule *rules = rt_arena_alloc(a, (nr + 1) * sizeof *rules);
    if (rules == NULL)
        return rt_fail(ctx, "create: out of memory");
    for (size_t i = 0; i < nr; i++) {
        yajl_val s = calls->u.array.values[i];
        char where[64], w[128];
        snprintf(where, sizeof where, "linux.seccomp.syscalls[%zu]", i);
        RT_TRY(rt_cfg_object(ctx, s, where));
        yajl_val names = rt_cfg_get_or(s, "names");
        snprintf(w, sizeof w, "%s.names", where);
        RT_TRY(rt_cfg_str_list(ctx, names, w));
        snprintf(w, sizeof w, "%s.action", where);
        RT_TRY(action(ctx, rt_cfg_get(s, "action"), rt_cfg_get(s, "errnoRet"), w, &rules[i].action));
        const char **nv = rt_arena_alloc(a, (rt_cfg_len(names) + 1) * sizeof *nv);
        if (nv == NULL)
            return rt_fail(ctx, "create: out of memory");
        for (size_t k = 0; k < rt_cfg_len(names); k++)
            nv[k] = names->u.array.values[k]->u.string;
        rules[i].names = nv;
        yajl_val args = rt_cfg_get_or(s, "args");
        if (!rt_cfg_is_list(args))
            return rt_defer("a seccomp rule's args is not a list");
        size_t na = rt_cfg_len(args);
        struct pyrt_seccomp_arg *ar = rt_arena_alloc(a, (na + 1) * sizeof *ar);
        if (ar == NULL)
            return rt_fail(ctx, "create: out of memory");
        for (size_t j = 0; j < na; j++) {
            yajl_val x = args->u.array.values[j];
            char wa[160], wx[180];
            snprintf(wa, sizeof wa, "%s.args[%zu]", where, j);
            RT_TRY(rt_cfg_object(ctx, x, wa));
            yajl_val op = rt_cfg_get(x, "op");
            if (!hashable(op))
                return rt_defer("a seccomp operator that is a list or an object");
            int k = 0;
            while (OPS[k].name && !(op != NULL && YAJL_IS_STRING(op) && strcmp(OPS[k].name, op->u.string) == 0))
                k++;
            if (OPS[k].name == NULL) {
                char r[256];
                snprintf(wx, sizeof wx, "%s.op", wa);
                RT_TRY(rt_cfg_repr(op, r, sizeof r));
                return rt_cfg_err(ctx, wx, "unknown operator %s", r);
            }
            long long idx = 0;
            uint64_t val = 0, two = 0;
            yajl_val v;
            snprintf(wx, sizeof wx, "%s.index", wa);
            if ((v = rt_cfg_get(x, "index")) != NULL)
                RT_TRY(rt_cfg_int(ctx, v, wx, 0, 5, &idx));
            snprintf(wx, sizeof wx, "%s.value", wa);
            if ((v = rt_cfg_get(x, "value")) != NULL)
                RT_TRY(rt_cfg_u64(ctx, v, wx, &val));
            snprintf(wx, sizeof wx, "%s.valueTwo", wa);
            if ((v = rt_cfg_get(x, "valueTwo")) != NULL)
                RT_TRY(rt_cfg_u64(ctx, v, wx, &two));
            ar[j] = (struct pyrt_seccomp_arg){.index = (unsigned)idx, .op = OPS[k].op, .value = val,
                                              .value_two = two};
        }
        rules[i].args = ar;
        rules[i].nargs = na;
    }
    prof.rules = rules;
    prof.nrules = nr;
    struct pyrt_error e;
    size_t len = 0;
    if (pyrt_seccomp_compile(&prof, &p->seccomp_prog, &len, &e) < 0) {
        char msg[700];
        rt_format_error(&e, msg, sizeof msg);
        return rt_cfg_err(ctx, "linux.seccomp", "%s", msg);
    }
    p->spec.seccomp = p->seccomp_prog;
    p->spec.seccomp_len = len;
    p->spec.seccomp_flags = fl;
    return 0;
}
