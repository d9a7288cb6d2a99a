/* The foreground relay of `pyrt run` and the CRI log it writes: see relay.h. */
#include "relay.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "err.h"
#include "fdio.h"
#include "syscalls.h"

/* -- the log ------------------------------------------------------------------ */

#define LOG_OUT_CAP (1 << 20) /* records collected before one write */
#define LOG_HEAD_CAP 64       /* "<time> stderr P " */

struct pyrt_log {
    int fd;
    int err;            /* errno of the first failed write */
    size_t outlen;
    size_t headlen[2];  /* of head[s]: "<time> <stream> " */
    char head[2][LOG_HEAD_CAP];
    size_t pending[2];  /* bytes of the current line of each stream, kept until it ends */
    char line[2][PYRT_LOG_LINE_MAX];
    char out[LOG_OUT_CAP];
};

static const char *const stream_names[2] = {"stdout", "stderr"};

struct pyrt_log *pyrt_log_new(int fd)
{
    struct pyrt_log *l = malloc(sizeof *l);
    if (!l)
        return NULL;
    l->fd = fd;
    l->err = 0;
    l->outlen = 0;
    l->pending[0] = l->pending[1] = 0;
    pyrt_log_stamp(l);
    return l;
}

void pyrt_log_stamp(struct pyrt_log *l)
{
    struct timespec ts;
    struct tm tm;
    if (clock_gettime(CLOCK_REALTIME, &ts) < 0 || !gmtime_r(&ts.tv_sec, &tm)) {
        memset(&tm, 0, sizeof tm);
        ts.tv_nsec = 0;
    }
    for (int s = 0; s < 2; s++) {
        int n = snprintf(l->head[s], LOG_HEAD_CAP, "%04d-%02d-%02dT%02d:%02d:%02d.%09ldZ %s ",
                         tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                         (long)ts.tv_nsec, stream_names[s]);
        l->headlen[s] = n > 0 && n < LOG_HEAD_CAP ? (size_t)n : 0;
    }
}

void pyrt_log_flush(struct pyrt_log *l)
{
    if (l->outlen && l->fd >= 0 && pyrt_write_all(l->fd, l->out, l->outlen) < 0) {
        l->err = errno;
        l->fd = -1; /* a log that cannot be written loses lines; the output goes on */
    }
    l->outlen = 0;
}

/* One record: head, tag, text, newline. */
static void emit(struct pyrt_log *l, int s, char tag, const char *text, size_t n)
{
    size_t need = l->headlen[s] + 2 + n + 1;
    if (l->outlen + need > LOG_OUT_CAP)
        pyrt_log_flush(l);
    char *p = l->out + l->outlen;
    memcpy(p, l->head[s], l->headlen[s]);
    p += l->headlen[s];
    p[0] = tag;
    p[1] = ' ';
    memcpy(p + 2, text, n);
    p[2 + n] = '\n';
    l->outlen += need;
}

/* n more bytes of stream s's current line (not its end): a piece of
 * PYRT_LOG_LINE_MAX bytes goes out as a P record once a byte after it is known, so
 * at most that many wait. */
static void add_to_line(struct pyrt_log *l, int s, const char *p, size_t n)
{
    while (n) {
        if (l->pending[s] == PYRT_LOG_LINE_MAX) {
            emit(l, s, 'P', l->line[s], PYRT_LOG_LINE_MAX);
            l->pending[s] = 0;
        }
        if (l->pending[s] == 0 && n > PYRT_LOG_LINE_MAX) { /* a whole piece, more after it */
            emit(l, s, 'P', p, PYRT_LOG_LINE_MAX);
            p += PYRT_LOG_LINE_MAX;
            n -= PYRT_LOG_LINE_MAX;
            continue;
        }
        size_t k = PYRT_LOG_LINE_MAX - l->pending[s];
        if (k > n)
            k = n;
        memcpy(l->line[s] + l->pending[s], p, k);
        l->pending[s] += k;
        p += k;
        n -= k;
    }
}

