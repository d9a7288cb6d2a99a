/* OCI seccomp profiles -> classic BPF with libseccomp (see seccomp_compile.h).
 * Runs in the caller, never in a spawn child. */
#include "seccomp_compile.h"

#include <errno.h>
#include <stddef.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
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

/* Syscalls unknown to the profile fail with ENOSYS, not with its default action (as
 * runc does): a syscall numbered above every syscall the profile names, on each of
 * its architectures, is one a newer kernel (or a newer libc) added since the profile
 * was written, and ENOSYS makes C libraries fall back to an older call (clone3 ->
 * clone, fchmodat2 -> fchmodat, ...) where EPERM would make them fail. The stub goes
 * before libseccomp's program; a syscall it does not answer falls through to it.
 * Only for profiles that deny by default (an allow-list). */
#define PYRT_X32_BIT 0x40000000u
#define PYRT_ARCHS_MAX 32 /* libseccomp knows about 20 */
#define PYRT_STUB_MAX (2 + 6 * PYRT_ARCHS_MAX)

struct stub {
    struct sock_filter ins[PYRT_STUB_MAX];
    size_t n;
};

static void emit(struct stub *s, uint16_t code, uint32_t k, size_t jt, size_t jf)
{
    /* jt, jf: absolute targets (0: the next instruction), made relative to the next
     * instruction; the stub is short enough that every offset fits their 8 bits */
    size_t at = s->n++;
    s->ins[at] = (struct sock_filter){code, (uint8_t)(jt ? jt - at - 1 : 0), (uint8_t)(jf ? jf - at - 1 : 0), k};
}

/* The highest number of a syscall the profile names on arch, or -1. */
static int max_named(const struct pyrt_seccomp_profile *p, uint32_t arch)
{
    int max = -1;
    for (size_t i = 0; i < p->nrules; i++)
        for (size_t j = 0; p->rules[i].names && p->rules[i].names[j]; j++) {
            int nr = seccomp_syscall_resolve_name_arch(arch, p->rules[i].names[j]);
            if (nr > max) /* negative: unknown, or a multiplexed pseudo-syscall */
                max = nr;
        }
    return max;
}

static int wants_enosys_stub(uint32_t default_action)
{
    uint32_t kind = default_action & SECCOMP_RET_ACTION_FULL;
    if (kind == SECCOMP_RET_ALLOW || kind == SECCOMP_RET_LOG || kind == SECCOMP_RET_TRACE)
        return 0;
    return default_action != (SECCOMP_RET_ERRNO | ENOSYS);
}

/* Fills s for the architectures archs[0..narchs) (libseccomp tokens, which are
 * the kernel's AUDIT_ARCH_* values but for x32: x86_64's, with PYRT_X32_BIT set in
 * the syscall number). */
static void enosys_stub(const struct pyrt_seccomp_profile *p, const uint32_t *archs, size_t narchs,
                        struct stub *s)
{
    int max32 = -1;
    for (size_t i = 0; i < narchs; i++)
        if (archs[i] == SCMP_ARCH_X32)
            max32 = max_named(p, SCMP_ARCH_X32);
    /* sizes first, so that every jump target is known when it is emitted */
    size_t size = 2; /* the tail: jump over the ENOSYS return, the return */
    for (size_t i = 0; i < narchs; i++)
        if (archs[i] != SCMP_ARCH_X32)
            size += archs[i] == SCMP_ARCH_X86_64 ? (max32 >= 0 ? 6 : 5) : 4;
    size_t enosys = size - 1, orig = size;
    s->n = 0;
    for (size_t i = 0; i < narchs; i++) {
        if (archs[i] == SCMP_ARCH_X32)
            continue;
        int max = max_named(p, archs[i]);
        size_t next = s->n + (archs[i] == SCMP_ARCH_X86_64 ? (max32 >= 0 ? 6 : 5) : 4);
        emit(s, BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch), 0, 0);
        emit(s, BPF_JMP | BPF_JEQ | BPF_K, archs[i], 0, next);
        emit(s, BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr), 0, 0);
        if (archs[i] == SCMP_ARCH_X86_64) /* x32 numbers: to their own check, else to libseccomp */
            emit(s, BPF_JMP | BPF_JGE | BPF_K, PYRT_X32_BIT, max32 >= 0 ? s->n + 2 : orig, 0);
        /* max < 0 (the profile names nothing here): every number is unknown */
        emit(s, BPF_JMP | BPF_JGT | BPF_K, max < 0 ? 0 : (uint32_t)max, enosys, orig);
        if (archs[i] == SCMP_ARCH_X86_64 && max32 >= 0)
            emit(s, BPF_JMP | BPF_JGT | BPF_K, (uint32_t)max32, enosys, orig);
    }
    emit(s, BPF_JMP | BPF_JA, (uint32_t)(orig - s->n - 1), 0, 0);
    emit(s, BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS, 0, 0);
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
    uint32_t archs[PYRT_ARCHS_MAX];
    size_t narchs = 0;
    archs[narchs++] = seccomp_arch_native();
#if SCMP_VER_MAJOR > 2 || (SCMP_VER_MAJOR == 2 && SCMP_VER_MINOR >= 5)
    /* a binary tree of syscall numbers: an allow-list is long, and each syscall walks it */
    seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
#endif
    for (size_t i = 0; p->archs && p->archs[i]; i++) {
        uint32_t arch = seccomp_arch_resolve_name(p->archs[i]);
        if (arch == 0) /* not known to this libseccomp: as runc, skip it */
            continue;
        int r = seccomp_arch_add(ctx, arch);
        if (r < 0 && r != -EEXIST) {
            sfail(e, r, "seccomp architecture", p->archs[i]);
            goto out;
        }
        if (r == 0 && narchs < PYRT_ARCHS_MAX)
            archs[narchs++] = arch;
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
    struct stub *sp = malloc(sizeof *sp);
    if (!sp) {
        pyrt_fail_errno(e, ENOMEM, "seccomp", "filter");
        goto out;
    }
    sp->n = 0;
    if (wants_enosys_stub(p->default_action))
        enosys_stub(p, archs, narchs, sp);
    size_t pre = sp->n * sizeof(struct sock_filter);
    /* the kernel takes at most BPF_MAXINSNS (4096) instructions */
    if (size == 0 || size % 8 != 0 || (size + pre) / 8 > BPF_MAXINSNS) {
        free(sp);
        pyrt_fail_errno(e, E2BIG, "seccomp", "filter size");
        goto out;
    }
    char *buf = malloc(pre + size);
    if (!buf) {
        free(sp);
        pyrt_fail_errno(e, ENOMEM, "seccomp", "filter");
        goto out;
    }
    memcpy(buf, sp->ins, pre);
    free(sp);
    buf += pre; /* libseccomp's program after the stub */
    size_t got = 0;
    while (got < size) {
        ssize_t n = pread(memfd, buf + got, size - got, (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            pyrt_fail_errno(e, n < 0 ? errno : EIO, "read", "seccomp filter");
            free(buf - pre);
            goto out;
        }
        got += (size_t)n;
    }
    *filter = buf - pre;
    *len = (pre + size) / sizeof(struct sock_filter);
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
