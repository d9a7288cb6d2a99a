"""pyrt._sys's declarations come from csrc/syscalls.h (pyrt/_sys_build.py reads it):
every function and constant the header declares is in the compiled module."""
import os
import re

from pyrt import sys as psys
from pyrt._sys import ffi, lib

HEADER = os.path.join(os.path.dirname(__file__), "..", "csrc", "syscalls.h")


def _header():
    with open(HEADER) as f:
        return re.sub(r"/\*.*?\*/", "", f.read(), flags=re.S)


def test_every_header_function_is_bound():
    names = re.findall(r"^\w[\w\s\*]*?\b(pyrt_\w+)\s*\(", _header(), flags=re.M)
    assert "pyrt_openat2" in names and "pyrt_close_range" in names
    for name in names:
        assert callable(getattr(lib, name)), name


def test_header_structs_match():
    text = _header()
    for struct in re.findall(r"struct (pyrt_\w+) \{", text):
        body = re.search(r"struct %s \{(.*?)\};" % struct, text, flags=re.S).group(1)
        fields = re.findall(r"(\w+);", body)
        assert [name for name, _ in ffi.typeof(f"struct {struct}").fields] == fields
        assert ffi.sizeof(f"struct {struct}") == 8 * len(fields)


def test_header_fallback_constants_match():
    # a value the libc headers give wins over the fallback; where both exist they agree
    for name, value in re.findall(r"^#define (\w+) (0x[0-9a-fA-F]+|\d+)\w*$", _header(), flags=re.M):
        number = int(value, 8) if re.fullmatch(r"0\d+", value) else int(value, 0)  # C octal
        if hasattr(psys, name):
            assert getattr(psys, name) == number, name
