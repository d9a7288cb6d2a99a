"""What a host Python interpreter (and a virtual environment of it) is made of, asked
of the interpreter itself rather than guessed from paths: its standard library, its
compiled modules' directory, its prefixes, a venv's site-packages, and where its
OpenSSL looks for certificates and zoneinfo for time zones. Used by from-host images
(pyrt.images.fromhost) and by the host-root sandbox (pyrt.launch.hostroot)."""
from __future__ import annotations

import json
import os
import re

from pyrt.errors import InvalidArgument

# Run by the interpreter being asked: -I (no user site, no PYTHON* variables), -S
# (no site: no .pth file or sitecustomize of a venv runs, whoever wrote them) and -B
# (no bytecode written on the host). A venv's own paths are asked for by its
# directory (argv[1]), which works on every version (before 3.11, site.py set a
# venv's prefix).
_ASK = r"""
import json, os, sys, sysconfig
venv = sys.argv[1]
own = {"base": venv, "platbase": venv} if venv else None
names = sysconfig.get_scheme_names()
default = getattr(sysconfig, "get_default_scheme", None)
scheme = ("venv" if "venv" in names else "posix_prefix") if venv else (default() if default else "posix_prefix")
info = {"version": "%d.%d" % sys.version_info[:2], "prefix": sys.prefix, "base_prefix": sys.base_prefix,
        "exec_prefix": sys.exec_prefix, "base_exec_prefix": sys.base_exec_prefix,
        "path": [p for p in sys.path if p],
        "stdlib": sysconfig.get_path("stdlib"), "platstdlib": sysconfig.get_path("platstdlib"),
        "purelib": sysconfig.get_path("purelib", scheme, own), "platlib": sysconfig.get_path("platlib", scheme, own),
        "scripts": sysconfig.get_path("scripts", scheme, own),
        "dynload": sysconfig.get_config_var("DESTSHARED") or ""}
try:
    import ssl
    p = ssl.get_default_verify_paths()
    info["certs"] = [x for x in (p.cafile, p.capath, p.openssl_cafile, p.openssl_capath) if x]
except Exception:
    info["certs"] = []
try:
    import zoneinfo
    info["tzpath"] = list(zoneinfo.TZPATH)
except Exception:
    info["tzpath"] = []
sys.stdout.write(json.dumps(info))
"""

_NAME_RE = re.compile(r"^(python|pypy)[0-9.]*[a-z]?$")

# Not taken from the standard library's directory: the regression test suite, the
# installed third-party packages (a venv, or named paths, bring those) and the files
# for building C extensions (a static libpython among them).
STDLIB_SKIP = ("test", "site-packages", "dist-packages")
STDLIB_SKIP_PREFIX = ("config-",)


def is_python(real_path: str, needed=()) -> bool:
    """Whether a host program is a Python interpreter: by its name, or because it
    links libpython."""
    if _NAME_RE.match(os.path.basename(real_path)):
        return True
    return any(n.startswith("libpython") for n in needed)


def ask(executable: str, venv: str = "") -> dict:
    """The interpreter's own answer about its files (see _ASK); with `venv`, that
    venv's site-packages and scripts."""
    import subprocess
    try:
        r = subprocess.run([executable, "-I", "-S", "-B", "-c", _ASK, venv], capture_output=True, timeout=60,
                           env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8"})
    except (OSError, subprocess.TimeoutExpired) as e:
        raise InvalidArgument(f"{executable}: cannot ask this Python where its files are: {e}") from None
    try:
        info = json.loads(r.stdout.decode("utf-8")) if r.returncode == 0 else None
    except ValueError:
        info = None
    if not isinstance(info, dict):
        last = (r.stderr.decode("utf-8", "replace").strip().splitlines() or ["no answer"])[-1]
        raise InvalidArgument(f"{executable}: cannot ask this Python where its files are: {last}")
    return info


def runtime_dirs(info: dict) -> list:
    """The interpreter's own directories: its standard library and the directory of
    its compiled modules, plus the other entries of its path inside its prefix that
    are not site-packages (a python3X.zip, ...). Existing ones only, no duplicates."""
    bases = {os.path.realpath(info[k]) for k in ("base_prefix", "base_exec_prefix") if info.get(k)}
    out = []
    cands = [info.get("stdlib"), info.get("platstdlib"), info.get("dynload")]
    for p in info.get("path") or ():
        rp = os.path.realpath(p)
        if any(part in ("site-packages", "dist-packages") for part in rp.split("/")):
            continue
        if any(rp == b or rp.startswith(b.rstrip("/") + "/") for b in bases):
            cands.append(p)
    for c in cands:
        if c and os.path.exists(c) and c not in out:
            out.append(c)
    return out


def skip_in_stdlib(stdlib: str):
    """A filter for the tree copy of the standard library: STDLIB_SKIP at its top."""
    top = os.path.realpath(stdlib)

    def skip(host_path, is_dir):
        if not is_dir or os.path.dirname(host_path) != top:
            return False
        name = os.path.basename(host_path)
        return name in STDLIB_SKIP or name.startswith(STDLIB_SKIP_PREFIX)
    return skip


def venv_python(venv: str) -> str:
    """A virtual environment's interpreter; a clear error when `venv` is not one."""
    if not os.path.exists(venv):
        raise InvalidArgument(f"--venv {venv}: no such directory on this host")
    if not os.path.isdir(venv):
        raise InvalidArgument(f"--venv {venv}: not a directory")
    if not os.path.isfile(os.path.join(venv, "pyvenv.cfg")):
        raise InvalidArgument(f"--venv {venv}: not a virtual environment (no pyvenv.cfg)")
    for name in ("python3", "python"):
        exe = os.path.join(venv, "bin", name)
        if os.path.exists(exe):
            return exe
    raise InvalidArgument(f"--venv {venv}: no bin/python3 in it")


def venv_parts(venv: str, info: dict) -> list:
    """What of a venv goes into an image: pyvenv.cfg, bin/, its site-packages (pure
    and platform) and the lib64 link. Nothing else of the directory (a project's
    .env, .git or notes when the venv lives in it)."""
    venv = os.path.abspath(venv)
    parts = [os.path.join(venv, "pyvenv.cfg"), os.path.join(venv, "bin")]
    for key in ("purelib", "platlib"):
        p = info.get(key)
        if p and os.path.isdir(p) and os.path.realpath(p).startswith(os.path.realpath(venv) + "/"):
            parts.append(p)
    lib64 = os.path.join(venv, "lib64")
    if os.path.islink(lib64):
        parts.append(lib64)
    out = []
    for p in parts:
        if os.path.lexists(p) and p not in out:
            out.append(p)
    return out
