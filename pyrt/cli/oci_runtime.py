"""`pyrt-runtime`: pyrt as an OCI runtime, with runc's command line, so that podman,
containerd (and anything else that drives runc or crun) can run containers with
pyrt's C core.

    pyrt-runtime [--root DIR] [--log FILE] [--log-format text|json] [--debug]
                 [--systemd-cgroup] COMMAND [OPTIONS] ...

    create [--bundle B] [--pid-file F] [--console-socket S] [--no-pivot] [--no-new-keyring] ID
    start ID · state ID · kill [--all] ID [SIGNAL] · delete [--force] ID
    run [--bundle B] [--pid-file F] [--console-socket S] [--detach] ID
    exec [--process FILE | ARGS...] [--detach] [--pid-file F] [--console-socket S] [--tty]
         [--cwd DIR] [--env K=V]... [--user UID[:GID]] ID
    ps [--format table|json] ID · list [--format table|json] [--quiet] · pause ID · resume ID
    spec [--bundle B] [--rootless] · features · --version

`create` sets the container up completely and leaves its process waiting just
before the program (on the exec FIFO in the state directory) until `start`; a set-up
error fails `create` itself. The process outlives `create` (engines adopt it as a
subreaper). Options are taken with one or two dashes and `--opt=value`, as runc's.

Where pyrt-runtime differs from runc:
- cgroups are written directly (cgroupfs); with --systemd-cgroup (cgroupsPath
  slice:prefix:name) the container's cgroup is the container/ leaf of a delegated
  transient scope prefix-name.scope made through systemd's D-Bus API (pure
  cgroup2 under systemd only: elsewhere an error). linux.resources.devices is enforced by the devices controller on v1 and
  hybrid hosts and by an eBPF program attached to the container's cgroup on v2.
- an ordinary user's containers get cgroups only in the subtree systemd delegates
  to the user: each in a scope of the user's systemd instance (user.slice,
  pyrt-runtime-<id>.scope, or what --systemd-cgroup's cgroupsPath names there;
  without it a cgroupsPath is relative, below the scope). Elsewhere no cgroup, and
  linux.resources fails with one line that says how to get delegation.
- prestart, createRuntime and createContainer hooks run at a stop of the
  container's set-up, its mounts made and before pivot_root (state "creating");
  prestart and createRuntime in the runtime's namespaces, createContainer in the
  container's except its mount namespace (so their path resolves on the host),
  startContainer hooks in all of them.
- --preserve-fds is refused; --no-pivot is accepted and ignored (pivot_root is
  always used).
- without a mount namespace of its own (none in the config, or one joined by
  path) the process is chroot'ed into root.path and nothing is mounted: a config
  that asks for mounts there is refused (pyrt never mounts in a mount namespace
  it did not create).

The mechanics are pyrt.ocirt.operations; this module parses, calls and prints.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time

from pyrt import __version__, _core
from pyrt.containers.lifecycle import parse_signal
from pyrt.errors import PyrtError
from pyrt.ocirt.defaults import SPEC_VERSION, default_config
from pyrt.ocirt.operations import Operations, features
from pyrt.ocirt.state import rfc3339
from pyrt.paths import check_private_dir, in_user_namespace

PROG = "pyrt-runtime"


class UsageError(Exception):
    pass


class Failure(Exception):
    """An error to report on one line (and in the --log file)."""


# -- logging ---------------------------------------------------------------------------

class Log:
    def __init__(self):
        self.path = None
        self.format = "text"
        self.debug = False

    def write(self, level: str, msg: str) -> None:
        if self.path is None:
            return
        t = time.time()
        if self.format == "json":
            line = json.dumps({"level": level, "msg": msg, "time": rfc3339(t)})
        else:
            line = f'time="{rfc3339(t)}" level={level} msg={json.dumps(msg)}'
        try:
            with open(self.path, "a") as f:
                f.write(line + "\n")
        except OSError:
            pass

    def error(self, msg: str) -> None:
        self.write("error", msg)
        print(f"{PROG}: {msg}", file=sys.stderr, flush=True)

    def warn(self, msg: str) -> None:
        self.write("warning", msg)
        if self.debug or self.path is None:
            print(f"{PROG}: warning: {msg}", file=sys.stderr, flush=True)

    def dbg(self, msg: str) -> None:
        if self.debug:
            self.write("debug", msg)
            print(f"{PROG}: debug: {msg}", file=sys.stderr, flush=True)


LOG = Log()


# -- argument parsing (runc's style: -opt or --opt, --opt=value) ---------------------

def parse_opts(args, spec, *, stop_at_positional=False):
    """spec: {name: (key, kind)} with kind "flag", "value" or "list"; names without
    dashes ("bundle", "b"). Returns (options dict, positionals)."""
    opts = {}
    for name, (key, kind) in spec.items():
        opts.setdefault(key, [] if kind == "list" else (False if kind == "flag" else None))
    pos = []
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            pos += args[i + 1:]
            break
        if a.startswith("-") and a != "-" and not (stop_at_positional and pos):
            name, eq, value = a.lstrip("-").partition("=")
            if name not in spec:
                raise UsageError(f"unknown option {a.split('=')[0]}")
            key, kind = spec[name]
            if kind == "flag":
                if eq:
                    opts[key] = value.lower() in ("1", "true", "yes")
                else:
                    opts[key] = True
            else:
                if not eq:
                    i += 1
                    if i >= len(args):
                        raise UsageError(f"option {a} needs a value")
                    value = args[i]
                if kind == "list":
                    opts[key].append(value)
                else:
                    opts[key] = value
        else:
            pos.append(a)
            if stop_at_positional:
                pos += args[i + 1:]
                break
        i += 1
    return opts, pos


GLOBAL = {
    "root": ("root", "value"), "log": ("log", "value"), "log-format": ("log_format", "value"),
    "debug": ("debug", "flag"), "systemd-cgroup": ("systemd_cgroup", "flag"),
    "rootless": ("rootless", "value"), "criu": ("criu", "value"),
    "version": ("version", "flag"), "v": ("version", "flag"), "help": ("help", "flag"), "h": ("help", "flag"),
}

CREATE = {
    "bundle": ("bundle", "value"), "b": ("bundle", "value"), "pid-file": ("pid_file", "value"),
    "console-socket": ("console_socket", "value"), "no-pivot": ("no_pivot", "flag"),
    "no-new-keyring": ("no_new_keyring", "flag"), "preserve-fds": ("preserve_fds", "value"),
    "notify-socket": ("notify_socket", "value"),
}
RUN = dict(CREATE, detach=("detach", "flag"), d=("detach", "flag"), **{"keep": ("keep", "flag")})
EXEC = {
    "process": ("process", "value"), "p": ("process", "value"), "detach": ("detach", "flag"),
    "d": ("detach", "flag"), "pid-file": ("pid_file", "value"), "console-socket": ("console_socket", "value"),
    "tty": ("tty", "flag"), "t": ("tty", "flag"), "cwd": ("cwd", "value"), "env": ("env", "list"),
    "e": ("env", "list"), "user": ("user", "value"), "u": ("user", "value"),
    "additional-gids": ("gids", "list"), "g": ("gids", "list"), "cap": ("cap", "list"), "c": ("cap", "list"),
    "no-new-privs": ("no_new_privs", "flag"), "preserve-fds": ("preserve_fds", "value"),
    "process-label": ("label", "value"), "apparmor": ("apparmor", "value"),
    "ignore-paused": ("ignore_paused", "flag"), "cgroup": ("cgroup", "list"),
}


# -- commands: parse, call pyrt.ocirt.operations, print ---------------------------------

def _ops(g):
    return Operations(g["root"], warn=LOG.warn, debug=LOG.dbg, systemd_cgroup=g["systemd_cgroup"])


def _one_id(pos, cmd, extra=0):
    if len(pos) < 1 or len(pos) > 1 + extra:
        raise UsageError(f"{cmd} takes a container id" + (" (and a signal)" if extra else ""))
    return pos[0]


def _signal_number(text) -> int:
    try:
        return parse_signal(text)
    except Exception:
        raise UsageError(f"invalid signal {text!r}") from None


def _create_opts(o) -> dict:
    return {"pid_file": o.get("pid_file"), "console_socket": o.get("console_socket"),
            "no_new_keyring": bool(o.get("no_new_keyring")), "preserve_fds": o.get("preserve_fds")}


def cmd_create(g, args):
    o, pos = parse_opts(args, CREATE)
    cid = _one_id(pos, "create")
    made = _ops(g).create(cid, o.get("bundle"), **_create_opts(o))
    os.close(made.pidfd)
    return 0


def cmd_start(g, args):
    o, pos = parse_opts(args, {})
    _ops(g).start(_one_id(pos, "start"))
    return 0


def cmd_run(g, args):
    o, pos = parse_opts(args, RUN)
    cid = _one_id(pos, "run")
    return _ops(g).run(cid, o.get("bundle"), detach=bool(o.get("detach")), keep=bool(o.get("keep")),
                       **_create_opts(o))


def cmd_state(g, args):
    o, pos = parse_opts(args, {})
    print(json.dumps(_ops(g).state(_one_id(pos, "state")), indent=2))
    return 0


def cmd_kill(g, args):
    o, pos = parse_opts(args, {"all": ("all", "flag"), "a": ("all", "flag")})
    cid = _one_id(pos, "kill", extra=1)
    sig = _signal_number(pos[1]) if len(pos) > 1 else signal.SIGTERM
    _ops(g).kill(cid, sig, all=o["all"])
    return 0


def cmd_delete(g, args):
    o, pos = parse_opts(args, {"force": ("force", "flag"), "f": ("force", "flag")})
    _ops(g).delete(_one_id(pos, "delete"), force=o["force"])
    return 0


def _exec_process(o, argv, base) -> dict:
    """The process to exec: --process FILE, or the container's own process with
    the command line's args and flags."""
    if o.get("process"):
        try:
            with open(o["process"], "rb") as f:
                proc = json.loads(f.read())
        except (OSError, ValueError) as e:
            raise Failure(f"--process {o['process']}: {e}") from None
        if not isinstance(proc, dict):
            raise Failure(f"--process {o['process']}: expected a JSON object")
        return proc
    if not argv:
        raise UsageError("exec needs a command (or --process FILE)")
    proc = json.loads(json.dumps(base))
    proc["args"] = argv
    proc["env"] = list(proc.get("env") or []) + list(o["env"])
    if o.get("cwd"):
        proc["cwd"] = o["cwd"]
    proc["terminal"] = bool(o.get("tty"))
    if o.get("user"):
        u, _, gr = o["user"].partition(":")
        try:
            proc["user"] = {"uid": int(u), "gid": int(gr) if gr else 0}
        except ValueError:
            raise UsageError(f"--user {o['user']!r}: use UID[:GID]") from None
    if o["gids"]:
        proc.setdefault("user", {})["additionalGids"] = [int(x) for x in o["gids"]]
    if o["cap"]:
        capsd = proc.setdefault("capabilities", {})
        for k in ("bounding", "effective", "permitted", "ambient"):
            capsd[k] = list(capsd.get(k) or []) + o["cap"]
    if o.get("no_new_privs"):
        proc["noNewPrivileges"] = True
    return proc


