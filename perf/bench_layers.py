"""Layer benchmarks: unpacking OCI layers with pyrt compared, in the same run, with
the tools a user would pick instead, on tmpfs.

Unpack (built at benchmark time from the host's /usr: a realistic multi-thousand
file layer of about 180 MB, GNU tar format, as plain tar, gzip -6 and zstd -3):

    plain:  pyrt  vs  tar -xf         vs  bsdtar -xf
    gzip:   pyrt  vs  tar -xzf        vs  bsdtar -xf   vs  umoci unpack (OCI layout)
    zstd:   pyrt  vs  tar --zstd -xf  vs  bsdtar -xf
    image:  4 gzip layers (the same files in 4 slices): unpack_layers_parallel vs
            one unpack_layer after another

Targets: gzip at least 1.6x as fast as `tar -xzf`; plain and zstd at least as fast
as GNU tar; the 4-layer image at least 1.7x faster in parallel.

    python3 perf/bench_layers.py              # pyperf (-o out.json etc. work)
    python3 perf/bench_layers.py --quick      # a smaller layer, best of 3, no pyperf
    python3 perf/bench_layers.py --smoke      # a tiny layer, each path once (CI; no figures)

Run as root (GNU tar and umoci restore owners; layers hold devices). Missing tools
(bsdtar: libarchive-tools, umoci, zstd) are apt-get installed when possible. More
benchmark groups can be added to GROUPS (see add_unpack_benchmarks).
"""
from __future__ import annotations

import argparse
import gzip as _gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import best_of, find_tool, log, timed  # noqa: E402

FULL_MB = 180
QUICK_MB = 50
SMOKE_MB = 3
DATA_VERSION = 5


# ----------------------------------------------------------------- the data

def _usr_files(budget):
    """Paths of a rootfs-like sample of /usr: whole directories (their files, not
    their subdirectories), picked by a hash of their name so that the files add
    up to about budget bytes, in walk order, with every parent directory listed
    before what it holds. Deterministic for a given host."""
    dirs = []  # (dir, [files], bytes)
    total = 0
    for dp, dns, fns in os.walk("/usr"):
        dns.sort()
        files, size = [], 0
        for f in sorted(fns):
            p = os.path.join(dp, f)
            try:
                st = os.lstat(p)
            except OSError:
                continue
            if os.path.isfile(p) and not os.path.islink(p):
                if st.st_size > 32 << 20:
                    continue  # a few huge blobs would dominate
                size += st.st_size
            files.append(p)
        if size <= budget // 8:  # (one huge directory would make a few-file layer)
            dirs.append((dp, files, size))
            total += size
    share = min(1.0, budget / max(total, 1))
    out, seen, acc = [], set(), 0
    for dp, files, size in dirs:
        h = int.from_bytes(hashlib.sha256(dp.encode()).digest()[:8], "big") / 2 ** 64
        if h >= share or not files:
            continue
        parts = dp.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            parent = "/" + "/".join(parts[:i])
            if parent not in seen:
                seen.add(parent)
                out.append(parent)
        out.extend(files)
        acc += size
        if acc >= budget:
            break
    return out


def _write_list(paths, path):
    with open(path, "w") as f:
        for p in paths:
            f.write(p.lstrip("/") + "\n")


def _make_tar(listfile, out):
    subprocess.run(["tar", "-C", "/", "--format=gnu", "--no-recursion", "-T", listfile, "-cf",
                    out], check=True, stderr=subprocess.DEVNULL)


def _gzip(src):
    subprocess.run(f"gzip -6 -c {src} > {src}.gz", shell=True, check=True)


