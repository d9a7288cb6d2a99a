/* The run of the native `pyrt` command (csrc/bin/pyrt.c): a spawn spec started
 * with a pyrt-reaper and a device cgroup, relayed by csrc/relay.c as
 * pyrt/cli/run.py relay_foreground does, with the same exit status; for an image's
 * container (csrc/front_container.h) also made, recorded and ended as run_image
 * does. */
#ifndef PYRT_FRONT_RUN_H
#define PYRT_FRONT_RUN_H

#include "front_container.h"
#include "spawn.h"

#define PYRT_FRONT_HAND_OVER (-1000)

struct pyrt_front_run {
    struct pyrt_spawn_spec *spec;
    const char *pkg;           /* pyrt's package (its pyrt-reaper) */
    int sig_proxy, interactive;
    const int *valid;          /* which of fds 0, 1, 2 were open at start */
    struct pyrt_ctr *ctr;      /* an image's container, or NULL (--rootfs) */
};

/* The exit status, or PYRT_FRONT_HAND_OVER when the command line is Python's
 * (nothing done, the signal dispositions as they were). */
int pyrt_front_run(const struct pyrt_front_run *in);

#endif
