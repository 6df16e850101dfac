#!/usr/bin/env bash
# Runs test files inside a Debian 12 guest (systemd, cgroup v2) under qemu, the way real hosts run Emperor,
# and brings back the TAP output, the leak check and the guest's journal. Exit status: the guest's tests.
#   scripts/vm/run.sh                   the VM suites (cgroups, jails, the daemon, systemd): what CI runs
#   scripts/vm/run.sh --all             the whole suite (over an hour under software emulation)
#   scripts/vm/run.sh FILE...           these test files
# Environment: EMPEROR_VM_ACCEL=kvm to use KVM (default tcg: software emulation), EMPEROR_VM_TIMEOUT (minutes,
# default 60), EMPEROR_VM_OUT (where results go, default .vm-results in the checkout), EMPEROR_VM_CACHE.
set -euo pipefail
cd "$(dirname "$0")/../.."
checkout=$(pwd)

log() { printf '\033[1mvm:\033[0m %s\n' "$*" >&2; }
die() { printf 'vm: %s\n' "$*" >&2; exit 1; }

# The suites whose behaviour depends on the cgroup hierarchy, the jail or the init system.
VM_SUITES=(packages/jail/test/cgroup-detect.ts packages/jail/test/limits.ts packages/jail/test/isolation.ts
           packages/jail/test/host-paths.ts packages/jail/test/faults.ts packages/emperor/test/lifecycle.ts
           packages/emperor/test/default-limits.ts packages/emperor/test/daemon.ts packages/emperor/test/leaks.ts
           scripts/test/vm-systemd.ts)
files=()
if [ "${1:-}" = "--all" ]; then
  files=()
elif [ $# -gt 0 ]; then
  files=("$@")
else
  for f in "${VM_SUITES[@]}"; do [ -f "$f" ] && files+=("$f"); done
fi

image=$(bash scripts/vm/image.sh)
accel=${EMPEROR_VM_ACCEL:-tcg}
timeout_min=${EMPEROR_VM_TIMEOUT:-60}
out=${EMPEROR_VM_OUT:-$checkout/.vm-results}
rm -rf "$out"
mkdir -p "$out"
share=$(mktemp -d /var/tmp/emperor-vm-share.XXXXXX)
trap 'rm -rf "$share"' EXIT
mkdir "$share/out"

log "packing the checkout (built on the host: node_modules, dist and native/build run in the guest unchanged)"
tar -C "$checkout" --exclude=./.git --exclude=./.tap --exclude=./.vm-results -cf "$share/src.tar" .
printf '%s\n' "${files[@]}" >"$share/files"
cat >"$share/job.sh" <<'JOB'
#!/bin/bash
# Runs in the guest as root, from emperor-vm-job.service (scripts/vm/image.sh).
out=/mnt/share/out
exec >"$out/job.log" 2>&1
set -x
cat /proc/cmdline
stat -fc %T /sys/fs/cgroup
mkdir -p /root/emperor && tar -xf /mnt/share/src.tar -C /root/emperor
cd /root/emperor
start=$(date +%s)
bash scripts/setup.sh >"$out/setup.log" 2>&1
echo $? >"$out/setup.rc"
mapfile -t files </mnt/share/files
# A delegated scope, as the unit in docs/deploy/ gets (Delegate=yes); EMPEROR_TEST_TIME_SCALE stretches
# the tests' waits (bounds, never timing assertions) for software emulation.
EMPEROR_TEST_MUST_WORK=1 EMPEROR_TEST_TIME_SCALE=${EMPEROR_TEST_TIME_SCALE:-12} \
  systemd-run --scope --quiet -p Delegate=yes -- \
  ./node_modules/.bin/tap --timeout=3600 --disable-coverage "${files[@]}" >"$out/tap.log" 2>&1
echo $? >"$out/tap.rc"
node scripts/leak-check.mjs >"$out/leak.log" 2>&1
echo $? >"$out/leak.rc"
echo "$(( $(date +%s) - start ))" >"$out/seconds"
journalctl -b --no-pager >"$out/journal.log" 2>&1
sync
JOB
started=$(date +%s)
log "booting the guest ($accel; $image), running ${#files[@]} test file(s) (0: all)"
cpu=max
[ "$accel" = kvm ] && cpu=host
set +e
timeout --kill-after=30 "$((timeout_min * 60))" qemu-system-x86_64 -accel "$accel" -cpu "$cpu" -smp 2 -m 4G \
  -nographic -no-reboot -kernel "$image/vmlinuz" -initrd "$image/initrd.img" \
  -append "root=/dev/vda rw console=ttyS0 systemd.unified_cgroup_hierarchy=1 panic=-1 quiet" \
  -drive "file=$image/rootfs.img,if=virtio,format=raw,snapshot=on" \
  -virtfs "local,path=$share,mount_tag=share,security_model=none,id=share" -nic none \
  </dev/null >"$out/serial.log" 2>&1
qemu_rc=$?
set -e
cp -r "$share/out/." "$out/" 2>/dev/null || true
elapsed=$(( $(date +%s) - started ))
[ "$qemu_rc" -eq 124 ] && die "the guest did not finish within $timeout_min min (serial console: $out/serial.log)"
[ -f "$out/tap.rc" ] || die "the guest ran no tests (qemu exit $qemu_rc; see $out/serial.log and $out/job.log)"
cat "$out/tap.log"
cat "$out/leak.log"
tap_rc=$(cat "$out/tap.rc")
leak_rc=$(cat "$out/leak.rc")
log "guest run: ${elapsed} s in all, $(cat "$out/seconds" 2>/dev/null || echo '?') s of setup and tests; results in $out"
[ "$(cat "$out/setup.rc")" -eq 0 ] || die "setup.sh failed in the guest: $out/setup.log"
[ "$tap_rc" -eq 0 ] && [ "$leak_rc" -eq 0 ] || die "guest tests failed (tap $tap_rc, leak check $leak_rc)"
