#!/usr/bin/env bash
# The README's second command, and what CI runs: install what is needed, then run every test.
# Arguments go to tap (e.g. a test file to run alone); with none, the suite also runs on Node 24 and in the
# cgroup v2 + systemd guest (docs/testing.md).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
node scripts/check-deps.mjs
# Tests that need namespaces or cgroups fail instead of skipping when this is set; CI sets CI=true.
export EMPEROR_TEST_MUST_WORK=${EMPEROR_TEST_MUST_WORK:-${CI:+1}}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
pass=0
fail=0

# add LABEL PASSED FAILED: one run's counts into the totals, said on a line of its own; no counts at all
# (the run printed no summary) is a failure.
add() {
  if [ -z "$2" ] || [ -z "$3" ]; then
    echo "test.sh: $1 printed no summary" >&2
    fail=$(( fail + 1 ))
    return
  fi
  echo "$1: $2 passed, $3 failed"
  pass=$(( pass + $2 ))
  fail=$(( fail + $3 ))
}
# tap_counts FILE: "PASSED FAILED" from tap's own last summary line ("# { total: N, pass: N, fail: N }").
tap_counts() {
  local summary total p
  summary=$(grep -E '^# \{ total: [0-9]+' "$1" | tail -n 1 || true)
  total=$(sed -nE 's/.*total: ([0-9]+).*/\1/p' <<<"$summary")
  p=$(sed -nE 's/.*pass: ([0-9]+).*/\1/p' <<<"$summary")
  [ -n "$total" ] && echo "${p:-0} $(( total - ${p:-0} ))"
  return 0
}
# run_logged COMMAND...: runs it with its output shown and kept in $out; its exit status fails the run.
rc=0
run_logged() {
  set +e
  "$@" 2>&1 | tee "$out"
  local status=${PIPESTATUS[0]}
  set -e
  [ "$status" -eq 0 ] || rc=1
}

run_logged ./node_modules/.bin/tap "$@"
# Nothing a test started may outlive the suite: processes, cgroups, mounts, netns, scratch dirs.
node scripts/leak-check.mjs || rc=1
read -r p f <<<"$(tap_counts "$out")" || true
if [ -z "${p:-}" ]; then
  echo "test.sh: tap printed no summary (exit $rc)" >&2
  exit 1
fi
add "node $(node -p 'process.versions.node')" "$p" "$f"

# The rest only on a full run: in CI always, locally unless EMPEROR_NODE24=0 / EMPEROR_VM=0 (said loudly).
if [ $# -eq 0 ]; then
  # The host suite again on Node 24 (scripts/node-other.sh): a copy of this checkout, its V8 addon rebuilt.
  if [ "${EMPEROR_NODE24:-1}" = 0 ] && [ -z "${CI:-}" ]; then
    echo "test.sh: EMPEROR_NODE24=0: the Node 24 run was NOT done" >&2
  else
    run_logged bash scripts/node-other.sh
    p= f=
    read -r p f <<<"$(tap_counts "$out")" || true
    add "node 24" "${p:-}" "${f:-}"
  fi
  # The suites that depend on the cgroup hierarchy, the jail and the init system again, in a Debian 12 guest
  # with systemd and cgroup v2, as hosts run Emperor (scripts/vm/run.sh). A guest failure fails the run.
  if [ "${EMPEROR_VM:-1}" = 0 ] && [ -z "${CI:-}" ]; then
    echo "test.sh: EMPEROR_VM=0: the cgroup v2 + systemd guest run was NOT done" >&2
  else
    run_logged bash scripts/vm/run.sh
    # run.sh's last line: "vm: N passed, N failed" (its TAP logs, leak checks and both boots summed).
    vline=$(grep -E '^vm: [0-9]+ passed, [0-9]+ failed$' "$out" | tail -n 1 || true)
    add "guest (cgroup v2, systemd)" "$(sed -nE 's/^vm: ([0-9]+) passed.*/\1/p' <<<"$vline")" "$(sed -nE 's/.* ([0-9]+) failed$/\1/p' <<<"$vline")"
  fi
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ] || rc=1
exit "$rc"
