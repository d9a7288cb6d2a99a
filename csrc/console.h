/* A terminal for a container: in the child, after its root and stdio are set up,
 * a new pty of the container's devpts instance (/dev/ptmx) becomes its stdio and
 * controlling terminal (a new session), its slave is bound over /dev/console, and
 * the master is sent over `console_fd` (a connected unix socket, SCM_RIGHTS) to
 * whoever relays it: the caller of pyrt.spawn(tty=True), the monitor, or an
 * engine's --console-socket. */
#ifndef PYRT_CONSOLE_H
#define PYRT_CONSOLE_H

#include <sys/types.h>

#include "err.h" /* struct pyrt_error */

/* Nothing when console_fd < 0; closes console_fd. uid/gid: the slave's owner. */
int pyrt_setup_console(int console_fd, uid_t uid, gid_t gid, struct pyrt_error *e);

#endif
