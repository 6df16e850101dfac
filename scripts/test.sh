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
pass=${pass:-0}
fail=${fail:-$(( total - pass ))}
# counts SUMMARY_LINE: adds a tap summary ("# { total: N, pass: N, ... }") to the totals, or a failure if none.
counts() {
  local t p
  t=$(sed -nE 's/.*total: ([0-9]+).*/\1/p' <<<"$2")
  p=$(sed -nE 's/.*pass: ([0-9]+).*/\1/p' <<<"$2")
  if [ -z "$t" ]; then
    echo "test.sh: $1 printed no tap summary" >&2
    fail=$(( fail + 1 ))
    return
  fi
  echo "$1: ${p:-0} passed, $(( t - ${p:-0} )) failed"
  pass=$(( pass + ${p:-0} ))
  fail=$(( fail + t - ${p:-0} ))
}
# The host suite again on Node 24 (scripts/node-other.sh; docs/testing.md): in CI always, locally unless
# EMPEROR_NODE24=0 (said loudly).
if [ $# -eq 0 ]; then
  if [ "${EMPEROR_NODE24:-1}" = 0 ] && [ -z "${CI:-}" ]; then
    echo "test.sh: EMPEROR_NODE24=0: the Node 24 run was NOT done" >&2
  else
    nout=$(mktemp)
    set +e
    bash scripts/node-other.sh 2>&1 | tee "$nout"
    nrc=${PIPESTATUS[0]}
    set -e
    [ "$nrc" -eq 0 ] || rc=1
    echo "node 20: $pass passed, $fail failed"
    counts "node 24" "$(grep -E '^# \{ total: [0-9]+' "$nout" | tail -n 1 || true)"
    rm -f "$nout"
  fi
fi
# The suites that depend on the cgroup hierarchy, the jail and the init system run again in a Debian 12
# guest with systemd and cgroup v2, as hosts run Emperor (scripts/vm/run.sh, docs/testing.md): always in CI,
# and on a full local run unless EMPEROR_VM=0 (said loudly). A guest failure fails the run.
if [ $# -eq 0 ]; then
  if [ "${EMPEROR_VM:-1}" = 0 ] && [ -z "${CI:-}" ]; then
    echo "test.sh: EMPEROR_VM=0: the cgroup v2 + systemd guest run was NOT done" >&2
  else
    vout=$(mktemp)
    set +e
    bash scripts/vm/run.sh 2>&1 | tee "$vout"
    vrc=${PIPESTATUS[0]}
    set -e
    [ "$vrc" -eq 0 ] || rc=1
    # run.sh's last line: "vm: N passed, N failed" (its TAP logs, leak checks and both boots summed).
    vline=$(grep -E '^vm: [0-9]+ passed, [0-9]+ failed$' "$vout" | tail -n 1 || true)
    rm -f "$vout"
    if [ -z "$vline" ]; then
      echo "test.sh: the guest run printed no summary (exit $vrc)" >&2
      fail=$(( fail + 1 ))
    else
      vpass=$(sed -nE 's/^vm: ([0-9]+) passed.*/\1/p' <<<"$vline")
      vfail=$(sed -nE 's/.* ([0-9]+) failed$/\1/p' <<<"$vline")
      echo "guest (cgroup v2, systemd): $vpass passed, $vfail failed"
      pass=$(( pass + vpass ))
      fail=$(( fail + vfail ))
    fi
  fi
fi
echo "$pass passed, $fail failed"
exit "$rc"
