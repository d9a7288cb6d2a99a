"""`pyrt build`: a Dockerfile run step by step, as docker's classic builder does.

Each instruction after FROM makes an image whose parent is the previous step's:
RUN runs the command in a container of that image (with the network of a default
`pyrt run`: the default network, a namespace of its own behind a bridge with NAT,
so a Dockerfile reaches the outside but not the host's loopback services;
network_mode="host", `--network host`, is the explicit opt-in to the host's own)
and commits its changes as a layer; COPY, ADD and a WORKDIR that does not exist yet
write their files into a fresh directory committed as a layer; the other
instructions make a config-only image (same layers, an `empty_layer` history
entry). Only the final image gets the tags, once every step has succeeded.

The cache (table `build_cache` of the store): a step's key is the sha256 of its
parent image id, its text after substitution, the build args in effect and, for
COPY and ADD, a hash of its sources' names, modes and contents. A step whose key
is known reuses the image without running anything.

Stages are built in order up to --target (or the last one), as the classic
builder does. HEALTHCHECK is recorded in the config (pyrt does not run health
checks); ONBUILD triggers are recorded, and run right after a FROM of their image.
Not supported: heredocs, RUN --mount.
"""
from __future__ import annotations

import collections
import hashlib
import json
import os
import posixpath
import re
import stat
import time

from pyrt import compression
from pyrt.dockerfile.context import ContextTree, IgnoreRules, ImageTree, Writer, digest_sources
from pyrt.dockerfile.parser import expand, expand_words, json_form, parse, split_raw
from pyrt.errors import BuildError, ImageNotFound, PyrtError
from pyrt.images import archive
from pyrt.launch.process import DEVNULL, PIPE, STDOUT
from pyrt.launch.userdb import resolve_user
from pyrt.oci.reference import parse_reference
from pyrt.store.commit import write_layer_blob
from pyrt.store.layers import rmtree
from pyrt.store.unpack import unpack_layer

DEFAULT_SHELL = ["/bin/sh", "-c"]
# build args docker accepts without an ARG line (never reported as unused)
PREDEFINED_ARGS = {"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
                   "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"}
_ARG_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_STAGE_NAME = re.compile(r"[a-z][a-z0-9_.-]*")
_PORT = re.compile(r"(\d+)(?:-(\d+))?(?:/(tcp|udp|sctp))?")
_TAIL = 10  # output lines of a failing RUN kept for the error


class _Stage:
    """What a stage has built so far."""

    def __init__(self, index, name, instructions):
        self.index, self.name, self.instructions = index, name, instructions
        self.image_id = None       # None: nothing yet (FROM scratch)
        self.config = {}           # the image config's "config" section
        self.args = {}             # build args declared in the stage: name -> value
        self.shell = list(DEFAULT_SHELL)
        self.cmd_set = False       # a CMD of this stage (ENTRYPOINT then keeps it)


