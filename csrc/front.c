/* The pieces of `pyrt run --rootfs` the native command does as pyrt's Python
 * does them (see front.h). */
#include "front.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "devices.h"
#include "err.h"
#include "fdio.h"

/* -- os.path.abspath ------------------------------------------------------------------- */

int pyrt_front_abspath(const char *path, char *out, size_t cap)
{
    char joined[PATH_MAX * 2];
    if (path[0] == '/') {
        if (strlen(path) >= sizeof joined)
            return -1;
        strcpy(joined, path);
    } else {
        char cwd[PATH_MAX];
        if (getcwd(cwd, sizeof cwd) == NULL)
            return -1;
        size_t n = strlen(cwd);
        int w = snprintf(joined, sizeof joined, "%s%s%s", cwd, n && cwd[n - 1] == '/' ? "" : "/", path);
        if (w < 0 || (size_t)w >= sizeof joined)
            return -1;
    }
    /* posixpath.normpath: "//" (exactly two) stays at the start; "." and empty parts
     * go; ".." takes the part before it away (at the root it goes itself) */
    int slashes = joined[0] == '/' ? (joined[1] == '/' && joined[2] != '/' ? 2 : 1) : 0;
    size_t starts[PATH_MAX];
    size_t nparts = 0, len = 0;
    char *save = NULL;
    for (char *part = strtok_r(joined, "/", &save); part != NULL; part = strtok_r(NULL, "/", &save)) {
        if (strcmp(part, ".") == 0)
            continue;
        if (strcmp(part, "..") == 0) {
            int prev_dotdot = nparts > 0 && strcmp(out + starts[nparts - 1], "..") == 0;
            if (nparts > 0 && !prev_dotdot) {
                len = starts[--nparts];
                len = len > 0 ? len - 1 : 0; /* the '/' before it */
                out[len] = 0;
                continue;
            }
            if (slashes)
                continue;
        }
        size_t plen = strlen(part);
        size_t at = len + (nparts > 0 ? 1 : 0);
        if (at + plen + (size_t)slashes + 1 >= cap || nparts >= PATH_MAX)
            return -1;
        if (nparts > 0)
            out[len] = '/';
        memcpy(out + at, part, plen + 1);
        starts[nparts++] = at;
        len = at + plen;
    }
    if (nparts == 0)
        out[0] = 0;
    if (slashes) {
        memmove(out + slashes, out, len + 1);
        memset(out, '/', (size_t)slashes);
    } else if (len == 0) {
        strcpy(out, ".");
    }
    return 0;
}

/* -- os.makedirs(path, mode, exist_ok=True) ------------------------------------------------ */

int pyrt_front_makedirs(char *path, mode_t leaf)
{
    struct stat st;
    if (stat(path, &st) == 0)
        return S_ISDIR(st.st_mode) ? 0 : -1;
    char *slash = strrchr(path, '/');
    if (slash != NULL && slash != path) {
        *slash = 0;
        int rc = pyrt_front_makedirs(path, 0777);
        *slash = '/';
        if (rc < 0)
            return -1;
    }
    if (mkdir(path, leaf) == 0)
        return 0;
    return errno == EEXIST && stat(path, &st) == 0 && S_ISDIR(st.st_mode) ? 0 : -1;
}

/* -- capabilities (pyrt/launch/caps.py) --------------------------------------------------- */

static const char *const CAP_NAMES[] = {
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
    "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
    "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
    "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
};
static const char *const CAP_DEFAULT[] = {
    "CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID",
    "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE",
};
#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* name.upper() into buf (ASCII only: Python's upper() of anything else is not
 * this code's to guess); -1 when it is not ASCII or too long. */
static int upper(const char *name, char *buf, size_t cap)
{
    size_t n = strlen(name);
    if (n >= cap)
        return -1;
    for (size_t i = 0; i <= n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c >= 0x80)
            return -1;
        buf[i] = (char)(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c);
    }
    return 0;
}

static int is_all(const char *name)
{
    char u[64];
    return upper(name, u, sizeof u) == 0 && strcmp(u, "ALL") == 0;
}

static int cap_number(const char *name)
{
    char u[64];
    if (upper(name, u, sizeof u) < 0)
        return -1;
    const char *key = strncmp(u, "CAP_", 4) == 0 ? u + 4 : u;
    for (size_t i = 0; i < NELEM(CAP_NAMES); i++)
        if (strcmp(key, CAP_NAMES[i]) == 0)
            return (int)i;
    return -1;
}

