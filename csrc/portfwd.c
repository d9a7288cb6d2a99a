/* Published ports, forwarded by the monitor (see portfwd.h). */
#include "portfwd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "err.h"
#include "fdpass.h"
#include "syscalls.h"

#define HALF_BUF 16384

/* Bytes on their way from one side to the other. */
struct half {
    char buf[HALF_BUF];
    size_t len, off;
    int eof;  /* the source has no more */
    int shut; /* and the destination was told (SHUT_WR) */
};

struct conn {
    int fd[2];      /* 0: the host's client, 1: the socket in the container */
    int connecting; /* fd[1]'s connect is in progress */
    struct half h[2]; /* h[0]: from fd[0] to fd[1]; h[1]: back */
};

struct slot { /* what a poll entry stands for */
    int conn;   /* -1: a listener */
    int index;  /* the listener, or the side of the connection */
};

struct pyrt_portfwd {
    int nports;
    int lfd[PYRT_PORTFWD_MAX_PORTS];
    struct sockaddr_in target[PYRT_PORTFWD_MAX_PORTS]; /* 127.0.0.1:CONTAINERPORT */
    int pidfd, selfns;
    int maker;       /* an ordinary user's monitor: the socket maker's end (-1: none) */
    pid_t maker_pid;
    struct conn *conns[PYRT_PORTFWD_MAX_CONNS];
    struct slot slots[PYRT_PORTFWD_MAX_POLL];
};

static int parse_port(const char *s, size_t n, unsigned short *out)
{
    char buf[8];
    if (n == 0 || n >= sizeof buf)
        return -1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    char *end;
    long v = strtol(buf, &end, 10);
    if (*end || v < 1 || v > 65535)
        return -1;
    *out = (unsigned short)v;
    return 0;
}

/* "IP:HOSTPORT:CONTAINERPORT" -> the listening address and the target port. */
static int parse_item(const char *item, size_t n, struct sockaddr_in *host, unsigned short *cport)
{
    const char *c2 = memrchr(item, ':', n);
    const char *c1 = c2 ? memrchr(item, ':', (size_t)(c2 - item)) : NULL;
    if (!c1)
        return -1;
    char ip[INET_ADDRSTRLEN];
    size_t iplen = (size_t)(c1 - item);
    if (iplen >= sizeof ip)
        return -1;
    memcpy(ip, item, iplen);
    ip[iplen] = '\0';
    unsigned short hport;
    if (parse_port(c1 + 1, (size_t)(c2 - c1 - 1), &hport) < 0 ||
        parse_port(c2 + 1, (size_t)(item + n - c2 - 1), cport) < 0)
        return -1;
    memset(host, 0, sizeof *host);
    host->sin_family = AF_INET;
    host->sin_port = htons(hport);
    return inet_pton(AF_INET, ip, &host->sin_addr) == 1 ? 0 : -1;
}

struct pyrt_portfwd *pyrt_portfwd_listen(const char *spec, struct pyrt_error *e)
{
    struct pyrt_portfwd *pf = calloc(1, sizeof *pf);
    if (!pf) {
        pyrt_fail_errno(e, ENOMEM, "publish ports", "");
        return NULL;
    }
    pf->pidfd = pf->selfns = pf->maker = -1;
    pf->maker_pid = -1;
    for (const char *p = spec; *p;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        struct sockaddr_in host;
        unsigned short cport;
        char what[80];
        snprintf(what, sizeof what, "%.*s", (int)n, p);
        if (pf->nports == PYRT_PORTFWD_MAX_PORTS || parse_item(p, n, &host, &cport) < 0) {
            pyrt_fail_errno(e, EINVAL, "publish port", what);
            goto fail;
        }
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        int one = 1;
        if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
            bind(fd, (struct sockaddr *)&host, sizeof host) < 0 || listen(fd, 128) < 0) {
            int err = errno;
            if (fd >= 0)
                close(fd);
            pyrt_fail_errno(e, err, "publish port (listen on)", what);
            goto fail;
        }
        pf->lfd[pf->nports] = fd;
        struct sockaddr_in *t = &pf->target[pf->nports++];
        t->sin_family = AF_INET;
        t->sin_port = htons(cport);
        t->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        p += n + (comma ? 1 : 0);
    }
    return pf;
fail:
    pyrt_portfwd_close(pf);
    return NULL;
}

