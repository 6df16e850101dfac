#!/usr/bin/env bash
# Builds (once) the Debian 12 guest the VM tests boot: systemd as PID 1 on the unified cgroup v2 hierarchy,
# Debian's kernel, the project's Debian packages, and the host's Node.js. Everything comes from Debian's
# archive. The result is cached outside the clone, in $EMPEROR_VM_CACHE (default /var/cache/emperor-vm),
# under a key of this script and the package list, so later runs on the machine reuse it.
#   scripts/vm/image.sh          prints the image directory (building it first if needed)
set -euo pipefail
cd "$(dirname "$0")/../.."

log() { printf '\033[1mvm image:\033[0m %s\n' "$*" >&2; }
die() { printf 'vm image: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (debootstrap, chroot, mkfs)"
CACHE=${EMPEROR_VM_CACHE:-/var/cache/emperor-vm}
MIRROR=${EMPEROR_VM_MIRROR:-http://deb.debian.org/debian}
node_bin=$(command -v node) || die "expected node on the host (its binary is copied into the guest)"
key=$( (cat scripts/vm/image.sh scripts/debian-packages.txt; "$node_bin" --version) | sha256sum | cut -c1-16)
out="$CACHE/$key"
if [ -f "$out/ready" ]; then
  echo "$out"
  exit 0
fi
# Only the image directory goes to stdout (run.sh reads it): everything the build prints goes to stderr.
exec 3>&1 1>&2

# The host tools this needs, from Debian's archive.
need=()
for p in qemu-system-x86 qemu-utils debootstrap e2fsprogs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

mkdir -p "$CACHE"
root="$CACHE/build-root"
cleanup() {
  for m in dev/pts dev proc sys; do umount -l "$root/$m" 2>/dev/null || true; done
}
trap cleanup EXIT
cleanup
rm -rf "$root" "$out"
mapfile -t debs < <(grep -v '^#' scripts/debian-packages.txt | tr -s ' ' '\n' | grep -v '^$')

log "debootstrap bookworm (a few minutes)"
started=$(date +%s)
debootstrap --variant=minbase \
  --include=systemd,systemd-sysv,udev,dbus,kmod,iproute2,procps,util-linux,passwd,e2fsprogs \
  bookworm "$root" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 || die "debootstrap failed: see $CACHE/debootstrap.log"

mount --bind /proc "$root/proc"
mount --bind /sys "$root/sys"
mount --bind /dev "$root/dev"
mount --bind /dev/pts "$root/dev/pts"
# Nothing may start as a service inside the chroot.
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"
log "installing the kernel and the project's packages in the guest"
chroot "$root" /usr/bin/env DEBIAN_FRONTEND=noninteractive sh -c "apt-get update -qq && apt-get install -y -qq --no-install-recommends linux-image-amd64 initramfs-tools ${debs[*]}" \
  >"$CACHE/apt.log" 2>&1 || die "apt-get in the guest failed: see $CACHE/apt.log"
rm -f "$root/usr/sbin/policy-rc.d"
chroot "$root" apt-get clean
# The disk and its file system are modules in Debian's kernel: into the initramfs with them.
printf 'virtio_blk\nvirtio_pci\next4\n' >>"$root/etc/initramfs-tools/modules"
chroot "$root" update-initramfs -u >>"$CACHE/apt.log" 2>&1 || die "update-initramfs failed: see $CACHE/apt.log"
# A persistent journal: the second boot reads what the first one's shutdown logged (journalctl -b -1).
mkdir -p "$root/var/log/journal"

# Node.js: the host's binary and npm (Debian 12's nodejs is 18). They need only glibc and libstdc++.
cp "$node_bin" "$root/usr/bin/node"
npm_dir=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")
mkdir -p "$root/usr/lib/node_modules"
cp -a "$npm_dir" "$root/usr/lib/node_modules/npm"
ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/bin/npm"

# The guest: a 9p share for the job and its results, modules for 9p and network tests, a quiet boot.
printf 'share /mnt/share 9p trans=virtio,version=9p2000.L,msize=1048576,nofail 0 0\n' >"$root/etc/fstab"
printf '/dev/vda / ext4 rw 0 1\n' >>"$root/etc/fstab"
mkdir -p "$root/mnt/share"
printf '9p\n9pnet_virtio\nveth\nbridge\n' >"$root/etc/modules-load.d/emperor-vm.conf"
echo emperor-vm >"$root/etc/hostname"
chroot "$root" passwd -d root >/dev/null
mkdir -p "$root/etc/systemd/system/serial-getty@ttyS0.service.d"
cat >"$root/etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf" <<'UNIT'
[Service]
ExecStart=
ExecStart=-/sbin/agetty --autologin root --noclear %I 115200 linux
UNIT
for u in systemd-networkd-wait-online.service apt-daily.timer apt-daily-upgrade.timer man-db.timer \
         fstrim.timer e2scrub_all.timer e2scrub_reap.service ssh.service ssh.socket; do
  ln -sf /dev/null "$root/etc/systemd/system/$u"
done
# The job: whatever /mnt/share/job.sh says, once the system is up; then the guest powers off cleanly (every
# service stopped, as at a real shutdown), whatever the job did (qemu runs with -no-reboot, so a panic or a
# reboot ends it too).
cat >"$root/etc/systemd/system/emperor-vm-job.service" <<'UNIT'
[Unit]
Description=Emperor VM job (/mnt/share/job.sh)
After=multi-user.target
ConditionPathExists=/mnt/share/job.sh
SuccessAction=poweroff
FailureAction=poweroff

[Service]
Type=oneshot
ExecStart=/bin/bash /mnt/share/job.sh
StandardOutput=journal+console
StandardError=journal+console
TimeoutStartSec=infinity

[Install]
WantedBy=multi-user.target
UNIT
chroot "$root" systemctl enable emperor-vm-job.service >/dev/null 2>&1

mkdir -p "$out"
cp "$root"/boot/vmlinuz-* "$out/vmlinuz"
cp "$root"/boot/initrd.img-* "$out/initrd.img"
cleanup
trap - EXIT
log "making the disk image"
mkfs.ext4 -q -F -L emperor-vm -d "$root" "$out/rootfs.img" 8G
rm -rf "$root"
echo "built in $(( $(date +%s) - started )) s from $MIRROR, node $("$node_bin" --version)" >"$out/ready"
log "$(cat "$out/ready")"
echo "$out" >&3
