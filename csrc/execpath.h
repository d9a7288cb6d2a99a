/* Finding and executing a program along PATH, as execvp does but with a PATH
 * given rather than the caller's environment. Async-signal-safe (no allocation):
 * it runs in a new process between clone and exec. */
#ifndef PYRT_EXECPATH_H
#define PYRT_EXECPATH_H

#include <stddef.h>

#include "err.h" /* struct pyrt_error */

#define PYRT_DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/* The candidates for `file` along PATH (a "dir:dir" string, advanced in place), one
 * per call into buf: 1 while there is one, 0 at the end. */
int pyrt_path_next(const char **p, const char *file, char *buf, size_t cap);

/* execvp, with the given PATH (NULL: PYRT_DEFAULT_PATH) rather than the caller's
 * environment. Returns only on failure, with e filled. */
void pyrt_exec_path(const char *const *argv, const char *const *envp, const char *path,
                    struct pyrt_error *e);

#endif
