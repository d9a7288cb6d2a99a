/* See rt_config.h. The checks follow pyrt/ocirt/spec.py's parse() step by step
 * (the first error a config has is the one both sides report). */
#include "rt_config.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yajl/yajl_parse.h>

#include "spawn.h"

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

#define MAX_CONFIG (16 << 20)

static const struct {
    const char *name;
    int flag;
} CLONE[] = {{"mount", CLONE_NEWNS}, {"uts", CLONE_NEWUTS},     {"ipc", CLONE_NEWIPC},
             {"user", CLONE_NEWUSER}, {"pid", CLONE_NEWPID},    {"network", CLONE_NEWNET},
             {"cgroup", CLONE_NEWCGROUP}, {"time", CLONE_NEWTIME}};
#define NCLONE (sizeof CLONE / sizeof CLONE[0])

static const struct {
    const char *name;
    int res;
} RLIMITS[] = {{"RLIMIT_AS", RLIMIT_AS},         {"RLIMIT_CORE", RLIMIT_CORE},
               {"RLIMIT_CPU", RLIMIT_CPU},       {"RLIMIT_DATA", RLIMIT_DATA},
               {"RLIMIT_FSIZE", RLIMIT_FSIZE},   {"RLIMIT_MEMLOCK", RLIMIT_MEMLOCK},
               {"RLIMIT_MSGQUEUE", RLIMIT_MSGQUEUE}, {"RLIMIT_NICE", RLIMIT_NICE},
               {"RLIMIT_NOFILE", RLIMIT_NOFILE}, {"RLIMIT_NPROC", RLIMIT_NPROC},
               {"RLIMIT_OFILE", RLIMIT_NOFILE},  {"RLIMIT_RSS", RLIMIT_RSS},
               {"RLIMIT_RTPRIO", RLIMIT_RTPRIO}, {"RLIMIT_RTTIME", RLIMIT_RTTIME},
               {"RLIMIT_SIGPENDING", RLIMIT_SIGPENDING}, {"RLIMIT_STACK", RLIMIT_STACK}};

static const char *const CAP_NAMES[] = {
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
    "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
    "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
    "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE", NULL};

static const char *const HOOK_KINDS[] = {"prestart", "createRuntime", "createContainer", "startContainer",
                                         "poststart", "poststop", NULL};

static const char *const IPC_SYSCTLS[] = {"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
                                          "kernel.shmall", "kernel.shmmax", "kernel.shmmni",
                                          "kernel.shm_rmid_forced", NULL};

static const char NO_MOUNTS_WHY[] = "the container has no mount namespace of its own, and pyrt-runtime never "
                                    "mounts in a mount namespace it did not create (the host's, or one joined "
                                    "by path)";

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

static int warn(struct rt_plan *p, const char *msg)
{
    const char **more = rt_arena_alloc(&p->arena, (p->nwarnings + 1) * sizeof *more);
    if (more == NULL)
        return -1;
    if (p->nwarnings)
        memcpy(more, p->warnings, p->nwarnings * sizeof *more);
    more[p->nwarnings++] = msg;
    p->warnings = more;
    return 0;
}

/* -- reading config.json ------------------------------------------------------------------------------ */

/* What yajl's tree takes that Python's json does not, or reads otherwise. */
static int sane(yajl_val v, int depth, size_t *work)
{
    if (depth > 64)
        return 0;
    if (YAJL_IS_ARRAY(v)) {
        for (size_t i = 0; i < v->u.array.len; i++)
            if (!sane(v->u.array.values[i], depth + 1, work))
                return 0;
    } else if (YAJL_IS_OBJECT(v)) {
        size_t n = v->u.object.len;
        *work += n * n / 2;
        if (*work > 5000000)
            return 0;
        for (size_t i = 0; i < n; i++) {
            for (size_t j = 0; j < i; j++)
                if (strcmp(v->u.object.keys[i], v->u.object.keys[j]) == 0)
                    return 0; /* a duplicate key: Python keeps the last */
            if (!sane(v->u.object.values[i], depth + 1, work))
                return 0;
        }
    }
    return 1;
}

/* The strict first reading's nesting count: a config nested past what sane()
 * takes is handed over before yajl builds its tree (whose freeing recurses once
 * a level: a million '[' overflowed the stack). */
struct nesting {
    int depth;
};

static int nest_in(void *ctx)
{
    struct nesting *n = ctx;
    return ++n->depth <= 66; /* 0: yajl stops, yajl_status_client_canceled */
}

static int nest_out(void *ctx)
{
    ((struct nesting *)ctx)->depth--;
    return 1;
}

