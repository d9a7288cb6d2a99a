/* I/O on file descriptors (see fdio.h). */
#include "fdio.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "err.h"

int pyrt_write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

ssize_t pyrt_read_full(int fd, void *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, (char *)buf + got, len - got);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

/* Sources are first moved above 2 so that e.g. stdout=2 / stderr=1 do not
 * clobber each other. */
int pyrt_setup_stdio(const int stdio[3], struct pyrt_error *e)
{
    int fds[3];
    for (int i = 0; i < 3; i++) {
        fds[i] = stdio[i];
        if (fds[i] >= 0 && fds[i] < 3 && fds[i] != i) {
            fds[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
            if (fds[i] < 0)
                return pyrt_fail(e, "dup", "stdio");
        }
    }
    for (int i = 0; i < 3; i++) {
        if (fds[i] < 0)
            continue;
        if (fds[i] == i) {
            if (fcntl(i, F_SETFD, 0) < 0)
                return pyrt_fail(e, "fcntl", "stdio");
        } else if (dup2(fds[i], i) < 0) {
            return pyrt_fail(e, "dup2", "stdio");
        }
    }
    return 0;
}

int pyrt_read_small(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = pyrt_read_full(fd, buf, cap - 1);
    close(fd);
    if (n < 0 || (size_t)n == cap - 1)
        return -1;
    buf[n] = 0;
    return 0;
}
