"""Containers: an image's layers as overlay lower dirs plus one private upper dir.

`Runtime(root).containers` offers docker SDK names: run, create, get, list, prune;
a Container has start, wait, diff, commit, export, remove, reload. Metadata lives in
the store's `containers` table; files in containers/<id>/ (upper, work, and the
generated hostname, hosts and resolv.conf)."""
from __future__ import annotations

import json
import os
import secrets
import shutil
import stat
import time

from pyrt.containers.mounts import collect_mounts
from pyrt.errors import Conflict, ContainerError, ContainerNotFound, InvalidArgument, PyrtError  # noqa: F401
from pyrt.launch.process import DEFAULT_PATH


_ADJECTIVES = ("brave", "calm", "eager", "fond", "gentle", "happy", "jolly", "keen", "lucid",
               "merry", "nifty", "proud", "quiet", "sharp", "tender", "vivid", "witty", "zen")
_NAMES = ("babbage", "curie", "dijkstra", "euler", "fermi", "gauss", "hopper", "knuth",
          "lamport", "lovelace", "noether", "pascal", "ritchie", "shannon", "thompson", "turing")


def _now_iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


def _layer_paths(image) -> list[str]:
    """Snapshot dirs of an image, top-most first (overlay lowerdir order)."""
    return [layer.path for layer in reversed(image.layers)]


def _env_list_to_dict(items) -> dict:
    out = {}
    for item in items or ():
        k, _, v = item.partition("=")
        out[k] = v
    return out


