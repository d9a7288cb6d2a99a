/* pyrt: the `pyrt` command. pyrt's command line is Python (pyrt/cli/main.py); this
 * small program runs it, and does one command itself, the one whose cost is
 * start-up: `pyrt run --rootfs DIR [OPTIONS] [--] COMMAND...` as root, the same
 * spawn spec (csrc/spawn.h) built from the same command line as pyrt.launch.spec
 * builds it, started with a pyrt-reaper and relayed by csrc/relay.c as
 * pyrt/cli/run.py relay_foreground does, with the same exit status.
 *
 * The rule: this program does a command line itself only when it can do all of it
 * exactly as the Python would; anything else is handed over, before anything has
 * been done, by exec'ing the Python CLI with the same arguments (the interpreter:
 * python3 or python next to this program, else the one pyrt was built for, else
 * python3 on PATH; `-P`: nothing from the working directory is imported). Done
 * here, when every one of these holds:
 *   - PYRT_CLI_PYTHON is unset or empty (set: always Python);
 *   - the effective user is root (an ordinary user's user namespace is Python's);
 *   - the words are `[--root DIR] [-q|--quiet] [--storage-driver overlay|copy]
 *     [--cgroup-manager systemd|cgroupfs] run OPTIONS... [--] COMMAND...` with
 *     OPTIONS among --rootfs DIR (required), -e/--env K[=V], -w/--workdir DIR,
 *     -u/--user UID[:GID] (decimal), --hostname NAME, --network/--net none|host,
 *     --read-only, -i/--interactive, -v/--volume SRC:DST[:ro|rw],
 *     --rm (no effect with --rootfs, as in Python),
 *     --sig-proxy true|false, --cap-add CAP, --cap-drop CAP; each written out in
 *     full (no abbreviation, no -it), a value as the next word (not starting with
 *     '-') or as --long=VALUE; and a command is given;
 *   - nothing would make Python read it otherwise or fail before the container
 *     starts: the rootfs is a directory, capability names are known, PYTHONPATH,
 *     PYTHONHOME, PYTHONUSERBASE and PYTHONPLATLIBDIR are unset, no user-site pyrt
 *     would be imported instead of the one next to this program;
 *   - pyrt's package is found beside this program (bin/../lib[64]/pythonX.Y/
 *     {site,dist}-packages/pyrt) and the default seccomp filter's cache for this
 *     build (pyrt.launch.seccomp: its name keyed by the files that shape it) is
 *     there, in a directory and a file of root's that nobody else can write;
 *   - the host has cgroup2 (or no cgroup at all), where the device cgroup pyrt
 *     makes for the container is made as Python makes it (front.h).
 * A failure to start the container whose message this program cannot print as
 * Python would (bytes outside printable ASCII) is handed over too, once what it
 * made is undone (nothing of the container is left: the spawn core's promise).
 *
 * And `pyrt run IMAGE` (pyrt/cli/run.py run_image: the container made, its row,
 * directory, init layer and log, its cgroup pyrt/<id>, its state running then
 * exited, with --rm removed, and the reaper's clean-up command `python -P -m
 * pyrt.cli.orphan ROOT ID` should this program die; csrc/front_container.h) when,
 * besides root, PYRT_CLI_PYTHON unset and the package and seccomp cache above:
 *   - the words are `[--root DIR] [-q|--quiet] run OPTIONS... IMAGE [ARG...]` with
 *     OPTIONS among --rm, --name NAME ([a-zA-Z0-9][a-zA-Z0-9_.-]*, not in use),
 *     --network/--net none|host, -e/--env K[=V], -w/--workdir DIR (as an
 *     image's WorkingDir below), --sig-proxy true|false,
 *     --cap-add CAP, --cap-drop CAP (no --storage-driver or --cgroup-manager, no
 *     -u, --hostname, --read-only, -i, -v, -t, -d, -p, limits, ...: Python's);
 *   - the network is given, or PYRT_DEFAULT_NETWORK says none or host: root's
 *     default network is "bridge", made by CNI plugins, which stays Python's;
 *   - the store (--root, $PYRT_ROOT, /var/lib/pyrt) has its directories, its
 *     `storage-driver` file says overlay (no file: Python probes it),
 *     PYRT_STORAGE_DRIVER is unset, nothing stale is left in tmp/ or snapshots/
 *     (Python cleans it first), and its database has this pyrt's schema;
 *   - IMAGE is `NAME[:TAG]` found in the tags (under pyrt.oci.reference's
 *     equivalent names: busybox ~ docker.io/library/busybox) or a full
 *     `sha256:` id (an id prefix, a digest, anything not found: Python's);
 *   - its config is read here as Python reads it (no key given twice, values of
 *     the types Python uses, ASCII, no lone surrogate, not nested deeper than
 *     500), for linux and this machine's architecture, with no Volumes or User,
 *     Labels of strings, a WorkingDir that is "" or absolute without empty, `.`
 *     or `..` parts, and the image's /etc/passwd (for HOME) and the host's
 *     /etc/hosts and resolv.conf plain text; the words and -e values are ASCII;
 *   - stdin, stdout and stderr are open; the cgroup manager is cgroupfs.
 * Once the container is made nothing is handed over: failures are reported as
 * Python reports them (one line, exit status 125, or 126/127 for the command).
 *
 * PYRT_CLI_DUMP_SPEC=FILE (for the tests): the spec this program would spawn,
 * packed (csrc/specpack.h; stdio and reaper fd -1), written to FILE, nothing run. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fdio.h"
#include "fdpass.h"
#include "front.h"
#include "front_container.h"
#include "front_image.h"
#include "front_run.h"
#include "reaper.h"
#include "relay.h"
#include "spawn.h"
#include "specpack.h"

#ifndef PYRT_PYTHON
#define PYRT_PYTHON ""
#endif
#ifndef PYRT_PY_VERSION
#define PYRT_PY_VERSION "3"
#endif
#ifndef PYRT_CORE_NAME
#define PYRT_CORE_NAME "_core.so"
#endif

static int g_argc;
static char **g_argv;
static int g_valid[3]; /* Python's sys.std* (None for an fd closed when it started) */
static char g_bindir[PATH_MAX - 64];

