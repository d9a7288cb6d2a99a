/* A container's user namespace, the parent's part: its uid and gid maps, written
 * once the child is cloned and before it goes on.
 *
 * As root the maps are written to /proc/PID/{uid,gid}_map directly. An ordinary
 * user may write one line there only, the map of its own id (and must deny
 * setgroups first); every other map goes through the setuid helpers newuidmap and
 * newgidmap (package uidmap), which check it against /etc/subuid and /etc/subgid.
 * Which of the three a spawn uses is in its spec (uid_map_helper, gid_map_helper,
 * setgroups_deny): pyrt.launch.userns decides. */
#ifndef PYRT_USERNS_H
#define PYRT_USERNS_H

#include <sys/types.h>

#include "spawn.h"

/* Write the maps of the spec for the child `pid` (and its setgroups). 0, or -1
 * with e filled: "uid map (newuidmap)" and the helper's own complaint. */
int pyrt_userns_write_maps(const struct pyrt_spawn_spec *s, pid_t pid, struct pyrt_error *e);

/* Whether setgroups(2) is denied in this process's user namespace (an ordinary
 * user's map of its own gid): a container's process then keeps the caller's
 * supplementary groups, which it cannot drop. */
int pyrt_userns_setgroups_denied(void);

/* A user namespace with the spec's maps (uid_map, gid_map and how they are
 * written), made once and shared by the containers a process starts: an fd of
 * it (the caller owns it), or -1 with e filled. Cloning into it costs no map
 * helper per container (see pyrt_userns_clone). */
int pyrt_userns_create(const struct pyrt_spawn_spec *s, struct pyrt_error *e);

/* Join the user namespace fd for good (a single-threaded helper such as
 * pyrt-zygote, for the containers it starts): from then on this process's spawns
 * clone into it directly, their maps already written. 0, or -1 with errno. */
int pyrt_userns_enter(int fd);

/* Whether pyrt_userns_enter was called in this process. */
int pyrt_userns_entered(void);

/* A new network namespace owned by the user namespace userns_fd (an ordinary
 * user's containers join it: pyrt.network.usermode): an fd of it, the caller's,
 * or -1 with e filled ("setns": the user namespace; "unshare"). */
int pyrt_netns_create(int userns_fd, struct pyrt_error *e);

struct pyrt_clone_args;

/* Clone a child inside the user namespace userns_fd (with the namespaces and
 * other flags of ca, which must not hold CLONE_NEWUSER; CLONE_PARENT is added):
 * an intermediate that shares our memory and fd table (and stops us until it
 * exits, as vfork) joins the namespace and clones the child, whose parent we
 * then are. join_mnt: userns_fd is a pidfd whose user and mount namespaces are
 * both joined (the child's new mount namespace is a copy of that process's). The child runs fn(arg), which must not return. Returns the child's
 * pid (its pidfd where ca asks for one), or -1 with errno and *op ("setns",
 * "clone") set. */
pid_t pyrt_userns_clone(int userns_fd, int join_mnt, struct pyrt_clone_args *ca, void (*fn)(void *), void *arg,
                        const char **op);

#endif