void pyrt_log_data(struct pyrt_log *l, int s, const char *data, size_t n)
{
    while (n) {
        const char *nl = memchr(data, '\n', n);
        if (!nl) {
            add_to_line(l, s, data, n);
            return;
        }
        size_t len = (size_t)(nl - data);
        if (l->pending[s] == 0 && len <= PYRT_LOG_LINE_MAX) { /* a whole short line: the usual */
            emit(l, s, 'F', data, len);
        } else {
            add_to_line(l, s, data, len);
            emit(l, s, 'F', l->line[s], l->pending[s]);
            l->pending[s] = 0;
        }
        data += len + 1;
        n -= len + 1;
    }
}

int pyrt_log_finish(struct pyrt_log *l)
{
    for (int s = 0; s < 2; s++)
        if (l->pending[s])
            emit(l, s, 'P', l->line[s], l->pending[s]);
    pyrt_log_flush(l);
    int err = l->err;
    free(l);
    return err;
}

/* -- the relay ------------------------------------------------------------------ */

enum { MODE_TEE, MODE_SPLICE, MODE_WRITE, MODE_DISCARD };

struct stream {
    int src, dst;
    int mode;
    int blocked;        /* the destination took nothing last time: wait until it can */
    size_t off, len;    /* MODE_WRITE: read but not yet written */
    char *buf;          /* PYRT_RELAY_PIPE_SIZE: read for the log, or to be written */
};

#define IN_BUF (64 * 1024)

struct pyrt_relay {
    int pidfd, sig_fd, in_tty;
    unsigned long long forward;
    pid_t pid;
    int exited;
    int sigpipe;
    struct stream s[2];
    int in_src, in_dst;
    size_t in_off, in_len;
    struct pyrt_log *log;
    char inbuf[IN_BUF];
};

static int dst_mode(int dst, int logging)
{
    struct stat st;
    if (dst < 0 || fstat(dst, &st) < 0)
        return MODE_DISCARD; /* no stdout of ours: the log still gets it */
    if (S_ISFIFO(st.st_mode))
        return logging ? MODE_TEE : MODE_SPLICE;
    return MODE_WRITE;
}

static int is_one_of(int fd, const int *fds, size_t n)
{
    for (size_t i = 0; fd >= 0 && i < n; i++)
        if (fds[i] == fd)
            return 1;
    return 0;
}

static void close_fd(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

struct pyrt_relay *pyrt_relay_new(const struct pyrt_relay_spec *sp, struct pyrt_error *e)
{
    struct pyrt_relay *r = calloc(1, sizeof *r);
    if (!r) {
        pyrt_fail_errno(e, ENOMEM, "relay", "");
        return NULL;
    }
    r->s[0].buf = malloc(PYRT_RELAY_PIPE_SIZE);
    r->s[1].buf = malloc(PYRT_RELAY_PIPE_SIZE);
    if (sp->log_fd >= 0)
        r->log = pyrt_log_new(sp->log_fd);
    if (!r->s[0].buf || !r->s[1].buf || (sp->log_fd >= 0 && !r->log)) {
        free(r->s[0].buf);
        free(r->s[1].buf);
        free(r->log);
        free(r);
        pyrt_fail_errno(e, ENOMEM, "relay", "");
        return NULL;
    }
    r->pidfd = sp->pidfd;
    r->pid = sp->pid;
    r->sig_fd = sp->sig_fd;
    r->forward = sp->forward;
    r->in_tty = sp->in_tty;
    int srcs[2] = {sp->out_src, sp->err_src}, dsts[2] = {sp->out_dst, sp->err_dst};
    /* A caller's fd that is one of the relay's own was closed when the caller
     * started (`pyrt run ... >&-`), and the number reused: no such destination. */
    int own[] = {sp->out_src, sp->err_src, sp->in_dst, sp->log_fd, sp->sig_fd, sp->pidfd};
    for (int i = 0; i < 2; i++) {
        r->s[i].src = srcs[i];
        r->s[i].dst = is_one_of(dsts[i], own, sizeof own / sizeof *own) ? -1 : dsts[i];
        r->s[i].mode = dst_mode(r->s[i].dst, r->log != NULL);
    }
    r->in_src = is_one_of(sp->in_src, own, sizeof own / sizeof *own) ? -1 : sp->in_src;
    r->in_dst = sp->in_dst;
    if (r->in_dst >= 0 && r->in_src < 0)
        close_fd(&r->in_dst); /* no input: its end at once */
    return r;
}

/* Whether process pid has SIGPIPE at its default action: neither ignored,
 * caught nor blocked (its /proc/PID/status). */
static int sigpipe_default(pid_t pid)
{
    char path[64], text[4096];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = pyrt_read_full(fd, text, sizeof text - 1);
    close(fd);
    if (n <= 0)
        return 0;
    text[n] = '\0';
    static const char *const fields[] = {"\nSigBlk:", "\nSigIgn:", "\nSigCgt:"};
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++) {
        const char *f = strstr(text, fields[i]);
        if (!f)
            return 0;
        unsigned long long mask = strtoull(f + strlen(fields[i]), NULL, 16);
        if (mask & (1ULL << (SIGPIPE - 1)))
            return 0;
    }
    return 1;
}

