/* The container's filesystem, built in the child (in its own mount namespace):
 * root (directory or overlay), /proc, /sys, /dev, masked paths, extra mounts, then
 * pivot_root. */
#ifndef PYRT_MOUNTS_H
#define PYRT_MOUNTS_H

#include "spawn.h"

int pyrt_setup_rootfs(const struct pyrt_spawn_spec *s, struct pyrt_error *e);

#endif
