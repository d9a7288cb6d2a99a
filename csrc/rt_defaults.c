/* See rt_defaults.h. */
#include "rt_defaults.h"

#include <string.h>
#include <unistd.h>

#include "rt_cgroup.h"
#include "rt_json.h"

static void strs(yajl_gen g, const char *const *v)
{
    yajl_gen_array_open(g);
    for (; *v; v++)
        rt_gen_str(g, *v);
    yajl_gen_array_close(g);
}

static void kv_bool(yajl_gen g, const char *key, int value)
{
    rt_gen_str(g, key);
    yajl_gen_bool(g, value);
}

static void enabled(yajl_gen g, const char *key, int value)
{
    rt_gen_str(g, key);
    yajl_gen_map_open(g);
    kv_bool(g, "enabled", value);
    yajl_gen_map_close(g);
}

static const char *const HOOKS[] = {"prestart", "createRuntime", "createContainer", "startContainer",
                                    "poststart", "poststop", NULL};
static const char *const MOUNT_OPTIONS[] = {
    "U", "Z", "async", "atime", "bind", "copy", "defaults", "dev", "diratime", "dirsync", "exec", "iversion",
    "lazytime", "loud", "mand", "noatime", "nocopy", "nodev", "nodiratime", "noexec", "noiversion",
    "nolazytime", "nomand", "norelatime", "nostrictatime", "nosuid", "notmpcopyup", "private", "rbind",
    "relatime", "remount", "ro", "rprivate", "rshared", "rslave", "runbindable", "rw", "shared", "silent",
    "slave", "strictatime", "suid", "sync", "tmpcopyup", "unbindable", "z", NULL};
static const char *const NAMESPACES[] = {"cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts",
                                         NULL};
static const char *const CAPS[] = {
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT",
    "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
    "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
    NULL};
static const char *const SECCOMP_ACTIONS[] = {"SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL",
                                              "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG",
                                              "SCMP_ACT_TRACE", "SCMP_ACT_TRAP", NULL};
static const char *const SECCOMP_OPS[] = {"SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE",
                                          "SCMP_CMP_LT", "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE", NULL};
static const char *const SECCOMP_ARCHS[] = {
    "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM", "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32",
    "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PARISC",
    "SCMP_ARCH_PARISC64", "SCMP_ARCH_PPC", "SCMP_ARCH_PPC64", "SCMP_ARCH_PPC64LE", "SCMP_ARCH_RISCV64",
    "SCMP_ARCH_S390", "SCMP_ARCH_S390X", "SCMP_ARCH_X32", "SCMP_ARCH_X86", "SCMP_ARCH_X86_64", NULL};
static const char *const SECCOMP_FLAGS[] = {"SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
                                            "SECCOMP_FILTER_FLAG_TSYNC", NULL};
static const char *const NONE[] = {NULL};