/* The destination's reader is gone: so is the container's, and this stream
 * ends. Its writers get SIGPIPE (or EPIPE) on their next write, as in a shell
 * pipeline; but the kernel spares a pid namespace's init the signals it has at
 * their default action (it would get EPIPE, and most programs then complain and
 * exit 1): when the init has SIGPIPE at its default, the container goes as
 * SIGPIPE would end it (SIGKILL, the one signal that reaches it; the caller
 * reports 128+SIGPIPE: r->sigpipe). */
static void reader_gone(struct pyrt_relay *r, struct stream *st)
{
    /* Killed before its pipe closes: else its init could see EPIPE first */
    if (!r->sigpipe && !r->exited && r->pid > 0 && sigpipe_default(r->pid) &&
        pyrt_pidfd_send_signal(r->pidfd, SIGKILL, NULL, 0) == 0)
        r->sigpipe = 1;
    close_fd(&st->src);
    st->len = st->off = 0;
}

/* Write what st holds (MODE_WRITE). 0: all of it; 1: the destination is full
 * (or a signal came): later. */
static int write_pending(struct pyrt_relay *r, struct stream *st)
{
    const char *buf = st->buf;
    while (st->off < st->len) {
        ssize_t n = write(st->dst, buf + st->off, st->len - st->off);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                st->blocked = errno == EAGAIN;
                return 1;
            }
            if (errno == EPIPE)
                reader_gone(r, st);
            else
                close_fd(&st->src); /* a destination that fails (EIO, ENOSPC): nothing more to it */
            return 1;
        }
        st->off += (size_t)n;
    }
    st->off = st->len = 0;
    return 0;
}

/* tee and splice link the container's pipe buffers into the destination as they
 * are, each taking one of its slots: worth it for a lot of data (mostly whole
 * pages); a little is written instead, merged with what the destination holds, so
 * that a slow reader's pipe fills with bytes, not with slots of a few bytes each
 * (16 slots of one short line each would fill a 64 KiB pipe with 160 bytes). */
#define TEE_MIN (64 * 1024)

static int available(int fd)
{
    int n = 0;
    return ioctl(fd, FIONREAD, &n) == 0 ? n : 0;
}

/* Read exactly n bytes that tee duplicated (they are there: only we read). */
static int read_teed(int src, char *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t k = read(src, buf + got, n - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        got += (size_t)k;
    }
    return 0;
}

/* One round of copying for stream i (its source was readable, or its destination
 * writable again). */
