"""pyrt's default seccomp profile for containers, an allow-list as docker's is: the
system calls an ordinary program needs are allowed, everything else fails with
EPERM, and a syscall newer than every one the profile names fails with ENOSYS (see
csrc/seccomp_compile.c), so that C libraries fall back to an older call and a syscall a
future kernel adds is never allowed by accident.

Left out: what reaches kernel state no namespace isolates (keyrings, modules, kexec,
clocks, swap, accounting, the kernel log), what widens the kernel's attack surface
for little use in a container (io_uring, bpf, perf_event_open, userfaultfd, vsock
sockets, file handles by number, personalities that turn off ASLR), and what makes
new namespaces and mounts (the container's own are set up before the filter is
loaded). A capability given with cap_add allows the calls that belong to it, as in
docker; privileged containers and `seccomp=unconfined` get no filter.

The profile is built in the OCI linux.seccomp form and compiled by the same code
as an OCI bundle's profile (compile_seccomp, below)."""
from __future__ import annotations

import os

from pyrt import _core, sys as psys
from pyrt.errors import InvalidArgument

EPERM, ENOSYS = 1, 38
_CLONE_NS_FLAGS = (psys.CLONE_NEWNS | psys.CLONE_NEWCGROUP | psys.CLONE_NEWUTS | psys.CLONE_NEWIPC
                   | psys.CLONE_NEWUSER | psys.CLONE_NEWPID | psys.CLONE_NEWNET)
AF_VSOCK = 40
AF_MAX = 46  # one past the last address family Linux 6.18 knows (AF_MCTP is 45)
# persona values a program may set: PER_LINUX, PER_LINUX32 (both with or without
# UNAME26) and 0xffffffff, which only asks for the current one. Not
# ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC and the like.
_PERSONALITIES = (0x0, 0x0008, 0x20000, 0x20008, 0xffffffff)