def _zstd(src):
    subprocess.run(["zstd", "-3", "-q", "-f", "-T0", src, "-o", src + ".zst"], check=True)


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def _oci_layout(root, layer_gz, diff_id):
    """An OCI image layout with one gzip layer, tagged "bench", for umoci."""
    blobs = os.path.join(root, "blobs", "sha256")
    os.makedirs(blobs, exist_ok=True)

    def put(data: bytes):
        d = hashlib.sha256(data).hexdigest()
        with open(os.path.join(blobs, d), "wb") as f:
            f.write(data)
        return "sha256:" + d, len(data)

    layer_digest = _sha256(layer_gz)
    os.link(layer_gz, os.path.join(blobs, layer_digest.split(":")[1]))
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    cdig, csize = put(config)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cdig,
                   "size": csize},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": layer_digest, "size": os.path.getsize(layer_gz)}]}).encode()
    mdig, msize = put(manifest)
    with open(os.path.join(root, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    with open(os.path.join(root, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": mdig,
            "size": msize, "annotations": {"org.opencontainers.image.ref.name": "bench"}}]}, f)


def prepare_unpack_data(base, mb, umoci):
    """Build (once; workers reuse it) the layers of about mb MB in base. Returns a dict."""
    d = os.path.join(base, f"unpack-{mb}mb-v{DATA_VERSION}")
    info_path = os.path.join(d, "info.json")
    if os.path.exists(info_path):
        with open(info_path) as f:
            return json.load(f)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    log(f"[setup] building a {mb} MB layer from /usr in {d}")
    paths = _usr_files(mb << 20)
    _write_list(paths, os.path.join(d, "all.list"))
    layer = os.path.join(d, "layer.tar")
    _make_tar(os.path.join(d, "all.list"), layer)
    # the same files in 4 slices of about the same size: a 4-layer image
    sizes = []
    for p in paths:
        try:
            st = os.lstat(p)
            sizes.append(st.st_size if os.path.isfile(p) and not os.path.islink(p) else 0)
        except OSError:
            sizes.append(0)
    total, acc, cuts = sum(sizes), 0, [0]
    for i, s in enumerate(sizes):
        acc += s
        if len(cuts) < 4 and acc >= total * len(cuts) / 4:
            cuts.append(i + 1)
    cuts.append(len(paths))
    slices = []
    for k in range(4):
        lst = os.path.join(d, f"slice{k}.list")
        _write_list(paths[cuts[k]:cuts[k + 1]], lst)
        out = os.path.join(d, f"slice{k}.tar")
        _make_tar(lst, out)
        slices.append(out)
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(_gzip, [layer] + slices))
        list(pool.map(_zstd, [layer]))
    info = {
        "dir": d, "tar": layer, "gzip": layer + ".gz", "zstd": layer + ".zst",
        "tar_size": os.path.getsize(layer), "diff_id": _sha256(layer),
        "entries": len(paths),
        "slices": [s + ".gz" for s in slices],
        "slice_sizes": [os.path.getsize(s) for s in slices],
        "slice_diff_ids": [_sha256(s) for s in slices],
    }
    for s in slices:
        os.unlink(s)
    if umoci:
        _oci_layout(os.path.join(d, "oci"), layer + ".gz", info["diff_id"])
        info["oci"] = os.path.join(d, "oci")
    with open(info_path, "w") as f:
        json.dump(info, f)
    return info


# ----------------------------------------------------------------- the cases

class Dest:
    """A fresh directory per run, removed after it (not timed)."""

    def __init__(self, base):
        self.base = base
        self.n = 0

    def new(self):
        self.n += 1
        p = os.path.join(self.base, f"out-{os.getpid()}-{self.n}")
        os.mkdir(p, 0o700)
        return p

    @staticmethod
    def drop(p):
        shutil.rmtree(p, ignore_errors=True)


def _run_tool(argv):
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)
    if p.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed: {p.stderr.decode(errors='replace')[-300:]}")


