"""The OCI image documents: index, manifest, config. `parse_*` validate what pyrt relies
on and raise ImageFormatError naming the document and the problem; `*_json` emit them
canonically (the same input always gives the same bytes, hence the same digest)."""
from __future__ import annotations

import json
import time

from pyrt.errors import ImageFormatError, InvalidArgument, PlatformWarning
from pyrt.oci import mediatypes as mt
from pyrt.oci.digest import validate_digest


def dumps(obj) -> bytes:
    """Compact, deterministic JSON (key order as built)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def load_json(data, what: str) -> dict:
    try:
        if isinstance(data, (bytes, bytearray)):
            data = bytes(data).decode("utf-8")
        obj = json.loads(data)
    except (UnicodeDecodeError, ValueError) as e:
        raise ImageFormatError(f"invalid JSON in {what}: {e}") from None
    if not isinstance(obj, dict):
        raise ImageFormatError(f"invalid {what}: expected a JSON object, got {type(obj).__name__}")
    return obj


def _str_map(value, what):
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                              for k, v in value.items()):
        raise ImageFormatError(f"invalid {what}: annotations must map strings to strings")
    return value


def parse_descriptor(d, what: str) -> dict:
    if not isinstance(d, dict):
        raise ImageFormatError(f"invalid {what}: a descriptor must be a JSON object")
    media_type = d.get("mediaType")
    if not isinstance(media_type, str) or not media_type:
        raise ImageFormatError(f"invalid {what}: missing mediaType")
    validate_digest(d.get("digest"), f"digest in {what}")
    size = d.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ImageFormatError(f"invalid {what}: size must be a non-negative integer, got {size!r}")
    out = {"mediaType": media_type, "digest": d["digest"], "size": size}
    if d.get("annotations"):
        out["annotations"] = dict(_str_map(d.get("annotations"), what))
    if isinstance(d.get("platform"), dict):
        out["platform"] = d["platform"]
    return out


def parse_index(data, what: str = "index") -> dict:
    obj = load_json(data, what) if not isinstance(data, dict) else data
    if obj.get("schemaVersion") != 2:
        raise ImageFormatError(f"invalid {what}: schemaVersion must be 2, got {obj.get('schemaVersion')!r}")
    media_type = obj.get("mediaType")
    if media_type is not None and media_type not in mt.INDEX_TYPES:
        if media_type in mt.MANIFEST_TYPES:
            raise ImageFormatError(f"invalid {what}: it is a manifest ({media_type}), not an index")
        raise ImageFormatError(f"invalid {what}: unknown media type {media_type!r}")
    manifests = obj.get("manifests")
    if not isinstance(manifests, list):
        raise ImageFormatError(f"invalid {what}: 'manifests' must be a list")
    obj = dict(obj)
    obj["manifests"] = [parse_descriptor(m, f"{what} entry {i}") for i, m in enumerate(manifests)]
    _str_map(obj.get("annotations"), what)
    return obj


def parse_manifest(data, what: str = "manifest", descriptor_media_type: str | None = None) -> dict:
    obj = load_json(data, what) if not isinstance(data, dict) else data
    media_type = obj.get("mediaType")
    if "manifests" in obj or media_type in mt.INDEX_TYPES:
        raise ImageFormatError(f"invalid {what}: it claims to be an image manifest but is an index "
                               f"({media_type or 'has manifests'})")
    if media_type is not None and media_type not in mt.MANIFEST_TYPES:
        raise ImageFormatError(f"invalid {what}: unknown media type {media_type!r}")
    if obj.get("schemaVersion") != 2:
        raise ImageFormatError(f"invalid {what}: schemaVersion must be 2, got {obj.get('schemaVersion')!r}")
    config = parse_descriptor(obj.get("config"), f"{what} config")
    if config["mediaType"] not in mt.CONFIG_TYPES:
        raise ImageFormatError(f"invalid {what}: unknown config media type {config['mediaType']!r}")
    layers = obj.get("layers")
    if not isinstance(layers, list):
        raise ImageFormatError(f"invalid {what}: 'layers' must be a list")
    parsed = []
    for i, layer in enumerate(layers):
        d = parse_descriptor(layer, f"{what} layer {i}")
        if mt.layer_compression(d["mediaType"]) is None:
            raise ImageFormatError(f"invalid {what}: layer {i} ({d['digest']}) has an unknown "
                                   f"media type {d['mediaType']!r}")
        parsed.append(d)
    obj = dict(obj)
    obj["config"], obj["layers"] = config, parsed
    _str_map(obj.get("annotations"), what)
    return obj


def parse_config(data, what: str = "image config") -> dict:
    obj = load_json(data, what) if not isinstance(data, dict) else data
    rootfs = obj.get("rootfs")
    if not isinstance(rootfs, dict) or rootfs.get("type") != "layers":
        raise ImageFormatError(f"invalid {what}: rootfs.type must be 'layers'")
    diff_ids = rootfs.get("diff_ids")
    if not isinstance(diff_ids, list):
        raise ImageFormatError(f"invalid {what}: rootfs.diff_ids must be a list")
    for i, d in enumerate(diff_ids):
        validate_digest(d, f"{what} diff_id {i}")
    for key in ("architecture", "os"):
        if key in obj and not isinstance(obj[key], str):
            raise ImageFormatError(f"invalid {what}: {key} must be a string")
    if "config" in obj and obj["config"] is not None and not isinstance(obj["config"], dict):
        raise ImageFormatError(f"invalid {what}: 'config' must be an object")
    if "history" in obj and not isinstance(obj["history"], list):
        raise ImageFormatError(f"invalid {what}: 'history' must be a list")
    return obj


# uname's machine -> the GOARCH names image configs use
GOARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "armv7l": "arm",
          "armv6l": "arm", "i386": "386", "i686": "386", "ppc64le": "ppc64le", "s390x": "s390x",
          "riscv64": "riscv64", "mips64": "mips64", "loongarch64": "loong64"}


def host_arch() -> str:
    import os
    m = os.uname().machine  # what platform.machine() returns, without importing platform (measured)
    return GOARCH.get(m, m)


def check_runnable(cfg) -> str | None:
    """Whether an image (its config) can run here: an image for another OS is an
    error (docker's message); one for another architecture gives a note (the
    returned text), as it may still run (binfmt_misc emulation)."""
    cfg = cfg or {}
    os_ = cfg.get("os")
    if os_ and os_ != "linux":
        raise InvalidArgument(f'image operating system "{os_}" cannot be used on this platform')
    arch, host = cfg.get("architecture"), host_arch()
    if arch and arch != host:
        variant = f"/{cfg['variant']}" if cfg.get("variant") else ""
        return (f"the image's platform (linux/{arch}{variant}) does not match the host platform "
                f"(linux/{host}): it may not run")
    return None


def check_platform(cfg) -> None:
    """check_runnable for the code that starts an image's containers: an image for
    another OS is refused; one for another architecture gives a PlatformWarning
    (Python's warnings), pointing at that code's caller."""
    note = check_runnable(cfg)
    if note:
        import warnings
        warnings.warn(PlatformWarning(note), stacklevel=3)


def platform_matches(platform, os_="linux", arch="amd64", variant=None) -> bool:
    if not isinstance(platform, dict):
        return False
    if platform.get("os") != os_ or platform.get("architecture") != arch:
        return False
    return variant is None or platform.get("variant") in (None, variant)


def manifest_json(config_desc: dict, layer_descs: list, annotations: dict | None = None) -> bytes:
    m = {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
         "config": {"mediaType": config_desc["mediaType"], "digest": config_desc["digest"],
                    "size": config_desc["size"]},
         "layers": [{"mediaType": d["mediaType"], "digest": d["digest"], "size": d["size"]}
                    for d in layer_descs]}
    if annotations:
        m["annotations"] = dict(annotations)
    return dumps(m)


def rfc3339(t: float | None = None) -> str:
    """UTC time as Docker writes it: `2024-01-02T03:04:05.123456789Z`."""
    if t is None:
        t = time.time()
    ns = int(round(t * 1e9))
    sec, frac = divmod(ns, 10**9)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{frac:09d}Z"


def parse_time(value) -> float | None:
    """Seconds since the epoch of an RFC 3339 time (any fraction, Z or offset); None if absent."""
    if not isinstance(value, str) or not value:
        return None
    import datetime
    s = value.strip()
    if s.endswith("Z") or s.endswith("z"):
        s = s[:-1] + "+00:00"
    frac = ""
    if "." in s:
        head, _, rest = s.partition(".")
        digits = ""
        for ch in rest:
            if ch.isdigit():
                digits += ch
            else:
                break
        frac = digits
        s = head + rest[len(digits):]
    try:
        dt = datetime.datetime.fromisoformat(s)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=datetime.timezone.utc)
    return dt.timestamp() + (float("0." + frac) if frac else 0.0)
