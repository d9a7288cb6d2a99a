/* Typed reads of a config.json tree for pyrt-runtime's native create
 * (csrc/rt_config.c): the native side of pyrt/oci/fields.py. Each check returns
 * 0, -1 with ctx->err set to the same line as Python's ConfigError
 * ("config.json: WHERE: expected an integer, got str"), or RT_DEFER when the
 * value is one whose message the native side does not reproduce exactly (a
 * Python repr of something other than a plain printable string, an integer or
 * None): the config then goes to the Python implementation, which says it.
 *
 * And a small arena: everything a plan points to is freed at once. */
#ifndef PYRT_RT_CONFIG_CHECK_H
#define PYRT_RT_CONFIG_CHECK_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <yajl/yajl_tree.h>

#include "rt.h"

/* "Let the Python implementation do it" (see rt_config.h). */
#define RT_DEFER (-2)

/* Record why a config is handed over (for --debug); returns RT_DEFER. */
int rt_defer(const char *why);
/* The last reason recorded ("" when none). */
const char *rt_defer_reason(void);

#define RT_TRY(x)                                                                                                  \
    do {                                                                                                           \
        int rt_try_rc_ = (x);                                                                                      \
        if (rt_try_rc_ < 0)                                                                                        \
            return rt_try_rc_;                                                                                     \
    } while (0)

struct rt_arena {
    void **p;
    size_t n, cap;
};

/* Zeroed memory owned by the arena; NULL when out of memory. */
void *rt_arena_alloc(struct rt_arena *a, size_t size);
char *rt_arena_strdup(struct rt_arena *a, const char *s);
char *rt_arena_printf(struct rt_arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void rt_arena_free(struct rt_arena *a);

/* "config.json: WHERE: MSG"; returns -1. */
int rt_cfg_err(struct rt_ctx *ctx, const char *where, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Python's name of the value's type (absent: NoneType). */
const char *rt_cfg_tname(yajl_val v);

/* Python's repr of the value into buf: 0, or RT_DEFER when it is not one of
 * None, True, False, an integer, or a string of printable ASCII. */
int rt_cfg_repr(yajl_val v, char *buf, size_t len);

/* Python's truth of the value (absent: false). */
int rt_cfg_truthy(yajl_val v);

/* `cfg.get(key) or {}`: the member when truthy, else NULL. */
yajl_val rt_cfg_get_or(yajl_val obj, const char *key);

/* The member, or NULL; obj must be an object (or NULL). */
yajl_val rt_cfg_get(yajl_val obj, const char *key);

int rt_cfg_object(struct rt_ctx *ctx, yajl_val v, const char *where);
int rt_cfg_string(struct rt_ctx *ctx, yajl_val v, const char *where);
/* A list of strings (NULL, as `x or []`, is the empty list). */
int rt_cfg_str_list(struct rt_ctx *ctx, yajl_val v, const char *where);
/* An integer in [lo, hi] (absent counts as None: a type error). */
int rt_cfg_int(struct rt_ctx *ctx, yajl_val v, const char *where, long long lo, long long hi, long long *out);

/* An integer in [0, 2**64 - 1] (beyond 63 bits too, as rlimits give "unlimited"). */
int rt_cfg_u64(struct rt_ctx *ctx, yajl_val v, const char *where, uint64_t *out);

/* Whether the (absent-safe) value is a list; `x or []` of a truthy non-list is
 * iterated by Python in ways not reproduced here: the caller defers. */
int rt_cfg_is_list(yajl_val v);

/* The number of items of a list (0 for NULL). */
size_t rt_cfg_len(yajl_val v);

/* os.path.normpath of a path, into the arena (NULL: out of memory, or more
 * parts than it takes). */
char *rt_normpath(struct rt_arena *a, const char *path);
/* os.path.join(dir, name), into the arena. */
char *rt_path_join(struct rt_arena *a, const char *dir, const char *name);

/* A spawn core error as Python's SyscallError prints it: `op "path": why`. */
struct pyrt_error;
void rt_format_error(const struct pyrt_error *e, char *buf, size_t len);

#endif