/* An escaped NUL or surrogate: yajl's tree cuts or replaces them. */
static int odd_escapes(const char *buf, size_t len)
{
    for (const char *s = buf; (s = memchr(s, '\\', (size_t)(buf + len - s))) != NULL; s++) {
        if (buf + len - s < 6 || s[1] != 'u')
            continue;
        if (memcmp(s + 2, "0000", 4) == 0)
            return 1;
        if ((s[2] == 'd' || s[2] == 'D') && strchr("89abcdefABCDEF", s[3]) != NULL)
            return 1;
    }
    return 0;
}

int rt_config_read(struct rt_ctx *ctx, const char *path, yajl_val *out)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return rt_defer("the JSON file cannot be opened (Python says why)");
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > MAX_CONFIG) {
        close(fd);
        return rt_defer("the JSON file is not a regular file of at most 16 MiB");
    }
    char *buf = malloc((size_t)st.st_size + 1);
    ssize_t n = buf != NULL ? pread(fd, buf, (size_t)st.st_size + 1, 0) : -1;
    close(fd);
    if (n < 0 || n > st.st_size) {
        free(buf);
        return n < 0 && buf == NULL ? oom(ctx) : rt_defer("the JSON file could not be read whole");
    }
    buf[n] = 0;
    /* strict JSON first (yajl's tree allows comments), then the tree */
    yajl_callbacks counting;
    memset(&counting, 0, sizeof counting);
    counting.yajl_start_map = counting.yajl_start_array = nest_in;
    counting.yajl_end_map = counting.yajl_end_array = nest_out;
    struct nesting nest = {0};
    yajl_handle h = yajl_alloc(&counting, NULL, &nest);
    int ok = h != NULL && yajl_parse(h, (const unsigned char *)buf, (size_t)n) == yajl_status_ok &&
             yajl_complete_parse(h) == yajl_status_ok && !odd_escapes(buf, (size_t)n) &&
             memchr(buf, 0, (size_t)n) == NULL;
    if (h != NULL)
        yajl_free(h);
    if (nest.depth > 66) {
        free(buf);
        return rt_defer("the JSON file is nested deeper than 64");
    }
    yajl_val v = NULL;
    if (ok) {
        char why[128];
        v = yajl_tree_parse(buf, why, sizeof why);
    }
    free(buf);
    size_t work = 0;
    if (v == NULL || !YAJL_IS_OBJECT(v)) {
        if (v != NULL)
            yajl_tree_free(v);
        return rt_defer("the JSON file is not a strict JSON object (Python's reader says why)");
    }
    if (!sane(v, 0, &work)) {
        yajl_tree_free(v);
        return rt_defer("the JSON file has a duplicate key or is nested deeper than 64");
    }
    *out = v;
    return 0;
}

int rt_config_load(struct rt_ctx *ctx, const char *bundle, struct rt_plan *p)
{
    memset(p, 0, sizeof *p);
    p->bundle = rt_arena_strdup(&p->arena, bundle);
    const char *path = rt_path_join(&p->arena, bundle, "config.json");
    if (p->bundle == NULL || path == NULL)
        return oom(ctx);
    RT_TRY(rt_config_read(ctx, path, &p->cfg));
    yajl_val version = rt_cfg_get(p->cfg, "ociVersion");
    if (version == NULL || !YAJL_IS_STRING(version) || strncmp(version->u.string, "1.", 2) != 0) {
        char r[256];
        RT_TRY(rt_cfg_repr(version, r, sizeof r));
        return rt_cfg_err(ctx, "ociVersion", "%s is not a supported runtime spec version (1.x)", r);
    }
    p->oci_version = version->u.string;
    return 0;
}

void rt_plan_free(struct rt_plan *p)
{
    if (p->cfg != NULL)
        yajl_tree_free(p->cfg);
    p->cfg = NULL;
    if (p->has_resources)
        rt_resources_free(&p->res);
    p->has_resources = 0;
    free(p->seccomp_prog);
    p->seccomp_prog = NULL;
    rt_arena_free(&p->arena);
}

/* -- process -------------------------------------------------------------------------------------------- */

static int cap_number(const char *name)
{
    char up[64];
    size_t n = strlen(name);
    if (n >= sizeof up)
        return -1;
    for (size_t i = 0; i <= n; i++)
        up[i] = (char)(name[i] >= 'a' && name[i] <= 'z' ? name[i] - 32 : name[i]);
    const char *key = strncmp(up, "CAP_", 4) == 0 ? up + 4 : up;
    for (int i = 0; CAP_NAMES[i]; i++)
        if (strcmp(CAP_NAMES[i], key) == 0)
            return i;
    return -1;
}

