/* The streaming OCI layer unpacker: a tar parser with a push API. The caller feeds
 * the decompressed bytes of a layer chunk by chunk; entries are created below a
 * destination directory as they arrive. Nothing here knows about Python.
 *
 * Formats: ustar, GNU (long names 'L'/'K', old sparse 'S' with its extension
 * blocks, dumpdir 'D') and PAX ('x': path, linkpath, size, uid, gid, mtime and
 * atime with fractions, SCHILY.xattr.*, the GNU sparse formats 0.0, 0.1 and 1.0;
 * 'g': uid, gid, mtime, atime, parsed once). uname/gname and other records are
 * ignored. Other entry types (and a lone header after an end-of-archive block)
 * reject the layer. Regular files whose name ends with '/' are directories.
 *
 * The stream must end with the end-of-archive block(s): one zero block is
 * accepted, like GNU tar; what follows them is ignored (record padding).
 *
 * Sparse files are written sparse (segments at their offsets, ftruncate to the
 * apparent size); with PYRT_UNPACK_DETECT_HOLES, 4 KiB blocks of zeros of plain
 * files become holes too. A sparse entry may claim any apparent size: only its
 * real data counts against max_file_size and max_bytes.
 *
 * Safety: every path is resolved inside the destination with openat2
 * (RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS); the last component is always created
 * with *at calls that do not follow symlinks; chown/chmod/utimes never follow
 * symlinks. Names are cleaned lexically: a leading "/" is dropped (clamped, like
 * tar), "." and empty components are dropped, "a/.." collapses, and a ".." that
 * would climb above the root rejects the layer. Parents are resolved following
 * symlinks *inside* the root (a symlink to "/" or "../.." leads to the layer's
 * root), and missing parents are created (0755). Hardlink targets are cleaned the
 * same way and must resolve inside the destination without crossing a symlink.
 * A later entry replaces an earlier one of the same name (unlinked first; a
 * directory is kept when the new entry is a directory too, else removed with
 * what it holds). Entries named "." or "/" may only set the root's metadata.
 * Directories' modes and times are applied at the end (pyrt_unpacker_finish).
 * The destination is meant to be a fresh, empty directory (a snapshot being
 * built); on error the caller removes it.
 *
 * OCI whiteouts: ".wh.NAME" becomes an overlayfs whiteout (a 0:0 char device
 * NAME), ".wh..wh..opq" sets trusted.overlay.opaque=y on its directory, other
 * ".wh..wh.*" names (aufs metadata) are skipped; a whiteout for a name this layer
 * itself created leaves that entry (whiteouts hide lower layers only). Xattrs in the security.*,
 * trusted.overlay.* and user.overlay.* namespaces are never taken from a layer.
 */
#ifndef PYRT_UNPACK_H
#define PYRT_UNPACK_H

#include <stddef.h>
#include <stdint.h>

#include "err.h" /* struct pyrt_error */
#include "unpack_types.h" /* limits, flags, stats */

struct pyrt_unpacker;

void pyrt_unpack_limits_init(struct pyrt_unpack_limits *lim);

/* Start unpacking into the directory destfd (which is dup'ed: the caller may close
 * it). lim may be NULL for the defaults. NULL on failure, with e filled. */
struct pyrt_unpacker *pyrt_unpacker_new(int destfd, const struct pyrt_unpack_limits *lim,
                                        struct pyrt_error *e);

/* Consume len bytes of the tar stream. 0 on success; -1 with e filled: e->err is
 * an errno when a system call failed (e->op names it), or 0 when the layer was
 * rejected (e->op says why, pyrt_unpacker_detail() may say more); e->path is the
 * entry's name. After a failure every call fails the same way. */
int pyrt_unpacker_feed(struct pyrt_unpacker *u, const void *buf, size_t len,
                       struct pyrt_error *e);

/* End of the stream: fails if it is truncated (mid-entry or without the
 * end-of-archive blocks); applies the directories' deferred modes and times. */
int pyrt_unpacker_finish(struct pyrt_unpacker *u, struct pyrt_error *e);

void pyrt_unpacker_stats(const struct pyrt_unpacker *u, struct pyrt_unpack_stats *st);

/* A longer explanation of the last rejection ("" if none). */
const char *pyrt_unpacker_detail(const struct pyrt_unpacker *u);

void pyrt_unpacker_free(struct pyrt_unpacker *u);

#endif
