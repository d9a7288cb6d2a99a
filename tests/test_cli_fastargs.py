"""`pyrt run`'s command line parsed without argparse (pyrt.cli.fastargs): for every
command line it takes, the same Namespace argparse gives; everything else (help,
errors, abbreviations, unusual forms) it leaves to argparse. In-process: no
container is started."""
from __future__ import annotations

import contextlib
import io

import pytest

from pyrt.cli import fastargs
from pyrt.cli.main import build_parser, declare_globals, declare_run

# command lines the fast parser must take (the forms users type)
TAKEN = [
    ["run", "--rm", "img", "true"],
    ["run", "img"],
    ["run"],
    ["run", "--", "img"],
    ["--root", "/x", "run", "--rootfs", "/r", "--", "/bin/true"],
    ["--root=/s", "-q", "--storage-driver", "copy", "--cgroup-manager", "cgroupfs", "run", "-d", "img"],
    ["--quiet", "-q", "run", "img"],
    ["run", "-it", "--pids-limit", "-1", "-e", "A=1", "--env=B=2", "img", "-x", "--rm"],
    ["run", "-itd", "--name", "web", "-p", "8080:80", "--restart", "always", "img", "server"],
    ["run", "-e", "-1", "--memory-swap", "-1", "--cpus", "-.5", "img"],
    ["run", "--network", "host", "--net", "none", "img"],
    ["run", "--network", "app", "--network-alias", "db", "--ip", "10.9.0.5", "-p", "53:53/udp", "img"],
    ["run", "-c", "10", "--cpu-shares", "20", "--blkio-weight", "300", "img"],
    ["run", "-v", "/a:/b", "-v", "/c:/d:ro", "--tmpfs", "/t", "--mount", "type=tmpfs,dst=/m", "img"],
    ["run", "--init", "--read-only", "-u", "1000", "-w", "/tmp", "--hostname", "h", "--privileged", "img"],
    ["run", "--profile", "bench", "--security-opt", "seccomp=unconfined", "--cap-add", "NET_ADMIN", "img"],
    ["run", "--name", "a", "--name", "b", "--rm", "--rm", "img"],
    ["run", "--env=", "--name=", "img"],
    ["run", "--rootfs", "/r", "--", "--", "x"],
    ["run", "--tty", "-t", "-i", "--interactive", "img"],
    ["run", "-", "img"],
    ["run", "--device", "/dev/kmsg:r", "--device-read-bps", "/dev/sda:1mb", "--add-host", "db:10.0.0.5",
     "--dns", "9.9.9.9", "--dns-search", "x", "-l", "a=b", "--log-opt", "max-size=1m", "img"],
]

# command lines it must leave to argparse (which answers them, or fails, its own way)
DECLINED = [
    ["run", "-h"], ["run", "--help"], ["--version"], ["-h"], ["ps"], ["create", "img"],
    ["run", "--netw", "host", "img"],                  # an abbreviation
    ["--storage-driver", "bad", "run", "img"],          # not a choice
    ["--cgroup-manager", "x", "run", "img"],
    ["run", "--profile", "x", "img"],
    ["run", "--cpu-shares", "x", "img"],               # not a number
    ["run", "--pids-limit", "1e3", "img"],
    ["run", "--rm=1", "img"],                          # a flag with a value
    ["run", "-ie", "A=1", "img"], ["run", "-eA=1", "img"],  # joined short options with a value
    ["run", "--name", "-x", "img"], ["run", "--name"],  # a value missing
    ["--root", "-x", "run", "img"],
    ["run", "-1", "img"], ["run", "--nosuch", "img"], ["run", "-Z", "img"],
    ["--root", "/x"], ["-q"], [],
]


def argparse_result(argv):
    try:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            return vars(build_parser().parse_args(argv))
    except SystemExit as e:
        return f"exit {e.code}"


@pytest.mark.parametrize("argv", TAKEN, ids=" ".join)
def test_fast_parse_is_argparse(argv):
    fast = fastargs.parse(argv, "run", "verb", declare_globals, declare_run)
    assert fast is not None, argv
    assert vars(fast) == argparse_result(argv)


@pytest.mark.parametrize("argv", DECLINED, ids=" ".join)
def test_fast_parse_leaves_the_rest_to_argparse(argv):
    assert fastargs.parse(argv, "run", "verb", declare_globals, declare_run) is None


def test_fast_parse_takes_the_store_from_the_environment(monkeypatch):
    monkeypatch.setenv("PYRT_ROOT", "/somewhere")
    fast = fastargs.parse(["run", "img"], "run", "verb", declare_globals, declare_run)
    assert fast.root == "/somewhere" == argparse_result(["run", "img"])["root"]


def test_fast_parse_gives_fresh_lists():
    a = fastargs.parse(["run", "img"], "run", "verb", declare_globals, declare_run)
    a.cap_add.append("X")
    b = fastargs.parse(["run", "img"], "run", "verb", declare_globals, declare_run)
    assert b.cap_add == []


def test_an_option_it_cannot_read_makes_it_decline():
    """A `run` option declared in a way the fast parser does not know (another
    action, nargs) turns it off: argparse then parses every `run`."""
    def declare_more(p):
        declare_run(p)
        p.add_argument("--pair", nargs=2)
    assert fastargs.parse(["run", "img"], "run", "verb", declare_globals, declare_more) is None
