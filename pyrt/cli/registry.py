"""The registry verbs of the `pyrt` CLI: pull, push, login, logout. `register(sub)`
adds them; each handler is `func(args, runtime)`. pyrt.registry (and httpx) are
imported only when one of them runs."""
from __future__ import annotations

import argparse
import sys

from pyrt.errors import InvalidArgument


def _bool(value: str) -> bool:
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def _add_tls_verify(p):
    p.add_argument("--tls-verify", type=_bool, nargs="?", const=True, default=None, metavar="BOOL",
                   help="require HTTPS with a verified certificate (--tls-verify=false: also plain HTTP, "
                        "as for localhost and the insecure-registries of /etc/pyrt/registries.json)")


def _progress(args):
    # lazy: 6 ms of `pyrt ps` start-up (measured), for pull and push only
    from pyrt.registry.progress import LayerProgress
    return LayerProgress(quiet=args.quiet or args.verb_quiet)


def cmd_pull(args, rt):
    progress = _progress(args)
    try:
        img = rt.images.pull(args.reference, platform=args.platform, tls_verify=args.tls_verify,
                             progress=progress)
    finally:
        progress.close()
    print(img.id)
    return 0


def cmd_push(args, rt):
    progress = _progress(args)
    try:
        rt.images.push(args.image, destination=args.destination, tls_verify=args.tls_verify,
                       progress=progress)
    finally:
        progress.close()
    return 0


def _ask(prompt: str, secret: bool) -> str:
    if not sys.stdin.isatty():
        what = "a password with -p or --password-stdin" if secret else "a user name with -u"
        raise InvalidArgument(f"login: give {what} (standard input is not a terminal)")
    if secret:
        # lazy: 0.25 ms of `pyrt ps` start-up (measured), for a prompt only
        import getpass
        return getpass.getpass(prompt)
    return input(prompt)


def cmd_login(args, rt):
    # lazy: 6 ms of `pyrt ps` start-up (measured), for login only
    from pyrt.registry import auth, login
    if args.password is not None and args.password_stdin:
        raise InvalidArgument("login: give -p or --password-stdin, not both")
    user = args.username or _ask("Username: ", secret=False)
    if args.password_stdin:
        password = sys.stdin.read().rstrip("\r\n")
    else:
        password = args.password if args.password is not None else _ask("Password: ", secret=True)
    if not user or not password:
        raise InvalidArgument("login: the user name and the password must not be empty")
    host = login(args.registry, user, password, tls_verify=args.tls_verify)
    auth.save(host, user, password)
    print("Login Succeeded!")
    return 0


def cmd_logout(args, rt):
    # lazy: 6 ms of `pyrt ps` start-up (measured), for logout only
    from pyrt.registry import auth
    host = auth.host_of(args.registry)
    if auth.remove(host):
        print(f"Removing login credentials for {host}")
    else:
        print(f"Not logged in to {host}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("pull", help="pull an image from a registry")
    p.add_argument("--platform", metavar="OS/ARCH[/VARIANT]", help="the image of a multi-platform index "
                   "to pull (default linux/amd64)")
    _add_tls_verify(p)
    p.add_argument("-q", "--quiet", dest="verb_quiet", action="store_true", help="print only the image id")
    p.add_argument("reference", metavar="NAME[:TAG|@DIGEST]")
    p.set_defaults(func=cmd_pull)

    p = sub.add_parser("push", help="push an image to a registry")
    _add_tls_verify(p)
    p.add_argument("-q", "--quiet", dest="verb_quiet", action="store_true", help="no progress output")
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("destination", nargs="?", metavar="DESTINATION",
                   help="host[:port]/name[:tag] (default: IMAGE's own name, which must name a registry)")
    p.set_defaults(func=cmd_push)

    p = sub.add_parser("login", help="log in to a registry (credentials checked, then saved)")
    p.add_argument("-u", "--username")
    p.add_argument("-p", "--password")
    p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    _add_tls_verify(p)
    p.add_argument("registry", nargs="?", default="docker.io", metavar="REGISTRY")
    p.set_defaults(func=cmd_login)

    p = sub.add_parser("logout", help="remove the saved credentials of a registry")
    p.add_argument("registry", metavar="REGISTRY")
    p.set_defaults(func=cmd_logout)
