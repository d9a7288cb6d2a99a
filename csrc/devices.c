/* Device allow-lists on cgroup2: rules -> an eBPF BPF_PROG_TYPE_CGROUP_DEVICE
 * program, loaded and attached with bpf(2) (see devices.h). */
#include "devices.h"

#include <errno.h>
#include <linux/bpf.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "err.h"

#define MAX_RULES 4096
#define MAX_DEVNUM 0xffffffffLL

static struct bpf_insn insn(uint8_t code, uint8_t dst, uint8_t src, int16_t off, int32_t imm)
{
    struct bpf_insn i;
    memset(&i, 0, sizeof i);
    i.code = code;
    i.dst_reg = dst & 0xf;
    i.src_reg = src & 0xf;
    i.off = off;
    i.imm = imm;
    return i;
}

#define LDX_W(dst, src, off) insn(BPF_LDX | BPF_MEM | BPF_W, dst, src, off, 0)
#define ALU_K(op, dst, imm) insn(BPF_ALU64 | (op) | BPF_K, dst, 0, 0, imm)
#define MOV_X(dst, src) insn(BPF_ALU64 | BPF_MOV | BPF_X, dst, src, 0, 0)
#define JNE_K(dst, imm, off) insn(BPF_JMP | BPF_JNE | BPF_K, dst, 0, off, imm)
#define JNE_X(dst, src, off) insn(BPF_JMP | BPF_JNE | BPF_X, dst, src, off, 0)
#define EXIT() insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0)

#define ACCESS_ALL (PYRT_DEV_MKNOD | PYRT_DEV_READ | PYRT_DEV_WRITE)

static int check_rule(const struct pyrt_dev_rule *r, struct pyrt_error *e)
{
    if (r->type != 'a' && r->type != 'b' && r->type != 'c')
        return pyrt_fail_errno(e, EINVAL, "device rule type", "");
    if (r->major < -1 || r->major > MAX_DEVNUM || r->minor < -1 || r->minor > MAX_DEVNUM)
        return pyrt_fail_errno(e, EINVAL, "device rule number", "");
    if (r->access == 0 || (r->access & ~(unsigned int)ACCESS_ALL))
        return pyrt_fail_errno(e, EINVAL, "device rule access", "");
    return 0;
}

/* The instructions of one rule's block: each test jumps over the rest of the
 * block (to the next rule) when it does not match. */
static size_t rule_block(const struct pyrt_dev_rule *r, struct bpf_insn *out)
{
    size_t n = 0, len = 2; /* r0 = allow; exit */
    int typed = r->type != 'a';
    int some_access = (r->access & ACCESS_ALL) != ACCESS_ALL;
    len += (size_t)typed + (some_access ? 3u : 0u) + (r->major >= 0) + (r->minor >= 0);
    if (!out)
        return len;
    /* each jump's offset: the instructions left in the block after it */
#define LEFT() ((int16_t)(len - n - 1))
    if (typed) {
        out[n] = JNE_K(BPF_REG_2, r->type == 'b' ? BPF_DEVCG_DEV_BLOCK : BPF_DEVCG_DEV_CHAR, 0);
        out[n].off = LEFT();
        n++;
    }
    if (some_access) {
        out[n++] = MOV_X(BPF_REG_1, BPF_REG_3);
        out[n++] = ALU_K(BPF_AND, BPF_REG_1, (int32_t)r->access);
        out[n] = JNE_X(BPF_REG_1, BPF_REG_3, 0);
        out[n].off = LEFT();
        n++;
    }
    if (r->major >= 0) {
        out[n] = JNE_K(BPF_REG_4, (int32_t)(uint32_t)r->major, 0);
        out[n].off = LEFT();
        n++;
    }
    if (r->minor >= 0) {
        out[n] = JNE_K(BPF_REG_5, (int32_t)(uint32_t)r->minor, 0);
        out[n].off = LEFT();
        n++;
    }
#undef LEFT
    out[n++] = ALU_K(BPF_MOV, BPF_REG_0, r->allow ? 1 : 0);
    out[n++] = EXIT();
    return n;
}

