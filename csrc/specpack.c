/* The spawn spec packed into one flat buffer and back (see specpack.h). */
#include "specpack.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "err.h"

/* pyrt_spec_pack must know every pointer of the spec: these mirrors of the
 * structs as pack knows them make the build fail when a field is added (a new
 * pointer always changes the size) until pack and unpack learn it. */
struct spec_layout {
    const char *const *argv, *const *envp;
    const char *path, *cwd, *rootfs;
    const char *const *lowerdirs;
    size_t nlower;
    const char *upperdir, *workdir, *overlay_options, *anchor;
    int readonly_root;
    const char *upper_tmpfs;
    uint64_t clone_flags;
    unsigned int setup;
    const char *hostname;
    const struct pyrt_mount *mounts;
    size_t nmounts;
    const char *const *masked_paths, *const *readonly_paths;
    int set_user;
    uid_t uid;
    gid_t gid;
    const gid_t *groups;
    size_t ngroups;
    uint64_t caps;
    int umask;
    const struct pyrt_rlimit *rlimits;
    size_t nrlimits;
    const char *uid_map, *gid_map;
    const char *uid_map_helper, *gid_map_helper;
    int setgroups_deny;
    int userns_fd;
    int stdio[3];
    int console_fd;
    int netns_fd;
    int cgroup_fd;
    int reaper_fd;
    const int *cgroup_procs_fds;
    size_t ncgroup_procs;
    int init;
    const char *init_path;
    const void *seccomp;
    size_t seccomp_len;
    unsigned int seccomp_flags;
    const struct pyrt_oci *oci;
};
struct mount_layout {
    int kind;
    unsigned int flags;
    const char *source, *target, *data, *fstype;
    unsigned long propagation;
};
_Static_assert(sizeof(struct spec_layout) == sizeof(struct pyrt_spawn_spec),
               "struct pyrt_spawn_spec changed: teach pyrt_spec_pack/unpack (csrc/specpack.c) its new fields");
_Static_assert(sizeof(struct mount_layout) == sizeof(struct pyrt_mount),
               "struct pyrt_mount changed: teach pyrt_spec_pack/unpack (csrc/specpack.c) its new fields");

uintptr_t pyrt_pack_bytes(struct pyrt_packer *p, const void *src, size_t n)
{
    size_t at = (p->len + 7) & ~(size_t)7;
    if (at + n > p->cap || at + n < at) {
        p->overflow = 1;
        return 0;
    }
    if (src)
        memcpy(p->buf + at, src, n);
    else
        memset(p->buf + at, 0, n);
    p->len = at + n;
    return (uintptr_t)at + 1;
}

uintptr_t pyrt_pack_str(struct pyrt_packer *p, const char *s)
{
    return s ? pyrt_pack_bytes(p, s, strlen(s) + 1) : 0;
}

uintptr_t pyrt_pack_strv(struct pyrt_packer *p, const char *const *v)
{
    if (!v)
        return 0;
    size_t n = 0;
    while (v[n])
        n++;
    uintptr_t at = pyrt_pack_bytes(p, NULL, (n + 1) * sizeof(uintptr_t));
    if (!at)
        return 0;
    for (size_t i = 0; i < n; i++) {
        uintptr_t s = pyrt_pack_str(p, v[i]);
        memcpy(p->buf + at - 1 + i * sizeof s, &s, sizeof s);
    }
    return at;
}

#define AS_PTR(type, off) ((type)(uintptr_t)(off))