static int cap_mask(struct rt_ctx *ctx, struct rt_plan *p, yajl_val names, const char *where, uint64_t *out)
{
    RT_TRY(rt_cfg_str_list(ctx, names, where));
    *out = 0;
    for (size_t i = 0; i < rt_cfg_len(names); i++) {
        const char *n = names->u.array.values[i]->u.string;
        for (const char *c = n; *c; c++)
            if ((unsigned char)*c >= 0x80)
                return rt_defer("a non-ASCII capability name (Python's str.upper() maps some to ASCII)");
        int k = cap_number(n);
        if (k >= 0) {
            *out |= 1ULL << k;
        } else {
            char *w = rt_arena_printf(&p->arena, "%s: unknown capability %s ignored", where, n);
            if (w == NULL || warn(p, w) < 0)
                return oom(ctx);
        }
    }
    return 0;
}

/* `x or []` read as a list of items: NULL when falsy; a truthy non-list defers. */
static int list_or_empty(yajl_val obj, const char *key, yajl_val *out)
{
    *out = rt_cfg_get_or(obj, key);
    return rt_cfg_is_list(*out) ? 0 : rt_defer("a list field is neither a list nor empty");
}

int rt_config_process(struct rt_ctx *ctx, struct rt_plan *p, yajl_val proc)
{
    struct pyrt_spawn_spec *s = &p->spec;
    struct rt_arena *a = &p->arena;
    yajl_val args = rt_cfg_get_or(proc, "args"), env = rt_cfg_get_or(proc, "env");
    RT_TRY(rt_cfg_str_list(ctx, args, "process.args"));
    if (rt_cfg_len(args) == 0)
        return rt_cfg_err(ctx, "process.args", "empty: nothing to run");
    RT_TRY(rt_cfg_str_list(ctx, env, "process.env"));
    const char **argv = rt_arena_alloc(a, (rt_cfg_len(args) + 1) * sizeof *argv);
    const char **envp = rt_arena_alloc(a, (rt_cfg_len(env) + 1) * sizeof *envp);
    if (argv == NULL || envp == NULL)
        return oom(ctx);
    for (size_t i = 0; i < rt_cfg_len(args); i++)
        argv[i] = args->u.array.values[i]->u.string;
    for (size_t i = 0; i < rt_cfg_len(env); i++) {
        const char *e = env->u.array.values[i]->u.string;
        if (strchr(e, '=') == NULL) {
            char r[512], w[64];
            RT_TRY(rt_cfg_repr(env->u.array.values[i], r, sizeof r));
            snprintf(w, sizeof w, "process.env[%zu]", i);
            return rt_cfg_err(ctx, w, "%s is not KEY=VALUE", r);
        }
        envp[i] = e;
        if (strncmp(e, "PATH=", 5) == 0)
            s->path = e + 5; /* the last one */
    }
    s->argv = argv;
    s->envp = envp;
    yajl_val cwd = rt_cfg_get(proc, "cwd");
    if (cwd != NULL) {
        RT_TRY(rt_cfg_string(ctx, cwd, "process.cwd"));
        if (cwd->u.string[0] != '/') {
            char r[512];
            RT_TRY(rt_cfg_repr(cwd, r, sizeof r));
            return rt_cfg_err(ctx, "process.cwd", "%s is not an absolute path", r);
        }
    }
    s->cwd = cwd != NULL ? cwd->u.string : "/";
    p->terminal = rt_cfg_truthy(rt_cfg_get(proc, "terminal"));

    yajl_val user = rt_cfg_get_or(proc, "user");
    if (user != NULL)
        RT_TRY(rt_cfg_object(ctx, user, "process.user"));
    long long uid = 0, gid = 0, umask = -1;
    yajl_val v;
    if ((v = rt_cfg_get(user, "uid")) != NULL)
        RT_TRY(rt_cfg_int(ctx, v, "process.user.uid", 0, 4294967294LL, &uid));
    if ((v = rt_cfg_get(user, "gid")) != NULL)
        RT_TRY(rt_cfg_int(ctx, v, "process.user.gid", 0, 4294967294LL, &gid));
    yajl_val gids;
    RT_TRY(list_or_empty(user, "additionalGids", &gids));
    gid_t *groups = rt_arena_alloc(a, (rt_cfg_len(gids) + 1) * sizeof *groups);
    if (groups == NULL)
        return oom(ctx);
    for (size_t i = 0; i < rt_cfg_len(gids); i++) {
        char w[64];
        long long g;
        snprintf(w, sizeof w, "process.user.additionalGids[%zu]", i);
        RT_TRY(rt_cfg_int(ctx, gids->u.array.values[i], w, 0, 4294967294LL, &g));
        groups[i] = (gid_t)g;
    }
    if ((v = rt_cfg_get(user, "umask")) != NULL && !YAJL_IS_NULL(v))
        RT_TRY(rt_cfg_int(ctx, v, "process.user.umask", 0, 0777, &umask));
    s->set_user = 1;
    s->uid = (uid_t)uid;
    s->gid = (gid_t)gid;
    s->groups = groups;
    s->ngroups = rt_cfg_len(gids);
    s->umask = (int)umask;

    yajl_val caps = rt_cfg_get(proc, "capabilities");
    if (caps != NULL && !YAJL_IS_NULL(caps)) {
        RT_TRY(rt_cfg_object(ctx, caps, "process.capabilities"));
        static const char *const SETS[] = {"bounding", "effective", "permitted", "inheritable", "ambient"};
        uint64_t m[5];
        for (int i = 0; i < 5; i++) {
            char w[64];
            snprintf(w, sizeof w, "process.capabilities.%s", SETS[i]);
            RT_TRY(cap_mask(ctx, p, rt_cfg_get_or(caps, SETS[i]), w, &m[i]));
        }
        s->caps = m[0];
        p->oci.cap_effective = m[1];
        p->oci.cap_permitted = m[2];
        p->oci.cap_inheritable = m[3];
        p->oci.cap_ambient = m[4];
    }
    p->oci.cap_sets = 1;

    yajl_val rls;
    RT_TRY(list_or_empty(proc, "rlimits", &rls));
    struct pyrt_rlimit *rl = rt_arena_alloc(a, (rt_cfg_len(rls) + 1) * sizeof *rl);
    if (rl == NULL)
        return oom(ctx);
    size_t nrl = 0;
    for (size_t i = 0; i < rt_cfg_len(rls); i++) {
        yajl_val r = rls->u.array.values[i];
        char w[64], wt[80], wh[80], ws[80];
        snprintf(w, sizeof w, "process.rlimits[%zu]", i);
        snprintf(wt, sizeof wt, "%s.type", w);
        snprintf(wh, sizeof wh, "%s.hard", w);
        snprintf(ws, sizeof ws, "%s.soft", w);
        RT_TRY(rt_cfg_object(ctx, r, w));
        yajl_val name = rt_cfg_get(r, "type");
        int res = -1;
        if (name != NULL && YAJL_IS_STRING(name))
            for (size_t k = 0; k < sizeof RLIMITS / sizeof RLIMITS[0]; k++)
                if (strcmp(RLIMITS[k].name, name->u.string) == 0)
                    res = RLIMITS[k].res;
        if (res < 0) {
            char rr[256];
            RT_TRY(rt_cfg_repr(name, rr, sizeof rr));
            return rt_cfg_err(ctx, wt, "unknown rlimit %s", rr);
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(rt_cfg_get(rls->u.array.values[j], "type")->u.string, name->u.string) == 0)
                return rt_cfg_err(ctx, wt, "%s given twice", name->u.string);
        uint64_t hard = 0, soft = 0;
        if ((v = rt_cfg_get(r, "hard")) != NULL)
            RT_TRY(rt_cfg_u64(ctx, v, wh, &hard));
        if ((v = rt_cfg_get(r, "soft")) != NULL)
            RT_TRY(rt_cfg_u64(ctx, v, ws, &soft));
        if (soft > hard)
            return rt_cfg_err(ctx, w, "soft limit %llu above the hard limit %llu", (unsigned long long)soft,
                              (unsigned long long)hard);
        size_t k = 0;
        while (k < nrl && rl[k].resource != res)
            k++; /* RLIMIT_OFILE is RLIMIT_NOFILE: the last one given wins */
        rl[k].resource = res;
        rl[k].limit.rlim_cur = (rlim_t)soft;
        rl[k].limit.rlim_max = (rlim_t)hard;
        if (k == nrl)
            nrl++;
    }
    s->rlimits = rl;
    s->nrlimits = nrl;
    if (rt_cfg_truthy(rt_cfg_get(proc, "noNewPrivileges")))
        s->setup |= PYRT_SETUP_NO_NEW_PRIVS;
    if ((v = rt_cfg_get(proc, "oomScoreAdj")) != NULL && !YAJL_IS_NULL(v)) {
        long long adj;
        RT_TRY(rt_cfg_int(ctx, v, "process.oomScoreAdj", -1000, 1000, &adj));
        p->oom_set = 1;
        p->oom_score_adj = (int)adj;
    }
    if (rt_cfg_truthy(rt_cfg_get(proc, "apparmorProfile")) &&
        warn(p, "process.apparmorProfile ignored: pyrt-runtime has no LSM support") < 0)
        return oom(ctx);
    if (rt_cfg_truthy(rt_cfg_get(proc, "selinuxLabel")) &&
        warn(p, "process.selinuxLabel ignored: pyrt-runtime has no LSM support") < 0)
        return oom(ctx);
    return 0;
}

