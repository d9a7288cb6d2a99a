/* The per-container monitor of a detached container (like podman's conmon).
 *
 * pyrt_monitor_start, called by the Python process, forks a child that execs the
 * small static pyrt-monitor program with the resolved spawn spec (serialized to a
 * memfd). That program calls setsid and forks again: the intermediate exits (the
 * caller reaps it), and the monitor, re-parented to init, outlives the caller. The
 * monitor starts the container with pyrt_spawn, its stdout and stderr on pipes,
 * reports the container's pid (or the spawn error) back to the caller, then:
 *  - writes every line of the container's output to log_path in the CRI format
 *    ("2026-11-28T20:05:08.123456789Z stdout F text"; P marks a partial line:
 *    one longer than the 8 KiB buffer, or the end of a stream without newline);
 *  - when the container's init exits: drains the pipes, reads its status and
 *    rusage (waitid WNOWAIT), decides OOMKilled from oom_path's "oom_kill N"
 *    count, writes exit_path (tmp + rename) as JSON, and only then reaps it: while
 *    exit_path does not exist, a pidfd opened on the container's pid is the
 *    container's (alive or zombie), never a reused pid;
 *  - then execs exit_argv if given (e.g. `pyrt rm` for --rm), else exits.
 * Asynchronous signals are blocked in the monitor: SIGTERM, SIGINT, SIGHUP do not
 * end it (and so never cut the container off its log); SIGKILL does. */
#ifndef PYRT_MONITOR_H
#define PYRT_MONITOR_H

#include <sys/types.h>

#include "spawn.h"

struct pyrt_monitor_spec {
    const char *monitor_path;     /* the pyrt-monitor executable */
    const char *log_path;         /* absolute; opened O_APPEND|O_CREAT, mode 0600 */
    const char *exit_path;        /* absolute; the exit record is written here */
    const char *oom_path;         /* cgroup v2 memory.events or v1 memory.oom_control, or NULL */
    long long oom_start;          /* its oom_kill count before the start, or -1: read by the monitor */
    const char *const *exit_argv; /* run after the exit record (NULL terminated), or NULL */
    int stdin_fd;                 /* the container's stdin, or -1 for /dev/null */
    int tty;                      /* the container gets a terminal (console.h): its
                                     output goes to the log as stdout */
    const char *attach_path;      /* a unix socket (SOCK_SEQPACKET) the monitor listens on
                                     while the container runs, or NULL: see below */
    const char *ports;            /* published ports, "IP:HOSTPORT:CONTAINERPORT,..."
                                     (portfwd.h), or NULL */
    long long log_max_size;       /* > 0: rotate the log when a write would pass this */
    int log_max_files;            /* files kept: log_path and log_path.1 .. .N-1 (>= 1) */
    int restart;                  /* PYRT_RESTART_*: start the container again when it ends */
    int restart_max;              /* on-failure: at most this many times (0: no limit) */
    const char *run_path;         /* with a restart policy: the current run's record
                                     ({"Pid", "StartTime", "RestartCount"}), rewritten */
    const char *stop_path;        /* a file whose presence means "stopped by hand": no restart */
    int hold_fd;                  /* an fd the monitor keeps open, unused, for its life, or -1:
                                     a network helper (slirp4netns) ends when it closes */
};

enum { PYRT_RESTART_NO = 0, PYRT_RESTART_ON_FAILURE = 1, PYRT_RESTART_ALWAYS = 2 };

/* Attaching: a client that connects to attach_path gets one message with the
 * terminal's master fd (SCM_RIGHTS; payload "t") for a terminal, or the payload
 * "p" without one; then every chunk of the container's output as it comes, one
 * message each: '1' (stdout) or '2' (stderr), then the bytes. It writes input and
 * sets the window size on the master itself. The socket closes when the
 * container has ended and its output is drained. */

/* Start a detached, monitored container. spec->stdio is ignored (stdin from
 * m->stdin_fd, stdout and stderr to the log); the fds in spec (cgroup) and
 * m->stdin_fd are used by the monitor and stay owned by the caller. On success
 * returns 0 with the container's and the monitor's pids (neither is a child of
 * the caller); on failure -1 with e filled (the spawn error itself when the
 * container could not be started), nothing left running. */
int pyrt_monitor_start(const struct pyrt_spawn_spec *spec, const struct pyrt_monitor_spec *m,
                       pid_t *container_pid, pid_t *monitor_pid, struct pyrt_error *e);

/* The pyrt-monitor program: argv = {"pyrt-monitor", "<memfd with the spec>"}. */
int pyrt_monitor_main(int argc, char **argv);

#endif
