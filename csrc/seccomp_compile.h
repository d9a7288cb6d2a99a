/* (Named so as not to hide libseccomp's own <seccomp.h>.)
 * OCI seccomp profiles compiled to a classic BPF program with libseccomp, in the
 * caller (it allocates): the spawn child only loads the result (seccomp_load.h). pyrt
 * builds without libseccomp too; then pyrt_seccomp_compile fails with ENOSYS. */
#ifndef PYRT_SECCOMP_COMPILE_H
#define PYRT_SECCOMP_COMPILE_H

#include <stddef.h>
#include <stdint.h>

#include "err.h" /* struct pyrt_error */

/* Comparison operators, numbered as libseccomp's enum scmp_compare. */
enum {
    PYRT_SCMP_NE = 1,
    PYRT_SCMP_LT = 2,
    PYRT_SCMP_LE = 3,
    PYRT_SCMP_EQ = 4,
    PYRT_SCMP_GE = 5,
    PYRT_SCMP_GT = 6,
    PYRT_SCMP_MASKED_EQ = 7,
};

struct pyrt_seccomp_arg {
    unsigned int index; /* the syscall argument, 0-5 */
    int op;             /* PYRT_SCMP_* */
    uint64_t value, value_two;
};

struct pyrt_seccomp_rule {
    uint32_t action;          /* the kernel's SECCOMP_RET_* value (with its data) */
    const char *const *names; /* NULL terminated; names unknown here are skipped */
    const struct pyrt_seccomp_arg *args;
    size_t nargs; /* several on one index: one rule each (any may match) */
};

struct pyrt_seccomp_profile {
    uint32_t default_action;
    const char *const *archs; /* libseccomp names ("x86_64", "x86", ...), NULL terminated */
    const struct pyrt_seccomp_rule *rules;
    size_t nrules;
};

/* 1 when pyrt was built with libseccomp. */
int pyrt_seccomp_available(void);

/* The program (struct sock_filter[*len], malloc'd: free() it) or -1 with e set. */
int pyrt_seccomp_compile(const struct pyrt_seccomp_profile *p, void **filter, size_t *len,
                         struct pyrt_error *e);

#endif
