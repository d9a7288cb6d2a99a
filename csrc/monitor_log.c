/* The container's output in its log (monitor_internal.h): every line a CRI
 * record ("2026-11-28T20:05:08.123456789Z stdout F text"; P marks a partial line:
 * one longer than the 8 KiB buffer, or the end of a stream without newline),
 * collected and written in batches, the log rotated as docker's json-file driver
 * does; and the same output to the attached clients (monitor_attach.c). */
#include "monitor_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fdio.h"

#define OUT_BUF (4 * PYRT_MONITOR_LINE_BUF) /* records collected before one write */

/* The log and the records collected for it. */
static char outbuf[OUT_BUF];
static size_t outlen;
static int logfd = -1;
static const char *log_path;
static long long log_size, log_max_size;
static int log_max_files = 1;

int pyrt_monitor_log_open(const char *path, long long max_size, int max_files)
{
    logfd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0600);
    if (logfd < 0)
        return -1;
    struct stat lst;
    log_path = path;
    log_size = fstat(logfd, &lst) == 0 ? (long long)lst.st_size : 0;
    log_max_size = max_size;
    log_max_files = max_files >= 1 ? max_files : 1;
    return 0;
}

void pyrt_monitor_log_close(void)
{
    close(logfd);
}

/* The log as docker's json-file driver rotates it: LOG becomes LOG.1, LOG.1 LOG.2,
 * ... and the oldest beyond max_files goes; a fresh LOG takes the new records. */
static void rotate(void)
{
    char from[4096], to[4096];
    for (int i = log_max_files - 1; i >= 1; i--) {
        if (i == 1)
            snprintf(from, sizeof from, "%s", log_path);
        else
            snprintf(from, sizeof from, "%s.%d", log_path, i - 1);
        snprintf(to, sizeof to, "%s.%d", log_path, i);
        rename(from, to); /* a missing one is fine */
    }
    int fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOCTTY, 0600);
    if (fd >= 0) {
        close(logfd);
        logfd = fd;
        log_size = 0;
    }
}

void pyrt_monitor_log_flush(void)
{
    if (!outlen)
        return;
    if (log_max_size > 0 && log_size > 0 && log_size + (long long)outlen > log_max_size)
        rotate();
    /* A log that cannot be written (disk full) loses lines; the container goes on. */
    if (pyrt_write_all(logfd, outbuf, outlen) == 0)
        log_size += (long long)outlen;
    outlen = 0;
}

static size_t timestamp(char *buf, size_t cap)
{
    struct timespec ts;
    struct tm tm;
    if (clock_gettime(CLOCK_REALTIME, &ts) < 0 || !gmtime_r(&ts.tv_sec, &tm))
        memset(&tm, 0, sizeof tm), ts.tv_nsec = 0;
    int n = snprintf(buf, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%09ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (long)ts.tv_nsec);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

/* One CRI log record: "<time> <stream> <F|P> <text>\n". */
static void emit(const char *ts, size_t tslen, const char *name, char tag, const char *data, size_t n)
{
    size_t namelen = strlen(name);
    size_t need = tslen + 1 + namelen + 3 + n + 1;
    if (outlen + need > sizeof outbuf)
        pyrt_monitor_log_flush();
    char *p = outbuf + outlen;
    memcpy(p, ts, tslen);
    p += tslen;
    *p++ = ' ';
    memcpy(p, name, namelen);
    p += namelen;
    *p++ = ' ';
    *p++ = tag;
    *p++ = ' ';
    memcpy(p, data, n);
    p += n;
    *p++ = '\n';
    outlen += need;
}

/* Records for the complete lines in the buffer; a full buffer without a newline
 * goes out as a partial record (and so does the rest, when final). The rest waits
 * for more data. */
void pyrt_monitor_lines(struct pyrt_monitor_stream *s, int final)
{
    char ts[48];
    size_t tslen = timestamp(ts, sizeof ts);
    size_t start = 0;
    for (;;) {
        char *nl = memchr(s->buf + start, '\n', s->len - start);
        if (!nl)
            break;
        size_t n = (size_t)(nl - (s->buf + start));
        emit(ts, tslen, s->name, 'F', s->buf + start, n);
        start += n + 1;
    }
    if (start < s->len && (final || (start == 0 && s->len == sizeof s->buf))) {
        emit(ts, tslen, s->name, 'P', s->buf + start, s->len - start);
        start = s->len;
    }
    memmove(s->buf, s->buf + start, s->len - start);
    s->len -= start;
}

void pyrt_monitor_pump(struct pyrt_monitor_stream *s, int drain)
{
    while (s->fd >= 0) {
        ssize_t n = read(s->fd, s->buf + s->len, sizeof s->buf - s->len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) { /* EOF (or a broken pipe, or EIO: a terminal whose container ended) */
            pyrt_monitor_lines(s, 1);
            pyrt_monitor_attach_closed(s->fd);
            close(s->fd);
            s->fd = -1;
            return;
        }
        pyrt_monitor_broadcast(s->id, s->buf + s->len, (size_t)n);
        s->len += (size_t)n;
        pyrt_monitor_lines(s, 0);
        if (!drain)
            return;
    }
}