/* -- handing over to Python ------------------------------------------------------------------ */

static const char SCRIPT[] = "import sys\nfrom pyrt.cli.main import main\nsys.exit(main())\n";

static void __attribute__((noreturn)) hand_over(void)
{
    char cands[3][PATH_MAX];
    int nc = 0;
    if (g_bindir[0]) {
        snprintf(cands[nc++], PATH_MAX, "%s/python3", g_bindir);
        snprintf(cands[nc++], PATH_MAX, "%s/python", g_bindir);
    }
    if (PYRT_PYTHON[0])
        snprintf(cands[nc++], PATH_MAX, "%s", PYRT_PYTHON);
    char **nargv = calloc((size_t)g_argc + 4, sizeof *nargv);
    if (nargv == NULL) {
        fputs("pyrt: out of memory\n", stderr);
        exit(1);
    }
    nargv[1] = "-P";
    nargv[2] = "-c";
    nargv[3] = (char *)SCRIPT;
    for (int k = 1; k < g_argc; k++)
        nargv[3 + k] = g_argv[k];
    for (int i = 0; i < nc; i++) {
        if (access(cands[i], X_OK) < 0)
            continue;
        nargv[0] = cands[i];
        execv(cands[i], nargv);
    }
    nargv[0] = "python3";
    execvp("python3", nargv);
    fprintf(stderr, "pyrt: pyrt's command line is Python, and no Python was found (%s, python3 on PATH): %s\n",
            nc > 0 ? cands[nc - 1] : "none built in", strerror(errno));
    exit(1);
}