static void pump(struct pyrt_relay *r, int i)
{
    struct stream *st = &r->s[i];
    st->blocked = 0;
    if (st->len && (write_pending(r, st) != 0 || st->src < 0))
        return; /* what was read before goes first */
    if (st->src < 0)
        return;
    if ((st->mode == MODE_SPLICE || st->mode == MODE_TEE) && available(st->src) >= TEE_MIN) {
        ssize_t n = st->mode == MODE_TEE ? tee(st->src, st->dst, PYRT_RELAY_PIPE_SIZE, SPLICE_F_NONBLOCK)
                                         : splice(st->src, NULL, st->dst, NULL, PYRT_RELAY_PIPE_SIZE,
                                                  SPLICE_F_NONBLOCK);
        if (n > 0) {
            if (st->mode == MODE_TEE) {
                if (read_teed(st->src, st->buf, (size_t)n) < 0) { /* cannot be: the pipe is ours */
                    close_fd(&st->src);
                    return;
                }
                pyrt_log_stamp(r->log);
                pyrt_log_data(r->log, i, st->buf, (size_t)n);
                pyrt_log_flush(r->log);
            }
            return;
        }
        if (n == 0) { /* end of the container's output */
            close_fd(&st->src);
            return;
        }
        if (errno == EINTR)
            return;
        if (errno == EAGAIN) { /* the source was readable: the destination is full */
            st->blocked = 1;
            return;
        }
        if (errno == EPIPE) {
            reader_gone(r, st);
            return;
        }
        st->mode = MODE_WRITE; /* splice does not apply here (EINVAL): read and write */
    }
    ssize_t n = read(st->src, st->buf, PYRT_RELAY_PIPE_SIZE);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        close_fd(&st->src);
        return;
    }
    if (r->log) {
        pyrt_log_stamp(r->log);
        pyrt_log_data(r->log, i, st->buf, (size_t)n);
        pyrt_log_flush(r->log);
    }
    if (st->mode == MODE_DISCARD)
        return;
    st->off = 0;
    st->len = (size_t)n;
    write_pending(r, st);
}

static void stdin_end(struct pyrt_relay *r)
{
    r->in_src = -1; /* the caller's: not closed */
    r->in_len = r->in_off = 0;
    close_fd(&r->in_dst); /* end of file for the container */
}

static void pump_stdin(struct pyrt_relay *r, short revents_src)
{
    if (r->in_len == 0 && r->in_src >= 0 && revents_src) {
        ssize_t n = read(r->in_src, r->inbuf, IN_BUF);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (n <= 0) { /* end of input (or a terminal hung up: EIO) */
            if (!r->in_tty) {
                stdin_end(r);
                return;
            }
            r->in_src = -1; /* a terminal's end of file: ^D, then nothing more */
            r->inbuf[0] = 4;
            n = 1;
        }
        r->in_off = 0;
        r->in_len = (size_t)n;
    }
    while (r->in_off < r->in_len) {
        ssize_t n = write(r->in_dst, r->inbuf + r->in_off, r->in_len - r->in_off);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return;
            stdin_end(r); /* EPIPE: the container closed its stdin */
            return;
        }
        r->in_off += (size_t)n;
    }
    r->in_off = r->in_len = 0;
}

/* Signals read from the wakeup pipe: those to forward are sent on; 1 when one
 * is for the caller. */
static int take_signals(struct pyrt_relay *r)
{
    unsigned char sigs[64];
    ssize_t n = read(r->sig_fd, sigs, sizeof sigs);
    int mine = 0;
    for (ssize_t k = 0; k < n; k++) {
        int sig = sigs[k];
        if (sig >= 1 && sig <= 64 && (r->forward >> (sig - 1)) & 1)
            pyrt_pidfd_send_signal(r->pidfd, sig, NULL, 0); /* ESRCH: it has just exited */
        else
            mine = 1;
    }
    return mine;
}

