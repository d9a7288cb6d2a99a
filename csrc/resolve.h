/* Paths inside a container root, resolved with fds so that no symlink or ".." can
 * lead outside it. */
#ifndef PYRT_RESOLVE_H
#define PYRT_RESOLVE_H

/* Open `path` (absolute or relative, always taken inside the root) with `flags`
 * (O_CLOEXEC is added); symlinks are followed but scoped to rootfd. */
int pyrt_open_in_root(int rootfd, const char *path, int flags);

/* Like pyrt_open_in_root(path, O_PATH), creating the missing components first:
 * directories, and for the last one a directory or (as_file) an empty file. */
int pyrt_ensure_in_root(int rootfd, const char *path, int as_file);

/* pyrt_ensure_in_root for a mount destination: a dangling symlink on the way has
 * its target created (inside the root), as docker does. */
int pyrt_make_mount_target(int rootfd, const char *path, int as_file);

#endif
