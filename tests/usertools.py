"""pyrt as an ordinary user, for the rootless tests (the suite itself runs as root).

- `ensure_user(name, subids)`: a system user for the tests (made once, kept), with
  a subordinate uid/gid range of 65536 ids in /etc/subuid and /etc/subgid, or
  with none (`subids=False`). Idempotent; `useradd`/`usermod` from the passwd
  package (shadow).
- `user_python(base)`: a Python the test user can run that imports the installed
  pyrt: this interpreter when the user can read it, else this interpreter's
  installation bound read-only below `base` (in the test session's own mount
  namespace; an interpreter under /root is not readable by anyone else).
- `UserEnv`: one test's user: a home, $XDG_DATA_HOME and $XDG_RUNTIME_DIR of its
  own below the test's directory; `.run(argv)` runs a command as that user,
  `.py(code, *args)` Python code, `.pyrt(*argv)` the `pyrt` command,
  `.load_layers(base_tar, layers, ref)` an image of layers on the base loaded.
- `shifted_copy(src, dst, uid, base)`: a copy of a rootfs whose owners are
  shifted as an ordinary user's containers see them (0 -> the user, N -> base+N-1).
"""
from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import textwrap

import imagetools

RANGE = 65536
USER = "pyrt-test"            # with a subordinate range
USER_NOSUB = "pyrt-test-nosub"  # without one


def _ranges(path, name, uid):
    out = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.strip().split(":")
                if len(parts) == 3 and parts[0] in (name, str(uid)):
                    out.append((int(parts[1]), int(parts[2])))
    except FileNotFoundError:
        pass
    return out


def _free_start(path) -> int:
    """A start for a new range of RANGE ids past every range in the file."""
    end = 100000
    try:
        with open(path) as f:
            for line in f:
                parts = line.strip().split(":")
                if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                    end = max(end, int(parts[1]) + int(parts[2]))
    except FileNotFoundError:
        pass
    return (end + RANGE - 1) // RANGE * RANGE


def ensure_user(name: str, subids: bool = True) -> pwd.struct_passwd:
    """The user `name`, made when missing, with (or without) a subordinate range."""
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", "--user-group", name],
                       check=True, capture_output=True)
        pw = pwd.getpwnam(name)
    for path, flag_add, flag_del in (("/etc/subuid", "--add-subuids", "--del-subuids"),
                                     ("/etc/subgid", "--add-subgids", "--del-subgids")):
        have = _ranges(path, name, pw.pw_uid)
        if subids and not any(n >= RANGE for _, n in have):
            start = _free_start(path)
            subprocess.run(["usermod", flag_add, f"{start}-{start + RANGE - 1}", name], check=True,
                           capture_output=True)
        elif not subids:
            for start, n in have:
                subprocess.run(["usermod", flag_del, f"{start}-{start + n - 1}", name], check=True,
                               capture_output=True)
    return pw


def subid_base(name: str) -> int:
    """The first host uid of the user's subordinate range (its container uid 1)."""
    pw = pwd.getpwnam(name)
    (start, _), *_ = [r for r in _ranges("/etc/subuid", name, pw.pw_uid) if r[1] >= RANGE]
    return start


def _site_dir() -> str:
    import pyrt
    return os.path.dirname(os.path.dirname(os.path.abspath(pyrt.__file__)))


def _as(pw, argv, env, wrap=(), **kw):
    cmd = [*wrap, "setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--init-groups", "--reset-env", "--",
           "env", "-i", *[f"{k}={v}" for k, v in env.items()], *argv]
    return subprocess.run(cmd, **kw)


def user_python(base: str, pw) -> tuple[str, dict]:
    """(python path, extra environment) with which `pw` imports the installed pyrt."""
    env = {"PYTHONPATH": _site_dir(), "PYTHONSAFEPATH": "1"}
    probe = ["-c", "import pyrt._core, pyrt._sys, pyrt.launch.process, zstandard"]
    exe = os.path.realpath(sys.executable)
    if _as(pw, [exe, *probe], dict(env, PATH="/usr/bin:/bin"), capture_output=True).returncode == 0:
        return exe, env
    prefix = os.path.realpath(sys.base_prefix)
    bound = os.path.join(base, "python")
    os.makedirs(bound, exist_ok=True)
    if subprocess.run(["mountpoint", "-q", bound]).returncode != 0:
        subprocess.run(["mount", "--bind", "-o", "ro", prefix, bound], check=True)
    exe = os.path.join(bound, os.path.relpath(os.path.realpath(sys._base_executable), prefix))
    env["LD_LIBRARY_PATH"] = os.path.join(bound, "lib")  # its libpython (an absolute RUNPATH)
    r = _as(pw, [exe, *probe], dict(env, PATH="/usr/bin:/bin"), capture_output=True)
    assert r.returncode == 0, f"no Python the test user can run: {r.stderr.decode()}"
    return exe, env


