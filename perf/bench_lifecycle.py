#!/usr/bin/env python3
"""Container lifecycle costs (issue 4, "Speed"): exec, a run -d/stop/rm cycle,
the cgroup path of `run --rm --memory`, and the memory of the per-container
monitor, for pyrt against the tools a user would pick instead, in one run.

  exec ...          /bin/true exec'd into a running `sleep 1000` container:
    exec pyrt API     c.exec_run(["/bin/true"]) (in-process, docker-SDK shaped)
    exec pyrt API [spaced]  the same with an idle gap before each exec (untimed)
    exec pyrt CLI     `pyrt --root R exec NAME /bin/true`
    exec runc         `runc --root R exec ID /bin/true` into a runc container
                      (bundle from `runc spec`, same busybox rootfs)
  cycle ...         start a detached `sleep 1000`, stop it (-t 0), remove it:
    cycle pyrt API    rt.containers.run(img, [...], detach=True, name=X);
                      c.stop(timeout=0); c.remove()
    cycle pyrt CLI    pyrt run -d --name X; pyrt stop -t 0 X; pyrt rm X
    cycle podman      podman run -d --name X; podman stop -t 0 X; podman rm X
                      (runc runtime, cgroupfs, private --root/--runroot/--tmpdir)
  run ...           a foreground /bin/true removed on exit, with and without a
                    memory limit (the cgroup path), pyrt API and CLI:
    run pyrt API            rt.containers.run(img, ["/bin/true"], remove=True)
    run --memory pyrt API   ... mem_limit="64m"
    run pyrt CLI            pyrt run --rm busybox:latest /bin/true
    run --memory pyrt CLI   pyrt run --rm --memory 64m busybox:latest /bin/true
                    each measured [spaced] (an untimed idle --gap before each
                    run, as between two commands of a user) and [b2b] (back to
                    back). On a v1/hybrid host, a write to a v1 cgroup.procs
                    waits for an RCU grace period (~10 ms) unless another cgroup
                    migration happened a few ms before: spaced runs pay it,
                    back-to-back in-process runs mostly do not.
  interleaved       (not pyperf; after the benchmarks) the same run / run
                    --memory pairs alternated in one process, so that the load
                    of a busy machine weighs on both alike: the difference the
                    target is about, with less noise than two separate
                    pyperf benchmarks.
  memory            (not pyperf; after the benchmarks) VmRSS, RssAnon, RssFile
                    and Pss of the process that watches a running container:
                    pyrt's monitor and podman's conmon, each found as the parent
                    of the container's init (PPid in /proc/<init>/status).

  python perf/bench_lifecycle.py --quick        # about a minute
  python perf/bench_lifecycle.py                # pyperf defaults (several minutes)
  python perf/bench_lifecycle.py --only "exec pyrt API,exec runc" --gap 50
  python perf/bench_lifecycle.py -o out.json    # any pyperf option works

Options of this script (the rest are pyperf's): --quick, --only NAMES, --gap MS
(default 20), --no-install (do not apt-get install missing tools),
--no-breakdown (skip the per-step timing of the cycles in the main process),
--memory-containers N (containers per tool for the memory figures, default 3).

What is fair, and what is special here:
- Everything lives in one tmpfs mounted on a directory in /dev/shm: pyrt's store,
  runc's --root and bundle, podman's --root, --runroot and --tmpdir. Clean-up
  (also on failure, SIGTERM, SIGHUP) removes every container of the three
  tools, their cgroups, the mounts and the directory.
- Launch: every command line (pyrt CLI, runc, podman) is started by the worker
  with posix_spawn + waitpid, stdio on /dev/null (common.Spawner); the API
  figures have no launcher. The installed `pyrt` next to sys.executable is run,
  never a pyenv shim.
- Network: pyrt's default is `none` (own namespace with lo); podman gets
  `--network none` too (its default bridge adds netavark and iptables work and
  would change the host's firewall rules); runc's bundle has a network
  namespace and nothing in it.
- podman: `--runtime runc --cgroup-manager cgroupfs --events-backend file`,
  `--ulimit nofile=1024:1024 --ulimit nproc=1024:1024` (this host lacks
  CAP_SYS_RESOURCE), `--pull never`, and a private `--cgroup-parent` so its
  cgroups (container and conmon) can be found and removed. Its image is a
  `podman import` of a tar of the same busybox rootfs (no registry). A private
  containers.conf (CONTAINERS_CONF) sets `lock_type = "file"`: podman's default
  shm lock segment (/dev/shm/libpod_lock) is shared by every podman store on
  the host, and a fresh --tmpdir makes podman "refresh", which frees all the
  locks in it -- those of any other podman user too. File locks live in the
  private --tmpdir.
- runc: the exec target is `runc run -d` of a bundle whose root is an overlay
  (mounted once by the benchmark) of the busybox rootfs; runc exec joins the
  container's cgroups (every v1 hierarchy) like pyrt's exec does.
- pyrt's detached containers get a cgroup for accounting (memory, pids,
  cpuacct) even without limits; `run --rm` without limits makes none.
"""
from __future__ import annotations

