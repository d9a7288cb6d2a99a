/* The native `pyrt run IMAGE` (see front_container.h). */
#include "front_container.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "fdio.h"
#include "fdpass.h"
#include "front.h"
#include "front_ctrdir.h"
#include "front_image.h"
#include "procstat.h"

static const char DEFAULT_PATH[] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
static const char *const ADJECTIVES[] = {"brave", "calm", "eager", "fond", "gentle", "happy", "jolly", "keen", "lucid",
                                         "merry", "nifty", "proud", "quiet", "sharp", "tender", "vivid", "witty", "zen"};
static const char *const NAMES[] = {"babbage", "curie", "dijkstra", "euler", "fermi", "gauss", "hopper", "knuth",
                                    "lamport", "lovelace", "noether", "pascal", "ritchie", "shannon", "thompson", "turing"};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int is_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return s[n] == 0;
}

/* -- the ordered dict of the environment (create.py) ------------------------------------------ */

static int env_put(struct pyrt_ctr *c, const char *key, size_t klen, const char *value, int only_new)
{
    for (size_t i = 0; i < c->nenv; i++)
        if (strncmp(c->envp[i], key, klen) == 0 && c->envp[i][klen] == '=') {
            if (only_new)
                return 0;
            char *kv = malloc(klen + strlen(value) + 2);
            if (kv == NULL)
                return -1;
            sprintf(kv, "%.*s=%s", (int)klen, key, value);
            free(c->envp[i]);
            c->envp[i] = kv;
            return 0;
        }
    char **l = realloc(c->envp, (c->nenv + 2) * sizeof *l), *kv = malloc(klen + strlen(value) + 2);
    if (l == NULL || kv == NULL) {
        free(kv);
        if (l)
            c->envp = l;
        return -1;
    }
    sprintf(kv, "%.*s=%s", (int)klen, key, value);
    l[c->nenv++] = kv;
    l[c->nenv] = NULL;
    c->envp = l;
    return 0;
}

static const char *env_get(struct pyrt_ctr *c, const char *key)
{
    size_t klen = strlen(key);
    for (size_t i = 0; i < c->nenv; i++)
        if (strncmp(c->envp[i], key, klen) == 0 && c->envp[i][klen] == '=')
            return c->envp[i] + klen + 1;
    return NULL;
}

/* -- prepare ---------------------------------------------------------------------------------- */

