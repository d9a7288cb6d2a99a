#!/usr/bin/env python3
"""pyrt without root against pyrt as root, in the same run: /bin/true (busybox,
tmpfs rootfs) in a new container.

  pyrt.run root       pyrt.run(["/bin/true"], rootfs=Overlay([lower], upper, work)) as root
  pyrt.run rootless   the same as an ordinary user (its own copy of the rootfs, upper and
                      work dirs): a user namespace mapped from its subordinate range
                      (newuidmap/newgidmap once per process: the containers of a process
                      share it), /dev nodes bound from the host
  pool root           pyrt.Pool(rootfs=lower, size=4, measure=False).run(["/bin/true"])
  pool rootless       the same as the ordinary user (its pyrt-zygote joins the process's
                      user namespace once: no map helper runs per container)

Each rootless value is measured in a child of the pyperf worker that drops root
for the user (setresuid, dumpable again as after a login) after one untimed run
(which makes the process's user namespace). The figures are per container. As on a
shared machine two pyperf benchmarks are taken minutes apart, a paired comparison
follows them (--paired ROUNDS, 0 to skip): rounds of root and rootless runs one
after the other, the median of their ratios.

The user: --user NAME (default: the first user with a range in /etc/subuid; else
`pyrt-bench` is made, with a range of 65536 ids). Needs root (to be both), and
the package uidmap.

  python perf/bench_rootless.py --quick      # one worker per benchmark, < 1 min
  python perf/bench_rootless.py              # pyperf defaults
  python perf/bench_rootless.py --smoke      # each benchmark's loop twice, no timing (CI)
"""
from __future__ import annotations

import os
import shutil
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402  (perf/common.py)

TARGET_RATIO = 1.3  # rootless pyrt.run within 1.3x of root's
ALL_BENCHES = ["pyrt.run root", "pyrt.run rootless", "pool root", "pool rootless"]
QUICK_PYPERF_ARGS = ["-p", "1", "-n", "5", "-w", "1", "--min-time", "0.1"]
POOL_SIZE = 4


# --- the timed loops (in pyperf workers) -----------------------------------------

def _preload():
    """What a rootless run imports lazily, imported while this process can still
    read the interpreter's files (an installation under /root is not the user's)."""
    import pickle  # noqa: F401
    import pyrt
    import pyrt.launch.seccomp  # noqa: F401
    import pyrt.launch.userns  # noqa: F401
    import pyrt.paths  # noqa: F401
    import pyrt.pool.pool  # noqa: F401
    import pyrt.cgroups.delegation  # noqa: F401
    import pyrt.launch.caps  # noqa: F401
    import selectors  # noqa: F401
    import subprocess as _sp  # noqa: F401
    pyrt.run(["/bin/true"], namespaces=(), network="host")  # the rest of what a run imports


def _become(st):
    """In a forked child: the user, as after a login (dumpable, its own env)."""
    import ctypes
    u = st["user"]
    os.setgroups([])
    os.setresgid(u["gid"], u["gid"], u["gid"])
    os.setresuid(u["uid"], u["uid"], u["uid"])
    ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE: setresuid cleared it
    os.environ.update(HOME=st["user_home"], XDG_RUNTIME_DIR=st["user_run"], USER=u["name"])