def _command(image_cfg: dict, command, entrypoint) -> list[str]:
    """Docker's rule: an entrypoint given here resets the image's Cmd; a command
    given here replaces the image's Cmd; argv = entrypoint + cmd."""
    if isinstance(command, str):
        command = ["/bin/sh", "-c", command]
    if isinstance(entrypoint, str):
        entrypoint = [entrypoint]
    ep = list(entrypoint) if entrypoint is not None else list(image_cfg.get("Entrypoint") or [])
    if command:
        cmd = list(command)
    elif entrypoint is not None:
        cmd = []
    else:
        cmd = list(image_cfg.get("Cmd") or [])
    argv = ep + cmd
    if not argv:
        raise InvalidArgument("no command specified: the image has no Cmd or Entrypoint")
    return argv


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
        s = self.state
        return {
            "Id": self.id,
            "Created": _now_iso(self.created),
            "Path": self.config["Cmd"][0],
            "Args": self.config["Cmd"][1:],
            "State": {
                "Status": self.status,
                "Running": self.status == "running",
                "Pid": s.get("Pid", 0),
                "ExitCode": s.get("ExitCode", 0),
                "OOMKilled": s.get("OOMKilled", False),
                "StartedAt": _now_iso(s["StartedAt"]) if s.get("StartedAt") else "0001-01-01T00:00:00Z",
                "FinishedAt": _now_iso(s["FinishedAt"]) if s.get("FinishedAt") else "0001-01-01T00:00:00Z",
            },
            "Image": self.image_id,
            "Name": "/" + self.name,
            "RestartCount": s.get("RestartCount", 0),
            "Driver": self.config.get("Driver", "overlay"),
            "Mounts": self.config.get("Mounts", []),
            "Config": {
                "Hostname": self.config.get("Hostname"),
                "User": self.config.get("User", ""),
                "Env": self.config.get("Env", []),
                "Cmd": self.config["Cmd"],
                "WorkingDir": self.config.get("WorkingDir", ""),
                "Image": self.config.get("ImageRef", self.image_id),
                "Labels": self.config.get("Labels", {}),
            },
            "NetworkSettings": {"Ports": port_map(self.config.get("Ports", []))},
            "HostConfig": {
                "PortBindings": port_map(self.config.get("Ports", [])),
                "RestartPolicy": self.config.get("RestartPolicy") or {"Name": "no", "MaximumRetryCount": 0},
                "LogConfig": {"Type": "json-file", "Config": {
                    k: str(v) for k, v in (("max-size", self.config.get("LogConfig", {}).get("MaxSize")),
                                           ("max-file", self.config.get("LogConfig", {}).get("MaxFiles")))
                    if v is not None}},
                "NetworkMode": self.config.get("NetworkMode", "none"),
                "ReadonlyRootfs": self.config.get("ReadOnly", False),
                "AutoRemove": self.config.get("AutoRemove", False),
                "CapAdd": self.config.get("CapAdd", []),
                "CapDrop": self.config.get("CapDrop", []),
                "Privileged": self.config.get("Privileged", False),
            },
            "GraphDriver": {"Name": self.config.get("Driver", "overlay"),
                            "Data": {"UpperDir": self._upper(), "LowerDir": ":".join(self._union_lowers())}},
        }

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

    def _rootfs(self):
        """What the spawn core mounts as root."""
        from pyrt.launch.mounts import Overlay
        if self.config.get("Driver") == "copy":
            return os.path.join(self.dir, "rootfs")
        # diff and commit read the upper dir back as a layer: a renamed image dir
        # (redirect_dir) or a metadata-only copy-up (metacopy) cannot be, whatever
        # the host's overlay defaults are
        return Overlay(self._union_lowers(), upperdir=self._upper(),
                       workdir=os.path.join(self.dir, "work"), options=("redirect_dir=off", "metacopy=off"))

    def _mounts(self):
        from pyrt.launch.mounts import Bind, Tmpfs
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
        if self.config.get("Privileged"):
            return None
        from pyrt.cgroups.devices import parse_device, rules_with
        return rules_with([parse_device(d) for d in self.config.get("Devices") or ()])

    # -- lifecycle --------------------------------------------------------------
    def _spawn_spec(self, **stdio):
        """The resolved spec of this container's command (pyrt.launch.process.build_spec)."""
        from pyrt.launch.process import build_spec
        cfg = self.config
        user = None
        if cfg.get("User"):
            from pyrt.launch.userdb import resolve_user
            uid, gid, groups = resolve_user(cfg["User"], self._driver_layers())
            user = (uid, gid, *groups)  # build_spec takes (uid, gid, *supplementary groups)
        return build_spec(cfg["Cmd"], self._rootfs(), env=_env_list_to_dict(cfg["Env"]),
                          cwd=cfg.get("WorkingDir") or "/", hostname=cfg["Hostname"],
                          mounts=self._mounts(), user=user, network=cfg.get("NetworkMode", "none"),
                          read_only=cfg.get("ReadOnly", False), cap_add=cfg.get("CapAdd", []),
                          cap_drop=cfg.get("CapDrop", []), privileged=cfg.get("Privileged", False),
                          init=cfg.get("Init", False), seccomp=cfg.get("Seccomp", "default"))

    def _limits(self):
        from pyrt.cgroups.cgroup import Limits
        return Limits(**(self.config.get("Limits") or {}))

    def _make_cgroup(self, detached: bool):
        """The container's cgroup, with its limits and its device allow-list
        (pyrt.cgroups.devices): made for every container (a foreground one without limits
        too, for the devices; detached ones also account memory, pids and cpu for
        stats, pause and OOM reports). None only where no cgroup hierarchy is
        mounted (and nothing asks for one)."""
        from pyrt.cgroups import systemd as cgroup_systemd
        from pyrt.cgroups.cgroup import layout
        limits = self._limits()
        if os.geteuid() != 0:
            from pyrt.cgroups import delegation
            if not delegation.usable():  # an ordinary user without a delegated subtree
                if not limits.empty():
                    delegation.require("container limits")
                return None
        if limits.empty() and not detached:
            # only for the devices: where it cannot be made (no cgroup hierarchy, not
            # root, a read-only cgroupfs) the container runs without one, as before;
            # a systemd manager asked for and failing is an error
            if layout().mode == "none" or os.geteuid() != 0:
                return None
            if cgroup_systemd.manager(layout()) == "systemd":
                return self._create_cgroup(limits, ())
            from pyrt.errors import PyrtError
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

    def start_process(self, *, stdin=None, stdout=None, stderr=None, tty=False):
        """Start the container's command in the foreground; returns the
        pyrt.Process (the caller waits, then calls `finished`). tty=True: its stdio
        is a new terminal whose master is the Process's `pty`."""
        import pyrt
        if self.config.get("Ports"):
            raise InvalidArgument(f"container {self.name} publishes ports: start it detached (its monitor "
                                  "forwards them)")
        self._check_startable()
        spec = self._spawn_spec()
        cgroup = self._make_cgroup(detached=False)
        try:
            proc = pyrt.spawn(self.config["Cmd"], spec=spec, cgroup=cgroup, stdin=stdin, stdout=stdout,
                              stderr=stderr, tty=tty)
        except BaseException:
            if cgroup is not None:
                cgroup.remove()
            raise
        from pyrt.containers.lifecycle import start_time
        self._set_state({"Status": "running", "Pid": proc.pid, "StartTime": start_time(proc.pid),
                         "StartedAt": time.time(), "ExitCode": 0, "FinishedAt": None,
                         "Cgroup": cgroup is not None})
        self._cgroup = cgroup
        return proc

    def finished(self, returncode: int):
        """Record the exit of a container started with start_process."""
        code = 128 - returncode if returncode < 0 else returncode
        oom = False
        cg = getattr(self, "_cgroup", None)
        if cg is not None:
            oom = cg.oom_killed()
            cg.remove()
        self._set_state(dict(self.state, Status="exited", Pid=0, ExitCode=code, OOMKilled=oom,
                             FinishedAt=time.time()))
        if self.config.get("AutoRemove"):
            self.remove(force=True, v=True)

    def start(self):
        """Start in the background, watched by its monitor (docker's `start`). From
        before the container runs until its state is recorded, its start mark is
        held: if this process dies in between, the next one to look resolves it."""
        from pyrt.containers import lifecycle
        mark = self._take_start_mark()
        try:
            self._check_startable()
            lifecycle.clear_exit(self.dir)  # a record found from here on is this run's
            spec = self._spawn_spec()
            cgroup = self._make_cgroup(detached=True)
            try:
                state = lifecycle.start_detached(self, spec, cgroup)
            except BaseException:
                if cgroup is not None:
                    cgroup.remove()
                raise
            self._set_state(state)
        finally:
            lifecycle.end_start_mark(self.dir, mark)

    def _take_start_mark(self):
        """Hold the start mark (waiting for another process's start or removal to
        end), having resolved an abandoned start; returns its fd (None when the
        container's directory is missing)."""
        from pyrt.containers import lifecycle
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
        from pyrt.containers import lifecycle
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
        from pyrt.containers import lifecycle
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
        from pyrt.containers import lifecycle
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
        from pyrt.containers import lifecycle
        if self.state.get("Detached"):
            if self._restarts():
                lifecycle.wait_monitor(self.state, 5.0)
            lifecycle.read_exit(self.dir, wait=5.0)
        self._refresh_running()

    def _restarts(self) -> bool:
        return (self.config.get("RestartPolicy") or {}).get("Name", "no") != "no"

    def wait(self, timeout=None, condition="not-running"):
        """Block until the container stops; {"StatusCode": exit code, "Error": None}."""
        from pyrt.containers import lifecycle
        self.reload()
        if self.status in ("running", "paused"):
            done = lifecycle.wait_monitor(self.state, timeout) if self._restarts() else \
                lifecycle.wait_exit(self.state, timeout)  # a restarted run is not its end
            if not done:
                from pyrt.errors import PyrtError
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
        cg = self._running_cgroup("read stats of")
        s = cg.stats()
        return {
            "read": _now_iso(time.time()), "id": self.id, "name": "/" + self.name,
            "cpu_stats": {"cpu_usage": {"total_usage": s.get("cpu_usage_ns") or 0,
                                        "usage_in_usermode": s.get("cpu_user_ns") or 0,
                                        "usage_in_kernelmode": s.get("cpu_system_ns") or 0},
                          "online_cpus": os.cpu_count(),
                          "throttling_data": {"periods": s.get("cpu_nr_periods") or 0,
                                              "throttled_periods": s.get("cpu_nr_throttled") or 0,
                                              "throttled_time": s.get("cpu_throttled_ns") or 0}},
            "memory_stats": {"usage": s.get("memory_usage") or 0, "max_usage": s.get("memory_peak") or 0,
                             "limit": s.get("memory_limit") or 0},
            "pids_stats": {"current": s.get("pids_current") or 0, "limit": s.get("pids_limit") or 0},
            "pyrt": s,
        }

    def top(self):
        """{"Titles": [...], "Processes": [[...], ...]} like the docker SDK."""
        from pyrt.containers.lifecycle import processes
        self.reload()
        procs = processes(self)
        return {"Titles": ["UID", "PID", "PPID", "CMD"],
                "Processes": [[p["UID"], str(p["PID"]), str(p["PPID"]), p["CMD"]] for p in procs]}

    def logs(self, stdout=True, stderr=True, stream=False, timestamps=False, tail="all", since=None,
             follow=None):
        """Output of a detached container (bytes; a generator with stream/follow)."""
        from pyrt.containers import lifecycle
        if follow or stream:
            return lifecycle.follow_logs(self, stdout=stdout, stderr=stderr, timestamps=timestamps,
                                         tail=tail, since=since)
        return lifecycle.read_logs(self, stdout=stdout, stderr=stderr, timestamps=timestamps,
                                   tail=tail, since=since)

    def exec_run(self, cmd, stdout=True, stderr=True, stdin=False, tty=False, privileged=False, user="",
                 detach=False, stream=False, socket=False, environment=None, workdir=None, demux=False):
        """Run cmd in the running container: ExecResult(exit_code, output) as the
        docker SDK returns it (output None when detached; (out, err) with demux)."""
        from pyrt.containers import lifecycle
        if socket or stream or stdin:
            raise InvalidArgument("exec_run: stdin, socket and stream are not supported")
        if tty:
            return self._exec_tty(cmd, user=user, environment=environment, workdir=workdir,
                                  privileged=privileged, detach=detach)
        devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        out = err = None  # (read end, write end)
        try:
            if not detach and (stdout or stderr):
                out = os.pipe()
                if demux and stderr and stdout:
                    err = os.pipe()
            out_w = out[1] if out and stdout else devnull
            err_w = (err or out)[1] if (err or out) and stderr else devnull
            pid, pfd = lifecycle.exec_process(self, cmd, user=user, environment=environment, workdir=workdir,
                                              privileged=privileged, stdin=devnull, stdout=out_w, stderr=err_w)
        except BaseException:
            for p in (out, err):
                if p:
                    os.close(p[0])
            raise
        finally:
            os.close(devnull)
            for p in (out, err):
                if p:
                    os.close(p[1])
        if detach:
            os.close(pfd)
            return ExecResult(None, None)
        data = _read_all([p[0] for p in (out, err) if p])
        code = lifecycle.wait_pidfd(pfd)
        if demux:
            got = iter(data)
            o = next(got) if out and stdout else None
            e = next(got) if err else (o if stderr and not stdout else None)
            return ExecResult(code, (o, e))
        return ExecResult(code, data[0] if data else None)

    def _exec_tty(self, cmd, detach=False, **options):
        """exec_run with a terminal: the output is what the terminal showed."""
        from pyrt.containers import lifecycle
        from pyrt.launch.tty import open_pty_in, read_until_closed
        master, slave = open_pty_in(self.reload().state["Pid"])
        try:
            try:
                pid, pfd = lifecycle.exec_process(self, cmd, stdin=slave, stdout=slave, stderr=slave,
                                                  new_session=True, **options)
            finally:
                os.close(slave)
            if detach:
                os.close(pfd)
                return ExecResult(None, None)
            data = read_until_closed(master, pfd)
        finally:
            os.close(master)
        return ExecResult(lifecycle.wait_pidfd(pfd), data)

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
        from pyrt.containers import lifecycle
        from pyrt.containers.lifecycle import exited_state
        mark = lifecycle.abandoned_start(self.dir)
        if mark is not None:
            try:
                self._recover_start()
            finally:
                lifecycle.end_start_mark(self.dir, mark)
        new = exited_state(self)
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
        return in_userns(changes.changes, self._upper(), self._union_lowers(), userxattr=rootless())

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
            else:
                layer = in_userns(write_layer_blob, self._upper(), tmp, compression=compression,
                                  userxattr=rootless())
            created_by = " ".join(self.config["Cmd"])
            return self._c.runtime.images.create(image, layer, config_changes=config_changes, comment=message,
                                                 created_by=created_by, author=author,
                                                 repository=repository, tag=tag)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def export(self, fileobj):
        """Write the container's whole filesystem as one tar to a binary file."""
        from pyrt.launch.userns import in_userns
        from pyrt.store.export import export_rootfs
        if self.config.get("Driver") == "copy":
            in_userns(export_rootfs, fileobj, rootfs=os.path.join(self.dir, "rootfs"))
        else:
            in_userns(export_rootfs, fileobj, lowers=self._union_lowers(), upper=self._upper(),
                      scratch=self._c.store.mkdtemp("export-"))

    def attach(self, stdout=True, stderr=True, stream=False, logs=False):
        """docker SDK's attach: the output of this running detached container from
        now on (with `logs`, what it printed before first) until it ends; bytes, or
        a generator of chunks with `stream`."""
        from pyrt.launch import tty
        sock, master = tty.connect(self)
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
                for name, data in tty.output(sock):
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
        _check_name(name)
        with self._c.store.db.transaction() as tx:
            row = tx.query_one("SELECT id FROM containers WHERE name=?", (name,))
            if row is not None and row["id"] != self.id:
                raise Conflict(f"the container name {name!r} is already in use: remove that container "
                               "or choose another name")
            if tx.execute("UPDATE containers SET name=? WHERE id=?", (name, self.id)).rowcount != 1:
                raise ContainerNotFound(f"no such container: {self.name}")
        self.name = name

    def remove(self, force=False, v=False):
        from pyrt.containers import lifecycle
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


