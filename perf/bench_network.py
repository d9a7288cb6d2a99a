#!/usr/bin/env python3
"""Networks (issue 15): what a bridge network costs a container, pyrt against
podman, and container-to-container throughput over pyrt's bridge against two
plain network namespaces joined by a veth pair, in one run.

  setup             `run --rm IMAGE true`, each tool with and without its default
                    bridge network, the four variants interleaved run after run
                    (so that the machine's load weighs on all alike); the setup
                    cost of a network is the difference of the medians:
    pyrt none         pyrt run --rm --network none busybox:latest true
    pyrt bridge       pyrt run --rm --network bridge busybox:latest true
    podman none       podman run --rm --network none ... true
    podman bridge     podman run --rm --network podman ... true (its CNI
                      conflist: bridge, host-local, portmap, firewall, tuning)
                    target: pyrt's cost at most 0.5x podman's.
  throughput        iperf3 (Debian's), 3 s of TCP, client to server, 5 rounds of each
                    alternated (medians):
    veth              two network namespaces joined by a veth pair, no bridge
    pyrt bridge       two pyrt containers on a user-defined network (iperf3 -s
                      detached, the client by the server's name; the
                      bridge's traffic goes through the firewall, as with
                      br_netfilter loaded it does on this kind of host)
                    target: pyrt within 10% of the veth pair.

  python perf/bench_network.py [--smoke] [--runs N] [--no-podman] [--no-throughput] [--no-install] [-o out.json]

What is fair, and what is special here:
- The whole benchmark runs in a network namespace and a mount namespace of its
  own: pyrt's and podman's bridges, veths, firewall rules and netns files live
  there and die with it; the host's network is never touched.
- Same busybox rootfs for both (pyrt import / podman import of one tar), stores on
  one tmpfs; podman: --runtime runc, --cgroup-manager cgroupfs, --events-backend
  file, file locks (a private containers.conf), its CNI network config in a private
  --network-config-dir (Debian's default conflist, host-local leases kept in the
  scratch directory). Both are started with posix_spawn, stdio on /dev/null.
- pyrt's default network is its bridge: `none` is the baseline, as podman's.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402  (perf/common.py)

IMAGE = "busybox:latest"
PODMAN_IMAGE = "localhost/busybox:latest"
TARGET_SETUP = 0.5
TARGET_THROUGHPUT = 0.9
CLONE_NEWNET = 0x40000000

PODMAN_CONFLIST = {  # Debian's podman default (87-podman-bridge.conflist), leases in the scratch dir
    "cniVersion": "0.4.0", "name": "podman",
    "plugins": [
        {"type": "bridge", "bridge": "cni-podman0", "isGateway": True, "ipMasq": True, "hairpinMode": True,
         "ipam": {"type": "host-local", "routes": [{"dst": "0.0.0.0/0"}],
                  "ranges": [[{"subnet": "10.88.0.0/16", "gateway": "10.88.0.1"}]]}},
        {"type": "portmap", "capabilities": {"portMappings": True}},
        {"type": "firewall"},
        {"type": "tuning"},
    ],
}


def sh(*argv, check=True, **kw) -> str:
    p = subprocess.run([str(a) for a in argv], capture_output=True, text=True, **kw)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))}: exit {p.returncode}: {p.stderr.strip()[-500:]}")
    return p.stdout


def enter_private_network():
    if common._libc.unshare(CLONE_NEWNET) != 0:
        raise OSError(common.ctypes.get_errno(), "unshare(CLONE_NEWNET)")
    sh("ip", "link", "set", "lo", "up")


def setup(args, scratch):
    st = {"skipped": {}}
    st["cli"] = common.find_pyrt_cli()
    root = scratch.sub("rootfs")
    common.make_busybox_rootfs(root)
    tar_path = os.path.join(scratch.path, "busybox.tar")
    with tarfile.open(tar_path, "w") as tf:
        tf.add(root, arcname=".")
    st["store"] = scratch.sub("pyrt")
    sh(st["cli"], "--root", st["store"], "-q", "import", tar_path, IMAGE)
    if not args.no_podman:
        podman, why = common.find_tool("podman", install=not args.no_install)
        runc, why2 = common.find_tool("runc", install=not args.no_install)
        if not (podman and runc):
            st["skipped"]["podman"] = why or why2
        else:
            netdir = scratch.sub("pm-net")
            conf = json.loads(json.dumps(PODMAN_CONFLIST))
            conf["plugins"][0]["ipam"]["dataDir"] = scratch.sub("pm-leases")
            with open(os.path.join(netdir, "87-podman-bridge.conflist"), "w") as f:
                json.dump(conf, f)
            st["podman_conf"] = os.path.join(scratch.path, "containers.conf")
            with open(st["podman_conf"], "w") as f:
                f.write('[engine]\nlock_type = "file"\n[network]\nnetwork_backend = "cni"\n')
            os.environ["CONTAINERS_CONF"] = st["podman_conf"]
            st["podman"] = [podman, "--root", scratch.sub("pm-root"), "--runroot", scratch.sub("pm-run"),
                            "--tmpdir", scratch.sub("pm-tmp"), "--runtime", "runc", "--cgroup-manager", "cgroupfs",
                            "--events-backend", "file", "--network-config-dir", netdir]
            try:
                sh(*st["podman"], "import", "-q", tar_path, PODMAN_IMAGE)
                st["podman_version"] = sh(podman, "--version").strip()
            except RuntimeError as e:
                st["skipped"]["podman"] = str(e)
                del st["podman"]
    os.unlink(tar_path)
    if not args.no_throughput:
        iperf, why = common.find_tool("iperf3", install=not args.no_install, package="iperf3")
        if not iperf:
            st["skipped"]["throughput"] = why
        else:
            st["iperf"] = iperf
            sh(st["cli"], "--root", st["store"], "-q", "image", "from-host", "iperf:1", iperf, "/bin/busybox")
    return st


def variants(st) -> dict:
    pyrt = [st["cli"], "--root", st["store"], "run", "--rm"]
    out = {"pyrt none": pyrt + ["--network", "none", IMAGE, "true"],
           "pyrt bridge": pyrt + ["--network", "bridge", IMAGE, "true"]}
    if "podman" in st:
        pm = st["podman"] + ["run", "--rm", "--pull", "never", "--ulimit", "nofile=1024:1024",
                             "--ulimit", "nproc=1024:1024"]
        out["podman none"] = pm + ["--network", "none", PODMAN_IMAGE, "true"]
        out["podman bridge"] = pm + ["--network", "podman", PODMAN_IMAGE, "true"]
    return out


def measure_setup(st, runs) -> dict:
    cases = variants(st)
    spawner = common.Spawner()
    times = {name: [] for name in cases}
    try:
        for argv in cases.values():  # warm: the default network made, caches filled
            if spawner.run(argv) != 0:
                raise RuntimeError(f"{' '.join(argv)} failed")
        for i in range(runs):
            order = list(cases.items())
            if i % 2:
                order.reverse()
            for name, argv in order:
                t = time.perf_counter()
                rc = spawner.run(argv)
                times[name].append(time.perf_counter() - t)
                if rc != 0:
                    raise RuntimeError(f"{name}: exit status {rc}")
    finally:
        spawner.close()
    return times


def iperf_json(text) -> float:
    return json.loads(text)["end"]["sum_received"]["bits_per_second"]


class VethPair:
    """Two network namespaces of their own (held by `sleep`), joined by a veth
    pair, an iperf3 server in the first."""

    def __init__(self, st):
        self.procs = [subprocess.Popen(["unshare", "--net", "--", "sleep", "600"]) for _ in range(2)]
        time.sleep(0.2)
        self.a, self.b = (f"/proc/{h.pid}/ns/net" for h in self.procs)
        sh("ip", "link", "add", "bva", "type", "veth", "peer", "name", "bvb")
        sh("ip", "link", "set", "bva", "netns", self.procs[0].pid)
        sh("ip", "link", "set", "bvb", "netns", self.procs[1].pid)
        for ns, dev, ip in ((self.a, "bva", "10.99.0.1/24"), (self.b, "bvb", "10.99.0.2/24")):
            sh("nsenter", f"--net={ns}", "ip", "addr", "add", ip, "dev", dev)
            sh("nsenter", f"--net={ns}", "ip", "link", "set", dev, "up")
            sh("nsenter", f"--net={ns}", "ip", "link", "set", "lo", "up")
        self.procs.append(subprocess.Popen(["nsenter", f"--net={self.a}", st["iperf"], "-s"],
                                           stdout=subprocess.DEVNULL))
        time.sleep(0.5)

    def client(self, st, seconds) -> float:
        return iperf_json(sh("nsenter", f"--net={self.b}", st["iperf"], "-c", "10.99.0.1", "-t", seconds, "-J"))

    def close(self):
        for p in reversed(self.procs):
            p.kill()
            p.wait()


class PyrtPair:
    """Two pyrt containers on a user-defined network, an iperf3 server in the first."""

    def __init__(self, st):
        self.cli = [st["cli"], "--root", st["store"]]
        sh(*self.cli, "network", "create", "bench")
        sh(*self.cli, "run", "-d", "--name", "iperf-server", "--network", "bench", "iperf:1", st["iperf"], "-s")
        time.sleep(0.5)

    def client(self, st, seconds) -> float:
        return iperf_json(sh(*self.cli, "run", "--rm", "--network", "bench", "iperf:1", st["iperf"], "-c",
                             "iperf-server", "-t", seconds, "-J"))

    def close(self):
        sh(*self.cli, "rm", "-f", "iperf-server", check=False)
        sh(*self.cli, "network", "rm", "bench", check=False)


def measure_throughput(st, seconds, rounds) -> dict:
    """rounds of each, alternated: their medians."""
    out = {"veth": [], "pyrt bridge": []}
    veth = pyrt = None
    try:
        veth, pyrt = VethPair(st), PyrtPair(st)
        for i in range(rounds):
            pairs = [("veth", veth), ("pyrt bridge", pyrt)]
            for name, pair in (pairs if i % 2 == 0 else pairs[::-1]):
                out[name].append(pair.client(st, seconds))
    finally:
        for pair in (veth, pyrt):
            if pair is not None:
                pair.close()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=30, help="interleaved runs of each setup variant (default 30)")
    ap.add_argument("--seconds", type=int, default=3, help="iperf3 duration (default 3)")
    ap.add_argument("--rounds", type=int, default=5, help="alternated iperf3 rounds of each (default 5)")
    ap.add_argument("--no-podman", action="store_true")
    ap.add_argument("--no-throughput", action="store_true")
    ap.add_argument("--no-install", action="store_true", help="do not apt-get install missing tools")
    ap.add_argument("-o", "--output", help="write the raw figures as JSON")
    ap.add_argument("--smoke", action="store_true", help="each path once, tiny (CI; no figures)")
    args = ap.parse_args()
    if args.smoke:
        args.runs, args.seconds, args.rounds = 2, 1, 1
        print("--smoke: every path ran once; the figures below are not measurements")
    if os.geteuid() != 0:
        sys.exit("bench_network.py needs root (network namespaces, bridges, mounts)")
    os.environ.pop("PYRT_DEFAULT_NETWORK", None)
    common.enter_private_mount_namespace()
    enter_private_network()
    result = {}
    with common.Scratch(prefix="pyrt-bench-net-", size="1g", base="/dev/shm") as scratch:
        st = setup(args, scratch)
        for what, why in st["skipped"].items():
            common.log(f"[skip] {what}: {why}")
        times = measure_setup(st, args.runs)
        med = {k: statistics.median(v) * 1000 for k, v in times.items()}
        result["setup_ms"] = {k: [round(x * 1000, 2) for x in v] for k, v in times.items()}
        print(f"run --rm IMAGE true, median of {args.runs} interleaved runs:")
        for name, ms in med.items():
            print(f"  {name:14s} {ms:8.1f} ms")
        cost = {"pyrt": med["pyrt bridge"] - med["pyrt none"]}
        if "podman bridge" in med:
            cost["podman"] = med["podman bridge"] - med["podman none"]
        for tool, c in cost.items():
            print(f"  network setup cost, {tool}: {c:.1f} ms")
        if "podman" in cost and cost["podman"] > 0:
            r = cost["pyrt"] / cost["podman"]
            print(f"  pyrt / podman: {r:.2f}x (target <= {TARGET_SETUP}x) {'ok' if r <= TARGET_SETUP else 'MISSED'}")
            print(f"  whole run with the bridge, pyrt / podman: {med['pyrt bridge'] / med['podman bridge']:.2f}x")
        result["setup_cost_ms"] = cost
        if "iperf" in st:
            got = measure_throughput(st, args.seconds, args.rounds)
            veth, pyrt = statistics.median(got["veth"]), statistics.median(got["pyrt bridge"])
            r = pyrt / veth
            print(f"throughput (iperf3, {args.seconds} s, TCP, median of {args.rounds} alternated rounds): "
                  f"veth pair {veth / 1e9:.2f} Gbit/s, pyrt bridge {pyrt / 1e9:.2f} Gbit/s: {r:.2f}x "
                  f"(target >= {TARGET_THROUGHPUT}x) {'ok' if r >= TARGET_THROUGHPUT else 'MISSED'}")
            result["throughput_bps"] = got
        if st.get("podman_version"):
            print(f"note: {st['podman_version']}, CNI backend, runc, cgroupfs; pyrt {sh(st['cli'], '--version').strip()}")
    if args.output:
        with open(args.output, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
