"""`pyrt volume create|ls|inspect|rm|prune`."""
from __future__ import annotations

import json

from pyrt.cli.common import for_each
from pyrt.cli.images import confirm, report_prune
from pyrt.cli.output import parse_filters, print_inspected, print_rows


def cmd_create(args, rt):
    labels = dict(label.partition("=")[::2] for label in args.label)
    print(rt.volumes.create(args.name, driver=args.driver, labels=labels).name)


def cmd_ls(args, rt):
    filters = parse_filters(args.filter, rt.volumes.FILTERS)
    if args.dangling:
        filters["dangling"] = [True]
    vols = rt.volumes.list(filters=filters)
    if args.only_names:
        for v in vols:
            print(v.name)
    elif args.format == "json":
        print(json.dumps([v.attrs for v in vols], indent=2))
    else:
        print_rows([{"Driver": "local", "Name": v.name, "Mountpoint": v.mountpoint,
                     "Labels": v.attrs.get("Labels") or {}} for v in vols], args.format,
                   [("Driver", "DRIVER"), ("Name", "VOLUME NAME")])


def cmd_inspect(args, rt):
    out = []
    status = for_each(args.volumes, lambda name: out.append(rt.volumes.get(name).attrs))
    print_inspected(out, args.format)
    return status


def cmd_rm(args, rt):
    def remove(name):
        rt.volumes.get(name).remove()
        print(name)
    return for_each(args.volumes, remove, missing_ok=args.force)


def cmd_prune(args, rt):
    if not confirm("volume prune removes all volumes not used by at least one container", args.force):
        return 0
    report_prune(rt.volumes.prune(all=True))


def register(sub):
    v = sub.add_parser("volume", help="manage volumes")
    vs = v.add_subparsers(dest="volume_verb", metavar="COMMAND")
    v.set_defaults(func=lambda args, rt: v.print_help() or 2)
    p = vs.add_parser("create", help="create a volume")
    p.add_argument("--driver", default="local")
    p.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("name", nargs="?")
    p.set_defaults(func=cmd_create)
    p = vs.add_parser("ls", aliases=["list"], help="list volumes")
    p.add_argument("-q", "--quiet", action="store_true", dest="only_names")
    p.add_argument("--format", default="table", metavar="table|json|TEMPLATE", help="e.g. '{{.Name}}'")
    p.add_argument("-f", "--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="dangling=true|false, name=SUBSTRING, label=KEY[=VALUE]")
    p.add_argument("--dangling", action="store_true", help="only volumes no container uses")
    p.set_defaults(func=cmd_ls)
    p = vs.add_parser("inspect", help="show volumes as JSON")
    p.add_argument("-f", "--format", metavar="TEMPLATE", help="e.g. '{{.Mountpoint}}'")
    p.add_argument("volumes", nargs="+")
    p.set_defaults(func=cmd_inspect)
    p = vs.add_parser("rm", aliases=["remove"], help="remove volumes (refused while a container uses one)")
    p.add_argument("-f", "--force", action="store_true", help="no error for volumes that do not exist")
    p.add_argument("volumes", nargs="+")
    p.set_defaults(func=cmd_rm)
    p = vs.add_parser("prune", help="remove every volume no container uses")
    p.add_argument("-f", "--force", action="store_true", help="do not ask for confirmation")
    p.set_defaults(func=cmd_prune)