def cmd_exec(g, args):
    o, pos = parse_opts(args, EXEC, stop_at_positional=True)
    if not pos:
        raise UsageError("exec takes a container id")
    cid, argv = pos[0], pos[1:]
    ops = _ops(g)
    proc = _exec_process(o, argv, ops.container(cid).rec.get("process") or {})
    return ops.exec(cid, proc, detach=bool(o.get("detach")), pid_file=o.get("pid_file"),
                    console_socket=o.get("console_socket"), ignore_paused=bool(o.get("ignore_paused")),
                    preserve_fds=o.get("preserve_fds"))


def cmd_ps(g, args):
    o, pos = parse_opts(args, {"format": ("format", "value"), "f": ("format", "value")}, stop_at_positional=True)
    if not pos:
        raise UsageError("ps takes a container id")
    pids = _ops(g).pids(pos[0])
    if (o.get("format") or "table") == "json":
        print(json.dumps(pids))
        return 0
    import subprocess  # lazy: only the Python `ps` runs ps(1) (the native program does ps)
    psargs = pos[1:] or ["-ef"]
    out = subprocess.run(["ps"] + psargs, stdout=subprocess.PIPE, text=True, check=False).stdout
    lines = out.splitlines()
    if not lines:
        return 0
    header = lines[0].split()
    try:
        col = header.index("PID")
    except ValueError:
        raise Failure("ps output has no PID column") from None
    print(lines[0])
    for line in lines[1:]:
        fields = line.split()
        if len(fields) > col and fields[col].isdigit() and int(fields[col]) in pids:
            print(line)
    return 0