/* caps.mask(names), skipping "ALL" when skip_all; -1 for a name it does not know */
static int cap_mask(char *const *names, size_t n, int skip_all, uint64_t *m)
{
    *m = 0;
    for (size_t i = 0; i < n; i++) {
        if (skip_all && is_all(names[i]))
            continue;
        int k = cap_number(names[i]);
        if (k < 0)
            return -1;
        *m |= (uint64_t)1 << k;
    }
    return 0;
}

int pyrt_front_caps(char *const *add, size_t nadd, char *const *drop, size_t ndrop, uint64_t *mask)
{
    uint64_t m = 0, x;
    for (size_t i = 0; i < NELEM(CAP_DEFAULT); i++)
        m |= (uint64_t)1 << cap_number(CAP_DEFAULT[i]);
    int add_all = 0, drop_all = 0;
    for (size_t i = 0; i < nadd; i++)
        add_all |= is_all(add[i]);
    for (size_t i = 0; i < ndrop; i++)
        drop_all |= is_all(drop[i]);
    if (add_all) {
        m = ~(uint64_t)0;
    } else {
        if (cap_mask(add, nadd, 0, &x) < 0)
            return -1;
        m |= x;
    }
    if (drop_all) {
        if (cap_mask(add, nadd, 1, &m) < 0)
            return -1;
    } else {
        if (cap_mask(drop, ndrop, 0, &x) < 0)
            return -1;
        m &= ~x;
    }
    *mask = m;
    return 0;
}

/* -- the seccomp cache (pyrt/launch/seccomp.py) -------------------------------------------- */

/* seccomp._ours: owned by the caller and writable by nobody else */
static int ours(const struct stat *st)
{
    return st->st_uid == geteuid() && !(st->st_mode & 022);
}

int pyrt_front_seccomp_cached(const char *dir, const char *name, void **prog, size_t *len, unsigned int *flags)
{
    struct stat st;
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
        return 0;
    if (stat(dir, &st) < 0 || !ours(&st))
        return 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    int found = 0;
    char *data = NULL;
    if (fstat(fd, &st) == 0 && ours(&st) && S_ISREG(st.st_mode) && st.st_size > 4 &&
        st.st_size <= 4 + 65535 * 8 && (st.st_size - 4) % 8 == 0 && (data = malloc((size_t)st.st_size)) != NULL) {
        ssize_t n = pyrt_read_full(fd, data, (size_t)st.st_size);
        char more;
        if (n == st.st_size && read(fd, &more, 1) == 0) {
            unsigned char *b = (unsigned char *)data;
            *flags = (unsigned int)b[0] | (unsigned int)b[1] << 8 | (unsigned int)b[2] << 16 | (unsigned int)b[3] << 24;
            *len = (size_t)n - 4;
            memmove(data, data + 4, *len);
            *prog = data;
            data = NULL;
            found = 1;
        }
    }
    free(data);
    close(fd);
    return found;
}

/* -- the device cgroup (pyrt/cgroups/cgroup.py Cgroup.create, devices="default") ----------- */

struct layout {
    char unified[256];   /* the cgroup2 mount, "" */
    int has_v1;          /* any v1 controller hierarchy */
    char v1[1024];       /* " name name ... " of the v1 controllers */
};

/* A word of line (space separated, 0-based) into buf; -1 when there is none. */
static int word(const char *line, int k, char *buf, size_t cap)
{
    const char *p = line;
    for (;;) {
        while (*p == ' ')
            p++;
        if (!*p || *p == '\n')
            return -1;
        size_t n = strcspn(p, " \n");
        if (k-- == 0) {
            if (n >= cap)
                return -1;
            memcpy(buf, p, n);
            buf[n] = 0;
            return 0;
        }
        p += n;
    }
}

/* layout.layout(): /proc/cgroups' names, /proc/self/mountinfo's cgroup mounts;
 * -1 for what this reads otherwise than Python would (an escaped mount point) */