/* -- the command line (pyrt/cli/fastargs.py's reading of it, for these options) ------------- */

struct args {
    const char *rootfs, *workdir, *user, *hostname, *network;
    const char *root, *name, *image;
    int read_only, interactive, sig_proxy, rm, globals;
    char **env, **cap_add, **cap_drop, **volume;
    size_t nenv, ncap_add, ncap_drop, nvolume;
    char **command;
    int ncommand;
};

/* The option at argv[*i] if it is `name` (with its value in *value: the next word,
 * or after '=' for a long one); 1 taken, 0 not this one. Hands over for a value
 * that is missing or looks like an option. */
static int opt(int *i, const char *shortname, const char *longname, const char **value)
{
    const char *w = g_argv[*i];
    if ((shortname && strcmp(w, shortname) == 0) || (longname && strcmp(w, longname) == 0)) {
        if (value == NULL) {
            (*i)++;
            return 1;
        }
        if (*i + 1 >= g_argc || g_argv[*i + 1][0] == '-')
            hand_over();
        *value = g_argv[*i + 1];
        *i += 2;
        return 1;
    }
    size_t n = longname ? strlen(longname) : 0;
    if (longname && strncmp(w, longname, n) == 0 && w[n] == '=') {
        if (value == NULL)
            hand_over(); /* argparse: a flag takes no value */
        *value = w + n + 1;
        (*i)++;
        return 1;
    }
    return 0;
}

static void append(char ***list, size_t *n, const char *v)
{
    char **l = realloc(*list, (*n + 2) * sizeof **list);
    if (l == NULL)
        hand_over();
    l[(*n)++] = (char *)v;
    l[*n] = NULL;
    *list = l;
}

static void parse(struct args *a)
{
    memset(a, 0, sizeof *a);
    a->sig_proxy = 1;
    int i = 1;
    const char *v;
    while (i < g_argc && g_argv[i][0] == '-') { /* pyrt's global options */
        if (opt(&i, NULL, "--root", &a->root) || opt(&i, "-q", "--quiet", NULL))
            continue;
        a->globals = 1; /* (not for an image: see the rule) */
        if (opt(&i, NULL, "--storage-driver", &v)) {
            if (strcmp(v, "overlay") != 0 && strcmp(v, "copy") != 0)
                hand_over();
        } else if (opt(&i, NULL, "--cgroup-manager", &v)) {
            if (strcmp(v, "systemd") != 0 && strcmp(v, "cgroupfs") != 0)
                hand_over();
        } else {
            hand_over();
        }
    }
    if (i >= g_argc || strcmp(g_argv[i], "run") != 0)
        hand_over();
    i++;
    while (i < g_argc && g_argv[i][0] == '-' && strcmp(g_argv[i], "--") != 0 && strcmp(g_argv[i], "-") != 0) {
        if (opt(&i, NULL, "--network", &a->network) || opt(&i, NULL, "--net", &a->network))
            continue;
        if (opt(&i, NULL, "--name", &a->name))
            continue;
        if (opt(&i, NULL, "--rootfs", &a->rootfs) || opt(&i, "-w", "--workdir", &a->workdir) ||
            opt(&i, "-u", "--user", &a->user) || opt(&i, NULL, "--hostname", &a->hostname))
            continue;
        if (opt(&i, NULL, "--read-only", NULL)) {
            a->read_only = 1;
        } else if (opt(&i, "-i", "--interactive", NULL)) {
            a->interactive = 1;
        } else if (opt(&i, NULL, "--rm", NULL)) {
            a->rm = 1; /* (with --rootfs there is no container record to remove) */
        } else if (opt(&i, "-e", "--env", &v)) {
            append(&a->env, &a->nenv, v);
        } else if (opt(&i, "-v", "--volume", &v)) {
            append(&a->volume, &a->nvolume, v);
        } else if (opt(&i, NULL, "--cap-add", &v)) {
            append(&a->cap_add, &a->ncap_add, v);
        } else if (opt(&i, NULL, "--cap-drop", &v)) {
            append(&a->cap_drop, &a->ncap_drop, v);
        } else if (opt(&i, NULL, "--sig-proxy", &v)) {
            if (strcmp(v, "true") != 0 && strcmp(v, "false") != 0)
                hand_over();
            a->sig_proxy = strcmp(v, "true") == 0;
        } else {
            hand_over();
        }
    }
    if (a->rootfs == NULL) { /* an image: IMAGE [ARG...] */
        if (i >= g_argc || g_argv[i][0] == '-' || a->globals || a->user || a->hostname ||
            a->read_only || a->interactive || a->nvolume)
            hand_over();
        a->image = g_argv[i++];
        a->command = g_argv + i;
        a->ncommand = g_argc - i;
        return;
    }
    if (i < g_argc && strcmp(g_argv[i], "--") == 0) /* cmd_run drops one leading "--" */
        i++;
    a->command = g_argv + i;
    a->ncommand = g_argc - i;
    if (a->name || a->ncommand == 0)
        hand_over();
}

