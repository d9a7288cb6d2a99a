"""The image verbs of the `pyrt` CLI: images, load, save, import, tag, rmi, history,
system df, and the `pyrt image ...` group (ls, rm, tag, load, save, import, history,
inspect, prune, from-host, bootstrap). `register(subparsers)` adds them; each handler is
`func(args, runtime)`. Imports stay lazy: the CLI must start fast."""
from __future__ import annotations

import json
import sys
import time

from pyrt.cli.output import parse_filters, print_inspected, print_rows, table
from pyrt.errors import InvalidArgument, PyrtError
from pyrt.oci.image import rfc3339


# -- formatting -----------------------------------------------------------------------------

def human_size(n) -> str:
    """Sizes as docker prints them (powers of 1000, 3 significant digits)."""
    n = float(n or 0)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            if unit == "B":
                return f"{int(n)}B"
            return f"{n:.3g}{unit}"
        n /= 1000
    return f"{n:.3g}PB"


def ago(t) -> str:
    if not t:
        return "N/A"
    d = max(0.0, time.time() - t)
    for unit, s in (("years", 365 * 86400), ("months", 30 * 86400), ("weeks", 7 * 86400),
                    ("days", 86400), ("hours", 3600), ("minutes", 60)):
        if d >= 2 * s:
            return f"{int(d // s)} {unit} ago"
        if d >= s:
            return f"About a{'n' if unit == 'hours' else ''} {unit[:-1]} ago"
    return "Less than a second ago" if d < 1 else f"{int(d)} seconds ago"


def _table(rows, headers):
    return table(headers, rows)


def _json(obj):
    return json.dumps(obj, indent=2, ensure_ascii=False)


class Progress:
    """One stderr line, rewritten in place, when stderr is a terminal and not --quiet;
    silent otherwise. Call it as progress(phase, done, total)."""

    def __init__(self, args, label):
        self.enabled = not getattr(args, "quiet", False) and sys.stderr.isatty()
        self.label = label
        self._last = 0.0
        self._shown = False

    def __call__(self, phase, done, total):
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < 0.1 and done < total:
            return
        self._last = now
        if total:
            pct = min(100, int(done * 100 / total)) if total else 100
            width = 24
            fill = pct * width // 100
            bar = "#" * fill + "-" * (width - fill)
            if phase in ("copying", "writing"):
                text = f"{self.label}: {phase} [{bar}] {human_size(done)}/{human_size(total)}"
            else:
                text = f"{self.label}: {phase} [{bar}] {done}/{total}"
        else:
            text = f"{self.label}: {phase} {human_size(done)}"
        sys.stderr.write("\r\x1b[K" + text)
        sys.stderr.flush()
        self._shown = True

    def done(self):
        if self._shown:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
            self._shown = False


# -- handlers ----------------------------------------------------------------------------------

IMAGE_COLUMNS = [("Repository", "REPOSITORY"), ("Tag", "TAG"), ("ID", "IMAGE ID"), ("CreatedSince", "CREATED"),
                 ("Size", "SIZE")]


def cmd_images(args, rt):
    images = rt.images.list(all=args.all, name=args.name, filters=parse_filters(args.filter, rt.images.FILTERS))
    shared = rt.images.shared_sizes() if args.format == "json" else {}
    if args.only_ids:
        seen = set()
        for img in images:
            if img.id not in seen:
                seen.add(img.id)
                print(img.id if args.no_trunc else img.id[7:19])
        return 0
    rows = []
    for img in images:
        names = img.tags or ["<none>:<none>"]
        for name in names:
            repo, _, tag = name.rpartition(":")
            if args.name and img.tags and not _matches(name, args.name):
                continue
            rows.append((repo, tag, img))
    if args.format == "json":
        print(_json([{"Repository": repo, "Tag": tag, "ID": img.id, "Created": img.created,
                      "CreatedSince": ago(img.created), "Size": img.size,
                      "SharedSize": shared.get(img.id, 0), "Parent": img.parent or ""}
                     for repo, tag, img in rows]))
        return 0
    print_rows([{"Repository": repo, "Tag": tag, "ID": img.id if args.no_trunc else img.id[7:19],
                 "CreatedSince": ago(img.created), "CreatedAt": _rfc3339(img.created), "Size": human_size(img.size),
                 "Digest": img.manifest_digest} for repo, tag, img in rows], args.format, IMAGE_COLUMNS)
    if args.format != "table":
        return 0
    df = rt.images.df()
    n = len({img.id for _, _, img in rows})
    print(f"Total: {n} image{'s' if n != 1 else ''}, {human_size(df['images']['size'])} "
          f"on disk (shared layers counted once)")
    return 0


