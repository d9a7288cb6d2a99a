"""OCI image types: digests, media types, references, and the manifest, index and
config documents (parse, validate, emit). Pure Python, no I/O beyond what the caller
hands in."""
from .digest import (DIGEST_RE, chain_id, chain_ids, digest_hex, is_digest, sha256_bytes,
                     validate_digest)
from .mediatypes import *  # noqa: F401,F403
from .reference import Reference, parse_reference, validate_repository, validate_tag