int pyrt_devices_program(const struct pyrt_dev_rule *rules, size_t nrules, void **insns,
                         size_t *ninsns, struct pyrt_error *e)
{
    if (nrules > MAX_RULES)
        return pyrt_fail_errno(e, E2BIG, "device rules", "");
    size_t total = 6 + 2;
    for (size_t i = 0; i < nrules; i++) {
        if (check_rule(&rules[i], e) < 0)
            return -1;
        total += rule_block(&rules[i], NULL);
    }
    struct bpf_insn *p = calloc(total, sizeof *p);
    if (!p)
        return pyrt_fail(e, "allocate device filter", "");
    size_t n = 0;
    /* r2 = device type, r3 = access asked for, r4 = major, r5 = minor */
    p[n++] = LDX_W(BPF_REG_2, BPF_REG_1, offsetof(struct bpf_cgroup_dev_ctx, access_type));
    p[n++] = ALU_K(BPF_AND, BPF_REG_2, 0xffff);
    p[n++] = LDX_W(BPF_REG_3, BPF_REG_1, offsetof(struct bpf_cgroup_dev_ctx, access_type));
    p[n++] = ALU_K(BPF_RSH, BPF_REG_3, 16);
    p[n++] = LDX_W(BPF_REG_4, BPF_REG_1, offsetof(struct bpf_cgroup_dev_ctx, major));
    p[n++] = LDX_W(BPF_REG_5, BPF_REG_1, offsetof(struct bpf_cgroup_dev_ctx, minor));
    /* the last matching rule decides: test them from the last one back; a rule
     * that matches everything ends the program (the verifier refuses code that
     * cannot be reached) */
    int open_end = 1;
    for (size_t i = nrules; open_end && i-- > 0;) {
        size_t len = rule_block(&rules[i], p + n);
        n += len;
        open_end = len > 2;
    }
    if (open_end) {
        p[n++] = ALU_K(BPF_MOV, BPF_REG_0, 0); /* no rule matched: deny */
        p[n++] = EXIT();
    }
    *insns = p;
    *ninsns = n;
    return 0;
}

static long sys_bpf(int cmd, union bpf_attr *attr)
{
    return syscall(SYS_bpf, cmd, attr, sizeof *attr);
}

int pyrt_devices_attach(int cgroup_fd, const char *path, const struct pyrt_dev_rule *rules,
                        size_t nrules, struct pyrt_error *e)
{
    void *prog = NULL;
    size_t n = 0;
    if (pyrt_devices_program(rules, nrules, &prog, &n, e) < 0)
        return -1;
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
    attr.insns = (uint64_t)(uintptr_t)prog;
    attr.insn_cnt = (uint32_t)n;
    attr.license = (uint64_t)(uintptr_t) "GPL";
    pyrt_strlcpy(attr.prog_name, "pyrt_devices", sizeof attr.prog_name);
    long fd = sys_bpf(BPF_PROG_LOAD, &attr);
    int saved = errno;
    free(prog);
    if (fd < 0)
        return pyrt_fail_errno(e, saved, "load device filter", path);
    memset(&attr, 0, sizeof attr);
    attr.target_fd = (uint32_t)cgroup_fd;
    attr.attach_bpf_fd = (uint32_t)fd;
    attr.attach_type = BPF_CGROUP_DEVICE;
    attr.attach_flags = BPF_F_ALLOW_MULTI;
    if (sys_bpf(BPF_PROG_ATTACH, &attr) < 0) {
        saved = errno;
        close((int)fd);
        return pyrt_fail_errno(e, saved, "attach device filter", path);
    }
    /* the attachment holds the program: its fd is not needed any more */
    if (close((int)fd) < 0)
        return pyrt_fail(e, "close device filter", path);
    return 0;
}
