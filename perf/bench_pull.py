"""Pull benchmark: an image pulled from a registry on loopback into an empty store,
by pyrt compared, in the same run, with what a user would pick instead:

    pyrt pull             pyrt --root D pull HOST/bench/img:1 (blobs verified, layers unpacked)
    skopeo copy + umoci   skopeo copy docker://HOST/... oci:DIR, then umoci unpack
    podman pull           podman --root D --runroot R --storage-driver overlay pull --tls-verify=false

The image (made at set-up, with a fixed seed): LAYERS gzip layers of about
LAYER_MB MB each (random bytes and text-like files, so that gzip has work to do),
loaded into a pyrt store and pushed once to Debian's docker-registry, started by the
benchmark on 127.0.0.1 with its storage on the scratch tmpfs. Every timed pull goes
into a new empty directory, removed (untimed) after it.

    python3 perf/bench_pull.py              # pyperf
    python3 perf/bench_pull.py --quick      # 1 process, 3 values

Missing tools (docker-registry, skopeo, umoci, podman) are apt-get installed when
possible; a comparison whose tool is missing is skipped. Run as root.
"""
from __future__ import annotations

import gzip
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402  (perf/common.py)

QUICK_PYPERF_ARGS = ["-p", "1", "-n", "3", "-w", "1"]
LAYERS = 5
LAYER_MB = 12
SEED = 20241128
REF_PATH = "bench/img:1"
ALL_BENCHES = ["pyrt pull", "skopeo copy + umoci", "podman pull"]
_registry = None  # the docker-registry process (main process only)


# --- the image -----------------------------------------------------------------------------

