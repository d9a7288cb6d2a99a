"""The options of a new container, in docker's forms (the command, published ports,
restart policy, extra hosts, DNS, labels, log rotation, the name), checked and turned
into the values of the container's config."""
from __future__ import annotations

from pyrt.errors import InvalidArgument


def env_list_to_dict(items) -> dict:
    out = {}
    for item in items or ():
        k, _, v = item.partition("=")
        out[k] = v
    return out


def container_argv(image_cfg: dict, command, entrypoint) -> list[str]:
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


def parse_ports(ports) -> list[dict]:
    """docker SDK's ports {"80/tcp": 8080 | ("ip", port) | None} as the config's
    [{"HostIp", "HostPort", "ContainerPort", "Protocol"}]; a free host port for None."""
    if not ports:
        return []  # before the imports: socket and ipaddress cost a plain `pyrt run` more than its work (measured)
    import ipaddress
    import socket
    out = []
    for key, host in (ports or {}).items():
        cport, _, proto = str(key).partition("/")
        proto = proto or "tcp"
        if proto not in ("tcp", "udp"):
            raise InvalidArgument(f"publish {key}: the protocol is tcp or udp")
        ip, hport = host if isinstance(host, (tuple, list)) else ("0.0.0.0", host)
        try:
            cport = int(cport)
            ipaddress.IPv4Address(ip)
            if hport is None or hport == "":
                kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
                with socket.socket(socket.AF_INET, kind) as s:  # a free port now (docker picks one the same way)
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


def parse_restart_policy(policy) -> dict:
    """The SDK's {"Name", "MaximumRetryCount"}, checked; {} for none."""
    if not policy or policy.get("Name", "no") in ("", "no"):
        return {}
    name, tries = policy.get("Name"), policy.get("MaximumRetryCount", 0)
    if name not in ("on-failure", "always", "unless-stopped"):
        raise InvalidArgument(f"invalid restart policy {name!r}: no, on-failure[:N], always or unless-stopped")
    if not isinstance(tries, int) or tries < 0 or (tries and name != "on-failure"):
        raise InvalidArgument(f"invalid restart policy {name}:{tries}: a count only with on-failure")
    return {"Name": name, "MaximumRetryCount": tries}


def parse_extra_hosts(extra) -> list:
    """[(name, ip)] of docker's extra_hosts ({"name": "ip"} or ["name:ip"])."""
    if not extra:
        return []
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


def parse_addresses(values, what) -> list:
    if not values:
        return []
    import ipaddress
    for v in values or ():
        try:
            ipaddress.ip_address(v)
        except ValueError:
            raise InvalidArgument(f"invalid --{what} {v!r}: an IP address") from None
    return list(values or ())


def parse_labels(labels) -> dict:
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
        from pyrt.cgroups.limits import parse_bytes  # on use: `pyrt ps` loads this module
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


def check_name(name) -> None:
    import re
    if not isinstance(name, str) or not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*", name):
        raise InvalidArgument(f"invalid container name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