def _matches(name, pattern):
    # lazy: 1.7 ms of `pyrt ps` start-up (measured), for reference filters only
    from pyrt.images.catalog import _name_matches
    return _name_matches([name], pattern)


def cmd_load(args, rt):
    progress = Progress(args, "load")
    src = args.input
    try:
        if src is None or src == "-":
            if sys.stdin.isatty():
                raise InvalidArgument("load: give an archive with -i FILE|DIR (or pipe one on standard input)")
            images = rt.images.load(sys.stdin.buffer, progress=progress)
        else:
            images = rt.images.load(src, progress=progress)
    finally:
        progress.done()
    for img in images:
        names = img.loaded_tags if img.loaded_tags is not None else img.tags
        if names:
            for t in names:
                print(f"Loaded image: {t}")
        else:
            print(f"Loaded image ID: {img.id}")
    return 0


def cmd_save(args, rt):
    progress = Progress(args, "save")
    try:
        rt.images.save(args.images, args.output, format=args.save_format, progress=progress)
    finally:
        progress.done()
    return 0


def cmd_import(args, rt):
    repo = tag = None
    if args.reference:
        # lazy: 0.5 ms of `pyrt ps` start-up (measured)
        from pyrt.oci.reference import parse_reference
        r = parse_reference(args.reference)
        repo, tag = r.repository, r.tag
    progress = Progress(args, "import")
    try:
        src = args.source
        if src == "-":
            src = sys.stdin.buffer
        img = rt.images.import_image(src, repository=repo, tag=tag, changes=args.change,
                                     message=args.message, progress=progress)
    finally:
        progress.done()
    print(img.id)
    return 0


def cmd_from_host(args, rt):
    img = rt.images.from_host(args.name, args.paths, venv=args.venv, certs=args.certs, tzdata=args.tzdata)
    print(img.id)
    return 0


def cmd_bootstrap(args, rt):
    progress = Progress(args, "bootstrap")
    try:
        img = rt.images.bootstrap(args.name, suite=args.suite, include=args.include, variant=args.variant,
                                  mirror=args.mirror, components=args.components, progress=progress)
    finally:
        progress.done()
    print(img.id)
    return 0


def cmd_tag(args, rt):
    rt.images.tag(args.source, args.target)
    return 0


def cmd_rmi(args, rt):
    status = 0
    for ref in args.images:
        try:
            for item in rt.images.remove(ref, force=args.force, noprune=args.no_prune):
                for k, v in item.items():
                    print(f"{k}: {v}")
        except PyrtError as e:
            if len(args.images) == 1:
                raise
            print(f"pyrt: {e}", file=sys.stderr)
            status = 1
    return status


def confirm(what: str, force: bool) -> bool:
    """True when the user means it: -f given, or yes at the prompt on a terminal
    (without a terminal, an error asking for -f)."""
    if force:
        return True
    if not sys.stdin.isatty():
        raise InvalidArgument(f"{what}: confirm with -f/--force")
    sys.stderr.write(f"WARNING! {what[0].upper() + what[1:]}.\nAre you sure you want to continue? [y/N] ")
    sys.stderr.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def cmd_prune(args, rt):
    what = "all images without at least one container associated to them" if args.all else "all dangling images"
    if not confirm(f"image prune removes {what}", args.force):
        return 0
    report_prune(rt.images.prune(all=args.all))
    return 0


def report_prune(r: dict) -> None:
    """What a prune removed, as docker prints it."""
    if r.get("ContainersDeleted"):
        print("Deleted Containers:\n" + "\n".join(r["ContainersDeleted"]) + "\n")
    if r.get("NetworksDeleted"):
        print("Deleted Networks:\n" + "\n".join(r["NetworksDeleted"]) + "\n")
    if r.get("VolumesDeleted"):
        print("Deleted Volumes:\n" + "\n".join(r["VolumesDeleted"]) + "\n")
    if r.get("ImagesDeleted"):
        print("Deleted Images:")
        for item in r["ImagesDeleted"]:
            for k, v in item.items():
                print(f"{k.lower()}: {v}")
        print()
    print(f"Total reclaimed space: {human_size(r['SpaceReclaimed'])}")


