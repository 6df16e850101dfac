#!/usr/bin/env bash
# Installs everything Emperor needs on a Debian 12 machine, as root, and builds it. Safe to run again:
# each step is skipped when already done. Used by demo.sh and test.sh (the README's two commands).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1msetup:\033[0m %s\n' "$*" >&2; }
die() { printf 'setup: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root: Emperor builds jails (namespaces, cgroups) and installs Debian packages"

# Debian packages: the C helper's toolchain and libseccomp; node-gyp's needs (sd-notify); the peers and tools
# the tests and benchmarks run against (uWSGI, bubblewrap, OpenSSH, rsync, iproute2).
# The list is in scripts/debian-packages.txt (the VM image installs the same ones).
mapfile -t DEBS < <(grep -v '^#' scripts/debian-packages.txt | tr -s ' ' '\n' | grep -v '^$')
missing=()
for p in "${DEBS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The benchmarks' peers (bench/debian-packages.txt), installed with their services kept stopped (policy-rc.d
# says no to every start, as in container images): nginx must not take port 80 of the machine.
# EMPEROR_BENCH_PACKAGES=0 skips them (the VM guest: no network, no benchmarks).
BENCH_DEBS=()
[ "${EMPEROR_BENCH_PACKAGES:-1}" = 0 ] || mapfile -t BENCH_DEBS < <(grep -v '^#' bench/debian-packages.txt | tr -s ' ' '\n' | grep -v '^$')
missing=()
for p in "${BENCH_DEBS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages for the benchmarks: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  policy=/usr/sbin/policy-rc.d
  had_policy=0
  [ -e "$policy" ] && had_policy=1
  [ "$had_policy" = 1 ] || { printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod 755 "$policy"; }
  status=0
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; } || status=$?
  [ "$had_policy" = 1 ] || rm -f "$policy"
  [ "$status" -eq 0 ] || die "apt-get could not install ${missing[*]} (exit $status)"
  # Installed and enabled by the package: disabled, so no boot starts it either.
  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then systemctl disable --now nginx >/dev/null 2>&1 || true; fi
fi

# Node.js 20 or newer (Debian 12's own nodejs is 18: too old for the test runner and several dependencies).
if ! command -v node >/dev/null; then
  log "installing Debian's nodejs and npm"
  apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
major=$(node -p 'process.versions.node.split(".")[0]')
[ "$major" -ge 20 ] || die "Node.js $(node --version) is too old: Emperor needs Node.js 20 or newer"

# npm packages, exactly as locked. npm records what it installed in node_modules/.package-lock.json.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  log "installing npm packages (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
fi

# Users the examples in vassals.example/ run as: one unprivileged user and group per vassal.
for u in demo-alice demo-bob demo-carol demo-dave; do
  if ! getent passwd "$u" >/dev/null; then
    log "creating example user $u"
    useradd --system --user-group --create-home --home-dir "/srv/emperor-demo/$u" --shell /bin/bash "$u"
  fi
  # No password, but not locked: sshd (UsePAM no) refuses key logins to locked ("!") accounts.
  if getent shadow "$u" | cut -d: -f2 | grep -q '^!'; then usermod -p '*' "$u"; fi
done
# A user whose home does not exist, as system users have (/nonexistent): the tests check the fallback to /.
if ! getent passwd demo-nohome >/dev/null; then
  log "creating example user demo-nohome (no home directory)"
  useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /bin/sh demo-nohome
fi

log "building (tsc -b, make -C native)"
npm run --silent build
