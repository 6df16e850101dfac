#!/usr/bin/env bash
# Runs test files inside a Debian 12 guest (systemd, cgroup v2) under qemu, the way real hosts run Emperor,
# and brings back the TAP output, the leak check and the guest's journal. Exit status: the guest's tests.
#   scripts/vm/run.sh                   the VM suites (cgroups, jails, the daemon, systemd): what CI runs
#   scripts/vm/run.sh --all             the whole suite, then the systemd suites (over an hour under emulation)
#   scripts/vm/run.sh FILE...           these test files (scripts/vm/test/systemd.ts among them: the reboot too)
#   scripts/vm/run.sh --exec 'CMD'      a command in the guest's checkout, in a delegated scope (benchmarks)
# The systemd suite (scripts/vm/test/systemd.ts) leaves emperor.service enabled and running; the guest then
# powers off and boots again from the same disk, where scripts/vm/test/boot.ts checks that it came up.
# Environment: EMPEROR_VM_ACCEL=kvm to use KVM (default tcg: software emulation), EMPEROR_VM_TIMEOUT (minutes
# per boot, default 40, 150 with --all), EMPEROR_VM_OUT (where results go, default .vm-results in the checkout), EMPEROR_VM_CACHE.
# The last line is "vm: N passed, N failed" (scripts/test.sh reads it).
set -euo pipefail
cd "$(dirname "$0")/../.."
checkout=$(pwd)

log() { printf '\033[1mvm:\033[0m %s\n' "$*" >&2; }
die() { printf 'vm: %s\n' "$*" >&2; exit 1; }

# The suites whose behaviour depends on the cgroup hierarchy, the jail or the init system.
VM_SUITES=(packages/jail/test/cgroup-detect.ts packages/jail/test/limits.ts packages/jail/test/isolation.ts
           packages/jail/test/host-paths.ts packages/jail/test/faults.ts packages/emperor/test/lifecycle.ts
           packages/emperor/test/default-limits.ts packages/emperor/test/daemon.ts packages/emperor/test/leaks.ts
           packages/emperor/test/service-manager.ts packages/emperor/test/examples.ts packages/emperor/test/adoption.ts
           packages/emperor/test/network.ts)
