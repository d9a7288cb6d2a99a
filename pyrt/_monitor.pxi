# Bindings of csrc/monitor.c (detached containers watched by pyrt-monitor) and
# csrc/exec.c (exec into a running container). Included by _core.pyx after
# _spawn.pxi, whose _Arena, _fill_spawn_spec and pyrt_error it uses.

cdef extern from "monitor.h":
    cdef struct pyrt_monitor_spec:
        const char *monitor_path
        const char *log_path
        const char *exit_path
        const char *oom_path
        long long oom_start
        const char *const *exit_argv
        int stdin_fd
        int tty
        const char *attach_path
        const char *ports
        long long log_max_size
        int log_max_files
        int restart
        int restart_max
        const char *run_path
        const char *stop_path
        int hold_fd

    int pyrt_monitor_start(const pyrt_spawn_spec *spec, const pyrt_monitor_spec *m,
                           pid_t *container_pid, pid_t *monitor_pid, pyrt_error *e) nogil


cdef extern from "exec.h":
    cdef struct pyrt_exec_spec:
        pid_t pid
        int pidfd
        unsigned long long start_time
        uint64_t namespaces
        const char *const *argv
        const char *const *envp
        const char *path
        const char *cwd
        int set_user
        uid_t uid
        gid_t gid
        const gid_t *groups
        size_t ngroups
        uint64_t caps
        unsigned int setup
        int umask
        const pyrt_rlimit *rlimits
        size_t nrlimits
        int stdio[3]
        int cgroup_fd
        const int *cgroup_procs_fds
        size_t ncgroup_procs
        const void *seccomp
        size_t seccomp_len
        unsigned int seccomp_flags

    int pyrt_exec(const pyrt_exec_spec *spec, pid_t *pid, int *pidfd, pyrt_error *e) nogil


# CLONE_NEW* of the namespaces exec_ can join.
from pyrt import sys as _psys
EXEC_NAMESPACES = {
    "user": _psys.CLONE_NEWUSER, "mount": _psys.CLONE_NEWNS, "uts": _psys.CLONE_NEWUTS,
    "ipc": _psys.CLONE_NEWIPC, "net": _psys.CLONE_NEWNET, "pid": _psys.CLONE_NEWPID,
    "cgroup": _psys.CLONE_NEWCGROUP,
}
EXEC_ALL_NAMESPACES = 0
for _ns in EXEC_NAMESPACES.values():
    EXEC_ALL_NAMESPACES |= _ns
del _ns


cdef _raise_spawn_error(pyrt_error *err):
    from pyrt.errors import SpawnError
    raise _error_from_c(err, SpawnError)


def _abspath_bytes(p):
    import os
    return os.fsencode(os.path.abspath(os.fsdecode(p)))


def monitor_start(spec, log_path, exit_path, oom_path=None, exit_argv=None, *, stdin=None,
                  oom_start=None, tty=False, attach_path=None, ports=None, log_max_size=0, log_max_files=1,
                  restart=None, run_path=None, stop_path=None, int hold_fd=-1):
    """Start a detached container from a SpawnSpec (pyrt.launch.spec.build_spec), watched
    by its own pyrt-monitor process, which outlives the caller. Its stdout and
    stderr go to log_path (CRI format, appended), its exit record (JSON) to
    exit_path when it ends; then exit_argv (a list, e.g. a `pyrt rm` command) is
    run if given. oom_path: the container's cgroup memory.events (v2) or
    memory.oom_control (v1), for OOMKilled; oom_start: its oom_kill count now (the
    monitor reads it itself when None). stdin: an fd the container reads (default
    /dev/null). tty: the container gets a terminal, which the monitor holds (its
    output is logged as stdout). attach_path: a socket clients attach to while the
    container runs (csrc/monitor.h). ports: [(host ip, host port, container port)]
    the monitor forwards into the container's network namespace (csrc/portfwd.h).
    log_max_size (bytes, 0: unlimited) and log_max_files: the log's rotation.
    restart: None, or ("on-failure", max tries or 0) / ("always", 0): the monitor
    starts the container again (csrc/monitor.h), recording each run in run_path,
    unless stop_path exists. hold_fd: an fd the monitor keeps open for its life
    (a network helper's exit fd: slirp4netns ends with the monitor).
    spec.stdio is ignored; spec's fds stay owned by the caller.

    Returns (container_pid, monitor_pid); neither is the caller's child. Raises
    SpawnError naming what failed (the container's own start-up error included)."""
    cdef _Arena arena = _Arena()
    cdef pyrt_spawn_spec s
    cdef pyrt_monitor_spec m
    cdef pid_t cpid = 0
    cdef pid_t mpid = 0
    cdef int rc
    cdef pyrt_error err

    _fill_spawn_spec(spec, arena, &s)
    m.monitor_path = arena.cstr(_helper_path("pyrt-monitor"))
    m.log_path = arena.cstr(_abspath_bytes(log_path))
    m.exit_path = arena.cstr(_abspath_bytes(exit_path))
    m.oom_path = arena.cstr(_abspath_bytes(oom_path)) if oom_path is not None else NULL
    m.oom_start = -1 if oom_start is None else int(oom_start)
    if exit_argv is not None:
        import os
        if not exit_argv:
            raise ValueError("exit_argv is empty")
        m.exit_argv = arena.strv([os.fsencode(a) for a in exit_argv])
    else:
        m.exit_argv = NULL
    if stdin is None:
        m.stdin_fd = -1
    else:
        m.stdin_fd = stdin if isinstance(stdin, int) else stdin.fileno()
    m.tty = 1 if tty else 0
    m.attach_path = arena.cstr(_abspath_bytes(attach_path)) if attach_path is not None else NULL
    m.log_max_size = log_max_size
    m.log_max_files = log_max_files
    modes = {None: 0, "no": 0, "on-failure": 1, "always": 2, "unless-stopped": 2}
    m.restart = modes[restart[0] if restart else None]
    m.restart_max = restart[1] if restart else 0
    m.run_path = arena.cstr(_abspath_bytes(run_path)) if run_path is not None else NULL
    m.stop_path = arena.cstr(_abspath_bytes(stop_path)) if stop_path is not None else NULL
    m.hold_fd = hold_fd
    m.ports = arena.cstr(",".join(f"{ip}:{hp}:{cp}" for ip, hp, cp in ports).encode()) if ports else NULL
    with nogil:
        rc = pyrt_monitor_start(&s, &m, &cpid, &mpid, &err)
    if rc < 0:
        _raise_spawn_error(&err)
    return cpid, mpid