static int read_layout(struct layout *lay)
{
    static char text[1 << 16], known[4096];
    memset(lay, 0, sizeof *lay);
    known[0] = 0;
    int fd = open("/proc/cgroups", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = pyrt_read_full(fd, text, sizeof text - 1);
        close(fd);
        if (n < 0 || n == (ssize_t)sizeof text - 1)
            return -1;
        text[n] = 0;
        size_t kl = 1;
        strcpy(known, " ");
        for (char *save = NULL, *ln = strtok_r(text, "\n", &save); ln; ln = strtok_r(NULL, "\n", &save)) {
            char name[64];
            if (ln[0] == '#' || word(ln, 0, name, sizeof name) < 0)
                continue;
            if (kl + strlen(name) + 2 >= sizeof known)
                return -1;
            kl += (size_t)sprintf(known + kl, "%s ", name);
        }
    } else {
        return -1; /* Python then knows its own list of names: not this code's case */
    }
    fd = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = pyrt_read_full(fd, text, sizeof text - 1);
    close(fd);
    if (n < 0 || n == (ssize_t)sizeof text - 1)
        return -1;
    text[n] = 0;
    strcpy(lay->v1, " ");
    for (char *save = NULL, *ln = strtok_r(text, "\n", &save); ln; ln = strtok_r(NULL, "\n", &save)) {
        char w[1024], mnt[256], fstype[64], opts[1024];
        int sep = -1;
        for (int k = 0; word(ln, k, w, sizeof w) == 0; k++)
            if (strcmp(w, "-") == 0) {
                sep = k;
                break;
            }
        if (sep < 0 || word(ln, sep + 1, fstype, sizeof fstype) < 0 || word(ln, sep + 3, opts, sizeof opts) < 0)
            continue;
        if (strcmp(fstype, "cgroup2") != 0 && strcmp(fstype, "cgroup") != 0)
            continue;
        if (word(ln, 4, mnt, sizeof mnt) < 0 || strchr(mnt, '\\') != NULL)
            return -1;
        if (strcmp(fstype, "cgroup2") == 0) {
            if (!lay->unified[0] || strcmp(mnt, "/sys/fs/cgroup") == 0)
                strcpy(lay->unified, mnt);
            continue;
        }
        for (char *s2 = NULL, *o = strtok_r(opts, ",", &s2); o; o = strtok_r(NULL, ",", &s2)) {
            char pat[80];
            snprintf(pat, sizeof pat, " %s ", o);
            if (strlen(o) < 64 && strstr(known, pat) && !strstr(lay->v1, pat)) {
                if (strlen(lay->v1) + strlen(o) + 2 >= sizeof lay->v1)
                    return -1;
                strcat(lay->v1, o);
                strcat(lay->v1, " ");
                lay->has_v1 = 1;
            }
        }
    }
    return 0;
}

static int has_word(const char *text, const char *w)
{
    size_t n = strlen(w);
    for (const char *p = text; (p = strstr(p, w)) != NULL; p += n)
        if ((p == text || strchr(" \n\t", p[-1])) && (p[n] == 0 || strchr(" \n\t", p[n])))
            return 1;
    return 0;
}

static int write_text(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, text, strlen(text));
    int saved = errno;
    close(fd);
    errno = saved;
    return n == (ssize_t)strlen(text) ? 0 : -1;
}

int pyrt_front_cgroup_make(struct pyrt_front_cgroup *cg, pid_t pid)
{
    char name[32];
    snprintf(name, sizeof name, "run-%d", (int)pid);
    return pyrt_front_cgroup_make_named(cg, name);
}