/* -- the spec (pyrt/cli/main.py cmd_run, pyrt/launch/spec.py build_spec) --------------------- */

struct built {
    struct pyrt_spawn_spec s;
    char root[PATH_MAX];
    const char *anchor;
    char **envp;
    size_t nenv;
    void *seccomp;
    struct pyrt_mount *mounts;
    char pkg[PATH_MAX];
};

static const char *const MASKED[] = {
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
    "/sys/firmware", "/sys/devices/virtual/powercap", NULL,
};
static const char *const READONLY[] = {
    "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger", NULL,
};
static const char *const NONE[] = {NULL};
static const char DEFAULT_PATH[] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/* parse_user: "UID", "UID:", "UID:GID" in plain decimal (anything else: Python's) */
static int decimal(const char *s, size_t n, unsigned long *out)
{
    if (n == 0 || n > 9)
        return -1;
    *out = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        *out = *out * 10 + (unsigned long)(s[i] - '0');
    }
    return 0;
}

/* The ordered dict of env_from_args + build_spec's defaults, as "K=V" words. */
static void env_set(struct built *b, const char *key, size_t klen, const char *value, int only_new)
{
    char *kv = malloc(klen + strlen(value) + 2);
    if (kv == NULL)
        hand_over();
    memcpy(kv, key, klen);
    kv[klen] = '=';
    strcpy(kv + klen + 1, value);
    for (size_t i = 0; i < b->nenv; i++)
        if (strncmp(b->envp[i], key, klen) == 0 && b->envp[i][klen] == '=') {
            if (only_new)
                free(kv);
            else
                b->envp[i] = kv; /* a dict keeps the key's first place */
            return;
        }
    append(&b->envp, &b->nenv, kv);
}

static const char *env_get(struct built *b, const char *key)
{
    size_t klen = strlen(key);
    for (size_t i = 0; i < b->nenv; i++)
        if (strncmp(b->envp[i], key, klen) == 0 && b->envp[i][klen] == '=')
            return b->envp[i] + klen + 1;
    return NULL;
}

static int is_file(const char *dir, const char *name, struct stat *st)
{
    char p[PATH_MAX];
    return snprintf(p, sizeof p, "%s/%s", dir, name) < (int)sizeof p && stat(p, st) == 0 && S_ISREG(st->st_mode);
}