import os
import secrets
import signal
import statistics
import subprocess
import sys
import tarfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402  (perf/common.py)
from lifecycle_probes import breakdown, interleaved_limits, measure_memory  # noqa: E402
from lifecycle_tools import (IMAGE, MEM_LIMIT, PODMAN_IMAGE, cycle_argvs, fresh_name, get_spawner, idle_gap,  # noqa: E402
                             output, podman_base, pyrt_cli, quiet, runtime, stderr_tail)

EXEC_BENCHES = ["exec pyrt API", "exec pyrt API [spaced]", "exec pyrt CLI", "exec runc"]
CYCLE_BENCHES = ["cycle pyrt API", "cycle pyrt CLI", "cycle podman"]
RUN_BENCHES = [f"{what} pyrt {face} [{mode}]" for mode in ("spaced", "b2b") for face in ("API", "CLI")
               for what in ("run", "run --memory")]
ALL_BENCHES = EXEC_BENCHES + CYCLE_BENCHES + RUN_BENCHES

QUICK_PYPERF_ARGS = ["-p", "1", "-n", "5", "-w", "1", "--min-time", "0.05"]

TARGET_CYCLE = 0.1   # cycle at most 0.1x podman's
TARGET_EXEC = 0.5    # exec at most 0.5x runc exec's
TARGET_LIMIT_MS = 2.0

# --- the timed loops (pyperf workers) ------------------------------------------

def time_exec_api(loops, st, name):
    rt, _ = runtime(st)
    c = rt.containers.get(st["exec_name"])
    gap = idle_gap(st, name)
    argv = ["/bin/true"]
    pc = time.perf_counter
    total = 0.0
    for _ in range(loops):
        if gap:
            time.sleep(gap)
        t0 = pc()
        code, _out = c.exec_run(argv)
        total += pc() - t0
        if code:
            raise RuntimeError(f"{name}: /bin/true exited with {code}")
    return total


def time_cycle_api(loops, st, name):
    rt, img = runtime(st)
    run = rt.containers.run
    cmd = ["sleep", "1000"]
    pc = time.perf_counter
    total = 0.0
    for _ in range(loops):
        n = fresh_name(st, "a")
        t0 = pc()
        c = run(img, cmd, detach=True, name=n)
        c.stop(timeout=0)
        c.remove()
        total += pc() - t0
    return total


def time_run_api(loops, st, name):
    rt, img = runtime(st)
    run = rt.containers.run
    kw = {"mem_limit": MEM_LIMIT} if name.startswith("run --memory") else {}
    gap = idle_gap(st, name)
    cmd = ["/bin/true"]
    pc = time.perf_counter
    total = 0.0
    for _ in range(loops):
        if gap:
            time.sleep(gap)
        t0 = pc()
        run(img, cmd, remove=True, **kw)  # a non-zero exit raises ContainerError
        total += pc() - t0
    return total


