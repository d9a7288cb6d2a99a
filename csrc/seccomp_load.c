/* Loading a seccomp filter (see seccomp_load.h). */
#include "seccomp_load.h"

#include <linux/filter.h>
#include <linux/seccomp.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "err.h"

int pyrt_load_seccomp(const void *filter, size_t len, unsigned int flags, struct pyrt_error *e)
{
    struct sock_fprog prog;
    memset(&prog, 0, sizeof prog);
    prog.len = (unsigned short)len;
    prog.filter = (struct sock_filter *)filter;
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog) < 0)
        return pyrt_fail(e, "seccomp", "load the filter");
    return 0;
}
