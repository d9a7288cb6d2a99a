/* The spawn core: one fully resolved plain-C spec in, a running container (or a
 * precise error) out. Nothing here knows about Python. */
#ifndef PYRT_SPAWN_H
#define PYRT_SPAWN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>

#include "err.h" /* struct pyrt_error */

/* Kinds of extra mounts. */
enum {
    PYRT_MOUNT_BIND = 1,  /* bind a host file or directory (recursively) */
    PYRT_MOUNT_TMPFS = 2, /* a fresh tmpfs; data holds its options ("size=64m,mode=1777") */
    PYRT_MOUNT_FS = 3,    /* a new filesystem of type fstype (proc, sysfs, devpts, mqueue,
                             cgroup, cgroup2, tmpfs, ...), data its options; read-only is
                             applied once every mount of the spec is made (so that mounts
                             below it can be made first) */
};

/* Mount flags (pyrt's own, translated to mount attributes in C). */
enum {
    PYRT_MNT_RDONLY = 1,
    PYRT_MNT_NOSUID = 2,
    PYRT_MNT_NODEV = 4,
    PYRT_MNT_NOEXEC = 8,
    PYRT_MNT_NOREC = 16, /* bind: only the mount at source, not those below it */
};

struct pyrt_mount {
    int kind;
    unsigned int flags;
    const char *source; /* host path (bind) */
    const char *target; /* absolute path inside the container */
    const char *data;   /* tmpfs options, comma separated, or NULL */
    const char *fstype; /* PYRT_MOUNT_FS: the filesystem type */
    unsigned long propagation; /* MS_SHARED, MS_SLAVE, MS_PRIVATE or MS_UNBINDABLE
                                  (| MS_REC) set once mounted; 0: left as is */
};

struct pyrt_rlimit {
    int resource;
    struct rlimit limit;
};

/* What the spawn core sets up, besides what is listed in the spec. */
enum {
    PYRT_SETUP_PROC = 1,        /* a new /proc */
    PYRT_SETUP_SYS = 2,         /* /sys, read-only */
    PYRT_SETUP_DEV = 4,         /* /dev as a fresh tmpfs with the standard nodes */
    PYRT_SETUP_MASK = 8,        /* masked and read-only paths (lists below) */
    PYRT_SETUP_LOOPBACK = 16,   /* bring up lo (in a new net namespace) */
    PYRT_SETUP_NO_NEW_PRIVS = 32,
    PYRT_SETUP_SETSID = 64,     /* a new session */
    PYRT_SETUP_NO_ASLR = 128,   /* personality(ADDR_NO_RANDOMIZE) */
    PYRT_SETUP_JOIN_MNT = 256,  /* userns_fd is a pidfd: clone from its user and mount namespaces */
    PYRT_SETUP_NODEV = 512,     /* no device cgroup holds it: the root and every mount but /dev are
                                   nodev (a device node from an image or made later cannot be
                                   opened; the caller also takes CAP_MKNOD away) */
};

struct pyrt_oci;

/* overlayfs stacks at most this many lower layers (OVL_MAX_STACK). */
#define PYRT_MAX_LAYERS 500

struct pyrt_spawn_spec {
    const char *const *argv; /* NULL terminated */
    const char *const *envp; /* NULL terminated */
    const char *path;        /* PATH used to look up argv[0] (the container's) */
    const char *cwd;         /* inside the container; NULL for "/" */

    /* Root filesystem: a directory, or an overlay (lowerdirs top-most first). */
    const char *rootfs;
    const char *const *lowerdirs;
    size_t nlower;
    const char *upperdir;
    const char *workdir;
    const char *overlay_options; /* extra overlay options, comma separated, or NULL */
    const char *anchor;          /* an empty host directory the root is attached to,
                                    in the child's private mount namespace */
    int readonly_root;
    const char *upper_tmpfs;     /* non-NULL (with lowerdirs, no upperdir): a volatile
                                    upper, i.e. a fresh tmpfs with these options ("" for
                                    the defaults) mounted at the anchor holds upper/ and
                                    work/ of the overlay (option volatile); it lives and
                                    dies with the container's mount namespace */

