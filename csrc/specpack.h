/* The resolved spawn spec as one flat buffer, for the helper programs that get
 * it from a Python process: pyrt-zygote (zygote.c) and pyrt-monitor (monitor.c).
 *
 * pyrt_spec_pack copies the spec and everything it points to into buf, every
 * pointer turned into an offset (+ 1, 0 for NULL) from the buffer's start;
 * pyrt_spec_unpack turns them back into pointers into the buffer, in place.
 * Written and read on the same machine by the same build (host byte order and
 * struct layout). Static asserts in specpack.c stop the build when a field is
 * added to struct pyrt_spawn_spec or struct pyrt_mount until both learn it. */
#ifndef PYRT_SPECPACK_H
#define PYRT_SPECPACK_H

#include <stddef.h>
#include <sys/types.h>

#include "spawn.h"

/* Serialize a spec (pointers turned into offsets) into buf; its length, or -1
 * with e filled (E2BIG: buf too small). Per-spawn fields (cgroup fds) are left
 * out; OCI options are refused (EINVAL). */
ssize_t pyrt_spec_pack(const struct pyrt_spawn_spec *s, char *buf, size_t cap, struct pyrt_error *e);

/* The spec in buf (8-aligned), its pointers fixed in place; 0, or -1 when
 * malformed. *out points into buf, which must outlive it. cgroup fds are -1 /
 * none and oci NULL; stdio is as it was packed. */
int pyrt_spec_unpack(char *buf, size_t len, struct pyrt_spawn_spec **out);

#endif