int pyrt_front_cgroup_make_named(struct pyrt_front_cgroup *cg, const char *name)
{
    cg->dir[0] = 0;
    cg->fd = -1;
    struct layout lay;
    if (read_layout(&lay) < 0)
        return -1;
    if (!lay.unified[0])
        return lay.has_v1 ? -1 : 0; /* v1 only: not done here; none: none */
    /* the controllers that are free to join on cgroup2 (memory, pids, cpu: those
     * cgroup2 offers and no v1 hierarchy holds), enabled at each level above */
    char path[PATH_MAX], text[1024];
    const char *want[] = {"cpu", "memory", "pids"};
    int use[3] = {0, 0, 0};
    snprintf(path, sizeof path, "%s/cgroup.controllers", lay.unified);
    if (pyrt_read_small(path, text, sizeof text) < 0)
        text[0] = 0;
    for (int i = 0; i < 3; i++) {
        char pat[16];
        snprintf(pat, sizeof pat, " %s ", want[i]);
        use[i] = has_word(text, want[i]) && !strstr(lay.v1, pat);
    }
    char levels[2][sizeof lay.unified + 8];
    snprintf(levels[0], sizeof levels[0], "%s", lay.unified);
    snprintf(levels[1], sizeof levels[1], "%s/pyrt", lay.unified);
    if (mkdir(levels[1], 0755) < 0 && errno != EEXIST)
        return -1;
    for (int l = 0; l < 2; l++) {
        snprintf(path, sizeof path, "%s/cgroup.subtree_control", levels[l]);
        int any = use[0] || use[1] || use[2];
        if (any && pyrt_read_small(path, text, sizeof text) < 0)
            text[0] = 0;
        for (int i = 0; i < 3; i++) {
            char plus[16];
            snprintf(plus, sizeof plus, "+%s", want[i]);
            if (use[i] && !has_word(text, want[i]) && write_text(path, plus) < 0)
                return -1;
        }
    }
    if (snprintf(cg->dir, sizeof cg->dir, "%s/%s", levels[1], name) >= (int)sizeof cg->dir)
        return cg->dir[0] = 0, -1;
    if (mkdir(cg->dir, 0755) < 0) {
        /* a leftover: Python replaces an empty one; this code leaves that to it */
        cg->dir[0] = 0;
        return -1;
    }
    cg->fd = open(cg->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (cg->fd < 0) {
        pyrt_front_cgroup_remove(cg);
        return -1;
    }
    /* docker's device list (pyrt.cgroups.devices.DEFAULT_RULES) as an eBPF program */
    static const struct pyrt_dev_rule rules[] = {
        {'c', -1, -1, PYRT_DEV_MKNOD, 1},
        {'b', -1, -1, PYRT_DEV_MKNOD, 1},
        {'c', 1, 3, PYRT_DEV_READ | PYRT_DEV_WRITE | PYRT_DEV_MKNOD, 1},
        {'c', 1, 5, PYRT_DEV_READ | PYRT_DEV_WRITE | PYRT_DEV_MKNOD, 1},
        {'c', 1, 7, PYRT_DEV_READ | PYRT_DEV_WRITE | PYRT_DEV_MKNOD, 1},
        {'c', 1, 8, PYRT_DEV_READ | PYRT_DEV_WRITE | PYRT_DEV_MKNOD, 1},
        {'c', 1, 9, PYRT_DEV_READ | PYRT_DEV_WRITE | PYRT_DEV_MKNOD, 1},
        {'c', 5, 0, PYRT_DEV_READ | PYRT_DEV_WRITE | PYRT_DEV_MKNOD, 1},
        {'c', 5, 1, PYRT_DEV_READ | PYRT_DEV_WRITE | PYRT_DEV_MKNOD, 1},
        {'c', 5, 2, PYRT_DEV_READ | PYRT_DEV_WRITE | PYRT_DEV_MKNOD, 1},
        {'c', 136, -1, PYRT_DEV_READ | PYRT_DEV_WRITE | PYRT_DEV_MKNOD, 1},
    };
    struct pyrt_error e;
    if (pyrt_devices_attach(cg->fd, cg->dir, rules, NELEM(rules), &e) < 0) {
        /* Python falls back to the v1 devices controller, or fails: its to do */
        pyrt_front_cgroup_close(cg);
        pyrt_front_cgroup_remove(cg);
        return -1;
    }
    return 1;
}

void pyrt_front_cgroup_close(struct pyrt_front_cgroup *cg)
{
    if (cg->fd >= 0)
        close(cg->fd);
    cg->fd = -1;
}

void pyrt_front_cgroup_remove(struct pyrt_front_cgroup *cg)
{
    pyrt_front_cgroup_close(cg);
    if (cg->dir[0])
        (void)rmdir(cg->dir);
    cg->dir[0] = 0;
}

int pyrt_front_cgroup_usable(void)
{
    struct layout lay;
    if (read_layout(&lay) < 0)
        return -1;
    const char *m = getenv("PYRT_CGROUP_MANAGER");
    if (m && m[0] && strcmp(m, "cgroupfs") != 0)
        return -1;
    struct stat st;
    if (!(m && m[0]) && lay.unified[0] && !lay.has_v1 && stat("/run/systemd/system", &st) == 0 && S_ISDIR(st.st_mode))
        return -1; /* systemd's cgroup manager: Python's */
    if (!lay.unified[0])
        return lay.has_v1 ? -1 : 0;
    return 1;
}
