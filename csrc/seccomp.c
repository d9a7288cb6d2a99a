/* OCI seccomp profiles -> classic BPF with libseccomp (see seccomp_compile.h).
 * Runs in the caller, never in a spawn child. */
#include "seccomp_compile.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"

#ifdef PYRT_HAVE_SECCOMP
#include <seccomp.h>

int pyrt_seccomp_available(void)
{
    return 1;
}

/* libseccomp's errors are negative errno values. */
static int sfail(struct pyrt_error *e, int rc, const char *op, const char *what)
{
    return pyrt_fail_errno(e, rc < 0 ? -rc : EINVAL, op, what);
}

static int add_rule(scmp_filter_ctx ctx, const struct pyrt_seccomp_rule *r, int nr, const char *name,
                    struct pyrt_error *e)
{
    struct scmp_arg_cmp cmp[6];
    int same_index = 0;
    for (size_t i = 0; i < r->nargs; i++)
        for (size_t j = 0; j < i; j++)
            if (r->args[i].index == r->args[j].index)
                same_index = 1;
    if (r->nargs > 6 && !same_index)
        return pyrt_fail_errno(e, EINVAL, "seccomp rule (more than 6 arguments)", name);
    int rc;
    if (same_index) { /* as runc: one rule per condition, any of them matches */
        for (size_t i = 0; i < r->nargs; i++) {
            const struct pyrt_seccomp_arg *a = &r->args[i];
            cmp[0] = (struct scmp_arg_cmp){a->index, (enum scmp_compare)a->op, a->value, a->value_two};
            rc = seccomp_rule_add_array(ctx, r->action, nr, 1, cmp);
            if (rc < 0)
                return sfail(e, rc, "seccomp rule", name);
        }
        return 0;
    }
    for (size_t i = 0; i < r->nargs; i++) {
        const struct pyrt_seccomp_arg *a = &r->args[i];
        if (a->index > 5 || a->op < PYRT_SCMP_NE || a->op > PYRT_SCMP_MASKED_EQ)
            return pyrt_fail_errno(e, EINVAL, "seccomp rule argument", name);
        cmp[i] = (struct scmp_arg_cmp){a->index, (enum scmp_compare)a->op, a->value, a->value_two};
    }
    rc = seccomp_rule_add_array(ctx, r->action, nr, (unsigned int)r->nargs, cmp);
    return rc < 0 ? sfail(e, rc, "seccomp rule", name) : 0;
}

int pyrt_seccomp_compile(const struct pyrt_seccomp_profile *p, void **filter, size_t *len,
                         struct pyrt_error *e)
{
    memset(e, 0, sizeof *e);
    *filter = NULL;
    *len = 0;
    scmp_filter_ctx ctx = seccomp_init(p->default_action);
    if (!ctx)
        return pyrt_fail_errno(e, EINVAL, "seccomp", "invalid default action");
    int rc = -1, memfd = -1;
    for (size_t i = 0; p->archs && p->archs[i]; i++) {
        uint32_t arch = seccomp_arch_resolve_name(p->archs[i]);
        if (arch == 0) /* not known to this libseccomp: as runc, skip it */
            continue;
        int r = seccomp_arch_add(ctx, arch);
        if (r < 0 && r != -EEXIST) {
            sfail(e, r, "seccomp architecture", p->archs[i]);
            goto out;
        }
    }
    for (size_t i = 0; i < p->nrules; i++) {
        const struct pyrt_seccomp_rule *r = &p->rules[i];
        if (r->action == p->default_action) /* libseccomp refuses it; it changes nothing */
            continue;
        for (size_t j = 0; r->names && r->names[j]; j++) {
            int nr = seccomp_syscall_resolve_name(r->names[j]);
            if (nr == __NR_SCMP_ERROR) /* a syscall this architecture does not have */
                continue;
            if (add_rule(ctx, r, nr, r->names[j], e) < 0)
                goto out;
        }
    }
    memfd = memfd_create("pyrt-seccomp", MFD_CLOEXEC);
    if (memfd < 0) {
        pyrt_fail(e, "memfd_create", "seccomp");
        goto out;
    }
    int r = seccomp_export_bpf(ctx, memfd);
    if (r < 0) {
        sfail(e, r, "seccomp", "export the filter");
        goto out;
    }
    struct stat st;
    if (fstat(memfd, &st) < 0) {
        pyrt_fail(e, "fstat", "seccomp filter");
        goto out;
    }
    size_t size = (size_t)st.st_size;
    if (size == 0 || size % 8 != 0 || size / 8 > 65535) {
        pyrt_fail_errno(e, E2BIG, "seccomp", "filter size");
        goto out;
    }
    char *buf = malloc(size);
    if (!buf) {
        pyrt_fail_errno(e, ENOMEM, "seccomp", "filter");
        goto out;
    }
    size_t got = 0;
    while (got < size) {
        ssize_t n = pread(memfd, buf + got, size - got, (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            pyrt_fail_errno(e, n < 0 ? errno : EIO, "read", "seccomp filter");
            free(buf);
            goto out;
        }
        got += (size_t)n;
    }
    *filter = buf;
    *len = size / 8; /* sizeof(struct sock_filter) */
    rc = 0;
out:
    if (memfd >= 0)
        close(memfd);
    seccomp_release(ctx);
    return rc;
}

#else /* built without libseccomp */

int pyrt_seccomp_available(void)
{
    return 0;
}

int pyrt_seccomp_compile(const struct pyrt_seccomp_profile *p, void **filter, size_t *len,
                         struct pyrt_error *e)
{
    (void)p;
    *filter = NULL;
    *len = 0;
    memset(e, 0, sizeof *e);
    return pyrt_fail_errno(e, ENOSYS, "seccomp",
                           "pyrt was built without libseccomp (install libseccomp-dev and reinstall pyrt)");
}

#endif
