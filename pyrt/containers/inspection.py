"""A container as `docker inspect` and `docker stats` show it: the docker SDK's
shapes of its record (Container.attrs) and of its cgroup's figures
(Container.stats)."""
from __future__ import annotations

import os
import time

from pyrt.containers.options import port_map


def _now_iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


def attrs(c) -> dict:
    """What `docker inspect` shows, in its shape."""
    s = c.state
    return {
        "Id": c.id,
        "Created": _now_iso(c.created),
        "Path": c.config["Cmd"][0],
        "Args": c.config["Cmd"][1:],
        "State": {
            "Status": c.status,
            "Running": c.status == "running",
            "Pid": s.get("Pid", 0),
            "ExitCode": s.get("ExitCode", 0),
            "OOMKilled": s.get("OOMKilled", False),
            "StartedAt": _now_iso(s["StartedAt"]) if s.get("StartedAt") else "0001-01-01T00:00:00Z",
            "FinishedAt": _now_iso(s["FinishedAt"]) if s.get("FinishedAt") else "0001-01-01T00:00:00Z",
        },
        "Image": c.image_id,
        "Name": "/" + c.name,
        "RestartCount": s.get("RestartCount", 0),
        "Driver": c.config.get("Driver", "overlay"),
        "Mounts": c.config.get("Mounts", []),
        "Config": {
            "Hostname": c.config.get("Hostname"),
            "User": c.config.get("User", ""),
            "Env": c.config.get("Env", []),
            "Cmd": c.config["Cmd"],
            "WorkingDir": c.config.get("WorkingDir", ""),
            "Image": c.config.get("ImageRef", c.image_id),
            "Labels": c.config.get("Labels", {}),
        },
        "NetworkSettings": {"Ports": port_map(c.config.get("Ports", [])), **_network_settings(c)},
        "HostConfig": {
            "PortBindings": port_map(c.config.get("Ports", [])),
            "RestartPolicy": c.config.get("RestartPolicy") or {"Name": "no", "MaximumRetryCount": 0},
            "LogConfig": {"Type": "json-file", "Config": {
                k: str(v) for k, v in (("max-size", c.config.get("LogConfig", {}).get("MaxSize")),
                                       ("max-file", c.config.get("LogConfig", {}).get("MaxFiles")))
                if v is not None}},
            "NetworkMode": c.config.get("NetworkMode", "none"),
            "ReadonlyRootfs": c.config.get("ReadOnly", False),
            "AutoRemove": c.config.get("AutoRemove", False),
            "CapAdd": c.config.get("CapAdd", []),
            "CapDrop": c.config.get("CapDrop", []),
            "Privileged": c.config.get("Privileged", False),
        },
        "GraphDriver": {"Name": c.config.get("Driver", "overlay"),
                        "Data": {"UpperDir": c._upper(), "LowerDir": ":".join(c._union_lowers())}},
    }


def stats(c, s: dict) -> dict:
    """The cgroup's figures `s` (pyrt.cgroups Cgroup.stats) in the docker SDK's shape
    (cpu_stats, memory_stats, pids_stats), plus pyrt's flat `pyrt` view."""
    return {
        "read": _now_iso(time.time()), "id": c.id, "name": "/" + c.name,
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


def _network_settings(container) -> dict:
    from pyrt.network.endpoints import settings
    return settings(container)