/* -- namespaces ----------------------------------------------------------------------------------------- */

static int idmap(struct rt_ctx *ctx, struct rt_plan *p, yajl_val maps, const char *where, const char **out)
{
    if (!rt_cfg_truthy(maps))
        return rt_cfg_err(ctx, where, "a new user namespace needs id mappings");
    if (!YAJL_IS_ARRAY(maps))
        return rt_cfg_err(ctx, where, "expected a list, got %s", rt_cfg_tname(maps));
    size_t n = maps->u.array.len;
    char *text = rt_arena_alloc(&p->arena, n * 40 + 1);
    if (text == NULL)
        return oom(ctx);
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        yajl_val m = maps->u.array.values[i];
        char wi[80], wc[100], wh[100], ws[100];
        snprintf(wi, sizeof wi, "%s[%zu]", where, i);
        snprintf(wc, sizeof wc, "%s.containerID", wi);
        snprintf(wh, sizeof wh, "%s.hostID", wi);
        snprintf(ws, sizeof ws, "%s.size", wi);
        RT_TRY(rt_cfg_object(ctx, m, wi));
        long long c, h, sz;
        RT_TRY(rt_cfg_int(ctx, rt_cfg_get(m, "containerID"), wc, 0, 4294967295LL, &c));
        RT_TRY(rt_cfg_int(ctx, rt_cfg_get(m, "hostID"), wh, 0, 4294967295LL, &h));
        RT_TRY(rt_cfg_int(ctx, rt_cfg_get(m, "size"), ws, 1, 4294967296LL, &sz));
        w += (size_t)snprintf(text + w, 40, "%lld %lld %lld\n", c, h, sz);
    }
    *out = text;
    return 0;
}

