"""Debian base images without a registry (`pyrt image bootstrap`): mmdebstrap
builds the root from the package mirror the host's apt already uses, as a tar that
becomes a one-layer image.

- The mirror is the first `deb` source of the host's apt (sources.list, .list and
  deb822 .sources files) that serves the suite, or the first plain one; `mirror=`
  overrides it (a URI or a whole "deb ..." line).
- The suite is asked of the mirror first (dists/SUITE/InRelease): a suite it does
  not have is a clear error before anything is downloaded. Its Date is the
  default SOURCE_DATE_EPOCH, so that the same mirror state makes the same image
  (mmdebstrap's tar is then bit for bit the same; $SOURCE_DATE_EPOCH overrides).
- The host's /etc/resolv.conf and /etc/hostname, which mmdebstrap copies in, are
  taken out again (containers get their own); no device nodes (containers get
  docker's /dev); merged /usr where the suite has usr-is-merged.
- An HTTP proxy configured for the host's apt (Acquire::http::Proxy) or in
  $http_proxy is used for the mirror; it is not written into the image.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess

from pyrt.errors import BootstrapError, InvalidArgument, Unsupported

MERGED_USR_HOOKS = "/usr/share/mmdebstrap/hooks/maybe-merged-usr"
VARIANTS = ("extract", "custom", "essential", "apt", "required", "minbase", "buildd", "important",
            "debootstrap", "standard")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9.+-]*$")
_SUITE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")


class Bootstrapped:
    """What make_tar made: the tar, its time, the mirror and the words of the command."""

    def __init__(self, tar, created, mirror, suite, words):
        self.tar, self.created, self.mirror, self.suite, self.words = tar, created, mirror, suite, words


# -- the host's apt ------------------------------------------------------------------------

def host_codename() -> str | None:
    """VERSION_CODENAME of /etc/os-release (the default suite)."""
    try:
        with open("/etc/os-release") as f:
            for line in f:
                k, _, v = line.strip().partition("=")
                if k == "VERSION_CODENAME" and v.strip('"'):
                    return v.strip('"')
    except OSError:
        pass
    return None


def apt_sources(etc="/etc/apt") -> list:
    """The `deb` sources of the host's apt, in apt's order: [{"uri", "suites",
    "components"}], from sources.list, sources.list.d/*.list and *.sources."""
    out = []
    files = [os.path.join(etc, "sources.list")]
    d = os.path.join(etc, "sources.list.d")
    try:
        files += [os.path.join(d, n) for n in sorted(os.listdir(d)) if n.endswith((".list", ".sources"))]
    except OSError:
        pass
    for path in files:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read()
        except OSError:
            continue
        if path.endswith(".sources"):
            out += _deb822(text)
        else:
            out += _one_line(text)
    return out


def _one_line(text) -> list:
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        words = line.split()[1:]
        if words and words[0].startswith("["):  # options: [arch=amd64 signed-by=...]
            while words and not words[0].endswith("]"):
                words.pop(0)
            words = words[1:]
        if len(words) >= 2:
            out.append({"uri": words[0], "suites": [words[1]], "components": words[2:]})
    return out


def _deb822(text) -> list:
    out = []
    for para in re.split(r"\n\s*\n", text):
        fields, key = {}, None
        for line in para.splitlines():
            if line.startswith("#"):
                continue
            if line[:1] in (" ", "\t") and key:
                fields[key] += " " + line.strip()
                continue
            key, sep, value = line.partition(":")
            if not sep:
                key = None
                continue
            key = key.strip().lower()
            fields[key] = value.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes").lower() == "no":
            continue
        for uri in fields.get("uris", "").split():
            out.append({"uri": uri, "suites": fields.get("suites", "").split(),
                        "components": fields.get("components", "").split()})
    return out


def host_mirror(suite) -> str:
    """The URI of the host's source for `suite`: one that lists it, else the first
    whose suites are plain release names (not -updates, -security, ...)."""
    sources = apt_sources()
    for s in sources:
        if suite in s["suites"]:
            return s["uri"]
    for s in sources:
        if any("-" not in x and "/" not in x for x in s["suites"]) and "security" not in s["uri"]:
            return s["uri"]
    raise InvalidArgument("the host's apt has no source to bootstrap from: give --mirror URI")


def apt_proxy() -> str | None:
    """The HTTP proxy of the host's apt (Acquire::http::Proxy), if any."""
    exe = shutil.which("apt-config")
    if exe is None:
        return None
    try:
        r = subprocess.run([exe, "dump", "Acquire::http::Proxy"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in r.stdout.splitlines():
        m = re.match(r'^Acquire::http::Proxy "(.*)";$', line.strip())
        if m and m.group(1) and m.group(1).upper() != "DIRECT":
            return m.group(1)
    return None


# -- the suite on the mirror ------------------------------------------------------------------

def release_date(uri, suite, proxy=None) -> int:
    """The Date of the suite's Release file on the mirror (seconds); a clear error when
    the mirror does not have the suite or cannot be reached."""
    import email.utils
    import urllib.error
    import urllib.request
    base = uri.rstrip("/") + "/dists/" + suite + "/"
    text = None
    if base.startswith("file:"):
        import urllib.parse
        path = urllib.request.url2pathname(urllib.parse.urlparse(base).path)
        for name in ("InRelease", "Release"):
            try:
                with open(os.path.join(path, name), "rb") as f:
                    text = f.read(65536).decode("utf-8", "replace")
                break
            except OSError:
                continue
    elif base.startswith(("http://", "https://")):
        handlers = [urllib.request.ProxyHandler({"http": proxy, "https": proxy})] if proxy else []
        opener = urllib.request.build_opener(*handlers)
        for name in ("InRelease", "Release"):
            try:
                with opener.open(base + name, timeout=30) as resp:
                    text = resp.read(65536).decode("utf-8", "replace")
                break
            except urllib.error.HTTPError as e:
                if e.code != 404:
                    raise BootstrapError(f"the mirror {uri}: {base + name}: HTTP {e.code} {e.reason}") from None
            except (urllib.error.URLError, OSError) as e:
                reason = getattr(e, "reason", e)
                raise BootstrapError(f"cannot reach the mirror {uri}: {reason}") from None
    else:
        return 0  # another transport (tor+, mirror+): apt will tell
    if text is None:
        raise InvalidArgument(f"suite {suite!r}: not on the mirror {uri} (no dists/{suite}/InRelease)")
    m = re.search(r"^Date:\s*(.+)$", text, re.M)
    if not m:
        return 0
    try:
        return int(email.utils.parsedate_to_datetime(m.group(1).strip()).timestamp())
    except (TypeError, ValueError, OverflowError):
        return 0


# -- mmdebstrap ---------------------------------------------------------------------------

def find_mmdebstrap() -> str:
    exe = shutil.which("mmdebstrap")
    if exe is None:
        raise Unsupported("mmdebstrap is not installed (Debian/Ubuntu: apt-get install mmdebstrap)")
    return exe


def _check_names(include, components, variant, suite):
    if not suite or not _SUITE_RE.match(suite):
        raise InvalidArgument(f"invalid suite {suite!r}")
    if variant not in VARIANTS:
        raise InvalidArgument(f"unknown variant {variant!r} (known: {', '.join(VARIANTS)})")
    for name in include:
        if not _NAME_RE.match(name):
            raise InvalidArgument(f"invalid package name {name!r} in --include")
    for name in components:
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$", name):
            raise InvalidArgument(f"invalid component {name!r}")


def make_tar(work, suite=None, include=(), variant="minbase", mirror=None, components=None,
             progress=None) -> Bootstrapped:
    """Runs mmdebstrap into `work` (a private directory on the store's filesystem)
    and returns the tar it wrote. progress(stage, n, total) follows its stages."""
    include = [p for item in include or () for p in str(item).replace(",", " ").split() if p]
    components = [c for item in components or ("main",) for c in str(item).replace(",", " ").split() if c]
    line = None
    if mirror is not None and str(mirror).startswith("deb "):
        line = str(mirror)
        parts = _one_line(line)
        if not parts:
            raise InvalidArgument(f"invalid mirror line {mirror!r}")
        if suite and suite != parts[0]["suites"][0]:
            raise InvalidArgument(f"--suite {suite} and the mirror line's suite {parts[0]['suites'][0]} differ")
        suite = parts[0]["suites"][0]
    suite = suite or host_codename()
    if not suite:
        raise InvalidArgument("this host names no release (VERSION_CODENAME): give --suite")
    _check_names(include, components, variant, suite)
    exe = find_mmdebstrap()
    proxy = os.environ.get("http_proxy") or apt_proxy()
    if mirror is None:
        uri = host_mirror(suite)
    elif line is not None:
        uri = parts[0]["uri"]
    else:
        uri = str(mirror)
        if "://" not in uri and not uri.startswith("file:"):
            raise InvalidArgument(f"invalid mirror {mirror!r}: expected a URI (http://...) or a 'deb ...' line")
    date = release_date(uri, suite, proxy)
    sde = os.environ.get("SOURCE_DATE_EPOCH")
    if sde:
        try:
            created = int(sde)
        except ValueError:
            raise InvalidArgument(f"SOURCE_DATE_EPOCH={sde!r}: not a number of seconds") from None
    else:
        created = date or None
    tar = os.path.join(work, "rootfs.tar")
    cmd = [exe, f"--variant={variant}", "--format=tar", "--skip=output/dev",
           f"--components={','.join(components)}",
           "--customize-hook=rm -f \"$1/etc/resolv.conf\" \"$1/etc/hostname\""]
    if include:
        cmd.append(f"--include={','.join(include)}")
    if os.path.isdir(MERGED_USR_HOOKS):
        cmd.append(f"--hook-dir={MERGED_USR_HOOKS}")
    cmd += ["--", suite, tar, line or uri]
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "LC_ALL": "C.UTF-8",
           "TMPDIR": work, "HOME": work}
    if created:
        env["SOURCE_DATE_EPOCH"] = str(created)
    if proxy:
        env["http_proxy"] = proxy
    if os.geteuid() == 0 and shutil.which("unshare"):
        # what it mounts in its chroot goes away with it, even when it is killed
        cmd = [shutil.which("unshare"), "--mount", "--propagation", "private", "--"] + cmd
    _run(cmd, env, work, progress)
    if not os.path.isfile(tar):
        raise BootstrapError("mmdebstrap wrote no tar")
    words = ["--suite", suite, "--variant", variant] + (["--include", ",".join(include)] if include else []) + \
        (["--components", ",".join(components)] if components != ["main"] else []) + ["--mirror", line or uri]
    return Bootstrapped(tar, created, uri, suite, words)


_STAGES = ("running apt-get update", "downloading packages", "extracting archives", "installing essential",
           "installing remaining", "running --customize-hook", "cleaning package lists", "creating tarball")


def _run(cmd, env, work, progress):
    log_path = os.path.join(work, "mmdebstrap.log")
    with open(log_path, "w+b") as log:
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.PIPE, env=env, cwd=work)
        try:
            for raw in p.stderr:
                log.write(raw)
                text = raw.decode("utf-8", "replace").strip()
                if progress and text.startswith("I: "):
                    for i, stage in enumerate(_STAGES):
                        if text[3:].startswith(stage):
                            progress(stage, i + 1, len(_STAGES))
                            break
            rc = p.wait()
        except BaseException:
            p.terminate()
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            raise
        finally:
            p.stderr.close()
        if rc != 0:
            log.seek(0)
            raise BootstrapError("mmdebstrap failed: " + _reason(log.read().decode("utf-8", "replace")))


def _reason(text) -> str:
    """The line of mmdebstrap's (or apt's) output that says why."""
    errors = [ln.strip() for ln in text.splitlines() if ln.startswith(("E: ", "W: "))]
    for ln in errors:
        if ln.startswith("E: ") and "failed" not in ln and "exit" not in ln:
            return ln[3:]
    for ln in errors:
        if ln.startswith("E: "):
            return ln[3:]
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"
