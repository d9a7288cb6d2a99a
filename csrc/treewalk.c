/* Walking a directory tree with fds (see treewalk.h): the helpers shared by the
 * tree copy (copy.c) and the layer writer (tarwrite.c). */
#include "treewalk.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "err.h"

int pyrt_grow(void *pp, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t ncap = *cap ? *cap : 256;
    while (ncap < need)
        ncap *= 2;
    void *np = realloc(*(void **)pp, ncap * elem);
    if (!np) {
        errno = ENOMEM;
        return -1;
    }
    *(void **)pp = np;
    *cap = ncap;
    return 0;
}

/* ------------------------------------------------------------------ inode map */

struct pyrt_inomap_slot {
    dev_t dev;
    ino_t ino;
    char *path; /* NULL: empty slot */
};

void pyrt_inomap_init(struct pyrt_inomap *m)
{
    m->slots = NULL;
    m->cap = 0;
    m->used = 0;
}

void pyrt_inomap_free(struct pyrt_inomap *m)
{
    for (size_t i = 0; i < m->cap; i++)
        free(m->slots[i].path);
    free(m->slots);
    pyrt_inomap_init(m);
}

static size_t inomap_hash(dev_t dev, ino_t ino)
{
    uint64_t h = (uint64_t)ino * 0x9E3779B97F4A7C15ull ^ (uint64_t)dev * 0xC2B2AE3D27D4EB4Full;
    return (size_t)(h ^ (h >> 29));
}

const char *pyrt_inomap_get(const struct pyrt_inomap *m, dev_t dev, ino_t ino)
{
    if (m->cap == 0)
        return NULL;
    for (size_t i = inomap_hash(dev, ino) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        const struct pyrt_inomap_slot *s = &m->slots[i];
        if (!s->path)
            return NULL;
        if (s->dev == dev && s->ino == ino)
            return s->path;
    }
}

static void inomap_insert(struct pyrt_inomap_slot *slots, size_t cap, dev_t dev, ino_t ino,
                          char *path)
{
    size_t i = inomap_hash(dev, ino) & (cap - 1);
    while (slots[i].path)
        i = (i + 1) & (cap - 1);
    slots[i].dev = dev;
    slots[i].ino = ino;
    slots[i].path = path;
}

int pyrt_inomap_put(struct pyrt_inomap *m, dev_t dev, ino_t ino, const char *path)
{
    if ((m->used + 1) * 2 > m->cap) {
        size_t ncap = m->cap ? m->cap * 2 : 64;
        struct pyrt_inomap_slot *ns = calloc(ncap, sizeof *ns);
        if (!ns) {
            errno = ENOMEM;
            return -1;
        }
        for (size_t i = 0; i < m->cap; i++)
            if (m->slots[i].path)
                inomap_insert(ns, ncap, m->slots[i].dev, m->slots[i].ino, m->slots[i].path);
        free(m->slots);
        m->slots = ns;
        m->cap = ncap;
    }
    char *copy = strdup(path);
    if (!copy) {
        errno = ENOMEM;
        return -1;
    }
    inomap_insert(m->slots, m->cap, dev, ino, copy);
    m->used++;
    return 0;
}

/* ------------------------------------------------------------------ xattrs */

void pyrt_xattrs_free(struct pyrt_xattrs *x)
{
    free(x->items);
    free(x->names);
    free(x->values);
    memset(x, 0, sizeof *x);
}

static int xattr_cmp(const void *a, const void *b)
{
    return strcmp(((const struct pyrt_xattr *)a)->name, ((const struct pyrt_xattr *)b)->name);
}

static ssize_t x_list(int fd, const char *proc, char *buf, size_t cap)
{
    return fd >= 0 ? flistxattr(fd, buf, cap) : llistxattr(proc, buf, cap);
}

static ssize_t x_get(int fd, const char *proc, const char *name, char *buf, size_t cap)
{
    return fd >= 0 ? fgetxattr(fd, name, buf, cap) : lgetxattr(proc, name, buf, cap);
}

int pyrt_xattrs_read(struct pyrt_xattrs *x, int fd, int dirfd, const char *name)
{
    char proc[512];
    x->n = 0;
    if (fd < 0) {
        int n = snprintf(proc, sizeof proc, "/proc/self/fd/%d/%s", dirfd, name);
        if (n < 0 || (size_t)n >= sizeof proc) {
            errno = ENAMETOOLONG;
            return -1;
        }
    }
    ssize_t len;
    for (;;) {
        len = x->names_cap ? x_list(fd, proc, x->names, x->names_cap) : -1;
        if (len >= 0)
            break;
        if (x->names_cap && errno != ERANGE)
            goto list_failed;
        len = x_list(fd, proc, NULL, 0);
        if (len < 0)
            goto list_failed;
        if (len == 0)
            return 0;
        if (pyrt_grow(&x->names, &x->names_cap, (size_t)len + 1, 1) < 0)
            return -1;
    }
    /* Values, back to back; offsets first (the buffer may move), pointers after. */
    size_t used = 0;
    for (const char *p = x->names; p < x->names + len; p += strlen(p) + 1) {
        if (!*p)
            continue;
        ssize_t vlen;
        for (;;) {
            size_t avail = x->values_cap - used;
            vlen = x_get(fd, proc, p, avail ? x->values + used : NULL, avail);
            if (vlen < 0 && errno == ENODATA)
                break; /* removed meanwhile */
            if (vlen < 0 && errno != ERANGE)
                return -1;
            if (vlen >= 0 && (avail || vlen == 0))
                break; /* read (a size-0 call only tells the size) */
            if (vlen < 0) {
                vlen = x_get(fd, proc, p, NULL, 0);
                if (vlen < 0) {
                    if (errno == ENODATA)
                        break;
                    return -1;
                }
            }
            if (pyrt_grow(&x->values, &x->values_cap, used + (size_t)vlen + 1, 1) < 0)
                return -1;
        }
        if (vlen < 0)
            continue;
        if (pyrt_grow(&x->items, &x->cap, x->n + 1, sizeof *x->items) < 0)
            return -1;
        x->items[x->n].name = p;
        x->items[x->n].value = (const char *)(uintptr_t)used;
        x->items[x->n].size = (size_t)vlen;
        x->n++;
        used += (size_t)vlen;
    }
    for (size_t i = 0; i < x->n; i++)
        x->items[i].value = x->values ? x->values + (uintptr_t)x->items[i].value : "";
    qsort(x->items, x->n, sizeof *x->items, xattr_cmp);
    return 0;

list_failed:
    /* No xattr support on this filesystem, or (for the /proc route) no /proc. */
    if (errno == ENOTSUP || (fd < 0 && errno == ENOENT))
        return 0;
    return -1;
}

