/* The resolved spawn spec as one flat buffer, the one format a spec travels in
 * between processes: to pyrt-zygote (zygote.c), to pyrt-monitor (monitor_wire.c,
 * whose other settings are packed the same way) and a parked child's command
 * (park.c).
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
#include <stdint.h>
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

/* The packing itself, for other flat structs sent the same way: the struct copied
 * in with pyrt_pack_bytes, then each of its pointers replaced by the offset (+ 1,
 * 0 for NULL) of what it points to, copied in after it (8-aligned). Each returns
 * that offset + 1, or 0 (for NULL, or when it did not fit: overflow is then set). */
struct pyrt_packer {
    char *buf;
    size_t cap, len;
    int overflow;
};
uintptr_t pyrt_pack_bytes(struct pyrt_packer *p, const void *src, size_t n);
uintptr_t pyrt_pack_str(struct pyrt_packer *p, const char *s);
uintptr_t pyrt_pack_strv(struct pyrt_packer *p, const char *const *v);

/* And back, in place: the offset in *field turned into a pointer into buf, checked
 * to lie inside it with `need` bytes after it (a string: terminated inside it; a
 * vector: each of its strings too). 0, or -1 when it does not. */
int pyrt_unpack_ptr(void *field, char *buf, size_t len, size_t need);
int pyrt_unpack_str(const char **field, char *buf, size_t len);
int pyrt_unpack_strv(const char *const **field, char *buf, size_t len);

#endif