void rt_gen_features(yajl_gen g, const char *version, int seccomp)
{
    const struct rt_layout *lay = rt_layout();
    yajl_gen_map_open(g);
    rt_gen_kv_str(g, "ociVersionMin", "1.0.0");
    rt_gen_kv_str(g, "ociVersionMax", RT_SPEC_VERSION);
    rt_gen_str(g, "hooks");
    strs(g, HOOKS);
    rt_gen_str(g, "mountOptions");
    strs(g, MOUNT_OPTIONS);
    rt_gen_str(g, "linux");
    yajl_gen_map_open(g);
    rt_gen_str(g, "namespaces");
    strs(g, NAMESPACES);
    rt_gen_str(g, "capabilities");
    strs(g, CAPS);
    rt_gen_str(g, "cgroup");
    yajl_gen_map_open(g);
    kv_bool(g, "v1", lay != NULL && lay->nv1 > 0);
    kv_bool(g, "v2", lay != NULL && lay->unified[0]);
    kv_bool(g, "systemd", rt_systemd_available());
    kv_bool(g, "systemdUser", 0);
    kv_bool(g, "rdma", 0);
    yajl_gen_map_close(g);
    rt_gen_str(g, "seccomp");
    yajl_gen_map_open(g);
    kv_bool(g, "enabled", seccomp);
    rt_gen_str(g, "actions");
    strs(g, seccomp ? SECCOMP_ACTIONS : NONE);
    rt_gen_str(g, "operators");
    strs(g, seccomp ? SECCOMP_OPS : NONE);
    rt_gen_str(g, "archs");
    strs(g, seccomp ? SECCOMP_ARCHS : NONE);
    rt_gen_str(g, "knownFlags");
    strs(g, SECCOMP_FLAGS);
    rt_gen_str(g, "supportedFlags");
    strs(g, seccomp ? SECCOMP_FLAGS : NONE);
    yajl_gen_map_close(g);
    enabled(g, "apparmor", 0);
    enabled(g, "selinux", 0);
    enabled(g, "intelRdt", 0);
    rt_gen_str(g, "mountExtensions");
    yajl_gen_map_open(g);
    enabled(g, "idmap", 0);
    yajl_gen_map_close(g);
    yajl_gen_map_close(g); /* linux */
    rt_gen_str(g, "annotations");
    yajl_gen_map_open(g);
    rt_gen_kv_str(g, "org.pyrt.runtime.version", version);
    yajl_gen_map_close(g);
    yajl_gen_map_close(g);
}

/* -- spec -------------------------------------------------------------------------- */

static void mount(yajl_gen g, const char *dest, const char *type, const char *source, const char *const *opts)
{
    yajl_gen_map_open(g);
    rt_gen_kv_str(g, "destination", dest);
    rt_gen_kv_str(g, "type", type);
    rt_gen_kv_str(g, "source", source);
    if (opts != NULL) {
        rt_gen_str(g, "options");
        strs(g, opts);
    }
    yajl_gen_map_close(g);
}

static void id_map(yajl_gen g, const char *key, unsigned int host)
{
    rt_gen_str(g, key);
    yajl_gen_array_open(g);
    yajl_gen_map_open(g);
    rt_gen_str(g, "containerID");
    yajl_gen_integer(g, 0);
    rt_gen_str(g, "hostID");
    yajl_gen_integer(g, host);
    rt_gen_str(g, "size");
    yajl_gen_integer(g, 1);
    yajl_gen_map_close(g);
    yajl_gen_array_close(g);
}