def _check_platform(img) -> None:
    """An image for another OS is refused; one for another architecture gives a
    PlatformWarning (Python's warnings)."""
    from pyrt.oci.image import check_runnable
    note = check_runnable(img.config)
    if note:
        import warnings
        from pyrt.errors import PlatformWarning
        warnings.warn(PlatformWarning(note), stacklevel=3)


def detect_storage_driver(runtime) -> str:
    """overlay when the store's filesystem can hold overlay upper dirs, else copy
    (with a one-line notice). Probed once per store by mounting a tiny overlay in a
    throw-away container setup, and remembered in <root>/storage-driver."""
    import sys
    memo = os.path.join(runtime.store.root, "storage-driver")
    try:
        with open(memo) as f:
            driver = f.read().strip()
        if driver in ("overlay", "copy"):
            return driver
    except FileNotFoundError:
        pass
    import pyrt
    from pyrt.errors import SpawnError
    probe = runtime.store.mkdtemp("probe-")
    try:
        dirs = [os.path.join(probe, d) for d in ("l1", "l2", "upper", "work")]
        for d in dirs:
            os.mkdir(d)
        try:  # the spawn mounts the overlay, then fails to exec the missing program
            pyrt.run(["/.pyrt-probe"], pyrt.Overlay(dirs[:2], upperdir=dirs[2], workdir=dirs[3]))
            reason = None
        except SpawnError as e:
            reason = None if e.op == "exec" else str(e)
    finally:
        _rmtree(probe)
    driver = "overlay" if reason is None else "copy"
    if reason is not None and not runtime.quiet:
        print(f"pyrt: overlay is not usable for the store {runtime.store.root} ({reason}): "
              "using the copy storage driver", file=sys.stderr)
    tmp = f"{memo}.{os.getpid()}.tmp"  # two processes may probe at once: same answer
    with open(tmp, "w") as f:
        f.write(driver + "\n")
    os.rename(tmp, memo)
    return driver


