#!/usr/bin/env bash
# The README's first command: install what is needed, then run Emperor over vassals.example/ in the
# foreground (Ctrl-C stops every vassal). In another shell: npx emperor status, and
#   curl --unix-socket /run/emperor/vassals/alice/app.sock http://localhost/
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
./node_modules/.bin/emperor check vassals.example/*
exec ./node_modules/.bin/emperor "$PWD/vassals.example"
