/* The end of a container's run, as the monitor records it (monitor_internal.h):
 * its exit record (status, rusage, whether the OOM killer struck: the cgroup's
 * "oom_kill" count rose), written atomically for later `pyrt` processes. */
#include "monitor_internal.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fdio.h"

long long pyrt_monitor_oom_kills(const char *path)
{
    if (!path)
        return -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    char buf[2048];
    ssize_t n = pyrt_read_full(fd, buf, sizeof buf - 1);
    close(fd);
    if (n < 0)
        return -1;
    buf[n] = '\0';
    for (char *p = buf; p && *p;) {
        if (strncmp(p, "oom_kill ", 9) == 0)
            return strtoll(p + 9, NULL, 10);
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    return -1;
}

/* path's content replaced at once (a temp file renamed over it). */
int pyrt_monitor_write_atomically(const char *path, const char *data, size_t n)
{
    char tmp[PATH_MAX];
    int t = snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (t <= 0 || (size_t)t >= sizeof tmp)
        return -1;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0)
        return -1;
    int rc = pyrt_write_all(fd, data, n);
    if (close(fd) < 0)
        rc = -1;
    if (rc == 0 && rename(tmp, path) < 0)
        rc = -1;
    if (rc < 0)
        unlink(tmp);
    return rc;
}

int pyrt_monitor_write_exit_record(const char *path, pid_t cpid, const siginfo_t *info, const struct rusage *ru,
                                          const struct timespec *finished, int oom)
{
    int code = 0, sig = 0, core = 0;
    switch (info->si_code) {
    case CLD_EXITED:
        code = info->si_status & 0xff;
        break;
    case CLD_DUMPED:
        core = 1;
        /* fall through */
    default:
        sig = info->si_status & 0x7f;
        code = 128 + sig;
        break;
    }
    char json[512];
    int n = snprintf(json, sizeof json,
                     "{\"Pid\": %d, \"ExitCode\": %d, \"Signal\": %d, \"CoreDumped\": %s, "
                     "\"OOMKilled\": %s, \"FinishedAt\": %lld.%09ld, \"UserTime\": %ld.%06ld, "
                     "\"SystemTime\": %ld.%06ld, \"MaxRSS\": %ld}\n",
                     (int)cpid, code, sig, core ? "true" : "false", oom ? "true" : "false",
                     (long long)finished->tv_sec, (long)finished->tv_nsec, (long)ru->ru_utime.tv_sec,
                     (long)ru->ru_utime.tv_usec, (long)ru->ru_stime.tv_sec, (long)ru->ru_stime.tv_usec,
                     (long)ru->ru_maxrss);
    if (n <= 0 || (size_t)n >= sizeof json)
        return -1;
    return pyrt_monitor_write_atomically(path, json, (size_t)n);
}
