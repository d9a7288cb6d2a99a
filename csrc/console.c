/* The container's terminal (see console.h). Raw syscalls only: this runs between
 * clone and exec in a child of a possibly threaded process. */
#include "console.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "err.h"
#include "fdpass.h"
#include "syscalls.h"

#ifndef TIOCGPTPEER
#define TIOCGPTPEER _IO('T', 0x41)
#endif

/* Bind the pty's slave over /dev/console (created as an empty file when missing);
 * skipped where /dev/console cannot be made (a read-only root without /dev). */
static int bind_console(int slave, struct pyrt_error *e)
{
    struct stat st;
    if (lstat("/dev/console", &st) < 0) {
        int fd = open("/dev/console", O_WRONLY | O_CREAT | O_EXCL | O_NOCTTY | O_CLOEXEC, 0600);
        if (fd < 0)
            return (errno == EROFS || errno == ENOENT) ? 0 : pyrt_fail(e, "create", "/dev/console");
        close(fd);
    } else if (S_ISLNK(st.st_mode)) {
        return 0;
    }
    int mfd = pyrt_open_tree(slave, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH);
    if (mfd < 0)
        return pyrt_fail(e, "bind the console", "/dev/console");
    int rc = pyrt_move_mount(mfd, "", AT_FDCWD, "/dev/console", MOVE_MOUNT_F_EMPTY_PATH);
    int err = errno;
    close(mfd);
    return rc < 0 ? pyrt_fail_errno(e, err, "bind the console", "/dev/console") : 0;
}

int pyrt_setup_console(int console_fd, uid_t uid, gid_t gid, struct pyrt_error *e)
{
    if (console_fd < 0)
        return 0;
    int master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0)
        master = open("/dev/pts/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0)
        return pyrt_fail(e, "open", "/dev/ptmx (a devpts at /dev/pts is needed for a terminal)");
    int unlock = 0, rc = -1;
    int slave = -1;
    if (ioctl(master, TIOCSPTLCK, &unlock) < 0) {
        pyrt_fail(e, "unlock pty", "/dev/ptmx");
        goto out;
    }
    slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (slave < 0) {
        pyrt_fail(e, "open pty peer", "/dev/ptmx");
        goto out;
    }
    /* A usable size from the first instruction on (the caller resizes it to the
     * user's terminal when it has one). */
    struct winsize ws = {.ws_row = 24, .ws_col = 80};
    if (ioctl(master, TIOCSWINSZ, &ws) < 0) {
        pyrt_fail(e, "set the window size of", "the pty");
        goto out;
    }
    /* The program's user owns its terminal (ids unmapped in a user namespace: left). */
    if (fchown(slave, uid, gid) < 0 && errno != EINVAL && errno != EPERM) {
        pyrt_fail(e, "chown", "the pty");
        goto out;
    }
    if (setsid() < 0 && errno != EPERM) { /* EPERM: a session leader already */
        pyrt_fail(e, "setsid", "");
        goto out;
    }
    if (ioctl(slave, TIOCSCTTY, 0) < 0) {
        pyrt_fail(e, "set controlling terminal", "the pty");
        goto out;
    }
    for (int i = 0; i < 3; i++)
        if (dup2(slave, i) < 0) {
            pyrt_fail(e, "dup2", "the pty");
            goto out;
        }
    if (bind_console(slave, e) < 0)
        goto out;
    if (pyrt_send_fds(console_fd, "/dev/ptmx", 9, &master, 1) < 0) {
        pyrt_fail(e, "send the pty over", "the console socket");
        goto out;
    }
    rc = 0;
out:
    if (slave >= 0)
        close(slave);
    close(master);
    close(console_fd);
    return rc;
}