class UserEnv:
    """A test's ordinary user, with directories of its own below `base`."""

    def __init__(self, pw, python, pyenv, base):
        self.pw, self.python, self.base = pw, python, base
        self.uid, self.gid, self.name = pw.pw_uid, pw.pw_gid, pw.pw_name
        self.dir = self.mkdir("u")
        self.home = self.mkdir("u/home")
        self.data = os.path.join(self.home, ".local", "share")
        self.runtime_dir = self.mkdir("u/run")
        self.env = dict(pyenv, HOME=self.home, USER=self.name, LOGNAME=self.name,
                        PATH=os.pathsep.join([os.path.dirname(python), "/usr/local/bin", "/usr/bin", "/bin"]),
                        XDG_RUNTIME_DIR=self.runtime_dir, LANG="C.UTF-8")
        self.store = os.path.join(self.data, "pyrt")
        self.wrap = []  # a command the user's commands run under (as root): nsenter --net=... for a netns

    def in_netns(self, path: str) -> "UserEnv":
        """From now on the user's commands run in the network namespace at path
        (entered as root, before the user's identity is taken)."""
        self.wrap = ["nsenter", f"--net={path}", "--"]
        return self

    def mkdir(self, rel, mode=0o700) -> str:
        """A directory below the test's own, the user's (its parents reachable)."""
        path = os.path.join(self.base, rel)
        os.makedirs(path, exist_ok=True)
        os.chown(path, self.uid, self.gid)
        os.chmod(path, mode)
        return path

    def run(self, argv, env=None, input=None, check=False, timeout=120) -> subprocess.CompletedProcess:
        r = _as(self.pw, list(argv), dict(self.env, **(env or {})), wrap=self.wrap, capture_output=True, input=input,
                timeout=timeout, cwd="/")
        if check:
            assert r.returncode == 0, (argv, r.returncode, r.stdout, r.stderr)
        return r

    def py(self, code, *args, env=None, check=False, input=None, timeout=120) -> subprocess.CompletedProcess:
        """Python code (dedented) run as the user; args in sys.argv[1:]."""
        return self.run([self.python, "-c", textwrap.dedent(code), *map(str, args)], env=env, check=check,
                        input=input, timeout=timeout)

    def pyrt(self, *argv, env=None, input=None, timeout=120) -> subprocess.CompletedProcess:
        """The `pyrt` command (its module run by the user's Python), on the user's
        default store unless argv says otherwise."""
        return self.run([self.python, "-m", "pyrt.cli.main", *argv], env=env, input=input, timeout=timeout)

    def load_layers(self, base_tar, layers, ref, check=True) -> subprocess.CompletedProcess:
        """The image `ref`: base_tar's layer with `layers` (layer tars, bytes) on
        top, written as an OCI layout below the user's directory (readable by the
        user) and loaded by the user (`pyrt load -i`); its result (check: it must
        succeed)."""
        oci = imagetools.OCIBuilder(os.path.join(self.dir, "oci-" + ref.replace(":", "-")))
        with open(base_tar, "rb") as f:
            oci.image([f.read(), *layers], ref=ref)
        path = oci.write()
        for dirpath, dirnames, filenames in os.walk(path):
            os.chmod(dirpath, 0o755)
            for n in filenames:
                os.chmod(os.path.join(dirpath, n), 0o644)
        r = self.pyrt("load", "-i", path)
        if check:
            assert r.returncode == 0, (r.args, r.returncode, r.stdout, r.stderr)
        return r

    def runtime(self, *argv, cwd="/", env=None, timeout=120, capture=True) -> subprocess.CompletedProcess:
        """`pyrt-runtime` (its module run by the user's Python), state in the
        user's runtime directory unless argv says otherwise. capture=False: stdio
        on /dev/null (`create`: the container keeps its stdio open)."""
        io = {"capture_output": True} if capture else {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        return _as(self.pw, [self.python, "-m", "pyrt.cli.oci_runtime", *argv], dict(self.env, **(env or {})),
                   wrap=self.wrap, timeout=timeout, cwd=cwd, **io)


def shifted_copy(src: str, dst: str, uid: int, gid: int, base: int) -> str:
    """Copy the tree `src` to `dst` (modes, symlinks) with its owners as an
    ordinary user's container sees them: 0 -> uid/gid, N -> base + N - 1."""
    shutil.copytree(src, dst, symlinks=True, copy_function=shutil.copy2)

    def shift(i, own):
        return own if i == 0 else base + i - 1

    for dirpath, dirnames, filenames in os.walk(src):
        for name in dirnames + filenames + ["."]:
            s = os.path.normpath(os.path.join(dirpath, name))
            st = os.lstat(s)
            d = os.path.join(dst, os.path.relpath(s, src))
            os.chown(d, shift(st.st_uid, uid), shift(st.st_gid, gid), follow_symlinks=False)
            if not os.path.islink(d):
                os.chmod(d, st.st_mode & 0o7777)
    return dst
