"""Loading an archive from a stream (a pipe, `pyrt load < x.tar`): read once as it
comes, plain or compressed; its layers are linked into the store, not copied again."""
from __future__ import annotations

import gzip
import io
import os
import tarfile
import threading

import pytest

from pyrt.images import archive
from pyrt.errors import ImageFormatError
from imagetools import OCIBuilder, base_entries, check_consistent, make_tar, store_state


def _compress(data, kind):
    if kind == "gzip":
        return gzip.compress(data)
    if kind == "zstd":
        return pytest.importorskip("zstandard").ZstdCompressor().compress(data)
    return data


def _layout_tar(tmp, salt=""):
    b = OCIBuilder(os.path.join(tmp, "layout" + salt))
    big = os.urandom(400000).hex()  # a layer too large to be kept in memory
    info = b.image([make_tar(base_entries() + [("file", "big", big + salt)])], ref="s:1")
    b.write()
    out = b.tar(os.path.join(tmp, f"layout{salt}.tar"))
    with open(out, "rb") as f:
        return f.read(), info


def _pipe(data):
    """A read end that only streams (no seek, no peek), fed by a thread."""
    r, w = os.pipe()

    def feed():
        with os.fdopen(w, "wb") as f:
            try:
                f.write(data)
            except BrokenPipeError:
                pass
    t = threading.Thread(target=feed, daemon=True)
    t.start()
    return os.fdopen(r, "rb", buffering=0), t


@pytest.mark.parametrize("kind", ["", "gzip", "zstd"])
def test_load_from_a_pipe(rt, tmp_shm, kind, monkeypatch):
    from pyrt.images import ingest as images
    linked = []
    link_blob = images._link_blob
    monkeypatch.setattr(images, "_link_blob", lambda *a: linked.append(a[2]) or link_blob(*a))
    data, info = _layout_tar(tmp_shm)
    f, t = _pipe(_compress(data, kind))
    with f:
        img = rt.images.load(f)[0]
    t.join()
    assert linked == [info["layers"][0]]  # linked into the store, not copied
    assert img.id == info["id"] and img.tags == ["s:1"]
    blob = rt.store.blobs.path(info["layers"][0])
    assert os.stat(blob).st_nlink == 1  # the load's own name for it is gone
    assert os.listdir(rt.store.tmp_dir) == []
    check_consistent(rt)


def test_small_members_stay_in_memory(rt, tmp_shm, monkeypatch):
    data, info = _layout_tar(tmp_shm)
    monkeypatch.setattr(archive.StreamSource, "SMALL", 1 << 30)
    monkeypatch.setattr(archive.StreamSource, "MEMORY", 1 << 30)
    f, t = _pipe(gzip.compress(data))
    with f:
        assert rt.images.load(f)[0].id == info["id"]
    check_consistent(rt)


def _end_of_members(data):
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        last = list(tf)[-1]
    return last.offset_data + (last.size + 511) // 512 * 512


@pytest.mark.parametrize("cut", ["header", "early", "middle", "marker"])
def test_a_cut_stream_is_refused(rt, tmp_shm, cut):
    data, _ = _layout_tar(tmp_shm)
    end = {"header": 100, "early": 3000, "middle": len(data) // 2,
           "marker": _end_of_members(data)}[cut]  # "marker": all members, no end blocks
    before = store_state(rt)
    f, t = _pipe(gzip.compress(data[:end]))
    with f, pytest.raises(ImageFormatError, match="truncated|corrupt|missing|neither"):
        rt.images.load(f)
    assert store_state(rt) == before
    assert os.listdir(rt.store.tmp_dir) == []


def test_a_layer_that_is_not_its_digest_is_refused(rt, tmp_shm):
    data, info = _layout_tar(tmp_shm)
    layer = "blobs/sha256/" + info["layers"][0][7:]
    out = os.path.join(tmp_shm, "bad.tar")
    with tarfile.open(fileobj=io.BytesIO(data)) as src, tarfile.open(out, "w") as dst:
        for ti in src:
            body = src.extractfile(ti).read() if ti.isreg() else None
            if ti.name.lstrip("./") == layer:
                body = body[:-1] + bytes([body[-1] ^ 1])
            dst.addfile(ti, io.BytesIO(body) if body is not None else None)
    before = store_state(rt)
    with open(out, "rb") as raw:
        f, t = _pipe(raw.read())
    with f, pytest.raises(ImageFormatError, match="digest mismatch"):
        rt.images.load(f)
    assert store_state(rt) == before
