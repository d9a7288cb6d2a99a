/* What only the OCI runtime (pyrt-runtime) asks of the spawn core, as one optional
 * block of the spawn spec (spec->oci, NULL for pyrt's own containers):
 *
 * - wait before exec (runc's exec fifo): once everything is set up (root, mounts,
 *   cwd, stdio, identity, capabilities), the child checks that the program can be
 *   executed, sends PYRT_CHILD_WAITING on the error pipe (childmsg.h;
 *   pyrt_spawn then returns success: the child has not exec'd yet) and
 *   blocks reading one byte from wait_fd (the caller's O_RDWR fd of a FIFO that
 *   `start` writes to). A byte: exec (an exec failure now goes to the child's
 *   stderr, exit status 127); EOF or an error: exit without exec;
 * - namespaces joined by path (setns, user first) and made after them (unshare);
 * - devices (mknod, or a bind of the host's node where mknod is not allowed),
 *   the standard /dev symlinks, sysctls;
 * - capability sets (effective, permitted, inheritable, ambient) besides the
 *   bounding set of the spec;
 * Everything here runs in the child between clone and exec: raw syscalls only, no
 * allocation, no locks. */
#ifndef PYRT_OCI_H
#define PYRT_OCI_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "spawn.h"

struct pyrt_ns_join {
    int fd;   /* an open namespace file (/proc/PID/ns/net, a bind mount of one, ...) */
    int type; /* its CLONE_NEW* flag */
};

struct pyrt_device {
    const char *path; /* absolute, inside the container */
    unsigned int mode; /* S_IFCHR, S_IFBLK or S_IFIFO | permissions */
    unsigned int major, minor;
    uid_t uid;
    gid_t gid;
};

struct pyrt_oci {
    int wait_fd;    /* >= 0: wait for a byte on it before exec (see above) */

    const struct pyrt_ns_join *joins; /* joined first, in this order (user first) */
    size_t njoins;
    uint64_t unshare_flags; /* CLONE_NEW* made after the joins (no CLONE_NEWPID) */
    int new_keyring;        /* join a new anonymous session keyring (as runc, unless
                               --no-new-keyring): the caller's keys stay out of reach */
    const char *chroot_path; /* without a mount namespace of the container's own (none,
                                or one joined by path): chroot here once the namespaces
                                are joined (the path resolves in the joined one); no
                                mount is made, no namespace pyrt did not create changed */

    const struct pyrt_device *devices;
    size_t ndevices;
    int dev_links;              /* /dev/fd, stdin, stdout, stderr, ptmx symlinks (when missing) */
    const char *const *sysctls; /* "net/ipv4/ip_forward", "1", ... (NULL terminated pairs),
                                   written under the container's /proc/sys */
    unsigned long root_propagation; /* MS_* (| MS_REC) for the container's "/" after
                                       pivot_root; 0: private (pyrt's default) */

    int cap_sets; /* nonzero: apply the four sets below after the identity switch
                     (PR_SET_KEEPCAPS keeps the permitted set of a non-root user) */
    uint64_t cap_effective, cap_permitted, cap_inheritable, cap_ambient;
};

/* Child side, called by spawn.c (each only when spec->oci is set). */

/* First thing after the parent's go: remember the error pipe, join and unshare,
 * chroot (chroot_path). */
int pyrt_oci_begin(const struct pyrt_oci *o, int errfd, struct pyrt_error *e);

/* Inside the root (mounts.c, before masking): devices, /dev links, sysctls. */
int pyrt_oci_rootfs(const struct pyrt_oci *o, int rootfd, struct pyrt_error *e);

/* Just before and just after the identity switch (keepcaps; the capability sets). */
int pyrt_oci_before_identity(const struct pyrt_oci *o, struct pyrt_error *e);
int pyrt_oci_after_identity(const struct pyrt_oci *o, struct pyrt_error *e);

/* The last step before exec (and the seccomp filter): check the program, report
 * "waiting", wait. */
int pyrt_oci_wait(const struct pyrt_oci *o, const char *program, const char *path, struct pyrt_error *e);

/* After a failed exec: once the caller was told "waiting", nobody reads the error
 * pipe any more; the error goes to stderr instead. */
void pyrt_oci_late_error(const struct pyrt_error *e);

#endif