def _layer_tar(index: int) -> bytes:
    """About LAYER_MB MB of files: a third random bytes, the rest words (compressible)."""
    rng = random.Random(SEED + index)
    words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9))) for _ in range(2000)]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        total, n = 0, 0
        while total < LAYER_MB << 20:
            size = rng.randint(4 << 10, 512 << 10)
            if n % 3 == 0:
                data = rng.randbytes(size)
            else:
                data = b" ".join(rng.choices(words, k=size // 6))[:size]
            ti = tarfile.TarInfo(f"layer{index}/dir{n % 16}/file{n}")
            ti.size, ti.mode, ti.mtime = len(data), 0o644, 1700000000
            tf.addfile(ti, io.BytesIO(data))
            total += len(data)
            n += 1
    return buf.getvalue()


def _write_layout(path: str) -> int:
    """An OCI layout of the benchmark image at `path`; returns its compressed size."""
    import hashlib
    blobs = os.path.join(path, "blobs", "sha256")
    os.makedirs(blobs)

    def blob(data):
        d = hashlib.sha256(data).hexdigest()
        with open(os.path.join(blobs, d), "wb") as f:
            f.write(data)
        return "sha256:" + d
    layers, diff_ids = [], []
    for i in range(LAYERS):
        tar = _layer_tar(i)
        gz = gzip.compress(tar, compresslevel=6, mtime=0)
        layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": blob(gz),
                       "size": len(gz)})
        diff_ids.append("sha256:" + hashlib.sha256(tar).hexdigest())
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/sh"]},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": blob(config), "size": len(config)},
                           "layers": layers}).encode()
    index = {"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": blob(manifest),
        "size": len(manifest), "annotations": {"org.opencontainers.image.ref.name": "bench/img:1"}}]}
    with open(os.path.join(path, "index.json"), "w") as f:
        json.dump(index, f)
    with open(os.path.join(path, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    return sum(lyr["size"] for lyr in layers)


def _start_registry(base: str) -> str:
    """docker-registry on 127.0.0.1 and a free port; returns host:port."""
    global _registry
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = os.path.join(base, "config.yml")
    with open(config, "w") as f:
        f.write(f"version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n"
                f"    rootdirectory: {base}/data\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: bench\n")
    _registry = subprocess.Popen(["docker-registry", "serve", config], stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=open(os.path.join(base, "log"), "w"))
    import httpx
    for _ in range(200):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=1).status_code == 200:
                return f"127.0.0.1:{port}"
        except httpx.TransportError:
            time.sleep(0.05)
    raise SystemExit("bench_pull: docker-registry did not start (see its log in the scratch dir)")


# --- set-up, timing, report, clean-up ---------------------------------------------------------

def setup(args, scratch) -> dict:
    st = {"benches": [], "skipped": {}, "tools": {}}
    for tool, pkg in (("docker-registry", "docker-registry"), ("skopeo", "skopeo"), ("umoci", "umoci"),
                      ("podman", "podman")):
        path, why = common.find_tool(tool, install=not args.no_install, package=pkg)
        st["tools"][tool] = path
        if not path:
            st["skipped"][tool] = why
    if not st["tools"]["docker-registry"]:
        raise SystemExit(f"bench_pull: {st['skipped']['docker-registry']}")
    st["pyrt"] = common.find_pyrt_cli()
    common.log("[setup] building the image")
    layout = scratch.sub("layout", create=False)
    st["compressed"] = _write_layout(layout)
    host = _start_registry(scratch.sub("registry"))
    st["ref"] = f"{host}/{REF_PATH}"
    store = scratch.sub("push-store")
    subprocess.run([st["pyrt"], "--root", store, "load", "-i", layout], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([st["pyrt"], "--root", store, "tag", REF_PATH, st["ref"]], check=True)
    t0 = time.perf_counter()
    subprocess.run([st["pyrt"], "--root", store, "-q", "push", st["ref"]], check=True)
    common.log(f"[setup] pushed {st['compressed'] / 1e6:.0f} MB ({LAYERS} layers) to {host} in "
               f"{time.perf_counter() - t0:.2f} s")
    shutil.rmtree(store)
    st["runs"] = scratch.sub("runs")
    wanted = args.only.split(",") if args.only else ALL_BENCHES
    needs = {"pyrt pull": [], "skopeo copy + umoci": ["skopeo", "umoci"], "podman pull": ["podman"]}
    for name in wanted:
        missing = [t for t in needs[name] if not st["tools"][t]]
        if missing:
            st["skipped"][name] = st["skipped"][missing[0]]
        else:
            st["benches"].append(name)
    return st


def _commands(name, st, d):
    ref, tools = st["ref"], st["tools"]
    if name == "pyrt pull":
        return [[st["pyrt"], "--root", d, "-q", "pull", ref]]
    if name == "skopeo copy + umoci":
        return [[tools["skopeo"], "copy", "-q", "--src-tls-verify=false", f"docker://{ref}", f"oci:{d}/oci:img"],
                [tools["umoci"], "unpack", "--image", f"{d}/oci:img", f"{d}/bundle"]]
    return [[tools["podman"], "--root", f"{d}/root", "--runroot", f"{d}/run", "--storage-driver", "overlay",
             "pull", "-q", "--tls-verify=false", ref]]


def time_pull(loops, st, name):
    total = 0.0
    for i in range(loops):
        d = os.path.join(st["runs"], f"{os.getpid()}-{i}")
        os.mkdir(d)
        try:
            t0 = time.perf_counter()
            for argv in _commands(name, st, d):
                subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
            total += time.perf_counter() - t0
        finally:
            for mp in reversed(common.mounts_under(d)):  # containers/storage may leave its home mounted
                common.umount(mp)
            shutil.rmtree(d)
    return total


def run_benchmarks(runner, st) -> dict:
    return {name: runner.bench_time_func(name, time_pull, st, name) for name in st["benches"]}


def report(results, st):
    print(f"\nimage: {LAYERS} gzip layers, {st['compressed'] / 1e6:.0f} MB compressed, from docker-registry "
          "on 127.0.0.1 into an empty store (tmpfs)")
    med = common.print_table(results, ALL_BENCHES, st["skipped"], width=22)
    common.print_ratios(med, (("pyrt pull", "skopeo copy + umoci"), ("pyrt pull", "podman pull")))


def cleanup(scratch, st):
    if _registry is not None:
        _registry.terminate()
        try:
            _registry.wait(10)
        except subprocess.TimeoutExpired:
            _registry.kill()
            _registry.wait()
    if scratch is not None:
        for problem in scratch.cleanup():
            common.log(f"[cleanup] {problem}")


def main():
    argv, _quick = common.pyperf_argv(sys.argv[1:], QUICK_PYPERF_ARGS)
    runner = common.make_runner("bench_pull", argv, loops=1)
    ap = runner.argparser
    ap.add_argument("--only", help="comma-separated benchmarks among: " + ", ".join(ALL_BENCHES))
    ap.add_argument("--no-install", action="store_true", help="do not apt-get install missing tools")
    args = runner.parse_args()
    common.run_main(runner, args, name="bench_pull", setup=setup, run_benchmarks=run_benchmarks, report=report,
                    cleanup=cleanup, scratch_prefix="pyrt-bench-pull-", scratch_size="2g")


if __name__ == "__main__":
    main()
