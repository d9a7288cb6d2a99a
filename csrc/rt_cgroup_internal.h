/* What rt_cgroup.c (finding, killing, removing) and rt_cgroup_make.c (making)
 * share; not for the commands. */
#ifndef PYRT_RT_CGROUP_INTERNAL_H
#define PYRT_RT_CGROUP_INTERNAL_H

/* The whole file (NUL terminated, malloc'd), or NULL with errno. */
char *rt_cg_read_text(const char *path);

#endif