def _in_child_as_user(st, body):
    """body() -> seconds, run in a child that became the user; returns them."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            _become(st)
            os.write(w, repr(body()).encode())
            os._exit(0)
        except BaseException as e:  # noqa: BLE001 - reported to the parent
            os.write(w, f"error {type(e).__name__}: {e}".encode())
            os._exit(1)
    os.close(w)
    out = b""
    while True:
        chunk = os.read(r, 4096)
        if not chunk:
            break
        out += chunk
    os.close(r)
    os.waitpid(pid, 0)
    if out.startswith(b"error"):
        raise RuntimeError(out.decode())
    return float(out)


def _run_loop(loops, lower, upper, work):
    import pyrt
    rootfs = pyrt.Overlay([lower], upperdir=upper, workdir=work)
    run = pyrt.run
    run(["/bin/true"], rootfs=rootfs)  # untimed: the process's user namespace, lazy imports
    t0 = time.perf_counter()
    for _ in range(loops):
        r = run(["/bin/true"], rootfs=rootfs)
        if r.returncode:
            raise RuntimeError(f"pyrt.run: /bin/true exited with {r.returncode}")
    return time.perf_counter() - t0


def _pool_loop(loops, lower):
    import pyrt
    with pyrt.Pool(rootfs=lower, size=POOL_SIZE, measure=False) as pool:
        for _ in range(POOL_SIZE):  # untimed: the pool is full once
            pool.run(["/bin/true"])
        t0 = time.perf_counter()
        for _ in range(loops):
            r = pool.run(["/bin/true"])
            if r.returncode:
                raise RuntimeError(f"pool: /bin/true exited with {r.returncode}")
        return time.perf_counter() - t0


def time_run_root(loops, st):
    return _run_loop(loops, st["lower"], st["upper"], st["work"])


def time_run_rootless(loops, st):
    _preload()
    return _in_child_as_user(st, lambda: _run_loop(loops, st["user_lower"], st["user_upper"], st["user_work"]))


def time_pool_root(loops, st):
    return _pool_loop(loops, st["lower"])


def time_pool_rootless(loops, st):
    _preload()
    return _in_child_as_user(st, lambda: _pool_loop(loops, st["user_lower"]))


TIMERS = {"pyrt.run root": time_run_root, "pyrt.run rootless": time_run_rootless,
          "pool root": time_pool_root, "pool rootless": time_pool_rootless}


def run_benchmarks(runner, st) -> dict:
    return {name: runner.bench_time_func(name, TIMERS[name], st) for name in st["benches"]}


# --- set-up (main process) -------------------------------------------------------

def _chown_tree(path, uid, gid):
    for dirpath, dirnames, filenames in os.walk(path):
        for n in dirnames + filenames + ["."]:
            os.chown(os.path.join(dirpath, n), uid, gid, follow_symlinks=False)


def setup(args, scratch) -> dict:
    if not shutil.which("newuidmap"):
        ok, out = common.apt_install(["uidmap"])
        if not ok:
            raise SystemExit(f"bench_rootless needs newuidmap (package uidmap): {out}")
    busybox, why = common.find_static_busybox(install=not args.no_install)
    if busybox is None:
        raise SystemExit(f"bench_rootless: {why}")
    pw = common.pick_user(args.user)
    os.chmod(scratch.path, 0o711)  # the user reaches its own directories below
    st = {"benches": [n for n in ALL_BENCHES if not args.only or n in args.only.split(",")], "skipped": {},
          "user": {"name": pw.pw_name, "uid": pw.pw_uid, "gid": pw.pw_gid}}
    st["lower"] = common.make_busybox_rootfs(scratch.sub("lower"), busybox)
    st["upper"], st["work"] = scratch.sub("upper"), scratch.sub("work")
    user_dir = scratch.sub("user")
    st["user_lower"] = common.make_busybox_rootfs(os.path.join(user_dir, "lower"), busybox)
    st["user_upper"], st["user_work"] = scratch.sub("user", "upper"), scratch.sub("user", "work")
    st["user_home"], st["user_run"] = scratch.sub("user", "home"), scratch.sub("user", "run")
    _chown_tree(user_dir, pw.pw_uid, pw.pw_gid)
    os.chmod(st["user_run"], 0o700)
    return st


def cleanup(scratch, st):
    if scratch is not None:
        for p in scratch.cleanup():
            common.log(f"[cleanup] {p}")


# --- report ----------------------------------------------------------------------

def paired(st, rounds, per_round=50, root=time_run_root, rootless=time_run_rootless):
    """Rounds of root and rootless runs side by side: the median of the ratios."""
    ratios = []
    for _ in range(rounds):
        a = root(per_round, st) / per_round
        b = rootless(per_round, st) / per_round
        ratios.append(b / a)
    return statistics.median(ratios), ratios


def report(results, st, args):
    print()
    print(f"Container start-up, /bin/true (busybox) on tmpfs; rootless as {st['user']['name']} "
          f"(uid {st['user']['uid']})")
    med = common.print_table(results, ALL_BENCHES, st["skipped"], width=18)
    print()
    print("Ratios (rootless / root):")
    for a, b in (("pyrt.run root", "pyrt.run rootless"), ("pool root", "pool rootless")):
        if a in med and b in med:
            r = med[b] / med[a]
            target = f"  (target <= {TARGET_RATIO}: {'met' if r <= TARGET_RATIO else 'NOT met'})" \
                if a == "pyrt.run root" else ""
            print(f"  {b} / {a}: {r:.2f}x{target}")
    for name in ("pool root", "pool rootless"):
        if name in med:
            print(f"  {name}: {1 / med[name]:.0f} containers/s")
    if args.paired and "pyrt.run root" in st["benches"] and "pyrt.run rootless" in st["benches"]:
        _preload()
        m, ratios = paired(st, args.paired)
        print(f"  paired pyrt.run rootless / root, {len(ratios)} rounds of 50: median {m:.2f}x "
              f"(rounds {', '.join(f'{r:.2f}' for r in ratios)})")
    if args.paired and "pool root" in st["benches"] and "pool rootless" in st["benches"]:
        _preload()
        m, ratios = paired(st, args.paired, 200, time_pool_root, time_pool_rootless)
        print(f"  paired pool rootless / root (per container), {len(ratios)} rounds of 200: median {m:.2f}x "
              f"(rounds {', '.join(f'{r:.2f}' for r in ratios)})")


def _paired_option(ap, quick):
    ap.add_argument("--paired", type=int, default=5 if quick else 15, help="paired rounds after (0: none)")


def main():
    common.bench_main("bench_rootless", benches=ALL_BENCHES, quick_args=QUICK_PYPERF_ARGS, setup=setup,
                      run_benchmarks=run_benchmarks, report=report, cleanup=cleanup,
                      time_one=lambda st, name: TIMERS[name](2, st), why_root="to run as root and as a user",
                      user_option=True, add_options=_paired_option)


if __name__ == "__main__":
    main()
