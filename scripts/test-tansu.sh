#!/usr/bin/env bash
# The end-to-end test on a real out-of-process broker: installs tansu (pinned,
# cached), starts it with the in-memory storage engine on a free port, runs
# crates/leadscore/tests/tansu.rs against it, and stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-tansu.sh
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log=$(mktemp)
tansu broker --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://127.0.0.1:$port" \
  --storage-engine memory://tansu/ >"$log" 2>&1 &
broker=$!
trap 'kill $broker 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null; then break; fi
  sleep 0.1
done
echo "tansu listening on 127.0.0.1:$port" >&2
LEADSCORE_TANSU_BOOTSTRAP="127.0.0.1:$port" cargo test --locked -p leadscore --test tansu -- --ignored --nocapture \
  || { echo "--- tansu log (tail) ---" >&2; tail -50 "$log" >&2; exit 1; }
