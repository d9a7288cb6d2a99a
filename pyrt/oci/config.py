"""Image config changes: docker's `--change` instructions (`CMD`, `ENTRYPOINT`, `ENV`,
`EXPOSE`, `LABEL`, `STOPSIGNAL`, `USER`, `VOLUME`, `WORKDIR`) and dicts of config keys
(`Cmd`, `Entrypoint`, `Env`, `WorkingDir`, `User`, `ExposedPorts`, `Volumes`, `Labels`,
`StopSignal`, `Shell`, `Healthcheck`, `OnBuild`), applied to the `config` section of an
image config."""
from __future__ import annotations

import json
import shlex

from pyrt.errors import InvalidArgument

# The PATH of a container whose image sets none (docker's).
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

CONFIG_KEYS = ("Cmd", "Entrypoint", "Env", "WorkingDir", "User", "ExposedPorts", "Volumes",
               "Labels", "StopSignal", "Shell", "Healthcheck", "OnBuild")
_INSTRUCTIONS = {"CMD": "Cmd", "ENTRYPOINT": "Entrypoint", "ENV": "Env", "EXPOSE": "ExposedPorts",
                 "LABEL": "Labels", "STOPSIGNAL": "StopSignal", "USER": "User", "VOLUME": "Volumes",
                 "WORKDIR": "WorkingDir"}


def _json_list(text):
    if text.startswith("["):
        try:
            value = json.loads(text)
        except ValueError:
            return None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    return None


def _pairs(text, instr):
    """`K=V K2="v 2"` (or the legacy `K V` form for ENV/LABEL)."""
    try:
        words = shlex.split(text, posix=True)
    except ValueError as e:
        raise InvalidArgument(f"invalid {instr} change {text!r}: {e}") from None
    if not words:
        raise InvalidArgument(f"{instr} needs at least one argument")
    if "=" not in words[0]:
        key, _, value = text.partition(" ")
        return [(key, value.strip())]
    out = []
    for w in words:
        key, eq, value = w.partition("=")
        if not eq or not key:
            raise InvalidArgument(f"invalid {instr} change {text!r}: {w!r} is not KEY=VALUE")
        out.append((key, value))
    return out


def parse_change(line: str) -> dict:
    """One docker `--change` instruction as a dict of config keys."""
    if not isinstance(line, str) or not line.strip():
        raise InvalidArgument("empty --change instruction")
    instr, _, rest = line.strip().partition(" ")
    instr = instr.upper()
    rest = rest.strip()
    if instr not in _INSTRUCTIONS:
        raise InvalidArgument(f"invalid change {line.strip()!r}: {instr} is not one of "
                              + ", ".join(sorted(_INSTRUCTIONS)))
    if instr in ("CMD", "ENTRYPOINT"):
        if not rest:
            return {_INSTRUCTIONS[instr]: None}
        value = _json_list(rest)
        return {_INSTRUCTIONS[instr]: value if value is not None else ["/bin/sh", "-c", rest]}
    if not rest:
        raise InvalidArgument(f"{instr} needs an argument")
    if instr == "ENV":
        return {"Env": [f"{k}={v}" for k, v in _pairs(rest, instr)]}
    if instr == "LABEL":
        return {"Labels": dict(_pairs(rest, instr))}
    if instr == "EXPOSE":
        return {"ExposedPorts": rest.split()}
    if instr == "VOLUME":
        value = _json_list(rest)
        return {"Volumes": value if value is not None else rest.split()}
    return {_INSTRUCTIONS[instr]: rest}


def normalize_changes(changes) -> dict:
    """A dict of config keys from a dict, a string instruction, or a list of either."""
    if not changes:
        return {}
    if isinstance(changes, str):
        changes = [changes]
    if isinstance(changes, dict):
        changes = [changes]
    merged: dict = {}
    for c in changes:
        d = parse_change(c) if isinstance(c, str) else c
        if not isinstance(d, dict):
            raise InvalidArgument(f"invalid config change {c!r}")
        for key, value in d.items():
            if key not in CONFIG_KEYS:
                raise InvalidArgument(f"unsupported config change {key!r}: expected one of "
                                      + ", ".join(CONFIG_KEYS))
            if key in ("Env", "ExposedPorts", "Volumes") and key in merged:
                merged[key] = list(_as_list(merged[key], key)) + list(_as_list(value, key))
            elif key == "Labels" and key in merged:
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
    return merged


def _as_list(value, key):
    if isinstance(value, dict):
        if key == "Env":
            return [f"{k}={v}" for k, v in value.items()]
        return list(value)
    if isinstance(value, str):
        return [value]
    return list(value)


def _port(p):
    p = str(p)
    return p if "/" in p else p + "/tcp"


def apply_changes(config: dict | None, changes) -> dict:
    """A new `config` section: `config` with the changes applied (Env, Labels,
    ExposedPorts, Volumes merge; the rest replace)."""
    out = dict(config or {})
    for key, value in normalize_changes(changes).items():
        if key in ("Cmd", "Entrypoint", "Shell"):
            if isinstance(value, str):
                value = ["/bin/sh", "-c", value]
            out[key] = list(value) if value is not None else None
        elif key == "Env":
            env = list(out.get("Env") or [])
            for item in _as_list(value, key):
                name = item.partition("=")[0]
                env = [e for e in env if e.partition("=")[0] != name]
                env.append(item)
            out["Env"] = env
        elif key == "Labels":
            labels = dict(out.get("Labels") or {})
            labels.update({str(k): str(v) for k, v in dict(value).items()})
            out["Labels"] = labels
        elif key == "ExposedPorts":
            ports = dict(out.get("ExposedPorts") or {})
            for p in _as_list(value, key):
                ports[_port(p)] = {}
            out["ExposedPorts"] = ports
        elif key == "Volumes":
            vols = dict(out.get("Volumes") or {})
            for v in _as_list(value, key):
                vols[str(v)] = {}
            out["Volumes"] = vols
        else:
            out[key] = value
    return out
