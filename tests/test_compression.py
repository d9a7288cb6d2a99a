"""pyrt.compression: sniffing a stream's compression and reading it decompressed."""
import bz2
import gzip
import io
import lzma
import sys

import pytest

from pyrt import compression

DATA = b"".join(b"line %d\n" % i for i in range(50000))


def _zstd(data):
    zstandard = pytest.importorskip("zstandard")
    return zstandard.ZstdCompressor().compress(data)


COMPRESSORS = {"gzip": gzip.compress, "bzip2": bz2.compress, "xz": lzma.compress, "zstd": _zstd}


@pytest.mark.parametrize("kind", sorted(COMPRESSORS))
def test_sniff_and_read(kind):
    blob = COMPRESSORS[kind](DATA)
    assert compression.sniff(blob[:compression.HEAD_SIZE]) == kind
    assert compression.open_reader(io.BytesIO(blob), kind).read() == DATA
    assert b"".join(compression.read_chunks(io.BytesIO(blob), kind, 4096)) == DATA


def test_plain_is_read_as_is():
    assert compression.sniff(b"etc/\0\0") == ""
    assert compression.sniff(b"") == ""
    f = io.BytesIO(DATA)
    assert compression.open_reader(f, "") is f
    assert compression.open_reader(f, "tar") is f


def test_several_members_and_frames_are_read_to_the_end():
    half = len(DATA) // 2
    blob = gzip.compress(DATA[:half]) + gzip.compress(DATA[half:])
    assert compression.open_reader(io.BytesIO(blob), "gzip").read() == DATA
    blob = _zstd(DATA[:half]) + _zstd(DATA[half:])
    assert compression.open_reader(io.BytesIO(blob), "zstd").read() == DATA


def test_reader_leaves_the_source_open():
    f = io.BytesIO(_zstd(DATA))
    compression.open_reader(f, "zstd").close()
    assert not f.closed


def test_zlib_without_isal(monkeypatch):
    monkeypatch.setitem(sys.modules, "isal", None)
    monkeypatch.setitem(sys.modules, "isal.igzip", None)
    assert compression.gzip_backend() == "zlib"
    assert compression.open_reader(io.BytesIO(gzip.compress(DATA)), "gzip").read() == DATA


def test_missing_zstandard_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "zstandard", None)
    with pytest.raises(ImportError, match="pip install zstandard"):
        compression.open_reader(io.BytesIO(b"\x28\xb5\x2f\xfd"), "zstd")


def test_unknown_kind():
    with pytest.raises(ValueError, match="lz4"):
        compression.open_reader(io.BytesIO(b""), "lz4")
