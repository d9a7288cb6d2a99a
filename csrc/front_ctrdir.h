/* A container's directory for the native `pyrt run IMAGE` (csrc/front_container.h),
 * each function the C twin of pyrt/containers/create.py's (its directory: upper,
 * work, hostname, hosts, resolv.conf, the init layer), pyrt/launch/userdb.py's
 * home_of (the image's /etc/passwd read inside its layers, as the union shows it),
 * pyrt/containers/lifecycle.py's start mark and pyrt/store/layers.py's rmtree. */
#ifndef PYRT_FRONT_CTRDIR_H
#define PYRT_FRONT_CTRDIR_H

#include <stddef.h>

/* home_of(0, layers) (top-most first): malloc'd, or NULL when this code does not
 * read the file as Python would (text outside printable ASCII, an error). */
char *pyrt_ctrdir_home(char *const *layers, size_t n);

/* A host file as Python's open().read() gives it (printable ASCII, tabs and
 * newlines): 1 with *text malloc'd, 0 when it cannot be opened (Python: none), -1
 * when this code would not read it as Python does. */
int pyrt_ctrdir_host_file(const char *path, char **text);

/* The container's directory cdir with upper, work, hostname, hosts (hosts_text),
 * resolv.conf (resolv_text) and its init layer over `layers` (top-most first) for
 * `workdir`; 0, or -1 with errno (cdir then removed). */
int pyrt_ctrdir_make(const char *cdir, const char *hostname, const char *hosts_text, const char *resolv_text,
                     const char *workdir, char *const *layers, size_t n);

/* take_start_mark(cdir, wait=30): the locked fd; -1 with errno (ETIMEDOUT: held by
 * another process all that time; ENOENT: the directory is gone). */
int pyrt_ctrdir_take_mark(const char *cdir);
void pyrt_ctrdir_end_mark(const char *cdir, int fd);

/* rmtree(path): the tree removed, never following a symlink; errors ignored. */
void pyrt_ctrdir_rmtree(const char *path);

#endif