static int store_ok(struct pyrt_ctr *c)
{
    char p[PATH_MAX + 64], text[64];
    struct stat st;
    static const char *const DIRS[] = {"blobs", "blobs/sha256", "snapshots", "tmp", "containers", "volumes"};
    for (size_t i = 0; i < sizeof DIRS / sizeof DIRS[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", c->root, DIRS[i]);
        if (stat(p, &st) < 0 || !S_ISDIR(st.st_mode))
            return -1; /* Python makes it */
    }
    /* the storage driver Python detected (no file: it probes) */
    snprintf(p, sizeof p, "%s/storage-driver", c->root);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = pyrt_read_full(fd, text, sizeof text - 1);
    close(fd);
    if (n < 0)
        return -1;
    text[n] = 0;
    if (strcmp(text, "overlay\n") != 0 && strcmp(text, "overlay") != 0)
        return -1;
    /* Store.clean_stale: left-overs Python would remove first */
    snprintf(p, sizeof p, "%s/tmp", c->root);
    DIR *d = opendir(p);
    if (d == NULL)
        return -1;
    struct dirent *e;
    int stale = 0;
    while ((e = readdir(d)) != NULL)
        stale |= strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    snprintf(p, sizeof p, "%s/snapshots", c->root);
    if ((d = opendir(p)) == NULL)
        return -1;
    while ((e = readdir(d)) != NULL)
        stale |= strncmp(e->d_name, ".tmp-", 5) == 0 || strncmp(e->d_name, ".trash-", 7) == 0;
    closedir(d);
    return stale ? -1 : 0;
}

static int find_image(struct pyrt_ctr *c, const char *ref)
{
    if (strncmp(ref, "sha256:", 7) == 0) {
        if (strlen(ref) != 71 || !is_hex(ref + 7, 64) || pyrt_store_has_image(&c->st, ref) != 1)
            return -1;
        strcpy(c->image_id, ref);
        return 0;
    }
    char repo[300], tag[160], names[4][300];
    if (pyrt_image_parse_ref(ref, repo, sizeof repo, tag, sizeof tag) < 0)
        return -1;
    int n = pyrt_image_equivalents(repo, names);
    for (int i = 0; i < n; i++) {
        int r = pyrt_store_tag(&c->st, names[i], tag, c->image_id, sizeof c->image_id);
        if (r != 0)
            return r == 1 && strncmp(c->image_id, "sha256:", 7) == 0 ? 0 : -1;
    }
    return -1; /* not found, an id prefix, ...: Python's */
}

static const char *host_arch(void)
{
    static struct utsname u;
    if (uname(&u) < 0)
        return NULL;
    if (strcmp(u.machine, "x86_64") == 0 || strcmp(u.machine, "amd64") == 0)
        return "amd64";
    if (strcmp(u.machine, "aarch64") == 0 || strcmp(u.machine, "arm64") == 0)
        return "arm64";
    return NULL;
}

/* a working dir this code makes as Python: "", or absolute without empty, . or .. parts */
static int plain_dir(const char *w)
{
    if (!w[0])
        return 1;
    if (w[0] != '/' || !pyrt_image_plain(w) || strlen(w) > 1024)
        return 0;
    if (strcmp(w, "/") == 0)
        return 1;
    for (const char *p = w; *p; p++)
        if (*p == '/' && (p[1] == '/' || p[1] == 0 || (p[1] == '.' && (p[2] == '/' || p[2] == 0)) ||
                          (p[1] == '.' && p[2] == '.' && (p[3] == '/' || p[3] == 0))))
            return 0;
    return 1;
}

static int copy_list(char ***out, size_t *nout, char *const *in, size_t n)
{
    char **l = calloc(*nout + n + 1, sizeof *l);
    if (l == NULL)
        return -1;
    for (size_t i = 0; i < *nout; i++)
        l[i] = (*out)[i];
    for (size_t i = 0; i < n; i++)
        l[*nout + i] = in[i];
    free(*out);
    *out = l;
    *nout += n;
    return 0;
}

int pyrt_ctr_prepare(struct pyrt_ctr *c, const struct pyrt_ctr_args *a)
{
    memset(c, 0, sizeof *c);
    c->a = a;
    const char *root = a->root && a->root[0] ? a->root : getenv("PYRT_ROOT"); /* (`root or default_root()`) */
    if (root == NULL || !root[0])
        root = "/var/lib/pyrt";
    if (pyrt_front_abspath(root, c->root, sizeof c->root) < 0 || !pyrt_image_plain(c->root))
        return -1;
    const char *arch = host_arch();
    if (arch == NULL || store_ok(c) < 0)
        return -1;
    char db[PATH_MAX + 16];
    snprintf(db, sizeof db, "%s/pyrt.db", c->root);
    if (pyrt_store_open(&c->st, db) < 0)
        return -1;
    char *config = NULL, **chains = NULL;
    size_t nchains = 0;
    struct pyrt_image_config ic;
    if (find_image(c, a->image) < 0 || pyrt_store_image(&c->st, c->image_id, &config, &chains, &nchains) < 0 ||
        nchains == 0 || pyrt_image_config(config, arch, &ic) < 0)
        return -1;
    free(config);
    /* the layers, top-most first (snapshots/<hex of the chain id>) */
    c->layers = calloc(nchains + 1, sizeof *c->layers);
    c->lower = calloc(nchains + 2, sizeof *c->lower);
    if (c->layers == NULL || c->lower == NULL)
        return -1;
    for (size_t i = 0; i < nchains; i++) {
        const char *ch = chains[nchains - 1 - i];
        if (strncmp(ch, "sha256:", 7) != 0 || strlen(ch) != 71 || !is_hex(ch + 7, 64))
            return -1;
        if ((c->layers[i] = malloc(strlen(c->root) + 96)) == NULL)
            return -1;
        sprintf(c->layers[i], "%s/snapshots/%s", c->root, ch + 7);
        c->lower[i + 1] = c->layers[i];
    }
    c->nlayers = nchains;
    /* container_argv: the command given replaces the image's Cmd, after its Entrypoint */
    if (copy_list(&c->argv, &c->nargv, ic.entrypoint, ic.nentrypoint) < 0)
        return -1;
    if (a->ncommand > 0) {
        for (int i = 0; i < a->ncommand; i++)
            if (!pyrt_image_ascii(a->command[i]))
                return -1;
        if (copy_list(&c->argv, &c->nargv, a->command, (size_t)a->ncommand) < 0)
            return -1;
    } else if (copy_list(&c->argv, &c->nargv, ic.cmd, ic.ncmd) < 0) {
        return -1;
    }
    if (c->nargv == 0)
        return -1; /* "no command specified": Python's */
    /* the name (check_name), given or free */
    if (a->name) {
        size_t n = strlen(a->name);
        if (n == 0 || n >= sizeof c->name || strspn(a->name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") != n ||
            a->name[0] == '_' || a->name[0] == '.' || a->name[0] == '-')
            return -1;
        if (pyrt_store_name_used(&c->st, a->name) != 0)
            return -1; /* taken: Python says so */
        strcpy(c->name, a->name);
    }
    /* the working dir and user as create() records them */
    if (a->workdir) { /* `working_dir if working_dir is not None else the image's` */
        ic.working_dir = a->workdir;
        ic.working_dir_null = 0;
    }
    if (ic.working_dir && !plain_dir(ic.working_dir))
        return -1;
    c->workdir = strdup(ic.working_dir ? ic.working_dir : "");
    c->labels = ic.labels;
    c->nlabels = ic.nlabels;
    c->workdir_null = ic.working_dir_null;
    c->user_null = ic.user_null;
    if (ic.stop_signal && !ic.stop_signal[0])
        ic.stop_signal = NULL;
    c->stop_signal = ic.stop_signal ? ic.stop_signal : "SIGTERM";
    /* the host files the container's are made of */
    int net_host = strcmp(a->network, "host") == 0;
    char *host_hosts = NULL;
    if (net_host && pyrt_ctrdir_host_file("/etc/hosts", &host_hosts) < 0)
        return -1;
    if (pyrt_ctrdir_host_file("/etc/resolv.conf", &c->resolv) < 0)
        return -1;
    if (c->resolv == NULL)
        c->resolv = strdup("");
    /* its id and host name */
    unsigned char rnd[32];
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
        return -1;
    for (int i = 0; i < 32; i++)
        sprintf(c->id + 2 * i, "%02x", rnd[i]);
    memcpy(c->hostname, c->id, 12);
    c->hostname[12] = 0;
    if (net_host)
        c->hosts = host_hosts ? host_hosts : strdup("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    else if ((c->hosts = malloc(128)) != NULL)
        sprintf(c->hosts, "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t%s\n", c->hostname);
    /* the environment: the image's, -e, PATH, HOSTNAME, HOME */
    for (size_t i = 0; i < ic.nenv; i++) {
        const char *e = ic.env[i], *eq = strchr(e, '=');
        if (env_put(c, e, eq ? (size_t)(eq - e) : strlen(e), eq ? eq + 1 : "", 0) < 0)
            return -1;
    }
    for (size_t i = 0; i < a->nenv; i++) {
        const char *e = a->env[i], *eq = strchr(e, '=');
        size_t klen = eq ? (size_t)(eq - e) : strlen(e);
        const char *v = eq ? eq + 1 : NULL;
        char key[256];
        if (klen == 0 || klen >= sizeof key || !pyrt_image_ascii(e))
            return -1;
        memcpy(key, e, klen);
        key[klen] = 0;
        if (v == NULL && (v = getenv(key)) == NULL)
            continue;
        if (!pyrt_image_ascii(v) || env_put(c, e, klen, v, 0) < 0)
            return -1;
    }
    if (env_put(c, "PATH", 4, DEFAULT_PATH, 1) < 0 || env_put(c, "HOSTNAME", 8, c->hostname, 0) < 0)
        return -1;
    if (env_get(c, "HOME") == NULL) {
        char *home = pyrt_ctrdir_home(c->layers, c->nlayers);
        if (home == NULL || env_put(c, "HOME", 4, home, 1) < 0)
            return -1;
        free(home);
    }
    c->path = (char *)env_get(c, "PATH");
    snprintf(c->cdir, sizeof c->cdir, "%s/containers/%s", c->root, c->id);
    return c->hosts && c->workdir ? 0 : -1;
}

void pyrt_ctr_spec(struct pyrt_ctr *c, struct pyrt_spawn_spec *s)
{
    static char init[PATH_MAX + 96];
    snprintf(init, sizeof init, "%s/init", c->cdir);
    c->lower[0] = init;
    snprintf(c->upper, sizeof c->upper, "%s/upper", c->cdir);
    snprintf(c->work, sizeof c->work, "%s/work", c->cdir);
    s->rootfs = NULL;
    s->lowerdirs = (const char *const *)c->lower;
    s->nlower = c->nlayers + 1;
    s->upperdir = c->upper;
    s->workdir = c->work;
    s->overlay_options = "redirect_dir=off,metacopy=off";
    s->argv = (const char *const *)c->argv;
    s->envp = (const char *const *)c->envp;
    s->path = c->path;
    s->cwd = c->workdir[0] ? c->workdir : "/";
    s->hostname = c->hostname;
    static const char *const names[3] = {"hostname", "hosts", "resolv.conf"};
    static const char *const targets[3] = {"/etc/hostname", "/etc/hosts", "/etc/resolv.conf"};
    for (int i = 0; i < 3; i++) {
        snprintf(c->etc[i], sizeof c->etc[i], "%s/%s", c->cdir, names[i]);
        c->mounts[i] = (struct pyrt_mount){.kind = PYRT_MOUNT_BIND, .flags = 0, .source = c->etc[i], .target = targets[i]};
    }
    s->mounts = c->mounts;
    s->nmounts = 3;
}

/* -- the record ------------------------------------------------------------------------------- */

static int list(struct sbuf *b, char *const *items, size_t n)
{
    int rc = pyrt_json_raw(b, "[");
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = (i ? pyrt_json_raw(b, ", ") : 0) | pyrt_json_str(b, items[i]);
    return rc | pyrt_json_raw(b, "]");
}

/* create()'s config dict, as json.dumps writes it */
static char *config_json(struct pyrt_ctr *c)
{
    const struct pyrt_ctr_args *a = c->a;
    struct sbuf b = {0};
    int rc = pyrt_json_raw(&b, "{\"Cmd\": ") | list(&b, c->argv, c->nargv) | pyrt_json_raw(&b, ", \"Env\": ") |
             list(&b, c->envp, c->nenv) | pyrt_json_raw(&b, ", \"WorkingDir\": ");
    rc |= c->workdir_null ? pyrt_json_raw(&b, "null") : pyrt_json_str(&b, c->workdir);
    rc |= pyrt_json_raw(&b, ", \"User\": ") | pyrt_json_raw(&b, c->user_null ? "null" : "\"\"");
    rc |= pyrt_json_raw(&b, ", \"Hostname\": ") | pyrt_json_str(&b, c->hostname) |
          pyrt_json_raw(&b, ", \"Mounts\": [], \"NetworkMode\": ") | pyrt_json_str(&b, a->network) |
          pyrt_json_raw(&b, ", \"Networks\": {}, \"Dns\": [], \"ReadOnly\": false, \"CapAdd\": ") |
          list(&b, a->cap_add, a->ncap_add) | pyrt_json_raw(&b, ", \"CapDrop\": ") | list(&b, a->cap_drop, a->ncap_drop) |
          pyrt_json_raw(&b, ", \"Privileged\": false, \"AutoRemove\": ") | pyrt_json_raw(&b, a->rm ? "true" : "false") |
          pyrt_json_raw(&b, ", \"Driver\": \"overlay\", \"ImageRef\": ") | pyrt_json_str(&b, a->image) |
          pyrt_json_raw(&b, ", \"StopSignal\": ") | pyrt_json_str(&b, c->stop_signal) |
          pyrt_json_raw(&b, ", \"Limits\": {}, \"Init\": false, \"Tty\": false, \"Seccomp\": \"default\", "
                            "\"Ports\": [], \"LogConfig\": {}, \"Labels\": {");
    for (size_t i = 0; i + 1 < c->nlabels; i += 2) /* the image's labels ({**image's, **--label's}) */
        rc |= (i ? pyrt_json_raw(&b, ", ") : 0) | pyrt_json_str(&b, c->labels[i]) | pyrt_json_raw(&b, ": ") |
              pyrt_json_str(&b, c->labels[i + 1]);
    rc |= pyrt_json_raw(&b, "}, \"RestartPolicy\": {}, \"Devices\": []}");
    if (rc != 0) {
        pyrt_sbuf_free(&b);
        return NULL;
    }
    return b.p;
}

static int pick(int n)
{
    for (;;) {
        unsigned char r;
        if (getrandom(&r, 1, 0) != 1)
            return 0;
        if (r < 256 - 256 % n)
            return r % n;
    }
}

static int db_error(struct pyrt_ctr *c)
{
    fprintf(stderr, "pyrt: %s\n", c->st.why);
    return 125;
}

int pyrt_ctr_create(struct pyrt_ctr *c, int reaper_sock)
{
    char *config = config_json(c);
    if (config == NULL) {
        fputs("pyrt: out of memory\n", stderr);
        return 125;
    }
    if (pyrt_ctrdir_make(c->cdir, c->hostname, c->hosts, c->resolv, c->workdir, c->layers, c->nlayers) < 0) {
        fprintf(stderr, "pyrt: [Errno %d] %s: '%s'\n", errno, strerror(errno), c->cdir);
        free(config);
        return 125;
    }
    if (!c->name[0]) { /* _free_name */
        for (int i = 0; i < 100 && !c->name[0]; i++) {
            snprintf(c->name, sizeof c->name, "%s_%s", ADJECTIVES[pick(18)], NAMES[pick(16)]);
            int used = pyrt_store_name_used(&c->st, c->name);
            if (used < 0) {
                pyrt_ctrdir_rmtree(c->cdir);
                free(config);
                return db_error(c);
            }
            if (used)
                c->name[0] = 0;
        }
        if (!c->name[0]) {
            unsigned char r[4];
            if (getrandom(r, 4, 0) != 4)
                memset(r, 0, 4);
            snprintf(c->name, sizeof c->name, "pyrt_%02x%02x%02x%02x", r[0], r[1], r[2], r[3]);
        }
    }
    int rc = pyrt_store_insert(&c->st, c->id, c->name, c->image_id, now(), config, "{\"Status\": \"created\"}");
    free(config);
    if (rc != 0) {
        pyrt_ctrdir_rmtree(c->cdir);
        if (rc == 1)
            fprintf(stderr, "pyrt: the container name '%s' is already in use: remove that container or choose "
                            "another name\n", c->name);
        else if (rc == 2)
            fprintf(stderr, "pyrt: image %.12s was removed meanwhile\n", c->image_id + 7);
        else
            return db_error(c);
        return 125;
    }
    /* reaper.run_on_death(pyrt.cli.orphan.command(root, id)) */
    struct sbuf m = {0};
    const char *words[] = {c->a->python, "-P", "-m", "pyrt.cli.orphan", c->root, c->id};
    rc = pyrt_sbuf_append(&m, "a", 1);
    for (size_t i = 0; i < 6 && rc == 0; i++)
        rc = pyrt_sbuf_append(&m, words[i], strlen(words[i]) + 1);
    if (rc == 0 && pyrt_send_fds(reaper_sock, m.p, m.len, NULL, 0) < 0)
        rc = -1;
    pyrt_sbuf_free(&m);
    if (rc < 0) {
        fprintf(stderr, "pyrt: sendmsg \"reaper socket\": %s\n", strerror(errno));
        pyrt_ctr_not_started(c);
        return 125;
    }
    return 0;
}

const char *pyrt_ctr_cgroup_name(struct pyrt_ctr *c, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s", c->id);
    return buf;
}

int pyrt_ctr_log(struct pyrt_ctr *c)
{
    char p[PATH_MAX + 96];
    snprintf(p, sizeof p, "%s/ctr.log", c->cdir);
    return open(p, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
}

/* lifecycle.start_time: 0 for a process gone or a zombie */
static long long start_time(pid_t pid)
{
    char state;
    unsigned long long t = pyrt_proc_start_time(pid, &state);
    return state == 'Z' ? 0 : (long long)t;
}

static int set_state(struct pyrt_ctr *c, int exited, int code, int oom, double finished)
{
    pyrt_sbuf_free(&c->state);
    char num[64];
    int rc = pyrt_json_raw(&c->state, exited ? "{\"Status\": \"exited\", \"Pid\": 0" : "{\"Status\": \"running\", \"Pid\": ");
    if (!exited) {
        snprintf(num, sizeof num, "%d", (int)c->pid);
        rc |= pyrt_json_raw(&c->state, num);
    }
    snprintf(num, sizeof num, ", \"StartTime\": %lld, \"StartedAt\": ", c->start_time);
    rc |= pyrt_json_raw(&c->state, num) | pyrt_json_float(&c->state, c->started_at);
    snprintf(num, sizeof num, ", \"ExitCode\": %d, \"FinishedAt\": ", exited ? code : 0);
    rc |= pyrt_json_raw(&c->state, num);
    rc |= exited ? pyrt_json_float(&c->state, finished) : pyrt_json_raw(&c->state, "null");
    rc |= pyrt_json_raw(&c->state, c->cgroup ? ", \"Cgroup\": true" : ", \"Cgroup\": false");
    if (exited)
        rc |= pyrt_json_raw(&c->state, oom ? ", \"OOMKilled\": true" : ", \"OOMKilled\": false");
    rc |= pyrt_json_raw(&c->state, "}");
    if (rc != 0)
        return -1;
    return pyrt_store_set_state(&c->st, c->id, c->state.p);
}

void pyrt_ctr_started(struct pyrt_ctr *c, pid_t pid, int cgroup)
{
    c->pid = pid;
    c->cgroup = cgroup;
    c->start_time = start_time(pid);
    c->started_at = now();
    if (set_state(c, 0, 0, 0, 0) < 0)
        db_error(c);
}

/* remove(force=True, v=True) of the exited container; 0, or the status */
static int remove_container(struct pyrt_ctr *c)
{
    int mark = pyrt_ctrdir_take_mark(c->cdir);
    if (mark < 0 && errno == ETIMEDOUT) {
        fprintf(stderr, "pyrt: container %s is being started or removed by another pyrt process\n", c->name);
        return 125;
    }
    int n = pyrt_store_delete(&c->st, c->id);
    if (n < 0) {
        pyrt_ctrdir_end_mark(c->cdir, mark);
        return db_error(c);
    }
    if (n == 0) {
        pyrt_ctrdir_end_mark(c->cdir, mark);
        fprintf(stderr, "pyrt: no such container: %s\n", c->name);
        return 125;
    }
    pyrt_ctrdir_rmtree(c->cdir);
    pyrt_ctrdir_end_mark(c->cdir, mark);
    return 0;
}

static int oom_killed(const char *cgdir)
{
    char p[PATH_MAX], buf[4096];
    snprintf(p, sizeof p, "%s/memory.events", cgdir);
    if (pyrt_read_small(p, buf, sizeof buf) < 0)
        return 0;
    char *q = strstr(buf, "oom_kill ");
    return q && (q == buf || q[-1] == '\n') && atoll(q + 9) != 0;
}

int pyrt_ctr_finished(struct pyrt_ctr *c, int returncode, const char *cgdir)
{
    int code = returncode < 0 ? 128 - returncode : returncode, oom = 0;
    if (cgdir && cgdir[0]) {
        oom = oom_killed(cgdir);
        for (int i = 0; i < 200 && rmdir(cgdir) < 0 && errno == EBUSY; i++)
            usleep(5000);
    }
    if (set_state(c, 1, code, oom, now()) < 0)
        return db_error(c);
    return c->a->rm ? remove_container(c) : 0;
}

void pyrt_ctr_not_started(struct pyrt_ctr *c)
{
    if (c->a->rm)
        (void)remove_container(c);
}
