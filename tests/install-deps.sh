#!/usr/bin/env bash
# Installs what pyrt's tests need on a fresh Debian 12 (as root): the reference
# tools the tests compare with, and pyrt itself with its test extras.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
    gcc libc6-dev python3-dev python3-pip busybox-static podman skopeo umoci runc crun zstd libarchive-tools \
    uidmap iproute2 containerd libseccomp-dev libyajl-dev libsqlite3-dev conmon docker-registry apache2-utils mmdebstrap gpg \
    containernetworking-plugins iptables util-linux slirp4netns fuse-overlayfs >/dev/null
# an ordinary user's slirp4netns and fuse-overlayfs open these: udev makes them 0666 on a
# stock system; a machine without udev (a container, a minimal VM) leaves them 0600
chmod 0666 /dev/net/tun /dev/fuse 2>/dev/null || true
# --break-system-packages: Debian's own Python refuses system-wide installs without it
python3 -m pip install -q --break-system-packages ".[test]"