def time_commands(loops, st, name, make_argvs):
    """Each loop runs the command lines make_argvs() returns, one after the
    other, timed together (after an untimed gap for [spaced])."""
    sp = get_spawner(st)
    run = sp.run
    gap = idle_gap(st, name)
    pc = time.perf_counter
    total = 0.0
    for _ in range(loops):
        argvs = make_argvs()
        if gap:
            time.sleep(gap)
        t0 = pc()
        for argv in argvs:
            rc = run(argv)
            if rc:
                raise RuntimeError(f"{name}: exit status {rc}: {' '.join(argv)}\n"
                                   f"stderr (tail): {stderr_tail(sp)}")
        total += pc() - t0
    return total


def argvs_factory(name, st):
    if name == "exec pyrt CLI":
        argv = pyrt_cli(st, "exec", st["exec_name"], "/bin/true")
        return lambda: [argv]
    if name == "exec runc":
        argv = [st["tools"]["runc"], "--root", st["runc_root"], "exec", st["runc_id"], "/bin/true"]
        return lambda: [argv]
    if name.startswith("cycle "):
        return lambda: cycle_argvs(st, name)
    if name.startswith("run") and " CLI " in name:
        limit = ["--memory", MEM_LIMIT] if name.startswith("run --memory") else []
        argv = pyrt_cli(st, "run", "--rm", *limit, IMAGE, "/bin/true")
        return lambda: [argv]
    raise KeyError(name)


def run_benchmarks(runner, st) -> dict:
    """The same sequence of runner calls in the main process and in every worker
    (pyperf picks a worker's benchmark by its index in the sequence)."""
    if st.get("podman_conf"):
        os.environ["CONTAINERS_CONF"] = st["podman_conf"]  # workers' env is filtered by pyperf
    results = {}
    for name in st["benches"]:
        try:
            if name.startswith("exec pyrt API"):
                results[name] = runner.bench_time_func(name, time_exec_api, st, name)
            elif name == "cycle pyrt API":
                results[name] = runner.bench_time_func(name, time_cycle_api, st, name)
            elif name.startswith("run") and " API " in name:
                results[name] = runner.bench_time_func(name, time_run_api, st, name)
            else:
                results[name] = runner.bench_time_func(name, time_commands, st, name, argvs_factory(name, st))
        except Exception as exc:  # noqa: BLE001
            if runner.args.worker:
                raise
            # the main process: note it and go on with the others (the worker's
            # traceback is above)
            st["skipped"][name] = f"FAILED: {exc}"
            common.log(f"[run] {name} failed: {exc}")
            results[name] = None
    return results


def pyrt_fingerprint() -> dict:
    """mtime of the installed pyrt files a run depends on: a change during the
    run means someone reinstalled pyrt meanwhile (the figures mix two builds)."""
    out = {}
    try:
        import pyrt
        pkg = os.path.dirname(pyrt.__file__)
        for d in {pkg, *getattr(pyrt, "__path__", [])}:
            for e in os.listdir(d):
                if e.endswith(".so") or e.startswith("pyrt-"):
                    out[os.path.join(d, e)] = os.stat(os.path.join(d, e)).st_mtime_ns
    except Exception:  # noqa: BLE001
        pass
    cli = common.find_pyrt_cli()
    if cli:
        out[cli] = os.stat(cli).st_mtime_ns
    return out


# --- setup (main process) -------------------------------------------------------

