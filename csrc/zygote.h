/* The zygote: a small single-threaded process (pyrt-zygote) that parks containers
 * for a pool: cloning from it copies a few page tables where cloning from a big
 * Python process copies all of its own (and makes its pages copy-on-write). Its
 * children are cloned with CLONE_PARENT: the pool's process is their parent, reaps
 * them and gets their rusage. It exits when its control socket closes.
 *
 * It is a client of spawn.h's public API (pyrt_spawn_parked) only; the spec goes
 * to it packed by pyrt_spec_pack (specpack.h). */
#ifndef PYRT_ZYGOTE_H
#define PYRT_ZYGOTE_H

#include <stddef.h>

#include "spawn.h"

/* The zygote's loop on its control socket (returns its exit status). */
int pyrt_zygote_serve(int ctl);

/* Client side: give the zygote its spec (once, or to change it). */
int pyrt_zygote_send_spec(int ctl, const struct pyrt_spawn_spec *s, struct pyrt_error *e);

/* Client side: have one container parked, in the given cgroups (fds as for the
 * spec's cgroup_fd / cgroup_procs_fds; they stay the caller's). 0 with out
 * filled (the caller owns its fds and is the child's parent) and *mntns an fd
 * of the container's mount namespace (or -1): holding it until the run is over
 * keeps the unmounting out of the container's exit. -1 with e on failure. */
int pyrt_zygote_spawn(int ctl, int cgroup_fd, const int *procs_fds, size_t nprocs, struct pyrt_parked *out,
                      int *mntns, struct pyrt_error *e);

#endif
