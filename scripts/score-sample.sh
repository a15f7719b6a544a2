#!/usr/bin/env bash
# Scores the shipped sample stream offline (no broker): 3000 synthetic events of
# 80 leads over four months, then five more months of silence so that decay and
# inactivity show; prints the first records, transitions by segment, and one
# lead's story.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

cargo build --release --locked -p leadscore
bin=target/release/leadscore
out=target/sample-output.jsonl

"$bin" check-model config/seed-model.toml | tail -n 1
"$bin" score --model config/seed-model.toml --input examples/sample-events.jsonl \
  --until 2026-10-01T00:00:00Z > "$out"

echo
echo "== the first records ($out has them all)"
head -n 4 "$out"
echo
echo "== segment transitions"
grep -o '"segment":"[^"]*","transition":"[^"]*"' "$out" | sed -E 's/"segment":"([^"]*)","transition":"([^"]*)"/\2 \1/' |
  sort | uniq -c | sort -k3,3 -k2,2 | awk '{ printf "  %5d %-8s %s\n", $1, $2, $3 }'
echo
echo "== the last 20 segment transitions of lead L-0000003 (its last event is in April)"
grep '"lead_id":"L-0000003"' "$out" | grep segment_transition | tail -n 20 |
  sed -E 's/.*"segment":"([^"]*)","transition":"([^"]*)","timestamp":"([^"]*)","cause":"([^"]*)".*"score":([-0-9.]+),"grade":"(.)".*/  \3  \2 \1 (\4; score \5, grade \6)/'
