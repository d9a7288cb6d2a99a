/* The layer unpacker's public types (its API is unpack.h, which includes this):
 * the flags and resource bounds it is given and the statistics it returns. Its
 * parts below the API (the tar parser, the filesystem side) read them too. */
#ifndef PYRT_UNPACK_TYPES_H
#define PYRT_UNPACK_TYPES_H

#include <stdint.h>

/* Flags of struct pyrt_unpack_limits. */
enum {
    PYRT_UNPACK_DETECT_HOLES = 1, /* write aligned 4 KiB runs of zeros in plain
                                     regular files as holes */
    PYRT_UNPACK_NO_CHOWN = 2,     /* keep the unpacking user as owner */
    PYRT_UNPACK_PLAIN = 4,        /* a plain tar, not a layer: ".wh." names are
                                     ordinary files (no whiteouts, no opaque dirs) */
    PYRT_UNPACK_USERXATTR = 8,    /* an ordinary user's store: opaque directories get
                                     user.overlay.opaque (overlay's userxattr) */
    PYRT_UNPACK_SKIP_DEVICES = 16, /* an ordinary user's store: character and block
                                      devices are skipped (devices_skipped), not made;
                                      whiteouts (0:0) are still made */
};

/* Resource bounds; UINT64_MAX means unlimited. pyrt_unpack_limits_init() fills
 * the defaults given next to each field. */
struct pyrt_unpack_limits {
    uint64_t max_bytes;           /* file data written, all files (64 GiB) */
    uint64_t max_entries;         /* entries, extension headers excluded (1,000,000) */
    uint64_t max_file_size;       /* data of one file; for a sparse file its real
                                     data, not its apparent size (16 GiB) */
    uint64_t max_path;            /* bytes in an entry or link name (4096) */
    uint64_t max_xattr_size;      /* bytes in one xattr value (65536) */
    uint64_t max_header_size;     /* one PAX header or GNU long name (1 MiB) */
    uint64_t max_sparse_segments; /* data segments of one sparse file (1 << 20) */
    uint64_t max_meta_memory;     /* memory kept for the directories' metadata,
                                     applied at the end (64 MiB) */
    unsigned int flags;           /* PYRT_UNPACK_* (PYRT_UNPACK_DETECT_HOLES) */
};

struct pyrt_unpack_stats {
    uint64_t entries;    /* entries created or applied (whiteouts included) */
    uint64_t bytes;      /* file data written (holes excluded) */
    uint64_t apparent;   /* sum of the regular files' sizes (holes included) */
    uint64_t files, dirs, symlinks, hardlinks, devices, whiteouts, opaques, skipped;
    uint64_t stream;     /* tar bytes consumed */
    uint64_t devices_skipped; /* with PYRT_UNPACK_SKIP_DEVICES */
};

#endif
