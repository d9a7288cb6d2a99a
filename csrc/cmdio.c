/* The I/O of one command run by a pool (see cmdio.h). */
#include "cmdio.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void close_fd(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

/* Read what is there; 0 at EOF (fd closed), 1 when more may come, -1 on error. */
static int drain(int *fd, struct pyrt_buf *b)
{
    for (;;) {
        if (b->cap - b->len < 16384) {
            size_t cap = b->cap ? b->cap * 2 : 65536;
            char *d = realloc(b->data, cap);
            if (!d)
                return -1;
            b->data = d;
            b->cap = cap;
        }
        ssize_t n = read(*fd, b->data + b->len, b->cap - b->len);
        if (n > 0) {
            b->len += (size_t)n;
            continue;
        }
        if (n == 0) {
            close_fd(fd);
            return 0;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN)
            return 1;
        return -1;
    }
}

static int reap(struct pyrt_io *io)
{
    siginfo_t info;
    memset(&info, 0, sizeof info);
    if (syscall(SYS_waitid, P_PIDFD, io->pidfd, &info, WEXITED | WNOHANG, &io->usage) < 0)
        return -1;
    if (info.si_pid == 0)
        return 0;
    switch (info.si_code) {
    case CLD_EXITED:
        io->status = (info.si_status & 0xff) << 8;
        break;
    case CLD_DUMPED:
        io->status = (info.si_status & 0x7f) | 0x80;
        break;
    default:
        io->status = info.si_status & 0x7f;
        break;
    }
    io->exited = 1;
    return 1;
}

int pyrt_io_run(struct pyrt_io *io, int timeout_ms)
{
    long long deadline = timeout_ms >= 0 ? now_ms() + timeout_ms : -1;
    for (int *fd = &io->in_fd; fd <= &io->err_fd; fd++)
        if (*fd >= 0) {
            int fl = fcntl(*fd, F_GETFL);
            if (fl < 0 || (!(fl & O_NONBLOCK) && fcntl(*fd, F_SETFL, fl | O_NONBLOCK) < 0))
                return -1;
        }
    if (io->in_fd >= 0 && io->input_off >= io->input_len)
        close_fd(&io->in_fd);
    for (;;) {
        if (io->exited && io->in_fd < 0 && io->out_fd < 0 && io->err_fd < 0)
            return 1;
        struct pollfd p[4];
        int np = 0, ipid = -1, iin = -1, iout = -1, ierr = -1;
        if (!io->exited) {
            ipid = np;
            p[np++] = (struct pollfd){io->pidfd, POLLIN, 0};
        }
        if (io->in_fd >= 0) {
            iin = np;
            p[np++] = (struct pollfd){io->in_fd, POLLOUT, 0};
        }
        if (io->out_fd >= 0) {
            iout = np;
            p[np++] = (struct pollfd){io->out_fd, POLLIN, 0};
        }
        if (io->err_fd >= 0) {
            ierr = np;
            p[np++] = (struct pollfd){io->err_fd, POLLIN, 0};
        }
        int wait = -1;
        if (deadline >= 0) {
            long long left = deadline - now_ms();
            wait = left > 0 ? (int)left : 0;
        }
        int n = poll(p, (nfds_t)np, wait);
        if (n < 0)
            return -1;
        if (n == 0)
            return 0;
        if (iout >= 0 && p[iout].revents && drain(&io->out_fd, &io->out) < 0)
            return -1;
        if (ierr >= 0 && p[ierr].revents && drain(&io->err_fd, &io->err) < 0)
            return -1;
        if (iin >= 0 && p[iin].revents) {
            if (p[iin].revents & (POLLERR | POLLHUP)) {
                close_fd(&io->in_fd); /* the reader is gone: the rest is dropped */
            } else {
                size_t left = io->input_len - io->input_off;
                ssize_t w = write(io->in_fd, io->input + io->input_off, left > 65536 ? 65536 : left);
                if (w > 0)
                    io->input_off += (size_t)w;
                else if (w < 0 && errno == EPIPE)
                    io->input_off = io->input_len;
                else if (w < 0 && errno != EAGAIN && errno != EINTR)
                    return -1;
                if (io->input_off >= io->input_len)
                    close_fd(&io->in_fd);
            }
        }
        if (ipid >= 0 && p[ipid].revents && reap(io) < 0)
            return -1;
    }
}

void pyrt_io_release(struct pyrt_io *io)
{
    close_fd(&io->in_fd);
    close_fd(&io->out_fd);
    close_fd(&io->err_fd);
    free(io->out.data);
    free(io->err.data);
    io->out.data = io->err.data = NULL;
    io->out.len = io->out.cap = io->err.len = io->err.cap = 0;
}