class ExecResult(tuple):
    """(exit_code, output), as the docker SDK's exec_run returns it."""

    def __new__(cls, exit_code, output):
        return super().__new__(cls, (exit_code, output))

    exit_code = property(lambda self: self[0])
    output = property(lambda self: self[1])


def _read_all(fds) -> list[bytes]:
    """Read several pipes to their ends at once (none may fill up and block the writer)."""
    import selectors
    bufs = {fd: [] for fd in fds}
    sel = selectors.DefaultSelector()
    try:
        for fd in fds:
            sel.register(fd, selectors.EVENT_READ)
        while sel.get_map():
            for key, _ in sel.select():
                chunk = os.read(key.fd, 65536)
                if chunk:
                    bufs[key.fd].append(chunk)
                else:
                    sel.unregister(key.fd)
    finally:
        sel.close()
        for fd in fds:
            os.close(fd)
    return [b"".join(bufs[fd]) for fd in fds]


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def _rmtree(path):
    from pyrt.store.layers import rmtree
    rmtree(path)


class ContainerCollection:
    def __init__(self, runtime):
        self.runtime = runtime
        self.store = runtime.store

    def _row(self, ident):
        return self.store.db.query_one("SELECT * FROM containers WHERE id=?", (ident,))

    def get(self, ref: str) -> Container:
        """By full id, unambiguous id prefix, or name."""
        db = self.store.db
        row = db.query_one("SELECT * FROM containers WHERE id=? OR name=?", (ref, ref.lstrip("/")))
        if row is None and ref and all(c in "0123456789abcdef" for c in ref):
            rows = db.query("SELECT * FROM containers WHERE id LIKE ? LIMIT 2", (ref + "%",))
            if len(rows) > 1:
                raise InvalidArgument(f"container id prefix {ref!r} is ambiguous: use more characters")
            row = rows[0] if rows else None
        if row is None:
            raise ContainerNotFound(f"no such container: {ref}")
        c = Container(self, row)
        c._refresh_running()
        return c

    FILTERS = ("id", "name", "status", "exited", "ancestor", "label")

    def list(self, all=False, filters=None) -> list[Container]:
        """Running containers (`all`: every one), newest first. `filters` as the
        docker SDK takes them: {"status": "exited", "name": "web", "id": prefix,
        "exited": code, "ancestor": image}; a list of values matches any of them,
        and a status filter looks at every container; label filters ("key" or
        "key=value") must all hold."""
        wanted = {k: v if isinstance(v, (list, tuple)) else [v] for k, v in (filters or {}).items()}
        unknown = set(wanted) - set(self.FILTERS)
        if unknown:
            raise InvalidArgument(f"unknown container filter {sorted(unknown)[0]!r} (known: {', '.join(self.FILTERS)})")
        ancestors = {self.runtime.images.get(ref).id for ref in wanted.get("ancestor", ())}
        out = []
        for row in self.store.db.query("SELECT * FROM containers ORDER BY created DESC"):
            c = Container(self, row)
            c._refresh_running()
            if not (all or "status" in wanted or c.status in ("running", "paused")):
                continue
            if _matches(c, wanted, ancestors):
                out.append(c)
        return out

    def create(self, image, command=None, *, name=None, entrypoint=None, environment=None, working_dir=None,
               user=None, hostname=None, mounts=None, volumes=None, tmpfs=None, volumes_from=None,
               network_mode="none", read_only=False, cap_add=None, cap_drop=None, privileged=False,
               auto_remove=False, init=False, mem_limit=None, memswap_limit=None, mem_reservation=None,
               nano_cpus=None, cpus=None, cpu_shares=None, cpuset_cpus=None, cpuset_mems=None,
               pids_limit=None, stop_signal=None, tty=False, security_opt=None, ports=None,
               log_config=None, labels=None, extra_hosts=None, dns=None, dns_search=None,
               restart_policy=None, devices=None, blkio_weight=None, device_read_bps=None,
               device_write_bps=None, device_read_iops=None, device_write_iops=None) -> Container:
        """A container of `image` (a reference or an Image), not started. Limits
        use the docker SDK's names (mem_limit="256m", nano_cpus or cpus=1.5,
        cpu_shares, cpuset_cpus="0", pids_limit=100, memswap_limit). tty=True: it
        runs on a terminal of its own (detached, its monitor holds it: see attach).
        security_opt: ["seccomp=unconfined"] or ["seccomp=/path/profile.json"] (the
        default is pyrt's profile, pyrt/seccomp.py). ports: the docker SDK's
        {"80/tcp": 8080 | ("127.0.0.1", 8080) | None (a free port)}, forwarded while
        the container runs detached. log_config: the SDK's {"Config": {"max-size":
        "10m", "max-file": "3"}}: the log rotates (as docker's json-file driver).
        labels: a dict, or a list of "key=value" (added to the image's).
        extra_hosts ({"name": "ip"} or ["name:ip"]), dns (["1.1.1.1"]) and
        dns_search: lines of the container's /etc/hosts and /etc/resolv.conf.
        restart_policy: {"Name": "on-failure"|"always"|"unless-stopped", "MaximumRetryCount":
        n}: its monitor starts a detached container again when it ends (not when
        stopped or killed by hand).
        devices: host device nodes to give it, as docker's --device
        ("/dev/kvm", "/dev/sda:/dev/xvda:r", or the SDK's "HOST:CONTAINER:rwm"
        strings): each is bound in and allowed; every other device but docker's
        default list (pyrt.cgroups.devices.DEFAULT_RULES) can be made but not opened.
        blkio_weight (10..1000) and device_read_bps / device_write_bps /
        device_read_iops / device_write_iops (the SDK's [{"Path": "/dev/sda", "Rate":
        1048576}] or "PATH:RATE" strings): block I/O limits."""
        from pyrt.cgroups.cgroup import Limits
        from pyrt.cgroups.devices import parse_device
        device_list = [parse_device(d).to_dict() for d in devices or ()]
        limits = Limits.from_docker(mem_limit=mem_limit, memswap_limit=memswap_limit,
                                    mem_reservation=mem_reservation,
                                    nano_cpus=nano_cpus if cpus is None else float(cpus) * 1e9,
                                    cpu_shares=cpu_shares, cpuset_cpus=cpuset_cpus, cpuset_mems=cpuset_mems,
                                    pids_limit=pids_limit, blkio_weight=blkio_weight,
                                    device_read_bps=device_read_bps, device_write_bps=device_write_bps,
                                    device_read_iops=device_read_iops, device_write_iops=device_write_iops)
        from pyrt.launch.seccomp import from_security_opt
        seccomp = from_security_opt(security_opt, cap_add, privileged)
        img = image if hasattr(image, "layers") else self.runtime.images.get(image)
        _check_platform(img)
        icfg = (img.config or {}).get("config") or {}
        argv = _command(icfg, command, entrypoint)
        if name is not None:
            _check_name(name)
        if network_mode not in ("none", "host"):
            raise InvalidArgument(f"unknown network {network_mode!r}: use none or host")
        published = parse_ports(ports)
        log_opts = parse_log_config(log_config)
        hosts_extra, dns_servers = _extra_hosts(extra_hosts), _addresses(dns, "dns")
        policy = _restart_policy(restart_policy)
        if policy and auto_remove:
            raise InvalidArgument("a restart policy and --rm (auto_remove) conflict: choose one")
        if published and network_mode == "host":
            raise InvalidArgument("published ports with the host network: the container already uses the "
                                  "host's ports")
        inherited = []
        for ref in volumes_from or ():
            ref, _, mode = ref.partition(":")
            if mode not in ("", "ro", "rw"):
                raise InvalidArgument(f"invalid volumes-from mode {mode!r}: expected ro or rw")
            for m in self.get(ref).config.get("Mounts", []):
                if m["Type"] in ("bind", "volume"):
                    m = dict(m)
                    if mode:
                        m["RW"] = mode == "rw"
                    inherited.append(m)
        mount_list = collect_mounts(volumes, tmpfs, mounts, inherited)
        covered = {os.path.normpath(m["Destination"]) for m in mount_list}
        for path in sorted(icfg.get("Volumes") or {}):  # the image's VOLUMEs: anonymous volumes
            if os.path.normpath(path) not in covered:
                mount_list.append({"Type": "volume", "Name": None, "Destination": path, "RW": True, "NoCopy": False})
        cid = secrets.token_hex(32)
        hostname = hostname or cid[:12]
        env = _env_list_to_dict(icfg.get("Env"))
        if isinstance(environment, dict):
            env.update({k: str(v) for k, v in environment.items()})
        else:
            env.update(_env_list_to_dict(environment))
        env.setdefault("PATH", DEFAULT_PATH)
        if tty:
            env.setdefault("TERM", "xterm")
        env["HOSTNAME"] = hostname
        user = user if user is not None else icfg.get("User", "")
        layers_top_first = _layer_paths(img)
        if user:
            from pyrt.launch.userdb import resolve_user
            resolve_user(user, layers_top_first)  # an unknown user is an error now, not at start
        if "HOME" not in env:
            from pyrt.launch.userdb import home_of, resolve_user
            uid = resolve_user(user, layers_top_first)[0] if user else 0
            env["HOME"] = home_of(uid, layers_top_first)
        driver = self.runtime.storage_driver
        config = {
            "Cmd": argv, "Env": [f"{k}={v}" for k, v in env.items()],
            "WorkingDir": working_dir if working_dir is not None else icfg.get("WorkingDir", ""),
            "User": user, "Hostname": hostname, "Mounts": mount_list, "NetworkMode": network_mode,
            "ReadOnly": bool(read_only), "CapAdd": list(cap_add or []), "CapDrop": list(cap_drop or []),
            "Privileged": bool(privileged), "AutoRemove": bool(auto_remove), "Driver": driver,
            "ImageRef": image if isinstance(image, str) else img.id,
            "StopSignal": stop_signal or icfg.get("StopSignal") or "SIGTERM",
            "Limits": limits.to_dict(), "Init": bool(init), "Tty": bool(tty), "Seccomp": seccomp,
            "Ports": published, "LogConfig": log_opts,
            "Labels": {**(icfg.get("Labels") or {}), **_labels(labels)},
            "RestartPolicy": policy, "Devices": device_list,
        }
        cdir = os.path.join(self.store.root, "containers", cid)
        os.mkdir(cdir, 0o700)
        new_volumes = []
        try:
            os.mkdir(os.path.join(cdir, "upper"), 0o755)
            os.mkdir(os.path.join(cdir, "work"), 0o700)
            _write_etc_files(cdir, hostname, network_mode, hosts_extra, dns_servers, list(dns_search or ()))
            if driver != "copy":
                _make_init_layer(cdir, config["WorkingDir"], layers_top_first)
            if driver == "copy":
                from pyrt import _core
                rootfs = os.path.join(cdir, "rootfs")
                os.mkdir(rootfs, 0o755)
                for layer in img.layers:  # bottom-up, applying whiteouts
                    _core.copy_tree(layer.path, rootfs, whiteouts=True)
                _make_copy_init(cdir, rootfs, config["WorkingDir"])
            self._prepare_volumes(mount_list, img, new_volumes)
            name = name or self._free_name()
            with self.store.db.transaction() as tx:
                if tx.query_one("SELECT 1 FROM containers WHERE name=?", (name,)):
                    raise Conflict(f"the container name {name!r} is already in use: remove that container "
                                   "or choose another name")
                if tx.query_one("SELECT 1 FROM images WHERE id=?", (img.id,)) is None:
                    raise Conflict(f"image {img.id[7:19]} was removed meanwhile")
                tx.execute("INSERT INTO containers (id, name, image_id, created, config, state) VALUES (?,?,?,?,?,?)",
                           (cid, name, img.id, time.time(), json.dumps(config), json.dumps({"Status": "created"})))
        except BaseException:
            _rmtree(cdir)
            for v in new_volumes:
                try:
                    v._c._delete(v.name)
                except LookupError:
                    pass
            raise
        return self.get(cid)

    def _prepare_volumes(self, mount_list, img, new_volumes):
        """Create the named volumes that do not exist yet and the anonymous ones,
        and fill new, empty ones with the image's content at their destination."""
        vols = self.runtime.volumes
        from pyrt.containers.volumes import populate
        for m in mount_list:
            if m["Type"] != "volume":
                continue
            if m["Name"] is None:
                v = vols.create(anonymous=True)
                m["Name"], m["Anonymous"] = v.name, True
                new_volumes.append(v)
            else:
                try:
                    v = vols.get(m["Name"])
                except LookupError:
                    v = vols.create(m["Name"])
                    new_volumes.append(v)
            m["Source"] = v.mountpoint
            if not m.get("NoCopy"):
                populate(v, [layer.path for layer in img.layers], m["Destination"])

    def _free_name(self):
        for _ in range(100):
            n = f"{secrets.choice(_ADJECTIVES)}_{secrets.choice(_NAMES)}"
            if not self.store.db.query_one("SELECT 1 FROM containers WHERE name=?", (n,)):
                return n
        return "pyrt_" + secrets.token_hex(4)

    def run(self, image, command=None, *, stdout=True, stderr=False, remove=False, detach=False, **kwargs):
        """Create and start; wait and return its output (stdout by default), as the
        docker SDK does. Raises ContainerError on a non-zero exit."""
        if detach:
            c = self.create(image, command, auto_remove=remove, **kwargs)
            try:
                c.start()
            except BaseException:
                c.remove(force=True, v=True)
                raise
            return c
        import pyrt
        if kwargs.get("ports"):
            raise InvalidArgument("published ports need a detached container (detach=True): its monitor "
                                  "forwards them")
        c = self.create(image, command, auto_remove=False, **kwargs)
        try:
            proc = c.start_process(stdin=pyrt.DEVNULL, stdout=pyrt.PIPE,
                                   stderr=pyrt.PIPE)
            out, err = proc.communicate()
            from pyrt.containers.lifecycle import LogWriter
            log = LogWriter(c)  # `logs` shows what a foreground run printed too
            log.write("stdout", out)
            log.write("stderr", err)
            log.close()
            c.finished(proc.returncode)
            code = c.state["ExitCode"]
            if code != 0:
                raise ContainerError(c, code, c.config["Cmd"], c.config["ImageRef"], err)
            return (out if stdout else b"") + (err if stderr else b"")
        finally:
            if remove:
                c.remove(force=True)

    def prune(self, filters=None):
        """Removes every stopped container (created, exited or dead; running and
        paused ones stay). docker SDK's result: {"ContainersDeleted", "SpaceReclaimed"}."""
        if filters:
            raise InvalidArgument("container prune: filters are not supported")
        from pyrt.store.layers import tree_size
        removed, freed = [], 0
        for c in self.list(all=True):
            if c.status in ("created", "exited", "dead"):
                size = tree_size(c.dir)
                try:
                    c.remove()
                except (Conflict, ContainerNotFound):  # started or removed meanwhile
                    continue
                removed.append(c.id)
                freed += size
        return {"ContainersDeleted": removed, "SpaceReclaimed": freed}