void rt_gen_default_config(yajl_gen g, int rootless)
{
    static const char *const caps[] = {"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE", NULL};
    static const char *const env[] = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                                      "TERM=xterm", NULL};
    static const char *const args[] = {"sh", NULL};
    yajl_gen_map_open(g);
    rt_gen_kv_str(g, "ociVersion", RT_SPEC_VERSION);
    rt_gen_str(g, "process");
    yajl_gen_map_open(g);
    kv_bool(g, "terminal", 1);
    rt_gen_str(g, "user");
    yajl_gen_map_open(g);
    rt_gen_str(g, "uid");
    yajl_gen_integer(g, 0);
    rt_gen_str(g, "gid");
    yajl_gen_integer(g, 0);
    yajl_gen_map_close(g);
    rt_gen_str(g, "args");
    strs(g, args);
    rt_gen_str(g, "env");
    strs(g, env);
    rt_gen_kv_str(g, "cwd", "/");
    rt_gen_str(g, "capabilities");
    yajl_gen_map_open(g);
    static const char *const sets[] = {"bounding", "effective", "permitted", "ambient", NULL};
    for (const char *const *s = sets; *s; s++) {
        rt_gen_str(g, *s);
        strs(g, caps);
    }
    yajl_gen_map_close(g);
    rt_gen_str(g, "rlimits");
    yajl_gen_array_open(g);
    yajl_gen_map_open(g);
    rt_gen_kv_str(g, "type", "RLIMIT_NOFILE");
    rt_gen_str(g, "hard");
    yajl_gen_integer(g, 1024);
    rt_gen_str(g, "soft");
    yajl_gen_integer(g, 1024);
    yajl_gen_map_close(g);
    yajl_gen_array_close(g);
    kv_bool(g, "noNewPrivileges", 1);
    yajl_gen_map_close(g); /* process */
    rt_gen_str(g, "root");
    yajl_gen_map_open(g);
    rt_gen_kv_str(g, "path", "rootfs");
    kv_bool(g, "readonly", 1);
    yajl_gen_map_close(g);
    rt_gen_kv_str(g, "hostname", "pyrt");

    static const char *const dev[] = {"nosuid", "strictatime", "mode=755", "size=65536k", NULL};
    static const char *const pts[] = {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5",
                                      NULL};
    static const char *const pts_rootless[] = {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620",
                                               NULL};
    static const char *const shm[] = {"nosuid", "noexec", "nodev", "mode=1777", "size=65536k", NULL};
    static const char *const mq[] = {"nosuid", "noexec", "nodev", NULL};
    static const char *const ro[] = {"nosuid", "noexec", "nodev", "ro", NULL};
    static const char *const cg[] = {"nosuid", "noexec", "nodev", "relatime", "ro", NULL};
    static const char *const sys_rootless[] = {"rbind", "nosuid", "noexec", "nodev", "ro", NULL};
    rt_gen_str(g, "mounts");
    yajl_gen_array_open(g);
    mount(g, "/proc", "proc", "proc", NULL);
    mount(g, "/dev", "tmpfs", "tmpfs", dev);
    mount(g, "/dev/pts", "devpts", "devpts", rootless ? pts_rootless : pts);
    mount(g, "/dev/shm", "tmpfs", "shm", shm);
    mount(g, "/dev/mqueue", "mqueue", "mqueue", mq);
    if (rootless) {
        mount(g, "/sys", "none", "/sys", sys_rootless);
    } else {
        mount(g, "/sys", "sysfs", "sysfs", ro);
        mount(g, "/sys/fs/cgroup", "cgroup", "cgroup", cg);
    }
    yajl_gen_array_close(g);

    rt_gen_str(g, "linux");
    yajl_gen_map_open(g);
    if (!rootless) {
        rt_gen_str(g, "resources");
        yajl_gen_map_open(g);
        rt_gen_str(g, "devices");
        yajl_gen_array_open(g);
        yajl_gen_map_open(g);
        kv_bool(g, "allow", 0);
        rt_gen_kv_str(g, "access", "rwm");
        yajl_gen_map_close(g);
        yajl_gen_array_close(g);
        yajl_gen_map_close(g);
    }
    rt_gen_str(g, "namespaces");
    yajl_gen_array_open(g);
    static const char *const ns[] = {"pid", "network", "ipc", "uts", "mount", "cgroup", NULL};
    for (const char *const *t = ns; *t; t++) {
        yajl_gen_map_open(g);
        rt_gen_kv_str(g, "type", *t);
        yajl_gen_map_close(g);
    }
    if (rootless) {
        yajl_gen_map_open(g);
        rt_gen_kv_str(g, "type", "user");
        yajl_gen_map_close(g);
    }
    yajl_gen_array_close(g);
    static const char *const masked[] = {"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                                         "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                                         "/proc/sched_debug", "/sys/firmware", "/proc/scsi", NULL};
    static const char *const ro_paths[] = {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                                           "/proc/sysrq-trigger", NULL};
    rt_gen_str(g, "maskedPaths");
    strs(g, masked);
    rt_gen_str(g, "readonlyPaths");
    strs(g, ro_paths);
    if (rootless) {
        id_map(g, "uidMappings", (unsigned int)getuid());
        id_map(g, "gidMappings", (unsigned int)getgid());
    }
    yajl_gen_map_close(g); /* linux */
    yajl_gen_map_close(g);
}
