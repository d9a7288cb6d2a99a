#!/usr/bin/env bash
# Runs pyrt's guest suite (tests/vm/guest) in a Debian 12 VM: stock 6.1 kernel,
# systemd, pure cgroup v2. pyrt is built here as a wheel and installed in the guest
# (which has no network) with its dependencies' wheels.
#
#   bash tests/vm/run.sh [PYTEST-ARGS...]     e.g. -k overlay, -x
#
# Environment: PYRT_VM_CACHE (default /var/cache/pyrt-vm) holds the built guest,
# keyed by the hash of its build scripts; PYRT_VM_TIMEOUT (seconds, default 1800)
# bounds the whole boot; PYRT_VM_KEEP=1 keeps the shared directory for a look after.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${PYRT_VM_CACHE:-/var/cache/pyrt-vm}
key=$(cat "$here/build-image.sh" "$here/guest-setup.sh" | sha256sum | cut -c1-16)
image=$cache/$key
t0=$(date +%s)

if [ ! -f "$image/disk.img" ]; then
    echo "vm: building the guest image in $image"
    rm -rf "$image.tmp"
    bash "$here/build-image.sh" "$image.tmp"
    mv "$image.tmp" "$image"
    echo "vm: guest image built in $(( $(date +%s) - t0 )) s"
fi

share=$(mktemp -d /dev/shm/pyrt-vm-share.XXXXXX)
cleanup() { [ "${PYRT_VM_KEEP:-0}" = 1 ] && echo "vm: shared directory kept: $share" || rm -rf "$share"; }
trap cleanup EXIT
chmod 755 "$share"

t1=$(date +%s)
python3 -m pip wheel -q --no-deps -w "$share/wheels" "$repo" 2>&1 | grep -v '^WARNING' || true
ls "$share"/wheels/pyrt-*.whl >/dev/null
python3 -m pip download -q --only-binary=:all: --python-version 3.11 --platform manylinux2014_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    -d "$share/wheels" cffi zstandard isal httpx pytest-timeout 2>&1 | grep -v '^WARNING' || true
cp -r "$here/guest" "$share/guest"
# The probe of pyrt-runtime's native cgroup side (guest/test_native_cgroup.py), static:
# the guest has no compiler. Without gcc or yajl here those tests skip.
if command -v gcc >/dev/null && [ -f /usr/lib/x86_64-linux-gnu/libyajl_s.a ]; then
    mkdir -p "$share/guest/bin"
    c=$repo/csrc
    # the same sources as the host's probe (tests/test_rt_cgroup.py); with the tools
    # here, a probe that does not build is a failure, not a skip
    srcs=$(grep -v '^#' "$repo/tests/probes/rt_cgroup_probe.sources" | sed "s|^|$c/|")
    # shellcheck disable=SC2086  # one word per source file
    gcc -static -O2 -D_GNU_SOURCE -I "$c" -o "$share/guest/bin/rt_cgroup_probe" "$repo/tests/probes/rt_cgroup_probe.c" \
        $srcs /usr/lib/x86_64-linux-gnu/libyajl_s.a -lm || { echo "vm: the cgroup probe did not build" >&2; exit 1; }
fi
cp "$repo/README.md" "$share/README.md"
echo "vm: wheels ready in $(( $(date +%s) - t1 )) s"

# Pytest's arguments travel as one quoted line.
args=""
for a in "$@"; do args+=" $(printf '%q' "$a")"; done
cat > "$share/job.sh" <<JOB
set -e
export PIP_ROOT_USER_ACTION=ignore
echo "guest: \$(uname -r), systemd \$(systemctl --version | head -1 | cut -d' ' -f2), cgroup \$(stat -fc %T /sys/fs/cgroup)"
python3 -m pip install -q --break-system-packages --no-index --find-links /mnt/host/wheels pyrt pytest-timeout
cp -r /mnt/host/guest /root/guest
cd /root/guest
set +e
PYRT_GUEST=1 PYRT_README=/mnt/host/README.md python3 -m pytest -q -p no:cacheprovider -o addopts=-ra --timeout 600 $args
echo \$? > /mnt/host/rc
sync
# Off at once: a process a failed test left behind must not hold the shutdown up.
systemctl poweroff --force --force
JOB

t2=$(date +%s)
status=0
timeout -s KILL "${PYRT_VM_TIMEOUT:-1800}" qemu-system-x86_64 \
    -accel tcg -cpu max -m 4G -smp 2 -nographic -no-reboot -nic none -snapshot \
    -kernel "$image/vmlinux" -initrd "$image/initrd.img" \
    -append "root=/dev/vda rw console=ttyS0 quiet systemd.show_status=0 panic=-1" \
    -drive "file=$image/disk.img,if=virtio,format=raw" \
    -virtfs "local,path=$share,mount_tag=host,security_model=none" \
    -serial "file:$share/console.log" -monitor none </dev/null >/dev/null || status=$?
echo "vm: guest ran for $(( $(date +%s) - t2 )) s"
cat "$share/job.log" 2>/dev/null || true
if [ ! -f "$share/rc" ]; then
    echo "vm: the guest did not finish its job (qemu status $status); its console:"
    tail -n 60 "$share/console.log" || true
    exit 1
fi
rc=$(cat "$share/rc")
echo "vm: guest suite exit status $rc, $(( $(date +%s) - t0 )) s in all"
exit "$rc"
