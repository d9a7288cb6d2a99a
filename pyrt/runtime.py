"""`Runtime(root)`: the docker-SDK-shaped entry point. `.images`, `.containers`,
`.volumes` and `.networks` collections over one store (`.store`, opened on first use)."""
from __future__ import annotations

import _thread  # threading.Lock is _thread.allocate_lock: importing threading costs a run more (measured)
import os

from pyrt import __version__, _core
from pyrt.cgroups.layout import layout
from pyrt.store import Store, default_root
from pyrt.store.layers import tree_size


# The collections (and what `build`, `info`, `prune` and `login` need) are imported on
# first use: `pyrt ps` loads neither the image catalog nor the registry client's
# package, `pyrt images` not the containers.


STORAGE_DRIVERS = ("overlay", "fuse-overlayfs", "copy")


class Runtime:
    """`root`: the store (default $PYRT_ROOT or /var/lib/pyrt). `storage_driver`:
    "overlay", "fuse-overlayfs" (an ordinary user's) or "copy" (default:
    $PYRT_STORAGE_DRIVER, else detected on first use).
    `quiet`: no progress output from the operations that show some."""

    def __init__(self, root: str | None = None, storage_driver: str | None = None, quiet: bool = False):
        self.root = os.path.abspath(root or default_root())
        self.quiet = quiet
        driver = storage_driver or os.environ.get("PYRT_STORAGE_DRIVER") or None
        if driver not in (None, *STORAGE_DRIVERS):
            from pyrt.errors import InvalidArgument
            raise InvalidArgument(f"storage driver {driver!r} (--storage-driver or $PYRT_STORAGE_DRIVER): "
                                  f"one of {', '.join(STORAGE_DRIVERS)}")
        if driver == "fuse-overlayfs" and os.geteuid() == 0:
            from pyrt.errors import InvalidArgument
            raise InvalidArgument("the fuse-overlayfs storage driver is for an ordinary user (root has the "
                                  "kernel's overlay)")
        self._storage_driver = driver
        self._store = None
        self._lock = _thread.allocate_lock()
        self._images = self._containers = self._volumes = self._networks = None
        self.logins = {}  # registry host -> (user, password), set by login()

    def __repr__(self):
        return f"Runtime(root={self.root!r})"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def storage_driver(self) -> str:
        """How container roots are made: "overlay", "fuse-overlayfs" or "copy" (detected
        once if not given)."""
        if self._storage_driver is None:
            try:
                from pyrt.containers.create import detect_storage_driver
            except ImportError:
                self._storage_driver = "overlay"
            else:
                self._storage_driver = detect_storage_driver(self)
        return self._storage_driver

    @storage_driver.setter
    def storage_driver(self, value):
        self._storage_driver = value

    @property
    def store(self):
        if self._store is None:
            with self._lock:
                if self._store is None:
                    self._store = Store(self.root)
        return self._store

    @property
    def images(self):
        if self._images is None:
            from pyrt.dockerfile import build
            from pyrt.images.catalog import ImageCollection
            self._images = ImageCollection(self, builder=build)
        return self._images

    @property
    def containers(self):
        if self._containers is None:
            from pyrt.containers.collection import ContainerCollection
            self._containers = ContainerCollection(self)
        return self._containers

    @property
    def volumes(self):
        if self._volumes is None:
            from pyrt.containers.volumes import VolumeCollection
            self._volumes = VolumeCollection(self)
        return self._volumes

    @property
    def networks(self):
        if self._networks is None:
            from pyrt.network.model import NetworkCollection
            self._networks = NetworkCollection(self)
        return self._networks

    def df(self) -> dict:
        """Disk use, as `pyrt system df` shows it: images (shared layers counted once),
        layers, containers and volumes."""
        out = self.images.df()
        db = self.store.db
        rows = db.query("SELECT id FROM containers")
        cdir = os.path.join(self.store.root, "containers")
        csize = 0
        for r in rows:
            csize += _disk_use(os.path.join(cdir, r["id"]))
        out["containers"] = {"count": len(rows), "size": csize}
        vdir = os.path.join(self.store.root, "volumes")
        try:
            names = [n for n in os.listdir(vdir) if not n.startswith(".")]
        except FileNotFoundError:
            names = []
        out["volumes"] = {"count": len(names), "size": sum(_disk_use(os.path.join(vdir, n)) for n in names)}
        return out

    def version(self) -> dict:
        """docker SDK's client.version(), for pyrt."""
        import platform
        return {"Version": __version__, "ApiVersion": "pyrt", "Os": "linux", "Arch": platform.machine(),
                "KernelVersion": platform.release(), "PythonVersion": platform.python_version(),
                "Seccomp": bool(_core.seccomp_available())}

    def info(self) -> dict:
        """docker SDK's client.info(): the store, its contents, and what the host
        offers (cgroup layout, seccomp, overlay)."""
        import platform
        states = [c.status for c in self.containers.list(all=True)]
        lay = layout()
        return {
            "ServerVersion": __version__, "Driver": self.storage_driver, "DockerRootDir": self.root,
            "Containers": len(states), "ContainersRunning": states.count("running"),
            "ContainersPaused": states.count("paused"),
            "ContainersStopped": len(states) - states.count("running") - states.count("paused"),
            "Images": len(self.images.list(all=True)), "Volumes": len(self.volumes.list()),
            "CgroupDriver": _cgroup_manager(lay), "CgroupVersion": {"v1": "1", "v2": "2"}.get(lay.mode, lay.mode),
            "CgroupControllers": sorted(set(lay.v1) | set(lay.v2_controllers)),
            "SecurityOptions": ["name=seccomp,profile=default"] if _core.seccomp_available() else [],
            "KernelVersion": platform.release(), "OperatingSystem": _os_name(), "Architecture": platform.machine(),
            "NCPU": os.cpu_count(), "MemTotal": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
            "DefaultRuntime": "pyrt", "Runtimes": {"pyrt-runtime": {"path": "pyrt-runtime"}},
        }

    def prune(self, images_all=False, volumes=False) -> dict:
        """`pyrt system prune`: stopped containers, networks no container uses,
        dangling (images_all: unused) images, the build cache, partial downloads and
        (volumes) unused volumes."""
        out = {"ContainersDeleted": [], "NetworksDeleted": [], "ImagesDeleted": [], "VolumesDeleted": [],
               "SpaceReclaimed": 0}
        r = self.containers.prune()
        out["ContainersDeleted"], out["SpaceReclaimed"] = r["ContainersDeleted"], r["SpaceReclaimed"]
        out["NetworksDeleted"] = self.networks.prune()["NetworksDeleted"]
        with self.store.db.transaction() as tx:
            tx.execute("DELETE FROM build_cache")
        r = self.images.prune(all=images_all)
        out["ImagesDeleted"] = r["ImagesDeleted"]
        out["SpaceReclaimed"] += r["SpaceReclaimed"]
        from pyrt.registry import prune_downloads
        out["SpaceReclaimed"] += prune_downloads(self.store.root)
        if volumes:
            r = self.volumes.prune()
            out["VolumesDeleted"] = r["VolumesDeleted"]
            out["SpaceReclaimed"] += r["SpaceReclaimed"]
        return out

    def login(self, username, password=None, email=None, registry=None, reauth=False, tls_verify=None):
        """docker SDK's client.login: checks the credentials against `registry`
        (default Docker Hub) and keeps them for this Runtime's pulls and pushes (in
        memory: `pyrt login` is what saves them). Returns {"Status": "Login Succeeded"}."""
        from pyrt.registry import login
        host = login(registry or "docker.io", username, password or "", tls_verify=tls_verify)
        self.logins[host] = (username, password or "")
        return {"Status": "Login Succeeded"}

    def close(self):
        if self._store is not None:
            self._store.close()
            self._store = None


def _disk_use(path: str) -> int:
    return tree_size(path, disk=True)


def _os_name() -> str:
    try:
        with open("/etc/os-release") as f:
            fields = dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)
        return fields.get("PRETTY_NAME", "").strip('"') or "Linux"
    except OSError:
        return "Linux"


def _cgroup_manager(lay) -> str:
    from pyrt.cgroups import systemd as cgroup_systemd
    try:
        return cgroup_systemd.manager(lay)
    except ValueError:
        return "cgroupfs"