def setup(args, scratch) -> dict:
    install = not args.no_install
    wanted = ALL_BENCHES if not args.only else [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in ALL_BENCHES]
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {unknown}; known: {', '.join(ALL_BENCHES)}")
    st = {"prefix": f"lcb{secrets.token_hex(3)}", "tools": {}, "skipped": {}, "notes": [],
          "gap": args.gap / 1e3, "cgroup_mode": common.cgroup_mode()}
    st["state_dir"] = scratch.path

    def skip(names, why):
        for n in names:
            if n in wanted and n not in st["skipped"]:
                st["skipped"][n] = why
                common.log(f"[setup] skipping {n}: {why}")

    busybox, why = common.find_static_busybox(install=install)
    if busybox is None:
        raise SystemExit(f"bench_lifecycle: {why}")
    st["lower"] = common.make_busybox_rootfs(scratch.sub("lower"), busybox)

    # pyrt: a store, the busybox image, a running container to exec into
    pyrt_names = [n for n in ALL_BENCHES if "pyrt" in n]
    st["pyrt_store"] = scratch.sub("pyrt-store")
    st["cli"] = common.find_pyrt_cli()
    try:
        import pyrt
        rt = pyrt.Runtime(st["pyrt_store"])
        rt.images.from_host(IMAGE, ["/bin/busybox"])
        st["pyrt_ok"] = True
    except Exception as exc:  # noqa: BLE001 - report, go on with the others
        skip(pyrt_names, f"pyrt store/image: {type(exc).__name__}: {exc}")
        rt = None
    if rt is not None and any(n.startswith("exec pyrt") for n in wanted):
        st["exec_name"] = f"{st['prefix']}-exec"
        try:
            c = rt.containers.run(IMAGE, ["sleep", "1000"], detach=True, name=st["exec_name"])
            code, out = c.exec_run(["/bin/true"])
            if code:
                raise RuntimeError(f"exec_run of /bin/true exited with {code}: {out!r}")
        except Exception as exc:  # noqa: BLE001
            skip([n for n in EXEC_BENCHES if "pyrt" in n], f"{type(exc).__name__}: {exc}")
    if rt is not None and not st["cli"]:
        skip([n for n in pyrt_names if "CLI" in n], "no `pyrt` script installed (pip install -e .)")
    elif rt is not None:
        checks = {"exec pyrt CLI": [pyrt_cli(st, "exec", st.get("exec_name", "-"), "/bin/true")],
                  "cycle pyrt CLI": cycle_argvs(st, "cycle pyrt CLI"),
                  "run pyrt CLI": [pyrt_cli(st, "run", "--rm", IMAGE, "/bin/true")],
                  "run --memory pyrt CLI": [pyrt_cli(st, "run", "--rm", "--memory", MEM_LIMIT, IMAGE,
                                                     "/bin/true")]}
        for key, argvs in checks.items():
            names = [n for n in wanted if n == key or n.startswith(key + " [")]
            if not names or any(n in st["skipped"] for n in names):
                continue
            for argv in argvs:
                ok, out = common.check_command(argv)
                if not ok:
                    skip(names, f"`{' '.join(argv[1:])}` failed: {out}")
                    break
    if rt is not None:
        for key, kw in (("run pyrt API", {}), ("run --memory pyrt API", {"mem_limit": MEM_LIMIT})):
            names = [n for n in wanted if n.startswith(key + " [")]
            if names:
                try:
                    rt.containers.run(IMAGE, ["/bin/true"], remove=True, **kw)
                except Exception as exc:  # noqa: BLE001
                    skip(names, f"{type(exc).__name__}: {exc}")

    # runc: a container running `sleep 1000` on an overlay of the busybox rootfs
    if "exec runc" in wanted:
        runc, why = common.find_tool("runc", install=install)
        if not runc:
            skip(["exec runc"], why)
        else:
            st["tools"]["runc"] = runc
            st["runc_root"] = scratch.sub("runc-root")
            st["runc_id"] = f"{st['prefix']}-runc"
            merged = common.mount_overlay([st["lower"]], scratch.sub("oci-upper"), scratch.sub("oci-work"),
                                          scratch.sub("merged"))
            bundle = scratch.sub("bundle")
            common.make_oci_bundle(bundle, merged, ["sleep", "1000"], spec_tool=runc)
            # stdio on /dev/null: a pipe would be held open by the detached container
            p = quiet([runc, "--root", st["runc_root"], "run", "-d", "--bundle", bundle, st["runc_id"]],
                       timeout=60)
            ok, out = (p.returncode == 0, f"runc run -d exited with {p.returncode}")
            if ok:
                ok, out = common.check_command([runc, "--root", st["runc_root"], "exec", st["runc_id"],
                                                "/bin/true"])
            if not ok:
                skip(["exec runc"], out)

    # podman: private store, file locks, the busybox rootfs imported as an image
    podman_names = [n for n in wanted if "podman" in n]
    if podman_names:
        podman, why = common.find_tool("podman", install=install, package="podman")
        conmon = None
        if podman:
            conmon, why = common.find_tool("conmon", install=install, package="conmon")
        runc, why2 = common.find_tool("runc", install=install)
        if not (podman and conmon and runc):
            skip(podman_names, why if not (podman and conmon) else why2)
        else:
            st["tools"].update(podman=podman, conmon=conmon, runc=runc)
            # short names: podman refuses a --runroot longer than 50 characters
            st["podman_root"] = scratch.sub("pm-root")
            st["podman_runroot"] = scratch.sub("pm-run")
            st["podman_tmpdir"] = scratch.sub("pm-tmp")
            st["podman_cgroup_parent"] = f"/{st['prefix']}-podman"
            st["podman_conf"] = os.path.join(scratch.path, "containers.conf")
            with open(st["podman_conf"], "w") as f:
                f.write('[engine]\nlock_type = "file"\n')
            os.environ["CONTAINERS_CONF"] = st["podman_conf"]
            tar_path = os.path.join(scratch.path, "busybox-rootfs.tar")
            with tarfile.open(tar_path, "w") as tf:
                tf.add(st["lower"], arcname=".")
            try:
                output(podman_base(st) + ["import", "-q", tar_path, PODMAN_IMAGE])
                for argv in cycle_argvs(st, "cycle podman"):
                    output(argv)
            except Exception as exc:  # noqa: BLE001
                skip(podman_names, str(exc))
            finally:
                os.unlink(tar_path)
            try:
                st["podman_version"] = output([podman, "--version"])
            except Exception:  # noqa: BLE001
                pass

    st["benches"] = [n for n in wanted if n not in st["skipped"]]
    return st


