"""Typed reads of a runtime spec's (config.json's) fields: each check returns the
value or raises a ConfigError that names the field ("config.json: process.cwd:
..."). Shared by pyrt.ocirt (the whole config) and pyrt.launch.seccomp (a
linux.seccomp profile, also given to `pyrt run --security-opt`)."""
from __future__ import annotations

from pyrt.errors import ConfigError


def err(where: str, msg: str) -> ConfigError:
    return ConfigError(f"config.json: {where}: {msg}")


def typed(value, types, where: str, what: str):
    """`value` if it is of `types` (a bool is no integer unless bool is named)."""
    allowed = types if isinstance(types, tuple) else (types,)
    if not isinstance(value, types) or isinstance(value, bool) and bool not in allowed:
        raise err(where, f"expected {what}, got {type(value).__name__}")
    return value


def integer(value, where: str, lo=None, hi=None) -> int:
    typed(value, int, where, "an integer")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise err(where, f"{value} is out of range")
    return value


def str_list(value, where: str) -> list:
    typed(value, list, where, "a list of strings")
    for i, v in enumerate(value):
        typed(v, str, f"{where}[{i}]", "a string")
    return value
