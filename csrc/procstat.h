/* A process's start time from /proc/PID/stat: with its pid, what tells one
 * process from a later one that reuses the pid (pyrt's Python reads it too). */
#ifndef PYRT_PROCSTAT_H
#define PYRT_PROCSTAT_H

#include <sys/types.h>

/* Field 22 (starttime, clock ticks after boot); 0 when the process is gone or
 * its stat cannot be read. *state (when not NULL) gets field 3 ('R', 'S', 'Z',
 * ...), or 0. */
unsigned long long pyrt_proc_start_time(pid_t pid, char *state);

#endif
