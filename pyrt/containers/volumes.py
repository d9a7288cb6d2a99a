"""Volumes: directories outside the union filesystem, bind-mounted into
containers, that outlive them. `Runtime(root).volumes` has the docker SDK names:
create, get, list, prune; a Volume has attrs, remove.

Each volume is volumes/<name>/ with `_data` (what containers see) and
`volume.json` (driver, labels, created, anonymous). Creating one is one mkdir,
so two pyrt processes creating the same name cannot both succeed."""
from __future__ import annotations

import json
import os
import re
import stat
import time

from pyrt import _core
from pyrt.errors import Conflict, InvalidArgument, VolumeNotFound
from pyrt.filters import all_labels_match, wanted_filters
from pyrt.store.layers import lstat_beneath, rmtree, tree_size

_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")


def validate_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name) or len(name) > 255:
        raise InvalidArgument(f"invalid volume name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    return name


class Volume:
    def __init__(self, collection, name, meta):
        self._c = collection
        self.name = name
        self.meta = meta

    @property
    def id(self):
        return self.name

    @property
    def mountpoint(self) -> str:
        return os.path.join(self._c.dir, self.name, "_data")

    @property
    def anonymous(self) -> bool:
        return bool(self.meta.get("Anonymous"))

    @property
    def attrs(self) -> dict:
        return {
            "Name": self.name,
            "Driver": "local",
            "Mountpoint": self.mountpoint,
            "CreatedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.meta.get("Created", 0))),
            "Labels": self.meta.get("Labels") or {},
            "Scope": "local",
            "Options": {},
            "Anonymous": self.anonymous,
        }

    def users(self) -> list[str]:
        """Names of the containers that mount this volume."""
        return self._c.users().get(self.name, [])

    def remove(self, force=False):
        users = self.users()
        if users:
            raise Conflict(f"volume {self.name} is in use by container(s) {', '.join(users)}: remove them first")
        self._c._delete(self.name)

    def __repr__(self):
        return f"<Volume {self.name}>"


class VolumeCollection:
    def __init__(self, runtime):
        self.runtime = runtime
        self.dir = os.path.join(runtime.store.root, "volumes")

    def create(self, name=None, driver="local", labels=None, driver_opts=None, *, anonymous=False) -> Volume:
        """A new volume (a random 64-hex name when none is given). Creating an
        existing named volume returns it, as docker does."""
        if driver not in (None, "local"):
            raise InvalidArgument(f"unknown volume driver {driver!r}: only 'local' is supported")
        if driver_opts:
            raise InvalidArgument("volume driver options are not supported by the local driver")
        if name is None:
            name, anonymous = os.urandom(32).hex(), True  # secrets.token_hex: not imported for this (measured)
        validate_name(name)
        path = os.path.join(self.dir, name)
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            return self.get(name)
        try:
            os.mkdir(os.path.join(path, "_data"), 0o755)
            meta = {"Created": time.time(), "Labels": dict(labels or {}), "Anonymous": bool(anonymous)}
            tmp = os.path.join(path, ".volume.json.tmp")
            with open(tmp, "w") as f:
                json.dump(meta, f)
            os.rename(tmp, os.path.join(path, "volume.json"))
        except BaseException:
            _rmtree(path)
            raise
        return Volume(self, name, meta)

    def get(self, name) -> Volume:
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise VolumeNotFound(f"no such volume: {name}")
        try:
            with open(os.path.join(self.dir, name, "volume.json")) as f:
                meta = json.load(f)
        except (FileNotFoundError, NotADirectoryError):
            raise VolumeNotFound(f"no such volume: {name}") from None
        except ValueError:
            meta = {}
        return Volume(self, name, meta)

    FILTERS = ("dangling", "name", "label")

    def list(self, filters=None) -> list[Volume]:
        """Every volume, by name. `filters` as the docker SDK takes them:
        {"dangling": True, "name": substring, "label": "k" or "k=v"}."""
        wanted = wanted_filters(filters, self.FILTERS, "volume")
        out = []
        for name in sorted(os.listdir(self.dir)):
            try:
                out.append(self.get(name))
            except VolumeNotFound:
                continue  # being created or removed right now
        if "dangling" in wanted:
            used = self.users()
            want = {str(v).lower() in ("1", "true") for v in wanted["dangling"]}
            out = [v for v in out if (v.name not in used) in want]
        if "name" in wanted:
            out = [v for v in out if any(s in v.name for s in wanted["name"])]
        if "label" in wanted:
            out = [v for v in out if all_labels_match(v.attrs.get("Labels") or {}, wanted["label"])]
        return out

    def users(self) -> dict[str, list[str]]:
        """volume name -> names of containers that mount it."""
        out: dict[str, list[str]] = {}
        for row in self.runtime.store.db.query("SELECT name, config FROM containers"):
            for m in json.loads(row["config"]).get("Mounts", []):
                if m.get("Type") == "volume":
                    out.setdefault(m["Name"], []).append(row["name"])
        return out

    def prune(self, all=True) -> dict:
        """Remove the volumes no container uses (only anonymous ones with all=False)."""
        used = self.users()
        removed, freed = [], 0
        for v in self.list():
            if v.name in used or (not all and not v.anonymous):
                continue
            freed += _tree_size(v.mountpoint)
            self._delete(v.name)
            removed.append(v.name)
        return {"VolumesDeleted": removed, "SpaceReclaimed": freed}

    def _delete(self, name):
        path = os.path.join(self.dir, name)
        # rename first, so the name is free at once and a half-removed tree is never seen
        trash = os.path.join(self.dir, f".trash-{os.getpid()}-{os.urandom(4).hex()}")
        try:
            os.rename(path, trash)
        except FileNotFoundError:
            raise VolumeNotFound(f"no such volume: {name}") from None
        _rmtree(trash)


def populate(volume: Volume, layers: list[str], path: str) -> bool:
    """Copy what the image has at `path` into an empty volume (docker's copy-up on
    first mount). `layers` are the image's snapshot dirs, bottom-up; whiteouts and
    opaque dirs are honoured. Returns True when something was copied. An ordinary
    user's is copied in its user namespace (the owners kept, pyrt.launch.userns)."""
    from pyrt.launch.userns import in_userns
    return in_userns(_populate, volume.mountpoint, layers, path)


def _populate(dst, layers, path) -> bool:
    from pyrt.launch.userns import rootless
    opaque = "user.overlay.opaque" if rootless() else "trusted.overlay.opaque"
    if os.listdir(dst):
        return False
    rel = path.strip("/")
    copied = False
    for layer in layers:
        src = os.path.join(layer, rel)
        try:
            st = lstat_beneath(layer, rel)  # a layer's symlinked parent may point anywhere on the host
        except (FileNotFoundError, NotADirectoryError):
            continue
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:  # deleted in this layer
            _empty(dst)
            copied = False
            continue
        if not stat.S_ISDIR(st.st_mode):
            continue
        try:
            if os.getxattr(src, opaque, follow_symlinks=False) == b"y":
                _empty(dst)
        except OSError:
            pass
        _core.copy_tree(src, dst, whiteouts=True)
        copied = True
    return copied


def _empty(path):
    for name in os.listdir(path):
        p = os.path.join(path, name)
        if os.path.isdir(p) and not os.path.islink(p):
            _rmtree(p)
        else:
            os.unlink(p)


def _rmtree(path):
    rmtree(path)


def _tree_size(path) -> int:
    return tree_size(path)
