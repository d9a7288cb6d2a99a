/* Restarting a container (--restart): whether an ended run is started again,
 * the pause before it, and the record of the current run (monitor_internal.h). */
#include "monitor_internal.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fdio.h"
#include "procstat.h"

/* With a restart policy, where later `pyrt` processes find the current run. */
void pyrt_monitor_write_run_record(const char *path, pid_t cpid, int restarts)
{
    char json[160];
    int n = snprintf(json, sizeof json, "{\"Pid\": %d, \"StartTime\": %llu, \"RestartCount\": %d}\n",
                     (int)cpid, pyrt_proc_start_time(cpid, NULL), restarts);
    if (path && n > 0 && (size_t)n < sizeof json)
        pyrt_monitor_write_atomically(path, json, (size_t)n);
}

static int exit_code(const siginfo_t *info)
{
    return info->si_code == CLD_EXITED ? (info->si_status & 0xff) : 128 + (info->si_status & 0x7f);
}

/* Whether an ended run is started again: its policy, and no stop by hand. */
int pyrt_monitor_restart_wanted(const struct pyrt_monitor_cfg *c, const siginfo_t *info, int restarts)
{
    if (c->restart == PYRT_RESTART_NO || (c->stop_path && access(c->stop_path, F_OK) == 0))
        return 0;
    if (c->restart == PYRT_RESTART_ON_FAILURE)
        return exit_code(info) != 0 && (c->restart_max <= 0 || restarts < c->restart_max);
    return 1;
}

/* docker's back-off between restarts: 100 ms, doubling, at most 1.6 s; cut short
 * (returning 0) when the container is stopped by hand meanwhile. */
int pyrt_monitor_back_off(const struct pyrt_monitor_cfg *c, int restarts)
{
    for (int slice = 0; slice < (2 << (restarts < 4 ? restarts : 4)); slice++) {
        if (c->stop_path && access(c->stop_path, F_OK) == 0)
            return 0;
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return 1;
}
