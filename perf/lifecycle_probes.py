"""What perf/bench_lifecycle.py measures in its main process beside the pyperf
benchmarks: the memory of the process that watches a container (pyrt's monitor,
podman's conmon), the per-step breakdown of the cycles, and run / run --memory
alternated in one process."""
from __future__ import annotations

import statistics
import time

import common  # noqa: E402  (perf/common.py)
from lifecycle_tools import (IMAGE, MEM_LIMIT, close_spawner, cycle_argvs, fresh_name, logging_spawner,  # noqa: E402
                             output, podman_base, podman_run_d, pyrt_cli, quiet, stderr_tail)

# --- memory of the monitors (main process) --------------------------------------

def measure_memory(st, k) -> dict:
    """Start k containers with each tool, read the memory of the process that
    watches each (the parent of its init), remove them. Returns
    {label: [proc_memory dicts]} plus "_errors"."""
    out = {"_errors": []}
    if not st.get("pyrt_ok"):
        out["_errors"].append("pyrt: no store")
    else:
        import pyrt
        rt = pyrt.Runtime(st["pyrt_store"])
        made = []
        try:
            for i in range(k):
                made.append(rt.containers.run(IMAGE, ["sleep", "1000"], detach=True,
                                              name=fresh_name(st, "m")).name)
            if st.get("cli"):
                n = fresh_name(st, "mc")
                output(pyrt_cli(st, "run", "-d", "--name", n, IMAGE, "sleep", "1000"))
                made.append(n)
            time.sleep(0.2)  # let each settle (the monitor's first log write, etc.)
            for i, n in enumerate(made):
                label = "pyrt monitor (API)" if i < k else "pyrt monitor (CLI)"
                try:
                    c = rt.containers.get(n)
                    pid = c.attrs["State"]["Pid"]
                    mon = common.parent_pid(pid)
                    out.setdefault(label, []).append(common.proc_memory(mon))
                except Exception as exc:  # noqa: BLE001
                    out["_errors"].append(f"{label}: {type(exc).__name__}: {exc}")
        except Exception as exc:  # noqa: BLE001
            out["_errors"].append(f"pyrt: {type(exc).__name__}: {exc}")
        finally:
            for n in made:
                try:
                    rt.containers.get(n).remove(force=True)
                except Exception as exc:  # noqa: BLE001
                    out["_errors"].append(f"pyrt rm {n}: {exc}")
    if "cycle podman" in st["benches"]:
        base = podman_base(st)
        made = []
        try:
            for i in range(k):
                n = fresh_name(st, "mp")
                output(podman_run_d(st, n))
                made.append(n)
            time.sleep(0.2)
            for n in made:
                try:
                    pid, conmon_pid = (int(x) for x in output(
                        base + ["inspect", "--format", "{{.State.Pid}} {{.State.ConmonPid}}", n]).split())
                    mon = common.parent_pid(pid)
                    m = common.proc_memory(mon)
                    if mon != conmon_pid:
                        out["_errors"].append(f"podman {n}: parent of init is {mon} ({m['comm']}), "
                                              f"ConmonPid is {conmon_pid}")
                    out.setdefault("podman conmon", []).append(m)
                except Exception as exc:  # noqa: BLE001
                    out["_errors"].append(f"podman {n}: {type(exc).__name__}: {exc}")
        except Exception as exc:  # noqa: BLE001
            out["_errors"].append(f"podman: {type(exc).__name__}: {exc}")
        finally:
            for n in made:
                quiet(base + ["rm", "-f", "-t", "0", n], timeout=60)
    return out


# --- per-step breakdown of the cycles (main process) ------------------------------

def breakdown(st, n) -> dict:
    """Median time of each step of the run -d / stop / rm cycle, n cycles each."""
    rows = {}
    pc = time.perf_counter
    sp = logging_spawner(st, "breakdown")
    try:
        for name in ("cycle pyrt API", "cycle pyrt CLI", "cycle podman"):
            if name not in st["benches"]:
                continue
            steps = ([], [], [])
            if name == "cycle pyrt API":
                import pyrt
                rt = pyrt.Runtime(st["pyrt_store"])
                img = rt.images.get(IMAGE)
                for _ in range(n):
                    t0 = pc()
                    c = rt.containers.run(img, ["sleep", "1000"], detach=True, name=fresh_name(st, "b"))
                    t1 = pc()
                    c.stop(timeout=0)
                    t2 = pc()
                    c.remove()
                    t3 = pc()
                    for lst, d in zip(steps, (t1 - t0, t2 - t1, t3 - t2)):
                        lst.append(d)
            else:
                for _ in range(n):
                    for lst, argv in zip(steps, cycle_argvs(st, name)):
                        t0 = pc()
                        rc = sp.run(argv)
                        lst.append(pc() - t0)
                        if rc:
                            raise RuntimeError(f"exit status {rc}: {' '.join(argv)}: {stderr_tail(sp)}")
            rows[name] = [statistics.median(s) for s in steps]
    except Exception as exc:  # noqa: BLE001
        rows["_error"] = f"{type(exc).__name__}: {exc}"
    finally:
        close_spawner(sp)
    return rows


# --- interleaved A/B of the limit (main process) -------------------------------------

def interleaved_limits(st, n) -> dict:
    """run --rm vs run --rm --memory, alternating between the two in one process
    so that a change of the machine's load hits both alike (the pyperf figures
    are taken one benchmark after the other). [spaced]: one run at a time, each
    after the idle gap; [b2b]: blocks of 5 back-to-back runs of each. The order
    inside each round alternates. Returns {(face, mode): (median without,
    median with, n each)}."""
    out = {}
    sp = logging_spawner(st, "interleaved")
    pc = time.perf_counter
    try:
        import pyrt
        rt = pyrt.Runtime(st["pyrt_store"])
        img = rt.images.get(IMAGE)
    except Exception as exc:  # noqa: BLE001
        close_spawner(sp)
        return {"_error": f"{type(exc).__name__}: {exc}"}
    try:
        for face in ("API", "CLI"):
            if not all(f"{w} pyrt {face} [{m}]" in st["benches"] for w in ("run", "run --memory")
                       for m in ("spaced", "b2b")):
                continue
            if face == "API":
                def one(limit):
                    kw = {"mem_limit": MEM_LIMIT} if limit else {}
                    rt.containers.run(img, ["/bin/true"], remove=True, **kw)
            else:
                argvs = {False: pyrt_cli(st, "run", "--rm", IMAGE, "/bin/true"),
                         True: pyrt_cli(st, "run", "--rm", "--memory", MEM_LIMIT, IMAGE, "/bin/true")}

                def one(limit):
                    rc = sp.run(argvs[limit])
                    if rc:
                        raise RuntimeError(f"exit status {rc}: {' '.join(argvs[limit])}: {stderr_tail(sp)}")
            for mode, block, gap in (("spaced", 1, st["gap"]), ("b2b", 5, 0.0)):
                vals = {False: [], True: []}
                try:
                    one(False), one(True)  # warm-up
                    for r in range(max(2, n // block)):
                        for limit in ((False, True) if r % 2 == 0 else (True, False)):
                            for _ in range(block):
                                if gap:
                                    time.sleep(gap)
                                t0 = pc()
                                one(limit)
                                vals[limit].append(pc() - t0)
                except Exception as exc:  # noqa: BLE001
                    out[f"_error {face} {mode}"] = f"{type(exc).__name__}: {exc}"
                    continue
                out[(face, mode)] = (statistics.median(vals[False]), statistics.median(vals[True]),
                                     len(vals[False]))
    finally:
        close_spawner(sp)
    return out