    uint64_t clone_flags; /* CLONE_NEW* */
    unsigned int setup;   /* PYRT_SETUP_* */
    const char *hostname;

    const struct pyrt_mount *mounts;
    size_t nmounts;
    const char *const *masked_paths;   /* NULL terminated */
    const char *const *readonly_paths; /* NULL terminated */

    int set_user;
    uid_t uid;
    gid_t gid;
    const gid_t *groups;
    size_t ngroups;
    uint64_t caps; /* bounding set; also effective/permitted for uid 0 */
    int umask;     /* -1: leave as is */

    const struct pyrt_rlimit *rlimits;
    size_t nrlimits;

    /* User namespace maps, written by the parent ("0 100000 65536\n"). */
    const char *uid_map;
    const char *gid_map;
    /* Rootless (userns.h): the setuid helpers that write the maps instead
     * (newuidmap, newgidmap), or NULL to write them directly; setgroups_deny: deny
     * setgroups before a direct gid map (an ordinary user's map of its own gid). */
    const char *uid_map_helper;
    const char *gid_map_helper;
    int setgroups_deny;
    int userns_fd; /* >= 0: the container is cloned into this user namespace (made
                      once by pyrt_userns_create, its maps written then) instead of
                      a new one; per spawn, like cgroup_fd */

    int stdio[3]; /* -1: inherit */
    int console_fd; /* >= 0: a connected unix socket: the container gets a terminal as
                       stdio, whose master is sent over it (console.h) */

    int netns_fd;                /* a network namespace the child joins (setns) instead of
                                    making one, or -1; not with CLONE_NEWNET or a new user
                                    namespace (it would not be allowed to join it) */

    int cgroup_fd;               /* cgroup v2 directory: CLONE_INTO_CGROUP, or -1 */
    int reaper_fd;               /* >= 0: a pyrt-reaper's socket (reaper.h): the child's
                                    pidfd is sent there ('p') before the child may go on,
                                    so it never runs unless the reaper can end it */
    const int *cgroup_procs_fds; /* cgroup v1 cgroup.procs files the parent writes the pid to */
    size_t ncgroup_procs;

    int init;              /* --init: pid 1 is a tiny init that forwards signals to the
                              program and reaps orphans; the program is its child */
    const char *init_path; /* that init's executable (pyrt-init), a host path */

    const void *seccomp;        /* a seccomp filter (struct sock_filter[seccomp_len]) or
                                   NULL: loaded just before exec with no_new_privs, else
                                   before the identity switch (it needs CAP_SYS_ADMIN then) */
    size_t seccomp_len;
    unsigned int seccomp_flags; /* SECCOMP_FILTER_FLAG_* */

    const struct pyrt_oci *oci; /* what only the OCI runtime asks for (oci.h), or NULL */
};

/* Start a container. On success returns 0, *pid and *pidfd set (the caller owns
 * the pidfd). On failure returns -1 with *error filled; no child is left behind. */
int pyrt_spawn(const struct pyrt_spawn_spec *spec, pid_t *pid, int *pidfd,
               struct pyrt_error *error);

/* Start a container that parks before exec (see park.h): it does its whole setup
 * and waits for its command. Returns 0 once it is parked, with out filled (the
 * caller owns pidfd, sock and errfd); on failure -1 with *error filled and no
 * child left behind. */
struct pyrt_parked {
    pid_t pid;
    int pidfd;
    int sock;            /* the parent's end of the park socket: pyrt_unpark */
    int errfd;           /* the error pipe: EOF at exec, or an error record */
    struct rusage usage; /* the child's own usage once parked (its setup) */
};
int pyrt_spawn_parked(const struct pyrt_spawn_spec *spec, struct pyrt_parked *out, struct pyrt_error *error);

/* Wait for the process behind pidfd. timeout_ms < 0 waits forever. Returns 1 when it
 * exited (status as for waitpid, rusage filled), 0 on timeout, -1 on error. */
int pyrt_wait(int pidfd, int timeout_ms, int *status, struct rusage *usage);

#endif