class Builder:
    def __init__(self, runtime, path, dockerfile="Dockerfile", tags=(), buildargs=None, nocache=False,
                 target=None, quiet=False, rm=True, log=None, network_mode=None):
        self.rt, self.images = runtime, runtime.images
        self.network_mode = _network_mode(network_mode)
        self.context_dir = os.path.abspath(os.fspath(path))
        if not os.path.isdir(self.context_dir):
            raise BuildError(f"build context {path}: not a directory")
        dockerfile = os.path.join(self.context_dir, os.fspath(dockerfile))
        self.filename = os.path.basename(dockerfile)
        try:
            with open(dockerfile, encoding="utf-8") as f:
                self.text = f.read()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise BuildError(f"{dockerfile}: no such Dockerfile") from None
        self.tags = [_parse_tag(t) for t in ([tags] if isinstance(tags, str) else tags or ())]
        self.buildargs = _check_buildargs(buildargs or {})
        self.nocache, self.target, self.quiet, self.rm = nocache, target, quiet, rm
        self.output, self._callback = [], log
        self.context = ContextTree(self.context_dir, IgnoreRules.load(self.context_dir))
        self.used_args = set()
        self.step = self.nsteps = 0

    # -- driver ------------------------------------------------------------------------------

    def build(self):
        """Runs the build; returns the final Image (tagged)."""
        instructions, self.escape = parse(self.text, self.filename)
        meta, stages = self._stages(instructions)
        last = self._target_index(stages)
        stages = stages[:last + 1]
        self.nsteps = len(meta) + sum(len(s.instructions) for s in stages)
        self.meta_env = {}
        for ins in meta:
            self._step(ins, self._declare_args, ins, self.meta_env, self.meta_env)
        self.stages = []
        for stage in stages:
            self.stages.append(stage)
            for ins in stage.instructions:
                self._step(ins, getattr(self, "_" + ins.cmd.lower()), stage, ins)
        final = stages[-1].image_id
        if final is None:
            raise BuildError(f"{self.filename}: nothing was built (FROM scratch without instructions)")
        unused = sorted(set(self.buildargs) - self.used_args - PREDEFINED_ARGS)
        if unused:
            self._log(f"[Warning] One or more build-args [{' '.join(unused)}] were not consumed\n")
        for repo, tag in self.tags:
            self.images.tag(final, repo, tag)
        self._log(f"Successfully built {final[7:19]}\n")
        for repo, tag in self.tags:
            self._log(f"Successfully tagged {repo}:{tag}\n")
        if self.quiet:
            self._emit(final + "\n")
        return self.images.get(final)

    def _stages(self, instructions):
        """(the ARGs before the first FROM, [_Stage])."""
        if not instructions:
            raise BuildError(f"{self.filename}: the Dockerfile has no instructions")
        meta = []
        for ins in instructions:
            if ins.cmd == "FROM":
                break
            if ins.cmd != "ARG":
                raise BuildError(f"{self.filename}:{ins.line}: {ins.cmd} before any FROM: a Dockerfile "
                                 "must start with FROM (ARGs may come before it)")
            meta.append(ins)
        else:
            raise BuildError(f"{self.filename}: no FROM instruction")
        stages = []
        for ins in instructions[len(meta):]:
            if ins.cmd == "FROM":
                stages.append(_Stage(len(stages), None, []))
            stages[-1].instructions.append(ins)
        return meta, stages

    def _target_index(self, stages) -> int:
        if self.target is None:
            return len(stages) - 1
        for stage in stages:
            words = split_raw(stage.instructions[0].args, self.escape)
            if len(words) == 3 and words[1].lower() == "as" and words[2].lower() == self.target.lower():
                return stage.index
        raise BuildError(f"target stage {self.target!r} could not be found in {self.filename}")

    def _step(self, ins, handler, *args):
        self.step += 1
        self._log(f"STEP {self.step}/{self.nsteps}: {ins.original}\n")
        try:
            handler(*args)
        except (PyrtError, OSError) as e:
            raise self._located(ins, e) from e

    def _located(self, ins, e) -> BuildError:
        msg = str(e)
        if isinstance(e, OSError) and not isinstance(e, PyrtError) and e.strerror:
            msg = f"{e.strerror}: {e.filename}" if e.filename else e.strerror
        if isinstance(e, BuildError) and msg.startswith(self.filename + ":"):
            return e
        return BuildError(f"{self.filename}:{ins.line}: {ins.cmd}: {msg}", getattr(e, "output", ()))

    def _log(self, text):
        if not self.quiet:
            self._emit(text)

    def _emit(self, text):
        item = {"stream": text}
        self.output.append(item)
        if self._callback is not None:
            self._callback(item)

    # -- steps ---------------------------------------------------------------------------------

    def _vars(self, stage) -> dict:
        """What `$NAME` means in the stage: its build args, overridden by its ENV."""
        env = dict(stage.args)
        for item in stage.config.get("Env") or ():
            k, _, v = item.partition("=")
            env[k] = v
        return env

    def _commit_step(self, stage, text, make, key_extra=None):
        """Ends a step: the image the cache has for it, else make() (a new Image)."""
        key = hashlib.sha256(json.dumps(
            [stage.image_id or "", text, key_extra, sorted(stage.args.items())]
        ).encode()).hexdigest()
        db = self.rt.store.db
        row = None if self.nocache else db.query_one("SELECT image_id FROM build_cache WHERE key=?", (key,))
        if row is not None:
            image_id = row["image_id"]
            self._log(" ---> Using cache (CACHED)\n")
        else:
            image_id = make().id
            with db.transaction() as tx:
                tx.execute("INSERT OR REPLACE INTO build_cache (key, parent, image_id, created) VALUES (?,?,?,?)",
                           (key, stage.image_id, image_id, time.time()))
        config = db.query_one("SELECT config FROM images WHERE id=?", (image_id,))["config"]
        stage.image_id, stage.config = image_id, json.loads(config).get("config") or {}
        self._log(f" ---> {image_id[7:19]}\n")

    def _config_step(self, stage, text, changes, author=None):
        """A step that only changes the config: an image with the parent's layers."""
        self._commit_step(stage, text, lambda: self.images.create(
            stage.image_id, None, config_changes=changes, created_by=text, author=author))

    def _layers(self, stage) -> list[str]:
        """The stage image's snapshot dirs, top-most first."""
        if stage.image_id is None:
            return []
        return list(reversed(self.images.get(stage.image_id).layer_paths))

    def _from(self, stage, ins):
        words = expand_words(ins.args, self.meta_env, self.escape)
        if len(words) == 3 and words[1].lower() == "as":
            stage.name = words[2].lower()
            if not _STAGE_NAME.fullmatch(stage.name):
                raise BuildError(f"invalid stage name {words[2]!r}")
        elif len(words) != 1:
            raise BuildError("FROM takes an image and optionally AS NAME")
        ref = words[0]
        earlier = self._stage_named(ref, stage)
        if earlier is not None:
            stage.image_id, stage.config = earlier.image_id, dict(earlier.config)
            stage.shell = list(earlier.shell)
        elif ref.lower() != "scratch":
            img = self._base_image(ref)
            stage.image_id, stage.config = img.id, (img.config.get("config") or {})
            stage.shell = list(stage.config.get("Shell") or DEFAULT_SHELL)
        if stage.image_id is not None:
            self._log(f" ---> {stage.image_id[7:19]}\n")
            self._run_triggers(stage)

    def _base_image(self, ref):
        """A FROM image: the store's, else pulled (as docker build does)."""
        try:
            return self.images.get(ref)
        except ImageNotFound:
            pass
        self._log(f"Pulling {ref} (not in the store)\n")
        try:
            return self.images.pull(ref)
        except PyrtError as e:
            raise BuildError(f"image {ref!r} is not in the store and could not be pulled: {e}") from None

    def _stage_named(self, ref, current):
        for s in self.stages:
            if s is not current and s.name is not None and s.name == ref.lower():
                return s
        return None

    def _arg(self, stage, ins):
        self._declare_args(ins, stage.args, self._vars(stage))
        self._config_step(stage, "ARG " + ins.args, {})

    def _declare_args(self, ins, into, env):
        for word in split_raw(ins.args, self.escape):
            name, eq, default = word.partition("=")
            if not _ARG_NAME.fullmatch(name):
                raise BuildError(f"invalid name {name!r}")
            self.used_args.add(name)
            if name in self.buildargs:
                into[name] = self.buildargs[name]
            elif eq:
                into[name] = expand(default, env, self.escape)
            elif name in self.meta_env:  # inside a stage, `ARG NAME` takes the global ARG's value
                into[name] = self.meta_env[name]

    def _env(self, stage, ins):
        pairs = self._pairs(stage, ins)
        self._config_step(stage, "ENV " + " ".join(f"{k}={v}" for k, v in pairs),
                          {"Env": [f"{k}={v}" for k, v in pairs]})

    def _label(self, stage, ins):
        pairs = self._pairs(stage, ins)
        self._config_step(stage, "LABEL " + " ".join(f"{k}={v}" for k, v in pairs), {"Labels": dict(pairs)})

    def _pairs(self, stage, ins) -> list:
        """`K=V K2="v 2"`, or the old `K value` form: the pairs, expanded with the
        variables as they were before this instruction."""
        env = self._vars(stage)
        words = split_raw(ins.args, self.escape)
        if "=" not in words[0]:
            m = re.fullmatch(r"(\S+)\s+(.+)", ins.args, re.S)
            if not m:
                raise BuildError(f"{words[0]} needs a value ({words[0]}=VALUE)")
            return [(expand(m.group(1), env, self.escape), expand(m.group(2), env, self.escape))]
        pairs = []
        for w in words:
            key, eq, value = w.partition("=")
            if not eq or not key:
                raise BuildError(f"{w!r} is not NAME=VALUE")
            pairs.append((expand(key, env, self.escape), expand(value, env, self.escape)))
        return pairs

    def _expose(self, stage, ins):
        ports = []
        for p in expand_words(ins.args, self._vars(stage), self.escape):
            m = _PORT.fullmatch(p)
            if not m:
                raise BuildError(f"invalid port {p!r}: expected PORT[-END][/tcp|/udp|/sctp]")
            first, last = int(m.group(1)), int(m.group(2) or m.group(1))
            ports += [f"{n}/{m.group(3) or 'tcp'}" for n in range(first, last + 1)]
        self._config_step(stage, "EXPOSE " + " ".join(ports), {"ExposedPorts": ports})

    def _volume(self, stage, ins):
        env = self._vars(stage)
        paths = [expand(v, env, self.escape) for v in ins.json] if ins.json is not None else \
            expand_words(ins.args, env, self.escape)
        if not paths or not all(paths):
            raise BuildError("VOLUME needs at least one path")
        self._config_step(stage, "VOLUME " + json.dumps(paths), {"Volumes": paths})

    def _user(self, stage, ins):
        user = expand(ins.args, self._vars(stage), self.escape).strip()
        self._config_step(stage, f"USER {user}", {"User": user})

    def _stopsignal(self, stage, ins):
        sig = expand(ins.args, self._vars(stage), self.escape).strip()
        self._config_step(stage, f"STOPSIGNAL {sig}", {"StopSignal": sig})

    def _healthcheck(self, stage, ins):
        words = ins.args.split(None, 1)
        kind = words[0].upper()
        if kind == "NONE" and len(words) == 1 and not ins.flags:
            check = {"Test": ["NONE"]}
        elif kind == "CMD" and len(words) == 2:
            rest = words[1]
            form = json_form(rest)
            check = {"Test": ["CMD", *form] if form is not None else ["CMD-SHELL", rest]}
            for flag, key in (("interval", "Interval"), ("timeout", "Timeout"),
                              ("start-period", "StartPeriod"), ("start-interval", "StartInterval")):
                if flag in ins.flags:
                    check[key] = _duration_ns(ins.flags[flag], flag)
            if "retries" in ins.flags:
                if not ins.flags["retries"].isdigit() or int(ins.flags["retries"]) < 1:
                    raise BuildError(f"invalid --retries {ins.flags['retries']!r}: a positive number")
                check["Retries"] = int(ins.flags["retries"])
        else:
            raise BuildError("HEALTHCHECK takes NONE, or [OPTIONS] CMD command")
        self._config_step(stage, "HEALTHCHECK " + json.dumps(check), {"Healthcheck": check})

    def _onbuild(self, stage, ins):
        trigger = ins.args.strip()
        word = trigger.split(None, 1)[0].upper()
        if word in ("ONBUILD", "FROM", "MAINTAINER"):
            raise BuildError(f"{word} is not allowed as an ONBUILD trigger")
        parse(trigger, "ONBUILD")  # a bad trigger fails now, not in a later build
        triggers = list(stage.config.get("OnBuild") or []) + [trigger]
        self._config_step(stage, "ONBUILD " + trigger, {"OnBuild": triggers})

    def _run_triggers(self, stage):
        """The ONBUILD triggers of the stage's base image, as docker runs them right
        after FROM; the image they make has none left."""
        triggers = list(stage.config.get("OnBuild") or [])
        if not triggers:
            return
        self._log(f"# Executing {len(triggers)} build trigger{'s' if len(triggers) > 1 else ''}\n")
        for trigger in triggers:
            (ins,), _ = parse(trigger, "ONBUILD")
            getattr(self, "_" + ins.cmd.lower())(stage, ins)
        self._config_step(stage, "ONBUILD (triggers done)", {"OnBuild": None})

    def _maintainer(self, stage, ins):
        self._config_step(stage, f"MAINTAINER {ins.args}", {}, author=ins.args)

    def _shell(self, stage, ins):
        if not ins.json:
            raise BuildError('SHELL needs the JSON form: SHELL ["executable", "parameters"]')
        stage.shell = list(ins.json)
        self._config_step(stage, "SHELL " + json.dumps(ins.json), {"Shell": list(ins.json)})

    def _command(self, stage, ins) -> list:
        return list(ins.json) if ins.json is not None else stage.shell + [ins.args]

    def _cmd(self, stage, ins):
        argv = self._command(stage, ins) if ins.args else []
        stage.cmd_set = True
        self._config_step(stage, "CMD " + json.dumps(argv), {"Cmd": argv})

    def _entrypoint(self, stage, ins):
        argv = self._command(stage, ins) if ins.args else []
        changes = {"Entrypoint": argv}
        if not stage.cmd_set:  # as docker: an inherited CMD does not outlive a new ENTRYPOINT
            changes["Cmd"] = None
        self._config_step(stage, "ENTRYPOINT " + json.dumps(argv), changes)

    def _workdir(self, stage, ins):
        path = expand(ins.args, self._vars(stage), self.escape)
        path = posixpath.normpath(posixpath.join(stage.config.get("WorkingDir") or "/", path))
        changes = {"WorkingDir": path}

        def make():
            image = ImageTree(self._layers(stage))
            st = image.lstat(image.resolve(path))
            if st is not None and stat.S_ISDIR(st.st_mode):
                return self.images.create(stage.image_id, None, config_changes=changes,
                                          created_by=f"WORKDIR {path}")
            return self._commit_files(stage, f"WORKDIR {path}", lambda w: w.mkdirs(image.resolve(path)), changes)
        self._commit_step(stage, f"WORKDIR {path}", make)

    # -- RUN -----------------------------------------------------------------------------------

    def _run(self, stage, ins):
        argv = self._command(stage, ins)
        if stage.image_id is None:
            raise BuildError("RUN needs an image with files (FROM scratch has none)")
        self._commit_step(stage, "RUN " + json.dumps(argv), lambda: self._run_container(stage, ins, argv))

    def _run_container(self, stage, ins, argv):
        """Runs argv in a container of the stage's image (its output streamed), and
        commits it. The container is removed whatever happens."""
        env_names = {item.partition("=")[0] for item in stage.config.get("Env") or ()}
        build_env = {k: v for k, v in stage.args.items() if k not in env_names}
        c = self.rt.containers.create(stage.image_id, argv, entrypoint=[], environment=build_env,
                                      network_mode=self.network_mode)
        keep = False
        try:
            self._log(f" ---> Running in {c.short_id}\n")
            tail = collections.deque(maxlen=_TAIL)
            proc = c.start_process(stdin=DEVNULL, stdout=PIPE, stderr=STDOUT)
            try:
                for line in proc.stdout:
                    text = line.decode("utf-8", "replace")
                    tail.append(text.rstrip("\n"))
                    self._log(text)
                proc.wait()
            finally:
                proc.stdout.close()
                if proc.returncode is None:
                    proc.kill()
                    proc.wait()
                c.finished(proc.returncode)
            code = c.state.get("ExitCode", 0)
            if code != 0:
                raise BuildError(f"{self.filename}:{ins.line}: {ins.original}: exit code {code}", tail)
            img = c.commit()
            keep = not self.rm
            return img
        finally:
            if not keep:
                c.remove(force=True, v=True)
                self._log(f" ---> Removed intermediate container {c.short_id}\n")

    # -- COPY, ADD -----------------------------------------------------------------------------

    def _copy(self, stage, ins, add=False):
        env = self._vars(stage)
        words = [expand(w, env, self.escape) for w in ins.json] if ins.json is not None else \
            expand_words(ins.args, env, self.escape)
        if len(words) < 2:
            raise BuildError("needs at least one source and a destination")
        srcs, dest = words[:-1], words[-1]
        tree, from_id = self._source_tree(stage, ins, env)
        sources = []
        for src in srcs:
            if add and re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*://", src):
                raise BuildError(f"{src}: URLs are not supported (download the file into the build context)")
            sources += self._find_sources(tree, src)
        as_dir = dest.endswith("/") or dest.endswith("/.") or dest in (".", "..")
        dest = posixpath.normpath(posixpath.join(stage.config.get("WorkingDir") or "/", dest))
        if len(sources) > 1 and not as_dir:
            raise BuildError("with more than one source, the destination must be a directory ending with /")
        flags = {k: expand(v, env, self.escape) for k, v in ins.flags.items()}
        mode = _chmod(flags.get("chmod"))
        text = " ".join([ins.cmd] + [f"--{k}={v}" for k, v in sorted(flags.items())] + srcs + [dest])
        key = from_id or digest_sources(tree, sources)

        def fill(writer):
            chown = _chown(flags["chown"], writer.image) if "chown" in flags else None
            for src in sources:
                self._put(writer, tree, src, dest, as_dir, chown, mode, add and not from_id,
                          context_owner=from_id is None)
        self._commit_step(stage, text, lambda: self._commit_files(stage, text, fill), key)

    def _add(self, stage, ins):
        self._copy(stage, ins, add=True)

    def _source_tree(self, stage, ins, env):
        """(the tree to copy from, the id of the image it is, or None for the context)."""
        ref = ins.flags.get("from")
        if ref is None:
            return self.context, None
        ref = expand(ref, env, self.escape)
        src = self._stage_named(ref, stage)
        if src is None and ref.isdigit() and int(ref) < stage.index:
            src = self.stages[int(ref)]
        if src is not None:
            image_id = src.image_id
        else:
            try:
                image_id = self.images.get(ref).id
            except ImageNotFound:
                raise BuildError(f"--from={ref}: no such stage or image") from None
        if image_id is None:
            return ImageTree([]), "scratch"
        return ImageTree(list(reversed(self.images.get(image_id).layer_paths))), image_id

    def _find_sources(self, tree, src) -> list[str]:
        rel = posixpath.normpath(src.lstrip("/")) if src.strip("/") else "."
        if rel == ".." or rel.startswith("../"):
            raise BuildError(f"{src}: forbidden path outside the build context")
        rel = "" if rel == "." else rel
        if any(c in rel for c in "*?["):
            found = tree.glob(rel)
            if not found:
                raise BuildError(f"{src}: no source files were specified (nothing matches)")
            return found
        resolved = tree.resolve(rel)
        if tree.lstat(resolved) is None:
            where = "the build context" if isinstance(tree, ContextTree) else "the image"
            raise BuildError(f"{src}: no such file or directory in {where}"
                             + (" (or excluded by .dockerignore)" if isinstance(tree, ContextTree) else ""))
        return [resolved]

    def _put(self, writer, tree, src, dest, as_dir, chown, mode, extract, context_owner):
        """Writes one source into the layer, with docker's rules: a directory's
        contents go into dest, a file goes into dest/ (or an existing directory)
        or becomes dest, and ADD extracts a local tar archive into dest/. Owner:
        `chown`, else root for files of the context, else the source's (files of
        an image, of an archive)."""
        image = writer.image
        st = tree.lstat(src)
        if extract and stat.S_ISREG(st.st_mode):
            kind = _archive_kind(tree.host_path(src))
            if kind is not None:
                self._extract(writer, tree.host_path(src), kind, image.resolve(dest), chown)
                return
        owner = chown or ((0, 0) if context_owner else None)
        if stat.S_ISDIR(st.st_mode):
            writer.copy(tree, src, image.resolve(dest), owner, mode)
            return
        existing = image.lstat(image.resolve(dest))
        if as_dir or (existing is not None and stat.S_ISDIR(existing.st_mode)):
            target = posixpath.join(image.resolve(dest), posixpath.basename(src))
        else:
            target = image.resolve(dest, follow_last=False)
        writer.copy(tree, src, target, owner, mode)

    def _extract(self, writer, path, kind, dest, owner):
        tmp = self.rt.store.mkdtemp("build-add-")
        try:
            out = os.path.join(tmp, "x")
            os.mkdir(out)
            with open(path, "rb") as f:
                src = archive.decompressed(f, kind, path) if kind in ("bzip2", "xz") else f
                unpack_layer(src, out)
            writer.merge(out, dest, owner)
        finally:
            rmtree(tmp)

    def _commit_files(self, stage, text, fill, changes=None):
        """A layer of the files fill(Writer) puts in a fresh directory, on top of
        the stage's image."""
        tmp = self.rt.store.mkdtemp("build-")
        try:
            root = os.path.join(tmp, "layer")
            os.mkdir(root, 0o755)
            tree = ImageTree(self._layers(stage))

            def make():  # an ordinary user's files are made as root of its user namespace
                fill(Writer(root, tree))
                return write_layer_blob(root, tmp)
            from pyrt.launch.userns import in_userns
            layer = in_userns(make)
            return self.images.create(stage.image_id, layer, config_changes=changes, created_by=text,
                                      snapshot_dir=root)
        finally:
            rmtree(tmp)