def _matches(c, wanted: dict, ancestors: set) -> bool:
    import re
    checks = {
        "id": lambda v: c.id.startswith(v),
        "name": lambda v: re.search(v, c.name) is not None,
        "status": lambda v: c.status == v,
        "exited": lambda v: c.status == "exited" and str(c.state.get("ExitCode")) == str(v),
        "ancestor": lambda v: c.image_id in ancestors,
    }
    from pyrt.images.catalog import all_labels_match
    return all(all_labels_match(c.config.get("Labels", {}), values) if k == "label"
               else any(checks[k](v) for v in values) for k, values in wanted.items())


def parse_ports(ports) -> list[dict]:
    """docker SDK's ports {"80/tcp": 8080 | ("ip", port) | None} as the config's
    [{"HostIp", "HostPort", "ContainerPort", "Protocol"}]; a free host port for None."""
    import ipaddress
    import socket
    out = []
    for key, host in (ports or {}).items():
        cport, _, proto = str(key).partition("/")
        proto = proto or "tcp"
        if proto != "tcp":
            raise InvalidArgument(f"publish {key}: only TCP ports can be published")
        ip, hport = host if isinstance(host, (tuple, list)) else ("0.0.0.0", host)
        try:
            cport = int(cport)
            ipaddress.IPv4Address(ip)
            if hport is None or hport == "":
                with socket.socket() as s:  # a free port now (docker picks one the same way)
                    s.bind((ip, 0))
                    hport = s.getsockname()[1]
            hport = int(hport)
        except ValueError:
            raise InvalidArgument(f"invalid port mapping {key!r}: {host!r} (an IPv4 address and ports 1-65535)") \
                from None
        if not (0 < cport < 65536 and 0 < hport < 65536):
            raise InvalidArgument(f"invalid port mapping {key!r}: {host!r} (ports are 1-65535)")
        out.append({"HostIp": ip, "HostPort": hport, "ContainerPort": cport, "Protocol": proto})
    return out


