/* A container's directory for the native `pyrt run IMAGE` (see front_ctrdir.h). */
#include "front_ctrdir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>
#include <linux/openat2.h>

#include "fdio.h"

#define PASSWD_MAX (1 << 20) /* userdb._MAX */

static int text_ok(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 0x20 && s[i] <= 0x7e) || s[i] == '\n' || s[i] == '\t'))
            return 0;
    return 1;
}

/* _read_in_root(root, "/etc/passwd"): 1 data, 0 none, -1 an error Python raises */
static int read_in_root(const char *root, char **data, size_t *len)
{
    int rootfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0)
        return errno == ENOENT ? 0 : -1;
    struct open_how how = {.flags = O_PATH, .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
    int fd = (int)syscall(SYS_openat2, rootfd, "/etc/passwd", &how, sizeof how);
    int saved = errno;
    close(rootfd);
    if (fd < 0)
        return saved == ENOENT || saved == ENOTDIR ? 0 : -1;
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return 0;
    }
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    int rfd = open(proc, O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    close(fd);
    if (rfd < 0)
        return -1;
    *data = malloc(PASSWD_MAX + 1);
    ssize_t n = *data ? read(rfd, *data, PASSWD_MAX) : -1;
    close(rfd);
    if (n < 0) {
        free(*data);
        return -1;
    }
    (*data)[n] = 0;
    *len = (size_t)n;
    return 1;
}

/* _layer_hides(layer, "/etc/passwd"): 1, 0, -1 (an error Python raises) */
static int layer_hides(const char *layer)
{
    const char *parts[] = {"etc", "etc/passwd"};
    for (int i = 0; i < 2; i++) {
        char p[PATH_MAX];
        struct stat st;
        snprintf(p, sizeof p, "%s/%s", layer, parts[i]);
        if (lstat(p, &st) < 0)
            return errno == ENOENT || errno == ENOTDIR ? 0 : -1;
        if (i == 1 || !S_ISDIR(st.st_mode))
            return 1;
        const char *names[] = {"trusted.overlay.opaque", "user.overlay.opaque"};
        for (int k = 0; k < 2; k++) {
            char v[4];
            if (lgetxattr(p, names[k], v, sizeof v) == 1 && v[0] == 'y')
                return 1;
        }
    }
    return 0;
}

char *pyrt_ctrdir_home(char *const *layers, size_t n)
{
    char *data = NULL;
    size_t len = 0;
    int found = 0;
    for (size_t i = 0; i < n && !found; i++) {
        found = read_in_root(layers[i], &data, &len);
        if (found < 0)
            return NULL;
        if (!found) {
            int h = layer_hides(layers[i]);
            if (h < 0)
                return NULL;
            if (h)
                break;
        }
    }
    const char *home = "/root";
    char *out = NULL;
    if (found) {
        if (!text_ok(data, len)) { /* decode("utf-8", "replace") and splitlines(): Python's */
            free(data);
            return NULL;
        }
        for (char *save = NULL, *ln = strtok_r(data, "\n", &save); ln; ln = strtok_r(NULL, "\n", &save)) {
            if (ln[0] == '#')
                continue;
            char *f[7] = {0};
            int k = 0;
            for (char *p = ln; k < 7; k++) {
                f[k] = p;
                p = strchr(p, ':');
                if (p == NULL) {
                    k++;
                    break;
                }
                *p++ = 0;
            }
            if (k >= 6 && strcmp(f[2], "0") == 0) {
                char *end = strchr(f[5], ':');
                if (end)
                    *end = 0;
                home = f[5][0] ? f[5] : "/";
                break;
            }
        }
    }
    out = strdup(home);
    free(data);
    return out;
}

int pyrt_ctrdir_host_file(const char *path, char **text)
{
    *text = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    size_t cap = 1 << 16;
    char *buf = malloc(cap + 1);
    ssize_t n = buf ? pyrt_read_full(fd, buf, cap) : -1;
    close(fd);
    if (n < 0 || (size_t)n == cap || !text_ok(buf, (size_t)n)) {
        free(buf);
        return -1;
    }
    buf[n] = 0;
    *text = buf;
    return 1;
}

static int write_file(const char *dir, const char *name, const char *text)
{
    char p[PATH_MAX];
    if (snprintf(p, sizeof p, "%s/%s", dir, name) >= (int)sizeof p)
        return errno = ENAMETOOLONG, -1;
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0)
        return -1;
    int rc = pyrt_write_all(fd, text, strlen(text));
    int saved = errno;
    if (close(fd) < 0 && rc == 0)
        return -1;
    errno = saved;
    return rc;
}

static int lexists(const char *base, const char *rel)
{
    char p[PATH_MAX];
    struct stat st;
    return snprintf(p, sizeof p, "%s/%s", base, rel) < (int)sizeof p && lstat(p, &st) == 0;
}

static int islink(const char *base, const char *rel)
{
    char p[PATH_MAX];
    struct stat st;
    return snprintf(p, sizeof p, "%s/%s", base, rel) < (int)sizeof p && lstat(p, &st) == 0 && S_ISLNK(st.st_mode);
}

static int in_image(char *const *layers, size_t n, const char *rel)
{
    for (size_t i = 0; i < n; i++)
        if (lexists(layers[i], rel))
            return 1;
    return 0;
}