def unpack_cases(info, tools):
    """[(group, name, fn(dest), bytes)]: each fn unpacks into the empty dest."""
    from pyrt.store.unpack import unpack_layer, unpack_layers_parallel
    size = info["tar_size"]
    cases = []
    for kind, path in (("plain", info["tar"]), ("gzip", info["gzip"]), ("zstd", info["zstd"])):
        cases.append((kind, f"unpack-{kind}-pyrt",
                      lambda dest, path=path: unpack_layer(path, dest,
                                                           expected_diff_id=info["diff_id"]),
                      size))
        if kind == "plain":
            # a blob of the store: its digest (= the diff_id of a plain tar) was
            # verified when it was written, so it is not hashed a second time
            cases.append((kind, "unpack-plain-pyrt-storeblob",
                          lambda dest, path=path: unpack_layer(
                              path, dest, expected_diff_id=info["diff_id"],
                              source_digest=info["diff_id"]), size))
        flag = {"plain": [], "gzip": ["-z"], "zstd": ["--zstd"]}[kind]
        if kind != "zstd" or tools.get("zstd"):
            cases.append((kind, f"unpack-{kind}-tar",
                          lambda dest, path=path, flag=flag:
                              _run_tool([tools["tar"], *flag, "-C", dest, "-xf", path]), size))
        if tools.get("bsdtar"):
            cases.append((kind, f"unpack-{kind}-bsdtar",
                          lambda dest, path=path: _run_tool([tools["bsdtar"], "-C", dest, "-xf",
                                                             path]), size))
    if tools.get("umoci") and info.get("oci"):
        cases.append(("gzip", "unpack-gzip-umoci",
                      lambda dest: _run_tool([tools["umoci"], "unpack", "--image",
                                              info["oci"] + ":bench",
                                              os.path.join(dest, "bundle")]), size))

    def jobs(dest):
        out = []
        for k, (src, did) in enumerate(zip(info["slices"], info["slice_diff_ids"])):
            d = os.path.join(dest, f"layer{k}")
            os.mkdir(d)
            out.append({"source": src, "dest": d, "expected_diff_id": did})
        return out

    isize = sum(info["slice_sizes"])
    cases.append(("image", "unpack-image4-sequential",
                  lambda dest: [unpack_layer(**j) for j in jobs(dest)], isize))
    cases.append(("image", "unpack-image4-sequential-1thread",
                  lambda dest: [unpack_layer(threads=False, **j) for j in jobs(dest)], isize))
    cases.append(("image", "unpack-image4-parallel",
                  lambda dest: unpack_layers_parallel(jobs(dest)), isize))
    cases.append(("image", "unpack-image4-tar-sequential",
                  lambda dest: [_run_tool([tools["tar"], "-C", j["dest"], "-xzf", j["source"]])
                                for j in jobs(dest)], isize))
    return cases


UNPACK_TARGETS = [
    # (ours, theirs, wanted ratio theirs_time / ours_time, label)
    ("unpack-gzip-pyrt", "unpack-gzip-tar", 1.6, "gzip: >= 1.6x tar -xzf"),
    ("unpack-plain-pyrt", "unpack-plain-tar", 1.0, "plain: >= tar -xf"),
    ("unpack-plain-pyrt-storeblob", "unpack-plain-tar", 1.0, "plain, store blob: >= tar -xf"),
    ("unpack-zstd-pyrt", "unpack-zstd-tar", 1.0, "zstd: >= tar --zstd -xf"),
    ("unpack-image4-parallel", "unpack-image4-sequential", 1.7,
     "4 layers: parallel vs sequential (each layer already on 2 threads)"),
    ("unpack-image4-parallel", "unpack-image4-sequential-1thread", 1.7,
     "4 layers: parallel vs sequential single-threaded"),
]


def unpack_tools():
    tools = {}
    for name, pkg in (("tar", "tar"), ("bsdtar", "libarchive-tools"), ("umoci", "umoci"),
                      ("zstd", "zstd")):
        path, why = find_tool(name, package=pkg)
        tools[name] = path
        if not path:
            log(f"[setup] {why}: skipped")
    return tools