# --- clean-up (main process) --------------------------------------------------------

def _pyrt_cgroup_children():
    """Names of the cgroups below pyrt/ in the memory hierarchy (or v2 root)."""
    for base in ("/sys/fs/cgroup/memory/pyrt", "/sys/fs/cgroup/pyrt", "/sys/fs/cgroup/unified/pyrt"):
        try:
            return {e for e in os.listdir(base) if os.path.isdir(os.path.join(base, e))}
        except OSError:
            continue
    return set()


def _stray_processes(path) -> set[int]:
    """Processes holding a file, cwd or root below `path` (the scratch
    directory, which nothing but this benchmark uses: a monitor, a conmon or a
    container left behind), with their descendants."""
    me = os.getpid()
    found, parents = set(), {}
    for e in os.listdir("/proc"):
        if not e.isdigit() or int(e) == me:
            continue
        pid = int(e)
        try:
            with open(f"/proc/{pid}/stat") as f:
                parents[pid] = int(f.read().rsplit(")", 1)[1].split()[1])
            links = [os.readlink(f"/proc/{pid}/cwd"), os.readlink(f"/proc/{pid}/root")]
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    links.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
                except OSError:
                    pass
        except (OSError, IndexError, ValueError):
            continue
        if any(ln == path or ln.startswith(path + "/") for ln in links):
            found.add(pid)
    grew = True
    while grew:
        more = {p for p, pp in parents.items() if pp in found and p not in found and p != me}
        grew = bool(more)
        found |= more
    return found