def cmd_history(args, rt):
    rows = rt.images.history(args.image)
    if args.format == "json":
        print(_json(rows))
        return 0
    if args.only_ids:
        for r in rows:
            print(r["Id"] if args.no_trunc or r["Id"] == "<missing>" else r["Id"][7:19])
        return 0
    table = []
    for r in rows:
        created_by = r["CreatedBy"].replace("\n", " ")
        if not args.no_trunc and len(created_by) > 45:
            created_by = created_by[:44] + "…"
        rid = r["Id"] if args.no_trunc or r["Id"] == "<missing>" else r["Id"][7:19]
        table.append((rid, ago(r["Created"]), created_by, human_size(r["Size"]), r["Comment"]))
    print(_table(table, ("IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT")))
    return 0


def inspect_images(rt, refs) -> list:
    """docker image inspect: the attrs of each image (for `pyrt inspect` too)."""
    return [rt.images.get(ref).attrs for ref in refs]


def cmd_inspect(args, rt):
    out, status = [], 0
    for ref in args.images:
        try:
            out.append(rt.images.get(ref).attrs)
        except PyrtError as e:
            if len(args.images) == 1:
                raise
            print(f"pyrt: {e}", file=sys.stderr)
            status = 1
    print_inspected(out, args.format)
    return status


def cmd_df(args, rt):
    df = rt.df()
    if args.format == "json":
        print(_json(df))
        return 0
    im, co, vo = df["images"], df.get("containers", {}), df.get("volumes", {})

    def pct(part, whole):
        return f" ({int(part * 100 / whole)}%)" if whole else ""
    rows = [("Images", im["count"], im["active"], human_size(im["size"]),
             human_size(im["reclaimable"]) + pct(im["reclaimable"], im["size"])),
            ("Containers", co.get("count", 0), co.get("running", 0), human_size(co.get("size", 0)),
             human_size(co.get("reclaimable", co.get("size", 0)))),
            ("Local Volumes", vo.get("count", 0), vo.get("active", 0), human_size(vo.get("size", 0)),
             human_size(vo.get("reclaimable", 0)))]
    print(_table(rows, ("TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE")))
    if args.verbose:
        print()
        print(f"Layers: {df['layers']['count']} unpacked, {human_size(df['layers']['size'])}; "
              f"stored blobs {human_size(df['layers']['blobs_size'])}")
        shared = rt.images.shared_sizes()
        table = []
        for img in rt.images.list(all=True):
            for name in img.tags or ["<none>:<none>"]:
                repo, _, tag = name.rpartition(":")
                table.append((repo, tag, img.id[7:19], ago(img.created), human_size(img.size),
                              human_size(shared.get(img.id, 0)), human_size(img.size - shared.get(img.id, 0))))
        print(_table(table, ("REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE", "SHARED SIZE", "UNIQUE SIZE")))
    return 0


# -- parsers ---------------------------------------------------------------------------------------

def _add_images(p):
    p.add_argument("-a", "--all", action="store_true", help="also intermediate images")
    p.add_argument("-q", "--quiet", dest="only_ids", action="store_true", help="only image ids")
    p.add_argument("--no-trunc", action="store_true", help="full image ids")
    p.add_argument("-f", "--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="dangling=true|false, reference=PATTERN, label=KEY[=VALUE], before=IMAGE, since=IMAGE")
    p.add_argument("--format", default="table", metavar="table|json|TEMPLATE",
                   help="e.g. '{{.Repository}}:{{.Tag}}'")
    p.add_argument("name", nargs="?", metavar="REPOSITORY[:TAG]", help="only images of this name")
    p.set_defaults(func=cmd_images)


def _add_load(p):
    p.add_argument("-i", "--input", metavar="FILE|DIR",
                   help="docker-archive or OCI layout (tar or directory); default standard input")
    p.set_defaults(func=cmd_load)


def _add_save(p):
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="a tar file, or a directory (OCI layout) when it exists or ends with '/'")
    p.add_argument("--format", dest="save_format", choices=("oci", "docker-archive"), default="oci")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.set_defaults(func=cmd_save)


def _add_import(p):
    p.add_argument("-c", "--change", action="append", default=[], metavar="INSTRUCTION",
                   help="apply a Dockerfile instruction: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, STOPSIGNAL, "
                        "USER, VOLUME, WORKDIR")
    p.add_argument("-m", "--message", help="the history comment")
    p.add_argument("source", metavar="FILE|DIR|-", help="a rootfs tar (plain or compressed) or directory")
    p.add_argument("reference", nargs="?", metavar="REPOSITORY[:TAG]")
    p.set_defaults(func=cmd_import)


