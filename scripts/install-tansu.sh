#!/usr/bin/env bash
# Installs tansu, an Apache Kafka compatible broker written in Rust, for the
# out-of-process tests (scripts/test-tansu.sh) and benchmarks. Pinned version;
# cached in ~/.cargo/bin after the first build (about 8 minutes on 2 cores).
set -euo pipefail
VERSION=0.6.0
if command -v tansu >/dev/null 2>&1 && tansu --version 2>/dev/null | grep -q "$VERSION"; then
  exit 0
fi
echo "installing tansu $VERSION (first time only: about 8 minutes on 2 cores)" >&2
cargo install tansu --locked --version "$VERSION" --features dynostore,libsql