ssize_t pyrt_spec_pack(const struct pyrt_spawn_spec *s, char *buf, size_t cap, struct pyrt_error *e)
{
    if (s->oci)
        return pyrt_fail_errno(e, EINVAL, "pack spec", "OCI options cannot go through the zygote");
    struct pyrt_packer p = {buf, cap, 0, 0};
    uintptr_t at = pyrt_pack_bytes(&p, s, sizeof *s);
    if (!at)
        return pyrt_fail_errno(e, E2BIG, "pack spec", "");
    struct pyrt_spawn_spec c = *s;
    c.argv = AS_PTR(const char *const *, pyrt_pack_strv(&p, s->argv));
    c.envp = AS_PTR(const char *const *, pyrt_pack_strv(&p, s->envp));
    c.path = AS_PTR(const char *, pyrt_pack_str(&p, s->path));
    c.cwd = AS_PTR(const char *, pyrt_pack_str(&p, s->cwd));
    c.rootfs = AS_PTR(const char *, pyrt_pack_str(&p, s->rootfs));
    c.lowerdirs = AS_PTR(const char *const *, pyrt_pack_strv(&p, s->lowerdirs));
    c.upperdir = AS_PTR(const char *, pyrt_pack_str(&p, s->upperdir));
    c.workdir = AS_PTR(const char *, pyrt_pack_str(&p, s->workdir));
    c.overlay_options = AS_PTR(const char *, pyrt_pack_str(&p, s->overlay_options));
    c.anchor = AS_PTR(const char *, pyrt_pack_str(&p, s->anchor));
    c.upper_tmpfs = AS_PTR(const char *, pyrt_pack_str(&p, s->upper_tmpfs));
    c.hostname = AS_PTR(const char *, pyrt_pack_str(&p, s->hostname));
    uintptr_t m = s->nmounts ? pyrt_pack_bytes(&p, s->mounts, s->nmounts * sizeof *s->mounts) : 0;
    for (size_t i = 0; m && i < s->nmounts; i++) {
        struct pyrt_mount mm = s->mounts[i];
        mm.source = AS_PTR(const char *, pyrt_pack_str(&p, s->mounts[i].source));
        mm.target = AS_PTR(const char *, pyrt_pack_str(&p, s->mounts[i].target));
        mm.data = AS_PTR(const char *, pyrt_pack_str(&p, s->mounts[i].data));
        mm.fstype = AS_PTR(const char *, pyrt_pack_str(&p, s->mounts[i].fstype));
        if (!p.overflow)
            memcpy(p.buf + m - 1 + i * sizeof mm, &mm, sizeof mm);
    }
    c.mounts = AS_PTR(const struct pyrt_mount *, m);
    c.masked_paths = AS_PTR(const char *const *, pyrt_pack_strv(&p, s->masked_paths));
    c.readonly_paths = AS_PTR(const char *const *, pyrt_pack_strv(&p, s->readonly_paths));
    c.groups = AS_PTR(const gid_t *, s->ngroups ? pyrt_pack_bytes(&p, s->groups, s->ngroups * sizeof *s->groups) : 0);
    c.rlimits = AS_PTR(const struct pyrt_rlimit *,
                       s->nrlimits ? pyrt_pack_bytes(&p, s->rlimits, s->nrlimits * sizeof *s->rlimits) : 0);
    c.uid_map = AS_PTR(const char *, pyrt_pack_str(&p, s->uid_map));
    c.gid_map = AS_PTR(const char *, pyrt_pack_str(&p, s->gid_map));
    c.uid_map_helper = AS_PTR(const char *, pyrt_pack_str(&p, s->uid_map_helper));
    c.gid_map_helper = AS_PTR(const char *, pyrt_pack_str(&p, s->gid_map_helper));
    c.init_path = AS_PTR(const char *, pyrt_pack_str(&p, s->init_path));
    c.seccomp = AS_PTR(const void *, s->seccomp_len ? pyrt_pack_bytes(&p, s->seccomp, s->seccomp_len * 8) : 0);
    c.cgroup_fd = -1; /* per spawn */
    c.netns_fd = -1;
    c.reaper_fd = -1;
    c.userns_fd = -1;
    c.console_fd = -1;
    c.cgroup_procs_fds = NULL;
    c.ncgroup_procs = 0;
    if (p.overflow)
        return pyrt_fail_errno(e, E2BIG, "pack spec", "");
    memcpy(p.buf + at - 1, &c, sizeof c);
    return (ssize_t)p.len;
}