/* os.makedirs(path, leaf, exist_ok=True): the parents 0777, the leaf `leaf` */
static int makedirs(char *path, size_t base)
{
    for (char *p = path + base + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        int rc = mkdir(path, 0777);
        *p = '/';
        if (rc < 0 && errno != EEXIST)
            return -1;
    }
    struct stat st;
    if (mkdir(path, 0755) < 0 && (errno != EEXIST || stat(path, &st) < 0 || !S_ISDIR(st.st_mode)))
        return -1;
    return 0;
}

/* create.py _make_init_layer */
static int init_layer(const char *cdir, const char *workdir, char *const *layers, size_t n)
{
    char init[PATH_MAX], p[PATH_MAX + 64];
    snprintf(init, sizeof init, "%s/init", cdir);
    if (mkdir(init, 0755) < 0)
        return -1;
    const char *dirs[] = {"proc", "sys", "dev"};
    for (int i = 0; i < 3; i++)
        if (!in_image(layers, n, dirs[i])) {
            snprintf(p, sizeof p, "%s/%s", init, dirs[i]);
            if (mkdir(p, 0755) < 0)
                return -1;
        }
    int etc_link = 0;
    for (size_t i = 0; i < n; i++)
        etc_link |= islink(layers[i], "etc");
    const char *files[] = {"etc/hostname", "etc/hosts", "etc/resolv.conf"};
    for (int i = 0; i < 3; i++) {
        if (in_image(layers, n, files[i]) || etc_link)
            continue;
        snprintf(p, sizeof p, "%s/etc", init);
        struct stat st;
        if (mkdir(p, 0755) < 0 && (errno != EEXIST || stat(p, &st) < 0 || !S_ISDIR(st.st_mode)))
            return -1;
        if (write_file(init, files[i], "") < 0)
            return -1;
    }
    /* the working dir (an absolute path without empty, . or .. parts: front_container.c) */
    const char *rel = workdir;
    while (*rel == '/')
        rel++;
    if (!*rel || in_image(layers, n, rel))
        return 0;
    char prefix[PATH_MAX];
    for (const char *q = rel;; q++) {
        if (*q == '/' || !*q) {
            snprintf(prefix, sizeof prefix, "%.*s", (int)(q - rel), rel);
            for (size_t i = 0; i < n; i++)
                if (islink(layers[i], prefix))
                    return 0;
            if (!*q)
                break;
        }
    }
    if (strlen(init) + strlen(rel) + 2 > PATH_MAX || snprintf(p, sizeof p, "%s/%s", init, rel) >= (int)sizeof p)
        return errno = ENAMETOOLONG, -1;
    return makedirs(p, strlen(init));
}

int pyrt_ctrdir_make(const char *cdir, const char *hostname, const char *hosts_text, const char *resolv_text,
                     const char *workdir, char *const *layers, size_t n)
{
    char p[PATH_MAX];
    if (mkdir(cdir, 0700) < 0)
        return -1;
    char *hn = malloc(strlen(hostname) + 2);
    int rc = hn == NULL ? -1 : 0;
    if (rc == 0) {
        sprintf(hn, "%s\n", hostname);
        snprintf(p, sizeof p, "%s/upper", cdir);
        rc = mkdir(p, 0755);
    }
    if (rc == 0) {
        snprintf(p, sizeof p, "%s/work", cdir);
        rc = mkdir(p, 0700);
    }
    if (rc == 0)
        rc = write_file(cdir, "hostname", hn);
    if (rc == 0)
        rc = write_file(cdir, "hosts", hosts_text);
    if (rc == 0)
        rc = write_file(cdir, "resolv.conf", resolv_text);
    if (rc == 0)
        rc = init_layer(cdir, workdir, layers, n);
    free(hn);
    if (rc < 0) {
        int saved = errno;
        pyrt_ctrdir_rmtree(cdir);
        errno = saved;
    }
    return rc;
}

int pyrt_ctrdir_take_mark(const char *cdir)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/starting", cdir);
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0 && errno == ENOENT) {
            fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
            if (fd < 0 && errno == EEXIST)
                continue;
        }
        if (fd < 0)
            return -1;
        if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
            close(fd);
            clock_gettime(CLOCK_MONOTONIC, &now);
            if (now.tv_sec - start.tv_sec >= 30)
                return errno = ETIMEDOUT, -1;
            usleep(5000);
            continue;
        }
        struct stat a, b;
        if (stat(path, &a) == 0 && fstat(fd, &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev)
            return fd;
        close(fd);
    }
}

void pyrt_ctrdir_end_mark(const char *cdir, int fd)
{
    if (fd < 0)
        return;
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/starting", cdir);
    (void)unlink(path);
    close(fd);
}

#define RMTREE_DEPTH 900 /* (an fd each: below the usual limit of 1024) */

static void rm_in(int dirfd, int depth)
{
    DIR *d = fdopendir(dirfd);
    if (d == NULL) {
        close(dirfd);
        return;
    }
    /* passes until one removes nothing (entries removed while reading may hide others) */
    for (int removed = 1; removed;) {
        removed = 0;
        rewinddir(d);
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            if (unlinkat(dirfd, e->d_name, 0) == 0) {
                removed = 1;
                continue;
            }
            if ((errno == EISDIR || errno == EPERM) && depth < RMTREE_DEPTH) {
                int sub = openat(dirfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (sub >= 0) {
                    rm_in(sub, depth + 1);
                    removed |= unlinkat(dirfd, e->d_name, AT_REMOVEDIR) == 0;
                }
            }
        }
    }
    closedir(d);
}

void pyrt_ctrdir_rmtree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return;
    if (!S_ISDIR(st.st_mode)) {
        (void)unlink(path);
        return;
    }
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0)
        rm_in(fd, 0);
    (void)rmdir(path);
}
