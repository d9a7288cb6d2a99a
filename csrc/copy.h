/* Tree copy for the `copy` storage driver, volume population and rootfs
 * materialization: reflink (FICLONE) where the filesystem can, else
 * copy_file_range, sparse-aware; owners, modes (setuid kept), xattrs, times,
 * hardlinks, symlinks, devices and fifos kept. Every path in the destination is
 * reached with fds and no-follow lookups: nothing outside dst is ever written.
 *
 * Also the small helpers shared with the layer writer (tarwrite.c): an inode map
 * for hardlinks and an xattr reader. */
#ifndef PYRT_COPY_H
#define PYRT_COPY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "spawn.h" /* struct pyrt_error */

/* pyrt_copy_tree flags. */
enum {
    /* Apply overlay whiteouts while copying: a 0:0 char device (or a file with the
     * trusted.overlay.whiteout xattr) in src removes dst's path instead of being
     * copied; a dir with trusted.overlay.opaque=y empties dst's dir first. Copying
     * a stack of layers bottom-up this way materializes their union. */
    PYRT_COPY_WHITEOUTS = 0x1,
    /* Keep trusted.overlay.* xattrs (dropped by default). */
    PYRT_COPY_OVERLAY_XATTRS = 0x2,
    /* Never try FICLONE (always copy the bytes). */
    PYRT_COPY_NO_REFLINK = 0x4,
    /* Do not copy xattrs at all. */
    PYRT_COPY_NO_XATTRS = 0x8,
    /* Do not chown (for unprivileged callers); EPERM from chown is also ignored
     * when not running as root. */
    PYRT_COPY_NO_OWNERS = 0x10,
    /* Overlay was mounted with userxattr: user.overlay.* are overlay's own xattrs
     * (treated like trusted.overlay.*). */
    PYRT_COPY_USERXATTR = 0x20,
};

/* Counters filled by pyrt_copy_tree (may be NULL). */
struct pyrt_copy_stats {
    uint64_t files;     /* regular files written */
    uint64_t reflinked; /* of which cloned with FICLONE */
    uint64_t bytes;     /* data bytes copied (not counting holes or reflinks) */
    uint64_t links;     /* hardlinks made */
    uint64_t removed;   /* dst entries removed by whiteouts or replacement */
};

/* Copy the contents of the directory srcfd into the directory dstfd (both open
 * directory fds; the roots' own metadata is copied too). Existing entries of dst
 * are merged: a dir over a dir is merged, anything else replaces what dst had
 * (unlinked first, never written through, so hardlinks in dst are not modified).
 * Returns 0, or -1 with *e filled (path relative to src). */
int pyrt_copy_tree(int srcfd, int dstfd, unsigned flags, struct pyrt_copy_stats *stats,
                   struct pyrt_error *e);

/* --- helpers shared with tarwrite.c --- */

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

#endif