SYSTEMD_SUITE=scripts/vm/test/systemd.ts
files=()
systemd=0
exec_cmd=
if [ "${1:-}" = "--exec" ]; then
  [ $# -eq 2 ] || die "--exec takes one command (quote it)"
  exec_cmd=$2
elif [ "${1:-}" = "--all" ]; then
  systemd=1 # an empty list: tap runs every test of the host's suite
elif [ $# -gt 0 ]; then
  for f in "$@"; do
    if [ "$f" = "$SYSTEMD_SUITE" ]; then systemd=1; else files+=("$f"); fi
  done
else
  for f in "${VM_SUITES[@]}"; do [ -f "$f" ] && files+=("$f"); done
  systemd=1
fi

image=$(bash scripts/vm/image.sh)
accel=${EMPEROR_VM_ACCEL:-tcg}
# A bound per boot: 40 minutes (the CI run takes ~15), 150 for --all.
timeout_min=${EMPEROR_VM_TIMEOUT:-40}
[ "${1:-}" = --all ] && timeout_min=${EMPEROR_VM_TIMEOUT:-150}
out=${EMPEROR_VM_OUT:-$checkout/.vm-results}
rm -rf "$out"
mkdir -p "$out"
share=$(mktemp -d /var/tmp/emperor-vm-share.XXXXXX)
trap 'rm -rf "$share"' EXIT
mkdir "$share/out"

log "packing the checkout (built on the host: node_modules, dist and native/build run in the guest unchanged)"
tar -C "$checkout" --exclude=./.git --exclude=./.tap --exclude=./.vm-results -cf "$share/src.tar" .
# One file per line; none (--all) is an empty file, never an empty line (tap would take "" for the cwd).
: >"$share/files"
[ ${#files[@]} -eq 0 ] || printf '%s\n' "${files[@]}" >"$share/files"
{ [ -n "$exec_cmd" ] || { [ "$systemd" = 1 ] && [ "${1:-}" != "--all" ] && [ ${#files[@]} -eq 0 ]; }; } && : >"$share/no-suites"
echo "$systemd" >"$share/systemd"
printf '%s' "$exec_cmd" >"$share/exec"
cat >"$share/job.sh" <<'JOB'
#!/bin/bash
# Runs in the guest as root, from emperor-vm-job.service (scripts/vm/image.sh), once per boot.
share=/mnt/share
out=$share/out
phase=$(cat "$share/phase")
exec >"$out/job-$phase.log" 2>&1
# How long the boot took to reach this job (docs/benchmarks.md).
cut -d' ' -f1 /proc/uptime >"$out/boot-$phase.seconds"
set -x
cat /proc/cmdline
stat -fc %T /sys/fs/cgroup
# Waits bounded by EMPEROR_TEST_TIME_SCALE (bounds, never timing assertions) for software emulation.
export EMPEROR_TEST_MUST_WORK=1 EMPEROR_TEST_TIME_SCALE=${EMPEROR_TEST_TIME_SCALE:-12}
tap() { ./node_modules/.bin/tap --timeout=3600 --disable-coverage "$@"; }
if [ "$phase" = 1 ]; then
  # Where docs/operations.md installs it, so docs/deploy/emperor.service runs unchanged.
  mkdir -p /opt/emperor && tar -xf "$share/src.tar" -C /opt/emperor
  cd /opt/emperor
  start=$(date +%s)
  # The guest runs tests, not benchmarks, and has no network: the benchmarks' packages are not its.
  EMPEROR_BENCH_PACKAGES=0 bash scripts/setup.sh >"$out/setup.log" 2>&1
  echo $? >"$out/setup.rc"
  mapfile -t files <"$share/files"
  if [ ! -e "$share/no-suites" ]; then
    # A delegated scope, as the unit in docs/deploy/ gets (Delegate=yes).
    systemd-run --scope --quiet -p Delegate=yes -- ./node_modules/.bin/tap --timeout=3600 --disable-coverage \
      "${files[@]}" >"$out/tap-suites.log" 2>&1
    echo $? >"$out/tap-suites.rc"
  fi
  if [ -s "$share/exec" ]; then
    systemd-run --scope --quiet -p Delegate=yes -- bash -c "$(cat "$share/exec")" >"$out/exec.log" 2>&1
    echo $? >"$out/exec.rc"
  fi
  node scripts/leak-check.mjs >"$out/leak-1.log" 2>&1
  echo $? >"$out/leak-1.rc"
  echo "$(( $(date +%s) - start ))" >"$out/seconds-suites"
  if [ "$(cat "$share/systemd")" = 1 ]; then
    start=$(date +%s)
    tap scripts/vm/test/systemd.ts >"$out/tap-systemd.log" 2>&1
    echo $? >"$out/tap-systemd.rc"
    echo "$(( $(date +%s) - start ))" >"$out/seconds-systemd"
  fi
else
  cd /opt/emperor
  # No wait for the boot to finish: this job is part of it (After=multi-user.target, which emperor.service
  # is wanted by, and Type=notify: started means READY=1).
  tap scripts/vm/test/boot.ts >"$out/tap-boot.log" 2>&1
  echo $? >"$out/tap-boot.rc"
  node scripts/leak-check.mjs >"$out/leak-2.log" 2>&1
  echo $? >"$out/leak-2.rc"
fi
journalctl -b --no-pager >"$out/journal-$phase.log" 2>&1
sync
JOB

# One disk for both boots: an overlay on the cached image (which never changes), thrown away afterwards.
qemu-img create -q -f qcow2 -F raw -b "$image/rootfs.img" "$share/disk.qcow2"
cpu=max
[ "$accel" = kvm ] && cpu=host
boot() {
  local phase=$1
  echo "$phase" >"$share/phase"
  set +e
  timeout --kill-after=30 "$((timeout_min * 60))" qemu-system-x86_64 -accel "$accel" -cpu "$cpu" -smp 2 -m 4G \
    -nographic -no-reboot -kernel "$image/vmlinuz" -initrd "$image/initrd.img" \
    -append "root=/dev/vda rw console=ttyS0 systemd.unified_cgroup_hierarchy=1 panic=-1 quiet" \
    -drive "file=$share/disk.qcow2,if=virtio,format=qcow2" \
    -virtfs "local,path=$share,mount_tag=share,security_model=none,id=share" -nic none \
    </dev/null >"$out/serial-$phase.log" 2>&1
  local rc=$?
  set -e
  cp -r "$share/out/." "$out/" 2>/dev/null || true
  [ "$rc" -eq 124 ] && die "boot $phase did not finish within $timeout_min min (serial console: $out/serial-$phase.log)"
  return 0
}

started=$(date +%s)
log "booting the guest ($accel; $image): ${#files[@]} test file(s) (0 with --all: every one), systemd suite: $([ "$systemd" = 1 ] && echo yes || echo no)"
boot 1
[ -f "$out/leak-1.rc" ] || die "the guest ran no tests (see $out/serial-1.log and $out/job-1.log)"
[ "$(cat "$out/setup.rc")" -eq 0 ] || die "setup.sh failed in the guest: $out/setup.log"
phase1=$(( $(date +%s) - started ))
if [ "$systemd" = 1 ]; then
  log "booting the guest again (emperor.service was left enabled: it must come up at boot)"
  boot 2
  [ -f "$out/leak-2.rc" ] || die "the second boot ran no tests (see $out/serial-2.log and $out/job-2.log)"
fi
elapsed=$(( $(date +%s) - started ))

# Every TAP log and leak check, in order; the counts summed from tap's own summary lines.
pass=0
fail=0
rc=0
for part in suites systemd boot; do
  [ -f "$out/tap-$part.log" ] || continue
  cat "$out/tap-$part.log"
  summary=$(grep -E '^# \{ total: [0-9]+' "$out/tap-$part.log" | tail -n 1 || true)
  total=$(sed -nE 's/.*total: ([0-9]+).*/\1/p' <<<"$summary")
  p=$(sed -nE 's/.*pass: ([0-9]+).*/\1/p' <<<"$summary")
  if [ -z "$total" ]; then
    log "tap printed no summary for the $part suite"
    fail=$(( fail + 1 ))
  else
    pass=$(( pass + ${p:-0} ))
    fail=$(( fail + total - ${p:-0} ))
  fi
  [ "$(cat "$out/tap-$part.rc" 2>/dev/null || echo 1)" -eq 0 ] || rc=1
done
if [ -f "$out/exec.rc" ]; then
  cat "$out/exec.log"
  [ "$(cat "$out/exec.rc")" -eq 0 ] || { rc=1; fail=$(( fail + 1 )); }
fi
for n in 1 2; do
  [ -f "$out/leak-$n.rc" ] || continue
  cat "$out/leak-$n.log"
  [ "$(cat "$out/leak-$n.rc")" -eq 0 ] || { rc=1; fail=$(( fail + 1 )); }
done
log "guest run: ${elapsed} s in all (first boot ${phase1} s: $(cat "$out/boot-1.seconds" 2>/dev/null || echo '?') s to boot, $(cat "$out/seconds-suites" 2>/dev/null || echo '?') s of setup and suites, $(cat "$out/seconds-systemd" 2>/dev/null || echo 0) s of the systemd suite); results in $out"
echo "vm: $pass passed, $fail failed"
exit "$rc"