def _restart_policy(policy) -> dict:
    """The SDK's {"Name", "MaximumRetryCount"}, checked; {} for none."""
    if not policy or policy.get("Name", "no") in ("", "no"):
        return {}
    name, tries = policy.get("Name"), policy.get("MaximumRetryCount", 0)
    if name not in ("on-failure", "always", "unless-stopped"):
        raise InvalidArgument(f"invalid restart policy {name!r}: no, on-failure[:N], always or unless-stopped")
    if not isinstance(tries, int) or tries < 0 or (tries and name != "on-failure"):
        raise InvalidArgument(f"invalid restart policy {name}:{tries}: a count only with on-failure")
    return {"Name": name, "MaximumRetryCount": tries}


def _extra_hosts(extra) -> list:
    """[(name, ip)] of docker's extra_hosts ({"name": "ip"} or ["name:ip"])."""
    import ipaddress
    pairs = extra.items() if isinstance(extra, dict) else [str(e).partition(":")[::2] for e in extra or ()]
    out = []
    for name, ip in pairs:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise InvalidArgument(f"invalid --add-host {name}:{ip}: use NAME:IP") from None
        if not name or any(c.isspace() for c in name):
            raise InvalidArgument(f"invalid --add-host {name}:{ip}: use NAME:IP")
        out.append((name, ip))
    return out