int pyrt_relay_run(struct pyrt_relay *r, struct pyrt_error *e)
{
    for (;;) {
        struct pollfd p[7];
        int np = 0, at_sig = -1, at_pid = -1, at_out[2] = {-1, -1}, at_in = -1, at_indst = -1;
        if (r->sig_fd >= 0) {
            at_sig = np;
            p[np++] = (struct pollfd){.fd = r->sig_fd, .events = POLLIN};
        }
        if (!r->exited) {
            at_pid = np;
            p[np++] = (struct pollfd){.fd = r->pidfd, .events = POLLIN};
        }
        int copying = 0;
        for (int i = 0; i < 2; i++) {
            struct stream *st = &r->s[i];
            if (st->src < 0)
                continue;
            copying = 1;
            at_out[i] = np;
            if (st->blocked || st->len)
                p[np++] = (struct pollfd){.fd = st->dst, .events = POLLOUT};
            else
                p[np++] = (struct pollfd){.fd = st->src, .events = POLLIN};
        }
        if (r->exited && r->in_dst >= 0)
            stdin_end(r); /* nobody is left to read it */
        if (r->in_dst >= 0) {
            if (r->in_len) {
                at_indst = np;
                p[np++] = (struct pollfd){.fd = r->in_dst, .events = POLLOUT};
            } else if (r->in_src >= 0) {
                at_in = np;
                p[np++] = (struct pollfd){.fd = r->in_src, .events = POLLIN};
            }
        }
        if (r->exited && !copying)
            return PYRT_RELAY_DONE;
        /* Once the container has exited, what its pipes hold is copied, waiting for
         * a slow reader as long as it takes; a pipe with nothing in it is done. */
        int waiting_on_reader = 0;
        for (int i = 0; i < 2; i++)
            if (at_out[i] >= 0 && (r->s[i].blocked || r->s[i].len))
                waiting_on_reader = 1;
        int n = poll(p, (nfds_t)np, r->exited && !waiting_on_reader ? 0 : -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return pyrt_fail(e, "poll", "relay");
        }
        if (n == 0 && r->exited) { /* drained */
            for (int i = 0; i < 2; i++)
                close_fd(&r->s[i].src);
            return PYRT_RELAY_DONE;
        }
        if (at_sig >= 0 && p[at_sig].revents && take_signals(r))
            return PYRT_RELAY_SIGNAL;
        if (at_pid >= 0 && p[at_pid].revents)
            r->exited = 1;
        for (int i = 0; i < 2; i++)
            if (at_out[i] >= 0 && p[at_out[i]].revents)
                pump(r, i);
        if (at_in >= 0 && p[at_in].revents)
            pump_stdin(r, p[at_in].revents);
        else if (at_indst >= 0 && p[at_indst].revents)
            pump_stdin(r, 0);
    }
}

int pyrt_relay_ended_by_sigpipe(const struct pyrt_relay *r)
{
    return r->sigpipe;
}

int pyrt_relay_free(struct pyrt_relay *r)
{
    for (int i = 0; i < 2; i++)
        close_fd(&r->s[i].src);
    close_fd(&r->in_dst);
    int err = r->log ? pyrt_log_finish(r->log) : 0;
    free(r->s[0].buf);
    free(r->s[1].buf);
    free(r);
    return err;
}

int pyrt_relay_pipe(int fds[2], int nonblock_end, struct pyrt_error *e)
{
    if (pipe2(fds, O_CLOEXEC) < 0)
        return pyrt_fail(e, "pipe2", "");
    /* Larger than the default 64 KiB: fewer rounds; an ordinary user's limit
     * (/proc/sys/fs/pipe-max-size, or its pipe quota) may refuse: then as it is. */
    (void)fcntl(fds[1], F_SETPIPE_SZ, PYRT_RELAY_PIPE_SIZE);
    if (nonblock_end >= 0) {
        int fd = fds[nonblock_end];
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
            pyrt_fail(e, "fcntl", "pipe");
            close(fds[0]);
            close(fds[1]);
            return -1;
        }
    }
    return 0;
}
