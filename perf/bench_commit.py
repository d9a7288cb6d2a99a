"""Commit benchmark: an apt-like change set in an overlay upper dir, written as a
layer blob by pyrt (pyrt.store.commit.write_layer_blob) compared with GNU tar of the
same dir, in the same run, on tmpfs:

    plain:  pyrt commit (compression=None)  vs  tar -c  -f out.tar
            (and vs tar -c followed by the sha256 of its output, which a
            content-addressed store needs and tar -c alone does not compute)
    gzip:   pyrt commit (compression=gzip)  vs  tar -c | pigz -1 -p N
    zstd:   pyrt commit (compression=zstd)  vs  tar -c | zstd -3 -T N

pyrt's gzip is deflate level 1 on N threads (N = the CPUs it may use, at most 8;
ISA-L's level 1 when the `isal` package is installed, else zlib's), its zstd level 3
on N threads: the references get the same level and thread count, and the
compressed sizes are printed beside the times (ISA-L and zlib level 1 do not give
the same size). `tar -cz` (gzip -6, one thread) is printed for reference only.

The change set (built once, from the host's own files so that it compresses like real
packages do): 2,000 new files in package-like dirs, 200 deletions (overlay
whiteouts), 50 large rewritten files; about 150 MB. Run as root (whiteouts are 0:0
char devices).

    python3 perf/bench_commit.py            # pyperf, several runs
    python3 perf/bench_commit.py --quick    # one pass of each, plain timings
    python3 perf/bench_commit.py --smoke    # a tiny change set, each path once (CI)

Targets: plain commit within 1.2x of `tar -c`; gzip and zstd commits no slower
than the same compression by pigz and zstd (same level, same threads).
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402  (perf/common.py)

SEED = 20240607
SOURCES = ("/usr/lib", "/usr/share", "/usr/bin", "/usr/libexec", "/usr/sbin")


def _host_files(min_size, max_size, limit):
    """Sorted host files with min_size <= size <= max_size (regular, not links)."""
    found = []
    for root in SOURCES:
        for dp, dns, fns in os.walk(root):
            dns.sort()
            for f in sorted(fns):
                p = os.path.join(dp, f)
                try:
                    st = os.lstat(p)
                except OSError:
                    continue
                if os.path.isfile(p) and not os.path.islink(p) and min_size <= st.st_size <= max_size:
                    found.append((p, st.st_size))
                    if len(found) >= limit:
                        return found
    return found


def _fill(path, size, rng):
    """Synthetic content when the host has too few files: half text, half bytes."""
    words = [b"package", b"config", b"library", b"version", b"debian", b"usr", b"share",
             b"lib", b"0x%04x", b"return", b"static", b"int", b"void", b"struct"]
    with open(path, "wb") as f:
        left = size
        while left > 0:
            block = b" ".join(rng.choice(words) for _ in range(2000)) + rng.randbytes(4096)
            f.write(block[:left])
            left -= len(block)


def make_changeset(upper, *, new_files=2000, deletions=200, rewrites=50,
                   small_budget=60 << 20, large_budget=90 << 20, seed=SEED):
    """Builds the apt-like upper dir; returns its total size in bytes."""
    rng = random.Random(seed)
    os.makedirs(upper, exist_ok=True)
    small = _host_files(512, 512 << 10, 60000)
    large = _host_files(1 << 20, 6 << 20, 2000)
    rng.shuffle(small)
    rng.shuffle(large)
    total = 0
    pkgs = [f"pkg{n:03d}" for n in range(150)]

    # 2,000 new files, spread over package-like dirs.
    for i in range(new_files):
        pkg = pkgs[i % len(pkgs)]
        kind = ("usr/lib/x86_64-linux-gnu/" + pkg, "usr/share/doc/" + pkg,
                "usr/share/" + pkg, "usr/bin")[i % 4]
        d = os.path.join(upper, kind)
        os.makedirs(d, exist_ok=True)
        dst = os.path.join(d, f"{pkg}-file{i:04d}")
        budget_each = small_budget // new_files
        if i < len(small) and small[i][1] <= 4 * budget_each:
            shutil.copyfile(small[i][0], dst)
        else:
            _fill(dst, rng.randint(1024, 2 * budget_each), rng)
        total += os.path.getsize(dst)

    # 50 large rewrites (files an upgrade replaces).
    each = large_budget // rewrites
    for i in range(rewrites):
        d = os.path.join(upper, "usr/lib/x86_64-linux-gnu")
        os.makedirs(d, exist_ok=True)
        dst = os.path.join(d, f"librewritten{i:02d}.so.1")
        if i < len(large):
            with open(large[i][0], "rb") as src, open(dst, "wb") as out:
                out.write(src.read(each))
        else:
            _fill(dst, each, rng)
        total += os.path.getsize(dst)

    # 200 deletions: overlay whiteouts (0:0 char devices).
    for i in range(deletions):
        d = os.path.join(upper, "usr/share/doc", f"oldpkg{i % 40:02d}")
        os.makedirs(d, exist_ok=True)
        os.mknod(os.path.join(d, f"removed{i:03d}"), 0o600 | 0o020000, os.makedev(0, 0))
    return total


def _tar(upper, out, *extra):
    subprocess.run(["tar", "-c", *extra, "-f", out, "-C", upper, "."], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return os.path.getsize(out)


def _tar_into(upper, out, compressor):
    """tar -c -C upper . | compressor > out."""
    with open(out, "wb") as f:
        tar = subprocess.Popen(["tar", "-c", "-C", upper, "."], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL)
        comp = subprocess.run(compressor, stdin=tar.stdout, stdout=f, stderr=subprocess.DEVNULL)
        tar.stdout.close()
        if tar.wait() or comp.returncode:
            raise RuntimeError(f"tar | {' '.join(compressor)} failed")
    return os.path.getsize(out)


def _tar_sha256(upper, out):
    """tar -c, then the sha256 a content-addressed store needs (hashlib, the same
    OpenSSL code pyrt uses): what `tar -c` costs when its output must be named."""
    import hashlib
    size = _tar(upper, out)
    h = hashlib.sha256()
    with open(out, "rb", buffering=0) as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return size


def _commit(upper, out_dir, compression):
    from pyrt.store.commit import write_layer_blob
    r = write_layer_blob(upper, out_dir, compression=compression)
    size = r["size"]
    os.unlink(r["path"])
    return size


def _threads():
    from pyrt.store.commit import _threads
    return _threads()


def _cases(upper, out_dir):
    n = str(_threads())
    cases = [
        ("tar -c", lambda: _tar(upper, os.path.join(out_dir, "t.tar"))),
        ("tar -c + sha256", lambda: _tar_sha256(upper, os.path.join(out_dir, "t.tar"))),
        ("pyrt commit (plain)", lambda: _commit(upper, out_dir, None)),
        ("tar -cz (gzip -6, 1 thread)", lambda: _tar(upper, os.path.join(out_dir, "t.tgz"), "-z")),
        ("pyrt commit (gzip)", lambda: _commit(upper, out_dir, "gzip")),
    ]
    pigz, _why = common.find_tool("pigz", install=True)
    if pigz:
        cases.append((f"tar | pigz -1 -p {n}", lambda: _tar_into(upper, os.path.join(out_dir, "t.gz"),
                                                                  [pigz, "-1", "-p", n, "-c"])))
    zstd, _why = common.find_tool("zstd", install=True)
    if zstd:
        cases += [
            (f"tar | zstd -3 -T{n}", lambda: _tar_into(upper, os.path.join(out_dir, "t.zst"),
                                                        [zstd, "-3", f"-T{n}", "-q", "-c"])),
            ("pyrt commit (zstd)", lambda: _commit(upper, out_dir, "zstd")),
        ]
    return cases


def _pairs():
    n = _threads()
    return [("pyrt commit (plain)", "tar -c", "<= 1.2x of tar -c", lambda r: r <= 1.2),
            ("pyrt commit (plain)", "tar -c + sha256", "(no target)", lambda r: True),
            ("pyrt commit (gzip)", f"tar | pigz -1 -p {n}", "<= 1.0x (same level, same threads)",
             lambda r: r <= 1.0),
            ("pyrt commit (gzip)", "tar -cz (gzip -6, 1 thread)", "(reference only: not the same work)",
             lambda r: True),
            ("pyrt commit (zstd)", f"tar | zstd -3 -T{n}", "<= 1.0x (same level, same threads)",
             lambda r: r <= 1.0)]


def _report(times, size, sizes):
    from pyrt.store.commit import gzip_backend
    if common.SMOKE:
        print("\n--smoke: every path ran once; the figures below are not measurements")
    print(f"\nchange set: {size / 1e6:.1f} MB; pyrt's gzip: {gzip_backend()} level 1, zstd level 3, "
          f"{_threads()} thread(s)")
    for name, t in times.items():
        out = sizes.get(name)
        out = f"{out / 1e6:9.2f} MB out" if out is not None else ""
        print(f"  {name:30s} {t * 1000:8.1f} ms  {size / t / 1e6:8.0f} MB/s  {out}")
    for ours, theirs, target, ok in _pairs():
        if ours in times and theirs in times:
            r = times[ours] / times[theirs]
            speed = f"{1 / r:.1f}x faster" if r <= 1 else f"{r:.2f}x the time"
            verdict = target if target.startswith("(") else f"target {target}: {'met' if ok(r) else 'MISSED'}"
            print(f"  {ours} / {theirs}: {r:.3f}  ({speed})  {verdict}")


def _sizes(cases):
    """The output size of each case (one more run of each, untimed)."""
    return {name: fn() for name, fn in cases}


def _quick(upper, out_dir, size, repeat):
    # (best_of's warm-up call warms the page cache and the code paths)
    cases = _cases(upper, out_dir)
    times = {name: common.best_of(lambda: common.timed(fn), repeat) for name, fn in cases}
    _report(times, size, _sizes(cases))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], add_help=False)
    ap.add_argument("--quick", action="store_true", help="best of 3 plain timings, no pyperf")
    ap.add_argument("--smoke", action="store_true", help="a tiny change set, each path once (CI; no figures)")
    ap.add_argument("--dir", default="/dev/shm", help="where to build the data (tmpfs)")
    args, rest = ap.parse_known_args()
    if os.geteuid() != 0:
        sys.exit("bench_commit: run as root (whiteouts are 0:0 char devices)")

    if args.quick or args.smoke:
        common.SMOKE = args.smoke
        base = tempfile.mkdtemp(prefix="pyrt-bench-commit-", dir=args.dir)
        try:
            upper, out_dir = os.path.join(base, "upper"), os.path.join(base, "out")
            os.mkdir(out_dir)
            if args.smoke:
                size = make_changeset(upper, new_files=40, deletions=5, rewrites=2,
                                      small_budget=1 << 20, large_budget=2 << 20)
            else:
                size = make_changeset(upper)
            _quick(upper, out_dir, size, 1 if args.smoke else 3)
        finally:
            shutil.rmtree(base, ignore_errors=True)
        return

    # pyperf: the manager builds the data once; its worker processes (this script
    # again, with --scratch) only time.
    runner = common.make_runner("bench_commit", rest, values=3, warmups=1, processes=2, loops=1)
    ns = runner.parse_args()
    base = None
    if not ns.worker and not ns.scratch:
        base = tempfile.mkdtemp(prefix="pyrt-bench-commit-", dir=args.dir)
        os.mkdir(os.path.join(base, "out"))
        make_changeset(os.path.join(base, "upper"))
        ns.scratch = base
    try:
        upper, out_dir = os.path.join(ns.scratch, "upper"), os.path.join(ns.scratch, "out")
        results = {}
        cases = _cases(upper, out_dir)
        for name, fn in cases:
            b = runner.bench_func(name, fn)
            if b is not None and not ns.worker:
                results[name] = b.mean()
        if results:
            size = sum(os.lstat(os.path.join(d, f)).st_size
                       for d, _, fs in os.walk(upper) for f in fs)
            _report(results, size, _sizes(cases))
    finally:
        if base is not None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