def cleanup(scratch, st, cgroups_before):
    problems = []
    if st:
        prefix = st["prefix"]
        if st.get("pyrt_ok"):
            try:
                import pyrt
                rt = pyrt.Runtime(st["pyrt_store"])
                left = rt.containers.list(all=True)
                for c in left:
                    try:
                        c.remove(force=True)
                    except Exception as exc:  # noqa: BLE001
                        problems.append(f"pyrt rm -f {c.name}: {exc}")
                stray = [c.name for c in left if c.name != st.get("exec_name")]
                if stray:
                    problems.append(f"removed {len(stray)} leftover pyrt container(s): {stray[:4]}")
            except Exception as exc:  # noqa: BLE001
                problems.append(f"pyrt clean-up: {type(exc).__name__}: {exc}")
        if st["tools"].get("runc") and st.get("runc_root"):
            common.oci_delete_all(st["tools"]["runc"], st["runc_root"], prefix)
        if st["tools"].get("podman") and st.get("podman_root") and os.path.isdir(st["podman_root"]):
            base = podman_base(st)
            p = subprocess.run(base + ["ps", "-a", "-q"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True, check=False)
            if p.stdout.split():
                problems.append(f"removed {len(p.stdout.split())} leftover podman container(s)")
            quiet(base + ["rm", "-a", "-f", "-t", "0"], timeout=120)
            quiet(base + ["rmi", "-a", "-f"], timeout=120)
        removed = common.remove_cgroups(prefix) + common.remove_cgroup_trees(prefix)
        leftover = [d for d in removed if not d.endswith(f"{prefix}-podman") and "/conmon" not in d]
        if leftover:
            problems.append(f"removed {len(leftover)} leftover cgroup(s): {leftover[:4]}")
    if cgroups_before is not None:
        # pyrt's cgroups live in the shared pyrt/ parent (other sessions use it
        # too): report, do not touch, new ones that are empty
        new = {e for e in _pyrt_cgroup_children() - cgroups_before
               if len(e) == 64 and all(ch in "0123456789abcdef" for ch in e)}  # container ids only
        empty = []
        for e in new:
            try:
                with open(f"/sys/fs/cgroup/memory/pyrt/{e}/cgroup.procs") as f:
                    if not f.read().strip():
                        empty.append(e)
            except OSError:
                pass
        if empty:
            problems.append(f"{len(empty)} new empty cgroup(s) under memory/pyrt/ (ours or another "
                            f"session's; not removed): {sorted(empty)[:3]}")
    if scratch is not None:
        stray = _stray_processes(os.path.realpath(scratch.path))
        if stray:
            problems.append(f"killed {len(stray)} leftover process(es) using the scratch directory: "
                            f"{sorted(stray)[:8]}")
            for pid in stray:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.2)
        problems += scratch.cleanup()
    for p in problems:
        common.log(f"[cleanup] {p}")


# --- report -----------------------------------------------------------------------

def _ms(s):
    return f"{s * 1e3:8.2f} ms"


def print_summary(results, st, mem, steps, ab):
    print()
    print(f"Container lifecycle, busybox, stores on tmpfs, cgroups {st['cgroup_mode']}; "
          f"[spaced] = {st['gap'] * 1e3:g} ms idle before each, untimed")
    med = common.print_table(results, ALL_BENCHES, st["skipped"], width=34, why_width=110)

    print()
    print("Ratios and targets:")
    line = "  {a} / {b} = {r:.3f}x"
    in_process = {name for name in ALL_BENCHES if "API" in name}
    common.print_ratios(med, [(f"exec pyrt {x}", "exec runc") for x in ("API", "API [spaced]", "CLI")], line,
                        target=TARGET_EXEC, in_process=in_process)
    common.print_ratios(med, [(f"cycle pyrt {x}", "cycle podman") for x in ("API", "CLI")], line,
                        target=TARGET_CYCLE, in_process=in_process)
    for face in ("API", "CLI"):
        for mode in ("spaced", "b2b"):
            a, b = f"run --memory pyrt {face} [{mode}]", f"run pyrt {face} [{mode}]"
            if a in med and b in med:
                d = (med[a] - med[b]) * 1e3
                print(f"  run --rm --memory {MEM_LIMIT} minus run --rm, pyrt {face} [{mode}]: {d:+.2f} ms  "
                      f"(target <= {TARGET_LIMIT_MS:g} ms: {'met' if d <= TARGET_LIMIT_MS else 'NOT met'})")

    if ab:
        print()
        print(f"run --rm vs run --rm --memory {MEM_LIMIT}, interleaved in the main process (medians):")
        for key, v in ab.items():
            if isinstance(key, str):
                print(f"  interleaved runs failed ({key[7:] or 'setup'}): {v}")
                continue
            face, mode = key
            d = (v[1] - v[0]) * 1e3
            print(f"  pyrt {face} [{mode}]: {_ms(v[0])} without, {_ms(v[1])} with ({v[2]} each): "
                  f"{d:+.2f} ms  (target <= {TARGET_LIMIT_MS:g} ms: {'met' if d <= TARGET_LIMIT_MS else 'NOT met'})")

    if steps:
        print()
        print("Cycle steps (main process, medians):       run -d        stop          rm")
        for name, v in steps.items():
            if name == "_error":
                print(f"  breakdown failed: {v}")
                continue
            print(f"  {name:<38} {_ms(v[0])}  {_ms(v[1])}  {_ms(v[2])}")

    if mem:
        print()
        print("Memory of the process watching one running container, kB (median over containers):")
        fields = ("VmRSS", "RssAnon", "RssFile", "Pss", "Pss_Anon")
        print(f"  {'process':<22} {'n':>3} " + " ".join(f"{f:>9}" for f in fields) + "  comm")
        meds = {}
        for label, rows in mem.items():
            if label.startswith("_"):
                continue
            vals = {f: statistics.median([r[f] for r in rows if f in r]) for f in fields
                    if any(f in r for r in rows)}
            meds[label] = vals
            comm = ",".join(sorted({r["comm"] for r in rows}))
            print(f"  {label:<22} {len(rows):>3} " + " ".join(f"{vals.get(f, float('nan')):>9.0f}"
                                                             for f in fields) + f"  {comm}")
        con = meds.get("podman conmon")
        for label in ("pyrt monitor (API)", "pyrt monitor (CLI)"):
            if con and label in meds:
                a, b = meds[label]["VmRSS"], con["VmRSS"]
                print(f"  {label} VmRSS / conmon VmRSS = {a / b:.3f}x (target: no larger: "
                      f"{'met' if a <= b else 'NOT met'})")
        for e in mem.get("_errors", []):
            print(f"  note: {e}")

    print()
    print(f"note: pyrt CLI is {st.get('cli')}; every command line started with posix_spawn + waitpid")
    if st.get("podman_version"):
        print(f"note: {st['podman_version']}, runc runtime, cgroupfs, --network none, file locks "
              f"(private containers.conf), --cgroup-parent {st.get('podman_cgroup_parent')}")
    for n in st["notes"]:
        print(f"note: {n}")


