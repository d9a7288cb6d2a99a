/* A new process's identity (see identity.h). */
#include "identity.h"

#include <errno.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "err.h"
#include "syscalls.h"
#include "userns.h"

int pyrt_raw_setgroups(size_t n, const gid_t *groups)
{
    return (int)syscall(SYS_setgroups, n, groups);
}

int pyrt_raw_setresgid(gid_t g)
{
    return (int)syscall(SYS_setresgid, g, g, g);
}

int pyrt_raw_setresuid(uid_t u)
{
    return (int)syscall(SYS_setresuid, u, u, u);
}

int pyrt_setup_identity(int set_user, uid_t uid, gid_t gid, const gid_t *groups, size_t ngroups,
                        uint64_t caps, struct pyrt_error *e)
{
    for (int cap = 0; cap < 64; cap++) {
        if (caps & (1ULL << cap))
            continue;
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
            if (errno == EINVAL) /* past the last capability this kernel knows */
                break;
            return pyrt_fail(e, "drop capability", "bounding set");
        }
    }
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        return pyrt_fail(e, "clear ambient capabilities", "");
    if (set_user) {
        /* An ordinary user's namespace that denies setgroups keeps the caller's
         * groups (userns.h): asking for none is then not an error. */
        if (pyrt_raw_setgroups(ngroups, groups) < 0 &&
            !(errno == EPERM && ngroups == 0 && pyrt_userns_setgroups_denied()))
            return pyrt_fail(e, "setgroups", "");
        if (pyrt_raw_setresgid(gid) < 0)
            return pyrt_fail(e, "setresgid", "");
        if (pyrt_raw_setresuid(uid) < 0)
            return pyrt_fail(e, "setresuid", "");
    }
    uint32_t eff[2], prm[2], inh[2];
    if (pyrt_capget(eff, prm, inh) < 0)
        return pyrt_fail(e, "capget", "");
    for (int i = 0; i < 2; i++) {
        uint32_t want = (uint32_t)(caps >> (32 * i));
        prm[i] &= want;
        eff[i] = prm[i];
        inh[i] = 0;
    }
    if (pyrt_capset(eff, prm, inh) < 0)
        return pyrt_fail(e, "capset", "");
    return 0;
}