def cmd_list(g, args):
    o, pos = parse_opts(args, {"format": ("format", "value"), "f": ("format", "value"),
                               "quiet": ("quiet", "flag"), "q": ("quiet", "flag")})
    cs = _ops(g).list()
    if o["quiet"]:
        for c in cs:
            print(c.id)
        return 0
    states = [c.oci_state() for c in cs]
    if (o.get("format") or "table") == "json":
        print(json.dumps(states))
        return 0
    rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
    for s in states:
        rows.append((s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"], s["owner"] or "root"))
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    for r in rows:
        print("   ".join(v.ljust(widths[i]) for i, v in enumerate(r)).rstrip())
    return 0


def cmd_pause(g, args, freeze=True):
    o, pos = parse_opts(args, {})
    _ops(g).pause(_one_id(pos, "pause" if freeze else "resume"), freeze=freeze)
    return 0


# -- spec / features / version -------------------------------------------------------------

def cmd_spec(g, args):
    o, pos = parse_opts(args, {"bundle": ("bundle", "value"), "b": ("bundle", "value"),
                               "rootless": ("rootless", "flag")})
    if pos:
        raise UsageError("spec takes no arguments")
    bundle = o.get("bundle") or "."
    path = os.path.join(bundle, "config.json")
    if os.path.exists(path):
        raise Failure(f"{path} exists: remove it first")
    with open(path, "w") as f:
        json.dump(default_config(rootless=o["rootless"]), f, indent="\t")
        f.write("\n")
    return 0


def cmd_features(g, args):
    print(json.dumps(features(), indent=2))
    return 0


def version_text() -> str:
    return (f"{PROG} version {__version__}\nspec: {SPEC_VERSION}\n"
            f"libseccomp: {'yes' if _core.seccomp_available() else 'no'}")


COMMANDS = {
    "create": cmd_create, "start": cmd_start, "run": cmd_run, "state": cmd_state, "kill": cmd_kill,
    "delete": cmd_delete, "exec": cmd_exec, "ps": cmd_ps, "list": cmd_list,
    "pause": cmd_pause, "resume": lambda g, a: cmd_pause(g, a, freeze=False),
    "spec": cmd_spec, "features": cmd_features,
}

USAGE = f"""usage: {PROG} [--root DIR] [--log FILE] [--log-format text|json] [--debug] [--systemd-cgroup] COMMAND ...

commands: {", ".join(COMMANDS)}
  create [--bundle B] [--pid-file F] [--console-socket S] ID   set up, wait for start
  start ID · state ID · kill [--all] ID [SIGNAL] · delete [--force] ID
  run [--bundle B] [--detach] ID · exec [--process F | ARGS] [-d] [-t] ID
  ps [--format json] ID · list [--format json] · pause ID · resume ID
  spec [--bundle B] · features · --version"""


def _default_root() -> str:
    """/run/pyrt-runtime; an ordinary user's, or root of a user namespace's,
    $XDG_RUNTIME_DIR/pyrt-runtime (or
    /tmp/pyrt-runtime-UID), as runc --rootless keeps its state."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    usable = bool(base) and os.path.isabs(base) and os.path.isdir(base)
    # root of a user namespace (rootless podman and containerd run the runtime so)
    # keeps its state where its user does, as runc and crun do
    if os.geteuid() == 0 and not (usable and in_user_namespace()):
        return "/run/pyrt-runtime"
    if usable:
        return check_private_dir(os.path.join(base, "pyrt-runtime"), "state directory")
    return check_private_dir(f"/tmp/pyrt-runtime-{os.geteuid()}", "state directory")


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # global options come before the command
    i = 0
    glob_args = []
    while i < len(argv) and argv[i].startswith("-"):
        name = argv[i].lstrip("-").partition("=")[0]
        glob_args.append(argv[i])
        if name in GLOBAL and GLOBAL[name][1] == "value" and "=" not in argv[i]:
            i += 1
            if i < len(argv):
                glob_args.append(argv[i])
        i += 1
    try:
        g, _ = parse_opts(glob_args, GLOBAL)
    except UsageError as e:
        print(f"{PROG}: {e}\n{USAGE}", file=sys.stderr)
        return 2
    try:
        g["root"] = os.path.abspath(g.get("root") or os.environ.get("PYRT_RUNTIME_ROOT") or _default_root())
    except (PyrtError, OSError) as e:  # an unsafe or unusable default state directory
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1
    LOG.path = g.get("log")
    LOG.format = (g.get("log_format") or "text").lower()
    LOG.debug = bool(g.get("debug"))
    if LOG.format not in ("text", "json"):
        print(f"{PROG}: --log-format must be text or json", file=sys.stderr)
        return 2
    if g.get("version"):
        print(version_text())
        return 0
    if i >= len(argv) or g.get("help"):
        print(USAGE, file=sys.stderr if i >= len(argv) and not g.get("help") else sys.stdout)
        return 0 if g.get("help") else 2
    cmd, args = argv[i], argv[i + 1:]
    LOG.dbg(f"{cmd} {' '.join(args)}")
    fn = COMMANDS.get(cmd)
    if fn is None:
        LOG.error(f"unknown command {cmd!r} (commands: {', '.join(COMMANDS)})")
        return 2
    try:
        return fn(g, args) or 0
    except UsageError as e:
        LOG.error(f"{cmd}: {e}")
        return 2
    except (Failure, PyrtError) as e:
        LOG.error(str(e))
        return 1
    except OSError as e:
        LOG.error(f"{cmd}: {e}")
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
