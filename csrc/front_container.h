/* The native `pyrt run IMAGE` (csrc/bin/pyrt.c): a container made, started,
 * recorded and ended as pyrt/cli/run.py run_image does it with
 * pyrt/containers/create.py create() and model.py start_process/finished/remove,
 * for the common case (see the rule in pyrt.c). pyrt_ctr_prepare does nothing but
 * read: -1 from it means "Python's" (handed over). The steps after it change the
 * store and report their failures as Python does (a line on stderr, the status
 * to exit with). */
#ifndef PYRT_FRONT_CONTAINER_H
#define PYRT_FRONT_CONTAINER_H

#include <limits.h>
#include <stddef.h>
#include <sys/types.h>

#include "front_store.h"
#include "sbuf.h"
#include "spawn.h"

struct pyrt_ctr_args {
    const char *root;              /* --root, or NULL */
    const char *image, *name, *network;
    const char *workdir;           /* -w, or NULL */
    char **env;                    /* -e words */
    size_t nenv;
    char **cap_add, **cap_drop;
    size_t ncap_add, ncap_drop;
    char **command;
    int ncommand, rm;
    const char *python;            /* the interpreter the clean-up command runs */
};

struct pyrt_ctr {
    char root[PATH_MAX], cdir[PATH_MAX + 80], image_id[80], id[65], hostname[13], name[128];
    const struct pyrt_ctr_args *a;
    struct pyrt_store st;
    char **layers;                 /* snapshot dirs, top-most first */
    size_t nlayers;
    char **lower;                  /* the init layer, then layers */
    char **argv, **envp, **labels;
    size_t nargv, nenv, nlabels;
    char *workdir, *hosts, *resolv, *path;
    int workdir_null, user_null;
    const char *stop_signal;
    char upper[PATH_MAX + 96], work[PATH_MAX + 96], etc[3][PATH_MAX + 96];
    struct pyrt_mount mounts[3];
    struct sbuf state;
    double started_at;
    pid_t pid;
    long long start_time;
    int cgroup;
};

/* Everything read and checked, nothing done: 0, or -1 (Python's). */
int pyrt_ctr_prepare(struct pyrt_ctr *c, const struct pyrt_ctr_args *a);
/* The spawn spec's container part (rootfs, argv, env, cwd, hostname, mounts). */
void pyrt_ctr_spec(struct pyrt_ctr *c, struct pyrt_spawn_spec *s);
/* create(): its directory and row; then the reaper (its socket) told the clean-up
 * command. 0, or the exit status (the error printed). */
int pyrt_ctr_create(struct pyrt_ctr *c, int reaper_sock);
/* The cgroup's name below the cgroup2 root: pyrt/<id>. */
const char *pyrt_ctr_cgroup_name(struct pyrt_ctr *c, char *buf, size_t cap);
/* The log file, open for the relay; -1 with errno. */
int pyrt_ctr_log(struct pyrt_ctr *c);
/* start_process's record once it runs (cgroup: whether it has one). */
void pyrt_ctr_started(struct pyrt_ctr *c, pid_t pid, int cgroup);
/* finished(returncode) (negative: the signal) and with --rm the removal; the
 * cgroup dir (or "") is removed first. Returns 0, or the status to exit with
 * when it failed (printed). */
int pyrt_ctr_finished(struct pyrt_ctr *c, int returncode, const char *cgdir);
/* The start failed: with --rm the container goes, else it stays created. */
void pyrt_ctr_not_started(struct pyrt_ctr *c);

#endif
