/* Clients attached to a detached container (monitor.h tells what they get): the
 * monitor's listening socket, its clients, and the terminal's master fd that
 * each of them is handed. */
#include "monitor_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "err.h"
#include "fdpass.h"

static int clients[PYRT_MONITOR_MAX_CLIENTS];
static int nclients;
static int master_fd = -1; /* the terminal's master, or -1 */

static int attach_dirfd = -1;   /* the socket's directory */
static const char *attach_name; /* its name there */

/* A socket path may be longer than sun_path holds: it is bound through an fd of
 * its directory (/proc/self/fd/N/NAME). */
int pyrt_monitor_attach_listen(const char *path, struct pyrt_error *e)
{
    const char *slash = strrchr(path, '/');
    if (!slash || !slash[1])
        return pyrt_fail_errno(e, EINVAL, "attach socket", path);
    char dir[4096];
    size_t dlen = (size_t)(slash - path);
    if (dlen >= sizeof dir)
        return pyrt_fail_errno(e, ENAMETOOLONG, "attach socket", path);
    memcpy(dir, path, dlen);
    dir[dlen ? dlen : 1] = '\0';
    if (!dlen)
        dir[0] = '/';
    attach_dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (attach_dirfd < 0)
        return pyrt_fail(e, "open", dir);
    attach_name = slash + 1;
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    int len = snprintf(sa.sun_path, sizeof sa.sun_path, "/proc/self/fd/%d/%s", attach_dirfd, attach_name);
    if (len < 0 || (size_t)len >= sizeof sa.sun_path)
        return pyrt_fail_errno(e, ENAMETOOLONG, "attach socket", path);
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return pyrt_fail(e, "socket", "attach");
    unlinkat(attach_dirfd, attach_name, 0); /* a stale one from an earlier run */
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, PYRT_MONITOR_MAX_CLIENTS) < 0) {
        int err = errno;
        close(fd);
        return pyrt_fail_errno(e, err, "listen", path);
    }
    return fd;
}

void pyrt_monitor_attach_unlink(void)
{
    if (attach_dirfd >= 0) {
        unlinkat(attach_dirfd, attach_name, 0);
        close(attach_dirfd);
        attach_dirfd = -1;
    }
}

void pyrt_monitor_attach_accept(int lfd)
{
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0)
        return;
    if (nclients == PYRT_MONITOR_MAX_CLIENTS) {
        close(fd);
        return;
    }
    char kind = master_fd >= 0 ? 't' : 'p';
    if (pyrt_send_fds(fd, &kind, 1, &master_fd, master_fd >= 0 ? 1 : 0) < 0) {
        close(fd);
        return;
    }
    clients[nclients++] = fd;
}

static void drop_client(int i)
{
    close(clients[i]);
    clients[i] = clients[--nclients];
}

int pyrt_monitor_attach_pollfds(struct pollfd *p)
{
    for (int i = 0; i < nclients; i++)
        p[i] = (struct pollfd){clients[i], POLLIN, 0};
    return nclients;
}

void pyrt_monitor_attach_hangups(const struct pollfd *p, int n)
{
    for (int i = n - 1; i >= 0; i--)
        if (p[i].revents)
            drop_client(i);
}

void pyrt_monitor_attach_drop_all(void)
{
    while (nclients)
        drop_client(nclients - 1);
}

void pyrt_monitor_broadcast(char stream, const char *data, size_t n)
{
    if (!nclients)
        return;
    char msg[1 + PYRT_MONITOR_LINE_BUF];
    msg[0] = stream;
    memcpy(msg + 1, data, n);
    for (int i = nclients - 1; i >= 0; i--)
        if (send(clients[i], msg, n + 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
            drop_client(i);
}

static int recv_master(int sock)
{
    char name[64];
    int fds[PYRT_MAX_PASSED_FDS];
    size_t nfds = 0;
    if (pyrt_recv_fds(sock, name, sizeof name, fds, &nfds) < 0 || nfds == 0)
        return -1;
    for (size_t i = 1; i < nfds; i++)
        close(fds[i]);
    return fds[0];
}

int pyrt_monitor_attach_recv_master(int sock)
{
    master_fd = recv_master(sock);
    return master_fd;
}

void pyrt_monitor_attach_closed(int fd)
{
    if (fd == master_fd)
        master_fd = -1;
}