# --- main --------------------------------------------------------------------------

def main():
    argv, quick = common.pyperf_argv(sys.argv[1:], QUICK_PYPERF_ARGS)
    runner = common.make_runner("bench_lifecycle", argv)
    ap = runner.argparser
    ap.add_argument("--only", help="comma-separated benchmarks among: " + ", ".join(ALL_BENCHES))
    ap.add_argument("--gap", type=float, default=20.0,
                    help="idle ms before each iteration of the [spaced] benchmarks, untimed (default 20)")
    ap.add_argument("--no-install", action="store_true", help="do not apt-get install missing tools")
    ap.add_argument("--no-breakdown", action="store_true", help="skip the per-step timing of the cycles")
    ap.add_argument("--memory-containers", type=int, default=3,
                    help="containers per tool for the memory figures (default 3; 0: skip)")
    args = runner.parse_args()
    cgroups_before = None if args.worker else _pyrt_cgroup_children()
    before = {}

    def measure(runner, st):
        before["fp"], before["load"] = pyrt_fingerprint(), os.getloadavg()
        return run_benchmarks(runner, st)

    def report(results, st):
        load1 = os.getloadavg()
        steps = {} if args.no_breakdown else breakdown(st, 5 if quick else 20)
        ab = interleaved_limits(st, 10 if quick else 40)
        mem = measure_memory(st, args.memory_containers) if args.memory_containers > 0 else {}
        st["notes"].append(f"load average (1 min) {before['load'][0]:.2f} before the benchmarks, {load1[0]:.2f} "
                           f"after, on {os.cpu_count()} CPUs")
        if pyrt_fingerprint() != before["fp"]:
            st["notes"].append("pyrt was reinstalled during the run (its .so / scripts changed): "
                               "the figures may mix two builds")
        print_summary(results, st, mem, steps, ab)

    common.run_main(runner, args, name="bench_lifecycle", why_root="namespaces, mounts, cgroups", setup=setup,
                    run_benchmarks=run_benchmarks if args.worker else measure, report=report,
                    cleanup=lambda scratch, st: cleanup(scratch, st, cgroups_before),
                    scratch_prefix="pyrt-lc-", scratch_size="1g", scratch_base="/dev/shm")


if __name__ == "__main__":
    main()
