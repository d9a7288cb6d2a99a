#!/usr/bin/env bash
# What tests/vm/run.sh needs on the host (Debian 12, as root): qemu, and mmdebstrap
# to build the guest from Debian's packages.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends qemu-system-x86 mmdebstrap e2fsprogs xz-utils >/dev/null