/* pyrt's package beside this program, the one Python would import (see the rule) */
static void find_package(struct built *b)
{
    static const char *const WHERE[] = {"lib/python" PYRT_PY_VERSION "/site-packages",
                                        "lib/python" PYRT_PY_VERSION "/dist-packages",
                                        "lib64/python" PYRT_PY_VERSION "/site-packages"};
    const char *env[] = {"PYTHONPATH", "PYTHONHOME", "PYTHONUSERBASE", "PYTHONPLATLIBDIR"};
    for (size_t i = 0; i < sizeof env / sizeof env[0]; i++)
        if (getenv(env[i]) && getenv(env[i])[0])
            hand_over();
    struct stat st, user;
    b->pkg[0] = 0;
    for (size_t i = 0; i < sizeof WHERE / sizeof WHERE[0] && !b->pkg[0]; i++) {
        char p[PATH_MAX];
        if (snprintf(p, sizeof p, "%s/../%s/pyrt", g_bindir, WHERE[i]) < (int)sizeof p &&
            is_file(p, PYRT_CORE_NAME, &st) && is_file(p, "launch/seccomp.py", &st) && is_file(p, "pyrt-reaper", &st))
            strcpy(b->pkg, p);
    }
    if (!b->pkg[0])
        hand_over();
    /* outside a venv, a pyrt in the user's site directory comes first */
    char p[PATH_MAX];
    const char *home = getenv("HOME");
    if (snprintf(p, sizeof p, "%s/../pyvenv.cfg", g_bindir) < (int)sizeof p && stat(p, &st) == 0)
        return;
    if (getenv("PYTHONNOUSERSITE") && getenv("PYTHONNOUSERSITE")[0])
        return;
    if (home == NULL || !home[0])
        hand_over();
    if (snprintf(p, sizeof p, "%s/.local/lib/python" PYRT_PY_VERSION "/site-packages/pyrt", home) >= (int)sizeof p)
        hand_over();
    if (stat(p, &user) == 0 && (stat(b->pkg, &st) < 0 || st.st_dev != user.st_dev || st.st_ino != user.st_ino))
        hand_over();
}