int pyrt_unpack_ptr(void *field, char *buf, size_t len, size_t need)
{
    uintptr_t off;
    memcpy(&off, field, sizeof off);
    void *ptr = NULL;
    if (off) {
        if (off - 1 > len || need > len - (off - 1))
            return -1;
        ptr = buf + off - 1;
    }
    memcpy(field, &ptr, sizeof ptr);
    return 0;
}

int pyrt_unpack_str(const char **field, char *buf, size_t len)
{
    if (pyrt_unpack_ptr(field, buf, len, 1) < 0)
        return -1;
    return *field && !memchr(*field, '\0', len - (size_t)(*field - buf)) ? -1 : 0;
}

int pyrt_unpack_strv(const char *const **field, char *buf, size_t len)
{
    if (pyrt_unpack_ptr(field, buf, len, sizeof(uintptr_t)) < 0)
        return -1;
    const char **v = (const char **)*field;
    for (size_t i = 0; v; i++) {
        if ((size_t)((char *)(v + i) - buf) + sizeof *v > len)
            return -1;
        uintptr_t off;
        memcpy(&off, &v[i], sizeof off);
        if (!off)
            break;
        if (pyrt_unpack_str(&v[i], buf, len) < 0)
            return -1;
    }
    return 0;
}

int pyrt_spec_unpack(char *buf, size_t len, struct pyrt_spawn_spec **out)
{
    if (len < sizeof(struct pyrt_spawn_spec) || ((uintptr_t)buf & 7))
        return -1;
    struct pyrt_spawn_spec *s = (struct pyrt_spawn_spec *)buf;
    int bad = 0;
    bad |= pyrt_unpack_strv(&s->argv, buf, len) | pyrt_unpack_strv(&s->envp, buf, len);
    bad |= pyrt_unpack_str(&s->path, buf, len) | pyrt_unpack_str(&s->cwd, buf, len) | pyrt_unpack_str(&s->rootfs, buf, len);
    bad |= pyrt_unpack_strv(&s->lowerdirs, buf, len);
    bad |= pyrt_unpack_str(&s->upperdir, buf, len) | pyrt_unpack_str(&s->workdir, buf, len);
    bad |= pyrt_unpack_str(&s->overlay_options, buf, len) | pyrt_unpack_str(&s->anchor, buf, len);
    bad |= pyrt_unpack_str(&s->upper_tmpfs, buf, len) | pyrt_unpack_str(&s->hostname, buf, len);
    bad |= pyrt_unpack_ptr(&s->mounts, buf, len, s->nmounts * sizeof *s->mounts);
    for (size_t i = 0; !bad && i < s->nmounts; i++) {
        struct pyrt_mount *m = (struct pyrt_mount *)&s->mounts[i];
        bad |= pyrt_unpack_str(&m->source, buf, len) | pyrt_unpack_str(&m->target, buf, len);
        bad |= pyrt_unpack_str(&m->data, buf, len) | pyrt_unpack_str(&m->fstype, buf, len);
    }
    bad |= pyrt_unpack_strv(&s->masked_paths, buf, len) | pyrt_unpack_strv(&s->readonly_paths, buf, len);
    bad |= pyrt_unpack_ptr(&s->groups, buf, len, s->ngroups * sizeof *s->groups);
    bad |= pyrt_unpack_ptr(&s->rlimits, buf, len, s->nrlimits * sizeof *s->rlimits);
    bad |= pyrt_unpack_str(&s->uid_map, buf, len) | pyrt_unpack_str(&s->gid_map, buf, len);
    bad |= pyrt_unpack_str(&s->uid_map_helper, buf, len) | pyrt_unpack_str(&s->gid_map_helper, buf, len);
    bad |= pyrt_unpack_str(&s->init_path, buf, len);
    bad |= pyrt_unpack_ptr(&s->seccomp, buf, len, s->seccomp_len * 8);
    s->oci = NULL;
    s->console_fd = -1;
    s->cgroup_fd = -1;
    s->netns_fd = -1;
    s->reaper_fd = -1;
    s->userns_fd = -1;
    s->cgroup_procs_fds = NULL;
    s->ncgroup_procs = 0;
    if (bad || !s->argv || !s->envp)
        return -1;
    *out = s;
    return 0;
}

