/* OCI hooks for pyrt-runtime's native commands (as pyrt/ocirt/hooks.py runs
 * them): each hook of a kind from the record's "hooks" is started with its path,
 * args, env and timeout, the container's state as JSON on its stdin. prestart,
 * createRuntime, poststart and poststop hooks run in the runtime's namespaces
 * (their stdout and stderr captured: a failure's message quotes them);
 * createContainer hooks in the container's namespaces except its mount namespace,
 * startContainer hooks in all of them (their path resolves in the container). */
#ifndef PYRT_RT_HOOKS_H
#define PYRT_RT_HOOKS_H

#include <stddef.h>

#include "rt.h"
#include "rt_state.h"

/* Run c's hooks of `kind` in order. warn_only: a failure is reported through
 * rt_warn and the next hook runs (returns 0); else the first failure returns -1
 * with ctx->err set. */
int rt_run_hooks(struct rt_ctx *ctx, struct rt_container *c, const char *kind, const char *state,
                 size_t state_len, int warn_only);

#endif
