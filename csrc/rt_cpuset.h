/* limits.py's parse_cpuset and format_cpuset (pyrt/cgroups/limits.py) on a value of
 * a config: a cpuset as text ("0-3,5", spaces ignored), an integer, or a list of
 * items; the same errors. */
#ifndef PYRT_RT_CPUSET_H
#define PYRT_RT_CPUSET_H

#include <yajl/yajl_tree.h>

#include "sbuf.h"

/* The cpuset as the kernel writes it ("0-3,5"), malloc'd into *out; -1 with the
 * InvalidArgument's message ("invalid value '0-x' for cpuset cpus: ...", `what`
 * naming it) in *why, or with why empty and errno ENOMEM. */
int rt_cpuset_format(yajl_val v, const char *what, char **out, struct sbuf *why);

#endif