def _addresses(values, what) -> list:
    import ipaddress
    for v in values or ():
        try:
            ipaddress.ip_address(v)
        except ValueError:
            raise InvalidArgument(f"invalid --{what} {v!r}: an IP address") from None
    return list(values or ())


def _labels(labels) -> dict:
    """A dict, or docker's ["key=value", "key"] list."""
    if isinstance(labels, dict):
        return {str(k): str(v) for k, v in labels.items()}
    out = {}
    for item in labels or ():
        key, _, value = str(item).partition("=")
        if not key:
            raise InvalidArgument(f"invalid label {item!r}: use key=value")
        out[key] = value
    return out


def parse_log_config(log_config) -> dict:
    """The SDK's log_config ({"Type": "json-file", "Config": {"max-size", "max-file"}})
    as {"MaxSize": bytes, "MaxFiles": n}; {} for no rotation."""
    if not log_config:
        return {}
    cfg = log_config.get("Config", log_config.get("config", {})) if isinstance(log_config, dict) else None
    kind = log_config.get("Type", log_config.get("type", "json-file")) if isinstance(log_config, dict) else None
    if not isinstance(cfg, dict) or kind not in ("json-file", "k8s-file", "local"):
        raise InvalidArgument(f"unsupported log config {log_config!r}: pyrt keeps one log per container "
                              "(options max-size and max-file)")
    unknown = set(cfg) - {"max-size", "max-file"}
    if unknown:
        raise InvalidArgument(f"unsupported log option {sorted(unknown)[0]!r}: use max-size and max-file")
    out = {}
    if cfg.get("max-size") not in (None, "", "-1"):
        from pyrt.cgroups.cgroup import parse_bytes
        out["MaxSize"] = parse_bytes(cfg["max-size"])
        if out["MaxSize"] <= 0:
            raise InvalidArgument(f"invalid log max-size {cfg['max-size']!r}")
    if "max-file" in cfg:
        try:
            out["MaxFiles"] = int(cfg["max-file"])
        except (TypeError, ValueError):
            out["MaxFiles"] = 0
        if out["MaxFiles"] < 1:
            raise InvalidArgument(f"invalid log max-file {cfg['max-file']!r}: a number, at least 1")
        if "MaxSize" not in out:
            raise InvalidArgument("log max-file needs max-size")
    return out


