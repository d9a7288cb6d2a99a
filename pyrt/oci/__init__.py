"""OCI image types: digests, media types, references, and the manifest, index and
config documents (parse, validate, emit); and the runtime spec (runtime_spec).
Pure Python, no I/O beyond what the caller hands in.

The digest and reference helpers are imported on first use, so that importing a
submodule (pyrt-runtime imports runtime_spec at every start) stays cheap."""
from pyrt.oci.mediatypes import *  # noqa: F401,F403  (constants only)

_LAZY = {
    "DIGEST_RE": "digest", "chain_id": "digest", "chain_ids": "digest", "digest_hex": "digest",
    "is_digest": "digest", "sha256_bytes": "digest", "validate_digest": "digest",
    "Reference": "reference", "parse_reference": "reference", "validate_repository": "reference",
    "validate_tag": "reference",
}


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
