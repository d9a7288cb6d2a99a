/* The documents pyrt-runtime prints without a container: `features` (the runtime
 * spec's features document) and `spec` (runc's default config.json), natively.
 * The lists here are those of pyrt/ocirt (operations.features,
 * defaults.default_config, mounts' options, pyrt/launch/seccomp's names);
 * tests/test_oci_native.py holds the two sides equal. */
#ifndef PYRT_RT_DEFAULTS_H
#define PYRT_RT_DEFAULTS_H

#include <yajl/yajl_gen.h>

#define RT_SPEC_VERSION "1.1.0"

/* version: pyrt's; seccomp: whether profiles can be compiled. */
void rt_gen_features(yajl_gen g, const char *version, int seccomp);

void rt_gen_default_config(yajl_gen g, int rootless);

#endif
