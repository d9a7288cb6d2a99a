/* Device allow-lists on cgroup2: an eBPF program of type
 * BPF_PROG_TYPE_CGROUP_DEVICE generated from a list of rules (the form of the OCI
 * runtime spec's linux.resources.devices), loaded with bpf(BPF_PROG_LOAD) and
 * attached to a cgroup2 directory (BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI). No
 * libbpf. Runs in the caller, never in a spawn child.
 *
 * Semantics (as runc's device filter): the last rule that matches a request
 * decides; a request no rule matches is denied. A rule matches when its type is
 * 'a' or the device's, its major and minor are -1 or the device's, and the
 * access asked for is within the rule's access bits. With BPF_F_ALLOW_MULTI the
 * programs of every ancestor cgroup run too, and all of them must allow. */
#ifndef PYRT_DEVICES_H
#define PYRT_DEVICES_H

#include <stddef.h>
#include <stdint.h>

#include "err.h" /* struct pyrt_error */

enum {
    PYRT_DEV_MKNOD = 1, /* the kernel's BPF_DEVCG_ACC_* bits */
    PYRT_DEV_READ = 2,
    PYRT_DEV_WRITE = 4,
};

struct pyrt_dev_rule {
    char type;          /* 'a' (all), 'b' (block) or 'c' (char) */
    int64_t major;      /* -1: any */
    int64_t minor;      /* -1: any */
    unsigned int access; /* PYRT_DEV_* bits */
    int allow;          /* 1: allow, 0: deny */
};

/* The program's instructions (struct bpf_insn, 8 bytes each) in *insns (malloc'd,
 * the caller frees) and their count in *ninsns. -1 with *e filled on a bad rule. */
int pyrt_devices_program(const struct pyrt_dev_rule *rules, size_t nrules, void **insns,
                         size_t *ninsns, struct pyrt_error *e);

/* Generate, load and attach the program to the cgroup2 directory cgroup_fd (`path`
 * names it in errors). Returns 0, or -1 with *e filled (ENOSYS: no bpf(); EPERM:
 * not allowed to load or attach). */
int pyrt_devices_attach(int cgroup_fd, const char *path, const struct pyrt_dev_rule *rules,
                        size_t nrules, struct pyrt_error *e);

#endif
