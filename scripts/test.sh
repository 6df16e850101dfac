#!/usr/bin/env bash
# The README's second command, and what CI runs: install what is needed, then run every test.
# Arguments go to tap (e.g. a test file to run alone).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
node scripts/check-deps.mjs
# Tests that need namespaces or cgroups fail instead of skipping when this is set; CI sets CI=true.
export EMPEROR_TEST_MUST_WORK=${EMPEROR_TEST_MUST_WORK:-${CI:+1}}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
set +e
./node_modules/.bin/tap "$@" 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
# Nothing a test started may outlive the suite: processes, cgroups, mounts, netns, scratch dirs.
node scripts/leak-check.mjs || rc=1
set -e
# tap's own summary is "# { total: N, pass: N, fail: N }"; print it in the plain form CI tools read.
summary=$(grep -E '^# \{ total: [0-9]+' "$out" | tail -n 1 || true)
total=$(sed -nE 's/.*total: ([0-9]+).*/\1/p' <<<"$summary")
pass=$(sed -nE 's/.*pass: ([0-9]+).*/\1/p' <<<"$summary")
fail=$(sed -nE 's/.*fail: ([0-9]+).*/\1/p' <<<"$summary")
if [ -z "$total" ]; then
  echo "test.sh: tap printed no summary (exit $rc)" >&2
  exit $(( rc == 0 ? 1 : rc ))
fi
echo "${pass:-0} passed, ${fail:-$(( total - ${pass:-0} ))} failed"
exit "$rc"
