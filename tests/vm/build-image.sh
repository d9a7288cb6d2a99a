#!/usr/bin/env bash
# Builds the Debian 12 guest that pyrt's VM suite boots: stock kernel (6.1), systemd,
# pure cgroup v2, an ordinary user with a lingering systemd session. Offline from
# Debian's packages (the host's own apt sources), no network inside the guest.
#
#   tests/vm/build-image.sh OUTDIR     -> OUTDIR/{disk.img,vmlinux,initrd.img}
#
# The guest runs one job per boot: a systemd unit mounts the 9p share "host" on
# /mnt/host, runs /mnt/host/job.sh, writes its exit code to /mnt/host/rc and powers off.
set -euo pipefail
out=${1:?usage: build-image.sh OUTDIR}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
work=$(mktemp -d /dev/shm/pyrt-vm-build.XXXXXX)   # the root ext4 is slow at creating files
trap 'rm -rf "$work"' EXIT
root=$work/root

packages=linux-image-amd64,initramfs-tools,systemd,systemd-sysv,udev,dbus,libpam-systemd
packages+=,dbus-user-session,python3,python3-pip,python3-pytest,uidmap,iproute2,e2fsprogs
packages+=,btrfs-progs,xfsprogs,busybox-static,runc,kmod,procps,util-linux,libseccomp2
packages+=,slirp4netns,fuse-overlayfs
# rootless podman (guest/test_rootless_podman.py), crun its default runtime
packages+=,podman,crun,catatonit

mmdebstrap --variant=minbase --include="$packages" --quiet \
    --customize-hook="cp '$here/guest-setup.sh' \"\$1/tmp/guest-setup.sh\" && chroot \"\$1\" sh /tmp/guest-setup.sh && rm \"\$1/tmp/guest-setup.sh\"" \
    bookworm "$root" /etc/apt/sources.list.d/debian.sources

cp "$root"/boot/initrd.img-* "$out/initrd.img"
# A decompressed kernel boots seconds faster under TCG than vmlinuz unpacking itself.
python3 - "$root"/boot/vmlinuz-* "$out/vmlinux" <<'PY'
import lzma, sys
data = open(sys.argv[1], "rb").read()
at = data.find(b"\xfd7zXZ\x00")
if at < 0:
    sys.exit("no xz payload in " + sys.argv[1])
open(sys.argv[2], "wb").write(lzma.LZMADecompressor().decompress(data[at:]))
PY
rm -rf "$root"/boot/* "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
rm -f "$out/disk.img"
mkfs.ext4 -q -L pyrt-guest -d "$root" "$out/disk.img" 4G
echo "guest image in $out"
