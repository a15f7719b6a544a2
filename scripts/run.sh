#!/usr/bin/env bash
# Sets up leadscore on this machine and runs the demo: an embedded Kafka-protocol
# broker, a synthetic event stream in compressed time (2 simulated days per
# second), the pipeline on RocksDB, and a live view. Runs until ctrl-c; extra
# arguments go to `leadscore demo` (e.g. --duration 2m, --rate 5000).
# The first run compiles RocksDB and librdkafka: about 16 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

cargo build --release --locked -p leadscore
exec target/release/leadscore demo "$@"