def port_map(published: list) -> dict:
    """docker's {"80/tcp": [{"HostIp": ..., "HostPort": "8080"}]}."""
    out: dict = {}
    for p in published:
        out.setdefault(f"{p['ContainerPort']}/{p['Protocol']}", []).append(
            {"HostIp": p["HostIp"], "HostPort": str(p["HostPort"])})
    return out


def _check_name(name) -> None:
    import re
    if not isinstance(name, str) or not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*", name):
        raise InvalidArgument(f"invalid container name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")


def _write_etc_files(cdir, hostname, network_mode, extra_hosts=(), dns=(), dns_search=()):
    """/etc/hostname, /etc/hosts (plus --add-host lines) and /etc/resolv.conf (the
    host's, or --dns/--dns-search) of a container."""
    with open(os.path.join(cdir, "hostname"), "w") as f:
        f.write(hostname + "\n")
    hosts = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    if network_mode == "host":
        try:
            with open("/etc/hosts") as f:
                hosts = f.read()
        except OSError:
            pass
    else:
        hosts += f"127.0.1.1\t{hostname}\n"
    hosts += "".join(f"{ip}\t{name}\n" for name, ip in extra_hosts)
    with open(os.path.join(cdir, "hosts"), "w") as f:
        f.write(hosts)
    try:
        with open("/etc/resolv.conf") as f:
            resolv = f.read()
    except OSError:
        resolv = ""
    if dns or dns_search:
        kept = [ln for ln in resolv.splitlines() if not ln.startswith("nameserver" if dns else "search")
                and not (dns_search and ln.startswith("search"))]
        resolv = "\n".join(kept + [f"search {' '.join(dns_search)}"] * bool(dns_search)
                           + [f"nameserver {ip}" for ip in dns]) + "\n"
    with open(os.path.join(cdir, "resolv.conf"), "w") as f:
        f.write(resolv)


def _in_image(lowers, rel) -> bool:
    """Does some layer have `rel` (a relative path)? Whiteouts are not looked at:
    this only decides whether a placeholder is needed."""
    return any(os.path.lexists(os.path.join(lower, rel)) for lower in lowers)


def _make_init_layer(cdir, workdir, lowers):
    """The container's init layer (as docker has): a read-only layer between the
    image and the container's upper dir holding the mount points pyrt adds (/proc,
    /sys, /dev, /etc/hosts, /etc/hostname, /etc/resolv.conf) and the working dir,
    when the image lacks them, so they never show in `diff` or `commit`."""
    init = os.path.join(cdir, "init")
    os.mkdir(init, 0o755)
    for d in ("proc", "sys", "dev"):
        if not _in_image(lowers, d):
            os.mkdir(os.path.join(init, d), 0o755)
    for name in ("hostname", "hosts", "resolv.conf"):
        rel = os.path.join("etc", name)
        if not _in_image(lowers, rel) and not any(os.path.islink(os.path.join(lo, "etc")) for lo in lowers):
            os.makedirs(os.path.join(init, "etc"), mode=0o755, exist_ok=True)
            open(os.path.join(init, rel), "w").close()
    rel = (workdir or "").strip("/")
    if rel and ".." not in rel.split("/") and not _in_image(lowers, rel):
        # a symlink on the way in the image: the spawn core creates it inside the root
        parts = rel.split("/")
        if not any(os.path.islink(os.path.join(lo, *parts[:i + 1])) for lo in lowers for i in range(len(parts))):
            os.makedirs(os.path.join(init, rel), mode=0o755, exist_ok=True)


def _make_copy_init(cdir, rootfs, workdir):
    """The `copy` driver's init layer: the mount points pyrt adds (/proc, /sys, /dev,
    /etc/hostname, /etc/hosts, /etc/resolv.conf) and the working dir are made in the
    materialized root when the image lacks them (the times of the dir they are made in
    kept; never through a symlink: the spawn core resolves those inside the root), and
    mirrored, with the same metadata, in containers/<id>/init, which `diff` and
    `commit` compare the root with on top of the image: so they never show there."""
    made = []

    def make(rel, directory):
        parts = [p for p in rel.split("/") if p and p != "."]
        if not parts or ".." in parts:
            return
        if any(os.path.islink(os.path.join(rootfs, *parts[:i + 1])) for i in range(len(parts))):
            return
        i = 0
        while os.path.lexists(os.path.join(rootfs, *parts[:i + 1])):
            i += 1
            if i == len(parts):
                return  # the image has it
        anchor = os.path.join(rootfs, *parts[:i])
        if not os.path.isdir(anchor):
            return
        st = os.lstat(anchor)
        for j in range(i, len(parts)):
            path = os.path.join(rootfs, *parts[:j + 1])
            if j < len(parts) - 1 or directory:
                os.mkdir(path, 0o755)
            else:
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644))
        made.append(parts)
        os.utime(anchor, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)

    for d in ("proc", "sys", "dev"):
        make(d, True)
    for name in ("hostname", "hosts", "resolv.conf"):
        make("etc/" + name, False)
    make(workdir or "", True)
    init = os.path.join(cdir, "init")
    os.mkdir(init, 0o755)
    entries = set()
    for parts in made:
        entries.update(tuple(parts[:k]) for k in range(1, len(parts) + 1))
    for parts in sorted(entries, key=len):
        src, dst = os.path.join(rootfs, *parts), os.path.join(init, *parts)
        if os.path.isdir(src):
            os.mkdir(dst, 0o755)
        else:
            os.close(os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644))
    for parts in sorted(entries, key=len, reverse=True):  # deepest first: a dir's times after its children
        src, dst = os.path.join(rootfs, *parts), os.path.join(init, *parts)
        st = os.lstat(src)
        for name in os.listxattr(src, follow_symlinks=False):
            if not name.startswith(("trusted.overlay.", "user.overlay.")):
                os.setxattr(dst, name, os.getxattr(src, name, follow_symlinks=False), follow_symlinks=False)
        os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
        os.chmod(dst, stat.S_IMODE(st.st_mode))
        os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
