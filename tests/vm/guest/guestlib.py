"""Helpers of the guest suite."""
import json
import subprocess


class Pyrt:
    """The `pyrt` command on one store."""

    def __init__(self, root):
        self.root = root

    def __call__(self, *args, check=True, input=None, timeout=300):
        p = subprocess.run(["pyrt", "--root", self.root, *args], capture_output=True, text=True,
                           input=input, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"pyrt {' '.join(args)} exited {p.returncode}:\n{p.stdout}{p.stderr}")
        return p

    def out(self, *args, **kw):
        return self(*args, **kw).stdout.strip()

    def inspect(self, name):
        return json.loads(self.out("inspect", name))[0]


def cgroup_dir(pid):
    """The cgroup2 directory of a process, from /proc/PID/cgroup."""
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            if line.startswith("0::"):
                return "/sys/fs/cgroup" + line[3:].strip()
    raise AssertionError(f"no cgroup2 line for pid {pid}")


def read(path):
    with open(path) as f:
        return f.read().strip()
