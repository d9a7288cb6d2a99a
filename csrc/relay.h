/* The foreground relay of `pyrt run`: a container's stdout and stderr copied to
 * the caller's, its log written as CRI records on the way, the caller's stdin
 * copied to the container's (with -i), and the signals the caller receives passed
 * on to the container; all in one loop, without the interpreter.
 *
 * Output: from a pipe of the container's (ours: read end non-blocking) to one of
 * the caller's fds, which are never changed (their flags belong to the user's
 * shell). To a pipe, the data is duplicated with tee(2) and then read once, for
 * the log (one copy instead of two); without a log it is moved with splice(2).
 * To anything else (a regular file, a terminal, a socket, /dev/null) it is read
 * into a buffer as large as the pipe (1 MiB) and written. A destination that
 * cannot take more (a slow reader) holds its stream back, and so the container's
 * writer, as a direct pipe would: nothing is dropped. A destination whose reader
 * is gone (EPIPE) ends its stream: the container's pipe is closed, so its writer
 * gets SIGPIPE (or EPIPE) on its next write, as in a shell pipeline; a container
 * whose init has SIGPIPE at its default action, which the kernel would spare it,
 * is ended as SIGPIPE would end it (pyrt_relay_ended_by_sigpipe).
 *
 * The log: each line one record "<time> <stdout|stderr> F <line>", a line longer
 * than PYRT_LOG_LINE_MAX cut into records of that size tagged P before its last
 * piece (F), the end of a stream without a newline a P record; a line split across
 * reads is kept (PYRT_LOG_LINE_MAX bytes at most per stream) until it ends. The
 * same records pyrt.containers.logs.LogWriter writes, whatever the reads. A log
 * that cannot be written (disk full) stops being written; the output goes on and
 * the caller is told (log_errno).
 *
 * Signals: the caller points Python's wakeup fd (signal.set_wakeup_fd) at a pipe
 * whose read end is sig_fd: each byte is a signal's number. Those in the forward
 * mask are sent to the container's init (pidfd); for any other, pyrt_relay_run
 * returns PYRT_RELAY_SIGNAL so that the caller can run its own handlers (SIGWINCH:
 * the terminal's size; SIGINT without --sig-proxy: KeyboardInterrupt), then calls it
 * again.
 *
 * A terminal (-t): the container's pty master is both the output's source and the
 * input's destination (two fds of it, both the relay's); the end of our input is
 * the terminal's end-of-file character (^D), not a close.
 *
 * The end: once the container's init has exited (pidfd readable), what its pipes
 * still hold is copied, and the relay ends when nothing more is there (a process
 * outside the container holding a pipe open does not keep it waiting). */
#ifndef PYRT_RELAY_H
#define PYRT_RELAY_H

#include <stddef.h>
#include <sys/types.h>

#include "spawn.h" /* struct pyrt_error */

#define PYRT_LOG_LINE_MAX 8192            /* longest text of one log record */
#define PYRT_RELAY_PIPE_SIZE (1 << 20)   /* pipes made by pyrt_relay_pipe, and the copy buffer */

/* The CRI log of one container's two streams (0: stdout, 1: stderr). */
struct pyrt_log;

/* A log writing to fd (not closed by it); NULL when out of memory. */
struct pyrt_log *pyrt_log_new(int fd);
/* The time put on the records of the next data (one clock read per chunk). */
void pyrt_log_stamp(struct pyrt_log *l);
/* Data of stream 0 or 1, as it came: records for the lines it ends. */
void pyrt_log_data(struct pyrt_log *l, int stream, const char *data, size_t n);
/* Write the records collected so far. */
void pyrt_log_flush(struct pyrt_log *l);
/* The ends of lines still pending as P records, everything written; then freed.
 * The errno of the first failed write (0: none). */
int pyrt_log_finish(struct pyrt_log *l);

struct pyrt_relay_spec {
    int pidfd;              /* the container's init */
    pid_t pid;              /* its pid (for its /proc/PID/status), or 0 */
    int sig_fd;             /* wakeup pipe's read end (signal numbers), or -1 */
    unsigned long long forward; /* signals passed on to pidfd: bit N-1 for signal N */
    int in_tty;             /* in_dst is a terminal's master: end of input is ^D */
    int out_src, out_dst;   /* container's stdout pipe (owned: closed by the relay) -> ours; -1: none */
    int err_src, err_dst;   /* the same for stderr */
    int in_src, in_dst;     /* our stdin -> the container's stdin pipe (in_dst owned); -1: none */
    int log_fd;             /* the container's log (O_APPEND), or -1 */
};

struct pyrt_relay;

#define PYRT_RELAY_DONE 0
#define PYRT_RELAY_SIGNAL 1

/* A relay of s; NULL with e filled on failure (the owned fds are then still the
 * caller's to close). */
struct pyrt_relay *pyrt_relay_new(const struct pyrt_relay_spec *s, struct pyrt_error *e);
/* Copy until done (PYRT_RELAY_DONE), or until a signal arrived that is not passed
 * on (PYRT_RELAY_SIGNAL: call again to go on); -1 with e filled on a failure of
 * the relay itself (poll). */
int pyrt_relay_run(struct pyrt_relay *r, struct pyrt_error *e);
/* 1 when the relay ended the container because its reader was gone (the caller
 * reports it as killed by SIGPIPE). */
int pyrt_relay_ended_by_sigpipe(const struct pyrt_relay *r);
/* Close what the relay owns, finish and free it; the log's errno (0: none). */
int pyrt_relay_free(struct pyrt_relay *r);

/* A pipe for a container's stdio: close-on-exec, PYRT_RELAY_PIPE_SIZE large where
 * the system allows, the end at fds[nonblock_end] non-blocking (-1: none). 0, or -1
 * with e filled. */
int pyrt_relay_pipe(int fds[2], int nonblock_end, struct pyrt_error *e);

#endif
