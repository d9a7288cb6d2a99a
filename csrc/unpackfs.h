/* The layer unpacker's filesystem side (unpackfs.c): where each entry the tar
 * parser reads goes, and how it is made there. Called by the parser (tarread.c),
 * by the files' data (unpackdata.c) and, for the start and the end, by the API
 * (unpack.c). */
#ifndef PYRT_UNPACKFS_H
#define PYRT_UNPACKFS_H

#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

#include "err.h"
#include "unpacker.h"

/* Results of pyrt_unpack_place. */
enum { PLACE_DONE, PLACE_READY };

/* Start with the directory destfd (st: its stat); -1 with e filled. */
int pyrt_unpack_fs_open(struct pyrt_unpacker *u, int destfd, const struct stat *st,
                        struct pyrt_error *e);
void pyrt_unpack_fs_free(struct pyrt_unpacker *u);
/* Clean a name lexically into out: drop the leading "/", empty and "."
 * components, collapse "a/..". Returns the length, -1 if ".." climbs above the
 * root, -2 if memory runs out (u->err filled). */
long pyrt_unpack_clean_name(struct pyrt_unpacker *u, const char *raw, size_t rawlen,
                            struct sbuf *out);
/* Where the entry u->e (of kind type, once normalized) goes: its name cleaned
 * (rejected if it climbs out), the layer root's own metadata applied, whiteouts
 * made and aufs metadata skipped (PLACE_DONE: nothing more to create), or its
 * parent resolved inside the root, missing directories created (PLACE_READY:
 * create it with one of the calls below). -1 on error. */
int pyrt_unpack_place(struct pyrt_unpacker *u, char type);
int pyrt_unpack_dir(struct pyrt_unpacker *u, mode_t mode);
int pyrt_unpack_symlink(struct pyrt_unpacker *u, const char *target);
int pyrt_unpack_hardlink(struct pyrt_unpacker *u);
int pyrt_unpack_node(struct pyrt_unpacker *u, mode_t kind, mode_t mode, dev_t dev);
/* A regular file, opened for its data (u->file_size, u->sparse, u->segs set). */
int pyrt_unpack_open_file(struct pyrt_unpacker *u);
/* After an error: the open file (if any) closed as is. */
void pyrt_unpack_abandon_file(struct pyrt_unpacker *u);
/* The end: the directories' deferred modes and times. -1 with u->err filled. */
int pyrt_unpack_finish_dirs(struct pyrt_unpacker *u);
/* The entry's xattrs set on fd or, when fd < 0, on name below pfd (not followed). */
int pyrt_unpack_xattrs(struct pyrt_unpacker *u, int fd, int pfd, const char *name);
/* The entry's atime and mtime. */
void pyrt_unpack_times(struct pyrt_unpacker *u, struct timespec ts[2]);
/* Whether to chown what the entry made (fresh) or found. */
int pyrt_unpack_want_chown(struct pyrt_unpacker *u, int fresh);

#endif