def add_unpack_benchmarks(args, base):
    """The unpack group: returns (cases, report)."""
    tools = unpack_tools()
    mb = SMOKE_MB if args.smoke else QUICK_MB if args.quick else FULL_MB
    info = prepare_unpack_data(base, mb, bool(tools.get("umoci")))
    cases = unpack_cases(info, tools)

    def report(times):
        from pyrt.store.unpack import gzip_backend
        print(f"\nunpack: layer of {info['tar_size'] / 1e6:.0f} MB, {info['entries']} entries "
              f"(gzip {os.path.getsize(info['gzip']) / 1e6:.0f} MB, zstd "
              f"{os.path.getsize(info['zstd']) / 1e6:.0f} MB); gzip backend: {gzip_backend()}")
        for group, name, _, nbytes in cases:
            if name in times:
                t = times[name]
                print(f"  {name:28s} {t * 1000:8.1f} ms  {nbytes / t / 1e6:7.0f} MB/s")
        for ours, theirs, want, label in UNPACK_TARGETS:
            if ours in times and theirs in times:
                r = times[theirs] / times[ours]
                print(f"  {label:66s} {r:5.2f}x  (target {want}x: "
                      f"{'met' if r >= want else 'MISSED'})")
        for ours, theirs in (("unpack-gzip-pyrt", "unpack-gzip-umoci"),
                             ("unpack-gzip-pyrt", "unpack-gzip-bsdtar"),
                             ("unpack-plain-pyrt", "unpack-plain-bsdtar"),
                             ("unpack-zstd-pyrt", "unpack-zstd-bsdtar"),
                             ("unpack-image4-parallel", "unpack-image4-tar-sequential")):
            if ours in times and theirs in times:
                print(f"  {ours} vs {theirs}: {times[theirs] / times[ours]:.2f}x")

    return cases, report


# groups of benchmarks: name -> function(args, base) -> (cases, report)
GROUPS = {"unpack": add_unpack_benchmarks}


# ----------------------------------------------------------------- running

def _timed(fn, dests):
    dest = dests.new()
    try:
        return timed(lambda: fn(dest))
    finally:
        Dest.drop(dest)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help=f"a {QUICK_MB} MB layer, best of 3 after a warm-up, no pyperf")
    ap.add_argument("--dir", default="/dev/shm/pyrt-bench-layers",
                    help="where the data and the unpacked trees go (tmpfs)")
    ap.add_argument("--smoke", action="store_true",
                    help=f"a {SMOKE_MB} MB layer, each path once after a warm-up, no pyperf (CI; no figures)")
    ap.add_argument("--keep-data", action="store_true", help="keep the built layers")
    ap.add_argument("--group", action="append", choices=sorted(GROUPS),
                    help="only these groups (default: all)")
    args, rest = ap.parse_known_args()
    if os.geteuid() != 0:
        sys.exit("bench_layers: run as root")
    worker = "--worker" in rest
    os.makedirs(args.dir, exist_ok=True)
    out = os.path.join(args.dir, "out")
    os.makedirs(out, exist_ok=True)
    dests = Dest(out)
    groups = [(g, GROUPS[g](args, args.dir)) for g in (args.group or sorted(GROUPS))]
    try:
        if args.quick or args.smoke:
            if args.smoke:
                print("--smoke: every path ran once; the figures below are not measurements")
            for _, (cases, report) in groups:
                times = {}
                for _, name, fn, _ in cases:
                    times[name] = best_of(lambda: _timed(fn, dests), 1 if args.smoke else 3)
                    log(f"  {name}: {times[name] * 1000:.0f} ms")
                report(times)
            return
        import pyperf

        def add_args(cmd, a):
            cmd.extend(["--dir", args.dir])
            for g in args.group or []:
                cmd.extend(["--group", g])

        sys.argv = [sys.argv[0]] + rest
        runner = pyperf.Runner(processes=2, values=3, warmups=1, loops=1,
                               add_cmdline_args=add_args)
        for _, (cases, report) in groups:
            times = {}
            for _, name, fn, _ in cases:
                def bench(loops, fn=fn):
                    return sum(_timed(fn, dests) for _ in range(loops))
                b = runner.bench_time_func(name, bench)
                if b is not None:
                    times[name] = b.mean()
            if times and not runner.args.worker:
                report(times)
    finally:
        shutil.rmtree(out, ignore_errors=True)
        if not worker and not args.keep_data:
            shutil.rmtree(args.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