# -- helpers -------------------------------------------------------------------------------------

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_NS = {"ns": 1, "us": 1e3, "µs": 1e3, "ms": 1e6, "s": 1e9, "m": 60e9, "h": 3600e9}


def _duration_ns(text, flag) -> int:
    """A Go duration ("30s", "1m30s", "500ms") in nanoseconds, as docker stores them."""
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise BuildError(f"invalid --{flag} {text!r}: a duration such as 30s, 1m30s or 500ms")
    return int(sum(float(n) * _NS[u] for n, u in parts))


def _parse_tag(ref) -> tuple[str, str]:
    r = parse_reference(ref)
    if r.digest:
        raise BuildError(f"invalid tag {ref!r}: a digest cannot be a tag")
    return r.repository, r.tag


def _network_mode(mode) -> str | None:
    """The network of RUN steps: None (also docker's "default": the default
    network), "none", "host" or a network's name."""
    if mode in (None, "", "default"):
        return None
    if not isinstance(mode, str):
        raise BuildError(f"unknown network {mode!r} for the build")
    return mode


def _check_buildargs(args) -> dict:
    out = {}
    for key, value in dict(args).items():
        if not isinstance(key, str) or not _ARG_NAME.fullmatch(key):
            raise BuildError(f"invalid build arg {key!r}: expected NAME=VALUE with NAME made of letters, "
                             "digits and _")
        if value is None:  # as docker: the value of the variable of that name here
            if key not in os.environ:
                continue
            value = os.environ[key]
        out[key] = str(value)
    return out


def _chmod(spec):
    if spec is None:
        return None
    if not re.fullmatch(r"[0-7]{3,4}", spec):
        raise BuildError(f"invalid --chmod={spec}: expected an octal mode such as 755")
    return int(spec, 8)


def _chown(spec, image) -> tuple[int, int]:
    """--chown=USER[:GROUP]: names from the image's /etc/passwd and /etc/group;
    without a group, the gid is the uid (as docker documents)."""
    user, _, group = spec.partition(":")
    layers = image.layers
    uid = int(user) if user.isdigit() else resolve_user(user, layers)[0]
    if not group:
        return uid, uid
    return uid, int(group) if group.isdigit() else resolve_user(f"0:{group}", layers)[1]


def _archive_kind(path) -> str | None:
    """The compression of a tar archive ("" for none), or None if `path` is not one."""
    import tarfile
    with open(path, "rb") as f:
        kind = compression.sniff(f.read(compression.HEAD_SIZE))
        f.seek(0)
        try:
            head = (archive.decompressed(f, kind, path) if kind else f).read(512)
            tarfile.TarInfo.frombuf(head, "utf-8", "surrogateescape")
        except Exception:  # noqa: BLE001 - anything unreadable is not an archive: copied as is
            return None
    return kind
