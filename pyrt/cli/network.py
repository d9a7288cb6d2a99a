"""`pyrt network create|ls|inspect|rm|prune|connect|disconnect`."""
from __future__ import annotations


from pyrt.cli.common import for_each, split_kv as _split_kv
from pyrt.cli.images import confirm
from pyrt.cli.output import parse_filters, print_inspected, print_rows
from pyrt.errors import InvalidArgument


def cmd_create(args, rt):
    if args.gateway and not args.subnet:
        raise InvalidArgument("--gateway needs --subnet")
    ipam = {"Config": [{"Subnet": args.subnet, **({"Gateway": args.gateway} if args.gateway else {})}]} \
        if args.subnet else None
    options = {}
    for item in args.opt:
        key, eq, value = item.partition("=")
        if not eq:
            raise InvalidArgument(f"invalid --opt {item!r}: use KEY=VALUE")
        options[key] = value
    net = rt.networks.create(args.name, driver=args.driver, ipam=ipam, internal=args.internal,
                             labels=_split_kv(args.label, "label") if args.label else None, options=options or None)
    print(net.id)


def _row(n) -> dict:
    a = n.attrs
    return {"ID": n.short_id, "Name": n.name, "Driver": a["Driver"], "Scope": "local",
            "Internal": str(a["Internal"]).lower(), "Subnet": (a["IPAM"]["Config"] or [{}])[0].get("Subnet", ""),
            "Labels": ",".join(f"{k}={v}" for k, v in sorted(a["Labels"].items())), "CreatedAt": a["Created"]}


def cmd_ls(args, rt):
    filters = parse_filters(args.filter, rt.networks.FILTERS)
    nets = rt.networks.list(filters=filters)
    if args.quiet:
        for n in nets:
            print(n.id if args.no_trunc else n.short_id)
        return
    rows = [_row(n) for n in nets]
    if args.no_trunc:
        for r, n in zip(rows, nets):
            r["ID"] = n.id
    print_rows(rows, args.format, [("ID", "NETWORK ID"), ("Name", "NAME"), ("Driver", "DRIVER"),
                                   ("Scope", "SCOPE")])


def cmd_inspect(args, rt):
    out = []
    status = for_each(args.networks, lambda ref: out.append(rt.networks.get(ref).attrs))
    print_inspected(out, args.format)
    return status


def cmd_rm(args, rt):
    def remove(ref):
        rt.networks.get(ref).remove()
        print(ref)
    return for_each(args.networks, remove, missing_ok=args.force)


def cmd_prune(args, rt):
    if not confirm("network prune removes all custom networks not used by at least one container", args.force):
        return 0
    r = rt.networks.prune(filters=parse_filters(args.filter, ("label",)) or None)
    if r["NetworksDeleted"]:
        print("Deleted Networks:")
        for name in r["NetworksDeleted"]:
            print(name)


def cmd_connect(args, rt):
    net = rt.networks.get(args.network)
    net.connect(rt.containers.get(args.container), aliases=args.alias or None, ipv4_address=args.ip)


def cmd_disconnect(args, rt):
    net = rt.networks.get(args.network)
    net.disconnect(rt.containers.get(args.container), force=args.force)


def register(sub):
    g = sub.add_parser("network", help="manage networks")
    gs = g.add_subparsers(dest="network_verb", metavar="COMMAND")
    g.set_defaults(func=lambda args, rt: g.print_help() or 2)
    p = gs.add_parser("create", help="create a bridge network (its containers reach each other by name)")
    p.add_argument("-d", "--driver", default="bridge", help="bridge (the only one)")
    p.add_argument("--subnet", metavar="CIDR", help="its IPv4 subnet (default: a free /24 of 10.80.0.0/13)")
    p.add_argument("--gateway", metavar="IP", help="the host's address on it (default: the subnet's first)")
    p.add_argument("--internal", action="store_true", help="no way out: no route, no NAT, nothing forwarded")
    p.add_argument("-l", "--label", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("-o", "--opt", action="append", default=[], metavar="KEY=VALUE",
                   help="com.docker.network.bridge.name=NAME: the bridge's interface name")
    p.add_argument("name")
    p.set_defaults(func=cmd_create)
    p = gs.add_parser("ls", aliases=["list"], help="list networks")
    p.add_argument("-q", "--quiet", action="store_true", help="only ids")
    p.add_argument("--no-trunc", action="store_true", help="full ids")
    p.add_argument("--format", default="table", metavar="table|json|TEMPLATE", help="e.g. '{{.Name}}'")
    p.add_argument("-f", "--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="name, id, label, driver, type=custom|builtin, dangling=true")
    p.set_defaults(func=cmd_ls)
    p = gs.add_parser("inspect", help="show networks as JSON")
    p.add_argument("-f", "--format", metavar="TEMPLATE", help="e.g. '{{.IPAM.Config}}'")
    p.add_argument("networks", nargs="+")
    p.set_defaults(func=cmd_inspect)
    p = gs.add_parser("rm", aliases=["remove"], help="remove networks (refused while a container uses one)")
    p.add_argument("-f", "--force", action="store_true", help="no error for networks that do not exist")
    p.add_argument("networks", nargs="+")
    p.set_defaults(func=cmd_rm)
    p = gs.add_parser("prune", help="remove every custom network no container uses")
    p.add_argument("-f", "--force", action="store_true", help="do not ask for confirmation")
    p.add_argument("--filter", action="append", default=[], metavar="label=KEY[=VALUE]")
    p.set_defaults(func=cmd_prune)
    p = gs.add_parser("connect", help="connect a container to a network (at once if it runs)")
    p.add_argument("--alias", action="append", default=[], metavar="NAME", help="another name on this network")
    p.add_argument("--ip", metavar="ADDRESS", help="its IPv4 address on this network")
    p.add_argument("network")
    p.add_argument("container")
    p.set_defaults(func=cmd_connect)
    p = gs.add_parser("disconnect", help="disconnect a container from a network (at once if it runs)")
    p.add_argument("-f", "--force", action="store_true", help="also when undoing its wiring fails")
    p.add_argument("network")
    p.add_argument("container")
    p.set_defaults(func=cmd_disconnect)
