"""The overlay mount of kernels before 6.8 (no "lowerdir+"), forced on this one:
mount(2) with one lowerdir list of short /proc/self/fd names, so that many layers
with long store paths fit in the one-page option limit (the guest suite runs it for real on
Debian 12's 6.1)."""
from __future__ import annotations

import os

import pyrt.launch.mounts
from pyrt import sys as psys


def test_many_layers_with_long_paths_through_the_pre_6_8_mount(tmp_shm, monkeypatch):
    monkeypatch.setattr(pyrt.launch.mounts, "_has_lowerdir_plus", lambda: False)
    base = os.path.join(tmp_shm, "x" * 100)
    layers = []
    for i in range(200):  # 200 absolute paths of ~160 bytes: about 8 pages
        d = os.path.join(base, f"{i:03d}-" + "y" * 40)
        os.makedirs(d)
        with open(os.path.join(d, f"f{i:03d}"), "w") as f:
            f.write(f"{i}\n")
        with open(os.path.join(d, "shadowed"), "w") as f:
            f.write(f"{i}\n")
        layers.append(d)
    layers.reverse()  # top-most first: layer 199 wins
    upper, work, target, scratch = (os.path.join(tmp_shm, n) for n in ("upper", "work", "mnt", "scratch"))
    for d in (upper, work, target, scratch):
        os.mkdir(d)
    assert sum(len(d) + 1 for d in layers) > 4096
    mfd = pyrt.launch.mounts.mount_overlay(layers, upper, work, ("redirect_dir=off",), scratch=scratch)
    assert not os.path.ismount(scratch) and not os.listdir(scratch)  # mounted there only for the clone
    try:
        psys.move_mount(mfd, "", psys.AT_FDCWD, target, psys.MOVE_MOUNT_F_EMPTY_PATH)
    finally:
        os.close(mfd)
    try:
        assert len([n for n in os.listdir(target) if n.startswith("f")]) == 200
        with open(os.path.join(target, "shadowed")) as f:
            assert f.read() == "199\n"
        with open(os.path.join(target, "new"), "w") as f:
            f.write("up\n")
        assert os.path.exists(os.path.join(upper, "new"))
    finally:
        psys.umount2(target, 0)


def test_more_layers_than_the_pre_6_8_mount_holds_is_a_clear_error(tmp_shm, monkeypatch):
    from pyrt.errors import SyscallError
    monkeypatch.setattr(pyrt.launch.mounts, "_has_lowerdir_plus", lambda: False)
    layers = []
    for i in range(300):
        layers.append(os.path.join(tmp_shm, f"l{i}"))
        os.mkdir(layers[-1])
    scratch = os.path.join(tmp_shm, "scratch")
    os.mkdir(scratch)
    try:
        pyrt.launch.mounts.mount_overlay(layers, scratch=scratch)
        raise AssertionError("mounted")
    except SyscallError as e:
        assert e.errno == 7 and "300 layers" in str(e), e
