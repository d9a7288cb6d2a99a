/* Device probe for tests/test_devices.py, built static and run inside containers.
 * Each argument is one step, printed as "<step> <errno>" (0 = it worked):
 *   mk:PATH:c|b:MAJOR:MINOR   mknod
 *   open:PATH:r|w|rw          open (then close) */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        char buf[512];
        snprintf(buf, sizeof buf, "%s", argv[i]);
        char *op = strtok(buf, ":");
        char *path = strtok(NULL, ":");
        int err = EINVAL;
        if (op && path && strcmp(op, "mk") == 0) {
            char *kind = strtok(NULL, ":");
            char *ma = strtok(NULL, ":");
            char *mi = strtok(NULL, ":");
            if (kind && ma && mi) {
                mode_t t = kind[0] == 'b' ? S_IFBLK : S_IFCHR;
                err = mknod(path, t | 0600, makedev(atoi(ma), atoi(mi))) == 0 ? 0 : errno;
            }
        } else if (op && path && strcmp(op, "open") == 0) {
            char *how = strtok(NULL, ":");
            int flags = !how || strcmp(how, "r") == 0 ? O_RDONLY : strcmp(how, "w") == 0 ? O_WRONLY : O_RDWR;
            int fd = open(path, flags | O_NOCTTY | O_NONBLOCK);
            err = fd >= 0 ? 0 : errno;
            if (fd >= 0)
                close(fd);
        }
        printf("%s %d\n", argv[i], err);
    }
    return 0;
}
