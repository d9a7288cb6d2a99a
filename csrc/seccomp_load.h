/* Loading a seccomp filter in a new process, the last step before exec (its
 * program is compiled before, in the caller: seccomp_compile.h, devices.h). */
#ifndef PYRT_SECCOMP_LOAD_H
#define PYRT_SECCOMP_LOAD_H

#include <stddef.h>

#include "err.h" /* struct pyrt_error */

/* Installs a classic-BPF seccomp filter (len instructions; flags SECCOMP_FILTER_FLAG_*).
 * Needs no_new_privs or CAP_SYS_ADMIN. */
int pyrt_load_seccomp(const void *filter, size_t len, unsigned int flags, struct pyrt_error *e);

#endif