static int parse_namespaces(struct rt_ctx *ctx, struct rt_plan *p, yajl_val lnx, unsigned *seen,
                            unsigned *made)
{
    yajl_val list;
    RT_TRY(list_or_empty(lnx, "namespaces", &list));
    const char *joined[NCLONE] = {0};
    for (size_t i = 0; i < rt_cfg_len(list); i++) {
        yajl_val ns = list->u.array.values[i];
        char w[64], wt[80], wp[80];
        snprintf(w, sizeof w, "linux.namespaces[%zu]", i);
        snprintf(wt, sizeof wt, "%s.type", w);
        snprintf(wp, sizeof wp, "%s.path", w);
        RT_TRY(rt_cfg_object(ctx, ns, w));
        yajl_val kind = rt_cfg_get(ns, "type");
        size_t k = NCLONE;
        if (kind != NULL && YAJL_IS_STRING(kind))
            for (k = 0; k < NCLONE && strcmp(CLONE[k].name, kind->u.string) != 0; k++)
                ;
        char r[256];
        if (k == NCLONE) {
            if (kind != NULL && !YAJL_IS_STRING(kind) && !YAJL_IS_NULL(kind) && !YAJL_IS_INTEGER(kind) &&
                !YAJL_IS_TRUE(kind) && !YAJL_IS_FALSE(kind))
                return rt_defer("a namespace type that is a list or an object");
            RT_TRY(rt_cfg_repr(kind, r, sizeof r));
            return rt_cfg_err(ctx, wt, "unknown namespace type %s (known: mount, uts, ipc, user, pid, network, "
                              "cgroup, time)", r);
        }
        if (*seen & (1u << k)) {
            RT_TRY(rt_cfg_repr(kind, r, sizeof r));
            return rt_cfg_err(ctx, wt, "namespace %s given twice", r);
        }
        *seen |= 1u << k;
        yajl_val path = rt_cfg_get(ns, "path");
        if (rt_cfg_truthy(path)) {
            RT_TRY(rt_cfg_string(ctx, path, wp));
            struct stat st;
            if (stat(path->u.string, &st) < 0)
                return rt_cfg_err(ctx, wp, "%s: no such namespace file", path->u.string);
            if (!S_ISREG(st.st_mode)) /* nsfs files are; a FIFO's open would wait forever */
                return rt_cfg_err(ctx, wp, "%s: not a namespace file", path->u.string);
            joined[k] = path->u.string;
        } else {
            *made |= 1u << k;
        }
    }
    /* k indexes: 0 mount 1 uts 2 ipc 3 user 4 pid 5 network 6 cgroup 7 time */
    p->pid_join = joined[4];
    static const int ORDER[] = {3, 0, 5, 2, 1, 6, 7};
    for (size_t i = 0; i < sizeof ORDER / sizeof ORDER[0]; i++)
        if (joined[ORDER[i]] != NULL) {
            p->join_types[p->njoins] = CLONE[ORDER[i]].flag;
            p->join_paths[p->njoins++] = joined[ORDER[i]];
        }
    if (joined[3] != NULL && (*made & (1u << 4)))
        return rt_cfg_err(ctx, "linux.namespaces", "a new pid namespace inside a joined user namespace is not "
                                                   "supported");
    for (size_t k = 0; k < NCLONE; k++)
        if ((*made & (1u << k)) && k != 5)
            p->spec.clone_flags |= (uint64_t)CLONE[k].flag;
    if (*made & (1u << 5)) {
        p->spec.clone_flags |= CLONE_NEWNET;
        p->spec.setup |= PYRT_SETUP_LOOPBACK;
    }
    p->cgroupns = (*seen & (1u << 6)) != 0;
    if (*made & (1u << 3)) {
        RT_TRY(idmap(ctx, p, rt_cfg_get(lnx, "uidMappings"), "linux.uidMappings", &p->spec.uid_map));
        RT_TRY(idmap(ctx, p, rt_cfg_get(lnx, "gidMappings"), "linux.gidMappings", &p->spec.gid_map));
    } else if (rt_cfg_truthy(rt_cfg_get(lnx, "uidMappings")) || rt_cfg_truthy(rt_cfg_get(lnx, "gidMappings"))) {
        if (joined[3] == NULL)
            return rt_cfg_err(ctx, "linux.uidMappings", "id mappings need a new user namespace");
    }
    return 0;
}

