/* Tree copy for the `copy` storage driver, volume population and rootfs
 * materialization: reflink (FICLONE) where the filesystem can, else
 * copy_file_range, sparse-aware; owners, modes (setuid kept), xattrs, times,
 * hardlinks, symlinks, devices and fifos kept. Every path in the destination is
 * reached with fds and no-follow lookups: nothing outside dst is ever written. */
#ifndef PYRT_COPY_H
#define PYRT_COPY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "err.h" /* struct pyrt_error */

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

#endif