class ExecSpec:
    """What exec_ needs to run a command in a running container. env is a list of
    b"K=V" (or a dict); user (uid, gid, [groups]), or None: the caller's ids
    unchanged; namespaces a CLONE_NEW* mask (default: all; those the caller shares
    are skipped); caps the capability mask (given: policy such as docker's default
    set is pyrt.launch.spec.build_exec_spec's); seccomp a BPF program (bytes, 8 per
    instruction) with seccomp_flags, or None. Every field is set here; exec_ reads
    them as they are."""

    __slots__ = ("pid", "pidfd", "start_time", "namespaces", "argv", "env", "path", "cwd", "user", "caps",
                 "no_new_privs", "new_session", "umask", "rlimits", "stdio", "cgroup_fd", "cgroup_procs_fds",
                 "seccomp", "seccomp_flags")

    def __init__(self, pid, argv, env=(), *, pidfd=-1, start_time=0, namespaces=None,
                 path=None, cwd=None, user=None, caps, no_new_privs=True,
                 new_session=False, umask=-1, rlimits=(), stdio=(-1, -1, -1), cgroup_fd=-1,
                 cgroup_procs_fds=(), seccomp=None, seccomp_flags=0):
        import os
        self.pid, self.pidfd, self.start_time = pid or 0, pidfd, start_time or 0
        self.namespaces = EXEC_ALL_NAMESPACES if namespaces is None else namespaces
        if isinstance(argv, (str, bytes, os.PathLike)):
            argv = [argv]
        self.argv = [os.fsencode(a) for a in argv]
        if isinstance(env, dict):
            env = [os.fsencode(f"{k}={v}") for k, v in env.items()]
        self.env = [os.fsencode(e) for e in env]
        if path is None:
            path = next((e[5:] for e in self.env if e.startswith(b"PATH=")), None)
        self.path = os.fsencode(path) if path is not None else None
        self.cwd = os.fsencode(cwd) if cwd is not None else None
        self.user = user
        self.caps = int(caps)
        self.no_new_privs, self.new_session = no_new_privs, new_session
        self.umask = umask
        self.rlimits = list(rlimits)
        self.stdio = tuple(stdio)
        self.cgroup_fd, self.cgroup_procs_fds = cgroup_fd, list(cgroup_procs_fds)
        self.seccomp, self.seccomp_flags = seccomp, seccomp_flags

    @classmethod
    def from_spawn_spec(cls, spec, pid, *, pidfd=-1, start_time=0, namespaces=None):
        """The argv, env, PATH, cwd, user, caps, no_new_privs, umask, rlimits,
        stdio and cgroup fds of a SpawnSpec (pyrt.launch.spec.build_spec(...) with no
        rootfs), for the container whose init is pid."""
        return cls(pid, spec.argv, spec.env, pidfd=pidfd, start_time=start_time,
                   namespaces=namespaces, path=spec.path, cwd=spec.cwd, user=spec.user,
                   caps=spec.caps, no_new_privs=bool(spec.setup & PYRT_SETUP_NO_NEW_PRIVS),
                   new_session=bool(spec.setup & PYRT_SETUP_SETSID), umask=spec.umask,
                   rlimits=spec.rlimits, stdio=spec.stdio, cgroup_fd=spec.cgroup_fd,
                   cgroup_procs_fds=spec.cgroup_procs_fds)