/* -- the rest ------------------------------------------------------------------------------------------- */

static int parse_sysctl(struct rt_ctx *ctx, struct rt_plan *p, yajl_val lnx, unsigned seen, unsigned made)
{
    yajl_val sc = rt_cfg_get_or(lnx, "sysctl");
    if (sc == NULL)
        return 0;
    RT_TRY(rt_cfg_object(ctx, sc, "linux.sysctl"));
    if (!(made & 1u))
        return rt_cfg_err(ctx, "linux.sysctl", "%s: sysctls are written through the container's own /proc",
                          NO_MOUNTS_WHY);
    size_t n = sc->u.object.len;
    const char **pairs = rt_arena_alloc(&p->arena, (2 * n + 1) * sizeof *pairs);
    if (pairs == NULL)
        return oom(ctx);
    for (size_t i = 0; i < n; i++) {
        const char *key = sc->u.object.keys[i];
        char *w = rt_arena_printf(&p->arena, "linux.sysctl.%s", key);
        if (w == NULL)
            return oom(ctx);
        RT_TRY(rt_cfg_string(ctx, sc->u.object.values[i], w));
        if (in_list(IPC_SYSCTLS, key) || strncmp(key, "fs.mqueue.", 10) == 0) {
            if (!(seen & (1u << 2)))
                return rt_cfg_err(ctx, w, "needs an ipc namespace");
        } else if (strncmp(key, "net.", 4) == 0) {
            if (!(seen & (1u << 5)))
                return rt_cfg_err(ctx, w, "needs a network namespace");
        } else if (strcmp(key, "kernel.hostname") == 0 || strcmp(key, "kernel.domainname") == 0) {
            return rt_cfg_err(ctx, w, "set it with the hostname / domainname fields");
        } else {
            return rt_cfg_err(ctx, w, "not namespaced: it would change the host");
        }
        char *k = rt_arena_strdup(&p->arena, key + (strchr(key, '/') != NULL ? strspn(key, "/") : 0));
        if (k == NULL)
            return oom(ctx);
        if (strchr(key, '/') == NULL)
            for (char *c = k; *c; c++)
                if (*c == '.')
                    *c = '/';
        pairs[2 * i] = k;
        pairs[2 * i + 1] = sc->u.object.values[i]->u.string;
    }
    p->oci.sysctls = pairs;
    return 0;
}

/* An ordinary user's cgroup (pyrt/ocirt/spec.py's _user_cgroups; natively only as
 * root of a user namespace, a rootless engine's runtime): a cgroupsPath is
 * relative; with no subtree systemd delegates, no cgroup at all (as runc
 * --rootless); in one, the scope of the user's systemd instance: handed over. */