def _add_tag(p):
    p.add_argument("source", metavar="SOURCE_IMAGE[:TAG]")
    p.add_argument("target", metavar="TARGET_IMAGE[:TAG]")
    p.set_defaults(func=cmd_tag)


def _add_rmi(p):
    p.add_argument("-f", "--force", action="store_true",
                   help="remove an image with several names; untag one a container uses")
    p.add_argument("--no-prune", action="store_true", help="keep untagged parents")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.set_defaults(func=cmd_rmi)


def _add_history(p):
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("-q", "--quiet", dest="only_ids", action="store_true", help="only image ids")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.add_argument("image", metavar="IMAGE")
    p.set_defaults(func=cmd_history)


def _print_object(obj: dict, fmt: str) -> None:
    """One object as JSON (--format json) or through a template."""
    if fmt == "json":
        print(_json(obj))
    else:
        print_inspected([obj], fmt)


def cmd_info(args, rt):
    info = rt.info()
    if args.format:
        _print_object(info, args.format)
        return 0
    i = info
    lines = [("Server Version", i["ServerVersion"]), ("Storage Driver", i["Driver"]), ("Root Dir", i["DockerRootDir"]),
             ("Containers", f"{i['Containers']} (running {i['ContainersRunning']}, paused {i['ContainersPaused']}, "
                            f"stopped {i['ContainersStopped']})"),
             ("Images", i["Images"]), ("Volumes", i["Volumes"]),
             ("Cgroup Version", f"{i['CgroupVersion']} ({i['CgroupDriver']})"),
             ("Cgroup Controllers", " ".join(i["CgroupControllers"])),
             ("Security Options", ", ".join(i["SecurityOptions"]) or "none (pyrt built without libseccomp)"),
             ("Kernel Version", i["KernelVersion"]), ("Operating System", i["OperatingSystem"]),
             ("Architecture", i["Architecture"]), ("CPUs", i["NCPU"]),
             ("Total Memory", f"{i['MemTotal'] / 2**30:.1f}GiB"), ("Runtimes", " ".join(i["Runtimes"]))]
    for key, value in lines:
        print(f"{key}: {value}")
    return 0


def cmd_version(args, rt):
    v = rt.version()
    if args.format:
        _print_object(v, args.format)
        return 0
    for key in ("Version", "PythonVersion", "KernelVersion", "Os", "Arch"):
        print(f"{key}: {v[key]}")
    print(f"Seccomp: {'yes' if v['Seccomp'] else 'no'}")
    return 0


def cmd_system_prune(args, rt):
    what = ["all stopped containers", "all networks not used by at least one container",
            "all unused images" if args.all else "all dangling images",
            "the build cache and partial downloads"]
    if args.volumes:
        what.append("all volumes not used by at least one container")
    if not confirm("system prune removes " + ", ".join(what), args.force):
        return 0
    report_prune(rt.prune(images_all=args.all, volumes=args.volumes))
    return 0


def _add_prune(p):
    p.add_argument("-a", "--all", action="store_true", help="all unused images, not just dangling ones")
    p.add_argument("-f", "--force", action="store_true", help="do not ask for confirmation")
    p.set_defaults(func=cmd_prune)


def _add_inspect(p):
    p.add_argument("-f", "--format", metavar="TEMPLATE", help="e.g. '{{.Id}}' or '{{json .Config.Env}}'")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.set_defaults(func=cmd_inspect)


def _add_from_host(p):
    p.add_argument("name", metavar="NAME[:TAG]")
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help="host programs (their libraries come along; the first is the image's command), then "
                        "files or dirs; a Python gets its standard library and compiled modules")
    p.add_argument("--venv", metavar="DIR", help="a virtual environment's packages, at the same path "
                   "(its python is the command when no PATH is given)")
    certs = p.add_mutually_exclusive_group()
    certs.add_argument("--with-certs", dest="certs", action="store_const", const=True, default=None,
                       help="add the host's CA certificates (the default when the image has a Python)")
    certs.add_argument("--no-certs", dest="certs", action="store_const", const=False,
                       help="leave the CA certificates out")
    p.add_argument("--with-tzdata", dest="tzdata", action="store_true",
                   help="add the time zone database (/usr/share/zoneinfo)")
    p.set_defaults(func=cmd_from_host)