const struct pyrt_xattr *pyrt_xattrs_find(const struct pyrt_xattrs *x, const char *name)
{
    for (size_t i = 0; i < x->n; i++)
        if (strcmp(x->items[i].name, name) == 0)
            return &x->items[i];
    return NULL;
}

const struct pyrt_xattr *pyrt_xattrs_overlay(const struct pyrt_xattrs *x, int userxattr,
                                             const char *suffix)
{
    char name[64];
    snprintf(name, sizeof name, "trusted.overlay.%s", suffix);
    const struct pyrt_xattr *a = pyrt_xattrs_find(x, name);
    if (!a && userxattr) {
        snprintf(name, sizeof name, "user.overlay.%s", suffix);
        a = pyrt_xattrs_find(x, name);
    }
    return a;
}

/* ------------------------------------------------------------------ paths, names */

size_t pyrt_path_push(struct pyrt_path *p, const char *name)
{
    size_t old = p->len, nl = strlen(name);
    if (pyrt_grow(&p->buf, &p->cap, p->len + nl + 2, 1) < 0)
        return (size_t)-1;
    if (p->len)
        p->buf[p->len++] = '/';
    memcpy(p->buf + p->len, name, nl + 1);
    p->len += nl;
    return old;
}

void pyrt_path_pop(struct pyrt_path *p, size_t oldlen)
{
    p->len = oldlen;
    if (p->buf)
        p->buf[oldlen] = '\0';
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int pyrt_names_read(int dirfd, struct pyrt_names *out)
{
    out->v = NULL;
    out->n = 0;
    out->pool = NULL;
    int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    DIR *d = fdopendir(fd);
    if (!d) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    size_t pool_len = 0, pool_cap = 0, vcap = 0;
    size_t *offs = NULL;
    struct dirent *de;
    int rc = 0;
    errno = 0;
    while ((de = readdir(d))) {
        const char *n = de->d_name;
        if (n[0] == '.' && (!n[1] || (n[1] == '.' && !n[2])))
            continue;
        size_t nl = strlen(n) + 1;
        if (pyrt_grow(&out->pool, &pool_cap, pool_len + nl, 1) < 0 ||
            pyrt_grow(&offs, &vcap, out->n + 1, sizeof *offs) < 0) {
            rc = -1;
            break;
        }
        memcpy(out->pool + pool_len, n, nl);
        offs[out->n++] = pool_len;
        pool_len += nl;
        errno = 0;
    }
    if (rc == 0 && errno != 0)
        rc = -1;
    int saved = errno;
    closedir(d);
    if (rc == 0 && out->n) {
        out->v = malloc(out->n * sizeof *out->v);
        if (!out->v) {
            rc = -1;
            saved = ENOMEM;
        } else {
            for (size_t i = 0; i < out->n; i++)
                out->v[i] = out->pool + offs[i];
            qsort(out->v, out->n, sizeof *out->v, name_cmp);
        }
    }
    free(offs);
    if (rc < 0) {
        pyrt_names_free(out);
        errno = saved;
    }
    return rc;
}

void pyrt_names_free(struct pyrt_names *names)
{
    free(names->v);
    free(names->pool);
    names->v = NULL;
    names->pool = NULL;
    names->n = 0;
}

ssize_t pyrt_readlink_buf(int dirfd, const char *name, size_t size, char **buf, size_t *cap)
{
    size_t want = size + 2;
    if (pyrt_grow(buf, cap, want < 256 ? 256 : want, 1) < 0)
        return -1;
    ssize_t n = readlinkat(dirfd, name, *buf, *cap);
    if (n < 0)
        return -1;
    if ((size_t)n >= *cap) {
        errno = EAGAIN; /* longer than it was a moment ago */
        return -1;
    }
    (*buf)[n] = '\0';
    return n;
}

int pyrt_walk_dir(int dirfd, struct pyrt_path *path, pyrt_walk_fn fn, void *ctx,
                  struct pyrt_error *e)
{
    struct pyrt_names names;
    if (pyrt_names_read(dirfd, &names) < 0)
        return pyrt_fail(e, "read dir", path->len ? path->buf : ".");
    int rc = 0;
    for (size_t i = 0; i < names.n && rc == 0; i++) {
        size_t old = pyrt_path_push(path, names.v[i]);
        if (old == (size_t)-1) {
            rc = pyrt_fail_errno(e, ENOMEM, "path", path->len ? path->buf : ".");
            break;
        }
        rc = fn(ctx, dirfd, names.v[i], old);
        pyrt_path_pop(path, old);
    }
    pyrt_names_free(&names);
    return rc;
}
