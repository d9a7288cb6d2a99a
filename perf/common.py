"""Shared helpers for the pyperf benchmarks in perf/.

- tools: find a tool, apt-get installing its Debian package when it is missing;
- Scratch: a temporary directory with a tmpfs on it that tracks and undoes
  every mount made below it (also on failure);
- a busybox rootfs, overlay mounts, OCI bundles made by `runc spec` then edited;
- crun on a cgroup "hybrid" host: crun refuses to start when the cgroup v2
  hierarchy of a hybrid host has controllers; hiding them (an empty file bound
  over cgroup.controllers) in a private mount namespace makes it work;
- Spawner: start a command and wait for it with as little launcher cost as
  possible (posix_spawn + waitpid), the same for every tool compared;
- clean-up of containers and cgroups that runc/crun could leave behind;
- the pyperf scaffolding of the benchmarks: --quick (pyperf_argv), a Runner
  whose workers get the scratch directory (make_runner), and the main process
  with its Scratch, set-up, clean-up and summary (run_main); --smoke without
  pyperf (run_smoke), and a whole main() of both with the usual options
  (bench_main); the summary table of medians (print_table) and ratio lines
  (print_ratios); best_of for the plain (non-pyperf) quick modes.

Everything here needs root, as the benchmarks do.
"""
from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import os
import pwd
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

# The benchmarks of perf/ run containers with no network (pyrt's default for an
# image is its bridge network, which would change the host's interfaces and
# firewall): bench_network.py measures networks, in namespaces of its own.
os.environ.setdefault("PYRT_DEFAULT_NETWORK", "none")

# --- tools ---------------------------------------------------------------

# tool -> Debian package that ships it
DEBIAN_PACKAGES = {
    "runc": "runc",
    "crun": "crun",
    "bwrap": "bubblewrap",
    "busybox": "busybox-static",
    "unshare": "util-linux",
    "umoci": "umoci",
    "skopeo": "skopeo",
    "tar": "tar",
    "zstd": "zstd",
    "pigz": "pigz",
}

_apt_updated = False


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def apt_install(packages, *, quiet=True) -> tuple[bool, str]:
    """apt-get install -y PACKAGES (running apt-get update once if the first
    try fails). Returns (ok, last lines of output)."""
    global _apt_updated
    if os.geteuid() != 0:
        return False, "not root: cannot apt-get install"
    if not shutil.which("apt-get"):
        return False, "no apt-get on this machine"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    out = ""
    for attempt in range(2):
        if attempt == 1:
            if _apt_updated:
                break
            subprocess.run(["apt-get", "update"], env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=False)
            _apt_updated = True
        p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           check=False)
        out = p.stdout
        if p.returncode == 0:
            return True, out
    return False, "\n".join(out.strip().splitlines()[-3:])


def find_tool(name, *, install=True, package=None) -> tuple[str | None, str]:
    """Path of `name`, apt-installing its package when missing and allowed.
    Returns (path, "") or (None, why not)."""
    path = shutil.which(name)
    if path:
        return path, ""
    pkg = package or DEBIAN_PACKAGES.get(name)
    if not install:
        return None, f"{name} is not installed"
    if not pkg:
        return None, f"{name} is not installed and no package is known for it"
    log(f"[setup] {name} missing: apt-get install -y {pkg}")
    ok, out = apt_install([pkg])
    path = shutil.which(name)
    if path:
        return path, ""
    return None, f"{name} is not installed and apt-get install {pkg} failed: {out}" if not ok else \
        f"{name} still not found after installing {pkg}"


def check_command(argv, *, timeout=60, env=None) -> tuple[bool, str]:
    """Run once (untimed) to see whether a command works; returns (ok, output)."""
    try:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=timeout, env=env, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    out = p.stdout.decode(errors="replace").strip()
    if p.returncode != 0:
        return False, f"exit status {p.returncode}: {out[-500:]}"
    return True, out


# --- syscalls through libc ------------------------------------------------

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]

