"""A container: an image's layers as overlay lower dirs plus one private upper dir.

A Container has the docker SDK's names: start, stop, kill, wait, logs, exec_run,
diff, commit, export, attach, remove, reload, ... Metadata lives in the store's
`containers` table; files in containers/<id>/ (upper, work, and the generated
hostname, hosts and resolv.conf). The collection (`Runtime(root).containers`) is in
collection.py; what makes a new container, in create.py."""
from __future__ import annotations

import json
import os
import time

from pyrt import _core
from pyrt.containers import inspection, lifecycle
from pyrt.containers.options import check_name, env_list_to_dict
from pyrt.errors import ContainerError  # noqa: F401 (re-exported)
from pyrt.errors import Conflict, ContainerNotFound, InvalidArgument, PyrtError
from pyrt.launch.mounts import Bind, Overlay, Tmpfs
from pyrt.launch.process import spawn
from pyrt.launch.spec import build_spec
from pyrt.store.layers import rmtree

# Imported where they are used, so that listing containers (`pyrt ps`, which loads this
# module) does not load them: cgroups (pyrt.cgroups.*), terminals (pyrt.launch.tty,
# pyrt.containers.attach), users (pyrt.launch.userdb), logs, exec and top
# (pyrt.containers.logs, .processes), the layer writer and change lists
# (pyrt.store.commit, .changes, .export, pyrt.oci.config), pyrt.containers.cp and the
# network's wiring (pyrt.network.endpoints).


def _layer_paths(image) -> list[str]:
    """Snapshot dirs of an image, top-most first (overlay lowerdir order)."""
    return [layer.path for layer in reversed(image.layers)]