static int user_cgroups(struct rt_ctx *ctx, yajl_val cp, const char *cpath, const char *id, int systemd)
{
    char r[600];
    if (cpath[0] && !systemd) {
        if (cpath[0] == '/' || strchr(cpath, ':') != NULL) {
            RT_TRY(rt_cfg_repr(cp, r, sizeof r));
            return rt_cfg_err(ctx, "linux.cgroupsPath", "%s: an ordinary user's container is in a scope of its "
                              "systemd instance: use a relative path (below that scope), or --systemd-cgroup "
                              "with slice:prefix:name", r);
        }
        int any = 0;
        for (const char *s = cpath; *s;) {
            size_t n = strcspn(s, "/");
            if (n > 0) {
                any = 1;
                if ((n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.')) {
                    RT_TRY(rt_cfg_repr(cp, r, sizeof r));
                    return rt_cfg_err(ctx, "linux.cgroupsPath", "%s: '.' and '..' are not allowed", r);
                }
            }
            s += n + (s[n] == '/');
        }
        if (!any) {
            RT_TRY(rt_cfg_repr(cp, r, sizeof r));
            return rt_cfg_err(ctx, "linux.cgroupsPath", "%s names no cgroup", r);
        }
    }
    char base[PATH_MAX];
    if (!id[0] || rt_cgroup_delegated_root(base, sizeof base) < 0)
        return 0;
    return rt_defer("a cgroup in the subtree systemd delegates to an ordinary user");
}

static int parse_cgroups_path(struct rt_ctx *ctx, struct rt_plan *p, yajl_val lnx, const char *id, int systemd)
{
    yajl_val cp = rt_cfg_get_or(lnx, "cgroupsPath");
    if (cp != NULL)
        RT_TRY(rt_cfg_string(ctx, cp, "linux.cgroupsPath"));
    const char *cpath = cp != NULL ? cp->u.string : "";
    if (rt_ordinary_user())
        return user_cgroups(ctx, cp, cpath, id, systemd);
    if (systemd)
        return rt_config_systemd(ctx, p, cpath, id);
    if (!cpath[0]) {
        p->cgroup_parent = "pyrt-runtime";
        p->cgroup_name = id[0] ? id : NULL;
        return 0;
    }
    char r[600];
    if (strchr(cpath, ':') != NULL && cpath[0] != '/') {
        RT_TRY(rt_cfg_repr(cp, r, sizeof r));
        return rt_cfg_err(ctx, "linux.cgroupsPath", "%s is a systemd slice:prefix:name path; pyrt-runtime manages "
                          "cgroups itself (cgroupfs): use a path like /parent/name (podman: --cgroup-manager "
                          "cgroupfs)", r);
    }
    char *copy = rt_arena_strdup(&p->arena, cpath);
    const char **parts = rt_arena_alloc(&p->arena, (strlen(cpath) / 2 + 3) * sizeof *parts);
    if (copy == NULL || parts == NULL)
        return oom(ctx);
    size_t n = 0;
    if (cpath[0] != '/')
        parts[n++] = "pyrt-runtime";
    size_t first = n;
    char *save = NULL;
    for (char *t = strtok_r(copy, "/", &save); t != NULL; t = strtok_r(NULL, "/", &save))
        parts[n++] = t;
    if (n == first) {
        RT_TRY(rt_cfg_repr(cp, r, sizeof r));
        return rt_cfg_err(ctx, "linux.cgroupsPath", "%s names no cgroup", r);
    }
    for (size_t i = first; i < n; i++)
        if (strcmp(parts[i], ".") == 0 || strcmp(parts[i], "..") == 0) {
            RT_TRY(rt_cfg_repr(cp, r, sizeof r));
            return rt_cfg_err(ctx, "linux.cgroupsPath", "%s: '.' and '..' are not allowed", r);
        }
    char *parent = rt_arena_alloc(&p->arena, strlen(cpath) + 16);
    if (parent == NULL)
        return oom(ctx);
    for (size_t i = 0; i + 1 < n; i++) {
        if (i > 0)
            strcat(parent, "/");
        strcat(parent, parts[i]);
    }
    p->cgroup_parent = parent;
    p->cgroup_name = parts[n - 1];
    return 0;
}

static int parse_hooks(struct rt_ctx *ctx, struct rt_plan *p)
{
    yajl_val hooks = rt_cfg_get_or(p->cfg, "hooks");
    if (hooks == NULL)
        return 0;
    RT_TRY(rt_cfg_object(ctx, hooks, "hooks"));
    for (size_t k = 0; k < hooks->u.object.len; k++) {
        const char *kind = hooks->u.object.keys[k];
        yajl_val items = hooks->u.object.values[k];
        char w[300];
        snprintf(w, sizeof w, "hooks.%s", kind);
        if (!in_list(HOOK_KINDS, kind))
            return rt_cfg_err(ctx, w, "unknown hook kind (known: prestart, createRuntime, createContainer, "
                              "startContainer, poststart, poststop)");
        if (!YAJL_IS_ARRAY(items))
            return rt_cfg_err(ctx, w, "expected a list, got %s", rt_cfg_tname(items));
        for (size_t i = 0; i < items->u.array.len; i++) {
            yajl_val h = items->u.array.values[i];
            char wi[340], wx[360];
            snprintf(wi, sizeof wi, "%s[%zu]", w, i);
            RT_TRY(rt_cfg_object(ctx, h, wi));
            yajl_val path = rt_cfg_get(h, "path");
            snprintf(wx, sizeof wx, "%s.path", wi);
            if (path == NULL || !YAJL_IS_STRING(path) || path->u.string[0] != '/')
                return rt_cfg_err(ctx, wx, "an absolute path is needed");
            snprintf(wx, sizeof wx, "%s.args", wi);
            RT_TRY(rt_cfg_str_list(ctx, rt_cfg_get_or(h, "args"), wx));
            snprintf(wx, sizeof wx, "%s.env", wi);
            RT_TRY(rt_cfg_str_list(ctx, rt_cfg_get_or(h, "env"), wx));
            yajl_val t = rt_cfg_get(h, "timeout");
            if (t != NULL && !YAJL_IS_NULL(t)) {
                long long secs;
                snprintf(wx, sizeof wx, "%s.timeout", wi);
                RT_TRY(rt_cfg_int(ctx, t, wx, LLONG_MIN, LLONG_MAX, &secs));
                if (secs <= 0)
                    return rt_cfg_err(ctx, wx, "must be positive");
                RT_TRY(rt_cfg_int(ctx, t, wx, 1, 2147483648LL / 1000, NULL));
            }
        }
    }
    p->hooks = hooks;
    return 0;
}

int rt_config_parse(struct rt_ctx *ctx, struct rt_plan *p, const char *id, int systemd_cgroup)
{
    yajl_val cfg = p->cfg;
    yajl_val lnx = rt_cfg_get_or(cfg, "linux");
    if (lnx != NULL)
        RT_TRY(rt_cfg_object(ctx, lnx, "linux"));
    p->spec.umask = -1;
    p->spec.stdio[0] = p->spec.stdio[1] = p->spec.stdio[2] = -1;
    p->spec.console_fd = p->spec.netns_fd = p->spec.cgroup_fd = p->spec.reaper_fd = p->spec.userns_fd = -1;
    p->oci.wait_fd = p->oci.hooks_fd = p->oci.hooks_wfd = -1;
    p->spec.oci = &p->oci;

    yajl_val proc = rt_cfg_get(cfg, "process");
    if (proc == NULL || !YAJL_IS_OBJECT(proc))
        return rt_cfg_err(ctx, "process", "missing (a container needs a process to run)");
    p->process = proc;
    RT_TRY(rt_config_process(ctx, p, proc));

    unsigned seen = 0, made = 0;
    RT_TRY(parse_namespaces(ctx, p, lnx, &seen, &made));
    yajl_val hostname = rt_cfg_get(cfg, "hostname");
    if (hostname != NULL && !YAJL_IS_NULL(hostname)) {
        RT_TRY(rt_cfg_string(ctx, hostname, "hostname"));
        if (hostname->u.string[0] && !(seen & (1u << 1)))
            return rt_cfg_err(ctx, "hostname", "setting the hostname needs a uts namespace");
        if (seen & (1u << 1))
            p->spec.hostname = hostname->u.string;
    }
    if (rt_cfg_truthy(rt_cfg_get(cfg, "domainname")) && warn(p, "domainname ignored") < 0)
        return oom(ctx);
    if (rt_cfg_truthy(rt_cfg_get(lnx, "mountLabel")) &&
        warn(p, "linux.mountLabel ignored: pyrt-runtime has no LSM support") < 0)
        return oom(ctx);

    p->ns_seen = seen;
    p->ns_made = made;
    RT_TRY(rt_config_mounts(ctx, p, lnx));
    RT_TRY(parse_sysctl(ctx, p, lnx, seen, made));
    RT_TRY(parse_cgroups_path(ctx, p, lnx, id, systemd_cgroup));
    if (rt_cfg_truthy(rt_cfg_get(lnx, "resources"))) {
        RT_TRY(rt_resources_parse_ex(ctx, lnx, p->dev_is_fs, &p->res));
        p->has_resources = 1;
    }
    static const char *const UNSUPPORTED[] = {"intelRdt", "timeOffsets", "personality"};
    for (int i = 0; i < 3; i++)
        if (rt_cfg_truthy(rt_cfg_get(lnx, UNSUPPORTED[i]))) {
            char w[64];
            snprintf(w, sizeof w, "linux.%s", UNSUPPORTED[i]);
            return rt_cfg_err(ctx, w, "not supported by pyrt-runtime");
        }
    p->seccomp = rt_cfg_get(lnx, "seccomp");
    if (rt_cfg_truthy(p->seccomp))
        RT_TRY(rt_config_seccomp(ctx, p, p->seccomp));
    RT_TRY(parse_hooks(ctx, p));
    p->annotations = rt_cfg_get_or(cfg, "annotations");
    if (p->annotations != NULL)
        RT_TRY(rt_cfg_object(ctx, p->annotations, "annotations"));

    if (p->njoins > 0 && p->join_types[0] == CLONE_NEWUSER) {
        /* made after joining the user namespace, owned by it */
        p->oci.unshare_flags = p->spec.clone_flags;
        p->spec.clone_flags = 0;
    }
    return 0;
}
