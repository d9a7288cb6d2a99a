"""A warm pool of parked containers, and measured runs.

    with pyrt.Pool(image="bench:1", size=8, memory="256m", cpuset="1") as pool:
        r = pool.run(["python3", "-c", "print(42)"])      # r.returncode, r.stdout, r.usage
        results = pool.map(["wc", "-c"], [b"a", b"bb"])   # each input as stdin
    pyrt.Pool(rootfs="/srv/rootfs", size=4)              # a plain rootfs directory works too

A pool keeps `size` children parked in C (csrc/park.c): each is cloned into its
namespaces, with its overlay mounted over a fresh volatile tmpfs upper, /proc, /sys,
/dev, pivot_root, hostname, lo, rlimits and cgroups done, waiting on a socket. `run`
hands one its argv, env, cwd and stdio and it execs; every child serves exactly one
command and is then torn down (its tmpfs upper, mounts and namespaces die with it),
and a background thread parks the next one. No Python runs in any child.

Every completed run reports `usage` (a Usage): wall time from the hand-over to the
exit seen here, user and system CPU time (from the container's cgroup, so its
children count; else from rusage), peak memory (the cgroup's memory peak), context
switches, CPU throttling, OOM kills. The "bench" profile (`profile="bench"`) pins to
a cpuset with no CPU quota, sets a memory limit with no swap, no network, a fixed
hostname and environment, and adds a noise note to each run.
"""
from __future__ import annotations

import collections
import itertools
import os
import secrets
import threading
import time

from pyrt import _core
from pyrt.cgroups.cgroup import Cgroup, _check_cpuset, _write, prune
from pyrt.cgroups.layout import layout
from pyrt.cgroups.limits import Limits, format_cpuset, parse_cpuset
from pyrt.errors import InvalidArgument, PoolClosed, SpawnError
from pyrt.launch.mounts import Overlay
from pyrt.launch.process import _completed_process_class
from pyrt.launch.spec import DEFAULT_PATH, build_spec
from pyrt.launch.userdb import resolve_user
from pyrt.oci.image import check_platform
from pyrt.pool.aio import aio_command
from pyrt.pool.children import Child, Slot, Zygote, devnull, shared_device_cgroup
from pyrt.pool.metering import Meter, Noise, Usage, open_fd, plain_notes

__all__ = ["Pool", "run", "PROFILES"]

# -- profiles ------------------------------------------------------------------------

BENCH_ENV = {
    "PATH": DEFAULT_PATH,
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "TZ": "UTC",
    "PYTHONHASHSEED": "0",
}

# What a profile sets (the caller's explicit arguments win, except where noted).
PROFILES = {
    "bench": {
        "network": "none",
        "hostname": "bench",
        "memory": "1g",            # with memory_swap = memory: no swap
        "measure": True,
        "noise": True,
        "env": BENCH_ENV,          # fixed: the caller's env= adds to it
    },
}