/* pyrt.launch.seccomp.filter_for(cap_add): the cached program or hand over */
static void default_seccomp(struct built *b, const struct args *a)
{
#ifdef PYRT_HAVE_SECCOMP
    char key[PATH_MAX] = "seccomp-";
    char **caps = calloc(a->ncap_add + 1, sizeof *caps);
    if (caps == NULL)
        hand_over();
    for (size_t i = 0; i < a->ncap_add; i++) { /* tuple(sorted(cap_add)) */
        const char *c = a->cap_add[i];
        if (!c[0] || strspn(c, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_") != strlen(c))
            hand_over();
        size_t k = i;
        for (; k > 0 && strcmp(caps[k - 1], c) > 0; k--)
            caps[k] = caps[k - 1];
        caps[k] = (char *)c;
    }
    for (size_t i = 0; i < a->ncap_add; i++) {
        if (strlen(key) + strlen(caps[i]) + 2 >= 200)
            hand_over();
        strcat(key, caps[i]);
        strcat(key, "-");
    }
    free(caps);
    struct stat s1, s2;
    struct utsname u;
    if (!is_file(b->pkg, "launch/seccomp.py", &s1) || !is_file(b->pkg, PYRT_CORE_NAME, &s2) || uname(&u) < 0)
        hand_over();
    size_t n = strlen(key);
    snprintf(key + n, sizeof key - n, "%lld-%lld-%lld-%lld-%s.bpf", (long long)s1.st_size,
             (long long)s1.st_mtim.tv_sec * 1000000000LL + s1.st_mtim.tv_nsec, (long long)s2.st_size,
             (long long)s2.st_mtim.tv_sec * 1000000000LL + s2.st_mtim.tv_nsec, u.machine);
    size_t len = 0;
    unsigned int flags = 0;
    if (!pyrt_front_seccomp_cached("/var/cache/pyrt", key, &b->seccomp, &len, &flags))
        hand_over(); /* Python compiles it and keeps it there */
    b->s.seccomp = b->seccomp;
    b->s.seccomp_len = len / 8;
    b->s.seccomp_flags = flags;
#else
    (void)b;
    (void)a;
#endif
}

/* mounts_from_args for -v SRC:DST[:ro|rw] (Bind.to_c: the source made absolute and
 * required to exist; mounts.to_c: sorted by the depth of their destinations, stable) */
static void volumes(struct built *b, const struct args *a)
{
    struct pyrt_mount *m = calloc(a->nvolume + 1, sizeof *m);
    size_t *depth = calloc(a->nvolume + 1, sizeof *depth);
    if (m == NULL || depth == NULL)
        hand_over();
    for (size_t i = 0; i < a->nvolume; i++) {
        char *spec = strdup(a->volume[i]), *parts[3] = {NULL, NULL, NULL};
        size_t n = 0;
        if (spec == NULL)
            hand_over();
        for (char *p = spec, *c; n < 3; p = c + 1) {
            parts[n++] = p;
            if ((c = strchr(p, ':')) == NULL)
                break;
            *c = 0;
            if (n == 3)
                hand_over(); /* a fourth part: Python's error */
        }
        if (n < 2 || !parts[0][0] || !parts[1][0] || parts[1][0] != '/' ||
            (n == 3 && strcmp(parts[2], "ro") != 0 && strcmp(parts[2], "rw") != 0))
            hand_over();
        char *src = malloc(PATH_MAX), norm[PATH_MAX];
        struct stat st;
        if (src == NULL || pyrt_front_abspath(parts[0], src, PATH_MAX) < 0 || stat(src, &st) < 0 ||
            pyrt_front_abspath(parts[1], norm, sizeof norm) < 0)
            hand_over();
        size_t d = 0;
        for (const char *p = norm; *p; p++)
            d += *p == '/';
        struct pyrt_mount mm = {.kind = PYRT_MOUNT_BIND, .flags = n == 3 && strcmp(parts[2], "ro") == 0 ? PYRT_MNT_RDONLY : 0,
                                .source = src, .target = parts[1]};
        size_t k = i;
        for (; k > 0 && depth[k - 1] > d; k--) {
            m[k] = m[k - 1];
            depth[k] = depth[k - 1];
        }
        m[k] = mm;
        depth[k] = d;
    }
    free(depth);
    b->mounts = m;
    b->s.mounts = m;
    b->s.nmounts = a->nvolume;
}

static void build(struct built *b, const struct args *a)
{
    memset(b, 0, sizeof *b);
    struct pyrt_spawn_spec *s = &b->s;
    /* env_from_args: -e K=V sets, -e K takes pyrt's own K if it has one */
    for (size_t i = 0; i < a->nenv; i++) {
        const char *e = a->env[i], *eq = strchr(e, '=');
        size_t klen = eq ? (size_t)(eq - e) : strlen(e);
        if (klen == 0)
            hand_over();
        if (eq)
            env_set(b, e, klen, eq + 1, 0);
        else if (getenv(e) != NULL)
            env_set(b, e, klen, getenv(e), 0);
    }
    unsigned long uid = 0, gid = 0;
    int ident = a->user != NULL;
    if (a->user) {
        const char *colon = strchr(a->user, ':');
        size_t ul = colon ? (size_t)(colon - a->user) : strlen(a->user);
        if (decimal(a->user, ul, &uid) < 0 || (colon && colon[1] && decimal(colon + 1, strlen(colon + 1), &gid) < 0))
            hand_over();
    }
    const char *network = a->network ? a->network : "none";
    if (strcmp(network, "none") != 0 && strcmp(network, "host") != 0)
        hand_over();
    env_set(b, "PATH", 4, DEFAULT_PATH, 1);
    if (a->hostname && a->hostname[0])
        env_set(b, "HOSTNAME", 8, a->hostname, 1);
    env_set(b, "HOME", 4, !ident || uid == 0 ? "/root" : "/", 1);
    s->argv = (const char *const *)a->command;
    s->envp = (const char *const *)b->envp;
    s->path = env_get(b, "PATH");
    s->cwd = a->workdir && a->workdir[0] ? a->workdir : NULL;

    s->clone_flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWCGROUP;
    if (strcmp(network, "none") == 0) {
        s->clone_flags |= CLONE_NEWNET;
        s->setup |= PYRT_SETUP_LOOPBACK;
    }
    s->netns_fd = s->userns_fd = s->console_fd = s->cgroup_fd = s->reaper_fd = -1;
    s->hostname = a->hostname && a->hostname[0] ? a->hostname : NULL;

    /* the anchor: /run/pyrt/rootfs, else /tmp/pyrt-0/rootfs (root's) */
    static char anchors[2][64] = {"/run/pyrt/rootfs", "/tmp/pyrt-0/rootfs"};
    for (int k = 0; k < 2 && !b->anchor; k++)
        if (pyrt_front_makedirs(anchors[k], 0700) == 0)
            b->anchor = anchors[k];
    if (b->anchor == NULL)
        hand_over();
    s->anchor = b->anchor;
    struct stat st;
    if (pyrt_front_abspath(a->rootfs, b->root, sizeof b->root) < 0 || stat(b->root, &st) < 0 || !S_ISDIR(st.st_mode))
        hand_over();
    s->rootfs = b->root;
    s->lowerdirs = NONE;
    volumes(b, a);
    s->readonly_root = a->read_only;
    s->setup |= PYRT_SETUP_PROC | PYRT_SETUP_SYS | PYRT_SETUP_DEV | PYRT_SETUP_MASK | PYRT_SETUP_NO_NEW_PRIVS;
    s->masked_paths = MASKED;
    s->readonly_paths = READONLY;
    s->set_user = 1;
    s->uid = (uid_t)uid;
    s->gid = (gid_t)gid;
    s->umask = -1;
    s->stdio[0] = s->stdio[1] = s->stdio[2] = -1;
    if (pyrt_front_caps(a->cap_add, a->ncap_add, a->cap_drop, a->ncap_drop, &s->caps) < 0)
        hand_over();
    find_package(b);
    default_seccomp(b, a);
}

/* An image's container (csrc/front_container.h): its spec, after checking that
 * this program does all of it as Python would (the rule above). */
static void build_image(struct built *b, const struct args *a, struct pyrt_ctr *c, struct pyrt_ctr_args *ca)
{
    memset(b, 0, sizeof *b);
    struct pyrt_spawn_spec *s = &b->s;
    const char *network = a->network ? a->network : getenv("PYRT_DEFAULT_NETWORK");
    if (network == NULL || !network[0] || (strcmp(network, "none") != 0 && strcmp(network, "host") != 0))
        hand_over(); /* root's default is "bridge": Python's (its CNI plugins) */
    const char *driver = getenv("PYRT_STORAGE_DRIVER");
    if ((driver && driver[0]) || !g_valid[0] || !g_valid[1] || !g_valid[2] || pyrt_front_cgroup_usable() < 0)
        hand_over();
    static char python[PATH_MAX];
    python[0] = 0;
    const char *cands[3] = {"python3", "python", NULL};
    for (int i = 0; i < 2 && !python[0]; i++)
        if (snprintf(python, sizeof python, "%s/%s", g_bindir, cands[i]) >= (int)sizeof python || access(python, X_OK) < 0)
            python[0] = 0;
    if (!python[0] && PYRT_PYTHON[0] && access(PYRT_PYTHON, X_OK) == 0)
        snprintf(python, sizeof python, "%s", PYRT_PYTHON);
    if (!python[0])
        hand_over(); /* sys.executable would be python3 on PATH: Python's */
    *ca = (struct pyrt_ctr_args){.root = a->root, .image = a->image, .name = a->name, .network = network,
                                 .workdir = a->workdir,
                                 .env = a->env, .nenv = a->nenv, .cap_add = a->cap_add, .ncap_add = a->ncap_add,
                                 .cap_drop = a->cap_drop, .ncap_drop = a->ncap_drop, .command = a->command,
                                 .ncommand = a->ncommand, .rm = a->rm, .python = python};
    for (size_t i = 0; i < a->ncap_add; i++)
        if (!pyrt_image_plain(a->cap_add[i]))
            hand_over();
    for (size_t i = 0; i < a->ncap_drop; i++)
        if (!pyrt_image_plain(a->cap_drop[i]))
            hand_over();
    if (pyrt_front_caps(a->cap_add, a->ncap_add, a->cap_drop, a->ncap_drop, &s->caps) < 0)
        hand_over();
    if (pyrt_ctr_prepare(c, ca) < 0)
        hand_over();
    s->clone_flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWCGROUP;
    if (strcmp(network, "none") == 0) {
        s->clone_flags |= CLONE_NEWNET;
        s->setup |= PYRT_SETUP_LOOPBACK;
    }
    s->netns_fd = s->userns_fd = s->console_fd = s->cgroup_fd = s->reaper_fd = -1;
    static char anchors[2][64] = {"/run/pyrt/rootfs", "/tmp/pyrt-0/rootfs"};
    for (int k = 0; k < 2 && !b->anchor; k++)
        if (pyrt_front_makedirs(anchors[k], 0700) == 0)
            b->anchor = anchors[k];
    if (b->anchor == NULL)
        hand_over();
    s->anchor = b->anchor;
    s->setup |= PYRT_SETUP_PROC | PYRT_SETUP_SYS | PYRT_SETUP_DEV | PYRT_SETUP_MASK | PYRT_SETUP_NO_NEW_PRIVS;
    s->masked_paths = MASKED;
    s->readonly_paths = READONLY;
    s->set_user = 1;
    s->umask = -1;
    s->stdio[0] = s->stdio[1] = s->stdio[2] = -1;
    find_package(b);
    default_seccomp(b, a);
    pyrt_ctr_spec(c, s);
}

static void dump_spec(const struct pyrt_spawn_spec *s, const char *path)
{
    static char buf[1 << 20] __attribute__((aligned(8)));
    struct pyrt_error e;
    ssize_t n = pyrt_spec_pack(s, buf, sizeof buf, &e);
    int fd = n < 0 ? -1 : open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0 || pyrt_write_all(fd, buf, (size_t)n) < 0 || close(fd) < 0) {
        fprintf(stderr, "pyrt: PYRT_CLI_DUMP_SPEC %s: %s\n", path, strerror(n < 0 ? e.err : errno));
        exit(1);
    }
    exit(0);
}

int main(int argc, char **argv)
{
    g_argc = argc;
    g_argv = argv;
    for (int i = 0; i < 3; i++)
        g_valid[i] = fcntl(i, F_GETFD) >= 0;
    ssize_t n = readlink("/proc/self/exe", g_bindir, sizeof g_bindir - 1);
    if (n > 0) {
        g_bindir[n] = 0;
        char *slash = strrchr(g_bindir, '/');
        if (slash != NULL)
            *slash = 0;
        else
            g_bindir[0] = 0;
    } else {
        g_bindir[0] = 0;
    }
    const char *force = getenv("PYRT_CLI_PYTHON");
    if ((force && force[0]) || geteuid() != 0 || !g_bindir[0])
        hand_over();
    struct args a;
    parse(&a);
    static struct built b;
    static struct pyrt_ctr ctr;
    static struct pyrt_ctr_args cargs;
    const char *dump = getenv("PYRT_CLI_DUMP_SPEC");
    if (a.image == NULL)
        build(&b, &a);
    else
        build_image(&b, &a, &ctr, &cargs);
    if (dump && dump[0])
        dump_spec(&b.s, dump);
    struct pyrt_front_run in = {.spec = &b.s, .pkg = b.pkg, .sig_proxy = a.sig_proxy, .interactive = a.interactive,
                                .valid = g_valid, .ctr = a.image ? &ctr : NULL};
    int status = pyrt_front_run(&in);
    if (status == PYRT_FRONT_HAND_OVER)
        hand_over();
    return status;
}
