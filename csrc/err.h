/* Filling struct pyrt_error, and the string helpers its messages need:
 * async-signal-safe (no allocation, no stdio), so they can be used in a child
 * between clone and exec. */
#ifndef PYRT_ERR_H
#define PYRT_ERR_H

#include <stddef.h>

/* What failed, where: becomes a Python exception. */
struct pyrt_error {
    int err;         /* errno */
    char op[32];     /* "mount", "exec", "pivot_root", ... */
    char path[480];  /* what it was applied to, may be empty */
};

/* Record errno with what failed and where; returns -1 so callers can
 * `return pyrt_fail(...)`. */
int pyrt_fail(struct pyrt_error *e, const char *op, const char *path);
int pyrt_fail_errno(struct pyrt_error *e, int err, const char *op, const char *path);

/* Copy src into dst (capacity cap), always terminated; returns the length. */
size_t pyrt_strlcpy(char *dst, const char *src, size_t cap);

/* Decimal text of v into buf (at least 24 bytes); returns buf. */
char *pyrt_itoa(long long v, char *buf);

#endif