def _add_bootstrap(p):
    p.add_argument("name", metavar="NAME[:TAG]")
    p.add_argument("--suite", metavar="SUITE", help="the release (default: the host's, e.g. bookworm)")
    p.add_argument("--include", action="append", default=[], metavar="PKG[,PKG...]",
                   help="more packages (repeatable)")
    p.add_argument("--variant", default="minbase", metavar="VARIANT",
                   help="mmdebstrap's package set (default minbase, as debian:SUITE images)")
    p.add_argument("--mirror", metavar="URI|'deb ...'",
                   help="the package mirror (default: the one the host's apt uses)")
    p.add_argument("--components", action="append", default=None, metavar="C[,C...]",
                   help="archive components (default main)")
    p.set_defaults(func=cmd_bootstrap)


def register(subparsers) -> dict:
    """Adds the image verbs. Returns {"image": ..., "system": ...}: the subparsers of
    those groups, for other modules to add verbs to."""
    _add_images(subparsers.add_parser("images", help="list images"))
    _add_load(subparsers.add_parser("load", help="load images from a docker-archive or OCI layout"))
    _add_save(subparsers.add_parser("save", help="save images as an OCI layout or docker-archive"))
    _add_import(subparsers.add_parser("import", help="make a one-layer image of a rootfs tar or directory"))
    _add_tag(subparsers.add_parser("tag", help="give an image a name"))
    _add_rmi(subparsers.add_parser("rmi", help="remove images"))
    _add_history(subparsers.add_parser("history", help="show an image's layers and how they were made"))

    image = subparsers.add_parser("image", help="manage images")
    isub = image.add_subparsers(dest="image_verb", metavar="COMMAND", parser_class=type(image))
    _add_images(isub.add_parser("ls", aliases=["list"], help="list images"))
    _add_rmi(isub.add_parser("rm", aliases=["remove"], help="remove images"))
    _add_tag(isub.add_parser("tag", help="give an image a name"))
    _add_load(isub.add_parser("load", help="load images from a docker-archive or OCI layout"))
    _add_save(isub.add_parser("save", help="save images as an OCI layout or docker-archive"))
    _add_import(isub.add_parser("import", help="make a one-layer image of a rootfs tar or directory"))
    _add_history(isub.add_parser("history", help="show an image's layers"))
    _add_inspect(isub.add_parser("inspect", help="an image's details (JSON)"))
    _add_prune(isub.add_parser("prune", help="remove unused images"))
    _add_from_host(isub.add_parser("from-host", help="an image of host programs and their shared libraries"))
    _add_bootstrap(isub.add_parser("bootstrap", help="a Debian base image from the host's package mirror "
                                                     "(mmdebstrap)"))
    image.set_defaults(func=lambda args, rt: (image.print_help(), 2)[1])

    system = subparsers.add_parser("system", help="store-wide information")
    ssub = system.add_subparsers(dest="system_verb", metavar="COMMAND", parser_class=type(system))
    df = ssub.add_parser("df", help="disk use of images, containers and volumes")
    df.add_argument("--format", choices=("table", "json"), default="table")
    df.add_argument("-v", "--verbose", action="store_true", help="per-image sizes")
    df.set_defaults(func=cmd_df)
    for group in (subparsers, ssub):
        p = group.add_parser("info", help="the store, its contents and what this host offers")
        p.add_argument("-f", "--format", metavar="json|TEMPLATE", help="e.g. '{{.Driver}}'")
        p.set_defaults(func=cmd_info)
    p = subparsers.add_parser("version", help="pyrt's version and the host's")
    p.add_argument("-f", "--format", metavar="json|TEMPLATE", help="e.g. '{{.Version}}'")
    p.set_defaults(func=cmd_version)
    p = ssub.add_parser("prune", help="remove stopped containers, dangling (-a: unused) images, "
                                      "build cache and (--volumes) unused volumes")
    p.add_argument("-a", "--all", action="store_true", help="all unused images, not just dangling ones")
    p.add_argument("--volumes", action="store_true", help="also unused volumes")
    p.add_argument("-f", "--force", action="store_true", help="do not ask for confirmation")
    p.set_defaults(func=cmd_system_prune)
    system.set_defaults(func=lambda args, rt: (system.print_help(), 2)[1])
    return {"image": isub, "system": ssub}


def _rfc3339(t):
    return rfc3339(t)
