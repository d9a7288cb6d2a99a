/* Thin wrappers of the Linux system calls that glibc does not wrap (or wraps only
 * in recent versions). Each returns what the kernel returns: -1 with errno set on
 * failure. Shared by the spawn core and the cffi module pyrt._sys. */
#ifndef PYRT_SYSCALLS_H
#define PYRT_SYSCALLS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct pyrt_clone_args {
    uint64_t flags;
    uint64_t pidfd;
    uint64_t child_tid;
    uint64_t parent_tid;
    uint64_t exit_signal;
    uint64_t stack;
    uint64_t stack_size;
    uint64_t tls;
    uint64_t set_tid;
    uint64_t set_tid_size;
    uint64_t cgroup;
};

struct pyrt_open_how {
    uint64_t flags;
    uint64_t mode;
    uint64_t resolve;
};

struct pyrt_mount_attr {
    uint64_t attr_set;
    uint64_t attr_clr;
    uint64_t propagation;
    uint64_t userns_fd;
};

long pyrt_clone3(struct pyrt_clone_args *args, size_t size);
/* A plain fork (SIGCHLD, no glibc atfork handlers): clone3, or clone where clone3 is
 * not available (ENOSYS: an old kernel, or a seccomp filter that hides it). */
long pyrt_fork(void);
int pyrt_pivot_root(const char *new_root, const char *put_old);
int pyrt_openat2(int dirfd, const char *path, struct pyrt_open_how *how, size_t size);
int pyrt_pidfd_open(pid_t pid, unsigned int flags);
int pyrt_pidfd_send_signal(int pidfd, int sig, void *info, unsigned int flags);
int pyrt_pidfd_getfd(int pidfd, int targetfd, unsigned int flags);
int pyrt_fsopen(const char *fsname, unsigned int flags);
int pyrt_fsconfig(int fd, unsigned int cmd, const char *key, const void *value, int aux);
int pyrt_fsmount(int fd, unsigned int flags, unsigned int attr_flags);
int pyrt_fspick(int dirfd, const char *path, unsigned int flags);
int pyrt_move_mount(int from_dirfd, const char *from_path, int to_dirfd, const char *to_path,
                    unsigned int flags);
int pyrt_open_tree(int dirfd, const char *path, unsigned int flags);
int pyrt_mount_setattr(int dirfd, const char *path, unsigned int flags,
                       struct pyrt_mount_attr *attr, size_t size);
int pyrt_close_range(unsigned int first, unsigned int last, unsigned int flags);
int pyrt_capget(uint32_t *effective, uint32_t *permitted, uint32_t *inheritable);
int pyrt_capset(const uint32_t *effective, const uint32_t *permitted, const uint32_t *inheritable);

/* Constants the libc headers of older systems may lack. */
#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#ifndef CLONE_NEWCGROUP
#define CLONE_NEWCGROUP 0x02000000
#endif
#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif
#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif
#ifndef CLONE_CLEAR_SIGHAND
#define CLONE_CLEAR_SIGHAND 0x100000000ULL
#endif
#ifndef RESOLVE_NO_XDEV
#define RESOLVE_NO_XDEV 0x01
#define RESOLVE_NO_MAGICLINKS 0x02
#define RESOLVE_NO_SYMLINKS 0x04
#define RESOLVE_BENEATH 0x08
#define RESOLVE_IN_ROOT 0x10
#define RESOLVE_CACHED 0x20
#endif
#ifndef FSOPEN_CLOEXEC
#define FSOPEN_CLOEXEC 0x00000001
#endif
#ifndef FSPICK_CLOEXEC
#define FSPICK_CLOEXEC 0x00000001
#define FSPICK_SYMLINK_NOFOLLOW 0x00000002
#define FSPICK_NO_AUTOMOUNT 0x00000004
#define FSPICK_EMPTY_PATH 0x00000008
#endif
#ifndef FSCONFIG_SET_FLAG
#define FSCONFIG_SET_FLAG 0
#define FSCONFIG_SET_STRING 1
#define FSCONFIG_SET_BINARY 2
#define FSCONFIG_SET_PATH 3
#define FSCONFIG_SET_PATH_EMPTY 4
#define FSCONFIG_SET_FD 5
#define FSCONFIG_CMD_CREATE 6
#define FSCONFIG_CMD_RECONFIGURE 7
#endif
#ifndef FSMOUNT_CLOEXEC
#define FSMOUNT_CLOEXEC 0x00000001
#endif
#ifndef MOUNT_ATTR_RDONLY
#define MOUNT_ATTR_RDONLY 0x00000001
#define MOUNT_ATTR_NOSUID 0x00000002
#define MOUNT_ATTR_NODEV 0x00000004
#define MOUNT_ATTR_NOEXEC 0x00000008
#define MOUNT_ATTR__ATIME 0x00000070
#define MOUNT_ATTR_RELATIME 0x00000000
#define MOUNT_ATTR_NOATIME 0x00000010
#define MOUNT_ATTR_STRICTATIME 0x00000020
#define MOUNT_ATTR_NODIRATIME 0x00000080
#endif
#ifndef MOUNT_ATTR_IDMAP
#define MOUNT_ATTR_IDMAP 0x00100000
#endif
#ifndef MOVE_MOUNT_F_SYMLINKS
#define MOVE_MOUNT_F_SYMLINKS 0x00000001
#define MOVE_MOUNT_F_AUTOMOUNTS 0x00000002
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#define MOVE_MOUNT_T_SYMLINKS 0x00000010
#define MOVE_MOUNT_T_AUTOMOUNTS 0x00000020
#define MOVE_MOUNT_T_EMPTY_PATH 0x00000040
#endif
#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef OPEN_TREE_CLOEXEC
#define OPEN_TREE_CLOEXEC 02000000
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif
#ifndef CLOSE_RANGE_UNSHARE
#define CLOSE_RANGE_UNSHARE (1U << 1)
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif

#endif
