#!/usr/bin/env bash
# The README's first command: install what is needed, then run Emperor over vassals.example/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Until the daemon lands, the demo validates every example as the daemon would before spawning it.
exec ./node_modules/.bin/emperor check vassals.example/*
