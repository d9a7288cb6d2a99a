/* What the native `pyrt` command (csrc/bin/pyrt.c) needs to do `pyrt run --rootfs`
 * as pyrt's Python does it, each piece the C twin of one Python function, giving
 * the same result or saying that it cannot (the command then hands the whole
 * command line to Python):
 *   pyrt_front_abspath         os.path.abspath (lexical, symlinks are not resolved)
 *   pyrt_front_makedirs        os.makedirs(exist_ok=True)
 *   pyrt_front_caps            pyrt.launch.caps.resolve
 *   pyrt_front_seccomp_cached  the trusted cache of the compiled default seccomp
 *                              profile, read as pyrt.launch.seccomp._compile_cached reads it
 *   pyrt_front_cgroup_*        the device cgroup pyrt.launch.process gives a container
 *                              started without one (_default_device_cgroup), on a
 *                              host with cgroup2 (v2 or hybrid) */
#ifndef PYRT_FRONT_H
#define PYRT_FRONT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* os.path.abspath(path) into out; 0, or -1 (getcwd failed, too long). */
int pyrt_front_abspath(const char *path, char *out, size_t cap);

/* os.makedirs(path, leaf, exist_ok=True): parents with 0777 (less the umask); 0, or
 * -1 when it cannot be made or is not a directory. path is changed and restored. */
int pyrt_front_makedirs(char *path, mode_t leaf);

/* pyrt.launch.caps.resolve(add, drop, privileged=False) into *mask; 0, or -1 when a
 * name is not one resolve knows (it would raise). */
int pyrt_front_caps(char *const *add, size_t nadd, char *const *drop, size_t ndrop, uint64_t *mask);

/* The cached default seccomp program at dir/name, when dir and the file are the
 * caller's (euid) and writable by nobody else, and it holds a flags word and a
 * program of whole instructions: 1 with *prog (malloc'd), *len (bytes) and *flags;
 * 0 when there is none to trust (Python compiles it then). */
int pyrt_front_seccomp_cached(const char *dir, const char *name, void **prog, size_t *len, unsigned int *flags);

struct pyrt_front_cgroup {
    char dir[512]; /* its cgroup2 directory; "" when there is none */
    int fd;        /* that directory, open for CLONE_INTO_CGROUP; -1 */
};

/* Make pyrt/run-<pid> with docker's device allow-list as Cgroup.create does on a
 * host with cgroup2: 1 made (cg filled), 0 when the host mounts no cgroup at all
 * (Python makes none either), -1 when this host or this case is not one this
 * code does exactly as Python (v1 only, a leftover in use, a failure: nothing is
 * left behind). */
int pyrt_front_cgroup_make(struct pyrt_front_cgroup *cg, pid_t pid);
/* The same, named pyrt/<name> (a container's: Cgroup.create(id)). */
int pyrt_front_cgroup_make_named(struct pyrt_front_cgroup *cg, const char *name);
/* Whether the host's cgroups are those pyrt_front_cgroup_make does as Python, and
 * pyrt's cgroup manager is cgroupfs there (cgroup_systemd.manager): 1 (cgroup2), 0
 * (no cgroup at all), -1 (not this code's case). */
int pyrt_front_cgroup_usable(void);
/* Close its fd (after the spawn). */
void pyrt_front_cgroup_close(struct pyrt_front_cgroup *cg);
/* rmdir it when empty, as pyrt does at exit; errors are ignored, as there. */
void pyrt_front_cgroup_remove(struct pyrt_front_cgroup *cg);

#endif
