/* The monitor's insides (its API is monitor.h), shared by its parts:
 *
 *  - monitor_start.c    the caller's side: pyrt_monitor_start forks and execs
 *                       pyrt-monitor and waits for its report;
 *  - monitor_wire.c     what goes from the caller to pyrt-monitor through a memfd:
 *                       the spawn spec, its fds and the monitor's settings;
 *  - monitor.c          the pyrt-monitor program: the double fork, the container's
 *                       runs and the loop that watches one;
 *  - monitor_log.c      the container's output as CRI log records, and rotation;
 *  - monitor_attach.c   the attach socket and its clients, the terminal's master;
 *  - monitor_exit.c     a run's end: its exit record and OOM kills;
 *  - monitor_restart.c  the restart policy, its back-off, the current run's record.
 *
 * The program is a plain single-threaded C process: the log and attach parts keep
 * their state in static variables of their own. */
#ifndef PYRT_MONITOR_INTERNAL_H
#define PYRT_MONITOR_INTERNAL_H

#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "monitor.h"

/* What the monitor (or the child that execs it) tells the caller. */
struct pyrt_monitor_report {
    int32_t ok;
    int32_t container_pid;
    int32_t monitor_pid;
    int32_t pad;
    struct pyrt_error e;
};

/* The monitor's settings as pyrt-monitor reads them (fd numbers valid there). */
struct pyrt_monitor_cfg {
    const char *log_path;
    const char *exit_path;
    const char *oom_path;
    long long oom_start;
    const char **exit_argv;
    int stdin_fd;
    int tty;
    const char *attach_path;
    const char *ports;
    long long log_max_size;
    int log_max_files;
    int restart, restart_max;
    const char *run_path, *stop_path;
};

/* Close the fds that are >= 0 and set them to -1. */
static inline void pyrt_monitor_close_fds(int *fds, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (fds[i] >= 0) {
            close(fds[i]);
            fds[i] = -1;
        }
}

/* -- monitor_wire.c */

/* A growing buffer the stream is written to. */
struct pyrt_monitor_wbuf {
    char *p;
    size_t len, cap;
    int failed;
};

/* Append the stream for spec (its cgroup fds replaced by cgroup_fd and procs and
 * its network namespace by netns_fd, numbers valid in the monitor), m and stdin_fd
 * to b. 0, or -1 with e filled. */
int pyrt_monitor_serialize(struct pyrt_monitor_wbuf *b, const struct pyrt_spawn_spec *s,
                           int cgroup_fd, const int *procs, int netns_fd, const struct pyrt_monitor_spec *m,
                           int stdin_fd, struct pyrt_error *e);

/* data: the whole stream, 8-aligned (malloc'd); the spec and cfg point into it.
 * 0, or -1 when it is malformed. */
int pyrt_monitor_deserialize(char *data, size_t len, struct pyrt_spawn_spec **out,
                             struct pyrt_monitor_cfg *c);

/* -- monitor_log.c */

#define PYRT_MONITOR_LINE_BUF 8192 /* longest line written as one record */

/* One of the container's output streams. */
struct pyrt_monitor_stream {
    int fd;
    const char *name; /* "stdout" or "stderr" */
    char id;          /* '1' or '2', for attached clients */
    size_t len;
    char buf[PYRT_MONITOR_LINE_BUF];
};

/* Open the log (O_APPEND, created 0600) and remember its rotation settings.
 * 0, or -1 with errno. */
int pyrt_monitor_log_open(const char *path, long long max_size, int max_files);
void pyrt_monitor_log_close(void);
/* Write the records collected so far. */
void pyrt_monitor_log_flush(void);
/* Records for the complete lines in s's buffer (final: the rest too). */
void pyrt_monitor_lines(struct pyrt_monitor_stream *s, int final);
/* Read what is there (everything, until EAGAIN, when draining): to the log and
 * to the attached clients. At EOF the stream is closed (fd -1). */
void pyrt_monitor_pump(struct pyrt_monitor_stream *s, int drain);

/* -- monitor_attach.c */

#define PYRT_MONITOR_MAX_CLIENTS 8

/* Listen on the attach socket at path. The listening fd, or -1 with e filled. */
int pyrt_monitor_attach_listen(const char *path, struct pyrt_error *e);
/* Remove the socket (if there is one). */
void pyrt_monitor_attach_unlink(void);
/* A client connecting: it gets the terminal's master, if any. */
void pyrt_monitor_attach_accept(int lfd);
/* Poll entries for the clients (their only message is their end): how many. */
int pyrt_monitor_attach_pollfds(struct pollfd *p);
/* Drop the clients whose entries (from pyrt_monitor_attach_pollfds) have events. */
void pyrt_monitor_attach_hangups(const struct pollfd *p, int n);
void pyrt_monitor_attach_drop_all(void);
/* Output to every client; one that cannot keep up (a full socket) is dropped. */
void pyrt_monitor_broadcast(char stream, const char *data, size_t n);
/* The master fd the container sent over the console socket (kept for the clients
 * that attach), or -1. */
int pyrt_monitor_attach_recv_master(int sock);
/* fd (an output stream) was closed: if it was the master, there is none now. */
void pyrt_monitor_attach_closed(int fd);

/* -- monitor_exit.c */

/* The "oom_kill N" count of a memory.events / memory.oom_control file, or -1. */
long long pyrt_monitor_oom_kills(const char *path);
/* path's content replaced at once (a temp file renamed over it). 0 or -1. */
int pyrt_monitor_write_atomically(const char *path, const char *data, size_t n);
/* The exit record of the run of cpid. 0 or -1. */
int pyrt_monitor_write_exit_record(const char *path, pid_t cpid, const siginfo_t *info,
                                   const struct rusage *ru, const struct timespec *finished,
                                   int oom);

/* -- monitor_restart.c */

/* With a restart policy, where later `pyrt` processes find the current run. */
void pyrt_monitor_write_run_record(const char *path, pid_t cpid, int restarts);
/* Whether an ended run is started again: its policy, and no stop by hand. */
int pyrt_monitor_restart_wanted(const struct pyrt_monitor_cfg *c, const siginfo_t *info,
                                int restarts);
/* The pause before restart number restarts + 1; 0 when it was cut short by a stop
 * by hand (then no restart). */
int pyrt_monitor_back_off(const struct pyrt_monitor_cfg *c, int restarts);

#endif
