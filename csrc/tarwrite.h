/* The layer writer: a container's overlay upper dir (or a chosen list of entries
 * of a tree) written as an OCI layer tar (POSIX pax) to an fd.
 *
 * The output is a function of the tree only: entries in walk order with each
 * directory's children sorted bytewise, numeric uid/gid with empty uname/gname,
 * mtime in whole seconds (no atime/ctime), device numbers only for devices, xattrs
 * (user.* and security.capability only) as SCHILY.xattr pax records sorted by
 * name, long names/links and big numbers as pax records. The same change always
 * gives the same bytes, so the same digest. */
#ifndef PYRT_TARWRITE_H
#define PYRT_TARWRITE_H

#include <stddef.h>
#include <stdint.h>

#include "err.h" /* struct pyrt_error */

enum {
    /* Overlay was mounted with userxattr: user.overlay.* are overlay's own
     * (whiteout/opaque markers, never emitted), like trusted.overlay.*; so are
     * user.fuseoverlayfs.* (fuse-overlayfs's, in an ordinary user's upper dirs). */
    PYRT_LAYER_USERXATTR = 0x1,
    /* Do not interpret overlay markers: a 0:0 char device is written as a device,
     * opaque dirs as plain dirs (trusted.overlay.* is still never emitted). */
    PYRT_LAYER_RAW = 0x2,
    /* Do not write the two zero blocks that end a tar (to append more later). */
    PYRT_LAYER_NO_TRAILER = 0x4,
};

struct pyrt_layer_stats {
    uint64_t entries;   /* tar entries written (pax headers not counted) */
    uint64_t whiteouts; /* .wh. entries, opaque markers included */
    uint64_t bytes;     /* total bytes written to outfd */
};

/* Write the tree at upperfd (an open directory: the overlay upper dir) as a layer
 * tar to outfd (a pipe, a file, a socket). Overlay whiteouts (0:0 char devices, or
 * empty files with trusted.overlay.whiteout) become empty regular files `.wh.NAME`;
 * an opaque dir (trusted.overlay.opaque=y) becomes its dir entry followed by
 * `DIR/.wh..wh..opq` before its other children; hardlinks within the tree become
 * tar hardlinks to the first path written. Upper dirs that need the lower layers to
 * be read back (trusted.overlay.redirect, trusted.overlay.metacopy: overlay mounted
 * with redirect_dir or metacopy) are refused with EOPNOTSUPP.
 * Returns 0, or -1 with *e filled (path relative to the tree). */
int pyrt_write_layer(int upperfd, int outfd, unsigned flags, struct pyrt_layer_stats *stats,
                     struct pyrt_error *e);

/* What pyrt_write_entries writes for one entry. */
enum {
    PYRT_ENTRY_PATH = 0,     /* the path itself (a dir without its children) */
    PYRT_ENTRY_WHITEOUT = 1, /* `.wh.NAME` for a deleted path */
    PYRT_ENTRY_OPAQUE = 2,   /* `PATH/.wh..wh..opq` for the dir at path */
};

struct pyrt_layer_entry {
    const char *path; /* relative to the tree: "etc/passwd" (no "..", no leading "/") */
    int kind;
};

/* Write exactly the listed entries of the tree at rootfd, in the given order (the
 * caller sorts: parents before children), for the `copy` storage driver's commit:
 * the changes found by comparing a rootfs with its image. Paths are resolved
 * beneath rootfd without following any symlink. PYRT_LAYER_RAW is implied.
 * Whiteout and opaque entries get mode 0600 / the dir's mode, owner 0:0, mtime 0.
 * Hardlinks between listed entries become tar hardlinks. */
int pyrt_write_entries(int rootfd, const struct pyrt_layer_entry *entries, size_t n, int outfd,
                       unsigned flags, struct pyrt_layer_stats *stats, struct pyrt_error *e);

#endif