def _default_bench_cpuset() -> str:
    """The last CPU this process may use (the first is where the system tends to
    put its own work)."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except OSError:
        cpus = list(range(os.cpu_count() or 1))
    return str(cpus[-1])


# -- the pool ------------------------------------------------------------------------

_pool_ids = itertools.count(1)


class Pool:
    """`size` parked containers of `image` (a reference in the store at `root`)
    or of a `rootfs` directory, each serving exactly one command.

    image / rootfs  what the containers run (an image's Env, WorkingDir and User
                    are the defaults; argv is run as given, without the image's
                    entrypoint); rootfs: a directory, an Overlay without upperdir,
                    or a pyrt.HostRoot (the host's programs, read-only)
    size            children kept parked (0: none; each run then starts its own)
    network         "none" (own namespace with lo) or "host"
    memory, memory_swap, cpuset, cpus, pids_limit
                    cgroup limits, docker's meanings (cpuset: "1", "0-3")
    profile         "bench": see PROFILES and the module's docstring
    measure         give each container its own cgroup for its usage (CPU time
                    including children, memory peak); on by default. Without it
                    (and without limits) no cgroup is made and usage comes from
                    rusage (no memory peak)
    upper_size      size of each container's tmpfs upper ("256m"; default: the
                    memory limit, else the kernel's default)
    noise           add noise notes to each run's usage (on in the bench profile)
    zygote          park through pyrt-zygote processes (default; see below)
    parallel        how many children are parked at once (default: one per CPU,
                    at most 4 and at most size)
    env, cwd, hostname, user, aslr, mounts, read_only, cap_add, cap_drop, seccomp, ...
                    as for pyrt.run (the spawn options of pyrt.launch.spec.build_spec;
                    containers run under pyrt's default seccomp profile unless
                    seccomp=None)

    Children are cloned by small pyrt-zygote helper processes (one per parallel
    refill), not by this process: a clone copies the page tables of its parent,
    which for a Python process with a big heap costs more than the container's
    own setup, and makes this process's pages copy-on-write. This process is
    still each container's parent (CLONE_PARENT): it waits for them and gets
    their rusage. Each container's cgroup (when there is one) is reused by the
    next container once emptied, its accounting taken afresh; its mount
    namespace is held until the run is over, so that the unmounting happens in
    the refill thread rather than in the container's exit.

    Thread-safe: many threads may call run() at once. close() (or leaving the
    `with` block) kills what is parked or still running and removes every cgroup,
    mount and process the pool made.
    """

    def __init__(self, image=None, *, rootfs=None, size=8, network="none", memory=None, memory_swap=None,
                 cpuset=None, cpus=None, pids_limit=None, root=None, profile=None, measure=True,
                 upper_size=None, env=None, cwd=None, hostname=None, user=None, noise=None, zygote=True,
                 parallel=None, **spawn_options):
        if (image is None) == (rootfs is None):
            raise InvalidArgument("a Pool needs an image or a rootfs (one of them)")
        if size < 0:
            raise InvalidArgument(f"invalid pool size {size}")
        if profile is not None:
            if profile not in PROFILES:
                raise InvalidArgument(f"unknown profile {profile!r} (known: {', '.join(PROFILES)})")
            prof = PROFILES[profile]
            if cpus is not None:
                raise InvalidArgument("the bench profile runs without a CPU quota (it distorts timings): "
                                      "pin with cpuset= instead of cpus=")
            network = prof["network"] if network in (None, "none") else network
            hostname = hostname or prof["hostname"]
            memory = memory if memory is not None else prof["memory"]
            memory_swap = memory if memory_swap is None else memory_swap
            measure = True
            noise = prof["noise"] if noise is None else noise
            env = dict(prof["env"], **(env or {}))
            if cpuset is None:
                cpuset = _default_bench_cpuset()
        self.size = size
        self.profile = profile
        self._id = f"{os.getpid()}-{next(_pool_ids)}-{secrets.token_hex(2)}"
        self._lock = threading.Condition(threading.Lock())
        self._ready = collections.deque()
        self._running = set()
        self._retired = []
        self._spawning = 0
        self._closed = False
        self._error = None
        self._counter = itertools.count()
        self._threads = []       # the refill threads, one per zygote (or one)
        self._zygotes = []       # Zygote: the pyrt-zygote processes parking for us
        self._free_slots = []    # cgroups ready for the next child
        self._all_cpus = None    # cpuset.cpus of the pool's cgroup parent
        self._use_cgroup = False
        self._shared = None      # (Cgroup, spawn fds): the device cgroup of children without one of their own
        self._devices = "default"
        self._store = None      # the store of the image, when the pool opened it
        self._cg_parent = f"pyrt/pool-{self._id}"
        self._user_scope = False  # the parent is a scope of an ordinary user's systemd instance
        try:
            self._setup(image, rootfs, network, memory, memory_swap, cpuset, cpus, pids_limit, root, measure,
                        upper_size, env, cwd, hostname, user, noise, zygote, parallel, spawn_options)
        except BaseException:
            self.close()
            raise

    def _setup(self, image, rootfs, network, memory, memory_swap, cpuset, cpus, pids_limit, root, measure,
               upper_size, env, cwd, hostname, user, noise, zygote, parallel, spawn_options):
        size = self.size
        self._pinned = parse_cpuset(cpuset) if cpuset is not None else None
        if self._pinned:
            _check_cpuset(Limits(cpuset_cpus=cpuset), layout(), "pyrt")
        self._limits = Limits(memory=memory, memory_swap=memory_swap, cpus=cpus, pids_limit=pids_limit)
        self._cpuset = format_cpuset(self._pinned) if self._pinned else None
        self.measure = bool(measure)
        self._use_cgroup = self.measure or not self._limits.empty() or self._cpuset is not None
        if self._use_cgroup and os.geteuid() != 0:
            from pyrt.cgroups import delegation
            if delegation.usable():
                # an ordinary user inside its delegated subtree: the pool's cgroups are
                # children of a scope of the user's systemd instance (as a container's)
                from pyrt.cgroups import systemd as cgroup_systemd
                self._cg_parent = cgroup_systemd.start(f"pool-{self._id}", layout().unified)
                self._user_scope = True
            elif not self._limits.empty() or self._cpuset is not None:
                delegation.require("pool limits")
            else:
                self.measure = self._use_cgroup = False  # usage from rusage
        self._devices = None if spawn_options.get("privileged") else "default"
        if not self._use_cgroup and self._devices is not None:
            self._shared = shared_device_cgroup(self._cg_parent)
        self._noise = Noise(self._pinned) if noise and self._pinned else None
        self._noise_on = bool(noise)

        base_env = {}
        if image is not None:
            if isinstance(image, str):
                # imported on use: a pool of a rootfs (pyrt.run(profile=...), `pyrt run --profile`)
                # starts without the store and the catalog (some 20 ms of imports)
                from pyrt.images.catalog import ImageCollection
                from pyrt.store import Store, default_root
                self._store = Store(root or default_root())
                image = ImageCollection(store=self._store).get(image)
            img = image
            check_platform(img.config)
            icfg = (img.config or {}).get("config") or {}
            for item in icfg.get("Env") or ():
                k, _, v = item.partition("=")
                base_env[k] = v
            lowers = [layer.path for layer in reversed(img.layers)]
            if user is None and icfg.get("User"):
                uid, gid, groups = resolve_user(icfg["User"], lowers)
                user = (uid, gid, *groups)
            if cwd is None and icfg.get("WorkingDir"):
                cwd = icfg["WorkingDir"]
            root_arg = Overlay(lowers)
            self.image = img
        elif getattr(rootfs, "_host_root", False):  # a pyrt.HostRoot: build_spec lays it out
            self._runtime = None
            self.image = None
            root_arg = rootfs
        elif isinstance(rootfs, Overlay):
            if rootfs.upperdir is not None:
                raise InvalidArgument("a pool gives each container its own tmpfs upper: pass an Overlay "
                                      "without upperdir (or a directory)")
            self.image = None
            root_arg = rootfs
        else:
            self.image = None
            root_arg = os.path.abspath(os.fspath(rootfs))
        if env is not None:
            base_env.update({k: str(v) for k, v in env.items()})
        base_env.setdefault("PATH", DEFAULT_PATH)
        if upper_size is None and self._limits.memory is not None:
            upper_size = self._limits.memory
        upper = "mode=0755" + (f",size={upper_size}" if upper_size is not None else "")
        self._spec = build_spec(["/bin/true"], root_arg, env=base_env, cwd=None, hostname=hostname, user=user,
                                network=network, upper_tmpfs=upper, **spawn_options)
        self._env = dict(base_env)
        if hostname and "HOSTNAME" not in self._env:
            self._env["HOSTNAME"] = hostname
        self._env_bytes = [os.fsencode(f"{k}={v}") for k, v in self._env.items()]
        self._path = os.fsencode(self._env["PATH"])
        self._cwd = os.fsencode(cwd) if cwd else None
        self._spec.stdio = (devnull(),) * 3
        self._refill_affinity = None
        if self._pinned:
            try:
                mine = os.sched_getaffinity(0)
                rest = set(mine) - set(self._pinned)
                if rest:
                    self._refill_affinity = rest
            except OSError:
                pass

        if size > 0:
            if parallel is None:
                ncpu = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
                parallel = max(1, min(size, ncpu or 1, 4))
            if zygote:
                for _ in range(max(1, int(parallel))):
                    z = Zygote.start(self._spec, self._refill_affinity)
                    if z is None:
                        break
                    self._zygotes.append(z)
            # the first child now: a bad rootfs, image or limit fails here
            child = self._new_child(self._zygotes[0] if self._zygotes else None)
            with self._lock:
                self._ready.append(child)
            for z in self._zygotes or [None]:
                t = threading.Thread(target=self._refill, args=(z,), name=f"pyrt-pool-{self._id}", daemon=True)
                self._threads.append(t)
                t.start()

    # -- children ---------------------------------------------------------------
    def _spawn(self, spec, cgroup_fd, procs_fds, zygote):
        if zygote is not None:
            with zygote.lock:
                if zygote.sock is not None:
                    return _core.zygote_spawn(zygote.sock.fileno(), cgroup_fd, procs_fds)
        spec.cgroup_fd, spec.cgroup_procs_fds = cgroup_fd, procs_fds
        pid, pidfd, sock, errfd, usage = _core.spawn_parked(spec)
        # held until the run is over: the unmounting is then not part of its exit
        mntns = open_fd(f"/proc/{pid}/ns/mnt")
        return pid, pidfd, sock, errfd, usage, mntns

    def _take_slot(self) -> Slot:
        """A free cgroup of the pool, or a new one."""
        with self._lock:
            if self._free_slots:
                return self._free_slots.pop()
        accounting = ("memory",) if self.measure else ()
        if self._cpuset is not None:
            accounting += ("cpuset",)  # joined with every CPU; pinned once the child parked
        cg = Cgroup.create(f"c{next(self._counter)}", self._limits, parent=self._cg_parent, accounting=accounting,
                           devices=self._devices)
        try:
            fds = cg.spawn_fds()  # kept open while the slot lives
            meter = Meter(cg, quota=self._limits.cpus is not None, pressure=self._noise_on) \
                if self.measure else None
        except BaseException:
            cg.remove()
            raise
        if self._cpuset is not None and self._all_cpus is None:
            d = cg.v1_dirs.get("cpuset") or cg.v2_dir
            with open(os.path.join(os.path.dirname(d), "cpuset.cpus")) as f:
                self._all_cpus = f.read().strip()
        return Slot(cg, meter, fds)

    def _recycle(self, slot: Slot) -> bool:
        """Keep an emptied cgroup for the next container (True), unless the pool is
        closing or something of the last container is still in it."""
        if self._closed or slot.killed or slot.cg.procs():
            return False
        if self._cpuset is not None:
            d = slot.cg.v1_dirs.get("cpuset") or slot.cg.v2_dir
            try:  # the next child's setup runs off the pinned CPUs again
                _write(os.path.join(d, "cpuset.cpus"), self._all_cpus)
            except OSError:
                return False
        with self._lock:
            if self._closed:
                return False
            self._free_slots.append(slot)
        return True

    def _new_child(self, zygote=None) -> Child:
        """zygote: the Zygote to park it (None: cloned by this process)."""
        """Spawn and park one child (in its own cgroup when needed)."""
        spec = self._spec
        slot = self._take_slot() if self._use_cgroup else None
        cgroup_fd, procs_fds = slot.fds if slot is not None else self._shared[1] if self._shared else (-1, [])
        if slot is not None or self._shared is not None:
            import copy
            spec = copy.copy(self._spec)  # an in-process spawn sets the cgroup fds on it
        try:
            pid, pidfd, sock, errfd, park_usage, mntns = self._spawn(spec, cgroup_fd, procs_fds, zygote)
        except BaseException:
            if slot is not None:
                slot.remove()
            raise
        child = Child(pid, pidfd, sock, errfd, park_usage, slot, mntns)
        if slot is not None:
            try:
                if self._cpuset is not None:
                    # the setup ran on the refill thread's CPUs; the command runs on the pinned ones
                    d = slot.cg.v1_dirs.get("cpuset") or slot.cg.v2_dir
                    _write(os.path.join(d, "cpuset.cpus"), self._cpuset)
                if slot.meter is not None:
                    slot.meter.baseline()
            except BaseException:
                child.discard()
                raise
        return child

    def _refill(self, zygote):
        if self._refill_affinity:
            try:
                os.sched_setaffinity(0, self._refill_affinity)  # this thread only
            except OSError:
                pass
        delay = 0.05
        while True:
            with self._lock:
                while not self._closed and not self._retired and len(self._ready) + self._spawning >= self.size:
                    self._lock.wait()
                if self._closed:
                    return
                retired, self._retired = self._retired, []
                spawn = len(self._ready) + self._spawning < self.size
                if spawn:
                    self._spawning += 1
            for child in retired:  # off the run path
                child.finish(self._recycle)
            if not spawn:
                continue
            try:
                child = self._new_child(zygote)
            except BaseException as e:
                with self._lock:
                    self._spawning -= 1
                    self._error = e
                    self._lock.notify_all()
                time.sleep(delay)
                delay = min(1.0, delay * 2)
                continue
            delay = 0.05
            with self._lock:
                self._spawning -= 1
                self._error = None
                if not self._closed:
                    self._ready.append(child)
                    self._lock.notify_all()
                    continue
            child.discard()
            return

    def _acquire(self) -> Child:
        """A parked child: a ready one; else, with a zygote, the next one it
        parks; else one started now in this thread."""
        with self._lock:
            while True:
                if self._closed:
                    raise PoolClosed("the pool is closed")
                if self._ready:
                    child = self._ready.popleft()
                    self._running.add(child)
                    self._lock.notify_all()  # the refill thread parks the next one
                    return child
                if not self._zygotes or not self._threads:
                    break
                if self._error is not None and not self._spawning:
                    raise self._error
                self._lock.wait()
        child = self._new_child(None)
        with self._lock:
            if self._closed:
                closed = True
            else:
                closed = False
                self._running.add(child)
        if closed:
            child.discard()
            raise PoolClosed("the pool is closed")
        return child

    def _release(self, child: Child) -> None:
        child.close_fds()
        with self._lock:
            self._running.discard(child)
            later = bool(self._threads) and not self._closed
            if later:
                self._retired.append(child)  # the refill thread finishes it
            self._lock.notify_all()
        if not later:  # no refill thread (size 0), or closing: now
            child.finish(self._recycle)

    # -- running ----------------------------------------------------------------
    def _command(self, argv, env, cwd):
        if isinstance(argv, (str, bytes, os.PathLike)):
            argv = [argv]
        argv_b = [os.fsencode(a) for a in argv]
        if not argv_b:
            raise InvalidArgument("no command given")
        if env is None:
            return argv_b, self._env_bytes, self._path, os.fsencode(cwd) if cwd else self._cwd
        merged = dict(self._env)
        merged.update({k: str(v) for k, v in env.items()})
        env_b = [os.fsencode(f"{k}={v}") for k, v in merged.items()]
        return argv_b, env_b, os.fsencode(merged.get("PATH", "")), os.fsencode(cwd) if cwd else self._cwd

    def run(self, argv, input=None, env=None, cwd=None, timeout=None, capture_output=True, check=False,
            text=False, stdin=None, stdout=None, stderr=None):
        """Run argv in a fresh container of the pool; like subprocess.run with
        capture_output=True by default. Returns a CompletedProcess with `usage`.
        env adds to (and overrides) the pool's environment. timeout: the
        container is killed and TimeoutExpired raised. stdin/stdout/stderr: fds or
        files (stdout/stderr only when not capturing; they default to this
        process's own, as with subprocess). stdin is /dev/null unless input or
        stdin is given (as `docker run` without -i)."""
        argv_b, env_b, path, cwd_b = self._command(argv, env, cwd)
        if input is not None and stdin is not None:
            raise InvalidArgument("stdin and input arguments may not both be used")
        if capture_output and (stdout is not None or stderr is not None):
            raise InvalidArgument("stdout and stderr arguments may not be used with capture_output")
        if text and isinstance(input, str):
            input = input.encode()
        to_close = []
        in_w = out_r = err_r = -1
        fds = [-1, -1, -1]
        try:
            if input is not None:
                r, in_w = os.pipe2(os.O_CLOEXEC)
                fds[0] = r
                to_close.append(r)
            elif stdin is not None:
                fds[0] = stdin if isinstance(stdin, int) else stdin.fileno()
            if capture_output:
                out_r, w = os.pipe2(os.O_CLOEXEC)
                fds[1] = w
                to_close.append(w)
                err_r, w = os.pipe2(os.O_CLOEXEC)
                fds[2] = w
                to_close.append(w)
            else:  # like subprocess: the caller's own stdout and stderr unless given
                for i, f in ((1, stdout), (2, stderr)):
                    f = i if f is None else f
                    fds[i] = f if isinstance(f, int) else f.fileno()
            child = self._acquire()
        except BaseException:
            for fd in to_close + [fd for fd in (in_w, out_r, err_r) if fd >= 0]:
                os.close(fd)
            raise
        io = None
        try:
            before = self._noise.start() if self._noise else None
            t0 = time.perf_counter()
            try:
                # not waiting for the exec here (one wake-up less): the error pipe is
                # read once the process is gone (EOF: it exec'd; a record: it failed)
                _core.unpark(child.sock, child.errfd, argv_b, env_b, path, cwd_b, tuple(fds), wait=False)
            except SpawnError as e:
                if self._closed:
                    raise PoolClosed("the pool was closed before the command was handed over") from e
                raise
            finally:
                for fd in to_close:
                    os.close(fd)
            io = _core.CommandIO(child.pidfd, in_w, input, out_r, err_r)
            in_w = out_r = err_r = -1
            if not io.run(timeout):
                child.kill_container()
                if not io.run(10.0):
                    io.release()  # something outside the container holds the pipes
                    _core.wait(child.pidfd)
                child.done = True
                child.raise_exec_error()
                from subprocess import TimeoutExpired
                raise TimeoutExpired(argv, timeout, output=io.stdout, stderr=io.stderr)
            wall = time.perf_counter() - t0
            child.done = True
            child.raise_exec_error()
            status = io.status
            usage = self._usage(child, io.usage, wall, before)
            out, err = (io.stdout, io.stderr) if capture_output else (None, None)
        except BaseException:
            if not child.done:
                child.kill_container()
                if io is not None:
                    try:
                        if not io.run(10.0):
                            io.release()
                            _core.wait(child.pidfd)
                        child.done = True
                    except OSError:
                        pass
                else:
                    try:
                        _core.wait(child.pidfd)
                        child.done = True
                    except OSError:
                        pass
            raise
        finally:
            for fd in (in_w, out_r, err_r):
                if fd >= 0:
                    os.close(fd)
            if io is not None:
                io.release()
            self._release(child)
        if text:
            out = out.decode() if out is not None else None
            err = err.decode() if err is not None else None
        result = _completed_process_class()(argv, os.waitstatus_to_exitcode(status), out, err)
        result.usage = usage
        if check:
            result.check_returncode()
        return result

    def _usage(self, child, ru, wall, before) -> Usage:
        """ru: (utime, stime, maxrss, nvcsw, nivcsw) of the reaped child."""
        pu = child.park_usage
        u = Usage(wall=wall, user=max(0.0, ru[0] - pu[0]), system=max(0.0, ru[1] - pu[1]),
                  nvcsw=ru[3] - pu[3], nivcsw=ru[4] - pu[4], throttled=0, throttled_time=0.0,
                  source="rusage", noise=[])
        if child.meter is not None:
            child.meter.read(u)
        if self._noise is not None:
            u.noise = self._noise.notes(before, u)
        elif self._noise_on:
            u.noise = plain_notes(u)
        return u

    def map(self, argv_or_fn, inputs, *, threads=None, **run_kwargs) -> list:
        """Run one command per input, in order of the inputs, with up to `threads`
        (default: the pool size) at once. argv_or_fn: an argv (each input is
        then its stdin), or a function of the input returning an argv or a dict
        of run() keyword arguments (with "argv")."""
        from concurrent.futures import ThreadPoolExecutor
        items = list(inputs)

        def one(x):
            if callable(argv_or_fn):
                what = argv_or_fn(x)
                if isinstance(what, dict):
                    kw = dict(run_kwargs, **what)
                    return self.run(kw.pop("argv"), **kw)
                return self.run(what, **run_kwargs)
            return self.run(argv_or_fn, input=x, **run_kwargs)

        n = threads or max(1, self.size)
        if n == 1 or len(items) <= 1:
            return [one(x) for x in items]
        with ThreadPoolExecutor(max_workers=min(n, len(items))) as ex:
            return list(ex.map(one, items))

    async def arun(self, argv, input=None, env=None, cwd=None, timeout=None, capture_output=True,
                   check=False, text=False):
        """run() for asyncio: the wait is on the child's pidfd and pipes through
        the event loop (no thread per container)."""
        import asyncio
        loop = asyncio.get_running_loop()
        argv_b, env_b, path, cwd_b = self._command(argv, env, cwd)
        with self._lock:
            child = self._ready.popleft() if self._ready and not self._closed else None
            if child is not None:
                self._running.add(child)
                self._lock.notify_all()
        if child is None:  # none parked: start one without blocking the loop
            child = await loop.run_in_executor(None, self._acquire)
        if text and isinstance(input, str):
            input = input.encode()
        ends = []
        try:
            fds = [-1, -1, -1]
            in_w = out_r = err_r = -1
            if input is not None:
                fds[0], in_w = os.pipe2(os.O_CLOEXEC)
                ends.append(in_w)
            if capture_output:
                out_r, fds[1] = os.pipe2(os.O_CLOEXEC)
                ends.append(out_r)
                err_r, fds[2] = os.pipe2(os.O_CLOEXEC)
                ends.append(err_r)
            before = self._noise.start() if self._noise else None
            t0 = time.perf_counter()
            try:
                _core.unpark(child.sock, child.errfd, argv_b, env_b, path, cwd_b, tuple(fds), wait=False)
            finally:
                for fd in fds:
                    if fd >= 0:
                        os.close(fd)
            status, ru, out, err = await aio_command(loop, child.pidfd, in_w, input, out_r, err_r, timeout,
                                                      argv, ends)
            child.done = True
            wall = time.perf_counter() - t0
            child.raise_exec_error()  # EOF on the error pipe: it exec'd
            usage = self._usage(child, ru, wall, before)
        except BaseException as e:
            if getattr(e, "pyrt_reaped", None):
                child.done = True
            if not child.done:
                child.kill_container()
                try:
                    _core.wait(child.pidfd)
                except OSError:
                    pass
                child.done = True
            raise
        finally:
            for fd in ends:
                try:
                    os.close(fd)
                except OSError:
                    pass
            self._release(child)
        if not capture_output:
            out = err = None
        elif text:
            out, err = out.decode(), err.decode()
        result = _completed_process_class()(argv, os.waitstatus_to_exitcode(status), out, err)
        result.usage = usage
        if check:
            result.check_returncode()
        return result

    # -- state and teardown -------------------------------------------------------
    @property
    def parked(self) -> int:
        """How many children are parked right now."""
        with self._lock:
            return len(self._ready)

    def wait_ready(self, timeout=None) -> bool:
        """Wait until `size` children are parked (True), or timeout (False)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while len(self._ready) < self.size and not self._closed:
                if self._error is not None and not self._ready:
                    raise self._error
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._lock.wait(left if left is None else min(left, 0.1))
            return len(self._ready) >= self.size

    def close(self, timeout: float = 10.0) -> None:
        """Kill every parked and running child, reap them, remove every cgroup.
        Running commands end with -SIGKILL (their run() returns). Idempotent."""
        with self._lock:
            if self._closed and not self._ready and not self._running and not self._threads:
                return
            self._closed = True
            ready, self._ready = list(self._ready), collections.deque()
            running = list(self._running)
            self._lock.notify_all()
        for child in running:
            child.kill()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout)
        self._threads = []
        for child in ready:
            child.discard()
        zygotes, self._zygotes = self._zygotes, []
        for z in zygotes:
            z.stop()
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._running and time.monotonic() < deadline:
                self._lock.wait(0.05)
            retired, self._retired = self._retired, []
            free, self._free_slots = self._free_slots, []
        for child in retired:
            child.finish()
        for slot in free:
            slot.remove()
        shared, self._shared = self._shared, None
        if shared is not None:
            shared[0].close_fds(force=True)
            try:
                shared[0].remove(timeout)
            except OSError:
                pass  # left for prune
        self._remove_cgroup_parent(shared is not None)
        if self._store is not None:
            self._store.close()
            self._store = None

    def _remove_cgroup_parent(self, had_shared=False):
        if self._user_scope:  # stopped: systemd removes it, with anything left in it
            self._user_scope = False
            from pyrt.cgroups import systemd as cgroup_systemd
            try:
                cgroup_systemd.stop(f"pool-{self._id}", layout().unified)
            except OSError:
                pass
            return
        if not self._use_cgroup and not had_shared:
            return
        try:
            prune(self._cg_parent)
        except Exception:
            pass
        lay = layout()
        for mount in set(lay.v1.values()) | ({lay.unified} if lay.unified else set()):
            try:
                os.rmdir(os.path.join(mount, self._cg_parent))
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            if not self._closed:
                self.close()
        except Exception:
            pass

    def __repr__(self):
        what = f"image={self.image.short_id}" if self.image is not None else "rootfs"
        return f"<pyrt.Pool {what} size={self.size} parked={len(self._ready)} running={len(self._running)}>"


def run(args, rootfs=None, *, image=None, profile=None, root=None, input=None, capture_output=False,
        timeout=None, check=False, text=False, env=None, cwd=None, **kwargs):
    """One measured run in a fresh container (pyrt.run(profile=...) comes here):
    the pool's machinery without a warm pool. Returns a CompletedProcess whose
    `usage` is a Usage."""
    stdio = {k: kwargs.pop(k) for k in ("stdin", "stdout", "stderr") if k in kwargs}
    with Pool(image, rootfs=rootfs, size=0, profile=profile, root=root, **kwargs) as pool:
        return pool.run(args, input=input, env=env, cwd=cwd, timeout=timeout, capture_output=capture_output,
                        check=check, text=text, **stdio)
