/* Passing fds over unix sockets (see fdpass.h). */
#include "fdpass.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

ssize_t pyrt_recv_fds(int sock, void *buf, size_t len, int *fds, size_t *nfds)
{
    union {
        struct cmsghdr h;
        char space[CMSG_SPACE(PYRT_MAX_PASSED_FDS * sizeof(int))];
    } cbuf;
    struct iovec iov = {buf, len};
    struct msghdr mh;
    memset(&mh, 0, sizeof mh);
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = cbuf.space;
    mh.msg_controllen = sizeof cbuf.space;
    ssize_t n;
    do
        n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    *nfds = 0;
    if (n < 0)
        return -1;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
            if (*nfds < PYRT_MAX_PASSED_FDS)
                fds[(*nfds)++] = fd;
            else
                close(fd);
        }
    }
    if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
        errno = EMSGSIZE;
        return -1;
    }
    return n;
}

int pyrt_send_fds(int sock, const void *buf, size_t len, const int *fds, size_t nfds)
{
    union {
        struct cmsghdr h;
        char space[CMSG_SPACE(PYRT_MAX_PASSED_FDS * sizeof(int))];
    } cbuf;
    memset(&cbuf, 0, sizeof cbuf);
    struct iovec iov = {(void *)buf, len};
    struct msghdr mh;
    memset(&mh, 0, sizeof mh);
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    if (nfds) {
        if (nfds > PYRT_MAX_PASSED_FDS) {
            errno = EINVAL;
            return -1;
        }
        mh.msg_control = cbuf.space;
        mh.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
        memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
    }
    ssize_t n;
    do
        n = sendmsg(sock, &mh, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -1;
    if ((size_t)n != len) {
        errno = EPIPE;
        return -1;
    }
    return 0;
}