# seccomp: the kernel's SECCOMP_RET_* values; operators as libseccomp numbers them
SECCOMP_ACTIONS = {
    "SCMP_ACT_KILL": 0x00000000, "SCMP_ACT_KILL_THREAD": 0x00000000, "SCMP_ACT_KILL_PROCESS": 0x80000000,
    "SCMP_ACT_TRAP": 0x00030000, "SCMP_ACT_ERRNO": 0x00050000, "SCMP_ACT_TRACE": 0x7ff00000,
    "SCMP_ACT_LOG": 0x7ffc0000, "SCMP_ACT_ALLOW": 0x7fff0000,
}
SECCOMP_OPS = {
    "SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4, "SCMP_CMP_GE": 5,
    "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7,
}
SECCOMP_FLAGS = {"SECCOMP_FILTER_FLAG_TSYNC": 1, "SECCOMP_FILTER_FLAG_LOG": 2,
                 "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4}
SECCOMP_ARCHS = {
    "SCMP_ARCH_X86": "x86", "SCMP_ARCH_X86_64": "x86_64", "SCMP_ARCH_X32": "x32",
    "SCMP_ARCH_ARM": "arm", "SCMP_ARCH_AARCH64": "aarch64", "SCMP_ARCH_MIPS": "mips",
    "SCMP_ARCH_MIPS64": "mips64", "SCMP_ARCH_MIPS64N32": "mips64n32", "SCMP_ARCH_MIPSEL": "mipsel",
    "SCMP_ARCH_MIPSEL64": "mipsel64", "SCMP_ARCH_MIPSEL64N32": "mipsel64n32", "SCMP_ARCH_PPC": "ppc",
    "SCMP_ARCH_PPC64": "ppc64", "SCMP_ARCH_PPC64LE": "ppc64le", "SCMP_ARCH_S390": "s390",
    "SCMP_ARCH_S390X": "s390x", "SCMP_ARCH_PARISC": "parisc", "SCMP_ARCH_PARISC64": "parisc64",
    "SCMP_ARCH_RISCV64": "riscv64",
}

# Allowed for every container, by topic. Names this libseccomp does not know are
# skipped (and then denied, with ENOSYS when newer than the rest).
_FILES = """
    read write readv writev pread64 pwrite64 preadv pwritev preadv2 pwritev2 lseek _llseek
    open openat openat2 creat close close_range dup dup2 dup3 fcntl fcntl64 flock ioctl
    stat fstat lstat stat64 fstat64 lstat64 newfstatat fstatat64 statx statfs fstatfs statfs64
    fstatfs64 access faccessat faccessat2 truncate ftruncate truncate64 ftruncate64 fallocate
    fadvise64 fadvise64_64 arm_fadvise64_64 readahead sync syncfs fsync fdatasync sync_file_range
    sync_file_range2 pipe pipe2 sendfile sendfile64 splice tee vmsplice copy_file_range
    getdents getdents64 readdir mkdir mkdirat rmdir rename renameat renameat2 link linkat unlink
    unlinkat symlink symlinkat readlink readlinkat chmod fchmod fchmodat fchmodat2 chown fchown
    lchown fchownat chown32 fchown32 lchown32 utime utimes futimesat utimensat utimensat_time64
    mknod mknodat chdir fchdir getcwd umask cachestat
    chroot
    getxattr lgetxattr fgetxattr setxattr lsetxattr fsetxattr listxattr llistxattr flistxattr
    removexattr lremovexattr fremovexattr getxattrat setxattrat listxattrat removexattrat
    file_getattr file_setattr
    inotify_init inotify_init1 inotify_add_watch inotify_rm_watch fanotify_mark
    io_setup io_destroy io_submit io_cancel io_getevents io_pgetevents io_pgetevents_time64
"""
_WAITING = """
    poll ppoll ppoll_time64 select _newselect pselect6 pselect6_time64 epoll_create epoll_create1
    epoll_ctl epoll_ctl_old epoll_wait epoll_wait_old epoll_pwait epoll_pwait2 eventfd eventfd2
    signalfd signalfd4 timerfd_create timerfd_settime timerfd_gettime timerfd_settime64
    timerfd_gettime64 futex futex_time64 futex_waitv futex_wake futex_wait futex_requeue
    set_robust_list get_robust_list
"""
_MEMORY = """
    brk mmap mmap2 munmap mremap mprotect pkey_mprotect pkey_alloc pkey_free madvise mlock
    mlock2 munlock mlockall munlockall mincore msync remap_file_pages membarrier memfd_create
    memfd_secret map_shadow_stack mseal process_mrelease
"""
_PROCESSES = """
    fork vfork execve execveat exit exit_group wait4 waitid waitpid kill tkill tgkill
    pidfd_open pidfd_send_signal getpid getppid gettid getpgid setpgid getpgrp getsid setsid
    getuid geteuid getgid getegid getuid32 geteuid32 getgid32 getegid32 setuid setgid setuid32
    setgid32 setreuid setregid setreuid32 setregid32 setresuid setresgid setresuid32
    setresgid32 getresuid getresgid getresuid32 getresgid32 setfsuid setfsgid setfsuid32
    setfsgid32 getgroups setgroups getgroups32 setgroups32 capget capset prctl arch_prctl
    set_tid_address set_thread_area get_thread_area rseq seccomp restart_syscall
    landlock_create_ruleset landlock_add_rule landlock_restrict_self
    getpriority setpriority nice ioprio_get ioprio_set sched_yield sched_getaffinity
    sched_setaffinity sched_getparam sched_setparam sched_getscheduler sched_setscheduler
    sched_get_priority_max sched_get_priority_min sched_rr_get_interval
    sched_rr_get_interval_time64 sched_getattr sched_setattr getcpu
    getrlimit setrlimit ugetrlimit prlimit64 getrusage times uname sysinfo getrandom
    sethostname setdomainname
"""
_SIGNALS_AND_TIME = """
    rt_sigaction rt_sigprocmask rt_sigreturn rt_sigpending rt_sigtimedwait
    rt_sigtimedwait_time64 rt_sigsuspend rt_sigqueueinfo rt_tgsigqueueinfo sigaction
    sigprocmask sigreturn signal sigpending sigsuspend sigaltstack pause alarm
    nanosleep clock_nanosleep clock_nanosleep_time64 clock_gettime clock_gettime64
    clock_getres clock_getres_time64 gettimeofday time getitimer setitimer timer_create
    timer_settime timer_gettime timer_getoverrun timer_delete timer_settime64 timer_gettime64
    adjtimex clock_adjtime clock_adjtime64
"""
_NETWORK_AND_IPC = """
    socketpair bind connect listen accept accept4 getsockname getpeername sendto recvfrom
    send recv sendmsg recvmsg sendmmsg recvmmsg recvmmsg_time64 shutdown setsockopt getsockopt
    socketcall
    msgget msgsnd msgrcv msgctl semget semop semtimedop semtimedop_time64 semctl shmget shmat
    shmdt shmctl ipc mq_open mq_unlink mq_timedsend mq_timedreceive mq_timedsend_time64
    mq_timedreceive_time64 mq_notify mq_getsetattr
"""
# (chroot needs CAP_SYS_CHROOT, which containers have by default; cap_drop is left
# to the kernel's own check)
# ptrace cannot get around a seccomp filter since Linux 4.8, so docker allows it
# (with process_vm_*, which need the same access to the target)
_TRACING = "ptrace process_vm_readv process_vm_writev"

# capability -> the system calls it allows (as the kernel requires it for them)
_BY_CAP = {
    "SYS_ADMIN": """bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick lookup_dcookie mount
                    mount_setattr move_mount name_to_handle_at open_tree open_tree_attr perf_event_open
                    quotactl quotactl_fd setns swapon swapoff syslog umount umount2 unshare""",
    "SYS_BOOT": "reboot",
    "SYS_MODULE": "init_module finit_module delete_module",
    "SYS_PACCT": "acct",
    "SYS_PTRACE": "kcmp pidfd_getfd process_madvise process_vm_readv process_vm_writev ptrace userfaultfd",
    "SYS_RAWIO": "iopl ioperm",
    "SYS_TIME": "settimeofday stime clock_settime clock_settime64",
    "SYS_TTY_CONFIG": "vhangup",
    "SYS_NICE": "get_mempolicy set_mempolicy mbind move_pages set_mempolicy_home_node",
    "SYSLOG": "syslog",
    "DAC_READ_SEARCH": "open_by_handle_at name_to_handle_at",
    "BPF": "bpf",
    "PERFMON": "perf_event_open",
}
# Never allowed (for the record: denied by leaving them out): kexec_load kexec_file_load
# add_key keyctl request_key io_uring_setup io_uring_enter io_uring_register modify_ldt
# vm86 vm86old uselib ustat sysfs _sysctl create_module get_kernel_syms query_module
# nfsservctl personality with other values, socket(AF_VSOCK), new namespaces.


def _names(*groups) -> list[str]:
    return sorted({n for g in groups for n in g.split()})


def _allow(names, *args) -> dict:
    rule = {"names": list(names), "action": "SCMP_ACT_ALLOW"}
    if args:
        rule["args"] = list(args)
    return rule


def _arg0(op, value, value_two=0) -> dict:
    return {"index": 0, "value": value, "valueTwo": value_two, "op": op}


def default_profile(cap_add=()) -> dict:
    """The default profile (OCI linux.seccomp form) for a container with `cap_add`
    (names with or without CAP_, or ALL)."""
    given = {c.upper().removeprefix("CAP_") for c in cap_add}
    has = (lambda cap: True) if "ALL" in given else given.__contains__
    everyone = _names(_FILES, _WAITING, _MEMORY, _PROCESSES, _SIGNALS_AND_TIME, _NETWORK_AND_IPC, _TRACING)
    rules = [_allow(everyone)]
    # socket: every address family but AF_VSOCK (a way out to the host's hypervisor).
    # Written as allowed values, not as "!= 40": the filter sees all 64 bits of the
    # argument and the kernel only the low 32, so 0x1_0000_0028 would be AF_VSOCK.
    rules.append(_allow(["socket"], _arg0("SCMP_CMP_LT", AF_VSOCK)))
    rules += [_allow(["socket"], _arg0("SCMP_CMP_EQ", af)) for af in range(AF_VSOCK + 1, AF_MAX)]
    rules += [_allow(["personality"], _arg0("SCMP_CMP_EQ", p)) for p in _PERSONALITIES]
    lifted = set(_names(*(calls for cap, calls in _BY_CAP.items() if has(cap)))) - set(everyone)
    if lifted:
        rules.append(_allow(sorted(lifted)))
    if not has("SYS_ADMIN"):
        # threads and processes, but no new namespaces
        rules.append(_allow(["clone"], _arg0("SCMP_CMP_MASKED_EQ", _CLONE_NS_FLAGS, 0)))
        # the filter cannot read clone3's flags (they are in memory): ENOSYS makes
        # C libraries fall back to clone, whose flags it can
        rules.append({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS})
    return {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": EPERM,
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": rules}


def available() -> bool:
    return bool(_core.seccomp_available())


_compiled_memo: dict = {}  # cap_add -> (program, flags); a dict, not functools.lru_cache:
#                            importing functools costs `pyrt run --rootfs` more than its run (measured)


def _compiled(cap_add: tuple) -> tuple:
    """The default profile compiled: libseccomp takes some 20 ms for it, which a short
    `pyrt run` would pay every time, so the program is kept in a cache file keyed by
    everything that shapes it (see _versions)."""
    if cap_add not in _compiled_memo:
        if len(_compiled_memo) >= 16:
            _compiled_memo.clear()
        _compiled_memo[cap_add] = _compile_cached(cap_add)
    return _compiled_memo[cap_add]


_compiled.cache_clear = _compiled_memo.clear  # as lru_cache's


def _compile_cached(cap_add: tuple) -> tuple:
    if not all(c and c.isascii() and c.replace("_", "").isalnum() for c in cap_add):
        # a name that is no capability's (caps.resolve refuses it later) never becomes
        # part of a path: "../x" would put the cache file elsewhere
        return compile_seccomp(default_profile(cap_add))
    key = "-".join([*cap_add, *map(str, _versions())]) if cap_add else "-".join(map(str, _versions()))
    path = os.path.join(_cache_dir(), f"seccomp-{key}.bpf")
    try:
        if _ours(os.path.dirname(path)):
            with open(path, "rb") as f:
                if _ours(f.fileno()):
                    data = f.read()
                    flags, prog = int.from_bytes(data[:4], "little"), data[4:]
                    if prog and len(prog) % 8 == 0:
                        return prog, flags
    except OSError:
        pass
    prog, flags = compile_seccomp(default_profile(cap_add))
    _write_cache(path, flags.to_bytes(4, "little") + bytes(prog))
    return prog, flags


def _versions() -> list:
    """What shapes the program besides cap_add, told apart by file identity: this
    module (the profile), the compiled core (libseccomp, pyrt's filter code), and
    the machine."""
    out = []
    for path in (__file__, _core.__file__):
        st = os.stat(path)
        out += [st.st_size, st.st_mtime_ns]
    return out + [os.uname().machine]


def _cache_dir() -> str:
    """Root's /var/cache/pyrt; an ordinary user's $XDG_CACHE_HOME/pyrt (each only
    writable by its owner: a filter read from there is trusted)."""
    if os.geteuid() == 0:
        return "/var/cache/pyrt"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "pyrt")


def _ours(path_or_fd) -> bool:
    """Owned by us and writable by nobody else: a filter read from it is trusted."""
    st = os.stat(path_or_fd)
    return st.st_uid == os.geteuid() and not st.st_mode & 0o022


def _write_cache(path: str, data: bytes) -> None:
    """Atomically, and only into a directory of our own that nobody else can write."""
    d = os.path.dirname(path)
    try:
        os.makedirs(d, mode=0o700, exist_ok=True)
        if not _ours(d):
            return
        tmp = f"{path}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except OSError:
        pass  # no cache: compiled again next time


def from_security_opt(security_opt, cap_add, privileged):
    """The container's seccomp setting from docker's --security-opt: "default",
    "unconfined" or a profile (a dict, checked by compiling it now)."""
    value = "default"
    for opt in security_opt or ():
        key, sep, v = str(opt).partition("=")
        if key == "no-new-privileges" and v in ("", "true"):
            continue  # always so
        if key != "seccomp" or not sep or not v:
            raise InvalidArgument(f"unsupported --security-opt {opt!r}: use seccomp=unconfined or "
                                  "seccomp=PROFILE.json")
        value = v
    if value not in ("default", "unconfined"):
        import json  # here: the other cases do not need it (measured: json imports re)
        try:
            with open(value, "rb") as f:
                value = json.loads(f.read())
        except OSError as e:
            raise InvalidArgument(f"seccomp profile {value}: {e.strerror}") from None
        except ValueError as e:
            raise InvalidArgument(f"seccomp profile {value}: not JSON ({e})") from None
    filter_for(cap_add or (), privileged, None if value == "default" else value)  # errors now
    return value


def filter_for(cap_add=(), privileged=False, profile=None):
    """(BPF program bytes, seccomp flags) for a container, or None for no filter:
    privileged, `profile` "unconfined", or a pyrt built without libseccomp.
    `profile`: None for the default, or a profile dict (OCI/docker JSON form)."""
    if privileged or profile == "unconfined" or not available():
        return None
    if profile is not None:
        return compile_seccomp(profile)
    return _compiled(tuple(sorted(cap_add)))


def compile_seccomp(sc) -> tuple:
    """A seccomp profile (linux.seccomp) -> (BPF program bytes, seccomp() flags)."""
    from pyrt import _core
    from pyrt.errors import SpawnError
    from pyrt.oci import fields
    fields.typed(sc, dict, "linux.seccomp", "an object")
    if not _core.seccomp_available():
        raise fields.err("linux.seccomp", "this pyrt was built without libseccomp (apt-get install "
                                    "libseccomp-dev, then reinstall pyrt): the profile cannot be loaded")
    if sc.get("listenerPath"):
        raise fields.err("linux.seccomp.listenerPath", "seccomp notify is not supported")

    def action(name, errno_ret, where):
        if name == "SCMP_ACT_NOTIFY":
            raise fields.err(where, "SCMP_ACT_NOTIFY is not supported")
        if name not in SECCOMP_ACTIONS:
            raise fields.err(where, f"unknown action {name!r}")
        value = SECCOMP_ACTIONS[name]
        if name == "SCMP_ACT_ERRNO":
            value |= (1 if errno_ret is None else fields.integer(errno_ret, where, 0, 0xffff)) & 0xffff
        elif name == "SCMP_ACT_TRACE":
            value |= (1 if errno_ret is None else fields.integer(errno_ret, where, 0, 0xffff)) & 0xffff
        return value

    default = action(sc.get("defaultAction"), sc.get("defaultErrnoRet"), "linux.seccomp.defaultAction")
    archs = []
    for a in fields.str_list(sc.get("architectures") or [], "linux.seccomp.architectures"):
        if a not in SECCOMP_ARCHS:
            raise fields.err("linux.seccomp.architectures", f"unknown architecture {a!r}")
        archs.append(SECCOMP_ARCHS[a].encode())
    flags = 0
    for f in fields.str_list(sc.get("flags") or [], "linux.seccomp.flags"):
        if f not in SECCOMP_FLAGS:
            raise fields.err("linux.seccomp.flags", f"unknown flag {f!r}")
        flags |= SECCOMP_FLAGS[f]
    rules = []
    for i, s in enumerate(sc.get("syscalls") or []):
        where = f"linux.seccomp.syscalls[{i}]"
        fields.typed(s, dict, where, "an object")
        names = fields.str_list(s.get("names") or [], where + ".names")
        act = action(s.get("action"), s.get("errnoRet"), where + ".action")
        args = []
        for j, a in enumerate(s.get("args") or []):
            w = f"{where}.args[{j}]"
            fields.typed(a, dict, w, "an object")
            op = SECCOMP_OPS.get(a.get("op"))
            if op is None:
                raise fields.err(w + ".op", f"unknown operator {a.get('op')!r}")
            args.append((fields.integer(a.get("index", 0), w + ".index", 0, 5), op,
                         fields.integer(a.get("value", 0), w + ".value", 0, 2**64 - 1),
                         fields.integer(a.get("valueTwo", 0), w + ".valueTwo", 0, 2**64 - 1)))
        rules.append((act, [n.encode() for n in names], args))
    try:
        return _core.seccomp_compile(default, archs, rules), flags
    except SpawnError as e:
        raise fields.err("linux.seccomp", str(e)) from None