def exec_(spec):
    """Run a command in the namespaces, cgroups, root and working directory of a
    running container (spec: an ExecSpec, whose every field is read as it is).
    Returns (pid, pidfd) of the new process, the caller's child: wait for it with
    wait(pidfd), then close the pidfd. Raises SpawnError naming what failed
    (e.g. `exec "nosuch": No such file or directory`)."""
    cdef _Arena arena = _Arena()
    cdef pyrt_exec_spec s
    cdef pyrt_rlimit *rlimits
    cdef gid_t *groups
    cdef int *procs
    cdef Py_ssize_t i
    cdef pid_t pid = 0
    cdef int pidfd = -1
    cdef int rc
    cdef pyrt_error err
    cdef bytes prog = spec.seccomp

    s.pid = spec.pid
    s.pidfd = spec.pidfd
    s.start_time = spec.start_time
    s.namespaces = spec.namespaces
    s.argv = arena.strv(spec.argv)
    s.envp = arena.strv(spec.env)
    s.path = arena.cstr(spec.path)
    s.cwd = arena.cstr(spec.cwd)
    s.set_user = 0
    s.uid = 0
    s.gid = 0
    s.groups = NULL
    s.ngroups = 0
    user = spec.user
    if user is not None:
        uid, gid, gids = user
        s.set_user = 1
        s.uid = uid
        s.gid = gid
        groups = <gid_t *>arena.alloc(len(gids), sizeof(gid_t))
        for i, g in enumerate(gids):
            groups[i] = g
        s.groups = groups
        s.ngroups = len(gids)
    s.caps = spec.caps
    s.setup = 0
    if spec.no_new_privs:
        s.setup |= PYRT_SETUP_NO_NEW_PRIVS
    if spec.new_session:
        s.setup |= PYRT_SETUP_SETSID
    s.umask = spec.umask
    rl = spec.rlimits
    rlimits = <pyrt_rlimit *>arena.alloc(len(rl), sizeof(pyrt_rlimit))
    for i, (res, soft, hard) in enumerate(rl):
        rlimits[i].resource = res
        rlimits[i].limit.rlim_cur = soft
        rlimits[i].limit.rlim_max = hard
    s.rlimits = rlimits
    s.nrlimits = len(rl)
    stdio = spec.stdio
    for i in range(3):
        s.stdio[i] = stdio[i]
    s.cgroup_fd = spec.cgroup_fd
    pfds = spec.cgroup_procs_fds
    procs = <int *>arena.alloc(len(pfds), sizeof(int))
    for i, fd in enumerate(pfds):
        procs[i] = fd
    s.cgroup_procs_fds = procs
    s.ncgroup_procs = len(pfds)
    s.seccomp = NULL
    s.seccomp_len = 0
    s.seccomp_flags = spec.seccomp_flags
    if prog is not None:
        if not prog or len(prog) % 8:
            raise ValueError("seccomp: a BPF program is a non-empty multiple of 8 bytes")
        s.seccomp = <const char *>prog
        s.seccomp_len = len(prog) // 8

    with nogil:
        rc = pyrt_exec(&s, &pid, &pidfd, &err)
    if rc < 0:
        _raise_spawn_error(&err)
    return pid, pidfd


def read_exit_record(path):
    """The exit record a monitor wrote (a dict: ExitCode, Signal, OOMKilled,
    FinishedAt, UserTime, SystemTime, MaxRSS, Pid, CoreDumped), or None while the
    container has not exited."""
    import json
    try:
        with open(path, "rb") as f:
            return json.loads(f.read())
    except FileNotFoundError:
        return None


def parse_log(data):
    """Records of a CRI log (bytes) as a list of (timestamp, stream, text): partial
    records (P) are joined to the line they belong to; text ends with b"\\n" except
    for a stream that ended without one. An incomplete last line is ignored."""
    out = []
    pending = {}  # stream -> (timestamp of its first part, [parts]): joined once, at the
                  # line's end (a hostile container's endless line stays linear)
    lines = data.split(b"\n")
    lines.pop()  # the incomplete last line, or the empty rest after the last newline
    for line in lines:
        ts, _, rest = line.partition(b" ")
        stream, _, rest = rest.partition(b" ")
        tag, _, text = rest.partition(b" ")
        key = stream.decode()
        if tag == b"P":
            prev = pending.get(key)
            if prev:
                prev[1].append(text)
            else:
                pending[key] = (ts.decode(), [text])
            continue
        prev = pending.pop(key, None)
        if prev:
            prev[1].append(text)
            prev[1].append(b"\n")
            out.append((prev[0], key, b"".join(prev[1])))
        else:
            out.append((ts.decode(), key, text + b"\n"))
    for key, (ts, parts) in pending.items():
        out.append((ts, key, b"".join(parts)))
    return out