static void stop_maker(struct pyrt_portfwd *pf)
{
    if (pf->maker >= 0) {
        close(pf->maker); /* it ends at EOF */
        pf->maker = -1;
    }
    if (pf->maker_pid > 0) {
        while (waitpid(pf->maker_pid, NULL, 0) < 0 && errno == EINTR)
            ;
        pf->maker_pid = -1;
    }
}

/* Closes every fd past stdio but a and b; -1 when it cannot. */
static int close_all_but(int a, int b)
{
    int lo = a < b ? a : b, hi = a < b ? b : a;
    unsigned int from[3] = {3, (unsigned int)lo + 1, (unsigned int)hi + 1};
    unsigned int to[3] = {(unsigned int)lo - 1, (unsigned int)hi - 1, ~0U};
    for (int i = 0; i < 3; i++) {
        if (from[i] > to[i] || (i == 0 && lo <= 3))
            continue;
        if (pyrt_close_range(from[i], to[i], 0) < 0) {
            if (errno != ENOSYS)
                return -1;
            long max = sysconf(_SC_OPEN_MAX);
            for (long fd = from[i]; fd <= (long)to[i] && fd < (max > 0 ? max : 1024); fd++)
                close((int)fd);
        }
    }
    return 0;
}

/* An ordinary user's monitor may enter the container's network namespace but
 * not come back (that takes CAP_SYS_ADMIN in its own user namespace): a child
 * joins the container's user and network namespaces for good and makes each
 * socket there, passed back over a socket pair (SCM_RIGHTS). */
static void start_maker(struct pyrt_portfwd *pf)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return; /* connections are then refused */
    pid_t pid = fork();
    if (pid < 0) {
        close(sv[0]);
        close(sv[1]);
        return;
    }
    if (pid == 0) {
        /* it is about to join the container's user namespace, where the
         * container's root has every capability over it: it keeps nothing of
         * the monitor's (the container's directory, its log, the host's network
         * namespace, the monitor's sockets) but its socket pair and the pidfd */
        if (close_all_but(sv[1], pf->pidfd) < 0)
            _exit(1);
        if (setns(pf->pidfd, CLONE_NEWUSER | CLONE_NEWNET) < 0)
            _exit(1);
        char c;
        while (recv(sv[1], &c, 1, 0) == 1) {
            int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            if (fd < 0) {
                if (send(sv[1], "e", 1, MSG_NOSIGNAL) < 0)
                    break;
                continue;
            }
            int rc = pyrt_send_fds(sv[1], "s", 1, &fd, 1);
            close(fd);
            if (rc < 0)
                break;
        }
        _exit(0);
    }
    close(sv[1]);
    pf->maker = sv[0];
    pf->maker_pid = pid;
}

void pyrt_portfwd_target(struct pyrt_portfwd *pf, int pidfd)
{
    pf->pidfd = pidfd;
    if (pf->selfns < 0)
        pf->selfns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    stop_maker(pf); /* a restart: the new run's namespaces */
    if (geteuid() != 0)
        start_maker(pf);
}

static void drop(struct pyrt_portfwd *pf, int i)
{
    struct conn *c = pf->conns[i];
    close(c->fd[0]);
    close(c->fd[1]);
    free(c);
    pf->conns[i] = NULL;
}

/* A socket made inside the container's network namespace (it stays there). */
static int socket_in_container(struct pyrt_portfwd *pf)
{
    if (pf->maker >= 0) {
        char b;
        int fd = -1;
        size_t nfds = 0;
        if (send(pf->maker, "m", 1, MSG_NOSIGNAL) != 1)
            return -1;
        ssize_t n = pyrt_recv_fds(pf->maker, &b, 1, &fd, &nfds);
        if (n == 1 && b == 's' && nfds == 1)
            return fd;
        if (nfds == 1)
            close(fd);
        errno = EIO;
        return -1;
    }
    if (geteuid() != 0) { /* no maker: it could not be started */
        errno = EPERM;
        return -1;
    }
    if (pf->pidfd < 0 || pf->selfns < 0 || setns(pf->pidfd, CLONE_NEWNET) < 0)
        return -1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int err = errno;
    if (setns(pf->selfns, CLONE_NEWNET) < 0)
        abort(); /* cannot go back: listening on the host's ports would be wrong */
    errno = err;
    return fd;
}