class Container:
    def __init__(self, collection, row):
        self._c = collection
        self._load(row)

    def _load(self, row):
        self.id = row["id"]
        self.name = row["name"]
        self.image_id = row["image_id"]
        self.created = row["created"]
        self.config = json.loads(row["config"])
        self.state = json.loads(row["state"])

    @property
    def short_id(self):
        return self.id[:12]

    @property
    def status(self):
        return self.state.get("Status", "created")

    @property
    def dir(self):
        return os.path.join(self._c.store.root, "containers", self.id)

    @property
    def image(self):
        return self._c.runtime.images.get(self.image_id)

    def reload(self):
        row = self._c._row(self.id)
        if row is None:
            raise ContainerNotFound(f"no such container: {self.id[:12]}")
        self._load(row)
        self._refresh_running()
        return self

    def __repr__(self):
        return f"<Container {self.short_id} {self.name}>"

    @property
    def attrs(self) -> dict:
        """What `docker inspect` shows, in its shape."""
        return inspection.attrs(self)

    # -- filesystem -------------------------------------------------------------
    def _lowers(self) -> list[str]:
        """The image's layers, top-most first."""
        return _layer_paths(self.image)

    def _union_lowers(self) -> list[str]:
        """The overlay's lower dirs: the init layer over the image's layers."""
        return [os.path.join(self.dir, "init")] + self._lowers()

    def _compare_lowers(self) -> list[str]:
        """`copy` driver: what the rootfs is compared with, the init layer (the
        placeholders made in the rootfs, see _make_copy_init) over the image's layers."""
        init = os.path.join(self.dir, "init")
        return ([init] if os.path.isdir(init) else []) + self._lowers()

    def _upper(self) -> str:
        return os.path.join(self.dir, "upper")

    def _fuse(self) -> bool:
        return self.config.get("Driver") == "fuse-overlayfs"

    def _rootfs(self):
        """What the spawn core mounts as root (fuse-overlayfs: the union's mount
        point in the keeper's mount namespace, pyrt.launch.fuse)."""
        if self.config.get("Driver") == "copy":
            return os.path.join(self.dir, "rootfs")
        if self._fuse():
            from pyrt.launch.fuse import MERGED
            return os.path.join(self.dir, MERGED)
        # diff and commit read the upper dir back as a layer: a renamed image dir
        # (redirect_dir) or a metadata-only copy-up (metacopy) cannot be, whatever
        # the host's overlay defaults are
        return Overlay(self._union_lowers(), upperdir=self._upper(),
                       workdir=os.path.join(self.dir, "work"), options=("redirect_dir=off", "metacopy=off"))

    def _mounts(self):
        out = []
        for name in ("hostname", "hosts", "resolv.conf"):
            out.append(Bind(os.path.join(self.dir, name), "/etc/" + name))
        for m in self.config.get("Mounts", []):
            if m["Type"] in ("bind", "volume"):
                out.append(Bind(m["Source"], m["Destination"], readonly=not m.get("RW", True)))
            elif m["Type"] == "tmpfs":
                out.append(Tmpfs(m["Destination"], size=m.get("Size"), mode=m.get("Mode"),
                                 options=tuple(m.get("Options", ("nosuid", "nodev", "noexec")))))
        for d in self.config.get("Devices") or ():  # --device: the host's node, bound in
            out.append(Bind(d["PathOnHost"], d["PathInContainer"]))
        return out

    def _device_rules(self):
        """The container's device allow-list (pyrt.cgroups.devices): docker's defaults plus
        its --device nodes; None (no restriction) when privileged."""
        from pyrt.cgroups.devices import parse_device, rules_with
        if self.config.get("Privileged"):
            return None
        return rules_with([parse_device(d) for d in self.config.get("Devices") or ()])

    # -- lifecycle --------------------------------------------------------------
    def _spawn_spec(self, network=None, **stdio):
        """The resolved spec of this container's command (pyrt.launch.spec.build_spec);
        network: the fd of the namespace pyrt.network wired (for containers on networks)."""
        from pyrt.launch.userdb import resolve_user
        cfg = self.config
        user = None
        if cfg.get("User"):
            uid, gid, groups = resolve_user(cfg["User"], self._driver_layers())
            user = (uid, gid, *groups)  # build_spec takes (uid, gid, *supplementary groups)
        return build_spec(cfg["Cmd"], self._rootfs(), env=env_list_to_dict(cfg["Env"]),
                          cwd=cfg.get("WorkingDir") or "/", hostname=cfg["Hostname"],
                          mounts=self._mounts(), user=user,
                          network=network if network is not None else cfg.get("NetworkMode", "none"),
                          read_only=cfg.get("ReadOnly", False), cap_add=cfg.get("CapAdd", []),
                          cap_drop=self._cap_drop(), privileged=cfg.get("Privileged", False),
                          init=cfg.get("Init", False), seccomp=cfg.get("Seccomp", "default"))

    def _cap_drop(self, privileged=None) -> list:
        """--cap-drop, plus NET_RAW on slirp4netns (pyrt.network.usermode.cap_drop)."""
        cfg = self.config
        if cfg.get("NetworkMode") != "slirp4netns":
            return list(cfg.get("CapDrop", []))
        from pyrt.network import usermode
        return usermode.cap_drop(cfg.get("CapAdd", []), cfg.get("CapDrop", []),
                                 cfg.get("Privileged", False) if privileged is None else privileged)

    def _limits(self):
        from pyrt.cgroups.limits import Limits
        return Limits(**(self.config.get("Limits") or {}))

    def _make_cgroup(self, detached: bool):
        """The container's cgroup, with its limits and its device allow-list
        (pyrt.cgroups.devices): made for every container (a foreground one without limits
        too, for the devices; detached ones also account memory, pids and cpu for
        stats, pause and OOM reports). None only where no cgroup hierarchy is
        mounted (and nothing asks for one)."""
        from pyrt.cgroups import systemd as cgroup_systemd
        from pyrt.cgroups.layout import layout
        limits = self._limits()
        if os.geteuid() != 0:
            from pyrt.cgroups import delegation
            if not delegation.usable():  # an ordinary user without a delegated subtree
                if not limits.empty():
                    delegation.require("container limits")
                return None
            if limits.empty() and not detached:  # no device cgroup for an ordinary user
                return None
            # a scope of the user's systemd instance (pyrt.cgroups.systemd)
            return self._create_cgroup(limits, ("memory", "pids", "cpuacct") if detached else ())
        if limits.empty() and not detached:
            # only for the devices: where it cannot be made (no cgroup hierarchy, not
            # root, a read-only cgroupfs) the container runs without one, as before;
            # a systemd manager asked for and failing is an error
            if layout().mode == "none" or os.geteuid() != 0:
                return None
            if cgroup_systemd.manager(layout()) == "systemd":
                return self._create_cgroup(limits, ())
            try:
                return self._create_cgroup(limits, ())
            except (OSError, PyrtError):
                return None
        return self._create_cgroup(limits, ("memory", "pids", "cpuacct") if detached else ())

    def _create_cgroup(self, limits, accounting):
        """pyrt/<id> (cgroupfs), or where systemd owns the tree the container/ leaf
        of a scope of its own (pyrt.cgroups.systemd)."""
        from pyrt.cgroups import systemd as cgroup_systemd
        from pyrt.cgroups.cgroup import Cgroup, layout
        lay = layout()
        if cgroup_systemd.manager(lay) != "systemd":
            return Cgroup.create(self.id, limits, accounting=accounting, devices=self._device_rules())
        scope = cgroup_systemd.start(self.id, lay.unified)
        try:
            return Cgroup.create(cgroup_systemd.LEAF, limits, parent=scope, accounting=accounting,
                                 devices=self._device_rules())
        except BaseException:
            cgroup_systemd.stop(self.id, lay.unified)
            raise

    def _open_cgroup(self):
        from pyrt.cgroups import systemd as cgroup_systemd
        from pyrt.cgroups.cgroup import Cgroup, CgroupError
        try:
            return Cgroup.open(self.id)
        except CgroupError:
            pass
        try:  # made by the systemd cgroup manager
            return Cgroup.open(cgroup_systemd.LEAF, parent=cgroup_systemd.scope_of(self.id))
        except CgroupError:
            return None

    def _check_startable(self):
        self.reload()
        if self.status in ("running", "paused"):
            raise Conflict(f"container {self.name} is already running")

    def start_process(self, *, stdin=None, stdout=None, stderr=None, tty=False, reaper=None):
        """Start the container's command in the foreground; returns the
        pyrt.Process (the caller waits, then calls `finished`). tty=True: its stdio
        is a new terminal whose master is the Process's `pty`. reaper: see
        pyrt.launch.reaper."""
        if self.config.get("Ports") and self.config.get("NetworkMode", "none") == "none":
            raise InvalidArgument(f"container {self.name} publishes ports: start it detached (its monitor "
                                  "forwards them) or on a network")
        self._check_startable()
        proc, cgroup = self._launch(False, lambda spec, cgroup: spawn(
            self.config["Cmd"], spec=spec, cgroup=cgroup, stdin=stdin, stdout=stdout, stderr=stderr, tty=tty,
            reaper=reaper))
        self._set_state({"Status": "running", "Pid": proc.pid, "StartTime": lifecycle.start_time(proc.pid),
                         "StartedAt": time.time(), "ExitCode": 0, "FinishedAt": None,
                         "Cgroup": cgroup is not None})
        self._cgroup = cgroup
        return proc

    def _launch(self, detached: bool, start):
        """Wire the container's networks, build its spawn spec and cgroup, mount its
        root (fuse-overlayfs: its keeper), then `start(spec, cgroup)`; on a failure,
        undo all of it. Returns (what start returned, the cgroup)."""
        from pyrt.network import endpoints
        usernet = self._usernet = None
        keeper = self._keeper = None
        if self.config.get("NetworkMode") == "slirp4netns":  # pyrt.network.usermode
            from pyrt.network import usermode
            from pyrt.paths import runtime_dir
            usernet = self._usernet = usermode.start(self.config.get("Ports") or [], runtime_dir())
            wiring = None
        else:
            wiring = endpoints.wire(self)
        try:
            spec = self._spawn_spec(network=usernet.fd if usernet else wiring and wiring.fd)
            cgroup = self._make_cgroup(detached=detached)
            if cgroup is None and not self.config.get("Privileged"):
                from pyrt.launch.process import confine_without_device_cgroup
                confine_without_device_cgroup(spec)
            try:
                if self._fuse():
                    keeper = self._start_keeper()
                    spec.userns_fd, spec.setup = keeper.pidfd, spec.setup | _core.SETUP_JOIN_MNT
                out = start(spec, cgroup), cgroup
                if keeper is not None:
                    self._hand_over(keeper, out[0])
            except BaseException:
                if keeper is not None:
                    keeper.close()
                if cgroup is not None:
                    cgroup.remove()
                raise
            if usernet is not None:
                usernet.close_netns()
                if detached:  # its monitor holds slirp4netns's exit fd now
                    usernet.release()
                    self._usernet = None
            return out
        except BaseException:
            if wiring is not None:
                endpoints.unwire(self)
            if usernet is not None:
                usernet.stop()
                self._usernet = None
            raise
        finally:
            if wiring is not None:
                wiring.close()

    def _start_keeper(self):
        """fuse-overlayfs: the keeper of this run's union (pyrt.launch.fuse)."""
        from pyrt.launch import fuse
        return fuse.Keeper.start(self.dir, self._union_lowers(), self._upper(), os.path.join(self.dir, "work"))

    def _hand_over(self, keeper, started):
        """The union lives as long as the container's init (`started`: its Process
        in the foreground, its new state when detached), or with a restart policy
        as long as its monitor (which restarts it on the same union); the init is
        killed should the daemon die."""
        if not isinstance(started, dict):
            keeper.hand_over(started.pidfd, started.pidfd)
            self._keeper = keeper
            return
        fds = []
        try:
            for key in ("Pid", "MonitorPid"):
                fds.append(lifecycle.pidfd({"Pid": started[key],
                                            "StartTime": started[key.replace("Pid", "StartTime")]}))
            owner = fds[1] if self._restarts() else fds[0]
            if owner is not None:  # else it has ended: hanging up ends the union
                keeper.hand_over(owner, fds[0])
        finally:
            for fd in fds:
                if fd is not None:
                    os.close(fd)
            keeper.close(wait=None)

    def finished(self, returncode: int):
        """Record the exit of a container started with start_process."""
        code = 128 - returncode if returncode < 0 else returncode
        keeper = getattr(self, "_keeper", None)
        if keeper is not None:  # its daemon ends with the init: nothing left once this returns
            self._keeper = None
            keeper.wait()
            keeper.close()
        oom = False
        cg = getattr(self, "_cgroup", None)
        if cg is not None:
            oom = cg.oom_killed()
            cg.remove()
        self._set_state(dict(self.state, Status="exited", Pid=0, ExitCode=code, OOMKilled=oom,
                             FinishedAt=time.time()))
        usernet = getattr(self, "_usernet", None)
        if usernet is not None:  # the container's slirp4netns ends with it
            self._usernet = None
            usernet.stop()
        _unwire(self)
        if self.config.get("AutoRemove"):
            self.remove(force=True, v=True)

    def start(self):
        """Start in the background, watched by its monitor (docker's `start`). From
        before the container runs until its state is recorded, its start mark is
        held: if this process dies in between, the next one to look resolves it."""
        mark = self._take_start_mark()
        try:
            self._check_startable()
            lifecycle.clear_exit(self.dir)  # a record found from here on is this run's
            state, _ = self._launch(True, lambda spec, cgroup: lifecycle.start_detached(self, spec, cgroup))
            self._set_state(state)
        finally:
            lifecycle.end_start_mark(self.dir, mark)

    def _take_start_mark(self):
        """Hold the start mark (waiting for another process's start or removal to
        end), having resolved an abandoned start; returns its fd (None when the
        container's directory is missing)."""
        try:
            fd, abandoned = lifecycle.take_start_mark(self.dir, wait=30.0, what=f"container {self.name}")
        except (FileNotFoundError, NotADirectoryError):
            if self._c._row(self.id) is None:
                raise ContainerNotFound(f"no such container: {self.name}") from None
            return None  # its directory is gone (a damaged store): nothing to mark, it can still be removed
        if abandoned:
            try:
                self._recover_start()
            except BaseException:
                lifecycle.end_start_mark(self.dir, fd)
                raise
        return fd

    def _recover_start(self):
        """A pyrt process died while starting this container (its start mark is
        ours now): record what it left, a running container (its init found in its
        cgroup), an exited one (its monitor's record), or nothing started."""
        row = self._c._row(self.id)
        if row is None:
            return
        self._load(row)
        if self.status in ("running", "paused"):
            return  # it recorded the start before it died
        cg = self._open_cgroup()
        init = lifecycle.find_init(cg.procs()) if cg is not None else None
        if init is not None:
            st = lifecycle.start_time(init)
            if st:
                self._set_state({"Status": "running", "Pid": init, "StartTime": st,
                                 "MonitorPid": lifecycle.parent_pid(init),
                                 "StartedAt": lifecycle.started_at(init) or time.time(),
                                 "ExitCode": 0, "FinishedAt": None, "Detached": True, "Cgroup": True})
                return
        rec = lifecycle.read_exit(self.dir, wait=0.5)
        if rec is not None:  # it ran and ended: recorded as exited by _refresh_running
            self._set_state(dict(self.state, Status="running", Pid=rec.get("Pid") or 0, StartTime=-1,
                                 Detached=True, Cgroup=cg is not None))
        elif cg is not None:  # it never ran
            cg.remove()

    def stop(self, timeout=10):
        """The image's StopSignal (default SIGTERM), then SIGKILL after `timeout` s.
        A restart policy does not start it again (until `start`)."""
        self.reload()
        if self.status == "paused":
            self.unpause()
        if self.status != "running":
            return
        lifecycle.mark_stopped(self)
        if lifecycle.send_signal(self.state, self.config.get("StopSignal") or "SIGTERM"):
            if not lifecycle.wait_exit(self.state, timeout):
                lifecycle.send_signal(self.state, "SIGKILL")
                lifecycle.wait_exit(self.state, None)
        self._settle()

    def kill(self, signal="SIGKILL"):
        lifecycle.parse_signal(signal)  # a bad signal is an error whatever the state
        self.reload()
        if self.status not in ("running", "paused"):
            raise Conflict(f"container {self.name} is not running")
        if lifecycle.parse_signal(signal) in (9, 15):  # killed by hand: not restarted
            lifecycle.mark_stopped(self)
        lifecycle.send_signal(self.state, signal)
        if lifecycle.parse_signal(signal) == 9:
            lifecycle.wait_exit(self.state, 10)
            self._settle()

    def restart(self, timeout=10):
        self.stop(timeout)
        self.start()

    def _settle(self):
        """After the init has died: wait for the monitor's record and store it."""
        if self.state.get("Detached"):
            if self._restarts():
                lifecycle.wait_monitor(self.state, 5.0)
            lifecycle.read_exit(self.dir, wait=5.0)
        self._refresh_running()
        if self._fuse() and self.status not in ("running", "paused"):  # its daemon ends with it
            from pyrt.launch.fuse import wait_released
            wait_released(self.dir, what=f"container {self.name}")

    def _restarts(self) -> bool:
        return (self.config.get("RestartPolicy") or {}).get("Name", "no") != "no"

    def wait(self, timeout=None, condition="not-running"):
        """Block until the container stops; {"StatusCode": exit code, "Error": None}."""
        self.reload()
        if self.status in ("running", "paused"):
            done = lifecycle.wait_monitor(self.state, timeout) if self._restarts() else \
                lifecycle.wait_exit(self.state, timeout)  # a restarted run is not its end
            if not done:
                raise PyrtError(f"timed out waiting for container {self.name}")
            self._settle()
        return {"StatusCode": self.state.get("ExitCode", 0), "Error": None}

    def pause(self):
        cg = self._running_cgroup("pause")
        cg.freeze()
        self._set_state(dict(self.state, Status="paused"))

    def unpause(self):
        self.reload()
        if self.status != "paused":
            raise Conflict(f"container {self.name} is not paused")
        cg = self._open_cgroup()
        if cg is not None:
            cg.thaw()
        self._set_state(dict(self.state, Status="running"))

    def _running_cgroup(self, what):
        self.reload()
        if self.status != "running":
            raise Conflict(f"cannot {what} container {self.name}: it is not running")
        cg = self._open_cgroup()
        if cg is None:
            raise Conflict(f"cannot {what} container {self.name}: it has no cgroup (start it detached)")
        return cg

    def stats(self, stream=False, decode=None):
        """Resource use from the container's cgroup, in the docker SDK's shape
        (cpu_stats, memory_stats, pids_stats), plus pyrt's flat `pyrt` view."""
        return inspection.stats(self, self._running_cgroup("read stats of").stats())

    def top(self):
        """{"Titles": [...], "Processes": [[...], ...]} like the docker SDK."""
        from pyrt.containers.processes import processes
        self.reload()
        procs = processes(self)
        return {"Titles": ["UID", "PID", "PPID", "CMD"],
                "Processes": [[p["UID"], str(p["PID"]), str(p["PPID"]), p["CMD"]] for p in procs]}

    def logs(self, stdout=True, stderr=True, stream=False, timestamps=False, tail="all", since=None,
             follow=None):
        """Output of a detached container (bytes; a generator with stream/follow)."""
        from pyrt.containers.logs import follow_logs, read_logs
        if follow or stream:
            return follow_logs(self, stdout=stdout, stderr=stderr, timestamps=timestamps,
                               tail=tail, since=since)
        return read_logs(self, stdout=stdout, stderr=stderr, timestamps=timestamps,
                         tail=tail, since=since)

    def exec_run(self, cmd, stdout=True, stderr=True, stdin=False, tty=False, privileged=False, user="",
                 detach=False, stream=False, socket=False, environment=None, workdir=None, demux=False):
        """Run cmd in the running container: ExecResult(exit_code, output) as the
        docker SDK returns it (output None when detached; (out, err) with demux)."""
        from pyrt.containers.processes import exec_run
        return exec_run(self, cmd, stdout=stdout, stderr=stderr, stdin=stdin, tty=tty, privileged=privileged,
                        user=user, detach=detach, stream=stream, socket=socket, environment=environment,
                        workdir=workdir, demux=demux)

    def _driver_layers(self) -> list[str]:
        if self.config.get("Driver") == "copy":
            return [os.path.join(self.dir, "rootfs")]
        return [self._upper()] + self._union_lowers()

    def _set_state(self, state):
        with self._c.store.db.transaction() as tx:
            tx.execute("UPDATE containers SET state=? WHERE id=?", (json.dumps(state), self.id))
        self.state = state

    def _refresh_running(self):
        """A container marked running whose init has ended is recorded as exited
        (from its monitor's record; or unknown status if its runner was killed),
        and its cgroup removed."""
        mark = lifecycle.abandoned_start(self.dir)
        if mark is not None:
            try:
                self._recover_start()
            finally:
                lifecycle.end_start_mark(self.dir, mark)
        new = lifecycle.exited_state(self)
        if new is not None and new["Status"] != "exited":  # restarted by its monitor
            if new != self.state:
                self._set_state(new)
        elif new is not None:
            if new.get("Cgroup"):
                cg = self._open_cgroup()
                if cg is not None:
                    if not new.get("OOMKilled"):
                        new["OOMKilled"] = cg.oom_killed()
                    cg.remove()
            self._set_state(new)
            _unwire(self)

    # -- changes ---------------------------------------------------------------
    def diff(self) -> list[dict]:
        """Changes against the image, as the docker SDK returns them:
        [{"Path": "/new", "Kind": 1}] with Kind 0 changed, 1 added, 2 deleted."""
        kinds = {"C": 0, "A": 1, "D": 2}
        return [{"Path": p, "Kind": kinds[k]} for k, p in self._changes()]

    def _changes(self):
        from pyrt.launch.userns import in_userns, rootless
        from pyrt.store import changes
        if self.config.get("Driver") == "copy":
            return in_userns(changes.changes_by_compare, os.path.join(self.dir, "rootfs"), self._compare_lowers())
        if self._fuse():
            return self._in_kernel_form(changes.changes, self._union_lowers(), userxattr=True)
        return in_userns(changes.changes, self._upper(), self._union_lowers(), userxattr=rootless())

    def _in_kernel_form(self, fn, *args, **kwargs):
        """fuse-overlayfs: fn(the upper dir in the kernel overlay's form, *args,
        **kwargs) as root of the user namespace (pyrt.store.fuseupper): a stopped
        container's upper dir rewritten in place (its daemon gone, its start mark
        held), a running one's as a snapshot."""
        from pyrt.launch import fuse
        from pyrt.launch.userns import in_userns
        from pyrt.store import fuseupper
        mark = self._take_start_mark()
        scratch = None
        try:
            self.reload()
            live = self.status in ("running", "paused")
            if live:
                scratch = self._c.store.mkdtemp("fuse-")
            else:
                fuse.wait_released(self.dir, what=f"container {self.name}")
            return in_userns(fuseupper.in_kernel_form, fn, self._upper(), self._union_lowers(), scratch, live,
                             *args, **kwargs)
        finally:
            lifecycle.end_start_mark(self.dir, mark)
            if scratch is not None:
                _rmtree(scratch)

    def commit(self, repository=None, tag=None, message=None, author=None, changes=None, conf=None,
               compression="gzip"):
        """A new image: this container's changes as one layer on top of its image."""
        from pyrt.oci.config import normalize_changes
        from pyrt.store.commit import write_layer_blob
        image = self.image
        config_changes = ([dict(conf)] if conf else []) + ([changes] if isinstance(changes, str) else
                                                           list(changes or []))
        normalize_changes(config_changes)  # a bad --change fails before any layer is written
        store = self._c.store
        tmp = store.mkdtemp("commit-")
        # an ordinary user's container is read in its user namespace: the ids shifted back
        from pyrt.launch.userns import in_userns, rootless
        try:
            if self.config.get("Driver") == "copy":
                from pyrt.store.commit import write_layer_blob_by_compare
                layer = in_userns(write_layer_blob_by_compare, os.path.join(self.dir, "rootfs"),
                                  self._compare_lowers(), tmp, compression=compression)
            elif self._fuse():
                layer = self._in_kernel_form(write_layer_blob, tmp, compression=compression, userxattr=True)
            else:
                layer = in_userns(write_layer_blob, self._upper(), tmp, compression=compression,
                                  userxattr=rootless())
            created_by = " ".join(self.config["Cmd"])
            return self._c.runtime.images.create(image, layer, config_changes=config_changes, comment=message,
                                                 created_by=created_by, author=author,
                                                 repository=repository, tag=tag)
        finally:
            import shutil  # here: a run loads this module and never commits (measured)
            shutil.rmtree(tmp, ignore_errors=True)

    def export(self, fileobj):
        """Write the container's whole filesystem as one tar to a binary file."""
        from pyrt.launch.userns import in_userns
        from pyrt.store.export import export_rootfs
        if self.config.get("Driver") == "copy":
            in_userns(export_rootfs, fileobj, rootfs=os.path.join(self.dir, "rootfs"))
        elif self._fuse():  # a read-only union of the upper dir over the layers, by a keeper of its own
            from pyrt.launch.fuse import Keeper
            from pyrt.store.export import export_merged
            scratch = self._c.store.mkdtemp("export-")
            try:
                with Keeper.start(self.dir, [self._upper()] + self._union_lowers(), merged=scratch) as keeper:
                    in_userns(export_merged, fileobj, keeper)
            finally:
                os.rmdir(scratch)
        else:
            in_userns(export_rootfs, fileobj, lowers=self._union_lowers(), upper=self._upper(),
                      scratch=self._c.store.mkdtemp("export-"))

    def attach(self, stdout=True, stderr=True, stream=False, logs=False):
        """docker SDK's attach: the output of this running detached container from
        now on (with `logs`, what it printed before first) until it ends; bytes, or
        a generator of chunks with `stream`."""
        # imported on use: its socket module would slow every command that loads containers
        from pyrt.containers.attach import connect, output
        sock, master = connect(self)
        if master is not None:
            os.close(master)
        before = self.logs(stdout=stdout, stderr=stderr) if logs else b""
        want = {"stdout"} if stdout else set()
        if stderr:
            want.add("stderr")

        def chunks():
            try:
                if before:
                    yield before
                for name, data in output(sock):
                    if name in want:
                        yield data
            finally:
                sock.close()
        return chunks() if stream else b"".join(chunks())

    def get_archive(self, path, chunk_size=2 << 20, encode_stream=False):
        """docker SDK's get_archive: (the tar of `path` in chunks, its stat dict).
        Paths are resolved in the container's root; see pyrt.containers.cp."""
        from pyrt.containers.cp import get_archive
        tar, info = get_archive(self, path)

        def chunks():
            with tar:
                while True:
                    data = tar.read(chunk_size)
                    if not data:
                        return
                    yield data
        return chunks(), info

    def put_archive(self, path, data) -> bool:
        """docker SDK's put_archive: unpacks the tar `data` (bytes or a binary file)
        into the existing directory `path` of the container."""
        from pyrt.containers.cp import put_archive
        return put_archive(self, path, data)

    def rename(self, name: str) -> None:
        """docker's rename: a new unique name (running or not)."""
        check_name(name)
        with self._c.store.db.transaction() as tx:
            row = tx.query_one("SELECT id FROM containers WHERE name=?", (name,))
            if row is not None and row["id"] != self.id:
                raise Conflict(f"the container name {name!r} is already in use: remove that container "
                               "or choose another name")
            if tx.execute("UPDATE containers SET name=? WHERE id=?", (name, self.id)).rowcount != 1:
                raise ContainerNotFound(f"no such container: {self.name}")
        self.name = name

    def remove(self, force=False, v=False):
        self.reload()
        mark = self._take_start_mark()  # not while another process starts it
        try:
            self.reload()
            if self.status in ("running", "paused"):
                if not force:
                    raise Conflict(f"cannot remove container {self.name}: it is {self.status} (stop it first, "
                                   "or force the removal)")
                try:
                    self.kill("SIGKILL")
                except Conflict:  # it ended by itself meanwhile
                    self.reload()
                if self.status == "paused":
                    self.unpause()
            cg = self._open_cgroup()
            if cg is not None:
                cg.remove()
            _unwire(self)
            if self._fuse():  # its fuse-overlayfs ends with it
                from pyrt.launch.fuse import wait_released
                wait_released(self.dir, what=f"container {self.name}")
            with self._c.store.db.transaction() as tx:
                tx.execute("DELETE FROM containers WHERE id=?", (self.id,))
                tx.after_commit(lambda: _rmtree(self.dir))
        finally:
            lifecycle.end_start_mark(self.dir, mark)
        if v:  # its anonymous volumes go with it (named ones stay, as in docker)
            vols = self._c.runtime.volumes
            for m in self.config.get("Mounts", []):
                if m.get("Type") == "volume" and m.get("Anonymous"):
                    try:
                        vols.get(m["Name"]).remove()
                    except (LookupError, Conflict):
                        pass


def _rmtree(path):
    rmtree(path)


def _unwire(container) -> None:
    """The container's network leases, undone (pyrt.network.endpoints)."""
    if container.config.get("NetworkMode", "none") not in ("none", "host"):
        from pyrt.network.endpoints import unwire
        unwire(container)
