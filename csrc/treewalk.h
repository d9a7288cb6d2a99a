/* Walking a directory tree with fds, for the tree copy (copy.c) and the layer
 * writer (tarwrite.c): a directory's names in sorted order, the path walked, a
 * hardlink map, a file's xattrs, a symlink's target, and the walk of one
 * directory's entries. Nothing here follows a symlink. */
#ifndef PYRT_TREEWALK_H
#define PYRT_TREEWALK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "err.h" /* struct pyrt_error */

/* *pp (an array of elem-sized items, capacity *cap) grown to hold need of them
 * (the capacity doubles from 256). 0, or -1 with errno ENOMEM. */
int pyrt_grow(void *pp, size_t *cap, size_t need, size_t elem);

/* (dev, ino) -> path map for hardlink detection. */
struct pyrt_inomap {
    struct pyrt_inomap_slot *slots;
    size_t cap, used;
};
void pyrt_inomap_init(struct pyrt_inomap *m);
void pyrt_inomap_free(struct pyrt_inomap *m);
/* The path stored for (dev, ino), or NULL. */
const char *pyrt_inomap_get(const struct pyrt_inomap *m, dev_t dev, ino_t ino);
/* Store a copy of path for (dev, ino); -1 (ENOMEM) on failure. */
int pyrt_inomap_put(struct pyrt_inomap *m, dev_t dev, ino_t ino, const char *path);

/* The xattrs of one file, names sorted bytewise. */
struct pyrt_xattr {
    const char *name;
    const char *value;
    size_t size;
};
struct pyrt_xattrs {
    struct pyrt_xattr *items;
    size_t n, cap;
    char *names;   /* listxattr buffer */
    size_t names_cap;
    char *values;  /* all values, back to back */
    size_t values_cap;
};
void pyrt_xattrs_free(struct pyrt_xattrs *x);
/* Read all xattrs of fd (a regular file or dir opened for reading) or, when fd < 0,
 * of the entry `name` in dirfd without following it (through /proc/self/fd; no
 * xattrs are read when /proc is not mounted). Returns 0 or -1 with errno. */
int pyrt_xattrs_read(struct pyrt_xattrs *x, int fd, int dirfd, const char *name);
/* The value of one xattr read by pyrt_xattrs_read, or NULL. */
const struct pyrt_xattr *pyrt_xattrs_find(const struct pyrt_xattrs *x, const char *name);
/* The overlay xattr trusted.overlay.<suffix> in x or, when userxattr (overlay
 * mounted with userxattr), user.overlay.<suffix>; NULL when neither is there. */
const struct pyrt_xattr *pyrt_xattrs_overlay(const struct pyrt_xattrs *x, int userxattr,
                                             const char *suffix);

/* A growable path buffer: "a/b/c" relative to the tree's root. */
struct pyrt_path {
    char *buf;
    size_t len, cap;
};
/* Append "/name" (or "name" at the root); returns the old length for pop, or
 * (size_t)-1 with errno ENOMEM. */
size_t pyrt_path_push(struct pyrt_path *p, const char *name);
void pyrt_path_pop(struct pyrt_path *p, size_t oldlen);

/* Names in a directory (without . and ..), sorted bytewise. */
struct pyrt_names {
    char **v;
    size_t n;
    char *pool;
};
/* Read and sort the names of dirfd (the fd itself is not consumed: a duplicate
 * is read). Returns 0 or -1 with errno. */
int pyrt_names_read(int dirfd, struct pyrt_names *out);
void pyrt_names_free(struct pyrt_names *names);

/* The target of the symlink name in dirfd (size: its st_size, a hint) read into
 * *buf (capacity *cap, grown as needed) and NUL-terminated. Its length, or -1
 * with errno (EAGAIN: it grew past the buffer meanwhile). */
ssize_t pyrt_readlink_buf(int dirfd, const char *name, size_t size, char **buf, size_t *cap);

/* The entries of dirfd, in sorted order: fn(ctx, dirfd, name, cut) for each, path
 * extended by its name during the call (cut: the length of path before). Stops at
 * the first call that fails. 0, or -1: fn's failure, or the listing's (e filled,
 * path as the place). */
typedef int (*pyrt_walk_fn)(void *ctx, int dirfd, const char *name, size_t cut);
int pyrt_walk_dir(int dirfd, struct pyrt_path *path, pyrt_walk_fn fn, void *ctx,
                  struct pyrt_error *e);

#endif
