#!/usr/bin/env bash
# Brings back, one at a time, each defect the runtime issue listed (the patches
# in crates/leadscore-sim/defects/), runs the check that must catch it, and
# puts the code back. A patch's first line may name its check ("check: ...");
# otherwise it is the deterministic simulation, run until it fails (the output
# names the first failing seed, which replays with LEADSCORE_SIM_SEED).
#
#   scripts/sim-defects.sh            # up to 3000 seeds per defect
#   SEEDS=20000 scripts/sim-defects.sh
#
# It edits the working tree while it runs (each patch applied, then reversed):
# run it in a clean clone, and edit or commit nothing there meanwhile.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! git diff --quiet || ! git diff --cached --quiet; then
  echo "sim-defects: the working tree has changes; run it on a clean checkout (it applies and reverses patches)" >&2
  exit 2
fi
export SEEDS=${SEEDS:-3000}
status=0
for patch in crates/leadscore-sim/defects/*.patch; do
  name=$(basename "$patch" .patch)
  check=$(sed -n 's/^check: //p' "$patch" | head -1)
  if [ -z "$check" ]; then
    check='cargo build --release -q -p leadscore-sim && ./target/release/leadscore-sim --seeds $SEEDS'
  fi
  git apply "$patch"
  trap 'git apply -R "$patch"' EXIT
  if out=$(bash -c "$check" 2>&1); then
    echo "$name: NOT caught by: $check"
    status=1
  else
    why=$(echo "$out" | grep -m1 -E 'simulation seed [0-9]+ failed|panicked at|FAILED' | cut -c1-200 || true)
    # A check that could not even run is not a catch.
    if [ -z "$why" ]; then
      echo "$name: the check failed without a finding; its output ends with:"
      echo "$out" | tail -5
      status=1
    else
      echo "$name: caught: $why"
    fi
  fi
  git apply -R "$patch"
  trap - EXIT
done
exit $status