static void accept_one(struct pyrt_portfwd *pf, int port)
{
    int client = accept4(pf->lfd[port], NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (client < 0)
        return;
    int slot = 0;
    while (slot < PYRT_PORTFWD_MAX_CONNS && pf->conns[slot])
        slot++;
    int fd = slot < PYRT_PORTFWD_MAX_CONNS ? socket_in_container(pf) : -1;
    struct conn *c = fd >= 0 ? calloc(1, sizeof *c) : NULL;
    if (!c || (connect(fd, (struct sockaddr *)&pf->target[port], sizeof pf->target[port]) < 0 &&
               errno != EINPROGRESS)) {
        free(c);
        if (fd >= 0)
            close(fd);
        close(client); /* the client sees the connection refused or reset */
        return;
    }
    c->fd[0] = client;
    c->fd[1] = fd;
    c->connecting = 1;
    pf->conns[slot] = c;
}

size_t pyrt_portfwd_poll(struct pyrt_portfwd *pf, struct pollfd *fds)
{
    size_t n = 0;
    for (int i = 0; i < pf->nports; i++) {
        fds[n] = (struct pollfd){pf->lfd[i], POLLIN, 0};
        pf->slots[n++] = (struct slot){-1, i};
    }
    for (int i = 0; i < PYRT_PORTFWD_MAX_CONNS; i++) {
        struct conn *c = pf->conns[i];
        if (!c)
            continue;
        for (int side = 0; side < 2; side++) {
            short ev = 0;
            const struct half *in = &c->h[side], *out = &c->h[1 - side];
            if (side == 1 && c->connecting)
                ev = POLLOUT;
            else {
                if (!in->eof && in->len == 0 && !(side == 0 && c->connecting))
                    ev |= POLLIN;
                if (out->off < out->len)
                    ev |= POLLOUT;
            }
            fds[n] = (struct pollfd){c->fd[side], ev, 0};
            pf->slots[n++] = (struct slot){i, side};
        }
    }
    return n;
}

/* Moves what can be moved on one side of a connection; -1: drop it. */
static int service(struct conn *c, int side, short revents)
{
    if (side == 1 && c->connecting) {
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(c->fd[1], SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err)
            return -1;
        c->connecting = 0;
        return 0;
    }
    struct half *in = &c->h[side], *out = &c->h[1 - side];
    if ((revents & (POLLIN | POLLHUP | POLLERR)) && !in->eof && in->len == 0) {
        ssize_t n = read(c->fd[side], in->buf, sizeof in->buf);
        if (n > 0)
            in->len = (size_t)n, in->off = 0;
        else if (n == 0 || (errno != EAGAIN && errno != EINTR))
            in->eof = 1;
    }
    if ((revents & POLLOUT) && out->off < out->len) {
        ssize_t n = write(c->fd[side], out->buf + out->off, out->len - out->off);
        if (n < 0 && errno != EAGAIN && errno != EINTR)
            return -1;
        if (n > 0 && (out->off += (size_t)n) == out->len)
            out->len = out->off = 0;
    }
    for (int d = 0; d < 2; d++) { /* a source at its end, all passed on: tell the other side */
        struct half *h = &c->h[d];
        if (h->eof && h->len == 0 && !h->shut) {
            shutdown(c->fd[1 - d], SHUT_WR);
            h->shut = 1;
        }
    }
    return c->h[0].shut && c->h[1].shut ? -1 : 0;
}

void pyrt_portfwd_handle(struct pyrt_portfwd *pf, const struct pollfd *fds, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!fds[i].revents)
            continue;
        struct slot s = pf->slots[i];
        if (s.conn < 0)
            accept_one(pf, s.index);
        else if (pf->conns[s.conn] && service(pf->conns[s.conn], s.index, fds[i].revents) < 0)
            drop(pf, s.conn);
    }
}

void pyrt_portfwd_close(struct pyrt_portfwd *pf)
{
    if (!pf)
        return;
    for (int i = 0; i < pf->nports; i++)
        close(pf->lfd[i]);
    for (int i = 0; i < PYRT_PORTFWD_MAX_CONNS; i++)
        if (pf->conns[i])
            drop(pf, i);
    if (pf->selfns >= 0)
        close(pf->selfns);
    stop_maker(pf);
    free(pf);
}