MS_RDONLY = 1
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2
CLONE_NEWNS = 0x00020000


def _b(p):
    return None if p is None else os.fsencode(p)


def _check(rc, what, path=None):
    if rc < 0:
        err = ctypes.get_errno()
        if path is None:
            raise OSError(err, f"{what}: {os.strerror(err)}")
        raise OSError(err, f"{what}: {os.strerror(err)}", os.fspath(path))


def mount(source, target, fstype=None, flags=0, data=None):
    _check(_libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data)), "mount", target)


def umount(target, *, lazy_fallback=True):
    if _libc.umount2(_b(target), 0) == 0:
        return
    err = ctypes.get_errno()
    if lazy_fallback and err == 16:  # EBUSY
        _check(_libc.umount2(_b(target), MNT_DETACH), "umount -l", target)
        return
    raise OSError(err, f"umount: {os.strerror(err)}", os.fspath(target))


def mounts_under(path) -> list[str]:
    """Mount points at or below `path` in this mount namespace, in mount order."""
    path = os.path.realpath(path)
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].encode().decode("unicode_escape")
            if mp == path or mp.startswith(path + "/"):
                found.append(mp)
    return found


def die_with_parent(sig=9):
    """PR_SET_PDEATHSIG: this process gets `sig` when its parent exits (a
    benchmark worker must not outlive the process that cleans up after it)."""
    _check(_libc.prctl(1, sig, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")
    if os.getppid() == 1:
        os.kill(os.getpid(), sig)


def enter_private_mount_namespace():
    """unshare(CLONE_NEWNS) for this (single-threaded) process and stop mount
    propagation back to the host. Irreversible for the process: call it in a
    process made for it (a pyperf worker, a child)."""
    _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    mount(None, "/", None, MS_REC | MS_PRIVATE)


# --- cgroups -------------------------------------------------------------

CGROUP_ROOT = "/sys/fs/cgroup"
UNIFIED_CONTROLLERS = "/sys/fs/cgroup/unified/cgroup.controllers"


def cgroup_mode() -> str:
    """'v2' (unified), 'hybrid' (v1 + a v2 hierarchy at unified/) or 'v1'."""
    if os.path.exists(os.path.join(CGROUP_ROOT, "cgroup.controllers")):
        return "v2"
    if os.path.ismount(os.path.join(CGROUP_ROOT, "unified")):
        return "hybrid"
    return "v1"


def crun_needs_hidden_controllers() -> bool:
    """crun (1.x) refuses a hybrid host whose v2 hierarchy has controllers
    ("cgroups in hybrid mode not supported, drop all controllers from cgroupv2")."""
    if cgroup_mode() != "hybrid":
        return False
    try:
        with open(UNIFIED_CONTROLLERS) as f:
            return bool(f.read().strip())
    except OSError:
        return False


def hide_cgroup2_controllers(empty_file):
    """Bind an empty file over the v2 hierarchy's cgroup.controllers. Only in a
    private mount namespace (see enter_private_mount_namespace)."""
    mount(empty_file, UNIFIED_CONTROLLERS, None, MS_BIND)


def crun_wrapper_argv(empty_file, crun_argv, unshare="unshare") -> list[str]:
    """A command that runs crun_argv in its own private mount namespace with the
    v2 controllers hidden (the cost of unshare + sh + mount is in it)."""
    import shlex
    script = (f"mount --bind {shlex.quote(os.fspath(empty_file))} {UNIFIED_CONTROLLERS} && exec "
              + " ".join(shlex.quote(a) for a in crun_argv))
    return [unshare, "-m", "--propagation", "private", "sh", "-c", script]


def remove_cgroups(prefix) -> list[str]:
    """rmdir the (empty) cgroups named prefix* that runc/crun may have left in
    any hierarchy: at the top of each, or below this process's own cgroup there.
    Only directories with our prefix are touched."""
    if not prefix:
        raise ValueError("an empty prefix would match every cgroup")
    own = {}
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                _, ctrls, path = line.rstrip("\n").split(":", 2)
                for c in (ctrls.split(",") if ctrls else [""]):
                    own[c.replace("name=", "")] = path
    except OSError:
        pass
    removed = []
    try:
        hierarchies = [os.path.join(CGROUP_ROOT, d) for d in os.listdir(CGROUP_ROOT)]
    except OSError:
        return removed
    if cgroup_mode() == "v2":
        hierarchies = [CGROUP_ROOT]
    for h in hierarchies:
        if not os.path.isdir(h):
            continue
        bases = {h}
        name = os.path.basename(h)
        key = "" if name == "unified" or h == CGROUP_ROOT else name
        if key in own:
            bases.add(os.path.join(h, own[key].lstrip("/")))
        for base in bases:
            try:
                entries = os.listdir(base)
            except OSError:
                continue
            for e in entries:
                if e.startswith(prefix):
                    p = os.path.join(base, e)
                    try:
                        os.rmdir(p)
                        removed.append(p)
                    except OSError:
                        pass
    return removed


def oci_delete_all(runtime, root, prefix, wrap=None) -> list[str]:
    """Force-delete the containers named prefix* in a runc/crun `--root`.
    `wrap(argv) -> argv` runs the runtime through a wrapper (crun on a hybrid
    host: see crun_wrapper_argv)."""
    if not prefix:
        raise ValueError("an empty prefix would match every container")
    if not os.path.isdir(root):
        return []
    wrap = wrap or (lambda argv: argv)
    p = subprocess.run(wrap([runtime, "--root", root, "list", "-q"]), stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, text=True, check=False)
    ids = [i for i in p.stdout.split() if i.startswith(prefix)]
    for cid in ids:
        subprocess.run(wrap([runtime, "--root", root, "delete", "-f", cid]), stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False)
    return ids


# --- scratch space ---------------------------------------------------------

class Scratch:
    """A temp directory with a tmpfs mounted on it. Mounts made below it (by
    .mount* or by anyone) are undone by cleanup(), deepest first; then the
    directory is removed. Use as a context manager, or call cleanup() in a
    finally. Safe to call cleanup() twice."""

    def __init__(self, prefix="pyrt-bench-", size="512m", base=None):
        self.path = tempfile.mkdtemp(prefix=prefix, dir=base)
        self._mounted = False
        try:
            mount("tmpfs", self.path, "tmpfs", 0, f"size={size},mode=0700")
            self._mounted = True
        except BaseException:
            os.rmdir(self.path)
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()

    def sub(self, *parts, create=True) -> str:
        p = os.path.join(self.path, *parts)
        if create:
            os.makedirs(p, exist_ok=True)
        return p

    def mount_overlay(self, lowerdirs, upperdir, workdir, target, options=()):
        return mount_overlay(lowerdirs, upperdir, workdir, target, options)

    def cleanup(self) -> list[str]:
        """Unmount everything at or below the directory, remove it. Returns
        the problems met (empty when all went well)."""
        problems = []
        if not os.path.isdir(self.path):
            return problems
        for _ in range(3):  # a lazy unmount may reveal mounts under it
            mps = mounts_under(self.path)
            if not mps:
                break
            for mp in reversed(mps):
                try:
                    umount(mp)
                except OSError as exc:
                    problems.append(str(exc))
        self._mounted = False
        if not mounts_under(self.path):
            shutil.rmtree(self.path, ignore_errors=True)
            if os.path.exists(self.path):
                problems.append(f"could not remove {self.path}")
        else:
            problems.append(f"{self.path} is still mounted; not removed")
        return problems


def mount_overlay(lowerdirs, upperdir, workdir, target, options=()):
    """mount -t overlay (lowerdirs top-most first)."""
    if isinstance(lowerdirs, (str, os.PathLike)):
        lowerdirs = [lowerdirs]
    opts = ["lowerdir=" + ":".join(os.fspath(p) for p in lowerdirs)]
    if upperdir is not None:
        opts += [f"upperdir={os.fspath(upperdir)}", f"workdir={os.fspath(workdir)}"]
    opts += list(options)
    os.makedirs(target, exist_ok=True)
    mount("overlay", target, "overlay", 0, ",".join(opts))
    return target


# --- a busybox rootfs --------------------------------------------------------

def _is_static_elf(path) -> bool:
    """True when the ELF file has no program interpreter (PT_INTERP)."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:  # 64-bit only
            return False
        end = "<" if head[5] == 1 else ">"
        phoff, = struct.unpack(end + "Q", head[32:40])
        phentsize, phnum = struct.unpack(end + "HH", head[54:58])
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    for i in range(phnum):
        p_type, = struct.unpack(end + "I", table[i * phentsize:i * phentsize + 4])
        if p_type == 3:  # PT_INTERP
            return False
    return True


def find_static_busybox(*, install=True) -> tuple[str | None, str]:
    for cand in ("/bin/busybox", "/usr/bin/busybox", shutil.which("busybox")):
        if cand and os.path.exists(cand) and _is_static_elf(cand):
            return os.path.realpath(cand), ""
    if not install:
        return None, "no static busybox (apt-get install busybox-static)"
    log("[setup] static busybox missing: apt-get install -y busybox-static")
    ok, out = apt_install(["busybox-static"])
    for cand in ("/bin/busybox", "/usr/bin/busybox"):
        if os.path.exists(cand) and _is_static_elf(cand):
            return os.path.realpath(cand), ""
    return None, f"no static busybox: apt-get install busybox-static: {out}"


def make_busybox_rootfs(dest, busybox=None) -> str:
    """A minimal root: /bin/busybox (static) with every applet linked in /bin,
    the usual mount points and a root entry in /etc/passwd and /etc/group."""
    if busybox is None:
        busybox, why = find_static_busybox()
        if busybox is None:
            raise RuntimeError(why)
    for d in ("bin", "proc", "sys", "dev", "tmp", "etc", "root", "run", "var/tmp", "usr/bin", "sbin"):
        os.makedirs(os.path.join(dest, d), exist_ok=True)
    os.chmod(os.path.join(dest, "tmp"), 0o1777)
    target = os.path.join(dest, "bin", "busybox")
    shutil.copy2(busybox, target)
    out = subprocess.run([busybox, "--list"], stdout=subprocess.PIPE, text=True, check=True).stdout
    for applet in out.split():
        if "/" in applet or applet == "busybox":
            continue
        link = os.path.join(dest, "bin", applet)
        if not os.path.lexists(link):
            os.symlink("busybox", link)
    with open(os.path.join(dest, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
    with open(os.path.join(dest, "etc", "group"), "w") as f:
        f.write("root:x:0:\nnogroup:x:65534:\n")
    return dest


# --- OCI bundles -------------------------------------------------------------

OCI_NAMESPACES = ("mount", "pid", "uts", "ipc", "network")


def make_oci_bundle(bundle, root, args, *, spec_tool="runc", namespaces=OCI_NAMESPACES, readonly=True,
                    cgroups_path=None, edit=None) -> str:
    """`runc spec` (or `crun spec`) in `bundle`, then: root.path = root (absolute),
    process.args = args, terminal false, exactly `namespaces` (no user
    namespace unless asked). `edit(config)` may change more. Returns the
    config.json path."""
    os.makedirs(bundle, exist_ok=True)
    cfg_path = os.path.join(bundle, "config.json")
    if os.path.exists(cfg_path):
        os.unlink(cfg_path)
    subprocess.run([spec_tool, "spec"], cwd=bundle, check=True, stdout=subprocess.DEVNULL)
    with open(cfg_path) as f:
        cfg = json.load(f)
    cfg["root"] = {"path": os.path.abspath(root), "readonly": bool(readonly)}
    cfg["process"]["args"] = list(args)
    cfg["process"]["terminal"] = False
    cfg["linux"]["namespaces"] = [{"type": t} for t in namespaces]
    if cgroups_path is not None:
        cfg["linux"]["cgroupsPath"] = cgroups_path
    if edit is not None:
        edit(cfg)
    with open(cfg_path, "w") as f:
        json.dump(cfg, f, indent=2)
    return cfg_path


# --- launching -----------------------------------------------------------------

class Spawner:
    """posix_spawn + waitpid, stdin/stdout/stderr on /dev/null (or inherited):
    the same launcher for every external tool a benchmark compares."""

    def __init__(self, *, quiet=True, env=None):
        self.env = dict(os.environ if env is None else env)
        self._devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        self.file_actions = [(os.POSIX_SPAWN_DUP2, self._devnull, fd) for fd in ((0, 1, 2) if quiet else (0,))]

    def run(self, argv) -> int:
        pid = os.posix_spawn(argv[0], argv, self.env, file_actions=self.file_actions)
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
        return os.waitstatus_to_exitcode(status)

    def close(self):
        if self._devnull >= 0:
            os.close(self._devnull)
            self._devnull = -1


# --- helpers for the lifecycle benchmark -------------------------------------------

def find_pyrt_cli():
    """The installed `pyrt` script next to this interpreter, not a pyenv shim
    (a shim is a bash script that runs `pyenv exec`: tens of ms more)."""
    cand = os.path.join(os.path.dirname(sys.executable), "pyrt")
    if os.access(cand, os.X_OK):
        return cand
    return shutil.which("pyrt")


def remove_cgroup_trees(prefix) -> list[str]:
    """Like remove_cgroups, but for cgroups named prefix* at the top of each
    hierarchy that have children (e.g. podman's --cgroup-parent with its
    conmon/ and libpod-<id>/): rmdir every (empty) cgroup in them, deepest
    first. Only directories below a prefix* one are touched."""
    if not prefix:
        raise ValueError("an empty prefix would match every cgroup")
    removed = []
    try:
        tops = [os.path.join(CGROUP_ROOT, d) for d in os.listdir(CGROUP_ROOT)]
    except OSError:
        return removed
    if cgroup_mode() == "v2":
        tops = [CGROUP_ROOT]
    for h in tops:
        if not os.path.isdir(h):
            continue
        try:
            entries = [e for e in os.listdir(h) if e.startswith(prefix)]
        except OSError:
            continue
        for e in entries:
            top = os.path.join(h, e)
            if not os.path.isdir(top) or os.path.islink(top):
                continue
            for dirpath, _dirs, _files in os.walk(top, topdown=False):
                try:
                    os.rmdir(dirpath)
                    removed.append(dirpath)
                except OSError:
                    pass
    return removed


def proc_memory(pid) -> dict:
    """Memory of a process in kB: VmRSS, RssAnon, RssFile, RssShmem (from
    /proc/PID/status) and Pss, Pss_Anon, Pss_File (from smaps_rollup), plus
    its comm. Missing fields are left out."""
    out = {}
    with open(f"/proc/{pid}/comm") as f:
        out["comm"] = f.read().strip()
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon", "RssFile", "RssShmem", "PPid"):
                out[k] = int(v.split()[0])
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("Pss", "Pss_Anon", "Pss_File"):
                    out[k] = int(v.split()[0])
    except OSError:
        pass
    return out


def parent_pid(pid) -> int:
    """PPid of a process, from /proc/PID/status."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("PPid:"):
                return int(line.split()[1])
    raise OSError(f"no PPid in /proc/{pid}/status")


# --- the C floor loop --------------------------------------------------------------

C_LOOP_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "c_loop.c")
C_LOOP_LEAVES_OUT = ("/proc, /sys, /dev (devpts, shm, mqueue), masked and read-only paths, lo up, "
                     "the capability bounding set, no_new_privs and the seccomp filter")


def prepare_c_loop(scratch, st) -> str:
    """perf/c_loop.c compiled into the scratch directory and tried once: sets
    st["c_loop"] (the program) and st["c_anchor"] (where it mounts); returns ""
    or why it cannot run."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        return "no C compiler (cc)"
    exe = os.path.join(scratch.path, "c-loop")
    p = subprocess.run([cc, "-O2", "-Wall", "-o", exe, C_LOOP_SOURCE], capture_output=True, text=True)
    if p.returncode:
        return f"cc failed: {p.stderr.strip()[-300:]}"
    st["c_loop"], st["c_anchor"] = exe, scratch.sub("c-anchor")
    try:
        time_c_loop(exe, st["lower"], st["c_anchor"], 2)
    except Exception as exc:  # noqa: BLE001 - the caller skips the C loop and says why
        return f"{type(exc).__name__}: {exc}"
    return ""


def time_c_loop(exe, lower, anchor, loops) -> float:
    """Seconds the C loop takes for `loops` containers (as it measures them itself)."""
    out = subprocess.run([exe, lower, anchor, str(loops)], check=True, stdout=subprocess.PIPE,
                         text=True).stdout
    return float(out.strip())


# --- pyperf scaffolding ----------------------------------------------------------

# pyperf's short options -> their long spelling (for "did the user give it?")
_PYPERF_LONG = {"-p": "--processes", "-n": "--values", "-w": "--warmups", "-l": "--loops"}


# --smoke: every path of a benchmark once, on tiny inputs, so that CI notices a
# benchmark that no longer runs; its figures mean nothing and none is judged.
SMOKE = False
SMOKE_PYPERF_ARGS = ["-p", "1", "-n", "1", "-w", "0", "-l", "1"]


def pyperf_argv(argv, quick_args) -> tuple[list[str], bool]:
    """Take --quick (or --smoke) out of argv; with it, put the (option, value)
    pairs of quick_args (SMOKE_PYPERF_ARGS) in front, except those the user gave
    (as -p, --processes or --processes=N). --smoke also sets SMOKE, for the
    script's own loops. Returns (argv, quick), quick true for --smoke too."""
    global SMOKE
    if "--smoke" in argv:
        SMOKE = True
        quick_args = SMOKE_PYPERF_ARGS
        argv = [a for a in argv if a != "--smoke"] + ["--quick"]
    quick = "--quick" in argv
    argv = [a for a in argv if a != "--quick"]
    if quick:
        extra = []
        for i in range(0, len(quick_args), 2):
            opt, val = quick_args[i:i + 2]
            lo = _PYPERF_LONG.get(opt, opt)
            if not any(a in (opt, lo) or a.startswith(lo + "=") for a in argv):
                extra += [opt, val]
        argv = extra + argv
    return argv, quick


def _add_scratch_arg(cmd, args):
    cmd.extend(("--scratch", args.scratch))


def make_runner(name, argv, **runner_kwargs):
    """A pyperf.Runner for the options argv (set as sys.argv[1:]), with a
    hidden --scratch option that every worker gets: the main process's scratch
    directory, where run_main leaves state.json."""
    try:
        import pyperf
    except ImportError:  # pragma: no cover
        sys.exit(f"{name} needs pyperf: pip install pyperf")
    sys.argv[1:] = argv
    runner = pyperf.Runner(add_cmdline_args=_add_scratch_arg, **runner_kwargs)
    runner.argparser.add_argument("--scratch", help=argparse.SUPPRESS)
    return runner


def _raise_exit(signum, frame):
    raise SystemExit(128 + signum)


def exit_on_signals():
    """SIGTERM and SIGHUP raise SystemExit, so that the finally: clean-up runs."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_exit)


def run_main(runner, args, *, name, setup, run_benchmarks, report, cleanup, why_root=None,
             scratch_prefix=None, scratch_size="512m", scratch_base=None):
    """The body of a benchmark's main() once runner.parse_args() is done.

    A worker (pyperf started it): load the state of the main process from
    --scratch/state.json, die with the parent, run_benchmarks(runner, st).

    The main process (root only): a Scratch; st = setup(args, scratch), a
    JSON-able dict whose "benches" lists what to run (its "skipped" is printed
    when there is nothing), saved as state.json for the workers; results =
    run_benchmarks(runner, st); report(results, st); and in any case
    cleanup(scratch, st) (scratch and st may be None), also on SIGTERM/SIGHUP."""
    if args.worker:
        if not args.scratch:
            raise SystemExit(f"{name} worker started without --scratch")
        die_with_parent()
        with open(os.path.join(args.scratch, "state.json")) as f:
            st = json.load(f)
        run_benchmarks(runner, st)
        return
    if os.geteuid() != 0:
        raise SystemExit(f"{name} needs root" + (f" ({why_root})" if why_root else ""))
    exit_on_signals()
    scratch = st = None
    try:
        scratch = Scratch(prefix=scratch_prefix or f"pyrt-{name.replace('_', '-')}-", size=scratch_size,
                          base=scratch_base)
        args.scratch = scratch.path  # for the workers' command line
        st = setup(args, scratch)
        if not st["benches"]:
            print("nothing to measure:", st["skipped"])
            return
        with open(os.path.join(scratch.path, "state.json"), "w") as f:
            json.dump(st, f)
        results = run_benchmarks(runner, st)
        if SMOKE:
            print("\n--smoke: every path ran once; the figures below are not measurements")
        report(results, st)
    finally:
        cleanup(scratch, st)


def run_smoke(args, *, name, setup, cleanup, time_one, why_root=None, in_child=False, scratch_size="256m"):
    """--smoke without pyperf (CI; no figure is taken): as root, a Scratch;
    st = setup(args, scratch) (what it skipped printed); time_one(st, bench) for
    each of st["benches"] (the benchmark's loop on a tiny count), "BENCH: ok"
    after each; in any case cleanup(scratch, st). in_child: the loops in a forked
    child, so that what they change in their process (a private mount namespace)
    goes with it; a failure there is printed and makes the exit status 1."""
    if os.geteuid() != 0:
        raise SystemExit(f"{name} needs root" + (f" ({why_root})" if why_root else ""))

    def loops():
        for bench in st["benches"]:
            time_one(st, bench)
            print(f"{bench}: ok", flush=True)

    scratch = st = None
    try:
        scratch = Scratch(prefix=f"pyrt-{name.replace('_', '-')}-smoke-", size=scratch_size)
        st = setup(args, scratch)
        for bench, why in st["skipped"].items():
            print(f"{bench}: skipped ({why})")
        if not in_child:
            loops()
            return
        sys.stdout.flush()  # (not printed again by the child)
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                loops()
            except BaseException as e:  # noqa: BLE001 - reported, and the exit status says so
                print(f"failed: {e}", flush=True)
                code = 1
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        if status:
            raise SystemExit(1)
    finally:
        cleanup(scratch, st)


def bench_main(name, *, benches, quick_args, setup, run_benchmarks, report, cleanup, time_one, why_root=None,
               user_option=False, add_options=None, smoke_in_child=False):
    """A benchmark's main(): with --smoke, run_smoke(time_one, in_child=smoke_in_child);
    else pyperf (--quick: quick_args) and run_main, report(results, st, args).
    Its options, in both modes: --only (among `benches`), --user (user_option: the
    ordinary user of a rootless benchmark), what add_options(parser, quick) adds,
    --no-install."""
    def options(ap, quick):
        ap.add_argument("--only", help="comma-separated benchmarks among: " + ", ".join(benches))
        if user_option:
            ap.add_argument("--user", help="the ordinary user (default: one with a range in /etc/subuid)")
        if add_options is not None:
            add_options(ap, quick)
        ap.add_argument("--no-install", action="store_true", help="do not apt-get install missing tools")

    if "--smoke" in sys.argv[1:]:
        ap = argparse.ArgumentParser(prog=f"{name}.py --smoke")
        options(ap, True)
        args = ap.parse_args([a for a in sys.argv[1:] if a != "--smoke"])
        run_smoke(args, name=name, setup=setup, cleanup=cleanup, time_one=time_one, why_root=why_root,
                  in_child=smoke_in_child)
        return
    argv, quick = pyperf_argv(sys.argv[1:], quick_args)
    runner = make_runner(name, argv)
    options(runner.argparser, quick)
    args = runner.parse_args()
    run_main(runner, args, name=name, why_root=why_root, setup=setup, run_benchmarks=run_benchmarks,
             report=lambda results, st: report(results, st, args), cleanup=cleanup)


# --- summaries -------------------------------------------------------------------

def print_table(results, names, skipped, *, width, why_width=100, extra=None, extra_header=""):
    """One line per benchmark of `names`: median and stdev in ms, number of
    values, and extra(name, median) when given; "skipped (why)" for a name in
    `skipped` without a result. Returns {name: median}."""
    med = {}
    print(f"{'benchmark':<{width}} {'median':>11} {'stdev':>10} {'values':>7}{extra_header}")
    for name in names:
        b = results.get(name)
        if b is None:
            if name in skipped:
                print(f"{name:<{width}} {'skipped':>11}  ({skipped[name][:why_width]})")
            continue
        med[name] = m = b.median()
        sd = b.stdev() if b.get_nvalue() > 1 else 0.0
        line = f"{name:<{width}} {m * 1e3:8.2f} ms {sd * 1e3:7.2f} ms {b.get_nvalue():>7}"
        print(line + (extra(name, m) if extra else ""))
    return med


def print_ratios(med, pairs, line="  {a} / {b}: {r:.2f}x", *, rates=False, target=None, in_process=()):
    """For each (a, b) of pairs measured both: `line` with r = med[a] / med[b]
    (med[b] / med[a], the ratio of the rates, when rates), followed by
    "(target <= T: met)" when a target is given. Names in in_process are
    measured in-process (no program started per run): a ratio between one of
    them and a whole-process figure says so."""
    for a, b in pairs:
        if a in med and b in med:
            r = med[b] / med[a] if rates else med[a] / med[b]
            out = line.format(a=a, b=b, r=r)
            if (a in in_process) != (b in in_process):
                out += f"  [{'in-process' if a in in_process else 'whole process'} vs " \
                       f"{'in-process' if b in in_process else 'whole process'}]"
            if target is not None:
                out += f"  (target <= {target}x: {'met' if r <= target else 'NOT met'})"
            print(out)


def best_of(time_once, repeat=3) -> float:
    """A warm-up call of time_once() (which returns seconds), then the smallest
    of `repeat` more."""
    time_once()
    return min(time_once() for _ in range(repeat))


def timed(fn) -> float:
    """Seconds that fn() takes."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _subuid_users():
    names = []
    try:
        with open("/etc/subuid") as f:
            for line in f:
                parts = line.strip().split(":")
                if len(parts) == 3 and not line.startswith("#"):
                    names.append(parts[0])
    except FileNotFoundError:
        pass
    return names


def pick_user(name):
    """The ordinary user the rootless benchmarks run as: `name`, else the first
    with a subordinate id range, else a pyrt-bench user made with one."""
    if name:
        return pwd.getpwnam(name)
    for n in _subuid_users():
        try:
            pw = pwd.getpwnam(n)
        except KeyError:
            continue
        if pw.pw_uid != 0:
            return pw
    subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", "--user-group", "pyrt-bench"], check=True,
                   capture_output=True)
    pw = pwd.getpwnam("pyrt-bench")
    if "pyrt-bench" not in _subuid_users():
        subprocess.run(["usermod", "--add-subuids", "500000-565535", "--add-subgids", "500000-565535",
                        "pyrt-bench"], check=True, capture_output=True)
    return pw
