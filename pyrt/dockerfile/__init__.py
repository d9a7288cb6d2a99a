"""`pyrt build`: images from Dockerfiles (see builder.py). `build(runtime, path, ...)`
returns (Image, [{"stream": text}, ...]) as the docker SDK's images.build does."""
from __future__ import annotations


def build(runtime, path, **options):
    from pyrt.dockerfile.builder import Builder  # on use: Runtime.images imports this package
    b = Builder(runtime, path, **options)
    return b.build(), b.output


__all__ = ["build"]
